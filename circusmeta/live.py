"""The pool's live streams: ``circusmeta top`` (circus-top over every node) and ``circusmeta
proxy`` (one merged stats socket and one merged events socket for dashboards).

``top`` is circus-top itself (:func:`circus.cli.top.run`) given the nodes' ``stats_endpoint`` s,
each labelled with its node, or the proxy's ``[meta] stats_endpoint``. ``proxy`` subscribes to
every selected node's stats and pubsub endpoints and republishes each message, prefixed with
the node's name, on two PUB sockets it binds::

    web1/stat.sleeper.42        a node's stats topic, already prefixed: unchanged
    stat.sleeper.42             a 0.19 circusd-stats (no "node" in the payload): web1/stat...
    watcher.web.spawn           an event of web1: web1/watcher.web.spawn, payload unchanged

The name is the one the node gives itself (its stats topics and every event's ``node``), else
the pool's name for it. The rewriting (:func:`stats_topic`, :func:`event_topic`) is pure; the
sockets are in :class:`Proxy`. ZeroMQ reconnects the SUB sockets by itself (a node restarted on
the same endpoint is followed again, its subscription renewed); the socket monitor makes each
connect and disconnect a log line. The PUB sockets never block: a subscriber that does not
read loses messages beyond the high-water mark.

CURVE: each node is followed with its keys from the pool file (its ``server_key`` covers its
control, events and stats endpoints). With ``[meta] proxy_secret_key`` and ``proxy_clients``
the two PUB sockets are CURVE servers admitting the keys of that clients directory, any role
(read when the proxy starts: restart it to revoke a key). An address reachable from other
machines without them is refused (exit 2) unless ``[meta] insecure = true``. ``top --proxy``
subscribes with ``[meta] client_key`` and ``proxy_key``.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import signal
import time
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import zmq
import zmq.asyncio
from zmq.utils.monitor import parse_monitor_message

from circus.security.ipcbind import bind_private

from .fanout import HANDSHAKE_EVENTS, handshake_failure, handshake_timed_out

__all__ = ["top_cli", "proxy_cli", "Proxy", "Feed", "stats_topic", "event_topic", "HWM",
           "exposure_problem"]

#: messages queued per subscriber (and per upstream socket) before ZeroMQ drops
HWM = 20000
EXIT_OK, EXIT_BIND, EXIT_USAGE = 0, 1, 2
STATS, EVENTS = "stats", "events"


# -- circusmeta top ------------------------------------------------------------------------------

async def top_cli(ctx: Any, pool: Any, selected: list[str] | None, rest: list[str]) -> int:
    """circus-top over the pool: the selected nodes' stats endpoints, or ``--proxy``."""
    from circus.cli import top
    from circus.stats.topview import SortKey, View

    parser = top.build_parser()
    parser.prog = "circusmeta top"
    parser.add_argument("--proxy", action="store_true",
                        help="read the pool's [meta] stats_endpoint (a running circusmeta proxy)")
    try:
        args = parser.parse_args(rest)
    except SystemExit as exc:              # --help, --version, or argparse's usage error
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    if args.endpoint or args.pool:
        ctx.warn("circusmeta top: the endpoints come from the pool file; --endpoint and --pool "
                 "are circus-top's (select nodes with --node N or --tag T)")
        return top.USAGE
    if getattr(args, "curve_key", None) or getattr(args, "server_key", None):
        ctx.warn("circusmeta top: the CURVE keys come from the pool file (server_key of each "
                 "node, [meta] client_key; with --proxy, [meta] proxy_key)")
        return top.USAGE
    args.json = args.json or ctx.json
    if not top.check_args(args, ctx.err, "circusmeta top"):
        return top.USAGE
    nodes = pool.config.nodes
    names = list(selected) if selected is not None else list(nodes)
    view = View(sort=SortKey(args.sort), filter=args.filter)
    if args.proxy:
        endpoint = pool.config.meta.stats_endpoint
        expect = [n for n in names if nodes[n].stats_endpoint] if selected is None else names
        prefixes = [f"{n}/stat." for n in selected] if selected is not None else []
        if selected is not None:
            view = View(sort=view.sort, filter=view.filter, nodes=frozenset(selected))
        from .pool import proxy_client_keys
        meta = pool.config.meta
        keys = proxy_client_keys(pool.config)
        if keys is None and (meta.proxy_secret_key or meta.proxy_key):
            ctx.warn(f"circusmeta top --proxy: the proxy uses CURVE, but {pool.config.file} has "
                     f"no [meta] client_key to subscribe with")
            return top.USAGE
        # an empty mapping, not None: no key flags or environment behind the pool's back
        return top.run(args, [endpoint], view, prefixes=prefixes, expect=expect, out=ctx.out,
                       err=ctx.err, prog="circusmeta top", curve=keys or {})
    labels: dict[str, str] = {}
    for name in names:
        address = nodes[name].stats_endpoint
        if address is None:
            ctx.warn(f"circusmeta top: {name}: no stats_endpoint in {pool.config.file}; not shown")
        else:
            labels.setdefault(address, name)
    if not labels:
        ctx.warn(f"circusmeta top: no selected node has a stats_endpoint in {pool.config.file}")
        return top.USAGE
    curve = {address: pool.keys.get(name) for address, name in labels.items()}
    return top.run(args, list(labels), view, labels=labels, out=ctx.out, err=ctx.err,
                   prog="circusmeta top", curve=curve)


# -- the rewriting (pure) ------------------------------------------------------------------------

@dataclass
class FeedState:
    """What one upstream stats socket taught us: whether it publishes prefixed topics."""

    prefixed: bool = False


def _own_name(body: bytes) -> str | None:
    try:
        payload = json.loads(body)
    except (UnicodeDecodeError, ValueError):
        return None
    name = payload.get("node") if isinstance(payload, dict) else None
    return name if isinstance(name, str) and name and "/" not in name else None


def stats_topic(node: str, topic: bytes, body: bytes, state: FeedState) -> bytes | None:
    """The topic to republish a stats message under; None to drop it.

    A prefixed topic (``web1/stat.x``) is kept. An unprefixed one (``stat.x``) is 0.19's: from
    a node that also publishes prefixed ones (``legacy_stats_topics``; its payload has ``node``)
    it is a copy and dropped, else it gets the pool's name for the node.
    """
    if b"/stat." in topic:
        state.prefixed = True
        return topic
    if not topic.startswith(b"stat."):
        return None
    if state.prefixed:
        return None
    try:
        payload = json.loads(body)
    except (UnicodeDecodeError, ValueError):
        return None
    if not isinstance(payload, dict) or "node" in payload:
        return None
    return node.encode() + b"/" + topic


def event_topic(node: str, topic: bytes, body: bytes) -> bytes:
    """``watcher.web.spawn`` of node web1 -> ``web1/watcher.web.spawn`` (the name from the
    payload's ``node``, else the pool's)."""
    return (_own_name(body) or node).encode() + b"/" + topic


# -- circusmeta proxy ----------------------------------------------------------------------------

@dataclass(frozen=True)
class Feed:
    """One upstream socket: a node's stats or events endpoint."""

    node: str
    kind: str                 # STATS or EVENTS
    address: str
    curve: Any = None         # the node's ClientKeys (None: no CURVE)


_MONITORED = zmq.EVENT_CONNECTED | zmq.EVENT_DISCONNECTED | HANDSHAKE_EVENTS


class Proxy:
    """SUB sockets on the feeds, a PUB socket per kind.

    :meth:`open` binds and connects (a :class:`zmq.ZMQError` names what failed), :meth:`run`
    republishes until ``stop`` is set, :meth:`close` closes every socket. The proxy owns its
    tasks: :meth:`run` cancels and waits for every one before it returns.
    """

    def __init__(self, feeds: Sequence[Feed], binds: dict[str, str],
                 log: Callable[[str], None], hwm: int = HWM, server: Any = None) -> None:
        """``server``: (KeyPair, Keyring): the PUB sockets are CURVE servers admitting the
        keyring's keys (None: no CURVE)."""
        self.feeds, self.binds, self.log, self.hwm = list(feeds), dict(binds), log, hwm
        self.server = server
        self.context = zmq.asyncio.Context()
        self.forwarded = {kind: 0 for kind in binds}
        self.dropped = 0
        self._pubs: dict[str, zmq.Socket] = {}
        self._subs: list[tuple[Feed, zmq.asyncio.Socket, zmq.asyncio.Socket]] = []
        self._gate: Any = None
        self._handshake_ivl = 30.0

    def open(self) -> None:
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
        for feed in self.feeds:
            if feed.kind not in self._pubs:
                continue
            sock = self.context.socket(zmq.SUB)
            sock.linger = 0
            sock.rcvhwm = self.hwm
            sock.reconnect_ivl = 100
            sock.reconnect_ivl_max = 2000
            sock.setsockopt(zmq.HEARTBEAT_IVL, 5000)      # a vanished tcp peer is noticed
            sock.setsockopt(zmq.HEARTBEAT_TIMEOUT, 15000)
            sock.setsockopt(zmq.SUBSCRIBE, b"")
            if feed.curve is not None:
                feed.curve.apply(sock)
            self._handshake_ivl = sock.getsockopt(zmq.HANDSHAKE_IVL) / 1000
            monitor = sock.get_monitor_socket(_MONITORED)  # before connect: no event missed
            self._subs.append((feed, sock, monitor))
            try:
                sock.connect(feed.address)
            except zmq.ZMQError as exc:
                raise zmq.ZMQError(exc.errno, f"cannot connect to {feed.node}'s {feed.kind} "
                                              f"on {feed.address}: {exc}") from None

    async def run(self, stop: asyncio.Event) -> None:
        tasks: list[asyncio.Task] = []
        for feed, sub, monitor in self._subs:
            tasks.append(asyncio.create_task(self._pump(feed, sub, self._pubs[feed.kind])))
            tasks.append(asyncio.create_task(self._watch(feed, monitor)))
        waiter = asyncio.create_task(stop.wait())
        try:
            done, _ = await asyncio.wait([waiter, *tasks], return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                if task is not waiter and task.exception() is not None:
                    raise task.exception()  # type: ignore[misc]
        finally:
            for task in (waiter, *tasks):
                task.cancel()
            await asyncio.gather(waiter, *tasks, return_exceptions=True)

    def close(self) -> None:
        for _, sub, monitor in self._subs:
            try:
                sub.disable_monitor()
            except zmq.ZMQError:
                pass
            monitor.close(0)
            sub.close(0)
        for pub in self._pubs.values():
            pub.close(0)
        self._subs.clear()
        self._pubs.clear()
        if self._gate is not None:
            self._gate.close()
            self._gate = None
        self.context.term()

    async def _pump(self, feed: Feed, sub: zmq.asyncio.Socket, pub: zmq.Socket) -> None:
        state = FeedState()
        while True:
            frames = await sub.recv_multipart(copy=True)
            if len(frames) != 2:
                continue
            topic, body = frames
            if feed.kind == STATS:
                new = stats_topic(feed.node, topic, body, state)
            else:
                new = event_topic(feed.node, topic, body)
            if new is None:
                self.dropped += 1
                continue
            try:
                pub.send_multipart([new, body], zmq.NOBLOCK)
            except zmq.Again:                 # not with PUB (it drops), but never block
                continue
            self.forwarded[feed.kind] += 1

    async def _watch(self, feed: Feed, monitor: zmq.asyncio.Socket) -> None:
        failing: str | None = None            # while handshakes fail: said once, not per retry
        connected_at: float | None = None
        ivl = self._handshake_ivl
        while True:
            event = parse_monitor_message(await monitor.recv_multipart())
            kind = event["event"]
            if kind == zmq.EVENT_CONNECTED:
                connected_at = time.monotonic()
            if kind == zmq.EVENT_CONNECTED and failing is None:
                self.log(f"{feed.node}: {feed.kind} connected ({feed.address})")
            elif kind == zmq.EVENT_DISCONNECTED and failing is None:
                self.log(f"{feed.node}: {feed.kind} disconnected ({feed.address}); reconnecting")
            elif kind == zmq.EVENT_HANDSHAKE_SUCCEEDED and failing is not None:
                failing = None
                self.log(f"{feed.node}: {feed.kind} handshake succeeded ({feed.address})")
            elif kind not in (zmq.EVENT_CONNECTED, zmq.EVENT_DISCONNECTED,
                              zmq.EVENT_HANDSHAKE_SUCCEEDED):
                elapsed = None if connected_at is None else time.monotonic() - connected_at
                why = handshake_failure(kind, feed.curve is not None, feed.address,
                                        handshake_timed_out(kind, elapsed, ivl), ivl)
                if why != failing:
                    failing = why
                    self.log(f"{feed.node}: {feed.kind}: {why}; retrying")


def exposure_problem(binds: dict[str, str], curve: bool, insecure: bool) -> str | None:
    """What is wrong with binding ``binds`` (pure): None when every address is local or the
    proxy uses CURVE; else the refusal, or with ``insecure`` the warning."""
    from circus.security.exposure import is_local

    if curve:
        return None
    exposed = [address for address in binds.values() if not is_local(address)]
    if not exposed:
        return None
    where = " and ".join(exposed)
    if insecure:
        return (f"[meta] insecure = true: {where} reachable from the network WITHOUT "
                f"authentication or encryption; anyone who reaches it reads the pool's stats "
                f"and events")
    return (f"{where} {'is' if len(exposed) == 1 else 'are'} reachable from other machines and "
            f"the proxy has no CURVE: set [meta] proxy_secret_key and proxy_clients in the pool "
            f"file (make keys with 'circusctl keygen NAME'; see the security page of the docs), "
            f"bind to 127.0.0.1 or an ipc:// path, or set [meta] insecure = true to accept that "
            f"anyone who reaches it reads the pool's stats and events")


def _proxy_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="circusmeta proxy", add_help=True,
                                description="Republish the pool's stats and events, topics "
                                            "prefixed with the node name.")
    p.add_argument("--stats-endpoint", metavar="E", help="bind stats here ([meta] stats_endpoint)")
    p.add_argument("--pubsub-endpoint", metavar="E",
                   help="bind events here ([meta] pubsub_endpoint)")
    p.add_argument("--no-stats", action="store_true", help="do not republish stats")
    p.add_argument("--no-events", action="store_true", help="do not republish events")
    p.add_argument("--http-sd", metavar="HOST:PORT", type=_listen_address,
                   help="also serve Prometheus http_sd of the pool at http://HOST:PORT/targets")
    return p


def _listen_address(text: str) -> str:
    from .promsd import split_address
    try:
        split_address(text, any_port=True)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text


def _log_to(err: Any) -> Callable[[str], None]:
    def log(text: str) -> None:
        print(f"{time.strftime('%Y-%m-%d %H:%M:%S')} circusmeta proxy: {text}", file=err,
              flush=True)
    return log


async def proxy_cli(ctx: Any, pool: Any, selected: list[str], rest: list[str]) -> int:
    """Run the proxy until SIGTERM or SIGINT (exit 0); 1 if an endpoint cannot be bound, 2 on
    a usage error, nothing to follow, a bad proxy key file or a network address without
    CURVE."""
    try:
        args = _proxy_parser().parse_args(rest)
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    log = _log_to(ctx.err)
    meta = pool.config.meta
    binds: dict[str, str] = {}
    if not args.no_stats:
        binds[STATS] = args.stats_endpoint or meta.stats_endpoint
    if not args.no_events:
        binds[EVENTS] = args.pubsub_endpoint or meta.pubsub_endpoint
    if not binds:
        ctx.warn("circusmeta proxy: --no-stats and --no-events leave nothing to republish")
        return EXIT_USAGE
    if len(set(binds.values())) < len(binds):
        ctx.warn(f"circusmeta proxy: stats and events cannot share {binds[STATS]}")
        return EXIT_USAGE
    feeds: list[Feed] = []
    for name in selected:
        spec = pool.config.nodes[name]
        for kind, address in ((STATS, spec.stats_endpoint), (EVENTS, spec.pubsub_endpoint)):
            if kind not in binds:
                continue
            if address is None:
                key = "stats_endpoint" if kind == STATS else "pubsub_endpoint"
                log(f"{name}: no {key} in {pool.config.file}; its {kind} are not republished")
            elif address in binds.values():
                ctx.warn(f"circusmeta proxy: {name}'s {kind} endpoint {address} is where the "
                         f"proxy binds")
                return EXIT_USAGE
            else:
                feeds.append(Feed(name, kind, address, pool.keys.get(name)))
    if not feeds:
        ctx.warn("circusmeta proxy: no selected node has a stats_endpoint or pubsub_endpoint "
                 f"in {pool.config.file}")
        return EXIT_USAGE
    from .pool import proxy_server_keys
    server = proxy_server_keys(pool.config)          # ConfigError: exit 2
    problem = exposure_problem(binds, server is not None, meta.insecure)
    if problem is not None:
        if not meta.insecure:
            ctx.warn(f"circusmeta proxy: {problem}")
            return EXIT_USAGE
        log(f"warning: {problem}")
    proxy = Proxy(feeds, binds, log, server=server)
    closing: list[Any] = []
    try:
        try:
            proxy.open()
        except zmq.ZMQError as exc:
            ctx.warn(f"circusmeta proxy: {exc}")
            return EXIT_BIND
        if args.http_sd:                                  # Prometheus http_sd (httpsd.py)
            from .httpsd import open_for
            try:
                closing.append(await open_for(pool.config.file, args.http_sd, log))
            except OSError as exc:
                ctx.warn(f"circusmeta proxy: --http-sd {args.http_sd}: {exc.strerror or exc}")
                return EXIT_BIND
        for kind, address in binds.items():
            followed = ", ".join(f"{f.node} ({f.address}{', CURVE' if f.curve else ''})"
                                 for f in feeds if f.kind == kind)
            log(f"{kind} on {address}, from {followed or 'no node'}")
        if server is not None:
            log(f"subscribers need CURVE: {server[0].path}'s public key and a client key in "
                f"{meta.proxy_clients} ({server[1].summary()})")
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        try:
            await proxy.run(stop)
        finally:
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.remove_signal_handler(sig)
    finally:
        for sd in closing:
            await sd.close()
        proxy.close()
    log(f"stopped ({proxy.forwarded.get(STATS, 0)} stats, {proxy.forwarded.get(EVENTS, 0)} "
        f"events republished)")
    return EXIT_OK
