"""The control socket (ROUTER) and the events socket (PUB) of circusd.

Every request becomes a task: a slow ``stop --waiting`` on one watcher never delays a ``list``,
and operations on one watcher queue inside the watcher (never refused). A frame that cannot be
served (not JSON, too big, no command) gets an error reply, or is dropped and logged for a cast;
the loop goes on, so requests queued behind a bad one are answered. Replies and events are sent
without blocking: a client that went away, or a subscriber that does not read, costs nothing.

The events socket is an XPUB: it works for subscribers exactly as a PUB does, and it lets circusd
see subscriptions. Output lines (``output.<watcher>.<stream>``) are formatted and published only
while somebody is subscribed to such a topic; each new ``output.`` subscription is answered with
one event on exactly the subscribed topic, ``{"subscribed": "<topic>"}``, so that a follower knows
from when on it receives every line.

``ipc://`` endpoints are created mode 0600 (chowned to ``endpoint_owner`` when set).

With ``curve_secret_key`` and ``curve_clients`` both sockets are CURVE servers: a
:class:`~circus.security.zap.Gate` admits the client keys of the clients directory, and each
request is authorized against the role of its key (looked up per message, so a key removed from
the directory and re-read on SIGHUP or reloadconfig is refused at once). Mutating commands, and
every refused one, leave an audit record: logged, and published as ``audit.<node>``.
"""
from __future__ import annotations

import asyncio
import inspect
import logging
import os
import pwd
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import zmq

from circus.config import CircusOptions, ConfigError
from circus.core.connwatch import ConnectionWatch
from circus.core.handlers import HANDLERS, Ops
from circus.core.watcher import OP_DEADLINE
from circus.errors import (CircusError, Interrupted, LimitExceeded, NotReady, OperationTimeout, SpawnError,
                           UnknownWatcher, WatcherError)
from circus.protocol import (MAX_FRAME, BadRequest, ErrorCode, ProtocolError, Role, decode_request, encode,
                             encode_event, error_reply, get_command, ok_reply, validate_properties)
from circus.protocol.limits import MAX_SUBSCRIPTIONS, MAXMSG_FACTOR, READ_BATCH, READ_BYTES
from circus.security.audit import ON_BEHALF_OF, audit_record, audit_topic, describe, web_user
from circus.security.exposure import INSECURE_WARNING, exposed, is_local
from circus.security.identity import ANONYMOUS, Identity
from circus.security.ipcbind import bind_private, ipc_path, remove_socket_file, socket_file

__all__ = ["Controller", "BindError"]

log = logging.getLogger("circus")

#: how long circusd waits at exit for replies still in flight (e.g. a waiting ``quit``)
FLUSH_TIMEOUT = 2.0
#: events queued for a slow subscriber before they are dropped (per subscriber, by libzmq)
PUB_HWM = 10_000
#: subscription messages read per wake-up of the events socket
SUBS_BATCH = 1000
#: binding the same address again after closing it (new CURVE keys): attempts, 50 ms apart
REBIND_TRIES = 40


#: who a request came from when its key was removed from curve_clients since it connected
_REVOKED = Identity("revoked key", Role.READONLY)

# pyzmq's flags and options as plain ints: its enums make every ``|`` and ``&`` a Python call
_NOBLOCK = int(zmq.NOBLOCK)
_SNDMORE_NOBLOCK = int(zmq.SNDMORE) | _NOBLOCK
_EVENTS = int(zmq.EVENTS)
_POLLIN = int(zmq.POLLIN)
#: pyzmq's own send, without the Python layer that handles routing ids and groups (unused here)
_send = zmq.backend.Socket.send


class BindError(CircusError):
    """An endpoint could not be bound (in use, permission...)."""


class Controller:
    def __init__(self, arbiter: Any, *, context: zmq.Context | None = None,
                 max_frame: int = MAX_FRAME) -> None:
        self.arbiter = arbiter
        self.ctx = context or zmq.Context()
        self._own_ctx = context is None
        self.max_frame = max_frame
        self.router: zmq.Socket | None = None
        self._watch: ConnectionWatch | None = None
        self._files: dict[zmq.Socket, Any] = {}      # ipc:// socket files to remove at close
        self._pub: zmq.Socket | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._check_pending = False
        self._check_subs_pending = False
        self._reading = False
        self._requests: set[asyncio.Task] = set()
        self._sync: dict[Any, bool] = {}            # handler -> not a coroutine function
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="circus-stats")
        self.ops = Ops(self._stats)
        self.gate: Any = None                  # circus.security.zap.Gate when CURVE is on
        self._server_keys: Any = None
        self._curve: tuple[str | None, str | None] = (None, None)

    # -- sockets ----------------------------------------------------------------------------------

    def _bind(self, kind: int, endpoint: str, owner: str | None = None,
              options: dict[int, int] | None = None) -> zmq.Socket:
        sock = self.ctx.socket(kind)
        sock.linger = 0
        for option, value in (options or {}).items():   # before bind: libzmq copies the options
            sock.setsockopt(option, value)              # into the listener (later ones are ignored)
        if self._server_keys is not None:
            from circus.security.keys import configure_server
            configure_server(sock, self._server_keys)
        owner_ids = None
        if owner and ipc_path(endpoint):
            try:
                user = pwd.getpwnam(owner)
            except KeyError:
                sock.close()
                raise BindError(f"endpoint_owner: unknown user {owner!r}") from None
            owner_ids = (user.pw_uid, user.pw_gid)
        try:
            bind_private(sock, endpoint, owner_ids)
        except zmq.ZMQError as exc:
            sock.close()
            raise BindError(f"cannot bind {endpoint}: {exc.strerror}") from None
        except OSError as exc:
            raise BindError(f"cannot bind {endpoint}: {exc.strerror}") from None
        self._files[sock] = socket_file(endpoint)
        return sock

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        opts = self.arbiter.config.circus
        self._secure(opts)
        self._open(opts)
        self.arbiter.listeners.append(self.publish)
        self.arbiter.circus_listeners.append(self._circus_changed)
        self.arbiter.reload_listeners.append(self.reload_keys)

    # -- CURVE ------------------------------------------------------------------------------------

    def _secure(self, opts: CircusOptions) -> None:
        """Load the node's keys and the clients directory (or turn CURVE off); warn about what is
        reachable without it. Raises :class:`BindError` if the keys cannot be used."""
        curve = (opts.curve_secret_key, opts.curve_clients)
        if curve != self._curve or (curve[0] and self.gate is None):
            if curve[0] and curve[1]:
                from circus.security.keyring import Keyring
                from circus.security.keys import KeyFileError, load_keypair, secret_file_warning
                try:
                    keys = load_keypair(curve[0])
                    keyring = Keyring.load(curve[1], keys.public)
                except (KeyFileError, OSError) as exc:
                    raise BindError(f"CURVE: {exc}") from None
                warning = secret_file_warning(curve[0])
                if warning:
                    log.warning("%s", warning)
                for text in keyring.warnings:
                    log.warning("curve_clients: %s", text)
                if self.gate is None:
                    from circus.security.zap import Gate
                    self.gate = Gate(self.ctx, keyring)
                else:
                    self.gate.replace(keyring)
                self._server_keys = keys
                log.info("CURVE on: clients from %s (%s)", curve[1], keyring.summary())
            else:
                if self.gate is not None:
                    self.gate.close()
                self.gate = self._server_keys = None
            self._curve = curve
        if self.gate is not None:
            return
        endpoints = [("endpoint", opts.endpoint), ("pubsub_endpoint", opts.pubsub_endpoint)]
        for key, endpoint in exposed(endpoints):
            log.warning(INSECURE_WARNING, f"{key} {endpoint} is")
        if os.geteuid() == 0 and any(not is_local(ep) or ep.startswith("tcp://") for _, ep in endpoints):
            log.warning("running as root with an unauthenticated tcp:// control endpoint: every "
                        "local user can run commands as root (use an ipc:// endpoint, or CURVE)")

    def reload_keys(self) -> None:
        """Re-read the clients directory (SIGHUP, reload, reloadconfig). A directory that cannot
        be read keeps the keys in force (logged): a typo must not lock every operator out."""
        if self.gate is None or not self._curve[1]:
            return
        from circus.security.keyring import Keyring
        from circus.security.keys import KeyFileError
        try:
            keyring = Keyring.load(self._curve[1], self._server_keys.public)
        except (KeyFileError, OSError) as exc:
            log.error("curve_clients not re-read, the keys in force are kept: %s", exc)
            return
        removed = set(self.gate.keyring.keys) - set(keyring.keys)
        self.gate.replace(keyring)
        log.info("curve_clients re-read: %s%s", keyring.summary(),
                 f"; {len(removed)} key(s) revoked (their requests are refused from now on, an "
                 f"established events subscription lasts until it reconnects)" if removed else "")

    def _open(self, opts: CircusOptions) -> None:
        router = self._bind(zmq.ROUTER, opts.endpoint, opts.endpoint_owner,
                            {zmq.MAXMSGSIZE: self.max_frame * MAXMSG_FACTOR})
        try:
            pub = self._bind(zmq.XPUB, opts.pubsub_endpoint, options={zmq.SNDHWM: PUB_HWM})
        except BindError:
            router.close()
            raise
        pub.setsockopt(zmq.XPUB_VERBOSE, 1)    # every subscribe is seen (the last unsubscribe too)
        self.router, self._pub = router, pub
        self.arbiter.output_prefixes = set()        # a new XPUB has no subscribers yet
        assert self._loop is not None
        if self._watch is not None:
            self._watch.close()
        self._watch = ConnectionWatch(router, self.max_frame * MAXMSG_FACTOR, self._readable)
        self._watch.attach(self._loop)
        self._loop.add_reader(router.getsockopt(zmq.FD), self._readable)
        self._loop.add_reader(pub.getsockopt(zmq.FD), self._subscribed)
        self._readable()              # messages may have arrived before the reader existed
        self._subscribed()
        log.info("control on %s, events on %s", opts.endpoint, opts.pubsub_endpoint)

    def _circus_changed(self, old: CircusOptions, new: CircusOptions) -> None:
        keys = ("endpoint", "pubsub_endpoint", "endpoint_owner", "curve_secret_key", "curve_clients")
        if all(getattr(old, key) == getattr(new, key) for key in keys):
            return
        asyncio.get_running_loop().create_task(self._rebind(old, new))

    async def _rebind(self, old: CircusOptions, opts: CircusOptions) -> None:
        """New endpoints or keys from reloadconfig: bind the new ones, then close the old ones.
        New keys on the same addresses: close, then bind again (retried while the OS frees
        the address)."""
        old_router, old_pub = self.router, self._pub
        old_security = self._server_keys, self._curve
        same_place = opts.endpoint == old.endpoint or opts.pubsub_endpoint == old.pubsub_endpoint
        try:
            self._secure(opts)
            if same_place:
                for sock in (old_router, old_pub):
                    if sock is not None:
                        self._close_socket(sock, linger=0)
                old_router = old_pub = None
                # libzmq unlinks an ipc:// path when its socket closes, in its I/O thread: wait
                # for that, or it could remove the path the new socket is about to bind
                paths = [p for p in map(ipc_path, (old.endpoint, old.pubsub_endpoint)) if p]
                for _ in range(REBIND_TRIES):
                    if not any(os.path.exists(p) for p in paths):
                        break
                    await asyncio.sleep(0.025)
                for _ in range(REBIND_TRIES - 1):
                    try:
                        self._open(opts)
                        break
                    except BindError:
                        await asyncio.sleep(0.05)
                else:
                    self._open(opts)
            else:
                self._open(opts)
        except BindError as exc:
            log.error("reloadconfig: keeping the old endpoints: %s", exc)
            self._server_keys, self._curve = old_security
            if old_router is not None:
                self.router, self._pub = old_router, old_pub
            return
        for sock in (old_router, old_pub):
            if sock is not None:
                self._close_socket(sock, linger=0)

    def _close_socket(self, sock: zmq.Socket, linger: int) -> None:
        if sock is self.router and self._watch is not None:
            self._watch.close()
            self._watch = None
        if sock.type in (zmq.ROUTER, zmq.XPUB) and self._loop is not None:
            self._loop.remove_reader(sock.getsockopt(zmq.FD))
        sock.close(linger=linger)
        remove_socket_file(self._files.pop(sock, None))   # libzmq leaves the file behind

    # -- subscriptions ----------------------------------------------------------------------------

    def _subscribed(self) -> None:
        """Read subscription messages from the XPUB (edge-triggered fd: until none is left)."""
        self._check_subs_pending = False
        pub = self._pub
        prefixes = set(self.arbiter.output_prefixes)
        new: list[str] = []
        refused = 0
        for _ in range(SUBS_BATCH):
            if pub is None or pub.closed or not pub.getsockopt(zmq.EVENTS) & zmq.POLLIN:
                break
            try:
                message = pub.recv(zmq.NOBLOCK)
            except zmq.Again:
                break
            if not message or not message[1:].startswith(b"output."):
                continue
            topic = message[1:].decode(errors="replace")
            if message[0] == 1:
                if topic not in prefixes and len(prefixes) >= MAX_SUBSCRIPTIONS:
                    refused += 1
                    continue
                prefixes.add(topic)
                new.append(topic)
            elif message[0] == 0:
                prefixes.discard(topic)   # XPUB_VERBOSE: only the last one unsubscribing is seen
        else:
            self._check_subs_soon()        # more may be waiting: after the rest of the loop
        if refused:
            log.warning("not following %d output subscription(s): %d output topics are followed "
                        "already (their subscribers get no lines)", refused, MAX_SUBSCRIPTIONS)
        self.arbiter.output_prefixes = prefixes
        for topic in new:
            self.publish(topic, {"subscribed": topic})

    def _check_subs_soon(self) -> None:
        if not self._check_subs_pending and self._loop is not None:
            self._check_subs_pending = True
            self._loop.call_soon(self._subscribed)

    # -- requests ---------------------------------------------------------------------------------

    def _readable(self) -> None:
        """The ROUTER's fd is edge-triggered: read until no message is left (or a batch is done)."""
        router = self.router
        self._check_pending = False
        if self._reading:                 # called back from inside a read (connection watch)
            return
        self._reading = True
        budget = READ_BYTES
        try:
            for index in range(READ_BATCH):
                if router is None or router.closed:
                    return
                # woken up, a message is most likely there: the first look is the read itself;
                # after that, EVENTS (which also takes the fd's edge) says whether one is left
                if index and not router.getsockopt(_EVENTS) & _POLLIN:
                    return
                try:
                    # a ROUTER's message is the sender's routing id, always followed by the
                    # frame(s) it sent: the id is copied at once (a Frame costs more than the
                    # copy of a few bytes), only the last frame's properties may be asked for
                    envelope = [router.recv(_NOBLOCK)]
                    last = router.recv(_NOBLOCK, copy=False)
                    while last.more:
                        envelope.append(last.bytes)
                        last = router.recv(_NOBLOCK, copy=False)
                except zmq.Again:
                    return
                watch = self._watch
                if watch is not None and watch.silent:
                    watch.spoke(last)
                identity = ANONYMOUS if self.gate is None else self._identify(last)
                body = last.bytes
                self._handle(envelope, body, router, identity, last)
                budget -= len(body)
                if budget <= 0:
                    break
        finally:
            self._reading = False
        self._check_soon()

    def _check_soon(self) -> None:
        """Sending on the socket may consume the fd's edge: look again at the next iteration."""
        if not self._check_pending and self._loop is not None:
            self._check_pending = True
            self._loop.call_soon(self._readable)

    def _identify(self, frame: zmq.Frame) -> Identity | None:
        """Who sent ``frame`` with CURVE on: the identity of its key (``None``: no longer
        authorized)."""
        try:
            user_id = frame.get("User-Id")
        except zmq.ZMQError:
            user_id = None
        return self.gate.identify(user_id)

    def _handle(self, envelope: list[bytes], body: bytes, router: zmq.Socket,
                identity: Identity | None = ANONYMOUS, peer: Any = None) -> None:
        """Answer one request: ``body`` after its ``envelope`` (DEALER: ``[id]``, REQ:
        ``[id, b""]``); ``peer``: its address, or the frame to ask it from if needed."""
        node = self.arbiter.node
        try:
            request = decode_request(body, self.max_frame)
        except BadRequest as exc:
            log.warning("bad control message (%s): %s", exc.code, exc.reason)
            if not exc.cast:
                self._send(router, envelope, error_reply(exc.request_id, exc.code, exc.reason, node))
            return
        audit: Any = None
        properties = request.properties
        behalf = None
        if ON_BEHALF_OF in properties:
            behalf = self._on_behalf_of(properties.pop(ON_BEHALF_OF), identity)
        try:
            command = get_command(request.command)
            if not command.readonly:
                audit = (identity or _REVOKED, peer, command.name, properties, time.monotonic(),
                         behalf)
            if identity is not ANONYMOUS:
                self._authorize(command, identity)
            props = validate_properties(command, properties)
            handler = HANDLERS[command.name]
            sync = self._sync.get(handler)
            if sync is None:
                sync = self._is_sync(handler)
            if sync:                                 # read-only: answered right now
                reply = ok_reply(request.id, handler(self.arbiter, self.ops, props), node)
                if audit is None and not request.cast:
                    self._send(router, envelope, reply)
                else:
                    self._reply(router, envelope, request, reply, audit)
                return
        except Exception as exc:  # converted at the boundary: no traceback goes on the wire
            if isinstance(exc, ProtocolError) and exc.code is ErrorCode.FORBIDDEN and audit is None:
                audit = (identity or _REVOKED, peer, request.command, properties, time.monotonic(),
                         behalf)
            self._reply(router, envelope, request, self._error(request, exc), audit)
            return
        task = asyncio.get_running_loop().create_task(
            self._execute(router, envelope, request, handler, props, audit))
        self._requests.add(task)
        task.add_done_callback(self._requests.discard)

    def _is_sync(self, handler: Any) -> bool:
        """Is ``handler`` a plain function (answered in the loop iteration of its request)?"""
        sync = self._sync.get(handler)
        if sync is None:
            sync = self._sync[handler] = not inspect.iscoroutinefunction(handler)
        return sync

    def _on_behalf_of(self, value: Any, identity: Identity | None) -> str | None:
        """The web user a request names, believed only from the node's own key."""
        own = self._server_keys.public.decode() if self._server_keys is not None else None
        if value is None or identity is None or own is None or identity.key != own:
            return None
        return web_user(value)

    def _authorize(self, command: Any, identity: Identity | None) -> None:
        if identity is None:
            raise ProtocolError(ErrorCode.FORBIDDEN, "forbidden: this client key is no longer "
                                "authorized (removed from curve_clients)")
        if command.role > identity.role:
            raise ProtocolError(ErrorCode.FORBIDDEN, f"forbidden: {command.name!r} needs the "
                                f"{command.role.name.lower()} role; {identity.name!r} is "
                                f"{identity.role_name}")

    async def _execute(self, router: zmq.Socket, envelope: list[bytes], request: Any,
                       handler: Any, props: dict, audit: Any = None) -> None:
        try:
            if props.get("timeout") is not None:
                OP_DEADLINE.set(asyncio.get_running_loop().time() + max(0.0, props["timeout"]))
            reply = ok_reply(request.id, await handler(self.arbiter, self.ops, props), self.arbiter.node)
        except Exception as exc:  # converted at the boundary: no traceback goes on the wire
            reply = self._error(request, exc)
        self._reply(router, envelope, request, reply, audit)

    def _audit(self, audit: Any, reply: dict) -> None:
        identity, peer, command, props, started, behalf = audit
        node = self.arbiter.node
        record = audit_record(node, identity, _peer(peer), command, props if isinstance(props, dict) else {},
                              reply, time.monotonic() - started, behalf)
        log.info("%s", describe(record))
        self.publish(audit_topic(node), record)

    def _error(self, request: Any, exc: Exception) -> dict:
        code, reason = _convert(exc)
        if code is ErrorCode.INTERNAL:
            log.error("internal error on %r", request.command, exc_info=exc)
        return error_reply(request.id, code, reason, self.arbiter.node)

    def _reply(self, router: zmq.Socket, envelope: list[bytes], request: Any, reply: dict,
               audit: Any = None) -> None:
        if audit is not None:
            self._audit(audit, reply)
        if request.cast:
            if reply["status"] == "error":
                log.warning("cast %r failed: %s", request.command, reply["reason"])
            return
        self._send(router, envelope, reply)

    def _send(self, router: zmq.Socket, envelope: list[bytes], reply: dict) -> None:
        if router.closed:
            return
        try:
            for part in envelope:
                _send(router, part, _SNDMORE_NOBLOCK)
            _send(router, encode(reply), _NOBLOCK)
        except zmq.ZMQError as exc:       # peer gone or its queue full: its loss, not ours
            log.debug("reply dropped: %s", exc)
        if not self._reading:          # inside _readable the loop re-checks EVENTS itself
            self._check_soon()

    def publish(self, topic: str, payload: dict) -> None:
        if self._pub is None or self._pub.closed:
            return
        try:
            self._pub.send_multipart(encode_event(topic, payload), flags=zmq.NOBLOCK)
        except zmq.ZMQError as exc:
            log.debug("event %s dropped: %s", topic, exc)
        self._check_subs_soon()        # sending may consume the fd's edge of a subscription

    async def _stats(self, pids: list[int]) -> dict:
        from circus.stats.procinfo import collect
        return await asyncio.get_running_loop().run_in_executor(self._executor, collect, pids)

    async def close(self) -> None:
        """Answer what is in flight (briefly), then close the sockets."""
        current = asyncio.current_task()
        pending = [t for t in self._requests if t is not current]
        if pending:
            await asyncio.wait(pending, timeout=FLUSH_TIMEOUT)
        if self.publish in self.arbiter.listeners:
            self.arbiter.listeners.remove(self.publish)
        if self.router is not None:
            self._close_socket(self.router, linger=500)
        if self._pub is not None:
            self._close_socket(self._pub, linger=500)
        self.router = self._pub = None
        self._executor.shutdown(wait=False, cancel_futures=True)
        if self.gate is not None:
            self.gate.close()
            self.gate = None
        if self._own_ctx:
            self.ctx.term()


#: foreign and internal errors -> wire codes, most specific first (converted at the boundary)
_ERROR_CODES: tuple[tuple[type[BaseException], ErrorCode], ...] = (
    (UnknownWatcher, ErrorCode.UNKNOWN_WATCHER),
    (LimitExceeded, ErrorCode.INVALID_PROPERTY),
    (OperationTimeout, ErrorCode.TIMEOUT),
    (NotReady, ErrorCode.NOT_READY),
    (Interrupted, ErrorCode.INTERRUPTED),
    (WatcherError, ErrorCode.FAILED),
    (SpawnError, ErrorCode.SPAWN_FAILED),
    (ConfigError, ErrorCode.CONFIG_ERROR),
    (CircusError, ErrorCode.FAILED),
)


def _convert(exc: BaseException) -> tuple[ErrorCode, str]:
    if isinstance(exc, ProtocolError):
        return exc.code, exc.reason
    for kind, code in _ERROR_CODES:
        if isinstance(exc, kind):
            return code, str(exc)
    if isinstance(exc, OSError):
        return ErrorCode.OS_ERROR, exc.strerror or str(exc)
    return ErrorCode.INTERNAL, "internal error (see circusd's log)"


def _peer(frame: Any) -> str | None:
    """The address a request came from, when the transport has one (for its audit record):
    asked of its frame only for the requests that are audited."""
    if not isinstance(frame, zmq.Frame):
        return frame                  # already an address (or None)
    try:
        return frame.get("Peer-Address")
    except zmq.ZMQError:
        return None
