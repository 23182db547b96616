#!/usr/bin/env python3
"""metabench: circusmeta's fan-out wall time over pools of 1 to 32 nodes, and what one
unreachable node costs (see benchmarks/README.md, "circusmeta").

All the nodes are circusd processes of this repository on this machine (``tcp://127.0.0.1``
free ports by default, or ``ipc://`` sockets), each with one watcher ``sl`` of one
``sleep 3600``. They are all started first, each waited for until it answers ``nodeinfo``,
then measured, then stopped by pid (SIGTERM, then SIGKILL of what is left).

For every pool size N (default 1, 4, 16, 32), repetitions interleaved (every case once, then
every case again, ...):

  cli    ``circusmeta --pool P nodes`` / ``status`` / ``add NAME sleep 3600`` wall time, a
         subprocess from fork to exit, as an operator runs it (``add`` asks nodeinfo, then
         list, then adds; the watcher is removed again, untimed);
  pool   in-process ``Pool.call("nodeinfo")``: the first call of a fresh Pool (connects
         too) and a second call on the same Pool — without the interpreter's start-up;
  floor  ``circusmeta --version``: the interpreter and the CLI's imports, no node asked.

And the same pools with one more node, ``ghost``, a ``tcp://127.0.0.1`` port nobody listens
on, with ``[meta] timeout`` = 1 and 2 s (``--ghost-timeouts``): the extra time is compared
with the configured timeout (the target: at most one timeout, also for ``add``'s several
calls).

Usage:
  .venv/bin/python benchmarks/metabench.py run [--sizes 1,4,16,32] [--reps 5] \\
      [--out-json benchmarks/results/meta.json] [--out-md benchmarks/results/meta.md]
  .venv/bin/python benchmarks/metabench.py report benchmarks/results/meta.json
"""
from __future__ import annotations

import argparse
import asyncio
import ctypes
import datetime
import glob
import json
import os
import platform
import secrets
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

import zmq

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path.insert(0, REPO)

from circusmeta import Pool  # noqa: E402

now = time.perf_counter
TARGET_FANOUT_RATIO = 2.0     # N = 32 within 2x the wall time of N = 1
TARGET_GHOST_SLACK = 0.05     # an unreachable node costs <= timeout (+5 % for scheduling), once
STARTED: list[subprocess.Popen] = []


def log(*a):
    print(time.strftime("%H:%M:%S"), *a, file=sys.stderr, flush=True)


class BenchError(Exception):
    pass


# -- processes -------------------------------------------------------------------------------------

def children(pid):
    out = []
    for f in glob.glob(f"/proc/{pid}/task/*/children"):
        try:
            with open(f) as fh:
                out.extend(int(x) for x in fh.read().split())
        except OSError:
            pass
    return out


def descendants(pid):
    out, todo = [], [pid]
    while todo:
        for c in children(todo.pop()):
            out.append(c)
            todo.append(c)
    return out


def kill_pids(pids, sig=signal.SIGKILL):
    for p in pids:
        try:
            os.kill(p, sig)
        except OSError:
            pass


def become_subreaper():
    """Orphans of a daemon that died hard are reparented to us, so they can be ended by pid."""
    try:
        return ctypes.CDLL(None, use_errno=True).prctl(36, 1, 0, 0, 0) == 0
    except Exception:
        return False


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def stop_all(timeout=20.0):
    """SIGTERM every daemon started, wait, then SIGKILL each one left and its descendants."""
    family = {p.pid: descendants(p.pid) for p in STARTED if p.poll() is None}
    for p in STARTED:
        if p.poll() is None:
            kill_pids([p.pid], signal.SIGTERM)
    deadline = time.monotonic() + timeout
    for p in STARTED:
        try:
            p.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            log(f"  ! circusd {p.pid} ignored SIGTERM; killing it")
    for p in STARTED:
        kill_pids(family.get(p.pid, []) + ([p.pid] if p.poll() is None else []))
        try:
            p.wait(10)
        except subprocess.TimeoutExpired:
            pass
    for c in children(os.getpid()):        # orphans reparented to us (subreaper)
        kill_pids(descendants(c) + [c])
        try:
            os.waitpid(c, os.WNOHANG)
        except OSError:
            pass


class Node:
    def __init__(self, k, base, transport, python, log_level):
        self.name = f"node{k}"
        self.dir = os.path.join(base, self.name)
        os.makedirs(self.dir)
        if transport == "ipc":
            self.endpoint = f"ipc://{self.dir}/control.sock"
            pubsub = f"ipc://{self.dir}/events.sock"
        else:
            self.endpoint = f"tcp://127.0.0.1:{free_port()}"
            pubsub = f"tcp://127.0.0.1:{free_port()}"
        self.config = os.path.join(self.dir, "circus.ini")
        with open(self.config, "w") as f:
            f.write(f"[circus]\nendpoint = {self.endpoint}\npubsub_endpoint = {pubsub}\n\n"
                    "[watcher:sl]\ncmd = sleep 3600\nnumprocesses = 1\n")
        self.log = os.path.join(self.dir, "circusd.log")
        self.argv = [python, "-m", "circus.cli.circusd", "--name", self.name,
                     "--log-output", self.log, *(["--log-level", log_level] if log_level else []),
                     self.config]
        self.proc = None

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


def wait_answering(ctx, nodes, timeout):
    """Every node answers nodeinfo (a round trip each), or BenchError at the deadline."""
    deadline = time.monotonic() + timeout
    for node in nodes:
        while True:
            if node.proc.poll() is not None:
                raise BenchError(f"{node.name}: circusd exited ({node.proc.returncode})\n"
                                 f"{node.log_tail()}")
            sock = ctx.socket(zmq.DEALER)
            sock.setsockopt(zmq.LINGER, 0)
            try:
                sock.connect(node.endpoint)
                msg_id = secrets.token_hex(8)
                sock.send(json.dumps({"id": msg_id, "command": "nodeinfo",
                                      "properties": {}}).encode())
                if sock.poll(500):
                    reply = json.loads(sock.recv())
                    if reply.get("id") == msg_id and reply.get("name") == node.name:
                        break
            finally:
                sock.close()
            if time.monotonic() > deadline:
                raise BenchError(f"{node.name} does not answer at {node.endpoint} after "
                                 f"{timeout:g} s\n{node.log_tail()}")


# -- pools and measurements ------------------------------------------------------------------------

def write_pool(path, nodes, timeout, ghost=None):
    text = f"[meta]\ntimeout = {timeout:g}\n"
    for node in nodes:
        text += f"\n[node:{node.name}]\nendpoint = {node.endpoint}\ntags = bench\n"
    if ghost:
        text += f"\n[node:ghost]\nendpoint = {ghost}\ntags = gone\n"
    with open(path, "w") as f:
        f.write(text)
    return path


def run_cli(meta, pool, args, deadline):
    start = now()
    proc = subprocess.run([meta, *(["--pool", pool] if pool else []), *args],
                          capture_output=True, text=True, timeout=deadline,
                          stdin=subprocess.DEVNULL, cwd=REPO)
    return now() - start, proc


async def pool_calls(path, expected):
    """(first call of a fresh Pool incl. connecting, second call on it, states)."""
    start = now()
    async with Pool.from_file(path) as pool:
        first = await pool.call("nodeinfo")
        t1 = now()
        second = await pool.call("nodeinfo")
        t2 = now()
    states = {n: r.state for n, r in first.items()}
    if states != expected:
        raise BenchError(f"Pool.call states {states}, expected {expected}")
    if {n: r.state for n, r in second.items()} != expected:
        raise BenchError(f"second Pool.call states {second}, expected {expected}")
    return t1 - start, t2 - t1


async def remove(path, names, watcher):
    async with Pool.from_file(path) as pool:
        await pool.call("rm", nodes=names, name=watcher)


def measure_case(case, a, rep):
    """One sample of every measurement of ``case``; returns {measurement: seconds}."""
    pool, n, ghost_t = case["pool"], case["n"], case["ghost_timeout"]
    real = [f"node{k}" for k in range(1, n + 1)]
    expected = {name: "active" for name in real}
    if ghost_t is not None:
        expected["ghost"] = "not_available"
    want_code = 0 if ghost_t is None else 4
    deadline = 30 + 3 * (ghost_t or 0)
    out = {}
    for command in ("nodes", "status"):
        wall, proc = run_cli(a.meta, pool, [command], deadline)
        if proc.returncode != want_code:
            raise BenchError(f"`circusmeta {command}` N={n} ghost={ghost_t}: exit "
                             f"{proc.returncode} (expected {want_code})\n{proc.stdout}\n"
                             f"{proc.stderr}")
        out[f"cli_{command}"] = wall
    watcher = f"mb{rep}x{secrets.token_hex(3)}"
    wall, proc = run_cli(a.meta, pool, ["--json", "add", watcher, "sleep", "3600"], deadline)
    try:
        placed = json.loads(proc.stdout)
    except ValueError:
        placed = {}
    if proc.returncode != 0 or not placed.get("placed"):
        raise BenchError(f"`circusmeta add` N={n} ghost={ghost_t}: exit {proc.returncode}\n"
                         f"{proc.stdout}\n{proc.stderr}")
    out["cli_add"] = wall
    asyncio.run(remove(pool, [p["node"] for p in placed["placed"]], watcher))
    cold, warm = asyncio.run(pool_calls(pool, expected))
    out["pool_first"], out["pool_second"] = cold, warm
    return out


def summarize(xs):
    xs = sorted(xs)
    if not xs:
        return None
    return {"count": len(xs), "median": statistics.median(xs), "min": xs[0], "max": xs[-1]}


def versions(python):
    code = ("import sys, zmq, circus; print(circus.__version__, zmq.__version__, "
            "zmq.zmq_version(), sys.version.split()[0])")
    try:
        out = subprocess.run([python, "-c", code], capture_output=True, text=True, timeout=30,
                             cwd=REPO).stdout.split()
        return dict(zip(("circus", "pyzmq", "libzmq", "python"), out))
    except (OSError, subprocess.TimeoutExpired):
        return {}


def main_run(a):
    become_subreaper()
    t_start = time.monotonic()
    res = {"date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
           "machine": {"nproc": os.cpu_count(),
                       "uname": " ".join(platform.uname()[i] for i in (0, 2, 4)),
                       "loadavg_start": os.getloadavg()},
           "versions": versions(a.python), "args": vars(a), "floor": [], "cases": [],
           "errors": []}
    base = tempfile.mkdtemp(prefix="metabench-")
    ctx = zmq.Context()
    try:
        nodes = [Node(k, base, a.transport, a.python, a.log_level)
                 for k in range(1, max(a.sizes) + 1)]
        t0 = now()
        for node in nodes:
            node.start()
        wait_answering(ctx, nodes, a.start_timeout)
        res["start_all_s"] = now() - t0
        log(f"{len(nodes)} circusd answering after {res['start_all_s']:.1f} s")
        cases = []
        for n in a.sizes:
            for ghost_t in [None, *a.ghost_timeouts]:
                ghost = f"tcp://127.0.0.1:{free_port()}" if ghost_t is not None else None
                label = f"n{n}" + (f"-ghost{ghost_t:g}" if ghost_t is not None else "")
                pool = write_pool(os.path.join(base, f"pool-{label}.ini"), nodes[:n],
                                  ghost_t if ghost_t is not None else a.timeout, ghost)
                cases.append({"n": n, "ghost_timeout": ghost_t, "pool": pool, "label": label,
                              "samples": {}})
        for rep in range(a.reps):
            log(f"rep {rep + 1}/{a.reps}")
            wall, proc = run_cli(a.meta, None, ["--version"], 30)
            res["floor"].append(wall)
            for case in cases:
                try:
                    sample = measure_case(case, a, rep)
                except (BenchError, subprocess.TimeoutExpired, zmq.ZMQError) as e:
                    log(f"  ! {case['label']}: {e}")
                    res["errors"].append({"case": case["label"], "rep": rep,
                                          "error": str(e)[:2000]})
                    continue
                case.setdefault("reps", []).append(rep)
                for key, value in sample.items():
                    case["samples"].setdefault(key, []).append(value)
                log(f"  {case['label']:>14}: " + ", ".join(f"{k} {v * 1000:.0f} ms"
                                                          for k, v in sample.items()))
        for case in cases:
            case.pop("pool")
            res["cases"].append(case)
        dead = [nd.name for nd in nodes if nd.proc.poll() is not None]
        if dead:
            res["errors"].append({"case": "-", "rep": None,
                                  "error": f"circusd exited during the run: {dead}"})
    finally:
        stop_all()
        ctx.term()
        if not a.keep:
            subprocess.run(["rm", "-rf", base], check=False)
        else:
            log(f"work dir kept: {base}")
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

def ms(s):
    if s is None:
        return "-"
    v = s * 1000
    return f"{v:.1f} ms" if v < 100 else f"{v:.0f} ms" if v < 1000 else f"{s:.2f} s"


def med_max(xs):
    s = summarize(xs or [])
    return "-" if s is None else f"{ms(s['median'])} (max {ms(s['max'])})"


def median(case, key):
    s = summarize(case["samples"].get(key) or [])
    return None if s is None else s["median"]


KEYS = (("cli_nodes", "`circusmeta nodes`"), ("cli_status", "`circusmeta status`"),
        ("cli_add", "`circusmeta add` (3 calls)"), ("pool_first", "Pool.call, first (connects)"),
        ("pool_second", "Pool.call, second"))


def paired_extra(base, case, key):
    """Median over the repetitions of (with the unreachable node - without), each pair
    measured in the same repetition, one right after the other."""
    by_rep = dict(zip(base.get("reps", []), base["samples"].get(key, [])))
    diffs = [x - by_rep[r] for r, x in zip(case.get("reps", []), case["samples"].get(key, []))
             if r in by_rep]
    return statistics.median(diffs) if diffs else None


def checks(res):
    """[(what, value text, target text, met)] of the targets."""
    cases = res["cases"]
    base = {c["n"]: c for c in cases if c["ghost_timeout"] is None}
    out = []
    sizes = sorted(base)
    if len(sizes) > 1:
        lo, hi = sizes[0], sizes[-1]
        for key, label in KEYS[:3]:
            a, b = median(base[lo], key), median(base[hi], key)
            if a and b:
                out.append((f"{label}: N={hi} / N={lo}", f"{b / a:.2f}x ({ms(b)} / {ms(a)})",
                            f"<= {TARGET_FANOUT_RATIO:g}x", b / a <= TARGET_FANOUT_RATIO))
        for key, label in KEYS[3:]:
            a, b = median(base[lo], key), median(base[hi], key)
            if a and b:
                out.append((f"{label}: N={hi} / N={lo} (in-process, no start-up)",
                            f"{b / a:.2f}x ({ms(b)} / {ms(a)}; {ms((b - a) / (hi - lo))} per "
                            f"extra node)", "(informational)", None))
    for c in cases:
        t = c["ghost_timeout"]
        if t is None or c["n"] not in base:
            continue
        for key, label in KEYS[:4]:
            extra = paired_extra(base[c["n"]], c, key)
            if extra is None:
                continue
            out.append((f"{label}, N={c['n']} + 1 unreachable, timeout {t:g} s: extra",
                        f"{ms(extra)} ({extra / t:.2f} x timeout)",
                        f"<= {t:g} s (+{TARGET_GHOST_SLACK:.0%})",
                        extra <= t * (1 + TARGET_GHOST_SLACK)))
        second = median(c, "pool_second")
        if second is not None:
            out.append((f"Pool.call again on the same Pool, N={c['n']} + 1 unreachable, "
                        f"timeout {t:g} s", ms(second), "< 10% of the timeout (paid once)",
                        second < 0.1 * t))
    return out


def render_md(res):
    out = []
    w = out.append
    m, v, a = res["machine"], res.get("versions", {}), res["args"]
    w("# circusmeta: fan-out wall time\n")
    w(f"- Date: {res['date']}; total run time {res.get('total_minutes', 0):.1f} min")
    w(f"- Machine: nproc={m['nproc']}, {m['uname']}, load average at start "
      f"{m['loadavg_start'][0]:.2f}, at end {m.get('loadavg_end', [0])[0]:.2f}")
    w("- Versions: " + ", ".join(f"{k} {x}" for k, x in v.items()))
    w(f"- Nodes: {max(a['sizes'])} circusd of this repository on this machine, "
      f"{a['transport']} endpoints ({'tcp://127.0.0.1, free ports' if a['transport'] == 'tcp' else 'ipc:// sockets'}), "
      f"one watcher `sl` of one `sleep 3600` each, all started first "
      f"({ms(res.get('start_all_s'))} until every one answered `nodeinfo`); pools of "
      f"N = {', '.join(map(str, a['sizes']))} of them, `[meta] timeout = {a['timeout']:g}`")
    w(f"- Unreachable node: `ghost`, tcp://127.0.0.1 on a port nobody listens on, added to "
      f"each pool with `[meta] timeout` = {', '.join(f'{t:g}' for t in a['ghost_timeouts'])} s")
    w(f"- {a['reps']} repetitions, every case once per repetition (interleaved); median "
      f"(max). CLI = the whole `{os.path.basename(a['meta'])}` process, fork to exit; "
      f"`add` asks nodeinfo and list, adds the watcher (removed again, untimed). Pool.call = "
      f"in-process `Pool.call(\"nodeinfo\")` on a fresh Pool (first: it connects too) and "
      f"again on the same Pool (second). The extra time of an unreachable node is the "
      f"median over the repetitions of (with it - without it), both measured in the same "
      f"repetition, one right after the other")
    floor = summarize(res.get("floor") or [])
    if floor:
        w(f"- Floor: `circusmeta --version` (interpreter and the CLI's imports, no node): "
          f"{ms(floor['median'])} (max {ms(floor['max'])})")
    w("")
    w("## Targets\n")
    w("| what | measured | target | met |")
    w("|---|---|---|---|")
    for what, value, target, met in checks(res):
        w(f"| {what} | {value} | {target} | "
          f"{'-' if met is None else 'yes' if met else '**no**'} |")
    w("")
    for ghost_t in [None, *a["ghost_timeouts"]]:
        cases = [c for c in res["cases"] if c["ghost_timeout"] == ghost_t]
        if not cases:
            continue
        w("## All nodes reachable\n" if ghost_t is None else
          f"## One unreachable node more, timeout {ghost_t:g} s\n")
        w("| N | " + " | ".join(label for _, label in KEYS) + " |")
        w("|---|" + "---|" * len(KEYS))
        for c in sorted(cases, key=lambda c: c["n"]):
            w(f"| {c['n']}{' + 1' if ghost_t is not None else ''} | " +
              " | ".join(med_max(c["samples"].get(k)) for k, _ in KEYS) + " |")
        w("")
    if res["errors"]:
        w("## Errors\n")
        for e in res["errors"]:
            w(f"- {e['case']} rep {e['rep']}: `{e['error'][:500]}`")
        w("")
    return "\n".join(out) + "\n"


def floats(s):
    return [float(x) for x in s.split(",") if x.strip()]


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run", help="run the benchmark")
    r.add_argument("--sizes", default="1,4,16,32",
                   type=lambda s: sorted({int(x) for x in s.split(",")}), help="pool sizes")
    r.add_argument("--reps", type=int, default=5)
    r.add_argument("--timeout", type=float, default=3.0,
                   help="[meta] timeout of the pools without an unreachable node")
    r.add_argument("--ghost-timeouts", default="1,2", type=floats,
                   help="[meta] timeout of the pools with an unreachable node")
    r.add_argument("--transport", choices=("tcp", "ipc"), default="tcp")
    r.add_argument("--python", default=sys.executable, help="the python that runs circusd")
    r.add_argument("--meta", default=os.path.join(os.path.dirname(sys.executable), "circusmeta"),
                   help="the circusmeta executable")
    r.add_argument("--start-timeout", type=float, default=120.0)
    r.add_argument("--log-level", default=None, help="passed to every circusd")
    r.add_argument("--keep", action="store_true", help="keep the work dir (configs, logs)")
    r.add_argument("--out-json", default=os.path.join(HERE, "results", "meta.json"))
    r.add_argument("--out-md", default=os.path.join(HERE, "results", "meta.md"))
    rp = sub.add_parser("report", help="re-render the Markdown from a results JSON")
    rp.add_argument("json")
    a = p.parse_args()
    if a.cmd == "report":
        with open(a.json) as f:
            sys.stdout.write(render_md(json.load(f)))
        return 0
    if not os.path.exists(a.meta):
        p.error(f"no circusmeta at {a.meta} (give --meta)")
    try:
        return main_run(a)
    except BenchError as e:
        log(f"! {e}")
        return 1


if __name__ == "__main__":
    sys.exit(main())
