#!/usr/bin/env python3
"""ghostnodes: a LOAD GENERATOR for circusmeta benchmarks — one process answering circusd's
control protocol for many node endpoints, so that a pool of 1,000 "nodes" fits on one machine.

It is NOT circusd and never stands in for circusd in a test: it runs no process, keeps no
watcher state beyond a pid list, and only answers what a fan-out benchmark asks, in the shapes
a real circusd of this repository answers (captured from one): ``list`` (and ``list name=W``),
``status`` (and ``status name=W``), ``nodeinfo``, ``stats``, ``restart``/``reload``/``start``/
``stop`` (answered after ``--step-ms``, as a ``waiting`` command is once the work is done, with
new pids for a restart), ``globaloptions`` and ``version``; anything else gets circusd's error
reply for an unknown command. Each ghost node is a ROUTER bound to its own 127.0.0.1 port and
calls itself by its pool name (``node1``...).

  .venv/bin/python benchmarks/ghostnodes.py --nodes 1000 --pool-out /tmp/ghosts.ini \\
      [--step-ms 20] [--fail node37] [--freeze node12] [--max-seconds 1800]

It writes the pool file (``[node:nodeK] endpoint = tcp://127.0.0.1:PORT``), prints ``ready N``
on stdout once every socket is bound, and serves until SIGTERM/SIGINT or ``--max-seconds``
(it always stops by itself). ``--fail NODE``: that node's restart/reload/start answer an
error (``not_ready``); ``--freeze NODE``: that node never answers (a frozen circusd).
"""
from __future__ import annotations

import argparse
import heapq
import json
import os
import resource
import selectors
import signal
import sys
import time

import zmq

WATCHER = "sl"


class Ghost:
    __slots__ = ("name", "sock", "pids", "fail", "frozen", "started")

    def __init__(self, name: str, sock: zmq.Socket, first_pid: int, procs: int) -> None:
        self.name, self.sock = name, sock
        self.pids = list(range(first_pid, first_pid + procs))
        self.fail = self.frozen = False
        self.started = time.time()


class Server:
    def __init__(self, a: argparse.Namespace) -> None:
        self.a = a
        need = a.nodes * 3 + 256           # a listening fd, a connection and a mailbox each
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        if soft < need:
            resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, max(need, soft)), hard))
        self.ctx = zmq.Context()
        self.ctx.set(zmq.MAX_SOCKETS, a.nodes + 64)
        self.ghosts: list[Ghost] = []
        self.by_fd: dict[int, Ghost] = {}
        self.sel = selectors.DefaultSelector()
        self.due: list[tuple[float, int, Ghost, list[bytes]]] = []
        self.seq = 0
        self.next_pid = 100000
        self.answered = 0
        self.ports: list[int] = []
        for k in range(1, a.nodes + 1):
            sock = self.ctx.socket(zmq.ROUTER)
            sock.setsockopt(zmq.LINGER, 0)
            sock.setsockopt(zmq.SNDHWM, 0)
            sock.setsockopt(zmq.RCVHWM, 0)
            port = sock.bind_to_random_port("tcp://127.0.0.1")
            ghost = Ghost(f"{a.prefix}{k}", sock, self.next_pid, a.procs)
            self.next_pid += a.procs
            ghost.fail = ghost.name in a.fail
            ghost.frozen = ghost.name in a.freeze
            self.ghosts.append(ghost)
            fd = sock.getsockopt(zmq.FD)
            self.by_fd[fd] = ghost
            self.sel.register(fd, selectors.EVENT_READ, ghost)
            self.ports.append(port)

    def write_pool(self, path: str) -> None:
        lines = [f"[meta]\ntimeout = {self.a.timeout:g}\n"]
        for ghost, port in zip(self.ghosts, self.ports):
            lines.append(f"[node:{ghost.name}]\nendpoint = tcp://127.0.0.1:{port}\n"
                         f"tags = ghost\n")
        with open(path + ".tmp", "w") as f:
            f.write("\n".join(lines))
        os.replace(path + ".tmp", path)

    # -- replies ---------------------------------------------------------------------------------

    def reply(self, ghost: Ghost, msg: dict) -> tuple[float, dict] | None:
        command = msg.get("command")
        props = msg.get("properties") or {}
        name = props.get("name")
        now = time.time()
        base = {"status": "ok", "time": now}
        if command == "list":
            if name is None:
                return 0.0, {**base, "watchers": [WATCHER]}
            if name != WATCHER:
                return 0.0, self.unknown(name, now)
            return 0.0, {**base, "pids": list(ghost.pids)}
        if command == "status":
            if name is None:
                return 0.0, {**base, "statuses": {WATCHER: "active"}, "details": {}}
            if name != WATCHER:
                return 0.0, self.unknown(name, now)
            procs = [{"wid": i + 1, "pid": p, "state": "running", "ready": True,
                      "started": ghost.started, "restarts": 0, "last_exit": None}
                     for i, p in enumerate(ghost.pids)]
            return 0.0, {"status": "active", "time": now, "state": "active", "reason": "",
                         "numprocesses": len(ghost.pids), "trouble": None, "processes": procs}
        if command == "nodeinfo":
            return 0.0, {**base, "name": ghost.name, "version": "ghost", "pid": os.getpid(),
                         "uptime": round(now - ghost.started, 3), "load": [0.1, 0.1, 0.1],
                         "cpu_count": 2, "mem_total": 25276182528,
                         "mem_available": 23949017088, "watchers": 1,
                         "processes": len(ghost.pids)}
        if command == "stats":
            infos = {str(p): {"pid": p, "cpu": 0.0, "mem": 0.006, "rss": 1404928,
                              "age": now - ghost.started} for p in ghost.pids}
            return 0.0, {**base, "infos": {WATCHER: infos}}
        if command in ("restart", "reload", "start", "stop"):
            if name != WATCHER:
                return 0.0, self.unknown(name, now)
            delay = self.a.step_ms / 1000 if props.get("waiting") else 0.0
            if ghost.fail and command != "stop":
                return delay, {"status": "error", "time": now, "errno": 7, "code": "not_ready",
                               "reason": f"{WATCHER}: process {ghost.pids[0]}: not ready after "
                                         f"{self.a.step_ms / 1000:g} s (a ghost node told to "
                                         f"fail)"}
            if command == "stop":
                return delay, {**base, "info": None}
            if command == "start":
                return delay, {**base, "info": {"started": [], "kept": list(ghost.pids)}}
            old = ghost.pids
            ghost.pids = list(range(self.next_pid, self.next_pid + len(old)))
            self.next_pid += len(old)
            return delay, {**base, "info": {"stopped": old, "started": list(ghost.pids),
                                            "kept": []}}
        if command == "globaloptions":
            return 0.0, {**base, "options": {}}
        if command == "version":
            return 0.0, {**base, "version": "ghost"}
        return 0.0, {"status": "error", "time": now, "errno": 1, "code": "unknown_command",
                     "reason": f"unknown command {command!r}"}

    @staticmethod
    def unknown(name: object, now: float) -> dict:
        return {"status": "error", "time": now, "errno": 3, "code": "unknown_watcher",
                "reason": f"program {name} not found: the watchers are {WATCHER}"}

    def answer(self, ghost: Ghost, frames: list[bytes]) -> None:
        if ghost.frozen or len(frames) < 2:
            return
        try:
            msg = json.loads(frames[-1])
        except ValueError:
            return
        if not isinstance(msg, dict):
            return
        got = self.reply(ghost, msg)
        if got is None:
            return
        delay, body = got
        body["node"] = ghost.name
        body["id"] = msg.get("id")
        out = [*frames[:-1], json.dumps(body, separators=(",", ":")).encode()]
        if delay <= 0:
            self.send(ghost, out)
        else:
            self.seq += 1
            heapq.heappush(self.due, (time.monotonic() + delay, self.seq, ghost, out))

    def send(self, ghost: Ghost, frames: list[bytes]) -> None:
        try:
            ghost.sock.send_multipart(frames, zmq.NOBLOCK)
            self.answered += 1
        except zmq.ZMQError:
            pass

    def drain(self, ghost: Ghost) -> None:
        sock = ghost.sock
        while True:
            try:
                frames = sock.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                return
            self.answer(ghost, frames)

    def serve(self) -> None:
        stop_at = time.monotonic() + self.a.max_seconds
        stopping = []
        signal.signal(signal.SIGTERM, lambda *_: stopping.append(1))
        signal.signal(signal.SIGINT, lambda *_: stopping.append(1))
        touched: set[Ghost] = set(self.ghosts)      # read every socket once to begin with
        while not stopping and time.monotonic() < stop_at:
            for ghost in list(touched):
                self.drain(ghost)
            touched = set()
            now = time.monotonic()
            while self.due and self.due[0][0] <= now:
                _, _, ghost, frames = heapq.heappop(self.due)
                self.send(ghost, frames)
                touched.add(ghost)               # a send may consume the fd's edge
            if touched:
                continue
            timeout = min(1.0, max(0.0, self.due[0][0] - now)) if self.due else 1.0
            for key, _ in self.sel.select(timeout):
                touched.add(key.data)
        self.close()

    def close(self) -> None:
        for ghost in self.ghosts:
            ghost.sock.close(0)
        self.ctx.term()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--nodes", type=int, default=1000)
    p.add_argument("--prefix", default="node")
    p.add_argument("--pool-out", required=True)
    p.add_argument("--timeout", type=float, default=3.0, help="[meta] timeout of the pool file")
    p.add_argument("--step-ms", type=float, default=20.0,
                   help="how long a waiting restart/reload/start/stop takes")
    p.add_argument("--procs", type=int, default=2)
    p.add_argument("--fail", action="append", default=[])
    p.add_argument("--freeze", action="append", default=[])
    p.add_argument("--max-seconds", type=float, default=1800.0)
    a = p.parse_args(argv)
    server = Server(a)
    server.write_pool(a.pool_out)
    print(f"ready {a.nodes}", flush=True)
    server.serve()
    return 0


if __name__ == "__main__":
    sys.exit(main())
