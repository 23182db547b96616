"""``circusmeta proxy``'s sockets: the pool's stats and events, republished on two PUB sockets.

Stats go through libzmq (:mod:`circusmeta.pump`): one SUB socket connected to every node's
stats endpoint, subscribed to every topic but 0.19's unprefixed ones
(:func:`~circusmeta.streamtopics.not_starting_with`), forwarded to the stats PUB by
``zmq.proxy_steerable`` in a thread, degraded above ``max_rate``. The nodes' topics are already
prefixed with their names: nothing needs rewriting. Whether a node is a 0.19 circusd-stats (whose
topics carry no node name) is learnt once: a SUB per node subscribed to ``stat.circus``, which
both kinds publish; at its first message, a node of ours (``node`` in the payload) has its
probe closed, and a 0.19 node keeps it, subscribed to all its ``stat.`` topics, republished here
with the pool's name for it through an inproc PUB that the upstream SUB also reads.

Events go through Python (their topics carry no node name; they are few): a SUB per node,
drained at each wake-up, each topic prefixed with the payload's ``node`` (else the pool's name).

The sizes (sockets, file descriptors, queues) come from :mod:`circusmeta.proxysize` and are
set before the first socket; :class:`LimitError` says which limit is too low. A socket monitor
makes each node's connect and disconnect a log line: the stats socket's (one for all the
nodes), and the events socket's of a node whose stats are not followed.

ZeroMQ reconnects by itself (a node restarted on the same endpoint is followed again, its
subscription renewed). The PUB sockets never block: a subscriber that does not read loses
messages beyond :data:`HWM`.
"""
from __future__ import annotations

import asyncio
import json
import resource
import time
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import zmq
import zmq.asyncio
from zmq.utils.monitor import parse_monitor_message

from circus.security.ipcbind import bind_private

from .fanout import HANDSHAKE_EVENTS, handshake_failure, handshake_timed_out
from .proxysize import MAX_QUEUED, Plan, fd_refusal, plan, queue_per_node, socket_refusal
from .pump import StatsPump
from .shedding import MAX_RATE, TICK
from .streamtopics import LEGACY, FeedState, event_topic, not_starting_with, stats_topic

__all__ = ["Proxy", "Feed", "LimitError", "HWM", "STATS", "EVENTS"]

#: messages queued per subscriber of the proxy before ZeroMQ drops
HWM = 20000
STATS, EVENTS = "stats", "events"
_MONITORED = zmq.EVENT_CONNECTED | zmq.EVENT_DISCONNECTED | HANDSHAKE_EVENTS
_PROBE = LEGACY                     # 0.19 publishes only these; ours, copies while subscribed
_DRAIN = 1000                        # messages read from one socket per wake-up


@dataclass(frozen=True)
class Feed:
    """One upstream socket: a node's stats or events endpoint."""

    node: str
    kind: str                 # STATS or EVENTS
    address: str
    curve: Any = None         # the node's ClientKeys (None: no CURVE)


class LimitError(Exception):
    """The pool needs more sockets or file descriptors than this process may have."""


class _Connection:
    """What the monitor said of one connection, turned into log lines (once per change)."""

    def __init__(self, feed: Feed, handshake_ivl: float) -> None:
        self.feed = feed
        self.ivl = handshake_ivl
        self.failing: str | None = None      # while handshakes fail: said once, not per retry
        self.connected_at: float | None = None

    def line(self, kind: int, now: float) -> str | None:
        f = self.feed
        if kind == zmq.EVENT_CONNECTED:
            self.connected_at = now
            return None if self.failing else f"{f.node}: {f.kind} connected ({f.address})"
        if kind == zmq.EVENT_DISCONNECTED:
            return None if self.failing else (f"{f.node}: {f.kind} disconnected ({f.address}); "
                                              f"reconnecting")
        if kind == zmq.EVENT_HANDSHAKE_SUCCEEDED:
            if self.failing is None:
                return None
            self.failing = None
            return f"{f.node}: {f.kind} handshake succeeded ({f.address})"
        elapsed = None if self.connected_at is None else now - self.connected_at
        why = handshake_failure(kind, f.curve is not None, f.address,
                                handshake_timed_out(kind, elapsed, self.ivl), self.ivl)
        if why == self.failing:
            return None
        self.failing = why
        return f"{f.node}: {f.kind}: {why}; retrying"


def _setup_sub(sock: zmq.Socket, hwm: int) -> None:
    sock.linger = 0
    sock.rcvhwm = hwm
    sock.reconnect_ivl = 100
    sock.reconnect_ivl_max = 2000
    sock.setsockopt(zmq.HEARTBEAT_IVL, 5000)      # a vanished tcp peer is noticed
    sock.setsockopt(zmq.HEARTBEAT_TIMEOUT, 15000)


class Proxy:
    """The sockets of the proxy.

    :meth:`open` sizes the limits, binds and connects (a :class:`zmq.ZMQError` names what
    failed, a :class:`LimitError` the limit); :meth:`run` republishes until ``stop`` is set;
    :meth:`close` closes every socket. The proxy owns its tasks and its thread: :meth:`run`
    cancels and waits for every one before it returns.
    """

    def __init__(self, feeds: Sequence[Feed], binds: dict[str, str],
                 log: Callable[[str], None], hwm: int = HWM, server: Any = None,
                 max_rate: int = MAX_RATE, max_queued: int = MAX_QUEUED) -> None:
        """``server``: (KeyPair, Keyring): the PUB sockets are CURVE servers admitting the
        keyring's keys (None: no CURVE)."""
        self.feeds, self.binds, self.log, self.hwm = list(feeds), dict(binds), log, hwm
        self.server, self.max_rate, self.max_queued = server, max_rate, max_queued
        self.context = zmq.asyncio.Context()
        self.forwarded = {kind: 0 for kind in binds}
        self.dropped = 0
        self.plan: Plan | None = None
        self.raised: tuple[int, int] | None = None      # RLIMIT_NOFILE soft: from, to
        self.pump: StatsPump | None = None
        self._pubs: dict[str, zmq.Socket] = {}
        self._inside: zmq.Socket | None = None
        self._up: zmq.Socket | None = None
        self._up_monitor: zmq.asyncio.Socket | None = None
        self._up_feeds: dict[str, Feed] = {}
        self._probes: dict[Feed, zmq.asyncio.Socket] = {}
        self._events: list[tuple[Feed, zmq.asyncio.Socket, zmq.asyncio.Socket | None]] = []
        self._gate: Any = None
        self._handshake_ivl = 30.0
        self._id = f"{id(self):x}"

    # -- opening --------------------------------------------------------------------------

    def _unique(self, kind: str) -> list[Feed]:
        """The feeds of a kind, one per address (a second node on it is followed once)."""
        out: dict[str, Feed] = {}
        for feed in self.feeds:
            if feed.kind != kind or kind not in self.binds:
                continue
            first = out.setdefault(feed.address, feed)
            if first is not feed:
                self.log(f"{feed.node}: its {kind} endpoint {feed.address} is {first.node}'s "
                         f"too: followed once, as {first.node}")
        return list(out.values())

    def _size(self, stats: list[Feed], events: list[Feed], monitored: int) -> None:
        nodes = len({f.node for f in self.feeds}) or 1
        self.plan = plan(len(stats), len(events), monitored, len(self.binds),
                         self.server is not None, self.max_queued)
        problem = socket_refusal(self.plan.sockets, self.context.get(zmq.SOCKET_LIMIT), nodes)
        if problem is not None:
            raise LimitError(problem)
        self.context.set(zmq.MAX_SOCKETS, max(self.plan.sockets, 1023))
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        new, problem = fd_refusal(self.plan.fds, soft, hard, nodes, resource.RLIM_INFINITY)
        if problem is not None:
            raise LimitError(problem)
        if new is not None:
            resource.setrlimit(resource.RLIMIT_NOFILE, (new, hard))
            self.raised = (soft, new)

    def open(self) -> None:
        stats, events = self._unique(STATS), self._unique(EVENTS)
        followed = {f.node for f in stats}
        self._size(stats, events, sum(1 for f in events if f.node not in followed))
        sync = zmq.Context.shadow(self.context.underlying)
        if self.server is not None:
            from circus.security.zap import Gate
            self._gate = Gate(sync, self.server[1])   # one ZAP handler for this context
        for kind, address in self.binds.items():
            sock = sync.socket(zmq.PUB)
            sock.linger = 0
            sock.sndhwm = self.hwm
            self._pubs[kind] = sock
            if self.server is not None:
                from circus.security.keys import configure_server
                configure_server(sock, self.server[0])
            try:
                bind_private(sock, address)     # an ipc:// socket file: mode 0600
            except zmq.ZMQError as exc:
                raise zmq.ZMQError(exc.errno, f"cannot bind {kind} on {address}: {exc}") from None
            except OSError as exc:
                raise zmq.ZMQError(exc.errno or 0, f"cannot bind {kind} on {address}: "
                                                   f"{exc.strerror or exc}") from None
        if stats:
            self._open_stats(sync, stats)
        per_node = queue_per_node(len(events), self.max_queued)
        for feed in events:
            sock = self.context.socket(zmq.SUB)
            _setup_sub(sock, per_node)
            sock.setsockopt(zmq.SUBSCRIBE, b"")
            if feed.curve is not None:
                feed.curve.apply(sock)
            self._handshake_ivl = sock.getsockopt(zmq.HANDSHAKE_IVL) / 1000
            monitor = None if feed.node in followed else sock.get_monitor_socket(_MONITORED)
            self._events.append((feed, sock, monitor))       # before connect: no event missed
            self._connect(sock, feed)

    def _open_stats(self, sync: zmq.Context, stats: list[Feed]) -> None:
        assert self.plan is not None
        inside = self._inside = sync.socket(zmq.PUB)
        inside.linger = 0
        inside.sndhwm = self.hwm
        inside.bind(f"inproc://circusmeta-inside-{self._id}")
        up = self._up = sync.socket(zmq.SUB)
        _setup_sub(up, self.plan.queue_per_node)
        prefixes = not_starting_with(LEGACY)
        # a SUB sends its subscriptions to each new connection through its outgoing queue:
        # libzmq's default of 1,000 would lose some of them, and the stream with them
        up.sndhwm = len(prefixes) + 1000
        for prefix in prefixes:
            up.setsockopt(zmq.SUBSCRIBE, prefix)
        self._handshake_ivl = up.getsockopt(zmq.HANDSHAKE_IVL) / 1000
        monitor = f"inproc://circusmeta-monitor-{self._id}"
        up.monitor(monitor, _MONITORED)                       # before connect: no event missed
        self._up_monitor = self.context.socket(zmq.PAIR)
        self._up_monitor.linger = 0
        self._up_monitor.connect(monitor)
        up.connect(f"inproc://circusmeta-inside-{self._id}")
        # libzmq takes a connection's options when it is made: the nodes without CURVE first,
        # then each CURVE node with its keys
        for feed in sorted(stats, key=lambda f: f.curve is not None):
            if feed.curve is not None:
                feed.curve.apply(up)
            self._up_feeds[feed.address] = feed
            self._connect(up, feed)
        for feed in stats:
            probe = self.context.socket(zmq.SUB)
            _setup_sub(probe, queue_per_node(len(stats), self.max_queued))
            probe.setsockopt(zmq.SUBSCRIBE, _PROBE)
            if feed.curve is not None:
                feed.curve.apply(probe)
            self._probes[feed] = probe
            self._connect(probe, feed)
        self.pump = StatsPump(sync, up, self._pubs[STATS], self.max_rate)

    @staticmethod
    def _connect(sock: zmq.Socket, feed: Feed) -> None:
        try:
            sock.connect(feed.address)
        except zmq.ZMQError as exc:
            raise zmq.ZMQError(exc.errno, f"cannot connect to {feed.node}'s {feed.kind} "
                                          f"on {feed.address}: {exc}") from None

    # -- running --------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        tasks: list[asyncio.Task] = []
        if self.pump is not None:
            assert self._up_monitor is not None
            self.pump.start()
            tasks.append(asyncio.create_task(self._control()))
            tasks.append(asyncio.create_task(self._watch(self._up_monitor, self._up_feeds)))
            for feed, probe in list(self._probes.items()):
                tasks.append(asyncio.create_task(self._probe(feed, probe)))
        for feed, sub, monitor in self._events:
            tasks.append(asyncio.create_task(self._pump_events(feed, sub, self._pubs[EVENTS])))
            if monitor is not None:
                tasks.append(asyncio.create_task(self._watch(monitor, {feed.address: feed})))
        waiter = asyncio.create_task(stop.wait())
        try:
            pending = {waiter, *tasks}
            while waiter in pending:          # a probe ends when it learnt the node is ours
                done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
                for task in done:
                    if task is not waiter and task.exception() is not None:
                        raise task.exception()  # type: ignore[misc]
                if waiter in done:
                    break
        finally:
            for task in (waiter, *tasks):
                task.cancel()
            await asyncio.gather(waiter, *tasks, return_exceptions=True)
            self._stop_pump()

    def _stop_pump(self) -> None:
        if self.pump is None or self.pump.stopped:
            return
        for line in self.pump.stop():
            self.log(f"stats {line}")
        if STATS in self.forwarded:
            self.forwarded[STATS] = self.pump.forwarded

    async def _control(self) -> None:
        assert self.pump is not None
        while True:
            for line in self.pump.tick():
                self.log(f"stats {line}")
            if self.pump.error is not None:
                raise self.pump.error
            self.forwarded[STATS] = self.pump.forwarded
            await asyncio.sleep(TICK)

    async def _watch(self, monitor: zmq.asyncio.Socket, feeds: dict[str, Feed]) -> None:
        connections = {address: _Connection(feed, self._handshake_ivl)
                       for address, feed in feeds.items()}
        while True:
            event = parse_monitor_message(await monitor.recv_multipart())
            endpoint = event.get("endpoint", b"")
            address = endpoint.decode() if isinstance(endpoint, bytes) else str(endpoint)
            connection = connections.get(address)
            if connection is None:                       # the inproc one, or unknown
                continue
            line = connection.line(event["event"], time.monotonic())
            if line is not None:
                self.log(line)

    async def _probe(self, feed: Feed, probe: zmq.asyncio.Socket) -> None:
        """Learn from its first message whether the node is a 0.19 circusd-stats; follow it
        then (republishing with the pool's name), else close the probe."""
        sync = zmq.Socket.shadow(probe.underlying)
        frames = await probe.recv_multipart()
        if _payload_names_a_node(frames):
            del self._probes[feed]
            probe.close(0)
            return
        self.log(f"{feed.node}: its stats topics carry no node name (a 0.19 circusd-stats): "
                 f"republished as {feed.node}/stat....")
        sync.setsockopt(zmq.SUBSCRIBE, LEGACY)
        state = FeedState()
        self._republish(feed, frames, state)
        while True:
            await probe.poll()
            for _ in range(_DRAIN):
                try:
                    frames = sync.recv_multipart(zmq.NOBLOCK)
                except zmq.Again:
                    break
                self._republish(feed, frames, state)
            else:
                await asyncio.sleep(0)         # more waiting: let the other sockets run

    def _republish(self, feed: Feed, frames: list[bytes], state: FeedState) -> None:
        """A 0.19 node's stats message, with the pool's name, into the upstream socket."""
        assert self._inside is not None
        new = stats_topic(feed.node, frames[0], frames[1], state) if len(frames) == 2 else None
        if new is None:
            self.dropped += 1
        else:
            self._inside.send_multipart([new, frames[1]], zmq.NOBLOCK)

    async def _pump_events(self, feed: Feed, sub: zmq.asyncio.Socket, pub: zmq.Socket) -> None:
        sync = zmq.Socket.shadow(sub.underlying)
        while True:
            await sub.poll()
            for _ in range(_DRAIN):
                try:
                    frames = sync.recv_multipart(zmq.NOBLOCK)
                except zmq.Again:
                    break
                if len(frames) != 2:
                    continue
                topic, body = frames
                try:
                    pub.send_multipart([event_topic(feed.node, topic, body), body], zmq.NOBLOCK)
                except zmq.Again:              # not with PUB (it drops), but never block
                    continue
                self.forwarded[EVENTS] += 1
            else:
                await asyncio.sleep(0)         # more waiting: let the other sockets run

    # -- closing --------------------------------------------------------------------------

    def close(self) -> None:
        self._stop_pump()
        stuck = self.pump is not None and not self.pump.stopped   # its thread did not end
        for _, sub, monitor in self._events:
            if monitor is not None:
                try:
                    sub.disable_monitor()
                except zmq.ZMQError:
                    pass
                monitor.close(0)
            sub.close(0)
        for probe in self._probes.values():
            probe.close(0)
        if self._up is not None and not stuck:
            try:
                self._up.disable_monitor()
            except zmq.ZMQError:
                pass
            self._up.close(0)
        if self._up_monitor is not None:
            self._up_monitor.close(0)
        if self._inside is not None:
            self._inside.close(0)
        for kind, pub in self._pubs.items():
            if not (stuck and kind == STATS):
                pub.close(0)
        self._events.clear()
        self._probes.clear()
        self._pubs.clear()
        if self._gate is not None:
            self._gate.close()
            self._gate = None
        if stuck:               # a thread still holds two sockets: let the process end it
            return
        self.context.term()


def _payload_names_a_node(frames: list[bytes]) -> bool:
    if len(frames) != 2:
        return False
    try:
        payload = json.loads(frames[1])
    except (UnicodeDecodeError, ValueError):
        return False
    return isinstance(payload, dict) and "node" in payload
