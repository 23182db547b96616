"""Prometheus service discovery from the pool: ``circusmeta prometheus-sd``.

Prometheus scrapes every node's own ``/metrics`` (circusd-stats, ``prometheus_endpoint``; see
the stats page of the docs); the pool tells it where they are. Each node with a
``prometheus_endpoint`` in the pool file (or TXT ``circus-prometheus`` in DNS, :mod:`srv`) is
one target group::

    [{"targets": ["10.0.0.11:9101"],
      "labels": {"circus_node": "web1", "circus_tags": ",eu,web,"}}]

``circus_tags`` is the node's tags sorted, each between commas (empty: no label), so a
relabelling regex ``.*,web,.*`` matches a tag whole. The labels are not ``node``: the series
carry that one already, from circusd-stats.

Two ways out, one content: ``--out FILE.json`` writes Prometheus's ``file_sd`` file atomically
(a temporary file in the same directory, then a rename: Prometheus re-reads the file when it
changes and never sees half of it); ``--listen HOST:PORT`` serves its ``http_sd`` (also
``circusmeta proxy --http-sd``), the pool read again at each request (:mod:`httpsd`). Without
either the JSON goes to stdout. :func:`targets` is pure.

Exit codes: 0 written (or served until SIGTERM / SIGINT); 1 the file cannot be written or the
address bound, or the DNS server did not answer; 2 a usage or pool error, or no selected node
has a ``prometheus_endpoint``.
"""
from __future__ import annotations

import argparse
import ipaddress
import json
import os
import re
from typing import Any, Iterable, Sequence

__all__ = ["targets", "render", "check_address", "split_address", "write_atomically", "promsd_cli",
           "select", "source", "LABELS"]

EXIT_OK, EXIT_IO, EXIT_USAGE = 0, 1, 2
LABELS = ("circus_node", "circus_tags")
_HOST = re.compile(r"[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}"
                   r"[A-Za-z0-9])?)*")


def split_address(text: str, any_port: bool = False) -> tuple[str, int]:
    """(host, port) of ``HOST:PORT`` or ``[V6]:PORT`` (port 0 too with ``any_port``: a free
    one, for an address to listen on); ValueError."""
    text = text.strip()
    host, sep, port = text.rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise ValueError(f"expected HOST:PORT, got {text!r} ({host!r} is not an IPv6 "
                             f"address)") from None
    elif not sep or ":" in host or not _HOST.fullmatch(host):
        raise ValueError(f"expected HOST:PORT like 10.0.0.11:9101 or [::1]:9101, got {text!r}")
    if not port.isdigit() or not (0 if any_port else 1) <= int(port) < 65536:
        raise ValueError(f"expected a port {0 if any_port else 1}-65535 in {text!r}")
    return host, int(port)


def check_address(text: str) -> str | None:
    """Why ``text`` is not a HOST:PORT Prometheus can scrape, or None (for the pool file)."""
    try:
        split_address(text)
    except ValueError as exc:
        return f"{exc} (the address Prometheus scrapes: the node's [circus] " \
               f"prometheus_endpoint as seen from Prometheus)"
    return None


def targets(nodes: Iterable[Any]) -> tuple[list[dict], list[str]]:
    """(the target groups of the nodes that have a ``prometheus_endpoint``, the names of those
    that have none); in the nodes' order."""
    groups, skipped = [], []
    for node in nodes:
        if not node.prometheus_endpoint:
            skipped.append(node.name)
            continue
        labels = {"circus_node": node.name}
        if node.tags:
            labels["circus_tags"] = "," + ",".join(sorted(set(node.tags))) + ","
        groups.append({"targets": [node.prometheus_endpoint], "labels": labels})
    return groups, skipped


def select(config: Any, names: Sequence[str], tags: Sequence[str]) -> list[Any]:
    """The nodes of ``config`` named (all without names), carrying every tag of ``tags``."""
    nodes = config.nodes
    chosen = [nodes[n] for n in names if n in nodes] if names else list(nodes.values())
    return [n for n in chosen if all(t in n.tags for t in tags)]


def render(groups: list[dict]) -> bytes:
    return (json.dumps(groups, indent=2) + "\n").encode()


def write_atomically(path: str, data: bytes) -> None:
    """Replace ``path`` by ``data`` in one rename; the file keeps its mode (a new one gets
    0644 less the umask: Prometheus often runs as another user). OSError."""
    import tempfile
    directory = os.path.dirname(os.path.abspath(path))
    try:
        mode = os.stat(path).st_mode & 0o7777
    except FileNotFoundError:
        umask = os.umask(0)
        os.umask(umask)
        mode = 0o644 & ~umask
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=f".{os.path.basename(path)}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


# -- the command ---------------------------------------------------------------------------------

def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="circusmeta prometheus-sd",
                                description="Prometheus targets from the pool: every selected "
                                            "node's /metrics (its prometheus_endpoint).")
    p.add_argument("--out", metavar="FILE.json",
                   help="write a file_sd file there, atomically (default: print the JSON)")
    p.add_argument("--listen", metavar="HOST:PORT",
                   help="serve http_sd at http://HOST:PORT/targets until SIGTERM or SIGINT, "
                        "the pool read again at each request")
    return p


def _warn_skipped(ctx: Any, skipped: list[str], where: str) -> None:
    if skipped:
        shown = ", ".join(skipped[:10]) + (f" and {len(skipped) - 10} more"
                                           if len(skipped) > 10 else "")
        ctx.warn(f"circusmeta prometheus-sd: no prometheus_endpoint for {shown} in {where}: "
                 f"not a target")


async def promsd_cli(ctx: Any, pool: Any, names: list[str], tags: list[str],
                     rest: list[str]) -> int:
    """``names``/``tags``: the command's ``--node``/``--tag`` (none: every node)."""
    try:
        args = _parser().parse_args(rest)
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    if args.out and not args.out.endswith(".json"):
        ctx.warn(f"circusmeta prometheus-sd: --out {args.out}: Prometheus reads a file_sd file "
                 f"by its extension: name it .json")
        return EXIT_USAGE
    if args.listen:
        try:
            split_address(args.listen, any_port=True)
        except ValueError as exc:
            ctx.warn(f"circusmeta prometheus-sd: --listen: {exc}")
            return EXIT_USAGE
    groups, skipped = targets(select(pool.config, names, tags))
    _warn_skipped(ctx, skipped, pool.config.file)
    if not groups:
        ctx.warn(f"circusmeta prometheus-sd: no selected node has a prometheus_endpoint in "
                 f"{pool.config.file} (set it in each [node:NAME], or TXT circus-prometheus "
                 f"for a node from DNS)")
        return EXIT_USAGE
    if args.out:
        try:
            write_atomically(args.out, render(groups))
        except OSError as exc:
            ctx.warn(f"circusmeta prometheus-sd: cannot write {args.out}: "
                     f"{exc.strerror or exc}")
            return EXIT_IO
        ctx.print(f"{args.out}: {len(groups)} target{'s' if len(groups) != 1 else ''}")
    elif not args.listen:
        ctx.out.write(render(groups).decode())
        ctx.out.flush()
    if args.listen:
        return await serve_until_stopped(ctx, args.listen, source(pool.config.file, names, tags))
    return EXIT_OK


def source(pool_path: str, names: Sequence[str] = (), tags: Sequence[str] = ()) -> Any:
    """What the http_sd server calls at each request (in a thread: it reads the pool file and
    may ask DNS): the target groups, ConfigError when the pool cannot be read."""
    def load() -> tuple[list[dict], list[str]]:
        from .pool import load_pool
        return targets(select(load_pool(pool_path), names, tags))
    return load


async def serve_until_stopped(ctx: Any, address: str, load: Any) -> int:
    import asyncio
    import signal

    from .httpsd import SdServer
    server = SdServer(load, _logger(ctx))
    try:
        bound = await server.start(address)
    except OSError as exc:
        ctx.warn(f"circusmeta prometheus-sd: cannot listen on {address}: {exc.strerror or exc}")
        return EXIT_IO
    server.log(f"http_sd on http://{bound}/targets")
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)
        await server.close()
    server.log(f"stopped ({server.served} requests answered)")
    return EXIT_OK


def _logger(ctx: Any) -> Any:
    import time

    def log(text: str) -> None:
        ctx.warn(f"{time.strftime('%Y-%m-%d %H:%M:%S')} circusmeta prometheus-sd: {text}")
    return log

