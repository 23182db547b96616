"""The live side of circushttpd: the nodes' stats and events streams, kept and pushed.

One SUB socket per stream (each node's stats and pubsub endpoints, or the two merged sockets
of a ``circusmeta proxy``). What arrives is kept in bounded memory (:class:`LiveState`: the
last samples of each watcher for the sparklines, each process's latest sample, each node's
machine view and sockets, the recent events of each watcher) and handed to the listeners
(the page's WebSockets) as small JSON-ready dicts::

    {"type": "stats", "node", "watcher", "cpu", "mem", "time"}           a watcher's aggregate
    {"type": "stats", "node", "watcher", "pid", "cpu", "mem", "age"}     one process
    {"type": "socket", "node", "fd", "name", "address", "queue", "connections", "accepted"}
    {"type": "node", "node", "load", "cpu", "mem_percent", ...}          the machine view
    {"type": "event", "node", "topic", "data", "text"}                   a lifecycle event
    {"type": "output", "node", "watcher", "pid", "stream", "line", "time"}  an output line

:class:`LiveState` is pure (fed topic and payload, with the time given); :class:`Live` owns the
sockets and their reader tasks.
"""
from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from dataclasses import dataclass
from typing import Any, Callable, Iterable

import zmq
import zmq.asyncio

from circus.protocol import output_topic, read_event, topic_name
from circus.stats.payloads import split_topic

from .words import Signalled, describe

__all__ = ["LiveState", "Live", "Source", "HISTORY", "EVENTS"]

log = logging.getLogger("circus.web")

HISTORY = 60            # samples kept per watcher (a minute at the default interval)
EVENTS = 50             # events kept per watcher
PROCESS_TTL = 30.0      # seconds a process sample is shown after its last update

Listener = Callable[[dict[str, Any]], None]


def _num(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value)


class LiveState:
    """What the streams said lately, by node and watcher; bounded whatever runs for how long."""

    def __init__(self, history: int = HISTORY, events: int = EVENTS) -> None:
        self.history, self.events_kept = history, events
        self.series: dict[tuple[str, str], deque[tuple[float, float, float]]] = {}
        self.processes: dict[tuple[str, str], dict[int, dict[str, Any]]] = {}
        self.nodes: dict[str, dict[str, Any]] = {}
        self.sockets: dict[str, dict[int, dict[str, Any]]] = {}
        self.events: dict[tuple[str, str], deque[dict[str, Any]]] = {}
        self.last_stats: dict[str, float] = {}           # node -> time of its last sample
        self.signalled = Signalled()

    # -- feeding -----------------------------------------------------------------------------------

    def feed_stats(self, node: str, topic: str, payload: Any, now: float) -> dict | None:
        """A stats message (topic already prefixed with ``node``); the message to push."""
        parts = split_topic(topic)
        if parts is None or not isinstance(payload, dict):
            return None
        _, watcher, sub = parts
        self.last_stats[node] = now
        if watcher == "node" and sub is None:
            view = {k: payload.get(k) for k in ("load", "cpu", "cpu_count", "mem_used",
                                                "mem_total", "mem_percent", "processes")}
            self.nodes[node] = {**view, "time": now}
            return {"type": "node", "node": node, **view}
        if watcher == "sockets":
            if sub is None:
                return None
            info = {k: payload.get(k) for k in ("name", "address", "queue", "backlog",
                                                "connections", "accepted", "reads")}
            self.sockets.setdefault(node, {})[int(sub)] = {**info, "time": now}
            return {"type": "socket", "node": node, "fd": int(sub), **info}
        if watcher == "circus":
            return None
        cpu, mem = _num(payload.get("cpu")) or 0.0, _num(payload.get("mem")) or 0.0
        if sub is None:
            series = self.series.get((node, watcher))
            if series is None:
                series = self.series[(node, watcher)] = deque(maxlen=self.history)
            series.append((now, cpu, mem))
            return {"type": "stats", "node": node, "watcher": watcher, "cpu": cpu, "mem": mem,
                    "time": now}
        pid = int(sub)
        sample = {"pid": pid, "cpu": cpu, "mem": mem, "age": _num(payload.get("age")),
                  "rss": _num(payload.get("rss")), "time": now}
        self.processes.setdefault((node, watcher), {})[pid] = sample
        return {"type": "stats", "node": node, "watcher": watcher, **sample}

    def feed_event(self, node: str, topic: str, payload: Any, now: float) -> dict | None:
        """A lifecycle event (``watcher.<name>.<event>``: the name as topics write it, lower
        case) or an output line (``output.<name>.<stream>``, only pushed, not kept)."""
        if not isinstance(payload, dict):
            payload = {"value": payload}
        if topic.startswith("output."):
            if not isinstance(payload.get("watcher"), str):
                return None
            return {"type": "output", "node": node, "watcher": payload["watcher"],
                    **{k: payload.get(k) for k in ("pid", "stream", "time", "seq", "line")}}
        parts = topic.split(".")
        if len(parts) < 3 or parts[0] != "watcher":
            return None
        watcher, event = ".".join(parts[1:-1]), parts[-1]
        pid = payload.get("process_pid")
        second = event == "kill" and self.signalled.kill_seen(node, pid)
        if event == "reap":
            self.signalled.forget(node, pid)
        message = {"type": "event", "node": node, "topic": topic, "watcher": watcher,
                   "event": event, "data": payload, "time": payload.get("time", now),
                   "text": describe(watcher, event, payload, second_kill=second)}
        kept = self.events.get((node, watcher))
        if kept is None:
            kept = self.events[(node, watcher)] = deque(maxlen=self.events_kept)
        kept.append(message)
        if event == "reap" and isinstance(payload.get("process_pid"), int):
            self.processes.get((node, watcher), {}).pop(payload["process_pid"], None)
        return message

    # -- reading -----------------------------------------------------------------------------------

    def watcher_series(self, node: str, watcher: str) -> list[tuple[float, float, float]]:
        return list(self.series.get((node, watcher), ()))

    def latest(self, node: str, watcher: str) -> tuple[float, float] | None:
        series = self.series.get((node, watcher))
        return (series[-1][1], series[-1][2]) if series else None

    def process_samples(self, node: str, watcher: str, now: float) -> dict[int, dict[str, Any]]:
        procs = self.processes.get((node, watcher), {})
        for pid in [p for p, s in procs.items() if now - s["time"] > PROCESS_TTL]:
            del procs[pid]
        return dict(procs)

    def recent_events(self, node: str, watcher: str) -> list[dict[str, Any]]:
        return list(self.events.get((node, topic_name(watcher)), ()))

    def node_sockets(self, node: str) -> dict[int, dict[str, Any]]:
        return dict(self.sockets.get(node, {}))


@dataclass(frozen=True)
class Source:
    """One stream: ``kind`` stats or events; ``node`` is the pool's name for the node behind
    it, or None for a ``circusmeta proxy`` (the node is in every topic: ``web1/...``)."""

    kind: str
    endpoint: str
    node: str | None = None
    curve: Any = None            # circus.security.keys.ClientKeys


class Live:
    """Reads every source into a :class:`LiveState` and tells the listeners."""

    def __init__(self, sources: Iterable[Source], state: LiveState | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        self.sources = list(sources)
        self.state = state or LiveState()
        self.clock = clock
        self.listeners: set[Listener] = set()
        self._context: zmq.asyncio.Context | None = None
        self._sockets: list[zmq.asyncio.Socket] = []
        self._tasks: list[asyncio.Task[None]] = []
        self._events: dict[str, zmq.asyncio.Socket] = {}     # node -> its events socket
        self._following: dict[tuple[str, str], int] = {}

    @property
    def has_stats(self) -> bool:
        return any(s.kind == "stats" for s in self.sources)

    def start(self) -> None:
        self._context = zmq.asyncio.Context()
        for source in self.sources:
            sock = self._context.socket(zmq.SUB)
            sock.linger = 0
            sock.rcvhwm = 10_000
            if source.curve is not None:
                source.curve.apply(sock)
            topics = [b""] if source.kind == "stats" else \
                ([b"watcher."] if source.node else [b""])
            for topic in topics:
                sock.setsockopt(zmq.SUBSCRIBE, topic)
            sock.connect(source.endpoint)
            if source.kind == "events" and source.node:
                self._events[source.node] = sock
            self._sockets.append(sock)
            self._tasks.append(asyncio.get_running_loop().create_task(self._read(source, sock)))

    async def _read(self, source: Source, sock: zmq.asyncio.Socket) -> None:
        try:
            while True:
                event = read_event(await sock.recv_multipart())
                if event is None:
                    continue
                topic, payload = event
                message = self.feed(source, topic, payload)
                if message is not None:
                    self.publish(message)
        except (asyncio.CancelledError, zmq.ZMQError):
            return

    def feed(self, source: Source, topic: str, payload: Any) -> dict | None:
        now = self.clock()
        if source.kind == "stats":
            if topic.startswith("stat."):
                # 0.19's unprefixed copy (legacy_stats_topics) carries "node": the prefixed
                # one is also sent; a 0.19 circusd-stats sends only these
                if source.node is None or (isinstance(payload, dict) and "node" in payload):
                    return None
                return self.state.feed_stats(source.node, f"{source.node}/{topic}", payload, now)
            node, sep, rest = topic.partition("/")
            if not sep:
                return None
            name = source.node or node
            return self.state.feed_stats(name, f"{name}/{rest}", payload, now)
        if source.node is None:                   # the proxy: "<node>/watcher.x.spawn"
            node, sep, rest = topic.partition("/")
            if not sep:
                return None
            return self.state.feed_event(node, rest, payload, now)
        return self.state.feed_event(source.node, topic, payload, now)

    def follow_output(self, node: str, watcher: str) -> bool:
        """Subscribe to a watcher's output lines (circusd publishes them only while somebody
        subscribes); False when the node's events are not followed directly."""
        sock = self._events.get(node)
        if sock is None or sock.closed:
            return False
        key = (node, topic_name(watcher))
        self._following[key] = self._following.get(key, 0) + 1
        if self._following[key] == 1:
            sock.setsockopt(zmq.SUBSCRIBE, output_topic(watcher).encode())
        return True

    def unfollow_output(self, node: str, watcher: str) -> None:
        key = (node, topic_name(watcher))
        count = self._following.get(key, 0) - 1
        if count > 0:
            self._following[key] = count
            return
        self._following.pop(key, None)
        sock = self._events.get(node)
        if count == 0 and sock is not None and not sock.closed:
            sock.setsockopt(zmq.UNSUBSCRIBE, output_topic(watcher).encode())

    def publish(self, message: dict[str, Any]) -> None:
        for listener in list(self.listeners):
            try:
                listener(message)
            except Exception:                     # one broken page must not stop the others
                log.exception("live listener failed")
                self.listeners.discard(listener)

    def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        for sock in self._sockets:
            sock.close(linger=0)
        self._tasks.clear()
        self._sockets.clear()
        self._events.clear()
        if self._context is not None:
            self._context.term()
            self._context = None

    async def aclose(self) -> None:
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self.close()
