"""What a fan-out gives: a result per node whatever happened, its state, the exit code, and the
words for what went wrong (pure). The calls themselves go through :mod:`circusmeta.router`
(one socket for the pool, calls in parallel, each with its own deadline).

A node's answer is data, never an exception that hides the others (DESIGN §1). Its state:

- ``active``: it answered within the deadline (with ``ok`` or an error reply);
- ``unresponsive``: the connection was made (the TCP or unix socket connected) but no answer
  came within the deadline — a frozen or overloaded circusd; also when the ZeroMQ handshake
  itself times out (ZeroMQ gives up after ``HANDSHAKE_IVL``, 30 s: the peer accepted the
  connection and never spoke), which is a timeout, not a key problem;
- ``not_available``: no connection at all — refused, no route, no such socket (the reason says
  which, as far as it can be told).

The connection state comes from ZeroMQ's socket monitor (attached before connecting, so the
``connected`` event cannot be missed). A node that did not answer in time, and from which
nothing has arrived since, is not waited for again in the same session (``router.py``).

Under CURVE (the node's ``server_key`` in the pool file) a connection is followed by the CURVE
handshake. One that fails — the node does not admit this client's key, the ``server_key`` is
not the node's, or one side has CURVE and the other not — makes the node ``not_available`` with
the reason, at once rather than at the deadline; it stays so for the session unless a later
handshake succeeds (ZeroMQ keeps reconnecting).
"""
from __future__ import annotations

from typing import Any, Iterable, Mapping

import zmq

from circus.records import Record, record

from .errors import EXIT_OK, EXIT_PARTIAL, EXIT_REFUSED, EXIT_UNREACHABLE, EXIT_USAGE

__all__ = ["NodeResult", "ACTIVE", "UNRESPONSIVE", "NOT_AVAILABLE", "exit_code",
           "handshake_failure", "handshake_timed_out", "connect_failure", "HANDSHAKE_EVENTS",
           "HANDSHAKE_FAILED", "EXIT_OK", "EXIT_UNREACHABLE", "EXIT_USAGE", "EXIT_REFUSED",
           "EXIT_PARTIAL"]

ACTIVE, UNRESPONSIVE, NOT_AVAILABLE = "active", "unresponsive", "not_available"

HANDSHAKE_FAILED = (zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL, zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL,
                    zmq.EVENT_HANDSHAKE_FAILED_AUTH)
#: the monitor events that tell how a handshake went (for every socket watching one)
HANDSHAKE_EVENTS = zmq.EVENT_HANDSHAKE_SUCCEEDED | zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL | \
    zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL | zmq.EVENT_HANDSHAKE_FAILED_AUTH
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


@record
class NodeResult(Record):
    """What one node made of one call."""

    node: str                       # the name in the pool file
    state: str                      # active, unresponsive, not_available
    reply: Mapping[str, Any] | None = None
    error: str | None = None        # why there is no reply
    rtt: float | None = None        # seconds, request to reply
    endpoint: str = ""
    #: why the node's ok is not borne out by a look at it afterwards (rolling operations)
    unconfirmed: str | None = None
    #: False: the request was not sent (the node stayed silent after a call it did not answer)
    sent: bool = True

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
        if not self.sent:
            out["sent"] = False
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
