"""The control socket (ROUTER) and the events socket (PUB) of circusd.

Every request becomes a task: a slow ``stop --waiting`` on one watcher never delays a ``list``,
and operations on one watcher queue inside the watcher (never refused). A frame that cannot be
served (not JSON, too big, no command) gets an error reply, or is dropped and logged for a cast;
the loop goes on, so requests queued behind a bad one are answered. Replies and events are sent
without blocking: a client that went away, or a subscriber that does not read, costs nothing.

``ipc://`` endpoints are created mode 0600 (chowned to ``endpoint_owner`` when set).
"""
from __future__ import annotations

import asyncio
import logging
import os
import pwd
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import zmq
import zmq.asyncio

from circus.config import CircusOptions, ConfigError
from circus.core.handlers import HANDLERS, Ops
from circus.core.watcher import OP_DEADLINE
from circus.errors import (CircusError, Interrupted, NotReady, OperationTimeout, SpawnError, UnknownWatcher,
                           WatcherError)
from circus.protocol import (MAX_FRAME, BadRequest, ErrorCode, ProtocolError, decode_request, encode,
                             encode_event, error_reply, get_command, ok_reply, validate_properties)

__all__ = ["Controller", "BindError"]

log = logging.getLogger("circus")

#: how long circusd waits at exit for replies still in flight (e.g. a waiting ``quit``)
FLUSH_TIMEOUT = 2.0
#: events queued for a slow subscriber before they are dropped (per subscriber, by libzmq)
PUB_HWM = 10_000


class BindError(CircusError):
    """An endpoint could not be bound (in use, permission...)."""


def _ipc_path(endpoint: str) -> str | None:
    return endpoint[len("ipc://"):] if endpoint.startswith("ipc://") else None


class Controller:
    def __init__(self, arbiter: Any, *, context: zmq.asyncio.Context | None = None,
                 max_frame: int = MAX_FRAME) -> None:
        self.arbiter = arbiter
        self.ctx = context or zmq.asyncio.Context()
        self._own_ctx = context is None
        self.max_frame = max_frame
        self.router: zmq.asyncio.Socket | None = None
        self._router_sync: zmq.Socket | None = None
        self._pub: zmq.Socket | None = None
        self._serve_task: asyncio.Task | None = None
        self._requests: set[asyncio.Task] = set()
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="circus-stats")
        self.ops = Ops(self._stats)

    # -- sockets ----------------------------------------------------------------------------------

    def _bind(self, kind: int, endpoint: str, owner: str | None = None) -> zmq.asyncio.Socket:
        sock = self.ctx.socket(kind)
        sock.linger = 0
        path = _ipc_path(endpoint)
        old_umask = os.umask(0o177) if path else None
        try:
            sock.bind(endpoint)
        except zmq.ZMQError as exc:
            sock.close()
            raise BindError(f"cannot bind {endpoint}: {exc.strerror}") from None
        finally:
            if old_umask is not None:
                os.umask(old_umask)
        if path:
            os.chmod(path, 0o600)
            if owner:
                try:
                    user = pwd.getpwnam(owner)
                except KeyError:
                    sock.close()
                    raise BindError(f"endpoint_owner: unknown user {owner!r}") from None
                os.chown(path, user.pw_uid, user.pw_gid)
        return sock

    async def start(self) -> None:
        opts = self.arbiter.config.circus
        self._open(opts)
        self.arbiter.listeners.append(self.publish)
        self.arbiter.circus_listeners.append(self._circus_changed)
        self._serve_task = asyncio.get_running_loop().create_task(self._serve(), name="controller")

    def _open(self, opts: CircusOptions) -> None:
        router = self._bind(zmq.ROUTER, opts.endpoint, opts.endpoint_owner)
        try:
            pub = self._bind(zmq.PUB, opts.pubsub_endpoint)
        except BindError:
            router.close()
            raise
        pub.sndhwm = PUB_HWM
        self.router = router
        self._router_sync = zmq.Socket.shadow(router.underlying)
        self._pub = zmq.Socket.shadow(pub.underlying)
        self._pub_owner = pub
        log.info("control on %s, events on %s", opts.endpoint, opts.pubsub_endpoint)

    def _circus_changed(self, old: CircusOptions, new: CircusOptions) -> None:
        if (old.endpoint, old.pubsub_endpoint, old.endpoint_owner) == \
                (new.endpoint, new.pubsub_endpoint, new.endpoint_owner):
            return
        asyncio.get_running_loop().create_task(self._rebind(new))

    async def _rebind(self, opts: CircusOptions) -> None:
        """New endpoints from reloadconfig: bind the new ones, then close the old ones."""
        old_router, old_pub, old_task = self.router, self._pub_owner, self._serve_task
        try:
            self._open(opts)
        except BindError as exc:
            log.error("reloadconfig: keeping the old endpoints: %s", exc)
            return
        self._serve_task = asyncio.get_running_loop().create_task(self._serve(), name="controller")
        if old_task is not None:
            old_task.cancel()
        for sock in (old_router, old_pub):
            if sock is not None:
                sock.close(linger=0)

    # -- requests ---------------------------------------------------------------------------------

    async def _serve(self) -> None:
        assert self.router is not None
        router = self.router
        while True:
            frames = await router.recv_multipart()
            self._handle(frames)

    def _handle(self, frames: list[bytes]) -> None:
        if len(frames) < 2:
            log.warning("dropped a control message of %d frame(s)", len(frames))
            return
        envelope, body = frames[:-1], frames[-1]      # DEALER: [id, body]; REQ: [id, b"", body]
        try:
            request = decode_request(body, self.max_frame)
        except BadRequest as exc:
            log.warning("bad control message (%s): %s", exc.code, exc.reason)
            if not exc.cast:
                self._send(envelope, error_reply(exc.request_id, exc.code, exc.reason, self.arbiter.node))
            return
        task = asyncio.get_running_loop().create_task(self._execute(envelope, request))
        self._requests.add(task)
        task.add_done_callback(self._requests.discard)

    async def _execute(self, envelope: list[bytes], request: Any) -> None:
        node = self.arbiter.node
        try:
            command = get_command(request.command)
            props = validate_properties(command, request.properties)
            if props.get("timeout") is not None:
                OP_DEADLINE.set(asyncio.get_running_loop().time() + max(0.0, props["timeout"]))
            fields = await HANDLERS[command.name](self.arbiter, self.ops, props)
            reply = ok_reply(request.id, fields, node)
        except Exception as exc:  # converted at the boundary: no traceback ever goes on the wire
            code, reason = _convert(exc)
            if code is ErrorCode.INTERNAL:
                log.exception("internal error on %r", request.command)
            reply = error_reply(request.id, code, reason, node)
        if request.cast:
            if reply["status"] == "error":
                log.warning("cast %r failed: %s", request.command, reply["reason"])
            return
        self._send(envelope, reply)

    def _send(self, envelope: list[bytes], reply: dict) -> None:
        if self._router_sync is None:
            return
        try:
            self._router_sync.send_multipart([*envelope, encode(reply)], flags=zmq.NOBLOCK)
        except zmq.ZMQError as exc:       # peer gone or its queue full: its loss, not ours
            log.debug("reply dropped: %s", exc)

    def publish(self, topic: str, payload: dict) -> None:
        if self._pub is None:
            return
        try:
            self._pub.send_multipart(encode_event(topic, payload), flags=zmq.NOBLOCK)
        except zmq.ZMQError as exc:
            log.debug("event %s dropped: %s", topic, exc)

    async def _stats(self, pids: list[int]) -> dict:
        from circus.stats.procinfo import collect
        return await asyncio.get_running_loop().run_in_executor(self._executor, collect, pids)

    async def close(self) -> None:
        """Answer what is in flight (briefly), then close the sockets."""
        current = asyncio.current_task()
        pending = [t for t in self._requests if t is not current]
        if pending:
            await asyncio.wait(pending, timeout=FLUSH_TIMEOUT)
        if self._serve_task is not None:
            self._serve_task.cancel()
            await asyncio.gather(self._serve_task, return_exceptions=True)
        if self.publish in self.arbiter.listeners:
            self.arbiter.listeners.remove(self.publish)
        for sock in (self.router, getattr(self, "_pub_owner", None)):
            if sock is not None:
                sock.close(linger=500)
        self._router_sync = self._pub = None
        self._executor.shutdown(wait=False, cancel_futures=True)
        if self._own_ctx:
            self.ctx.term()


def _convert(exc: BaseException) -> tuple[ErrorCode, str]:
    if isinstance(exc, ProtocolError):
        return exc.code, exc.reason
    if isinstance(exc, UnknownWatcher):
        return ErrorCode.UNKNOWN_WATCHER, str(exc)
    if isinstance(exc, OperationTimeout):
        return ErrorCode.TIMEOUT, str(exc)
    if isinstance(exc, NotReady):
        return ErrorCode.NOT_READY, str(exc)
    if isinstance(exc, Interrupted):
        return ErrorCode.INTERRUPTED, str(exc)
    if isinstance(exc, WatcherError):
        return ErrorCode.FAILED, str(exc)
    if isinstance(exc, SpawnError):
        return ErrorCode.SPAWN_FAILED, str(exc)
    if isinstance(exc, ConfigError):
        return ErrorCode.CONFIG_ERROR, str(exc)
    if isinstance(exc, CircusError):
        return ErrorCode.FAILED, str(exc)
    if isinstance(exc, OSError):
        return ErrorCode.OS_ERROR, exc.strerror or str(exc)
    return ErrorCode.INTERNAL, "internal error (see circusd's log)"
