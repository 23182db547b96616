#!/usr/bin/env python3
"""fleetbench: circusmeta at fleet size — fan-out wall time and CPU, missing nodes, rolling
operations in batches, start-up against circusctl (see benchmarks/README.md, "fleetbench").

Three kinds of runs, each a separate command (never two at once: the machine has 2 cores):

  startup  ``circusctl --version`` / ``circusmeta --version`` and ``status`` over one real
           circusd with either tool: wall time from fork to exit, interleaved.
  ghosts   pools of up to 1,000 nodes answered by ONE load-generator process
           (``benchmarks/ghostnodes.py``: not circusd, see its docstring), for sizes beyond what
           fits on this machine as real circusd: ``circusmeta status`` wall and CPU (the child's
           user+system time from wait4), the in-process ``Pool.call`` on a fresh and on an open
           Pool, one dead + one black-hole node added (extra wall, against ``[meta] timeout``),
           a black hole on an open Pool (the second call), and ``restart --rolling --batch B``.
  real     N real circusd of this repository (``metabench.Node``: one watcher ``sl``), then the
           same fan-out and rolling measurements at each size. 200 nodes are several GB: run it
           briefly, once, with the machine otherwise quiet.

Every block notes the 1-minute load average at its start and end. Medians with [min-max].

  .venv/bin/python benchmarks/fleetbench.py startup --reps 10
  .venv/bin/python benchmarks/fleetbench.py ghosts --sizes 1,100,1000 --reps 5
  .venv/bin/python benchmarks/fleetbench.py real --sizes 1,32,100,200 --reps 3
  (each with --out-json PATH; `report PATH...` prints the Markdown of saved results)
"""
from __future__ import annotations

import argparse
import asyncio
import datetime
import json
import os
import resource
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path.insert(0, REPO)
sys.path.insert(0, HERE)

BIN = os.path.dirname(sys.executable)
META = os.path.join(BIN, "circusmeta")
CTL = os.path.join(BIN, "circusctl")
now = time.perf_counter


def log(*a):
    print(time.strftime("%H:%M:%S"), *a, file=sys.stderr, flush=True)


def load() -> float:
    return round(os.getloadavg()[0], 2)


def stats(xs):
    xs = sorted(xs)
    return {"median": statistics.median(xs), "min": xs[0], "max": xs[-1], "n": len(xs)} \
        if xs else None


def timed(argv, deadline=120, **kw):
    """(wall s, cpu s of the child, CompletedProcess)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = now()
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=deadline,
                          stdin=subprocess.DEVNULL, cwd=REPO, **kw)
    wall = now() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu, proc


def subset(pool_text_nodes, n, path, timeout, extra=""):
    with open(path, "w") as f:
        f.write(f"[meta]\ntimeout = {timeout:g}\n\n" + "\n".join(pool_text_nodes[:n]) + extra)
    return path


def read_nodes(pool_path):
    """The ``[node:...]`` sections of a pool file, one string each."""
    text = open(pool_path).read()
    parts = text.split("\n[node:")[1:]
    return ["[node:" + p.strip() + "\n" for p in parts]


class BlackHole:
    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.endpoint = f"tcp://127.0.0.1:{self.sock.getsockname()[1]}"
        self.conns = []
        self.stop = threading.Event()
        threading.Thread(target=self._run, daemon=True).start()

    def _run(self):
        self.sock.settimeout(0.2)
        while not self.stop.is_set():
            try:
                self.conns.append(self.sock.accept()[0])
            except OSError:
                pass

    def close(self):
        self.stop.set()
        for c in self.conns:
            c.close()
        self.sock.close()


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# -- the measurements on a pool ----------------------------------------------------------------

def pool_inprocess(path):
    """(fresh first call wall, its cpu, open second call wall, its cpu) of Pool.call status."""
    from circusmeta import Pool

    async def go():
        c0, t0 = time.process_time(), now()
        async with Pool.from_file(path) as p:
            first = await p.call("status")
            c1, t1 = time.process_time(), now()
            second = await p.call("status")
            c2, t2 = time.process_time(), now()
        bad = [n for n, r in {**first, **second}.items() if not r.ok]
        if bad:
            raise RuntimeError(f"Pool.call: not ok on {bad[:5]}")
        return t1 - t0, c1 - c0, t2 - t1, c2 - c1
    return asyncio.run(go())


def black_hole_open_pool(path, hole, timeout):
    """The second call of an open Pool with a black-hole node: its extra wall time."""
    from circusmeta import Pool

    async def go():
        async with Pool.from_file(path) as p:
            await p.call("status")
            t = now()
            r = await p.call("status")
            return now() - t, r["hole"].state
    return asyncio.run(go())


def fanout_block(nodes, sizes, reps, tmp, kind, timeout=3.0, rolling=()):
    """Interleaved samples of every measurement at every size."""
    res = {"kind": kind, "load_start": load(), "sizes": {}}
    samples = {n: {} for n in sizes}

    def add(n, key, value):
        samples[n].setdefault(key, []).append(value)
    pools = {n: subset(nodes, n, os.path.join(tmp, f"pool-{n}.ini"), timeout) for n in sizes}
    hole = BlackHole()
    try:
        ghost_pools = {n: subset(nodes, n, os.path.join(tmp, f"pool-{n}-ghosts.ini"), 1.0,
                                 f"\n[node:dead]\nendpoint = tcp://127.0.0.1:{free_port()}\n"
                                 f"\n[node:hole]\nendpoint = {hole.endpoint}\n")
                       for n in sizes}
        same_t = {n: subset(nodes, n, os.path.join(tmp, f"pool-{n}-t1.ini"), 1.0)
                  for n in sizes}
        for rep in range(reps):
            log(f"{kind} rep {rep + 1}/{reps} (load {load()})")
            for n in sizes:
                wall, cpu, proc = timed([META, "--pool", pools[n], "status"])
                if proc.returncode != 0:
                    raise RuntimeError(f"status N={n}: exit {proc.returncode}\n"
                                       f"{proc.stderr[-2000:]}")
                add(n, "cli_status_wall", wall)
                add(n, "cli_status_cpu", cpu)
                fresh, fresh_cpu, warm, warm_cpu = pool_inprocess(pools[n])
                add(n, "pool_fresh_wall", fresh)
                add(n, "pool_fresh_cpu", fresh_cpu)
                add(n, "pool_open_wall", warm)
                add(n, "pool_open_cpu", warm_cpu)
                base, _, _ = timed([META, "--pool", same_t[n], "status"])
                wall, _, proc = timed([META, "--pool", ghost_pools[n], "status"])
                if proc.returncode != 4:
                    raise RuntimeError(f"status N={n}+ghosts: exit {proc.returncode}\n"
                                       f"{proc.stderr[-2000:]}")
                add(n, "ghosts_extra_wall", wall - base)
                extra, state = black_hole_open_pool(ghost_pools[n], hole, 1.0)
                if state != "unresponsive":
                    raise RuntimeError(f"black hole on an open pool: {state}")
                add(n, "hole_open_pool_second_call", extra)
            for n, batch in rolling:
                wall, cpu, proc = timed([META, "--pool", pools[n], "restart", "--rolling", "sl",
                                         "--all", "--batch", str(batch)], deadline=600)
                if proc.returncode != 0:
                    raise RuntimeError(f"rolling N={n} batch {batch}: exit {proc.returncode}\n"
                                       f"{proc.stdout[-1500:]}\n{proc.stderr[-1500:]}")
                samples.setdefault(f"rolling {n} b{batch}", {}).setdefault("wall", []).append(wall)
                samples[f"rolling {n} b{batch}"].setdefault("cpu", []).append(cpu)
    finally:
        hole.close()
    res["load_end"] = load()
    res["sizes"] = {str(n): {k: stats(v) for k, v in s.items()} for n, s in samples.items()}
    return res


# -- runs --------------------------------------------------------------------------------------

def run_ghosts(a):
    tmp = tempfile.mkdtemp(prefix="fleetbench-")
    pool = os.path.join(tmp, "ghosts.ini")
    n_max = max(a.sizes)
    gen = subprocess.Popen([sys.executable, os.path.join(HERE, "ghostnodes.py"), "--nodes",
                            str(n_max), "--pool-out", pool, "--step-ms", str(a.step_ms),
                            "--max-seconds", str(a.max_seconds)],
                           stdout=subprocess.PIPE, text=True, cwd=REPO)
    try:
        line = gen.stdout.readline()
        if not line.startswith("ready"):
            raise RuntimeError(f"ghostnodes did not start: {line!r}")
        nodes = read_nodes(pool)
        rolling = [(n, b) for n, b in a.rolling if n <= n_max]
        res = fanout_block(nodes, a.sizes, a.reps, tmp, "ghosts", rolling=rolling)
        res["step_ms"] = a.step_ms
        return res
    finally:
        gen.send_signal(signal.SIGTERM)
        try:
            gen.wait(20)
        except subprocess.TimeoutExpired:
            gen.kill()
            gen.wait(10)


def run_real(a):
    import zmq

    from metabench import Node, become_subreaper, stop_all, wait_answering
    become_subreaper()
    tmp = tempfile.mkdtemp(prefix="fleetbench-real-")
    n_max = max(a.sizes)
    ctx = zmq.Context()
    try:
        started = [Node(k, tmp, "tcp", sys.executable, "warning") for k in range(1, n_max + 1)]
        t0 = now()
        for k, node in enumerate(started):
            node.start()
            if k % 4 == 3:                      # 4 at a time, as the review did
                time.sleep(0.3)
        wait_answering(ctx, started, a.start_timeout)
        log(f"{n_max} circusd answering after {now() - t0:.1f} s (load {load()})")
        nodes = [f"[node:{n.name}]\nendpoint = {n.endpoint}\n" for n in started]
        rolling = [(n, b) for n, b in a.rolling if n <= n_max]
        res = fanout_block(nodes, a.sizes, a.reps, tmp, "real", rolling=rolling)
        res["start_s"] = now() - t0
        return res
    finally:
        ctx.term()
        stop_all()


def run_startup(a):
    import zmq  # noqa: F401  (the node's own imports are not measured)

    from metabench import Node, become_subreaper, stop_all, wait_answering
    become_subreaper()
    tmp = tempfile.mkdtemp(prefix="fleetbench-startup-")
    ctx = __import__("zmq").Context()
    node = Node(1, tmp, "tcp", sys.executable, "warning")
    try:
        node.start()
        wait_answering(ctx, [node], 60)
        pool = subset([f"[node:{node.name}]\nendpoint = {node.endpoint}\n"], 1,
                      os.path.join(tmp, "pool.ini"), 3.0)
        cases = {"circusctl --version": [CTL, "--version"],
                 "circusmeta --version": [META, "--version"],
                 "circusctl status (1 node)": [CTL, "--endpoint", node.endpoint, "status"],
                 "circusmeta status (1 node)": [META, "--pool", pool, "status"],
                 "python -c pass": [sys.executable, "-c", "pass"]}
        samples = {k: [] for k in cases}
        res = {"kind": "startup", "load_start": load()}
        for argv in cases.values():                 # warm-up
            timed(argv)
        for rep in range(a.reps):
            for k, argv in cases.items():
                wall, _, proc = timed(argv)
                if proc.returncode != 0:
                    raise RuntimeError(f"{k}: exit {proc.returncode}\n{proc.stderr}")
                samples[k].append(wall)
        res["load_end"] = load()
        res["cases"] = {k: stats(v) for k, v in samples.items()}
        return res
    finally:
        ctx.term()
        stop_all()


# -- text ----------------------------------------------------------------------------------------

def fmt(s, scale=1000.0, digits=0):
    if not s:
        return "-"
    f = f"{{:.{digits}f}}"
    return f"{f.format(s['median'] * scale)} [{f.format(s['min'] * scale)}–" \
           f"{f.format(s['max'] * scale)}]"


def render(res):
    out = [f"### {res['kind']} ({res.get('date', '')}, load {res['load_start']} → "
           f"{res['load_end']})", ""]
    if res["kind"] == "startup":
        out += ["| command | wall ms |", "|---|---|"]
        out += [f"| `{k}` | {fmt(v)} |" for k, v in res["cases"].items()]
        return "\n".join(out) + "\n"
    sizes = {k: v for k, v in res["sizes"].items() if not k.startswith("rolling")}
    out += ["| N | `status` CLI wall ms | CLI CPU ms | CPU per extra node ms | Pool fresh ms | "
            "Pool open ms (CPU) | +dead+hole (T = 1 s) | hole, open Pool 2nd call |",
            "|---|---|---|---|---|---|---|---|"]
    one = sizes.get("1", {}).get("cli_status_cpu")
    for n, s in sizes.items():
        cpu = s["cli_status_cpu"]
        extra = f"{(cpu['median'] - one['median']) * 1000 / (int(n) - 1):.3f}" \
            if one and int(n) > 1 else "-"
        out.append(f"| {n} | {fmt(s['cli_status_wall'])} | {fmt(cpu)} | "
                   f"{extra} | {fmt(s['pool_fresh_wall'])} | "
                   f"{fmt(s['pool_open_wall'])} ({fmt(s['pool_open_cpu'])}) | "
                   f"{fmt(s['ghosts_extra_wall'], 1, 2)} s | "
                   f"{fmt(s['hole_open_pool_second_call'])} ms |")
    rolls = {k: v for k, v in res["sizes"].items() if k.startswith("rolling")}
    if rolls:
        out += ["", "| rolling restart | CLI wall s | CLI CPU s |", "|---|---|---|"]
        out += [f"| {k} | {fmt(v['wall'], 1, 2)} | {fmt(v['cpu'], 1, 2)} |"
                for k, v in rolls.items()]
    return "\n".join(out) + "\n"


def pairs(text):
    return [tuple(int(x) for x in p.split(":")) for p in text.split(",") if p]


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="what", required=True)
    for name in ("startup", "ghosts", "real"):
        s = sub.add_parser(name)
        s.add_argument("--reps", type=int, default={"startup": 15, "ghosts": 5}.get(name, 3))
        s.add_argument("--out-json")
        if name != "startup":
            s.add_argument("--sizes", type=lambda t: [int(x) for x in t.split(",")],
                           default=[1, 100, 1000] if name == "ghosts" else [1, 32, 100, 200])
            s.add_argument("--rolling", type=pairs,
                           default=pairs("1000:50,200:10" if name == "ghosts"
                                         else "100:10,200:10,200:50"),
                           help="N:BATCH,... rolling restarts to time")
        if name == "ghosts":
            s.add_argument("--step-ms", type=float, default=20.0)
            s.add_argument("--max-seconds", type=float, default=1800.0)
        if name == "real":
            s.add_argument("--start-timeout", type=float, default=300.0)
    r = sub.add_parser("report")
    r.add_argument("json", nargs="+")
    a = p.parse_args()
    if a.what == "report":
        for path in a.json:
            print(render(json.load(open(path))))
        return 0
    # as `make bench`: every module compiled first (a missing .pyc is compiled at each start)
    subprocess.run([sys.executable, "-m", "compileall", "-q", "circus", "circusmeta"], cwd=REPO,
                   check=True)
    res = {"startup": run_startup, "ghosts": run_ghosts, "real": run_real}[a.what](a)
    res["date"] = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    res["args"] = {k: v for k, v in vars(a).items() if k != "what"}
    if a.out_json:
        os.makedirs(os.path.dirname(os.path.abspath(a.out_json)), exist_ok=True)
        with open(a.out_json, "w") as f:
            json.dump(res, f, indent=1)
    print(render(res))
    return 0


if __name__ == "__main__":
    sys.exit(main())
