"""Talking to the nodes of a pool: one control connection per node, calls in parallel, each
with its own deadline, and a result per node whatever happened.

A node's answer is data, never an exception that hides the others (DESIGN §1). Its state:

- ``active``: it answered within the deadline (with ``ok`` or an error reply);
- ``unresponsive``: the connection was made (the TCP or unix socket connected) but no answer
  came within the deadline — a frozen or overloaded circusd; also when the ZeroMQ handshake
  itself times out (ZeroMQ gives up after ``HANDSHAKE_IVL``, 30 s: the peer accepted the
  connection and never spoke), which is a timeout, not a key problem;
- ``not_available``: no connection at all — refused, no route, no such socket (the reason says
  which, as far as it can be told).

The connection state comes from ZeroMQ's socket monitor (attached before connecting, so the
``connected`` event cannot be missed).

Under CURVE (the node's ``server_key`` in the pool file) a connection is followed by the CURVE
handshake. One that fails — the node does not admit this client's key, the ``server_key`` is
not the node's, or one side has CURVE and the other not — makes the node ``not_available`` with
the reason, at once rather than at the deadline; it stays so for the session unless a later
handshake succeeds (ZeroMQ keeps reconnecting).
"""
from __future__ import annotations

import asyncio
import os
import time
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Mapping

import zmq
import zmq.asyncio
from zmq.utils.monitor import parse_monitor_message

from circus.client.aio import AsyncClient
from circus.client.errors import CallError, CallTimeout
from circus.client.wire import make_message

from .pool import NodeSpec

__all__ = ["NodeResult", "NodeClient", "fan_out", "ACTIVE", "UNRESPONSIVE", "NOT_AVAILABLE",
           "exit_code", "handshake_failure", "handshake_timed_out", "connect_failure",
           "HANDSHAKE_EVENTS"]

ACTIVE, UNRESPONSIVE, NOT_AVAILABLE = "active", "unresponsive", "not_available"

#: exit codes (DESIGN §3.9): all ok, nothing reachable, usage, every node refused, partial
EXIT_OK, EXIT_UNREACHABLE, EXIT_USAGE, EXIT_REFUSED, EXIT_PARTIAL = 0, 1, 2, 3, 4

_HANDSHAKE_FAILED = (zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL, zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL,
                     zmq.EVENT_HANDSHAKE_FAILED_AUTH)
#: the monitor events that tell how a handshake went (for every socket watching one)
HANDSHAKE_EVENTS = zmq.EVENT_HANDSHAKE_SUCCEEDED | zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL | \
    zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL | zmq.EVENT_HANDSHAKE_FAILED_AUTH
_MONITORED = zmq.EVENT_CONNECTED | zmq.EVENT_DISCONNECTED | zmq.EVENT_CONNECT_RETRIED | \
    HANDSHAKE_EVENTS
#: a handshake that fails this share of HANDSHAKE_IVL after the connection or later timed out
_TIMED_OUT_SHARE = 0.8


def handshake_timed_out(event: int, elapsed: float | None, handshake_ivl: float) -> bool:
    """Whether a failed handshake is ZeroMQ's handshake timeout (pure): the peer accepted the
    connection and never completed the handshake — a frozen circusd, or no ZeroMQ there.
    ``elapsed``: seconds from the connection to the failure (None: unknown). A CURVE mismatch
    fails at once (``HANDSHAKE_FAILED_PROTOCOL``, or the peer closing the connection)."""
    return (event == zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL and elapsed is not None
            and handshake_ivl > 0 and elapsed >= _TIMED_OUT_SHARE * handshake_ivl)


def handshake_failure(event: int, keyed: bool, endpoint: str, timed_out: bool = False,
                      handshake_ivl: float = 30.0) -> str:
    """Why a handshake with ``endpoint`` failed, in the operator's words (pure)."""
    if timed_out:
        return (f"{endpoint} accepted the connection but did not complete the ZeroMQ handshake "
                f"within {handshake_ivl:g} s (a frozen or overloaded circusd, or no circusd at "
                f"that address)")
    if event == zmq.EVENT_HANDSHAKE_FAILED_AUTH:
        return (f"{endpoint} refused this client's CURVE key (its public key is not in the "
                f"node's curve_clients directory)")
    if keyed:
        return (f"CURVE handshake with {endpoint} failed: the server_key is not this node's "
                f"public key, or the node does not use CURVE")
    return (f"handshake with {endpoint} failed: the node uses CURVE? give its server_key (and "
            f"a client_key) in the pool file")


def connect_failure(endpoint: str, limit: float, retried: bool,
                    socket_file_exists: bool | None = None) -> str:
    """Why no connection to ``endpoint`` was made within ``limit`` seconds (pure): ``retried``
    when ZeroMQ's attempts failed (refused, no such socket file) rather than hung;
    ``socket_file_exists`` for an ipc:// endpoint."""
    head = f"cannot connect to {endpoint} within {limit:g} s"
    if endpoint.startswith("ipc://"):
        if socket_file_exists is False:
            return f"{head}: no socket file {endpoint[len('ipc://'):]} (is circusd running there?)"
        if retried:
            return f"{head}: nobody listens on the socket file (circusd stopped?)"
        return head
    if retried:
        return f"{head}: the connection is refused or the host is unreachable (is circusd " \
               f"running there, on this port?)"
    return f"{head}: no answer to the connection attempts (the host down, or a firewall?)"


@dataclass(frozen=True)
class NodeResult:
    """What one node made of one call."""

    node: str                       # the name in the pool file
    state: str                      # active, unresponsive, not_available
    reply: Mapping[str, Any] | None = None
    error: str | None = None        # why there is no reply
    rtt: float | None = None        # seconds, request to reply
    endpoint: str = ""
    #: why the node's ok is not borne out by a look at it afterwards (rolling operations)
    unconfirmed: str | None = None

    @property
    def ok(self) -> bool:
        # ``status name=W`` answers with the state in "status" (0.19's shape): only "error" fails
        return self.reply is not None and self.reply.get("status") != "error" and \
            self.unconfirmed is None

    @property
    def refused(self) -> bool:
        return self.reply is not None and self.reply.get("status") == "error"

    @property
    def reported_name(self) -> str | None:
        return None if self.reply is None else self.reply.get("node")

    @property
    def name_mismatch(self) -> bool:
        """The circusd at this pool entry calls itself something else (a wrong address?)."""
        reported = self.reported_name
        return reported is not None and reported != self.node

    @property
    def reason(self) -> str:
        if self.unconfirmed is not None:
            return self.unconfirmed
        if self.reply is not None:
            return str(self.reply.get("reason", "")) if self.refused else ""
        return self.error or self.state

    @property
    def code(self) -> str | None:
        """The error code of an error reply (``spawn_failed``, ``unknown_watcher``...)."""
        return str(self.reply.get("code")) if self.refused and self.reply.get("code") else None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"node": self.node, "state": self.state, "endpoint": self.endpoint,
                               "ok": self.ok, "rtt": self.rtt, "reply": self.reply}
        if not self.ok:
            out["reason"] = self.reason
        if self.error:
            out["error"] = self.error
        if self.unconfirmed:
            out["unconfirmed"] = self.unconfirmed
        if self.name_mismatch:
            out["reported_name"] = self.reported_name
        return out


def exit_code(results: Iterable[NodeResult]) -> int:
    """0 every node ok; 1 no node answered; 3 no node did it and the ones that answered refused
    (an error reply); 4 partial: some did it, others failed or could not be reached."""
    results = list(results)
    if results and all(r.ok for r in results):
        return EXIT_OK
    if not any(r.state == ACTIVE for r in results):
        return EXIT_UNREACHABLE
    if not any(r.ok for r in results) and any(r.refused for r in results):
        return EXIT_REFUSED
    return EXIT_PARTIAL


class NodeClient:
    """A DEALER to one node's control endpoint, kept for the session; knows whether it
    connected. A node that could not be connected to within ``connect_timeout`` is
    ``not_available`` for the rest of the session (unless it connects meanwhile): an unreachable
    node costs its deadline once, not once per call."""

    def __init__(self, spec: NodeSpec, context: zmq.asyncio.Context, connect_timeout: float,
                 configure: Callable[[zmq.Socket, NodeSpec], None] | None = None,
                 curve: Any = None) -> None:
        """``curve``: the node's :class:`~circus.security.keys.ClientKeys` (None: no CURVE);
        ``configure(socket, spec)``: anything else to set on the socket before it connects."""
        self.spec = spec
        self.connect_timeout = connect_timeout
        self.curve = curve
        self._connected = asyncio.Event()
        self._failed = asyncio.Event()             # the last handshake failed
        self._handshake_error: str | None = None
        self._gave_up: str | None = None
        self._retried = False                      # a connection attempt failed (refused...)
        self._connected_at: float | None = None
        self._handshake_ivl = 30.0
        #: the last handshake timed out: the peer accepted the connection but never spoke
        self._handshake_timeout: str | None = None
        self._monitor: zmq.asyncio.Socket | None = None
        self._monitored: zmq.Socket | None = None

        def before_connect(sock: zmq.Socket) -> None:
            if configure is not None:
                configure(sock, spec)
            self._handshake_ivl = sock.getsockopt(zmq.HANDSHAKE_IVL) / 1000
            # attached before connecting, so the "connected" event cannot be missed
            self._monitor = sock.get_monitor_socket(_MONITORED)
            self._monitored = sock

        self._client = AsyncClient(spec.endpoint, connect_timeout, context,
                                   before_connect=before_connect, curve=curve)
        self._watch = asyncio.get_running_loop().create_task(self._watch_monitor())

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    async def _watch_monitor(self) -> None:
        assert self._monitor is not None
        try:
            while True:
                event = parse_monitor_message(await self._monitor.recv_multipart())
                kind = event["event"]
                if kind == zmq.EVENT_CONNECTED:
                    self._gave_up = None
                    self._retried = False
                    self._connected_at = time.monotonic()
                    self._connected.set()
                elif kind == zmq.EVENT_CONNECT_RETRIED:
                    self._retried = True
                elif kind == zmq.EVENT_DISCONNECTED:
                    # the peer went away (circusd stopped, link cut): until ZeroMQ reconnects,
                    # a call is a new connection attempt, not a wait for a frozen node's answer
                    self._connected.clear()
                elif kind == zmq.EVENT_HANDSHAKE_SUCCEEDED:
                    self._handshake_error = self._handshake_timeout = None
                    self._failed.clear()
                elif kind in _HANDSHAKE_FAILED:
                    elapsed = None if self._connected_at is None else \
                        time.monotonic() - self._connected_at
                    if handshake_timed_out(kind, elapsed, self._handshake_ivl):
                        # a timeout, not a key problem: the call waits for its own deadline
                        self._handshake_timeout = handshake_failure(
                            kind, self.curve is not None, self.spec.endpoint, True,
                            self._handshake_ivl)
                        continue
                    self._handshake_error = handshake_failure(kind, self.curve is not None,
                                                              self.spec.endpoint)
                    self._failed.set()
        except (zmq.ZMQError, asyncio.CancelledError):
            return

    def _not_available(self, why: str) -> NodeResult:
        return NodeResult(self.spec.name, NOT_AVAILABLE, error=why, endpoint=self.spec.endpoint)

    async def call(self, command: str, timeout: float, /, **props: Any) -> NodeResult:
        """``command`` with ``props`` (which may hold the protocol's own ``timeout``), answered
        within ``timeout`` seconds, connection included."""
        start = time.monotonic()
        if self._handshake_error is not None:
            return self._not_available(self._handshake_error)
        if not self.connected:
            if self._gave_up is not None:
                return self._not_available(self._gave_up)
            limit = min(timeout, self.connect_timeout)
            try:
                await asyncio.wait_for(self._connected.wait(), limit)
            except TimeoutError:
                self._gave_up = self._handshake_error or self._connect_failure(limit)
                return self._not_available(self._gave_up)
        left = max(0.0, timeout - (time.monotonic() - start))
        request = asyncio.ensure_future(self._client.request(make_message(command, **props),
                                                             timeout=left))
        failed = asyncio.ensure_future(self._failed.wait())
        try:
            await asyncio.wait([request, failed], return_when=asyncio.FIRST_COMPLETED)
        finally:
            failed.cancel()
            if not request.done():
                request.cancel()
            await asyncio.gather(request, failed, return_exceptions=True)
        if request.cancelled() and self._handshake_error is not None:
            return self._not_available(self._handshake_error)
        try:
            reply = request.result()
        except CallTimeout:
            if self._handshake_error is not None:
                return self._not_available(self._handshake_error)
            why = f"connected to {self.spec.endpoint}, but no answer to {command!r} within " \
                  f"{timeout:g} s"
            if self._handshake_timeout is not None:
                why += f": {self._handshake_timeout}"
            return NodeResult(self.spec.name, UNRESPONSIVE, error=why, endpoint=self.spec.endpoint)
        except CallError as exc:
            text = str(exc)
            if self.spec.endpoint not in text:
                text = f"{self.spec.endpoint}: {text}"
            return self._not_available(text)
        assert reply is not None
        return NodeResult(self.spec.name, ACTIVE, reply, rtt=time.monotonic() - start,
                          endpoint=self.spec.endpoint)

    def _connect_failure(self, limit: float) -> str:
        exists = None
        if self.spec.endpoint.startswith("ipc://"):
            path = self.spec.endpoint[len("ipc://"):]
            exists = path.startswith("@") or os.path.exists(path)   # @: an abstract socket
        return connect_failure(self.spec.endpoint, limit, self._retried, exists)

    def close(self) -> None:
        self._watch.cancel()
        try:
            if self._monitored is not None:
                self._monitored.disable_monitor()
        except zmq.ZMQError:
            pass
        if self._monitor is not None:
            self._monitor.close(linger=0)
        self._client.close()


async def fan_out(clients: Mapping[str, NodeClient], command: str, deadlines: Mapping[str, float],
                  props_for: Callable[[str], Mapping[str, Any]] | None = None,
                  **props: Any) -> dict[str, NodeResult]:
    """``command`` sent to every client at once; results by node name, in the clients' order.
    ``props_for(node)`` may give per-node properties (they override ``props``)."""
    async def one(name: str, client: NodeClient) -> NodeResult:
        extra = dict(props_for(name)) if props_for else {}
        return await client.call(command, deadlines[name], **{**props, **extra})
    results = await asyncio.gather(*(one(n, c) for n, c in clients.items()))
    return {r.node: r for r in results}
