"""A small stats publisher for circus-top's tests: rounds of payloads shaped like circusd-stats'.

It runs in a thread of the test process on an ipc:// endpoint and is stopped (and joined) by the
test; :meth:`Feed.stop` has a deadline.
"""
from __future__ import annotations

import json
import threading
from typing import Any

import zmq

__all__ = ["Feed", "round_messages"]


def _process(node: str, watcher: str, pid: int, cpu: float, name: str | None = None) -> dict[str, Any]:
    return {"node": node, "watcher": watcher, "pid": pid, "subtopic": pid, "name": name,
            "cpu": cpu, "mem": 0.05, "mem_info1": "8.0M", "mem_info2": "16.0M", "ctime": "0:00.10",
            "age": 12.0, "create_time": 1.0, "username": "tester", "nice": 0,
            "cmdline": "python3", "rss": 8 << 20, "vms": 16 << 20, "num_fds": 4, "num_threads": 1,
            "io": "N/A", "children": [], "children_total": {"count": 0, "cpu": 0.0, "rss": 0}}


def round_messages(node: str, watchers: dict[str, list[int]],
                   states: dict[str, dict[str, Any]] | None = None
                   ) -> list[tuple[str, dict[str, Any]]]:
    """One interval's messages: each process, each aggregate, the circus group, sockets, node.
    ``states`` (watcher -> state, trouble, wanted...) are added to the aggregates as
    circusd-stats adds what circusd's ``processes`` says, with the node view's counts; without
    it, the messages of a circusd-stats that does not send them."""
    out: list[tuple[str, dict[str, Any]]] = []
    groups = dict(watchers)
    for watcher, pids in groups.items():
        infos = [_process(node, watcher, pid, cpu=float(i * 10)) for i, pid in enumerate(pids)]
        if states is not None:
            for info in infos:
                info["state"] = "running"
        out += [(f"{node}/stat.{watcher}.{p['pid']}", p) for p in infos]
        out.append((f"{node}/stat.{watcher}", {
            "node": node, "watcher": watcher, "pid": pids, "cpu": 5.0, "mem": 0.1, "age": 12.0,
            "rss": len(pids) * (8 << 20), "vms": 0, "num_fds": 0, "num_threads": 0,
            "numprocesses": len(pids),
            **({"state": "active", "trouble": None, "reason": "", "wanted": len(pids),
                "restarts": 0, **states.get(watcher, {})} if states is not None else {})}))
    circus = [_process(node, "circus", 900, 1.0, "circusd"),
              _process(node, "circus", 901, 2.0, "circusd-stats")]
    out += [(f"{node}/stat.circus.{p['pid']}", p) for p in circus]
    out.append((f"{node}/stat.circus", {"node": node, "watcher": "circus", "pid": [900, 901],
                                        "cpu": 1.5, "mem": 0.1, "age": 12.0, "numprocesses": 2}))
    sock = {"node": node, "fd": 5, "subtopic": 5, "name": "web", "address": "127.0.0.1:8080",
            "reads": 0, "queue": 0, "backlog": 128, "connections": 3}
    out.append((f"{node}/stat.sockets.5", sock))
    out.append((f"{node}/stat.sockets", {"node": node, "addresses": ["127.0.0.1:8080"],
                                         "reads": 0, "queue": 0, "connections": 3}))
    out.append((f"{node}/stat.node", {
        "node": node, "time": 1.0, "load": [0.5, 0.25, 0.1], "cpu": 7.5, "cpu_count": 2,
        "mem_used": 1 << 30, "mem_total": 4 << 30, "mem_percent": 25.0, "disk": {},
        "processes": 123, "watchers": len(groups),
        "circus_processes": 2 + sum(map(len, groups.values())),
        **({"watcher_processes": sum(map(len, groups.values())),
            "in_trouble": sum(1 for w in states.values() if w.get("trouble"))}
           if states is not None else {})}))
    out.append((f"stat.{next(iter(groups), 'x')}", {"legacy": True}))   # ignored by circus-top
    return out


class Feed:
    """Publishes a round for each node every ``interval`` seconds on ``endpoint``."""

    def __init__(self, endpoint: str, nodes: dict[str, dict[str, list[int]]],
                 interval: float = 0.1,
                 states: dict[str, dict[str, dict[str, Any]]] | None = None) -> None:
        """``states``: node -> watcher -> aggregate state fields (see :func:`round_messages`)."""
        self.endpoint = endpoint
        self.nodes = nodes
        self.states = states
        self.interval = interval
        self._stop = threading.Event()
        self._ctx = zmq.Context()
        self._sock = self._ctx.socket(zmq.PUB)
        self._sock.linger = 0
        self._sock.bind(endpoint)
        self._thread = threading.Thread(target=self._run, name="topfeed", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            for node, watchers in self.nodes.items():
                states = None if self.states is None else self.states.get(node, {})
                for topic, payload in round_messages(node, watchers, states):
                    self._sock.send_multipart([topic.encode(), json.dumps(payload).encode()])

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)
        assert not self._thread.is_alive(), "publisher thread did not stop"
        self._sock.close(0)
        self._ctx.term()
