#!/usr/bin/env python3
"""proxybench: ``circusmeta proxy``'s stats path, offered rate against delivered, up to its
ceiling and beyond.

The nodes are a **synthetic publisher** (a load generator, never a stand-in for circusd in a
test): N XPUB sockets in one process on tcp://127.0.0.1, each sending rounds shaped like
circusd-stats' (`--shape NxR`: R messages per round, of which R - 6 per-process ones
`nodeK/stat.sl.PID`, then the watcher's aggregate, circusd and circusd-stats, the circus
aggregate, the sockets' totals and the node view), node-prefixed topics, payloads of about 370
bytes (`--payload`), each round's phase spread over the interval, `sndhwm` 20,000 as in
circusd-stats. A node's XPUB answers a `stat.` subscription (the proxy's probe for 0.19 nodes)
with a copy as circusd-stats does. The interval is N x R / rate.

For each point (shape, offered rate, variant, repetition; variants and rates interleaved):
the generator, the real `circusmeta --pool P proxy --no-events` of the variant, and one
counting subscriber (SUB to the proxy, its own process). Every payload starts with the time
its round was sent: the subscriber counts, per message sent within the window (`--window`
seconds, after `--warmup`), whether it arrived within `--grace` seconds after the window, and
its lag (arrival - sending time). Per-process messages and aggregates are counted apart: a
degraded proxy drops the former by design (and says so in `<node>/stat.degraded`, counted),
never the latter. The proxy's CPU (utime + stime of /proc/PID/stat, every thread) over the
window, its VmRSS at the end and VmHWM (peak); the generator's and subscriber's CPU too.

Variants: `new` (this tree) and, with `--baseline-ref REF`, that commit exported with `git
archive` and run with the same python (the proxy of the review: one awaited recv per message).
`--stall S` stops the proxy (SIGSTOP) for S seconds in the middle of each window: what it holds
meanwhile is its bounded queue.

Usage:
  .venv/bin/python benchmarks/proxybench.py run --out-json benchmarks/results/proxy.json \\
      --out-md benchmarks/results/proxy.md [--baseline-ref 9de7954~1]
  .venv/bin/python benchmarks/proxybench.py run --reps 1 --rates 5000,20000 --window 3  # smoke
  .venv/bin/python benchmarks/proxybench.py report benchmarks/results/proxy.json

Every wait has a deadline; every process started is stopped by pid (SIGTERM, then SIGKILL) in
a finally block; the exit code is 1 when a run recorded errors.
"""
from __future__ import annotations

import argparse
import array
import datetime
import json
import os
import platform
import select
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time

import zmq

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
CLK_TCK = os.sysconf("SC_CLK_TCK")
FIXED = 6                      # messages of a round that are not per-process
STARTED: list[subprocess.Popen] = []


def log(*a):
    print(time.strftime("%H:%M:%S"), *a, file=sys.stderr, flush=True)


class BenchError(Exception):
    pass


# -- /proc ------------------------------------------------------------------------------------

def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat", "rb") as f:
        rest = f.read().rsplit(b")", 1)[1].split()
    return (int(rest[11]) + int(rest[12])) / CLK_TCK


def memory(pid):
    """(VmRSS, VmHWM) in bytes."""
    out = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                out[key] = int(value.split()[0]) * 1024
    return out.get("VmRSS"), out.get("VmHWM")


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def stop(proc, timeout=10.0):
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


# -- the generator (its own process) ------------------------------------------------------------

def _body(node, t, pids, pad):
    return b'{"t": %17.6f, "node": "%s", "pid": %s, "pad": "%s"}' % (t, node, pids, pad)


def main_gen(a):
    ctx = zmq.Context()
    ctx.set(zmq.MAX_SOCKETS, a.nodes + 64)
    socks, endpoints = [], []
    for _ in range(a.nodes):
        s = ctx.socket(zmq.XPUB)
        s.linger = 0
        s.sndhwm = 20000
        port = s.bind_to_random_port("tcp://127.0.0.1")
        socks.append(s)
        endpoints.append(f"tcp://127.0.0.1:{port}")
    print(json.dumps({"endpoints": endpoints}), flush=True)
    window = {}

    def read_window():
        line = sys.stdin.readline().split()
        if len(line) == 3 and line[0] == "window":
            window["start"], window["end"] = float(line[1]), float(line[2])
    threading.Thread(target=read_window, daemon=True).start()
    procs = a.per_round - FIXED
    base = len(b'{"t": 1765000000.000000, "node": "node0", "pid": 1000, "pad": ""}')
    pad = b"x" * max(0, a.payload - base)
    names = [b"node%d" % k for k in range(a.nodes)]
    rounds = []
    for k, name in enumerate(names):
        topics = [(name + b"/stat.sl.%d" % (1000 + i), b"%d" % (1000 + i), True)
                  for i in range(procs)]
        topics.append((name + b"/stat.sl", b"[%s]" % b", ".join(b"%d" % (1000 + i)
                                                              for i in range(procs)), False))
        topics += [(name + b"/stat.circus.900", b"900", True),
                   (name + b"/stat.circus.901", b"901", True),
                   (name + b"/stat.circus", b"[900, 901]", False),
                   (name + b"/stat.sockets", b"[]", False),
                   (name + b"/stat.node", b"[]", False)]
        rounds.append(topics)
    legacy = [False] * a.nodes
    dt = a.interval / a.nodes
    sent = sent_detail = sent_agg = total = 0
    start = time.time() + 0.2
    i = 0
    end = None
    while True:
        if end is None and "end" in window:
            end = window["end"] + 0.5
        due = start + i * dt
        now = time.time()
        if end is not None and now >= end:
            break
        if due > now:
            time.sleep(due - now)
        k = i % a.nodes
        sock = socks[k]
        if i // a.nodes % 16 == 0:                # the subscriptions, now and then
            try:
                while True:
                    frame = sock.recv(zmq.NOBLOCK)
                    if frame[1:].startswith(b"stat."):
                        legacy[k] = frame[0] == 1
            except zmq.Again:
                pass
        t = time.time()
        in_window = window.get("start", 1e300) <= t < window.get("end", 0)
        send = sock.send
        node = names[k]
        for topic, pids, detail in rounds[k]:
            send(topic, zmq.SNDMORE)
            send(_body(node, t, pids, pad))
        if legacy[k]:
            send(b"stat.circus", zmq.SNDMORE)
            send(_body(node, t, b"[900, 901]", pad))
        total += len(rounds[k])
        if in_window:
            sent += len(rounds[k])
            sent_detail += procs + 2
            sent_agg += len(rounds[k]) - procs - 2
        i += 1
    result = {"sent": sent, "sent_detail": sent_detail, "sent_agg": sent_agg, "total": total,
              "cpu": time.process_time(), "behind": max(0.0, time.time() - (start + i * dt))}
    print(json.dumps(result), flush=True)
    for s in socks:
        s.close(0)
    ctx.term()
    return 0


# -- the subscriber (its own process) -----------------------------------------------------------

def main_sub(a):
    ctx = zmq.Context()
    s = ctx.socket(zmq.SUB)
    s.linger = 0
    s.rcvhwm = 0
    s.setsockopt(zmq.SUBSCRIBE, b"")
    s.connect(a.endpoint)
    lags = array.array("d")
    got = detail = agg = notices = 0
    degraded_nodes, saturated, not_forwarded = set(), 0, 0
    ready = False
    recv, NOBLOCK = s.recv, zmq.NOBLOCK          # two recv: a third of recv_multipart's cost
    start, end, until = a.start, a.end, a.end + a.grace
    deadline = time.time() + a.ready_timeout
    while True:
        now = time.time()
        if now > until:
            break
        if not ready and now > deadline:
            print(json.dumps({"error": "no message from the proxy"}), flush=True)
            return 1
        if not s.poll(100):
            continue
        while True:
            try:
                topic = recv(NOBLOCK)
            except zmq.Again:
                break
            body = recv(NOBLOCK)                       # every message has two frames
            now = time.time()
            if not ready:
                ready = True
                print("ready", flush=True)
            if topic.endswith(b"/stat.degraded"):
                data = json.loads(body)
                if data.get("degraded") and start <= now < until:
                    notices += 1
                    degraded_nodes.add(data.get("node"))
                    saturated += bool(data.get("saturated"))
                    not_forwarded += data.get("dropped", 0)
                continue
            try:
                t = float(body[6:23])
            except ValueError:
                continue
            if start <= t < end:
                got += 1
                lags.append(now - t)
                _, dot, last = topic.rpartition(b".")
                if dot and last.isdigit() and b'"pid": [' not in body:
                    detail += 1
                else:
                    agg += 1
    lags_sorted = sorted(lags)

    def pct(p):
        return lags_sorted[min(len(lags_sorted) - 1, int(p * len(lags_sorted)))] \
            if lags_sorted else None
    print(json.dumps({"got": got, "got_detail": detail, "got_agg": agg, "notices": notices,
                      "degraded_nodes": len(degraded_nodes), "saturated_notices": saturated,
                      "announced_not_forwarded": not_forwarded,
                      "lag_p50": pct(0.5), "lag_p99": pct(0.99),
                      "lag_max": lags_sorted[-1] if lags_sorted else None,
                      "cpu": time.process_time()}), flush=True)
    return 0


# -- the harness ----------------------------------------------------------------------------------

def _readline(proc, timeout, what):
    ready, _, _ = select.select([proc.stdout], [], [], timeout)
    if not ready:
        raise BenchError(f"no {what} within {timeout} s")
    line = proc.stdout.readline()
    if not line:
        raise BenchError(f"{what}: the process exited ({proc.poll()})")
    return line


def export_baseline(ref, into):
    os.makedirs(into, exist_ok=True)
    archive = subprocess.run(["git", "-C", REPO, "archive", ref, "circus", "circusmeta"],
                             capture_output=True, check=True).stdout
    subprocess.run(["tar", "-x", "-C", into], input=archive, check=True)
    return subprocess.run(["git", "-C", REPO, "rev-parse", "--short", ref], capture_output=True,
                          text=True, check=True).stdout.strip()


def run_point(a, variant, root, nodes, per_round, rate, wd):
    interval = nodes * per_round / rate
    me = [sys.executable, os.path.abspath(__file__)]
    gen = subprocess.Popen([*me, "_gen", "--nodes", str(nodes), "--per-round", str(per_round),
                            "--interval", repr(interval), "--payload", str(a.payload)],
                           stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    STARTED.append(gen)
    proxy = sub = None
    errlog = open(os.path.join(wd, "proxy.log"), "w+")
    try:
        endpoints = json.loads(_readline(gen, 30, "generator endpoints"))["endpoints"]
        out = f"tcp://127.0.0.1:{free_port()}"
        pool = os.path.join(wd, "pool.ini")
        with open(pool, "w") as f:
            f.write(f"[meta]\nstats_endpoint = {out}\npubsub_endpoint = "
                    f"tcp://127.0.0.1:{free_port()}\n\n")
            for k, e in enumerate(endpoints):
                f.write(f"[node:node{k}]\nendpoint = tcp://127.0.0.1:9\nstats_endpoint = {e}\n")
        args = ["--pool", pool, "proxy", "--no-events"]
        if variant == "new" and a.max_rate:
            args += ["--max-rate", str(a.max_rate)]
        env = dict(os.environ, PYTHONPATH=root)
        proxy = subprocess.Popen([sys.executable, "-m", "circusmeta.cli", *args], cwd=root,
                                 env=env, stdin=subprocess.DEVNULL, stdout=errlog,
                                 stderr=subprocess.STDOUT)
        STARTED.append(proxy)
        deadline = time.monotonic() + 60
        while True:
            errlog.seek(0)
            text = errlog.read()
            if text.count(": stats connected") >= nodes:
                break
            if proxy.poll() is not None:
                raise BenchError(f"the proxy exited ({proxy.returncode}): {text[-2000:]}")
            if time.monotonic() > deadline:
                raise BenchError(f"the proxy did not connect to {nodes} nodes in 60 s")
            time.sleep(0.1)
        t0 = time.time() + a.warmup
        t1 = t0 + a.window
        sub = subprocess.Popen([*me, "_sub", "--endpoint", out, "--start", repr(t0), "--end",
                                repr(t1), "--grace", str(a.grace), "--ready-timeout",
                                str(a.warmup)], stdout=subprocess.PIPE, text=True)
        STARTED.append(sub)
        gen.stdin.write(f"window {t0!r} {t1!r}\n")
        gen.stdin.flush()
        if _readline(sub, a.warmup + 5, "subscriber ready").strip() != "ready":
            raise BenchError("the subscriber heard nothing")
        time.sleep(max(0.0, t0 - time.time()))
        load = os.getloadavg()[0]
        c0 = cpu_seconds(proxy.pid)
        if a.stall:
            time.sleep(a.window / 3)
            proxy.send_signal(signal.SIGSTOP)
            time.sleep(a.stall)
            proxy.send_signal(signal.SIGCONT)
        time.sleep(max(0.0, t1 - time.time()))
        c1 = cpu_seconds(proxy.pid)
        rss, hwm = memory(proxy.pid)
        g = json.loads(_readline(gen, 30, "generator result"))
        s = json.loads(_readline(sub, a.grace + 30, "subscriber result"))
        if "error" in s:
            raise BenchError(s["error"])
        gen.wait(10)
        sub.wait(10)
        errlog.seek(0)
        text = errlog.read()
        return {"variant": variant, "nodes": nodes, "per_round": per_round, "rate": rate,
                "offered": g["sent"] / a.window, "sent": g["sent"],
                "sent_detail": g["sent_detail"], "sent_agg": g["sent_agg"],
                "delivered": s["got"] / a.window, "got": s["got"], "got_detail": s["got_detail"],
                "got_agg": s["got_agg"], "lost": g["sent"] - s["got"],
                "lost_agg": g["sent_agg"] - s["got_agg"],
                "lost_detail": g["sent_detail"] - s["got_detail"],
                "notices": s["notices"], "degraded_nodes": s["degraded_nodes"],
                "saturated_notices": s["saturated_notices"],
                "lag_p50": s["lag_p50"], "lag_p99": s["lag_p99"], "lag_max": s["lag_max"],
                "proxy_cpu": (c1 - c0) / a.window, "proxy_rss": rss, "proxy_hwm": hwm,
                "gen_cpu": g["cpu"], "sub_cpu": s["cpu"], "gen_behind": g["behind"],
                "load": load, "degraded_log": text.count("stats degraded:"),
                "stall": a.stall}
    finally:
        for p in (sub, proxy, gen):
            if p is not None:
                stop(p)
        errlog.close()


def main_run(a):
    if os.getloadavg()[0] > a.max_load:
        log(f"load {os.getloadavg()[0]:.1f} is above --max-load {a.max_load}: not starting")
        return 1
    base = tempfile.mkdtemp(prefix="proxybench-")
    variants = {"new": REPO}
    versions = {"new": subprocess.run(["git", "-C", REPO, "rev-parse", "--short", "HEAD"],
                                      capture_output=True, text=True).stdout.strip()}
    if a.baseline_ref:
        versions["baseline"] = export_baseline(a.baseline_ref, os.path.join(base, "baseline"))
        variants["baseline"] = os.path.join(base, "baseline")
    res = {"date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
           "machine": {"nproc": os.cpu_count(), "python": platform.python_version(),
                       "pyzmq": zmq.__version__, "libzmq": zmq.zmq_version(),
                       "uname": " ".join(platform.uname()[i] for i in (0, 2, 4)),
                       "loadavg_start": os.getloadavg()},
           "versions": versions, "args": vars(a), "points": [], "errors": []}
    try:
        for rep in range(a.reps):
            for nodes, per_round in a.shapes:
                for rate in a.rates:
                    for variant in (sorted(variants) if rep % 2 == 0
                                    else sorted(variants, reverse=True)):
                        if variant == "baseline" and rate > a.baseline_max_rate:
                            continue
                        wd = tempfile.mkdtemp(dir=base, prefix=f"{variant}-{nodes}x{per_round}-")
                        log(f"rep {rep + 1}/{a.reps} {variant} {nodes}x{per_round} "
                            f"at {rate:,} msg/s (load {os.getloadavg()[0]:.1f})")
                        try:
                            p = run_point(a, variant, variants[variant], nodes, per_round, rate,
                                          wd)
                            p["rep"] = rep
                            res["points"].append(p)
                            log(f"    offered {p['offered']:,.0f} delivered "
                                f"{p['delivered']:,.0f} lost agg {p['lost_agg']} detail "
                                f"{p['lost_detail']} lag p50/p99 {fmt_s(p['lag_p50'])}/"
                                f"{fmt_s(p['lag_p99'])} cpu {p['proxy_cpu'] * 100:.0f} % "
                                f"rss {mb(p['proxy_rss'])} peak {mb(p['proxy_hwm'])} "
                                f"notices {p['notices']}")
                        except (BenchError, OSError, ValueError, zmq.ZMQError) as exc:
                            log(f"  ! {exc}")
                            res["errors"].append({"variant": variant, "nodes": nodes,
                                                  "rate": rate, "rep": rep,
                                                  "error": str(exc)[:2000]})
    finally:
        for p in STARTED:
            if p.poll() is None:
                stop(p)
        if not a.keep:
            subprocess.run(["rm", "-rf", base], check=False)
    res["machine"]["loadavg_end"] = os.getloadavg()
    for path in (a.out_json, a.out_md):
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(a.out_json, "w") as f:
        json.dump(res, f, indent=1)
    with open(a.out_md, "w") as f:
        f.write(render_md(res))
    log(f"wrote {a.out_json} and {a.out_md}")
    return 1 if res["errors"] else 0


# -- the report -----------------------------------------------------------------------------------

def fmt_s(s):
    if s is None:
        return "-"
    return f"{s * 1000:.1f} ms" if s < 0.1 else f"{s * 1000:.0f} ms" if s < 1 else f"{s:.2f} s"


def mb(n):
    return "-" if n is None else f"{n / 1e6:.0f} MB"


def med(xs, f):
    xs = [x for x in xs if x is not None]
    if not xs:
        return "-"
    m = f(statistics.median(xs))
    return m if len(xs) == 1 or min(xs) == max(xs) else f"{m} [{f(min(xs))}–{f(max(xs))}]"


def render_md(res):
    out = [f"# circusmeta proxy: offered vs delivered ({res['date']})", "",
           f"Versions: {', '.join(f'{k} {v}' for k, v in res['versions'].items())}; "
           f"{res['machine']['uname']}, {res['machine']['nproc']} CPUs, Python "
           f"{res['machine']['python']}, pyzmq {res['machine']['pyzmq']}, libzmq "
           f"{res['machine']['libzmq']}; load average at start {res['machine']['loadavg_start']}"
           f", at end {res['machine']['loadavg_end']}.", "",
           f"Window {res['args']['window']} s, grace {res['args']['grace']} s, payload "
           f"{res['args']['payload']} bytes, max_rate of new: "
           f"{res['args']['max_rate'] or 'default'}"
           + (f", proxy stopped {res['args']['stall']} s in each window" if res['args']['stall']
              else "") + ". Median [min–max] over the repetitions.", "",
           "| variant | nodes × msgs/round | nominal msg/s | offered msg/s | delivered msg/s | "
           "aggregates lost | per-process not delivered | notices (nodes) | lag p50 / p99 / max "
           "| proxy CPU | proxy RSS end / peak | load |",
           "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    keys = sorted({(p["variant"], p["nodes"], p["per_round"], p["rate"]) for p in res["points"]},
                  key=lambda k: (k[1], k[2], k[3], k[0]))
    for key in keys:
        ps = [p for p in res["points"]
              if (p["variant"], p["nodes"], p["per_round"], p["rate"]) == key]

        def col(name, f):
            return med([p[name] for p in ps], f)
        num = lambda x: f"{x:,.0f}"          # noqa: E731
        out.append(
            f"| {key[0]} | {key[1]} × {key[2]} | {key[3]:,} | {col('offered', num)} | "
            f"{col('delivered', num)} | {col('lost_agg', num)} | "
            f"{col('lost_detail', num)} of {col('sent_detail', num)} | "
            f"{col('notices', num)} ({col('degraded_nodes', num)}) | "
            f"{col('lag_p50', fmt_s)} / {col('lag_p99', fmt_s)} / {col('lag_max', fmt_s)} | "
            f"{col('proxy_cpu', lambda x: f'{x * 100:.0f} %')} | "
            f"{col('proxy_rss', mb)} / {col('proxy_hwm', mb)} | "
            f"{col('load', lambda x: f'{x:.1f}')} |")
    if res["errors"]:
        out += ["", "Errors:", ""] + [f"- {e['variant']} {e['nodes']} nodes at {e['rate']:,}: "
                                      f"{e['error'][:300]}" for e in res["errors"]]
    return "\n".join(out) + "\n"


def shapes(text):
    out = []
    for part in text.split(","):
        n, _, r = part.partition("x")
        out.append((int(n), int(r)))
        if int(r) <= FIXED:
            raise argparse.ArgumentTypeError(f"{part}: a round has more than {FIXED} messages")
    return out


def ints(text):
    return [int(x) for x in text.split(",")]


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sp = p.add_subparsers(dest="cmd", required=True)
    r = sp.add_parser("run")
    r.add_argument("--shapes", type=shapes, default=shapes("200x8"))
    r.add_argument("--rates", type=ints,
                   default=ints("12800,25600,50000,100000,130000,160000"))
    r.add_argument("--reps", type=int, default=3)
    r.add_argument("--window", type=float, default=10.0)
    r.add_argument("--warmup", type=float, default=3.0)
    r.add_argument("--grace", type=float, default=5.0)
    r.add_argument("--payload", type=int, default=370)
    r.add_argument("--max-rate", type=int, default=0, help="new's --max-rate (0: its default)")
    r.add_argument("--stall", type=float, default=0.0)
    r.add_argument("--baseline-ref", default="")
    r.add_argument("--baseline-max-rate", type=int, default=50000)
    r.add_argument("--max-load", type=float, default=4.0)
    r.add_argument("--keep", action="store_true")
    r.add_argument("--out-json", default=os.path.join(REPO, "benchmarks/results/proxy.json"))
    r.add_argument("--out-md", default=os.path.join(REPO, "benchmarks/results/proxy.md"))
    rp = sp.add_parser("report")
    rp.add_argument("json")
    g = sp.add_parser("_gen")
    g.add_argument("--nodes", type=int, required=True)
    g.add_argument("--per-round", type=int, required=True)
    g.add_argument("--interval", type=float, required=True)
    g.add_argument("--payload", type=int, default=370)
    s = sp.add_parser("_sub")
    s.add_argument("--endpoint", required=True)
    s.add_argument("--start", type=float, required=True)
    s.add_argument("--end", type=float, required=True)
    s.add_argument("--grace", type=float, required=True)
    s.add_argument("--ready-timeout", type=float, required=True)
    a = p.parse_args(argv)
    if a.cmd == "run":
        return main_run(a)
    if a.cmd == "report":
        with open(a.json) as f:
            sys.stdout.write(render_md(json.load(f)))
        return 0
    return main_gen(a) if a.cmd == "_gen" else main_sub(a)


if __name__ == "__main__":
    sys.exit(main())
