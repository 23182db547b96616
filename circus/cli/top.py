"""circus-top: a live view of the stats stream of one node or a pool of nodes.

Compatible with 0.19's flags (``--endpoint``, ``--process-timeout``, ``--version``; ``--ssh`` is
refused). New: several endpoints, ``--pool``, ``--node``, ``--once`` (with ``--json``) for
scripts, sorting, filtering and a per-watcher drill-down in the curses screen.

Exit codes: 0 ok; 1 nothing arrived from any endpoint within ``--wait`` (``--once``); 2 usage,
bad pool file, ``--ssh``, or no terminal for the screen; 4 ``--once`` heard some endpoints but
not all (the snapshot is printed, the silent endpoints are named on stderr).

CURVE: ``--curve-key``/``--server-key`` (or ``$CIRCUSCTL_CURVE_KEY``/``$CIRCUSCTL_SERVER_KEY``)
for every endpoint; with ``--pool`` and no key flags, each node's keys from the pool file. A
stats endpoint under CURVE sends nothing to a subscriber it does not admit: ``--once`` then
reports it silent. A bad key file is a usage error.

It reads the stream only: no psutil, no control socket.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from typing import Any, Mapping, Sequence, TextIO

import zmq

from circus import __version__
from circus.cli.ctl_keys import KeyOptionError, add_key_options, client_keys
from circus.cli.top_stream import DEFAULT_ENDPOINT, PoolError, Stream, read_pool, read_pool_keys
from circus.stats.health import use_colour
from circus.stats.toprows import coloured, rows, snapshot, title
from circus.stats.topview import Model, SortKey, View

__all__ = ["main", "run", "check_args", "build_parser", "collect_once", "OK", "NOTHING", "USAGE",
           "PARTIAL"]

OK, NOTHING, USAGE, PARTIAL = 0, 1, 2, 4


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="circus-top", description="Live view of circusd-stats streams.")
    p.add_argument("--endpoint", action="append", metavar="E",
                   help=f"a stats endpoint; repeatable (default {DEFAULT_ENDPOINT})")
    p.add_argument("--pool", metavar="FILE",
                   help="a pool file: connect to the stats_endpoint of each [node:NAME]")
    p.add_argument("--node", action="append", metavar="NAME", default=[],
                   help="show only this node; repeatable (with --pool: connect only to it)")
    p.add_argument("--process-timeout", type=float, default=3.0, metavar="S",
                   help="drop processes not updated for S seconds (default 3; 0 never)")
    p.add_argument("--sort", choices=[k.value for k in SortKey], default="cpu",
                   help="initial order (default cpu)")
    p.add_argument("--filter", default="", metavar="TEXT",
                   help="only watchers whose name contains TEXT")
    p.add_argument("--once", action="store_true",
                   help="print one snapshot as text and exit (for scripts)")
    p.add_argument("--json", action="store_true", help="with --once: the snapshot as JSON")
    p.add_argument("--wait", type=float, default=3.0, metavar="S",
                   help="with --once: collect for at most S seconds (default 3)")
    add_key_options(p)
    p.add_argument("--ssh", metavar="USER@HOST", help="not supported (use a CURVE-secured endpoint)")
    p.add_argument("--version", action="version", version=f"circus-top {__version__}")
    return p


def collect_once(stream: Stream, model: Model, wait: float, expect: Sequence[str] = ()) -> None:
    """Read until every endpoint delivered a full round (and every node of ``expect`` its node
    view, the last message of a round), or ``wait`` seconds passed."""
    poller = zmq.Poller()
    stream.register(poller)
    deadline = time.monotonic() + wait
    while True:
        now = time.monotonic()
        if now >= deadline or (all(e.complete for e in stream.endpoints) and
                               all(_has_round(model, n) for n in expect)):
            return
        if poller.poll(max(1, int((deadline - now) * 1000))):
            stream.drain(model, time.monotonic())


def _has_round(model: Model, node: str) -> bool:
    return node in model.nodes and model.nodes[node].stats is not None


_CURVE_HINT = " Is it CURVE-protected? Then give --curve-key and --server-key"


def _once(args: argparse.Namespace, stream: Stream, view: View, out: TextIO, err: TextIO,
          expect: Sequence[str] = (), prog: str = "circus-top", keyed: bool = False) -> int:
    model = Model(args.process_timeout)
    collect_once(stream, model, args.wait, expect)
    silent = [e.name for e in stream.endpoints if e.messages == 0]
    if len(silent) == len(stream.endpoints):
        err.write(f"{prog}: no stats received within {args.wait:g} s from "
                  f"{', '.join(silent)} (is circusd running with statsd = true, and is this its "
                  f"stats_endpoint?{'' if keyed else _CURVE_HINT})\n")
        return NOTHING
    for e in stream.endpoints:
        if e.messages and not e.complete:
            err.write(f"{prog}: {e.name}: no full round of stats within {args.wait:g} s; "
                      f"the snapshot may be incomplete\n")
    missing = [n for n in expect if not _has_round(model, n)]
    if missing:
        heard = ", ".join(sorted(model.nodes)) or "none"
        err.write(f"{prog}: no stats of {', '.join(missing)} within {args.wait:g} s "
                  f"(nodes heard: {heard})\n")
    model.expire(time.monotonic())
    if args.json:
        data = snapshot(model, view)
        data["endpoints"] = {e.address: "complete" if e.complete else "partial" if e.messages
                             else "silent" for e in stream.endpoints}
        if expect:
            data["missing"] = missing
        out.write(json.dumps(data, indent=2, sort_keys=True) + "\n")
    else:
        colour = use_colour(out, os.environ)
        lines = [title(view, model)] + [coloured(r, colour)
                                        for r in rows(model, view, time.monotonic())]
        out.write("\n".join(lines) + "\n")
    out.flush()
    if silent:
        err.write(f"{prog}: nothing received from {', '.join(silent)}\n")
        return PARTIAL
    return PARTIAL if missing else OK


def check_args(args: argparse.Namespace, err: TextIO, prog: str = "circus-top") -> bool:
    """The checks of the flags every caller shares; False (after saying why) on a usage error."""
    if args.ssh:
        err.write(f"{prog}: --ssh is not supported; reach the stats endpoint directly or "
                  "through your own tunnel\n")
        return False
    if args.json and not args.once:
        err.write(f"{prog}: --json needs --once\n")
        return False
    if args.process_timeout < 0 or args.wait <= 0:
        err.write(f"{prog}: --process-timeout must be >= 0 and --wait > 0\n")
        return False
    return True


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    err = sys.stderr
    if not check_args(args, err):
        return USAGE
    endpoints = list(args.endpoint or [])
    prefixes: list[str] = []
    labels: dict[str, str] = {}
    curve: Any = None
    if args.pool:
        try:
            nodes = read_pool(args.pool, args.node)
        except PoolError as exc:
            err.write(f"circus-top: {exc}\n")
            return USAGE
        endpoints += nodes.values()
        labels = {address: name for name, address in nodes.items()}
        if not (args.curve_key or args.server_key):
            try:
                keys = read_pool_keys(args.pool, nodes)
            except PoolError as exc:
                err.write(f"circus-top: {exc}\n")
                return USAGE
            if any(k is not None for k in keys.values()):
                curve = {nodes[name]: k for name, k in keys.items()}
    elif args.node:
        prefixes = [f"{name}/stat." for name in args.node]
    endpoints = list(dict.fromkeys(endpoints or [DEFAULT_ENDPOINT]))
    view = View(sort=SortKey(args.sort), filter=args.filter,
                nodes=frozenset(args.node) if not args.pool else frozenset())
    return run(args, endpoints, view, prefixes=prefixes, labels=labels, curve=curve)


def stream_keys(args: argparse.Namespace, environ: Mapping[str, str] | None = None,
                err: TextIO | None = None) -> Any:
    """The ClientKeys of ``--curve-key``/``--server-key`` (else the environment's), or None;
    ValueError saying what is wrong."""
    from circus.security.keys import KeyFileError
    try:
        return client_keys(getattr(args, "curve_key", None), getattr(args, "server_key", None),
                           os.environ if environ is None else environ, err)
    except (KeyOptionError, KeyFileError) as exc:
        raise ValueError(str(exc)) from None


def run(args: argparse.Namespace, endpoints: Sequence[str], view: View, *,
        prefixes: Sequence[str] = (), labels: Mapping[str, str] | None = None,
        expect: Sequence[str] = (), out: TextIO | None = None, err: TextIO | None = None,
        prog: str = "circus-top", curve: Any = None) -> int:
    """circus-top on ``endpoints`` (``args`` from :func:`build_parser`, already checked).

    ``labels`` names the node behind an endpoint (messages say ``web1 (tcp://...)``, and its
    unprefixed 0.19 topics are read as that node's); ``expect`` lists nodes that ``--once``
    waits for and reports missing (several nodes behind one endpoint, as with a proxy).
    ``curve``: ClientKeys for every endpoint, or a mapping endpoint -> ClientKeys (or None);
    without it, the keys of ``args`` (flags, else the environment).
    """
    out = out or sys.stdout
    err = err or sys.stderr
    if curve is None:
        try:
            curve = stream_keys(args, err=err)
        except ValueError as exc:
            err.write(f"{prog}: {exc}\n")
            return USAGE
    try:
        stream = Stream(endpoints, prefixes, labels, curve)
    except zmq.ZMQError as exc:
        err.write(f"{prog}: cannot connect: {exc}\n")
        return USAGE
    try:
        if args.once:
            return _once(args, stream, view, out, err, expect, prog, keyed=curve is not None)
        if not (sys.stdin.isatty() and sys.stdout.isatty()):
            err.write(f"{prog}: the live screen needs a terminal; use --once for scripts\n")
            return USAGE
        from circus.cli.top_screen import run_screen
        return run_screen(stream, Model(args.process_timeout), view)
    except KeyboardInterrupt:
        return OK
    finally:
        stream.close()


if __name__ == "__main__":
    sys.exit(main())
