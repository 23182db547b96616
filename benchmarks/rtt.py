#!/usr/bin/env python3
"""rtt: the raw control round trip of one circusd against the pyzmq echo floor, in one run.

A real circusd (from ``--venv``) with one watcher of ``--procs`` ``sleep 3600`` processes and
tcp://127.0.0.1 endpoints runs in a temporary directory; an echo ROUTER (a plain blocking
``recv_multipart``/``send_multipart`` loop, as peerbench's floor) runs in another process. From
one already connected DEALER each, this script measures ``--n`` sequential round trips of each
kind per round, the kinds taking turns every ``--block`` round trips in a rotating order (the
machine's noise changes by the second, and the first round trips after another server's are
slower: each kind gets its share of both):

* ``floor``: a ``list`` request's bytes echoed by the ROUTER;
* ``list`` and ``status``: ``{"id", "command", "properties": {}}`` as JSON, the reply decoded and
  its id checked (what peerbench's S2 raw probe does).

It prints each round's medians and the servers' CPU time per round trip (every thread's, from
``/proc/PID/task/*/schedstat``), then the median of the rounds' and the ratios to the floor.
``--baseline-venv VENV`` measures a second circusd (another version, its own temporary directory
and ports) in the same rounds: a before/after on the same noise. ``--profile FILE`` runs circusd
under cProfile (its numbers are then not comparable).
Every process it starts is stopped by pid (SIGTERM, then SIGKILL) in a ``finally`` block.

    .venv/bin/python benchmarks/rtt.py                    # 5 rounds of 2000 of each
    .venv/bin/python benchmarks/rtt.py --rounds 3 --n 500 --venv /other/.venv
    .venv/bin/python benchmarks/rtt.py --baseline-venv /tmp/base-venv    # before/after
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Any

PAYLOAD = json.dumps({"id": "0" * 32, "command": "list", "properties": {}}).encode()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def echo_server(endpoint: str) -> None:
    """The floor: a ROUTER that sends back what it receives (``QUIT`` ends it)."""
    import zmq
    ctx = zmq.Context()
    sock = ctx.socket(zmq.ROUTER)
    sock.linger = 0
    sock.bind(endpoint)
    print("ready", flush=True)
    while True:
        frames = sock.recv_multipart()
        if frames[-1] == b"QUIT":
            break
        sock.send_multipart(frames)
    sock.close()
    ctx.term()


def descendants(pid: int) -> list[int]:
    """Every process under ``pid`` (from /proc's children lists), deepest last."""
    found, todo = [], [pid]
    while todo:
        parent = todo.pop()
        try:
            tasks = os.listdir(f"/proc/{parent}/task")
        except OSError:
            continue
        for task in tasks:
            try:
                with open(f"/proc/{parent}/task/{task}/children") as fh:
                    kids = [int(k) for k in fh.read().split()]
            except (OSError, ValueError):
                continue
            found += kids
            todo += kids
    return found


def cpu_ns(pid: int) -> int:
    """CPU time of every thread of ``pid`` so far, in ns (schedstat's first field)."""
    total = 0
    for task in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{task}/schedstat") as fh:
                total += int(fh.read().split()[0])
        except (OSError, ValueError, IndexError):
            pass
    return total


def start_time(pid: int) -> str | None:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def stop(proc: subprocess.Popen | None, timeout: float = 30.0) -> None:
    """SIGTERM to ``proc``, then SIGKILL to it and to what is left of its descendants."""
    if proc is None:
        return
    kids = [(pid, start_time(pid)) for pid in descendants(proc.pid)]
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
    for pid, started in kids:
        if started is not None and start_time(pid) == started:    # the same process, still there
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass


class Client:
    def __init__(self, ctx, endpoint: str) -> None:
        import zmq
        self.zmq = zmq
        self.sock = ctx.socket(zmq.DEALER)
        self.sock.linger = 0
        self.sock.connect(endpoint)
        self.count = 0

    def echo(self, n: int) -> list[float]:
        sock, lat, clock = self.sock, [], time.perf_counter
        for _ in range(n):
            t0 = clock()
            sock.send(PAYLOAD)
            if not sock.poll(10_000):
                raise SystemExit("echo server: no reply in 10 s")
            sock.recv()
            lat.append(clock() - t0)
        return lat

    def command(self, name: str, n: int, properties: dict | None = None) -> list[float]:
        sock, lat, clock = self.sock, [], time.perf_counter
        for _ in range(n):
            self.count += 1
            mid = f"rtt{self.count:012d}"
            t0 = clock()
            sock.send(json.dumps({"id": mid, "command": name, "properties": properties or {}}).encode())
            while True:
                if not sock.poll(10_000):
                    raise SystemExit(f"circusd: no reply to {name} in 10 s")
                reply = json.loads(sock.recv())
                if reply.get("id") == mid:
                    break
            lat.append(clock() - t0)
            if reply.get("status") == "error":
                raise SystemExit(f"circusd: {name}: {reply.get('reason')}")
        return lat


def write_config(workdir: str, procs: int) -> tuple[str, str]:
    endpoint = f"tcp://127.0.0.1:{free_port()}"
    conf = os.path.join(workdir, "circus.ini")
    with open(conf, "w") as fh:
        fh.write("\n".join([
            "[circus]", f"endpoint = {endpoint}", f"pubsub_endpoint = tcp://127.0.0.1:{free_port()}",
            "multicast_endpoint = ", "statsd = False", "",
            "[watcher:sl]", "cmd = sleep 3600", f"numprocesses = {procs}", ""]))
    return conf, endpoint


def wait_running(client: Client, procs: int, deadline: float) -> None:
    while time.monotonic() < deadline:
        try:
            client.command("list", 1)
            sock = client.sock
            sock.send(json.dumps({"id": "pids", "command": "list", "properties": {"name": "sl"}}).encode())
            if sock.poll(2000):
                reply = json.loads(sock.recv())
                if len(reply.get("pids") or []) >= procs:
                    return
        except SystemExit:
            pass
        time.sleep(0.1)
    raise SystemExit(f"circusd: {procs} processes not running within the deadline")


def start_circusd(venv: str, workdir: str, procs: int, profile: str | None) -> tuple[subprocess.Popen, str]:
    os.makedirs(workdir)
    conf, endpoint = write_config(workdir, procs)
    circusd = os.path.join(venv, "bin", "circusd")
    cmd = [os.path.join(venv, "bin", "python"), "-m", "cProfile", "-o", os.path.abspath(profile),
           circusd, conf] if profile else [circusd, conf]
    with open(os.path.join(workdir, "circusd.log"), "wb") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, cwd=workdir,
                                stdin=subprocess.DEVNULL, start_new_session=True)
    return proc, endpoint


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--venv", default=sys.prefix, help="venv with circusd (default: this python's)")
    parser.add_argument("--baseline-venv", metavar="VENV",
                        help="a second circusd (another version) measured in the same rounds")
    parser.add_argument("--n", type=int, default=2000, help="round trips of each kind per round")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=200)
    parser.add_argument("--block", type=int, default=50,
                        help="round trips of one kind before the next kind's (interleaving)")
    parser.add_argument("--procs", type=int, default=100, help="processes of watcher sl")
    parser.add_argument("--profile", metavar="FILE", help="run circusd under cProfile, stats to FILE")
    parser.add_argument("--json", metavar="FILE", help="every round's medians to FILE")
    args = parser.parse_args(argv)

    import zmq
    workdir = tempfile.mkdtemp(prefix="rtt-")
    procs: list[subprocess.Popen] = []
    ctx = zmq.Context()
    try:
        daemon, endpoint = start_circusd(args.venv, os.path.join(workdir, "ours"), args.procs, args.profile)
        procs.append(daemon)
        servers = {"": (daemon, endpoint)}
        if args.baseline_venv:
            base = start_circusd(args.baseline_venv, os.path.join(workdir, "base"), args.procs, None)
            procs.append(base[0])
            servers["base "] = base
        echo_ep = f"tcp://127.0.0.1:{free_port()}"
        echo = subprocess.Popen([sys.executable, os.path.abspath(__file__), "--echo", echo_ep],
                                stdout=subprocess.PIPE, stdin=subprocess.DEVNULL, start_new_session=True)
        procs.append(echo)
        if echo.stdout.readline().strip() != b"ready":
            raise SystemExit("echo server did not start")
        floor = Client(ctx, echo_ep)
        floor.echo(args.warmup)
        # kind -> (the server's pid, run(count) -> latencies)
        kinds: dict[str, tuple[int, Any]] = {"floor": (echo.pid, floor.echo)}
        for prefix, (proc, ep) in servers.items():
            client = Client(ctx, ep)
            wait_running(client, args.procs, time.monotonic() + 60)
            for command in ("list", "status"):
                client.command(command, args.warmup)
                kinds[prefix + command] = (proc.pid, lambda count, c=client, cmd=command: c.command(cmd, count))
        rounds = []
        for index in range(args.rounds):
            lat: dict[str, list[float]] = {kind: [] for kind in kinds}
            cpu = dict.fromkeys(kinds, 0)          # ns of the server's CPU (all its threads)
            order = list(kinds.items())
            for start in range(0, args.n, args.block):    # the kinds take turns every block,
                count = min(args.block, args.n - start)   # in an order rotated each time (the
                order = order[1:] + order[:1]             # one after another server pays more)
                for kind, (pid, run) in order:
                    before = cpu_ns(pid)
                    lat[kind] += run(count)
                    cpu[kind] += cpu_ns(pid) - before
            medians = {kind: statistics.median(values) for kind, values in lat.items()}
            medians.update({f"{kind} cpu": cpu[kind] / 1e9 / args.n for kind in kinds})
            rounds.append(medians)
            print(f"round {index + 1}: " + "  ".join(
                f"{k} {medians[k] * 1e6:.0f} us ({medians[k] / medians['floor']:.2f}x, server CPU "
                f"{medians[k + ' cpu'] * 1e6:.0f})" for k in kinds), flush=True)
        result = {k: statistics.median(r[k] for r in rounds) for k in rounds[0]}
        ratios = {k: statistics.median(r[k] / r["floor"] for r in rounds) for k in kinds}
        load = os.getloadavg()
        print(f"median of {args.rounds} rounds of {args.n}: " + ", ".join(
            f"{k} {result[k] * 1e6:.0f} us" + ("" if k == "floor" else f" ({ratios[k]:.2f}x)")
            for k in kinds) + "; server CPU per round trip: " + ", ".join(
            f"{k} {result[k + ' cpu'] * 1e6:.1f} us" for k in kinds)
            + f"; load {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
        print("(ratios: the median over the rounds of each round's median / that round's floor)")
        if args.json:
            with open(args.json, "w") as fh:
                json.dump({"rounds": rounds, "median": result, "ratios": ratios, "load": load,
                           "n": args.n, "procs": args.procs}, fh, indent=1)
        return 0
    finally:
        for proc in reversed(procs):
            stop(proc)
        ctx.destroy(linger=0)
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    if sys.argv[1:2] == ["--echo"]:
        echo_server(sys.argv[2])
        sys.exit(0)
    sys.exit(main())
