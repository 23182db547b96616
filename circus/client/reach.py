"""Whether circusd can be reached at an endpoint and, when it cannot, why: said as soon as it can
be known rather than at the end of a timeout.

* :func:`endpoint_problem` checks an endpoint's syntax (pure): ``foo``, ``tcp://x`` or ``ipc://``
  are mistakes to report as such, not addresses to wait on.
* :func:`socket_file_problem` looks at the file of an ``ipc://`` endpoint: a missing socket file
  means nobody listens there, which needs no waiting.
* :class:`ConnectionWatch` reads the socket monitor of one client socket (attached before it
  connects) and tells what happened: connected, refused (a connection attempt failed before any
  connection: ZeroMQ's ``EVENT_CONNECT_RETRIED``), or a failed handshake (CURVE keys missing,
  unknown to the server, or not the server's).
* :func:`explain` turns what was seen into the operator's words (pure).

The client uses it when asked (``CircusClient(..., diagnose=True)``, as circusctl does);
without it a timeout stays 0.19's ``CallError("Timed out.")``.
"""
from __future__ import annotations

import os
import re
import socket
import stat
import struct
from dataclasses import dataclass

import zmq

__all__ = ["endpoint_problem", "socket_file_problem", "ConnectionWatch", "Seen", "explain",
           "KEYS_HINT"]

#: how an operator gives CURVE keys to our command-line tools
KEYS_HINT = "--curve-key/--server-key"

_HANDSHAKE_FAILED = (zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL | zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL |
                     zmq.EVENT_HANDSHAKE_FAILED_AUTH)
_EVENTS = (zmq.EVENT_CONNECTED | zmq.EVENT_CONNECT_DELAYED | zmq.EVENT_CONNECT_RETRIED |
           zmq.EVENT_DISCONNECTED | zmq.EVENT_HANDSHAKE_SUCCEEDED | _HANDSHAKE_FAILED)
_HOST_PORT = re.compile(r"(?P<host>\[[0-9A-Fa-f:.]+\]|[^:\[\]/]+):(?P<port>[^:]*)")


def endpoint_problem(endpoint: str) -> str | None:
    """What is wrong with ``endpoint`` as a control or events endpoint to connect to, or None.
    Only ``tcp://HOST:PORT`` and ``ipc://PATH`` are endpoints of circusd."""
    scheme, sep, rest = endpoint.partition("://")
    if not sep:
        return "not an endpoint (expected tcp://HOST:PORT or ipc://PATH)"
    if scheme not in ("tcp", "ipc"):
        return f"unsupported transport {scheme + '://'!r} (expected tcp://HOST:PORT or ipc://PATH)"
    if scheme == "ipc":
        return None if rest.strip() else "no socket path (expected ipc://PATH)"
    match = _HOST_PORT.fullmatch(rest)
    if match is None:
        return "no port (expected tcp://HOST:PORT)" if ":" not in rest else \
            "expected tcp://HOST:PORT"
    host, port = match["host"], match["port"]
    if not port.isdigit() or not 0 < int(port) < 65536:
        return f"invalid port {port!r} (expected 1 to 65535)"
    if host == "*":
        return "'*' is for binding: give the address circusd listens on (e.g. 127.0.0.1)"
    return None


def _ipc_path(endpoint: str) -> str | None:
    if not endpoint.startswith("ipc://"):
        return None
    path = endpoint[len("ipc://"):]
    return None if path.startswith("@") else path     # '@name': Linux abstract namespace


def socket_file_problem(endpoint: str) -> str | None:
    """For ``ipc://PATH``: why nobody can be listening on PATH (missing, not a socket), or None
    (a tcp endpoint, an abstract socket, or a socket file that exists)."""
    path = _ipc_path(endpoint)
    if path is None:
        return None
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        return "no such socket file (is circusd running with this endpoint?)"
    except OSError as exc:
        return f"cannot look at the socket file: {exc.strerror}"
    if not stat.S_ISSOCK(mode):
        return f"{path} is not a socket"
    return None


def _refusal(endpoint: str) -> str:
    """Why a connection attempt to ``endpoint`` failed before connecting (looks at the file or
    resolves the host: only called once an attempt failed)."""
    path = _ipc_path(endpoint)
    if path is not None:
        problem = socket_file_problem(endpoint)
        if problem:
            return problem
        if not os.access(path, os.R_OK | os.W_OK):
            info = os.stat(path)
            return (f"permission denied (the socket file belongs to uid {info.st_uid}, mode "
                    f"{stat.S_IMODE(info.st_mode):04o})")
        return ("nobody listens on this socket file (circusd is not running, or it left a "
                "stale socket file)")
    if endpoint.startswith("ipc://"):
        return "nobody listens on this abstract socket (is circusd running with this endpoint?)"
    match = _HOST_PORT.fullmatch(endpoint.partition("://")[2])
    if match is not None:
        host = match["host"].strip("[]")
        try:
            socket.getaddrinfo(host, None)
        except (socket.gaierror, UnicodeError):
            return f"unknown host {host!r}"
    return "connection refused (is circusd running with this endpoint?)"


@dataclass
class Seen:
    """What the monitor told about a socket's connection (its latest news)."""

    connected: bool = False          # a connection is up now
    ever_connected: bool = False
    delayed: bool = False            # a tcp connection attempt is in progress
    handshake: int | None = None     # the last handshake event (succeeded or one of the failures)
    failure: str = ""                # "refused" or "handshake": the last reason to give up
    failures: int = 0                # how many failures were seen (a call counts its own)


def explain(endpoint: str, seen: Seen, keyed: bool, timeout: float | None = None,
            command: str | None = None) -> str:
    """The operator's words for ``seen``: why a call failed (``timeout``: it ran out of time,
    else a failure seen by the monitor). ``keyed``: the client has CURVE keys."""
    if timeout is None and seen.failure == "refused":
        return f"cannot connect to {endpoint}: {_refusal(endpoint)}"
    if timeout is None or seen.failure == "handshake":
        if seen.handshake == zmq.EVENT_HANDSHAKE_FAILED_AUTH:
            return (f"{endpoint} refused this client's CURVE key (its public key is not in "
                    f"circusd's curve_clients directory)")
        if keyed:
            return (f"the CURVE handshake with {endpoint} failed: the server key "
                    f"({KEYS_HINT.split('/')[1]}) is not circusd's public key, or circusd "
                    f"there does not use CURVE")
        return (f"the handshake with {endpoint} failed: circusd there needs CURVE keys "
                f"({KEYS_HINT}), or it is not circusd")
    within = f"within {timeout:g} s"
    asked = f" to {command!r}" if command else ""
    if seen.handshake == zmq.EVENT_HANDSHAKE_SUCCEEDED or (seen.connected and
                                                            endpoint.startswith("ipc://")):
        return (f"no answer from {endpoint}{asked} {within}: circusd is connected but busy or "
                f"slow (for a waiting command, give a larger --timeout)")
    if seen.connected:
        return (f"no answer from {endpoint} {within}: connected, but the handshake did not "
                f"complete (is it circusd? does it need CURVE keys ({KEYS_HINT})?)")
    if seen.delayed and not seen.ever_connected:
        return (f"no answer from {endpoint} {within}: no connection could be made (a "
                f"firewall, or a wrong address?)")
    return (f"no answer from {endpoint} {within}: circusd may not be running there, or it needs "
            f"CURVE keys ({KEYS_HINT})")


class ConnectionWatch:
    """The socket monitor of one blocking client socket. Create it before the socket connects
    (so that no event is missed); :meth:`feed` reads what came, :attr:`seen` holds the news."""

    def __init__(self, sock: zmq.Socket, endpoint: str, keyed: bool = False) -> None:
        self.endpoint, self.keyed = endpoint, keyed
        self.seen = Seen()
        self._attempt_connected = False   # the current connection attempt got connected
        self._sock = sock
        self.monitor: zmq.Socket = sock.get_monitor_socket(_EVENTS)

    def feed(self) -> None:
        """Read every event the monitor holds (never waits)."""
        while True:
            try:
                frames = self.monitor.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                return
            # frame 1: the event (uint16) and its value (uint32); frame 2: the address. Parsed
            # here: zmq.utils.monitor would import asyncio into circusctl
            if frames and len(frames[0]) >= 6:
                self._apply(struct.unpack("=HI", frames[0][:6])[0])

    def _apply(self, kind: int) -> None:
        seen = self.seen
        if kind == zmq.EVENT_CONNECT_DELAYED:
            seen.delayed = True
        elif kind == zmq.EVENT_CONNECTED:
            seen.connected = seen.ever_connected = self._attempt_connected = True
            seen.delayed = False
        elif kind == zmq.EVENT_DISCONNECTED:
            seen.connected = False
        elif kind == zmq.EVENT_CONNECT_RETRIED:
            if not self._attempt_connected:      # failed before connecting: refused, no file...
                seen.failure, seen.failures = "refused", seen.failures + 1
            self._attempt_connected = seen.delayed = False
        elif kind == zmq.EVENT_HANDSHAKE_SUCCEEDED:
            seen.handshake, seen.failure = kind, ""
        elif kind & _HANDSHAKE_FAILED:
            seen.handshake, seen.failure, seen.failures = kind, "handshake", seen.failures + 1

    def failed_since(self, mark: int) -> str | None:
        """Why the endpoint cannot be reached, if a failure was seen after ``mark`` (a count of
        :attr:`Seen.failures`), or if the server refused this client's key (it does not retry)."""
        self.feed()
        seen = self.seen
        if seen.failures > mark or seen.handshake == zmq.EVENT_HANDSHAKE_FAILED_AUTH:
            return explain(self.endpoint, seen, self.keyed)
        return None

    def timed_out(self, timeout: float, command: str | None = None) -> str:
        self.feed()
        return explain(self.endpoint, self.seen, self.keyed, timeout, command)

    def close(self) -> None:
        try:
            if not self._sock.closed:
                self._sock.disable_monitor()
        except zmq.ZMQError:
            pass
        self.monitor.close(linger=0)
