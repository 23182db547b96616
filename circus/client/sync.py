"""The blocking client, with Circus 0.19's names and signatures so existing scripts run unchanged.

It is thin: message shapes, id matching and socket options come from :mod:`circus.client.wire`,
shared with :class:`circus.client.AsyncClient`. It waits with ``zmq.Poller`` rather than an
event loop, so that importing it (circusctl does) does not pull in asyncio.

Differences from 0.19, all on the caller's side: the timeout is one deadline for the whole call
(0.19 restarted it after each stale reply); ``call`` does not rewrite the caller's dict; a cast
message given to ``call`` is sent and ``None`` returned at once, since circusd never answers it.

With ``diagnose=True`` (circusctl's choice) a call that cannot succeed says why as soon as that
is known, with :class:`~circus.client.errors.Unreachable`: no socket file, a refused connection,
a failed CURVE handshake (see :mod:`circus.client.reach`); a timeout names the endpoint and the
likely cause. Without it, a timeout is 0.19's ``CallTimeout("Timed out.")``.
"""
from __future__ import annotations

import time
from typing import Any, Mapping

import zmq

from circus.client.errors import CallError, CallTimeout, Unreachable
from circus.client.wire import (DEFAULT_ENDPOINT_DEALER, cast_message, connect, is_cast,
                                make_message, prepare_call, read_reply, setup_dealer)

__all__ = ["CircusClient"]


class CircusClient:
    """A DEALER connected to circusd's control endpoint; one call at a time."""

    def __init__(self, context: zmq.Context | None = None, endpoint: str = DEFAULT_ENDPOINT_DEALER,
                 timeout: float = 5.0, ssh_server: str | None = None,
                 ssh_keyfile: str | None = None, curve: Any = None,
                 diagnose: bool = False) -> None:
        """``curve``: :class:`circus.security.keys.ClientKeys` for a CURVE-protected circusd;
        ``diagnose``: fail fast and say why when circusd cannot be reached (not through ssh)."""
        self._own_context = context is None
        self.context = context if context is not None else zmq.Context()
        self.endpoint = endpoint
        self.timeout = float(timeout)
        self.socket = setup_dealer(self.context.socket(zmq.DEALER), curve)
        self._watch: Any = None
        self._mark = 0                       # failures seen before the current call
        try:
            if diagnose and not ssh_server:
                from circus.client.reach import ConnectionWatch
                self._watch = ConnectionWatch(self.socket, endpoint, keyed=curve is not None)
            connect(self.socket, endpoint, ssh_server, ssh_keyfile)
        except BaseException:
            self.stop()
            raise
        self._poller = zmq.Poller()
        self._poller.register(self.socket, zmq.POLLIN)
        if self._watch is not None:
            self._poller.register(self._watch.monitor, zmq.POLLIN)
        self._cast_pending = False   # a cast may still sit in the queue: stop() lets it go out

    def call(self, cmd: Mapping[str, Any], timeout: float | None = None) -> dict[str, Any] | None:
        """Send the message ``cmd`` and return circusd's reply (``None`` for a cast).

        Raises :class:`CallError` ("Timed out.") when no reply comes back in time.
        """
        call_id, body = prepare_call(cmd)
        limit = self.timeout if timeout is None else timeout
        deadline = time.monotonic() + limit
        command = cmd.get("command")
        try:
            self._check_file()
            self._send(body, deadline, limit, command)
            self._cast_pending = is_cast(cmd)
            if self._cast_pending:
                return None
            while True:
                left = deadline - time.monotonic()
                ready = dict(self._poller.poll(max(1, int(left * 1000) + 1))) if left > 0 else {}
                if not ready:
                    raise self._timed_out(limit, command)
                if self.socket in ready:
                    reply = read_reply(self.socket.recv_multipart(), call_id)
                    if reply is not None:
                        return reply
                self._check_watch()
        finally:
            if self._watch is not None:
                self._mark = self._watch.seen.failures

    def _check_file(self) -> None:
        if self._watch is not None:
            from circus.client.reach import socket_file_problem
            problem = socket_file_problem(self.endpoint)
            if problem:
                raise Unreachable(f"cannot connect to {self.endpoint}: {problem}")

    def _check_watch(self) -> None:
        if self._watch is not None:
            problem = self._watch.failed_since(self._mark)
            if problem:
                raise Unreachable(problem)

    def _timed_out(self, limit: float, command: Any) -> CallTimeout:
        if self._watch is None:
            return CallTimeout("Timed out.")
        return CallTimeout(self._watch.timed_out(limit, command if isinstance(command, str) else None))

    def _send(self, body: bytes, deadline: float, limit: float, command: Any) -> None:
        while True:
            try:
                self.socket.send(body, zmq.NOBLOCK)
                return
            except zmq.Again:
                self._check_watch()
                if time.monotonic() >= deadline:
                    raise self._timed_out(limit, command) from None
                time.sleep(0.005)
            except zmq.ZMQError as exc:
                raise CallError(f"cannot send to {self.endpoint}: {exc}") from None

    def send_message(self, command: str, **props: Any) -> dict[str, Any] | None:
        """Run ``command`` with ``props`` and return the reply."""
        return self.call(make_message(command, **props))

    def cast(self, command: str, **props: Any) -> None:
        """Send ``command`` without waiting; circusd never answers a cast."""
        self.call(cast_message(command, **props))

    def stop(self) -> None:
        """Close the socket (and the context, when the client made it).

        Unanswered requests are dropped, except a cast sent last: it is given up to ``timeout``
        to leave, since nothing else tells whether it went out.
        """
        watch = getattr(self, "_watch", None)
        if watch is not None:
            watch.close()
            self._watch = None
        sock = getattr(self, "socket", None)
        if sock is not None and not sock.closed:
            pending = getattr(self, "_cast_pending", False)
            sock.close(linger=int(self.timeout * 1000) if pending else 0)
        if self._own_context and not self.context.closed:
            self.context.term()

    close = stop

    def __enter__(self) -> "CircusClient":
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
