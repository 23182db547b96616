"""Which control connections libzmq cut before circusd could read a request from them.

A request over ``MAX_FRAME`` x ``MAXMSG_FACTOR`` bytes is refused by libzmq itself (``MAXMSGSIZE``):
it closes the connection while the message is still arriving, so the request never reaches
circusd and libzmq says nothing about why. What it does say, on a socket monitor, is when a
connection was accepted, finished its handshake and was closed, with its file descriptor; and
every message carries the descriptor it came from (``ZMQ_SRCFD``). A connection that finished
its handshake and was closed without having delivered a single request is what such a cut looks
like (or a client that connected and left without asking anything): circusd logs it, at most
once per :data:`LOG_EVERY` seconds with the count of the others, so that the operator sees it.

Only a message that may be a silent connection's first needs its descriptor looked up: while
every known connection has spoken (``silent`` is 0), messages are not looked at.
"""
from __future__ import annotations

import asyncio
import logging
import time
from typing import Callable

import zmq

__all__ = ["ConnectionWatch"]

log = logging.getLogger("circus")

#: seconds between two log lines about cut connections (the others are counted)
LOG_EVERY = 10.0

_SILENT, _SPOKE = 0, 1
_EVENTS = zmq.EVENT_ACCEPTED | zmq.EVENT_DISCONNECTED


class ConnectionWatch:
    """Follows the connections of one ROUTER socket through its monitor."""

    def __init__(self, router: zmq.Socket, limit: int,
                 drain: Callable[[], None] = lambda: None) -> None:
        self.limit = limit
        self._router = router
        self._drain = drain
        self._conns: dict[int, int] = {}
        #: connections accepted that have not delivered a request yet
        self.silent = 0
        self._monitor: zmq.Socket | None = router.get_monitor_socket(_EVENTS)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._last_log = 0.0
        self._unlogged = 0
        self.cut = 0                     # connections closed before any request (since start)

    def attach(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        assert self._monitor is not None
        loop.add_reader(self._monitor.getsockopt(zmq.FD), self._events)
        self._events()

    def spoke(self, frame: zmq.Frame) -> None:
        """A request arrived on ``frame``'s connection."""
        try:
            fd = frame.get(zmq.SRCFD)
        except zmq.ZMQError:
            return
        if self._conns.get(fd) == _SILENT:
            self._conns[fd] = _SPOKE
            self.silent -= 1

    def _events(self) -> None:
        monitor = self._monitor
        closed: list[int] = []
        for _ in range(1000):                 # bounded; the fd is edge-triggered: look again
            if monitor is None or monitor.closed or not monitor.getsockopt(zmq.EVENTS) & zmq.POLLIN:
                break
            try:
                frames = monitor.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                break
            if len(frames) != 2 or len(frames[0]) < 6:
                continue
            event = int.from_bytes(frames[0][:2], "little")
            fd = int.from_bytes(frames[0][2:6], "little", signed=True)
            if event == zmq.EVENT_ACCEPTED:
                if self._conns.get(fd) != _SILENT:
                    self.silent += 1
                self._conns[fd] = _SILENT
            elif event == zmq.EVENT_DISCONNECTED:
                closed.append(fd)
        else:
            if self._loop is not None:
                self._loop.call_soon(self._events)
        if any(self._conns.get(fd) == _SILENT for fd in closed):
            self._drain()    # a request it sent just before closing may be queued: read it first
        for fd in closed:
            if self._conns.pop(fd, _SPOKE) == _SILENT:
                self.silent -= 1
                self._cut()

    def _cut(self) -> None:
        self.cut += 1
        now = time.monotonic()
        if now - self._last_log < LOG_EVERY:
            self._unlogged += 1
            return
        others = f" ({self._unlogged} more since the last such line)" if self._unlogged else ""
        self._last_log, self._unlogged = now, 0
        log.warning("dropped a control connection before it delivered a request: a message over "
                    "%d bytes is cut by libzmq (the client is disconnected), or the client left "
                    "without asking anything (or failed its handshake)%s", self.limit, others)

    def close(self) -> None:
        monitor, self._monitor = self._monitor, None
        if monitor is None:
            return
        if self._loop is not None and not monitor.closed:
            self._loop.remove_reader(monitor.getsockopt(zmq.FD))
        if not self._router.closed:
            try:
                self._router.disable_monitor()
            except zmq.ZMQError:
                pass
        monitor.close(linger=0)
