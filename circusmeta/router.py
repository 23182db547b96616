"""One socket for the whole pool: a ZeroMQ ROUTER connected to every node's control endpoint,
each connection named by the pool (``CONNECT_ROUTING_ID``), and one socket monitor for all.

Why: a DEALER and a monitor per node cost three ZeroMQ sockets a node (libzmq's default limit of
1,023 sockets per context was reached at about 340 nodes) and a coroutine, a future and a timer
per call. Here a call is a frame pair sent on the one socket and an entry in a dict; a reply is
routed to its call by the message id (a counter, prefixed once per process), so the cost of a
node is its connection (one file descriptor) and a few microseconds of Python per call.

circusd's control socket is a ROUTER: our ROUTER's frames ``[link, body]`` reach it as ``[our
identity, body]``, as a DEALER's would, and its answer ``[our identity, reply]`` comes back as
``[link, reply]``. The options libzmq copies at connect time — CURVE keys, the handshake interval
— are set before each ``connect``, so every node has its own keys on the one socket. Nodes of the
pool file that share an endpoint and keys share one connection (a *link*).

What a link's state says (from the monitor's events, which carry the endpoint):

- *connected*: the transport connected (``CONNECTED``: the one event a healthy node costs), not
  lost since. A call is sent at once, connected or not: libzmq writes it when the connection is
  up. One whose link is not connected by ``connect_timeout`` fails (``not_available``, why:
  refused, no socket file, no answer to the attempts), and what was queued for the link is
  dropped (it is connected anew under another routing id): a request never reaches a node late,
  after it was reported unreachable.
- *gave up*: that happened: the next calls fail at once until the link connects.
- *handshake error*: the CURVE handshake failed for a key reason: ``not_available`` at once
  until the link connects again (and fails again at once if the keys are still wrong). A
  handshake that *timed out* (the peer accepted the connection and never spoke within
  ``HANDSHAKE_IVL``) is no key problem: it only adds its words to the ``unresponsive`` reason.
- *silent*: a call on the link got no answer within its deadline, and nothing has arrived on
  the link since — a frozen circusd, or a listener that never speaks. The next calls are not
  sent and are ``unresponsive`` at once, so a frozen node costs one timeout per session, not
  one per call (a dashboard's refresh, a rolling operation's steps). Anything received on the
  link (the late answer of an overloaded node too) ends it, and so does the loss of the
  connection to a peer that did speak (circusd stopped: the next one gets a fair chance).

Drivers: :meth:`Router.run` blocks (``zmq.Poller``; the command line needs no asyncio for a
fan-out), :meth:`Router.run_async` waits on the event loop (readers on the two sockets' file
descriptors, one timer for the earliest deadline). Both use :meth:`Router.submit` and
:meth:`Router.pump`, which never wait.
"""
from __future__ import annotations

import heapq
import itertools
import json
import os
import struct
import time
from typing import Any, Callable, Iterable, Sequence

import zmq

from .fanout import (ACTIVE, HANDSHAKE_FAILED, NOT_AVAILABLE, UNRESPONSIVE, NodeResult,
                     connect_failure, handshake_failure, handshake_timed_out)

__all__ = ["Router", "Link", "Call", "request_template"]

#: what the monitor reports: one event per node that connects fine (``CONNECTED``), the rest
#: only when something goes wrong
_MONITORED = (zmq.EVENT_CONNECTED | zmq.EVENT_DISCONNECTED | zmq.EVENT_CONNECT_RETRIED |
              zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL | zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL |
              zmq.EVENT_HANDSHAKE_FAILED_AUTH)
_CONNECTED, _DISCONNECTED, _RETRIED = (int(zmq.EVENT_CONNECTED), int(zmq.EVENT_DISCONNECTED),
                                       int(zmq.EVENT_CONNECT_RETRIED))
_FAILED = frozenset(int(e) for e in HANDSHAKE_FAILED)
_NOBLOCK, _SNDMORE, _POLLIN = int(zmq.NOBLOCK), int(zmq.SNDMORE), int(zmq.POLLIN)
_RCVMORE, _CONNECT_ROUTING_ID = int(zmq.RCVMORE), int(zmq.CONNECT_ROUTING_ID)
_EVENTS = int(zmq.EVENTS)
_EVENT = struct.Struct("=HI")
# pyzmq's own methods, without the Python layer over them (its option and flag conversions
# cost more than the call itself, a thousand times per fan-out)
_send, _connect = zmq.backend.Socket.send, zmq.backend.Socket.connect
#: contexts left to the end of the process (:meth:`Router.close` with ``exiting``)
_LEFT: list[zmq.Context] = []
#: the handshake interval libzmq uses when not told (30 s)
DEFAULT_HANDSHAKE_IVL = 30.0


def request_template(command: str, props: dict[str, Any]) -> tuple[bytes, bytes]:
    """A request's JSON around its id: ``head + id + tail`` is the whole request (pure). Encoded
    once per fan-out, not once per node."""
    from circus.protocol import encode

    body = encode({"command": command, "properties": props})
    return body[:-1] + b',"id":"', b'"}'


class Link:
    """One connection of the ROUTER: an endpoint and the keys it is reached with."""

    __slots__ = ("endpoint", "routing_id", "curve", "connected", "retried", "connected_at",
                 "handshake_error", "handshake_timeout", "gave_up", "silent", "heard",
                 "handshake_ivl", "index", "generation")

    def __init__(self, endpoint: str, routing_id: bytes, curve: Any, handshake_ivl: float):
        self.endpoint = endpoint
        self.routing_id = routing_id
        self.curve = curve
        self.handshake_ivl = handshake_ivl
        self.connected = False
        self.retried = False                 # an attempt failed before connecting (refused...)
        self.connected_at: float | None = None
        self.handshake_error: str | None = None
        self.handshake_timeout: str | None = None
        self.gave_up: str | None = None
        self.silent: str | None = None
        self.heard = 0.0                     # when something last arrived on it (monotonic)
        self.index, self.generation = 0, 0   # its routing id: n{index}.{generation}

    def connect_failure(self, limit: float) -> str:
        exists = None
        if self.endpoint.startswith("ipc://"):
            path = self.endpoint[len("ipc://"):]
            exists = path.startswith("@") or os.path.exists(path)   # @: an abstract socket
        return connect_failure(self.endpoint, limit, self.retried, exists)


class Call:
    """One request to one node, from submission to its :class:`NodeResult`."""

    __slots__ = ("node", "link", "command", "body", "id", "timeout", "started", "deadline",
                 "connect_by", "sent", "live", "result", "batch")

    def __init__(self, node: str, link: Link, command: str, body: bytes, call_id: str,
                 timeout: float, connect_timeout: float, batch: "Batch") -> None:
        self.node, self.link, self.command, self.body, self.id = node, link, command, body, call_id
        self.timeout = timeout
        self.started = time.monotonic()
        self.deadline = self.started + timeout
        self.connect_by = self.started + min(timeout, connect_timeout)
        self.sent = 0.0
        self.live = False                    # sent on a connection that was up
        self.result: NodeResult | None = None
        self.batch = batch


class Batch:
    """The calls of one fan-out; ``on_done`` runs once the last one has its result."""

    __slots__ = ("calls", "left", "on_done")

    def __init__(self) -> None:
        self.calls: list[Call] = []
        self.left = 0
        self.on_done: Callable[[], None] | None = None

    def results(self) -> dict[str, NodeResult]:
        return {c.node: c.result for c in self.calls if c.result is not None}


class Router:
    """The pool's one control socket. ``links`` are made on first use, never closed before
    :meth:`close`; ``connect_timeout`` bounds a call's wait for its link's connection."""

    def __init__(self, *, handshake_ivl: float | None = None, io_threads: int = 1) -> None:
        self.context = zmq.Context(io_threads)
        self.socket = self.context.socket(zmq.ROUTER)
        self.socket.setsockopt(zmq.LINGER, 0)
        self.socket.setsockopt(zmq.ROUTING_ID, b"circusmeta-" + os.urandom(6).hex().encode())
        self.monitor = self.socket.get_monitor_socket(_MONITORED)
        self.handshake_ivl = handshake_ivl
        self._links: dict[tuple[str, Any], Link] = {}
        self._by_endpoint: dict[bytes, list[Link]] = {}
        self._by_routing_id: dict[bytes, Link] = {}
        self._calls: dict[str, Call] = {}            # sent, waiting for the answer
        self._timers: list[tuple[float, int, Call]] = []
        self._seq = itertools.count()
        self._ids = itertools.count(1)
        self._prefix = os.urandom(4).hex() + "-"
        self._curve_set = False                      # the socket's options carry CURVE keys
        self._ivl: float | None = None
        self._async: Any = None                      # the asyncio driver, made on first use
        self.closed = False

    # -- links -------------------------------------------------------------------------------------

    @property
    def links(self) -> list[Link]:
        return list(self._links.values())

    @staticmethod
    def link_key(endpoint: str, curve: Any = None) -> tuple[str, Any]:
        return endpoint, None if curve is None else (curve.public, curve.secret, curve.server)

    def link_keys(self) -> set[tuple[str, Any]]:
        return set(self._links)

    def link(self, endpoint: str, curve: Any = None) -> Link:
        """The link to ``endpoint`` with ``curve`` keys (``ClientKeys`` or None), connected now
        if new. ZMQError for an endpoint libzmq refuses (a bad address)."""
        key = self.link_key(endpoint, curve)
        link = self._links.get(key)
        if link is not None:
            return link
        link = Link(endpoint, b"", curve, 0.0)
        link.index = len(self._links)
        self._connect(link)
        self._links[key] = link
        self._by_endpoint.setdefault(endpoint.encode(), []).append(link)
        return link

    def _connect(self, link: Link) -> None:
        """Connect ``link`` under a new routing id, its options set first."""
        curve, sock = link.curve, self.socket
        link.generation += 1
        routing_id = b"n%d.%d" % (link.index, link.generation)
        if curve is not None:
            sock.setsockopt(zmq.CURVE_SECRETKEY, curve.secret)
            sock.setsockopt(zmq.CURVE_PUBLICKEY, curve.public)
            sock.setsockopt(zmq.CURVE_SERVERKEY, curve.server)     # makes this connect CURVE's
            self._curve_set = True
        elif self._curve_set:
            sock.setsockopt(zmq.CURVE_SERVER, 0)                   # back to no security
            self._curve_set = False
        if self._ivl is None:                        # the same for every connection
            if self.handshake_ivl is not None:
                sock.setsockopt(zmq.HANDSHAKE_IVL, int(self.handshake_ivl * 1000))
            self._ivl = sock.getsockopt(zmq.HANDSHAKE_IVL) / 1000
        link.handshake_ivl = self._ivl
        sock.set(_CONNECT_ROUTING_ID, routing_id)
        _connect(sock, link.endpoint)
        self._by_routing_id.pop(link.routing_id, None)
        link.routing_id = routing_id
        self._by_routing_id[routing_id] = link

    def _purge(self, link: Link, why: str) -> None:
        """Drop what is queued for ``link`` (its node never took it): its connection is made
        anew under another routing id, and every call still waiting on it fails with ``why``
        (a request queued for a node that is down must not run when it comes back)."""
        endpoint = link.endpoint
        try:
            self.socket.disconnect(endpoint)
        except zmq.ZMQError:
            pass
        for other in self._by_endpoint.get(endpoint.encode(), ()):  # one endpoint, other keys
            other.connected = False
            for call in [c for c in self._calls.values() if c.link is other]:
                self._finish(call, self._not_available(call, why))
            self._connect(other)

    # -- calls -------------------------------------------------------------------------------------

    def submit(self, targets: Sequence[tuple[str, Link, float, float]], command: str,
               props: dict[str, Any], props_for: Callable[[str], dict[str, Any]] | None = None
               ) -> Batch:
        """Start ``command`` on each ``(node, link, timeout, connect_timeout)``; what can be
        decided at once (a link that gave up, failed its handshake, or is silent) is."""
        batch = Batch()
        head, tail = request_template(command, props)
        prefix = self._prefix
        for node, link, timeout, connect_timeout in targets:
            if props_for is not None:
                extra = props_for(node)
                if extra:
                    h, t = request_template(command, {**props, **extra})
                else:
                    h, t = head, tail
            else:
                h, t = head, tail
            call_id = prefix + format(next(self._ids), "x")
            call = Call(node, link, command, h + call_id.encode() + t, call_id, timeout,
                        connect_timeout, batch)
            batch.calls.append(call)
            batch.left += 1
            if link.handshake_error is not None:
                self._finish(call, self._not_available(call, link.handshake_error))
            elif link.connected:
                if link.silent is not None:
                    self._finish(call, NodeResult(node, UNRESPONSIVE, endpoint=link.endpoint,
                                                  error=f"{link.silent}: {command!r} not sent",
                                                  sent=False))
                else:
                    self._send(call)
            elif link.gave_up is not None:
                self._finish(call, self._not_available(call, link.gave_up))
            else:
                # sent now: libzmq writes it as soon as the connection is up; if it is not up
                # by ``connect_by``, the queue is dropped (:meth:`_purge`)
                self._send(call)
                if call.result is None and call.connect_by < call.deadline:
                    heapq.heappush(self._timers, (call.connect_by, next(self._seq), call))
        return batch

    def _send(self, call: Call) -> None:
        link, sock = call.link, self.socket
        try:
            _send(sock, link.routing_id, _NOBLOCK | _SNDMORE)
            _send(sock, call.body, _NOBLOCK)
        except zmq.ZMQError as exc:              # the link's queue is full (HWM): no room
            self._finish(call, self._not_available(call, f"{link.endpoint}: cannot send: {exc}"))
            return
        call.sent = time.monotonic()
        call.live = link.connected
        self._calls[call.id] = call
        heapq.heappush(self._timers, (call.deadline, next(self._seq), call))

    def _finish(self, call: Call, result: NodeResult) -> None:
        if call.result is not None:
            return
        call.result = result
        self._calls.pop(call.id, None)
        batch = call.batch
        batch.left -= 1
        if batch.left == 0 and batch.on_done is not None:
            batch.on_done()

    @staticmethod
    def _not_available(call: Call, why: str) -> NodeResult:
        return NodeResult(call.node, NOT_AVAILABLE, error=why, endpoint=call.link.endpoint)

    # -- what arrived, what is due -----------------------------------------------------------------

    def pump(self) -> float | None:
        """Read every monitor event and reply waiting, end the calls whose time is up; the
        monotonic time of the next deadline (None: nothing pending). Never waits."""
        self._read_events()
        self._read_replies()
        now = time.monotonic()
        timers = self._timers
        while timers:
            when, _, call = timers[0]
            if call.result is not None:
                heapq.heappop(timers)
                continue
            if when > now:
                return when
            heapq.heappop(timers)
            self._expire(call, when, now)
        return None

    def _expire(self, call: Call, when: float, now: float) -> None:
        link = call.link
        # no connection by now (a peer that accepts and never completes a handshake is
        # connected often enough: it is a silent node, not a missing one)
        if not link.connected and link.handshake_timeout is None:
            if when < call.connect_by:
                return
            why = link.handshake_error or link.gave_up or \
                link.connect_failure(call.connect_by - call.started)
            if call.live and link.handshake_error is None and link.gave_up is None:
                why = f"the connection to {link.endpoint} was lost before an answer to " \
                      f"{call.command!r} (circusd stopped?)"
            link.gave_up = why
            self._purge(link, why)
            return
        if when < call.deadline:
            return
        why = (f"connected to {link.endpoint}, but no answer to {call.command!r} within "
               f"{call.timeout:g} s")
        if link.handshake_timeout is not None:
            why += f": {link.handshake_timeout}"
        if link.heard < call.sent:               # nothing since: silent from now on
            link.silent = (f"no answer to {call.command!r} within {call.timeout:g} s, and "
                           f"nothing heard from {link.endpoint} since (a frozen or overloaded "
                           f"circusd, or no circusd at that address)")
        self._finish(call, NodeResult(call.node, UNRESPONSIVE, error=why,
                                      endpoint=link.endpoint))

    def _read_replies(self) -> None:
        sock, calls, links = self.socket, self._calls, self._by_routing_id
        recv, more, loads = sock.recv, sock.get, json.loads
        while True:
            try:
                head = recv(_NOBLOCK)
            except zmq.Again:
                return
            body = None
            while more(_RCVMORE):                # circusd answers [link, reply]
                body = recv(_NOBLOCK)
            link = links.get(head)
            if link is None or body is None:
                continue
            link.heard = time.monotonic()
            link.silent = link.handshake_timeout = None
            try:
                reply = loads(body.decode())
            except ValueError:
                continue
            if not isinstance(reply, dict):
                continue
            call = calls.get(reply.get("id"))    # type: ignore[arg-type]
            if call is None or call.link is not link:
                continue                         # the answer to a call given up already
            self._finish(call, NodeResult(call.node, ACTIVE, reply, rtt=link.heard - call.started,
                                          endpoint=link.endpoint))

    def _read_events(self) -> None:
        monitor = self.monitor
        recv, more, unpack = monitor.recv, monitor.get, _EVENT.unpack_from
        by_endpoint = self._by_endpoint
        while True:
            try:
                event = recv(_NOBLOCK)
            except zmq.Again:
                return
            address = None
            while more(_RCVMORE):                # [event and value, endpoint]
                address = recv(_NOBLOCK)
            if address is None or len(event) < 6:
                continue
            kind = unpack(event)[0]
            for link in by_endpoint.get(address, ()):
                self._apply(link, kind)

    def _apply(self, link: Link, kind: int) -> None:
        if kind == _CONNECTED:
            link.connected, link.retried, link.gave_up = True, False, None
            link.handshake_error = None          # told again at once if the keys are still wrong
            link.connected_at = time.monotonic()
        elif kind == _RETRIED:
            link.retried = True
        elif kind == _DISCONNECTED:
            # the peer went away (circusd stopped, link cut): until ZeroMQ reconnects, a call
            # is a new connection attempt, not a wait for a frozen node's answer; the next
            # connection gets a fair chance (it may be a circusd started again)
            link.connected = False
            if link.handshake_timeout is None:   # not the same peer that never speaks
                link.silent = None
        elif kind in _FAILED:
            elapsed = None if link.connected_at is None else time.monotonic() - link.connected_at
            if handshake_timed_out(kind, elapsed, link.handshake_ivl):
                # a timeout, not a key problem: the calls wait for their own deadline
                link.handshake_timeout = handshake_failure(
                    kind, link.curve is not None, link.endpoint, True, link.handshake_ivl)
                return
            why = handshake_failure(kind, link.curve is not None, link.endpoint)
            link.handshake_error = why
            link.connected = False
            self._purge(link, why)

    # -- drivers -----------------------------------------------------------------------------------

    def run(self, *batches: Batch) -> None:
        """Wait (blocking) until every call of ``batches`` has its result."""
        poller = zmq.Poller()
        poller.register(self.socket, _POLLIN)
        poller.register(self.monitor, _POLLIN)
        while any(b.left for b in batches):
            due = self.pump()
            if not any(b.left for b in batches):
                break
            wait = 1000 if due is None else max(0, int((due - time.monotonic()) * 1000) + 1)
            poller.poll(wait)

    async def run_async(self, batch: Batch) -> dict[str, NodeResult]:
        """Wait on the running event loop until every call of ``batch`` has its result."""
        if self._async is None or self._async.stale():
            if self._async is not None:
                self._async.close()
            self._async = _AsyncDriver(self)
        return await self._async.wait(batch)

    def close(self, exiting: bool = False) -> None:
        """Close the sockets and the context; ``exiting``: the process ends now, the context
        is left to the end of the process rather than waited for (libzmq takes every
        connection down at a context's end: tens of milliseconds for 1,000 nodes)."""
        if self.closed:
            return
        self.closed = True
        if self._async is not None:
            self._async.close()
            self._async = None
        for call in list(self._calls.values()):
            self._finish(call, self._not_available(call, "the pool was closed"))
        try:
            self.socket.disable_monitor()
        except zmq.ZMQError:
            pass
        self.monitor.close(linger=0)
        self.socket.close(linger=0)
        if exiting:
            _LEFT.append(self.context)
        else:
            self.context.term()



class _AsyncDriver:
    """The router on an asyncio loop: a reader on each socket's file descriptor (ZeroMQ's are
    edge-triggered: every wake-up reads until nothing is left), one timer for the earliest
    deadline, one future per batch."""

    def __init__(self, router: Router) -> None:
        import asyncio

        self.router = router
        self.loop = asyncio.get_running_loop()
        self._timer: Any = None
        self._due: float | None = None
        self._fds = [router.socket.getsockopt(zmq.FD), router.monitor.getsockopt(zmq.FD)]
        for fd in self._fds:
            self.loop.add_reader(fd, self._wake)

    def stale(self) -> bool:
        import asyncio

        return self.loop.is_closed() or asyncio.get_running_loop() is not self.loop

    async def wait(self, batch: Batch) -> dict[str, NodeResult]:
        if batch.left:
            future = self.loop.create_future()

            def done() -> None:
                if not future.done():
                    future.set_result(None)
            batch.on_done = done
            self._wake()                     # the sends may have consumed the fd's edge
            if batch.left:
                try:
                    await future
                finally:
                    batch.on_done = None
        return batch.results()

    def _wake(self) -> None:
        router = self.router
        if router.closed:
            return
        due = router.pump()
        # an edge consumed by the work of this pump (a send, a reconnection) with something
        # left to read: read it on the next turn of the loop, not at the next timer
        if router.socket.get(_EVENTS) & _POLLIN or router.monitor.get(_EVENTS) & _POLLIN:
            self.loop.call_soon(self._wake)
        if due == self._due:
            return
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._due = due
        if due is not None:
            self._timer = self.loop.call_later(max(0.0, due - time.monotonic()), self._tick)

    def _tick(self) -> None:
        self._timer, self._due = None, None
        self._wake()

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        if not self.loop.is_closed():
            for fd in self._fds:
                self.loop.remove_reader(fd)
