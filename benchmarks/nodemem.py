#!/usr/bin/env python3
"""nodemem: what one node costs in memory, process by process, side by side.

A node is a daemon with N ``sleep`` children and its stats publisher where it has one: ours
(circusd, its keeper, circusd-stats), Circus 0.19 (circusd, circusd-stats) and Supervisor 4.3
(supervisord). Each daemon is started from its own virtualenv with a configuration written in a
temporary directory, left to settle, then every process of the node is read from
``/proc/PID/smaps_rollup`` (RSS, PSS, USS = private clean + private dirty). Systems and
repetitions are interleaved (ours, circus, supervisor, ours, ...); medians [min - max].

Which processes belong to a node: the daemon and its descendants, and for ours the keeper,
which is not circusd's descendant by design (``circus/core/keeper.py``): it is the process whose
command line is ``circus-keeper`` and that appeared while this node started (the benchmark
refuses to run while another keeper is alive, so there is no doubt).

Usage::

    python benchmarks/nodemem.py --ours-venv .venv [--n 100] [--reps 5] [--settle 3]
        [--out-md docs/benchmark-results/FILE.md]

Every process started is stopped by pid (SIGTERM, then SIGKILL of what is left) in a
``finally`` block. Needs Linux (smaps_rollup) and the peers of ``setup_peers.sh``.
"""
from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time

PEERS = os.environ.get("PEERBENCH_PEERS") or os.path.join(tempfile.gettempdir(), "peers")
SLEEP = "sleep 3600"


def log(*a: object) -> None:
    print(time.strftime("%H:%M:%S"), *a, file=sys.stderr, flush=True)


def rollup(pid: int) -> dict[str, float] | None:
    """RSS, PSS and USS of a process, in MB (None: gone)."""
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            text = f.read()
    except OSError:
        return None
    kb = {}
    for line in text.splitlines()[1:]:
        key, _, rest = line.partition(":")
        if rest.strip().endswith("kB"):
            kb[key] = int(rest.split()[0])
    uss = kb.get("Private_Clean", 0) + kb.get("Private_Dirty", 0)
    return {"rss": kb.get("Rss", 0) / 1024, "pss": kb.get("Pss", 0) / 1024, "uss": uss / 1024}


def children_of() -> dict[int, list[int]]:
    tree: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        tree.setdefault(ppid, []).append(int(entry))
    return tree


def descendants(pid: int) -> list[int]:
    tree, out, todo = children_of(), [], [pid]
    while todo:
        p = todo.pop()
        for c in tree.get(p, []):
            out.append(c)
            todo.append(c)
    return out


def cmdline(pid: int) -> list[str]:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return [a.decode(errors="replace") for a in f.read().split(b"\0") if a]
    except OSError:
        return []


def keepers() -> set[int]:
    return {int(p) for p in os.listdir("/proc") if p.isdigit() and "circus-keeper" in cmdline(int(p))}


def role(pid: int) -> str:
    argv = cmdline(pid)
    text = " ".join(argv)
    if "circus-keeper" in argv:
        return "keeper"
    if argv[:1] == ["sleep"]:
        return "each sleep"
    if any(mark in text for mark in ("circusd-stats", "circus.cli.stats", "from circus import stats")):
        return "circusd-stats"
    return "other: " + (os.path.basename(argv[0]) if argv else "?")


class System:
    name = ""

    def __init__(self, venv: str, tmp: str, n: int) -> None:
        self.venv, self.tmp, self.n = venv, tmp, n
        self.proc: subprocess.Popen | None = None

    def bin(self, name: str) -> str:
        return os.path.join(self.venv, "bin", name)

    def start(self) -> None:
        raise NotImplementedError

    def daemon_role(self) -> str:
        return "circusd"


class Ours(System):
    """A circus-style node: one watcher of N sleeps and circusd-stats (``statsd = true``)."""
    name = "ours"

    def start(self) -> None:
        ini = os.path.join(self.tmp, "circus.ini")
        with open(ini, "w") as f:
            f.write(f"[circus]\nendpoint = ipc://{self.tmp}/c.sock\npubsub_endpoint = "
                    f"ipc://{self.tmp}/p.sock\nstats_endpoint = ipc://{self.tmp}/s.sock\n"
                    f"statsd = true\n\n[watcher:sl]\ncmd = {SLEEP}\nnumprocesses = {self.n}\n")
        self.proc = subprocess.Popen([self.bin("circusd"), ini], cwd=self.tmp,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                     start_new_session=True)


class Circus019(Ours):
    """The same file under Circus 0.19's circusd (no keeper)."""
    name = "circus 0.19"


class Supervisor(System):
    name = "supervisor 4.3"

    def daemon_role(self) -> str:
        return "supervisord"

    def start(self) -> None:
        conf = os.path.join(self.tmp, "supervisord.conf")
        with open(conf, "w") as f:
            f.write(f"[supervisord]\nnodaemon = true\nlogfile = {self.tmp}/s.log\npidfile = "
                    f"{self.tmp}/s.pid\n\n[unix_http_server]\nfile = {self.tmp}/s.sock\n\n"
                    "[rpcinterface:supervisor]\nsupervisor.rpcinterface_factory = "
                    "supervisor.rpcinterface:make_main_rpcinterface\n\n"
                    f"[program:sl]\ncommand = {SLEEP}\nnumprocs = {self.n}\n"
                    "process_name = %(program_name)s_%(process_num)s\n")
        self.proc = subprocess.Popen([self.bin("supervisord"), "-c", conf], cwd=self.tmp,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                     start_new_session=True)


def measure(system: System, settle: float, timeout: float) -> dict[str, dict[str, float]]:
    """Per role: RSS/PSS/USS in MB (for ``each sleep`` the median of the sleeps), and ``node``."""
    before = keepers()
    system.start()
    assert system.proc is not None
    pid = system.proc.pid
    deadline = time.monotonic() + timeout
    while True:
        if system.proc.poll() is not None:
            raise RuntimeError(f"{system.name}: the daemon exited with {system.proc.returncode}")
        sleeps = [p for p in descendants(pid) if cmdline(p)[:1] == ["sleep"]]
        if len(sleeps) >= system.n:
            break
        if time.monotonic() > deadline:
            raise RuntimeError(f"{system.name}: {len(sleeps)} of {system.n} sleeps after {timeout} s")
        time.sleep(0.1)
    time.sleep(settle)
    members = {pid: system.daemon_role()}
    for p in descendants(pid):
        members[p] = role(p)
    new_keepers = keepers() - before
    expected = 0 if isinstance(system, Circus019) else int(isinstance(system, Ours))
    if len(new_keepers) != expected:
        raise RuntimeError(f"{system.name}: {len(new_keepers)} keepers appeared while the node "
                           f"started, {expected} expected: another circusd runs on this machine")
    for p in new_keepers:
        members[p] = "keeper"
    per: dict[str, list[dict[str, float]]] = {}
    for p, r in members.items():
        m = rollup(p)
        if m is not None:
            per.setdefault(r, []).append(m)
    out: dict[str, dict[str, float]] = {}
    node = {"rss": 0.0, "pss": 0.0, "uss": 0.0}
    for r, ms in per.items():
        total = {k: sum(m[k] for m in ms) for k in node}
        for k in node:
            node[k] += total[k]
        out[r] = ({k: statistics.median(m[k] for m in ms) for k in node} if r == "each sleep"
                  else total)
    out["node"] = node
    out["node without its sleeps"] = {k: node[k] - sum(m[k] for m in per.get("each sleep", []))
                                      for k in node}
    return out


def stop(system: System) -> None:
    proc = system.proc
    if proc is None:
        return
    pids = [proc.pid, *descendants(proc.pid)]
    extra = keepers()
    try:
        os.kill(proc.pid, signal.SIGTERM)
        proc.wait(timeout=20)
    except (ProcessLookupError, subprocess.TimeoutExpired):
        pass
    for p in pids:
        try:
            os.kill(p, signal.SIGKILL)
        except ProcessLookupError:
            pass
    if proc.poll() is None:
        proc.wait(timeout=5)
    deadline = time.monotonic() + 10
    while keepers() & extra and time.monotonic() < deadline:   # ours: the keeper lets go, exits
        time.sleep(0.1)
    for p in keepers() & extra:
        os.kill(p, signal.SIGKILL)


def fmt(values: list[float]) -> str:
    if not values:
        return "-"
    return f"{statistics.median(values):.1f} [{min(values):.1f}-{max(values):.1f}]"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--ours-venv", required=True)
    ap.add_argument("--circus-venv", default=os.path.join(PEERS, "circus"))
    ap.add_argument("--supervisor-venv", default=os.path.join(PEERS, "supervisor"))
    ap.add_argument("--n", type=int, default=100)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--settle", type=float, default=3.0)
    ap.add_argument("--timeout", type=float, default=60.0)
    ap.add_argument("--out-md", default=None)
    args = ap.parse_args()
    if keepers():
        print("nodemem: a circus keeper is running already: stop its circusd first", file=sys.stderr)
        return 2
    kinds = [(Ours, os.path.abspath(args.ours_venv)), (Circus019, args.circus_venv),
             (Supervisor, args.supervisor_venv)]
    results: dict[str, dict[str, dict[str, list[float]]]] = {}
    errors = 0
    load = os.getloadavg()[0]
    for rep in range(args.reps):
        for kind, venv in kinds:
            with tempfile.TemporaryDirectory(prefix="nodemem-") as tmp:
                system = kind(venv, tmp, args.n)
                try:
                    got = measure(system, args.settle, args.timeout)
                except Exception as exc:              # recorded, the run goes on
                    errors += 1
                    log(f"rep {rep} {system.name}: {exc}")
                    continue
                finally:
                    stop(system)
                log(f"rep {rep} {system.name}: node {got['node']['pss']:.1f} MB PSS")
                for r, m in got.items():
                    for k, v in m.items():
                        results.setdefault(system.name, {}).setdefault(r, {}).setdefault(k, []).append(v)
    lines = [f"# One node's memory: {args.n} sleeps, {args.reps} repetitions (MB, median [min-max])",
             "", f"Load average (1 min): {load:.2f} before, {os.getloadavg()[0]:.2f} after. "
             f"Python {sys.version.split()[0]}.", ""]
    for name, roles in results.items():
        lines += [f"## {name}", "", "| process | RSS | PSS | USS |", "|---|---|---|---|"]
        order = sorted(roles, key=lambda r: (r.startswith("node"), r == "each sleep", r))
        for r in order:
            m = roles[r]
            lines.append(f"| {r} | {fmt(m['rss'])} | {fmt(m['pss'])} | {fmt(m['uss'])} |")
        lines.append("")
    text = "\n".join(lines)
    print(text)
    if args.out_md:
        with open(args.out_md, "w") as f:
            f.write(text + "\n")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
