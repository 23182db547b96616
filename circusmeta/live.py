"""The pool's live streams: ``circusmeta top`` (circus-top over every node) and ``circusmeta
proxy`` (one merged stats socket and one merged events socket for dashboards).

``top`` is circus-top itself (:func:`circus.cli.top.run`) given the nodes' ``stats_endpoint`` s,
each labelled with its node, or the proxy's ``[meta] stats_endpoint``. ``proxy`` follows every
selected node's stats and pubsub endpoints and republishes each message, topics prefixed with
the node's name (:mod:`circusmeta.streamtopics`), on two PUB sockets it binds; its sockets are
in :mod:`circusmeta.proxy`, its stats path in :mod:`circusmeta.pump` (libzmq forwards, degraded
above ``--max-rate``: :mod:`circusmeta.shedding`), its sizes in :mod:`circusmeta.proxysize`.

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
import signal
import time
from typing import Any, Callable

import zmq

from .proxy import EVENTS, HWM, STATS, Feed, LimitError, Proxy
from .proxysize import MAX_QUEUED
from .shedding import MAX_RATE
from .streamtopics import FeedState, event_topic, stats_topic

__all__ = ["top_cli", "proxy_cli", "Proxy", "Feed", "FeedState", "stats_topic", "event_topic",
           "HWM", "exposure_problem"]

EXIT_OK, EXIT_BIND, EXIT_USAGE = 0, 1, 2


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
    p.add_argument("--max-rate", type=_positive, default=MAX_RATE, metavar="N",
                   help=f"stats messages per second forwarded in full; above, only the watchers' "
                        f"aggregates and the node views (default {MAX_RATE:,})")
    p.add_argument("--max-queued", type=_positive, default=MAX_QUEUED, metavar="N",
                   help=f"stats messages the proxy may hold for the whole pool while it is "
                        f"behind (default {MAX_QUEUED:,})")
    return p


def _positive(text: str) -> int:
    try:
        value = int(text.replace("_", "").replace(",", ""))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not above 0")
    return value


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
    a usage error, nothing to follow, a bad proxy key file, a network address without CURVE,
    or a pool too big for this process's limits."""
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
    proxy = Proxy(feeds, binds, log, server=server, max_rate=args.max_rate,
                  max_queued=args.max_queued)
    closing: list[Any] = []
    try:
        try:
            proxy.open()
        except LimitError as exc:
            ctx.warn(f"circusmeta proxy: {exc}")
            return EXIT_USAGE
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
        nodes = len({f.node for f in feeds})
        assert proxy.plan is not None
        log(f"{nodes:,} node{'s' if nodes != 1 else ''}: {proxy.plan.summary(nodes)}"
            + (f"; stats in full up to {args.max_rate:,} messages/s" if STATS in binds else ""))
        if proxy.raised is not None:
            log(f"open files limit (RLIMIT_NOFILE) raised from {proxy.raised[0]:,} to "
                f"{proxy.raised[1]:,}")
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
    shed = ""
    if proxy.pump is not None and proxy.pump.periods:
        shed = (f"; degraded {proxy.pump.periods} time{'s' if proxy.pump.periods != 1 else ''}, "
                f"{proxy.pump.not_forwarded:,} per-process messages not forwarded")
    log(f"stopped ({proxy.forwarded.get(STATS, 0)} stats, {proxy.forwarded.get(EVENTS, 0)} "
        f"events republished{shed})")
    return EXIT_OK
