"""``circusd-stats``: publish the node's process, socket and machine statistics.

Started by circusd as its ``circusd-stats`` watcher when ``[circus] statsd = true`` (or
``prometheus_endpoint`` is set), or by hand against any circusd. 0.19's flags, plus
``--interval``, ``--legacy-topics`` and ``--prometheus``. Each form of topics (0.19's
``stat....``, the node-prefixed ``<node>/stat....``) is published while somebody subscribes to
it; ``--legacy-topics`` publishes 0.19's all the time.

CURVE: ``--curve-key`` and ``--server-key`` are its client keys to circusd (started by circusd:
the node's own secret key file, both times); ``--curve-clients DIR`` makes the stats endpoint a
CURVE server too, with ``--curve-key``'s pair, admitting the client keys of DIR (every role).

Exit codes: 0 stopped by a signal, 1 could not bind, 2 usage error (a key file or clients
directory that cannot be used included).
"""
from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys

import zmq

from circus import __version__
from circus.cli import logsetup
from circus.cli.ctl_keys import KeyOptionError, add_key_options, client_keys
from circus.client.wire import DEFAULT_ENDPOINT_DEALER, DEFAULT_ENDPOINT_STATS, DEFAULT_ENDPOINT_SUB

__all__ = ["main"]

log = logging.getLogger("circus.stats")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="circusd-stats",
                                description="Publish statistics of a circusd's processes.")
    p.add_argument("--endpoint", default=DEFAULT_ENDPOINT_DEALER, help="circusd's control endpoint")
    p.add_argument("--pubsub", default=DEFAULT_ENDPOINT_SUB, help="circusd's events endpoint")
    p.add_argument("--statspoint", default=DEFAULT_ENDPOINT_STATS,
                   help="endpoint to bind and publish the stats on")
    p.add_argument("--interval", type=float, default=1.0,
                   help="seconds between two samples (default 1)")
    p.add_argument("--legacy-topics", action="store_true",
                   help="publish 0.19's unprefixed topics (stat.WATCHER.PID...) even while "
                   "nobody subscribes to them (without it they go to their subscribers only)")
    p.add_argument("--prometheus", metavar="HOST:PORT",
                   help="serve /metrics in the Prometheus text format there")
    p.add_argument("--log-level", dest="loglevel", default="info", type=str.lower,
                   choices=logsetup.LEVELS)
    p.add_argument("--log-output", dest="logoutput", default="-")
    add_key_options(p, env=False)
    p.add_argument("--curve-clients", dest="curve_clients", metavar="DIR",
                   help="CURVE on the stats endpoint too: the authorized client keys, one "
                   "subdirectory per role (needs --curve-key, the endpoint's own key pair)")
    p.add_argument("--ssh", help="not supported (0.19's SSH tunnel)")
    p.add_argument("--version", action="version", version=f"circusd-stats {__version__}")
    return p


async def _run(args: argparse.Namespace) -> int:
    from circus.stats.streamer import Streamer

    on_snapshot = None
    if args.prometheus:
        from circus.stats.prometheus import SnapshotCollector, serve
        collector = SnapshotCollector()
        try:
            serve(args.prometheus, collector)
        except (OSError, ValueError) as exc:
            log.error("circusd-stats: cannot serve /metrics on %s: %s", args.prometheus, exc)
            return 1
        on_snapshot = collector.update
    streamer = Streamer(args.endpoint, args.pubsub, args.statspoint, interval=args.interval,
                        legacy=args.legacy_topics, on_snapshot=on_snapshot, curve=args.curve,
                        server=args.server, keyring=args.keyring)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGQUIT, signal.SIGHUP, signal.SIGWINCH):
        loop.add_signal_handler(sig, stop.set)
    try:
        await streamer.run(stop)
    except zmq.ZMQError as exc:              # the stats endpoint cannot be bound
        log.error("circusd-stats: cannot publish on %s: %s", args.statspoint, exc)
        return 1
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.ssh:
        print("circusd-stats: --ssh is not supported; reach a remote circusd over its own "
              "endpoints", file=sys.stderr)
        return 2
    if args.interval <= 0:
        print("circusd-stats: --interval must be > 0", file=sys.stderr)
        return 2
    try:
        logsetup.configure(args.loglevel, args.logoutput)
    except (OSError, ValueError) as exc:
        print(f"circusd-stats: --log-output: {exc}", file=sys.stderr)
        return 2
    try:
        _load_keys(args)
    except (KeyOptionError, ValueError) as exc:
        log.error("circusd-stats: %s", exc)
        print(f"circusd-stats: {exc}", file=sys.stderr)
        return 2
    return asyncio.run(_run(args))


def _load_keys(args: argparse.Namespace) -> None:
    """Sets ``args.curve`` (ClientKeys), ``args.server`` (KeyPair) and ``args.keyring``, each
    ``None`` when not asked for; ValueError / KeyOptionError naming what is wrong."""
    args.curve = args.server = args.keyring = None
    if args.curve_clients and not args.curve_key:
        raise KeyOptionError("--curve-clients needs --curve-key (the stats endpoint's own key "
                             "pair) and --server-key")
    if args.curve_key or args.server_key:
        from circus.security.keyring import Keyring
        from circus.security.keys import KeyFileError, load_keypair
        try:
            args.curve = client_keys(args.curve_key, args.server_key, err=sys.stderr)
            if args.curve_clients:
                args.server = load_keypair(args.curve_key)
                args.keyring = Keyring.load(args.curve_clients, args.server.public)
        except KeyFileError as exc:
            raise ValueError(str(exc)) from None
    if args.keyring is not None:
        for text in args.keyring.warnings:
            log.warning("circusd-stats: curve_clients: %s", text)
        log.info("circusd-stats: CURVE on %s: clients from %s (%s)", args.statspoint,
                 args.curve_clients, args.keyring.summary())
        return
    from circus.security.exposure import exposed
    if exposed([("statspoint", args.statspoint)]):
        log.warning("circusd-stats: %s is reachable from other machines and not protected by "
                    "CURVE (--curve-clients): anybody there can read the stats", args.statspoint)


if __name__ == "__main__":
    sys.exit(main())
