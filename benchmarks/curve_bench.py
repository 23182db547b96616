#!/usr/bin/env python3
"""curve_bench: what CURVE (encryption and key authentication) costs circusd's control socket,
measured with CURVE on and off in the same run, interleaved (see benchmarks/README.md, "CURVE").

Two sets of circusd of this repository on this machine, ``tcp://127.0.0.1`` free ports, one
watcher ``sl`` of one ``sleep 3600`` each: ``--nodes`` (default 16) nodes with CURVE on (each
its own key pair, written by ``circus.security.keys.write_keypair``; ``[circus]
curve_secret_key`` and ``curve_clients`` with one admin client key) and as many with CURVE off.
All are started first and waited for until each answers ``nodeinfo``; then, per repetition (the
order on/off alternates from one repetition to the next, since the machine is shared):

  raw        one DEALER, connected and warmed up, to the first node of each set: ``--calls``
             ``list`` and then ``--calls`` ``numwatchers`` round trips, one at a time;
  floor      the same with a bare pyzmq ROUTER echo in another process (CURVE on: a CURVE
             server without ZAP), to tell libzmq's cost from circusd's;
  handshake  ``--handshakes`` times: a new ``CircusClient`` (shared zmq context), one
             ``numwatchers``, ``stop()`` — connection, CURVE handshake and ZAP included;
  status     ``circusmeta status`` over all the nodes of a set (pool file: ``[node:NAME]
             server_key``, ``[meta] client_key``), the whole process from fork to exit. When
             the installed circusmeta cannot talk to CURVE nodes (it answers them as not
             available), a small script does what it does instead — load the pool, one
             ``AsyncClient(curve=ClientKeys)`` per node, ``status`` to all concurrently,
             print — and the report says so;
  fanout     the same fan-out in-process (fresh clients, connect, ``status`` to every node
             concurrently, close): no interpreter start-up.

Every process started is stopped by pid (SIGTERM, then SIGKILL of it and its descendants).

Usage:
  .venv/bin/python benchmarks/curve_bench.py run [--reps 8] [--calls 2000] [--nodes 16] \\
      [--out-json benchmarks/results/curve.json] [--out-md benchmarks/results/curve.md]
  .venv/bin/python benchmarks/curve_bench.py report benchmarks/results/curve.json
  .venv/bin/python benchmarks/curve_bench.py status-script POOL   (the fallback, used by run)
"""
from __future__ import annotations

import argparse
import asyncio
import datetime
import json
import os
import platform
import re
import secrets
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time

import zmq

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path.insert(0, REPO)
sys.path.insert(0, HERE)

from circus.security.keys import ClientKeys, load_keypair, write_keypair  # noqa: E402
from metabench import (STARTED, BenchError, become_subreaper, free_port, log,  # noqa: E402
                       stop_all, versions)

now = time.perf_counter
TARGET_RAW_RATIO = 1.30        # CURVE adds at most 30 % to the raw round trip
MODES = ("on", "off")


def pct(xs, q):
    xs = sorted(xs)
    if not xs:
        return None
    return xs[min(len(xs) - 1, max(0, int(round(q * (len(xs) - 1)))))]


def summary(xs):
    if not xs:
        return None
    return {"count": len(xs), "median": statistics.median(xs), "p99": pct(xs, 0.99),
            "min": min(xs), "max": max(xs)}


# -- keys and nodes --------------------------------------------------------------------------------

class Keys:
    """The admin client's key pair and an authorized-clients directory holding its public key."""

    def __init__(self, base):
        self.dir = os.path.join(base, "keys")
        self.client_public, self.client_secret = write_keypair(self.dir, "bench-admin")
        self.clients = os.path.join(base, "clients")
        os.makedirs(os.path.join(self.clients, "admin"))
        shutil.copy(self.client_public, os.path.join(self.clients, "admin", "bench-admin.key"))


class Node:
    def __init__(self, name, base, python, keys=None, log_level=None):
        self.name = name
        self.dir = os.path.join(base, name)
        os.makedirs(self.dir)
        self.server_key = self.curve = None
        self.extra = ""
        if keys is not None:
            self.server_key, secret = write_keypair(self.dir, "node")
            self.curve = ClientKeys.load(keys.client_secret, self.server_key)
            self.extra = f"curve_secret_key = {secret}\ncurve_clients = {keys.clients}\n"
        self.config = os.path.join(self.dir, "circus.ini")
        self.write_config()
        self.log = os.path.join(self.dir, "circusd.log")
        self.argv = [python, "-m", "circus.cli.circusd", "--name", name, "--log-output", self.log,
                     *(["--log-level", log_level] if log_level else []), self.config]
        self.proc = None

    def write_config(self):
        """New free ports (another process may have taken the previous ones)."""
        self.endpoint = f"tcp://127.0.0.1:{free_port()}"
        pubsub = f"tcp://127.0.0.1:{free_port()}"
        with open(self.config, "w") as f:
            f.write(f"[circus]\nendpoint = {self.endpoint}\npubsub_endpoint = {pubsub}\n"
                    f"{self.extra}\n[watcher:sl]\ncmd = sleep 3600\nnumprocesses = 1\n")

    def start(self):
        self.proc = subprocess.Popen(self.argv, cwd=self.dir, stdin=subprocess.DEVNULL,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
        STARTED.append(self.proc)

    def log_tail(self, n=1500):
        try:
            with open(self.log) as f:
                return f.read()[-n:]
        except OSError:
            return ""


def dealer(ctx, endpoint, curve=None):
    sock = ctx.socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    if curve is not None:
        curve.apply(sock)
    sock.connect(endpoint)
    return sock


def request(command):
    msg_id = secrets.token_hex(8)
    return msg_id, json.dumps({"id": msg_id, "command": command, "properties": {}}).encode()


def wait_answering(ctx, nodes, timeout, retries=3):
    """Every node answers nodeinfo; a node whose port was taken meanwhile (the machine is
    shared: a port is free when chosen, not necessarily when bound) gets new ports."""
    deadline = time.monotonic() + timeout
    for node in nodes:
        tries = 0
        while True:
            if node.proc.poll() is not None and tries < retries and \
                    "Address already in use" in node.log_tail():
                tries += 1
                log(f"  {node.name}: its port was taken; new ports (try {tries})")
                os.unlink(node.log)
                node.write_config()
                node.start()
                continue
            if node.proc.poll() is not None:
                raise BenchError(f"{node.name}: circusd exited ({node.proc.returncode})\n"
                                 f"{node.log_tail()}")
            sock = dealer(ctx, node.endpoint, node.curve)
            try:
                msg_id, body = request("nodeinfo")
                sock.send(body)
                if sock.poll(500):
                    reply = json.loads(sock.recv())
                    if reply.get("id") == msg_id and reply.get("name") == node.name:
                        break
            finally:
                sock.close()
            if time.monotonic() > deadline:
                raise BenchError(f"{node.name} does not answer at {node.endpoint} after "
                                 f"{timeout:g} s\n{node.log_tail()}")


# -- measurements ----------------------------------------------------------------------------------

def round_trips(sock, command, n, timeout=10.0):
    """``n`` round trips of ``command`` on ``sock``, one at a time; seconds each."""
    out = []
    for _ in range(n):
        msg_id, body = request(command)
        t0 = now()
        sock.send(body)
        while True:
            if not sock.poll(int(timeout * 1000)):
                raise BenchError(f"no reply to {command!r} within {timeout:g} s")
            reply = sock.recv()
            if json.loads(reply).get("id") == msg_id:
                break
        out.append(now() - t0)
    return out


ECHO = r"""
import sys, zmq
ctx = zmq.Context()
s = ctx.socket(zmq.ROUTER)
if sys.argv[1] in ("on", "zap"):
    public, secret = sys.argv[2].encode(), sys.argv[3].encode()
    if sys.argv[1] == "zap":      # a ZAP handler in a Python thread, as circusd has
        import logging
        from zmq.auth.thread import ThreadAuthenticator
        class Allow:
            def callback(self, domain, key):
                return True
        auth = ThreadAuthenticator(ctx, log=logging.getLogger("zap"))
        auth.start()
        auth.configure_curve_callback("bench", credentials_provider=Allow())
        s.zap_domain = b"bench"
    s.curve_secretkey, s.curve_publickey, s.curve_server = secret, public, True
port = s.bind_to_random_port("tcp://127.0.0.1")
print(port, flush=True)
while True:
    frames = s.recv_multipart()
    if frames[-1] == b"quit":
        break
    s.send_multipart(frames)
"""


class Echo:
    """A bare ROUTER echo in another process (CURVE server without ZAP for ``on``)."""

    def __init__(self, mode, python, pair=None):
        args = [mode] + ([pair.public.decode(), pair.secret.decode()] if mode != "off" else [])
        self.proc = subprocess.Popen([python, "-c", ECHO, *args], stdout=subprocess.PIPE,
                                     stdin=subprocess.DEVNULL, text=True)
        STARTED.append(self.proc)
        line = self.proc.stdout.readline()
        if not line.strip():
            raise BenchError(f"echo server ({mode}) did not start")
        self.endpoint = f"tcp://127.0.0.1:{int(line)}"
        self.server = pair.public if mode != "off" else None


def echo_trips(sock, body, n, timeout=10.0):
    out = []
    for _ in range(n):
        t0 = now()
        sock.send(body)
        if not sock.poll(int(timeout * 1000)):
            raise BenchError("no echo within 10 s")
        sock.recv()
        out.append(now() - t0)
    return out


def echo_handshakes(ctx, endpoint, curve, body, n):
    """A fresh DEALER to the echo server per round trip: libzmq's own connection cost."""
    out = []
    for _ in range(n):
        t0 = now()
        sock = dealer(ctx, endpoint, curve)
        try:
            out.extend(echo_trips(sock, body, 1))
        finally:
            sock.close(0)
        out[-1] = now() - t0
    return out


def handshakes(ctx, node, n, timeout=10.0):
    from circus.client import CircusClient
    out = []
    for _ in range(n):
        t0 = now()
        client = CircusClient(context=ctx, endpoint=node.endpoint, timeout=timeout,
                              curve=node.curve)
        try:
            reply = client.send_message("numwatchers")
        finally:
            client.stop()
        out.append(now() - t0)
        if not reply or reply.get("status") != "ok":
            raise BenchError(f"numwatchers on a fresh client: {reply}")
    return out


def write_pool(path, nodes, keys, timeout):
    text = f"[meta]\ntimeout = {timeout:g}\n"
    if nodes[0].curve is not None:
        text += f"client_key = {keys.client_secret}\n"
    for node in nodes:
        text += f"\n[node:{node.name}]\nendpoint = {node.endpoint}\n"
        if node.server_key:
            text += f"server_key = {node.server_key}\n"
    with open(path, "w") as f:
        f.write(text)
    return path


async def fan_out_status(path):
    """What ``circusmeta status`` does: every node of the pool asked ``status`` concurrently,
    each over a fresh AsyncClient (CURVE when the pool has keys). {node: reply or error}."""
    from circus.client.aio import AsyncClient
    from circusmeta.pool import load_pool
    pool = load_pool(path)
    clients = {}
    try:
        for name, spec in pool.nodes.items():
            curve = None
            if spec.server_key and pool.meta.client_key:
                curve = ClientKeys.load(pool.meta.client_key, spec.server_key)
            clients[name] = AsyncClient(spec.endpoint, timeout=pool.deadline(spec), curve=curve)
        replies = await asyncio.gather(*(c.call("status") for c in clients.values()),
                                       return_exceptions=True)
    finally:
        for c in clients.values():
            c.close()
    return dict(zip(clients, replies))


def status_script(path):
    """The fallback for ``circusmeta status``: prints one line per node and watcher."""
    results = asyncio.run(fan_out_status(path))
    code = 0
    for node, reply in sorted(results.items()):
        if isinstance(reply, BaseException) or reply.get("status") == "error":
            print(f"{node}: not answered: {reply}")
            code = 4
            continue
        for watcher, state in sorted(reply.get("statuses", {}).items()):
            print(f"{node}:{watcher} {state}")
    return code


def status_argv(a, tool, pool):
    if tool == "circusmeta":
        return [a.meta, "--pool", pool, "status"]
    return [a.python, os.path.abspath(__file__), "status-script", pool]


def run_status(argv, names):
    """(wall time, the process, whether every node's watcher is in its output)."""
    t0 = now()
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=60,
                          stdin=subprocess.DEVNULL, cwd=REPO)
    wall = now() - t0
    words = set(re.findall(r"[\w.-]+", proc.stdout))
    return wall, proc, all(name in words for name in names)


def cli_works(a, pool, names):
    """Whether the installed circusmeta answers ``status`` over the CURVE pool (every node)."""
    try:
        wall, proc, full = run_status(status_argv(a, "circusmeta", pool), names)
    except subprocess.TimeoutExpired:
        return False, "circusmeta status timed out"
    if proc.returncode == 0 and full:
        return True, ""
    return False, (f"`circusmeta status` over the CURVE pool exited {proc.returncode}: "
                   f"{' / '.join((proc.stdout + proc.stderr).strip().splitlines()[:3])[:300]}")


# -- the run ---------------------------------------------------------------------------------------

def main_run(a):
    become_subreaper()
    t_start = time.monotonic()
    res = {"date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
           "machine": {"nproc": os.cpu_count(),
                       "uname": " ".join(platform.uname()[i] for i in (0, 2, 4)),
                       "loadavg_start": os.getloadavg()},
           "versions": versions(a.python), "args": vars(a), "samples": {}, "rep_medians": {},
           "errors": []}
    base = tempfile.mkdtemp(prefix="curvebench-")
    ctx = zmq.Context()
    socks = []
    try:
        keys = Keys(base)
        nodes = {"on": [Node(f"c{k}", base, a.python, keys, a.log_level)
                        for k in range(1, a.nodes + 1)],
                 "off": [Node(f"p{k}", base, a.python, None, a.log_level)
                         for k in range(1, a.nodes + 1)]}
        t0 = now()
        for mode in MODES:
            for node in nodes[mode]:
                node.start()
        for mode in MODES:
            wait_answering(ctx, nodes[mode], a.start_timeout)
        res["start_all_s"] = now() - t0
        log(f"{2 * a.nodes} circusd answering after {res['start_all_s']:.1f} s")
        pools = {m: write_pool(os.path.join(base, f"pool-{m}.ini"), nodes[m], keys, a.timeout)
                 for m in MODES}
        works, why = cli_works(a, pools["on"], [n.name for n in nodes["on"]])
        res["status_tool"] = tool = "circusmeta" if works else "script"
        res["status_tool_why"] = why
        log(f"status measured with {res['status_tool']}" + (f" ({why})" if why else ""))

        raw = {m: dealer(ctx, nodes[m][0].endpoint, nodes[m][0].curve) for m in MODES}
        socks.extend(raw.values())
        echo_pair = load_keypair(write_keypair(os.path.join(base, "echo"), "echo")[1])
        echoes = {m: Echo(m, a.python, echo_pair) for m in (*MODES, "zap")}
        echo_socks, echo_curve = {}, {"off": None}
        echo_curve["on"] = ClientKeys(nodes["on"][0].curve.public, nodes["on"][0].curve.secret,
                                      echo_pair.public)
        echo_curve["zap"] = echo_curve["on"]
        for m in (*MODES, "zap"):
            echo_socks[m] = dealer(ctx, echoes[m].endpoint, echo_curve[m])
        socks.extend(echo_socks.values())
        _, list_body = request("list")
        for m in MODES:                                       # warm-up
            for command in ("list", "numwatchers"):
                round_trips(raw[m], command, a.warmup)
            echo_trips(echo_socks[m], list_body, a.warmup)
            handshakes(ctx, nodes[m][0], 5)
            echo_handshakes(ctx, echoes[m].endpoint, echo_curve[m], list_body, 5)
        echo_handshakes(ctx, echoes["zap"].endpoint, echo_curve["zap"], list_body, 5)

        def add(key, xs):
            res["samples"].setdefault(key, []).extend(xs)
            res["rep_medians"].setdefault(key, []).append(statistics.median(xs))

        for rep in range(a.reps):
            order = MODES if rep % 2 == 0 else MODES[::-1]
            log(f"rep {rep + 1}/{a.reps} ({' then '.join(order)}), load "
                f"{os.getloadavg()[0]:.2f}")
            for m in order:
                for command in ("list", "numwatchers"):
                    add(f"raw_{command}_{m}", round_trips(raw[m], command, a.calls))
                add(f"floor_{m}", echo_trips(echo_socks[m], list_body, a.calls))
            for m in order:
                add(f"handshake_{m}", handshakes(ctx, nodes[m][0], a.handshakes))
                add(f"floor_handshake_{m}", echo_handshakes(ctx, echoes[m].endpoint,
                                                            echo_curve[m], list_body, a.handshakes))
                if m == "on":
                    add("zap_handshake_on", echo_handshakes(ctx, echoes["zap"].endpoint,
                                                            echo_curve["zap"], list_body,
                                                            a.handshakes))
            for m in order:
                for _ in range(a.status_runs):
                    wall, proc, full = run_status(status_argv(a, tool, pools[m]),
                                                  [n.name for n in nodes[m]])
                    if proc.returncode != 0 or not full:
                        res["errors"].append({"case": f"status_{m}", "rep": rep,
                                              "error": f"exit {proc.returncode}: "
                                                       f"{(proc.stdout + proc.stderr)[:1500]}"})
                        continue
                    add(f"status_{m}", [wall])
                fan = []
                for _ in range(a.fanout_runs):
                    t0 = now()
                    replies = asyncio.run(fan_out_status(pools[m]))
                    fan.append(now() - t0)
                    bad = {n: r for n, r in replies.items()
                           if isinstance(r, BaseException) or r.get("status") != "ok"}
                    if bad:
                        raise BenchError(f"in-process fan-out ({m}): {bad}")
                add(f"fanout_{m}", fan)
            log("  " + ", ".join(f"{k} {v[-1] * 1e6:.0f} us" for k, v in res["rep_medians"].items()
                                 if k.startswith(("raw", "floor", "handshake"))))
            log("  " + ", ".join(f"{k} {v[-1] * 1e3:.1f} ms" for k, v in res["rep_medians"].items()
                                 if k.startswith(("status", "fanout"))))
        for m in (*MODES, "zap"):
            echo_socks[m].send(b"quit")
        dead = [nd.name for m in MODES for nd in nodes[m] if nd.proc.poll() is not None]
        if dead:
            res["errors"].append({"case": "-", "rep": None,
                                  "error": f"circusd exited during the run: {dead}"})
    finally:
        for s in socks:
            s.close(0)
        stop_all()
        ctx.term()
        if a.keep:
            log(f"work dir kept: {base}")
        else:
            shutil.rmtree(base, ignore_errors=True)
    res["machine"]["loadavg_end"] = os.getloadavg()
    res["total_minutes"] = (time.monotonic() - t_start) / 60
    for path in (a.out_json, a.out_md):
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(a.out_json, "w") as f:
        json.dump(res, f, indent=1)
    with open(a.out_md, "w") as f:
        f.write(render_md(res))
    log(f"wrote {a.out_json} and {a.out_md}")
    return 1 if res["errors"] else 0


# -- report ----------------------------------------------------------------------------------------

def us(s):
    return "-" if s is None else f"{s * 1e6:.0f} µs"


def ms(s):
    return "-" if s is None else f"{s * 1e3:.1f} ms" if s < 1 else f"{s:.2f} s"


ROWS = (("raw_list", "raw `list` round trip", us),
        ("raw_numwatchers", "raw `numwatchers` round trip", us),
        ("floor", "bare pyzmq ROUTER echo (the `list` request)", us),
        ("handshake", "fresh `CircusClient` + `numwatchers` + stop", us),
        ("floor_handshake", "fresh bare DEALER + one echo + close", us),
        ("zap_handshake", "the same, the CURVE server with a Python ZAP thread (as circusd)", us),
        ("status", "`status` over the pool, whole process", ms),
        ("fanout", "in-process fan-out: fresh clients + `status` to every node", ms))


#: rows whose CURVE-off figures are another row's (ZAP only exists with CURVE)
OFF_OF = {"zap_handshake": "floor_handshake"}


def stats_of(res, key):
    return summary(res["samples"].get(key) or [])


def off_key(key):
    return f"{OFF_OF.get(key, key)}_off"


def ratios(res, key):
    on, off = stats_of(res, f"{key}_on"), stats_of(res, off_key(key))
    if not on or not off:
        return None
    rm_on, rm_off = res["rep_medians"][f"{key}_on"], res["rep_medians"][off_key(key)]
    per_rep = sorted(x / y for x, y in zip(rm_on, rm_off))
    return {"median": on["median"] / off["median"], "p99": on["p99"] / off["p99"],
            "extra": on["median"] - off["median"], "per_rep": per_rep,
            "per_rep_median": statistics.median(per_rep)}


def render_md(res):
    out = []
    w = out.append
    m, v, a = res["machine"], res.get("versions", {}), res["args"]
    w("# CURVE on the control socket: cost\n")
    w(f"- Date: {res['date']}; total run time {res.get('total_minutes', 0):.1f} min")
    w(f"- Machine: nproc={m['nproc']}, {m['uname']}, load average at start "
      f"{m['loadavg_start'][0]:.2f}, at end {m.get('loadavg_end', [0])[0]:.2f}")
    w("- Versions: " + ", ".join(f"{k} {x}" for k, x in v.items()))
    w(f"- Nodes: {a['nodes']} circusd with CURVE on (`curve_secret_key`, `curve_clients` with "
      f"one admin key) and {a['nodes']} with CURVE off, tcp://127.0.0.1 free ports, one "
      f"`sleep 3600` each ({ms(res.get('start_all_s'))} until all answered `nodeinfo`)")
    w(f"- {a['reps']} repetitions, on and off alternating first; per repetition: "
      f"{a['calls']} `list` and {a['calls']} `numwatchers` round trips on one connected DEALER "
      f"(after {a['warmup']} warm-up calls), {a['calls']} bare echo round trips, "
      f"{a['handshakes']} fresh clients, {a['status_runs']} status processes and "
      f"{a['fanout_runs']} in-process fan-outs")
    tool = res.get("status_tool")
    if tool == "script":
        w("- `status` over the pool: measured with `curve_bench.py status-script` (load the pool "
          "file, one `AsyncClient(curve=ClientKeys)` per node, `status` to all concurrently), "
          "because the installed `circusmeta status` did not reach the CURVE nodes: "
          f"{res.get('status_tool_why')}")
    else:
        w("- `status` over the pool: `circusmeta --pool POOL status`")
    w("- Median and p99 over every sample of every repetition; on/off = ratio of those; "
      "per-repetition ratios = on / off of each repetition's medians")
    w("")
    w("## Summary\n")
    w("| what | CURVE off | CURVE on | on / off (median) | on / off (p99) | "
      "per-repetition ratios: median (min - max) | extra |")
    w("|---|---|---|---|---|---|---|")
    for key, label, fmt in ROWS:
        off, on, r = stats_of(res, off_key(key)), stats_of(res, f"{key}_on"), ratios(res, key)
        if not (off and on and r):
            continue
        w(f"| {label} | {fmt(off['median'])} (p99 {fmt(off['p99'])}) | {fmt(on['median'])} "
          f"(p99 {fmt(on['p99'])}) | {r['median']:.2f}x | {r['p99']:.2f}x | "
          f"{r['per_rep_median']:.2f} ({r['per_rep'][0]:.2f} - {r['per_rep'][-1]:.2f}) | "
          f"{fmt(r['extra'])} |")
    w("")
    w("## Targets\n")
    w("| what | measured | target | met |")
    w("|---|---|---|---|")
    for key in ("raw_list", "raw_numwatchers"):
        r = ratios(res, key)
        if r:
            w(f"| {key.replace('_', ' ')}: on / off, median (median of the per-repetition "
              f"ratios: {r['per_rep_median']:.2f}x) | {r['median']:.2f}x | "
              f"<= {TARGET_RAW_RATIO:.2f}x | {'yes' if r['median'] <= TARGET_RAW_RATIO else '**no**'} |")
    w("")
    w("## Samples\n")
    w("| sample | count | median | p99 | min | max |")
    w("|---|---|---|---|---|---|")
    for key, label, fmt in ROWS:
        for mode in MODES:
            s = stats_of(res, f"{key}_{mode}")
            if s:
                w(f"| {label}, CURVE {mode} | {s['count']} | {fmt(s['median'])} | {fmt(s['p99'])} "
                  f"| {fmt(s['min'])} | {fmt(s['max'])} |")
    w("")
    if res["errors"]:
        w("## Errors\n")
        for e in res["errors"]:
            w(f"- {e['case']} rep {e['rep']}: `{e['error'][:500]}`")
        w("")
    return "\n".join(out) + "\n"


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run", help="run the benchmark")
    r.add_argument("--reps", type=int, default=8)
    r.add_argument("--calls", type=int, default=2000, help="raw round trips per command and rep")
    r.add_argument("--warmup", type=int, default=300)
    r.add_argument("--handshakes", type=int, default=100, help="fresh clients per rep")
    r.add_argument("--nodes", type=int, default=16, help="nodes per set (on / off)")
    r.add_argument("--status-runs", type=int, default=2, help="status processes per rep and set")
    r.add_argument("--fanout-runs", type=int, default=10, help="in-process fan-outs per rep")
    r.add_argument("--timeout", type=float, default=5.0, help="[meta] timeout of the pools")
    r.add_argument("--python", default=sys.executable, help="the python that runs circusd")
    r.add_argument("--meta", default=os.path.join(os.path.dirname(sys.executable), "circusmeta"),
                   help="the circusmeta executable")
    r.add_argument("--start-timeout", type=float, default=120.0)
    r.add_argument("--log-level", default=None, help="passed to every circusd")
    r.add_argument("--keep", action="store_true", help="keep the work dir (configs, logs)")
    r.add_argument("--out-json", default=os.path.join(HERE, "results", "curve.json"))
    r.add_argument("--out-md", default=os.path.join(HERE, "results", "curve.md"))
    rp = sub.add_parser("report", help="re-render the Markdown from a results JSON")
    rp.add_argument("json")
    sp = sub.add_parser("status-script", help="the fallback for circusmeta status")
    sp.add_argument("pool")
    a = p.parse_args()
    if a.cmd == "report":
        with open(a.json) as f:
            sys.stdout.write(render_md(json.load(f)))
        return 0
    if a.cmd == "status-script":
        return status_script(a.pool)
    if not os.path.exists(a.meta):
        p.error(f"no circusmeta at {a.meta} (give --meta)")
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))   # finally blocks stop the daemons
    try:
        return main_run(a)
    except BenchError as e:
        log(f"! {e}")
        return 1


if __name__ == "__main__":
    sys.exit(main())
