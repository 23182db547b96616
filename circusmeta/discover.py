"""``circusmeta discover``: ask the network which circusd nodes are there (0.19's multicast
discovery) and print them as pool-file sections.

One datagram goes to the group (``udp://237.219.251.97:12027`` by default, 0.19's), sent on the
default interface and on loopback (TTL 1: the local network only); every circusd with that
``[circus] multicast_endpoint`` answers by unicast with ``{"endpoint": ..., "node": ...}``
(0.19 sends only ``endpoint``). Answers are collected for ``--wait`` seconds.

:func:`sections` (pure) turns the answers into the pool file's text.
"""
from __future__ import annotations

import argparse
import asyncio
import ipaddress
import json
import re
import socket
import time
from dataclasses import dataclass
from typing import Any, Iterable
from urllib.parse import urlparse

from circus.core.discovery import parse_multicast

__all__ = ["discover_cli", "discover", "Answer", "sections", "DEFAULT_MULTICAST"]

DEFAULT_MULTICAST = "udp://237.219.251.97:12027"
EXIT_FOUND, EXIT_NONE, EXIT_USAGE = 0, 1, 2
_NAME_BAD = re.compile(r"[^A-Za-z0-9_.-]")


class MulticastUnavailable(OSError):
    """The datagram could not be sent on any interface (no route for multicast)."""


@dataclass(frozen=True)
class Answer:
    """One node's answer: its name (the pool's, unique among the answers), where to reach it,
    who answered, and a remark when the endpoint needs a look."""

    name: str
    endpoint: str
    responder: tuple[str, int]
    reported: str | None = None       # the name the node gave, if not the one used
    remark: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"node": self.name, "endpoint": self.endpoint,
                "responder": f"{self.responder[0]}:{self.responder[1]}",
                "reported_name": self.reported, "remark": self.remark}


def _endpoint(endpoint: str, host: str) -> tuple[str, str | None]:
    """The endpoint to write down, and a remark: a wildcard address becomes the responder's."""
    url = urlparse(endpoint)
    if url.scheme == "ipc":
        return endpoint, None if _loopback(host) else \
            "an ipc endpoint: reachable only on that machine"
    if url.scheme == "tcp" and url.hostname in ("0.0.0.0", "*", "::"):
        return f"tcp://{host}:{url.port}", \
            f"circusd binds {endpoint}; using the responder's address"
    if url.scheme == "tcp" and url.hostname and _loopback(url.hostname) and not _loopback(host):
        return endpoint, "a loopback endpoint: reachable only on that machine"
    return endpoint, None


def _loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def parse_answers(raw: Iterable[tuple[bytes, tuple[str, int]]]) -> list[Answer]:
    """Answers from datagrams (pure): malformed ones skipped, the same node once, names made
    valid and unique (``node-10-0-0-11`` when a 0.19 node gives none)."""
    out: list[Answer] = []
    seen: set[tuple[str | None, str]] = set()
    names: set[str] = set()
    for data, addr in raw:
        try:
            reply = json.loads(data)
        except (UnicodeDecodeError, ValueError):
            continue
        if not isinstance(reply, dict) or not isinstance(reply.get("endpoint"), str):
            continue
        given = reply.get("node") if isinstance(reply.get("node"), str) else None
        key = (given, reply["endpoint"])
        if key in seen:                       # it answered on both interfaces
            continue
        seen.add(key)
        endpoint, remark = _endpoint(reply["endpoint"], addr[0])
        base = _NAME_BAD.sub("-", given)[:64] if given else "node-" + addr[0].replace(".", "-")
        name, n = base or "node", 2
        while name in names:
            name, n = f"{base[:60]}-{n}", n + 1
        names.add(name)
        out.append(Answer(name, endpoint, addr, given if given != name else None, remark))
    return out


def sections(answers: Iterable[Answer]) -> str:
    """The pool file's ``[node:NAME]`` sections for the answers (pure)."""
    blocks = []
    for a in answers:
        lines = [f"# answered from {a.responder[0]}:{a.responder[1]}"]
        if a.reported:
            lines.append(f"# the node calls itself {a.reported!r}")
        if a.remark:
            lines.append(f"# {a.remark}")
        lines += [f"[node:{a.name}]", f"endpoint = {a.endpoint}"]
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks) + ("\n" if blocks else "")


async def discover(multicast: str = DEFAULT_MULTICAST, wait: float = 2.0,
                   payload: bytes = b'"circusmeta discover"') -> tuple[list[Answer], list[str]]:
    """Send one datagram per interface and collect answers for ``wait`` seconds.

    Returns (answers, the interfaces it was sent on); raises :class:`MulticastUnavailable`
    when it could be sent on none, ValueError for a bad ``multicast``.
    """
    group, port = parse_multicast(multicast)
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL, 1)
        sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_LOOP, 1)
        sock.bind(("0.0.0.0", 0))
        sock.setblocking(False)
        sent, errors = [], []
        for interface in ("0.0.0.0", "127.0.0.1"):     # 0.0.0.0: the route's interface
            try:
                sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF,
                                socket.inet_aton(interface))
                sock.sendto(payload, (group, port))
                sent.append("default" if interface == "0.0.0.0" else "loopback")
            except OSError as exc:
                errors.append(f"{'default interface' if interface == '0.0.0.0' else 'loopback'}:"
                              f" {exc.strerror or exc}")
        if not sent:
            raise MulticastUnavailable(f"cannot send to {group}:{port}: {'; '.join(errors)}")
        loop = asyncio.get_running_loop()
        raw: list[tuple[bytes, tuple[str, int]]] = []
        deadline = time.monotonic() + wait
        while (left := deadline - time.monotonic()) > 0:
            try:
                raw.append(await asyncio.wait_for(loop.sock_recvfrom(sock, 65536), left))
            except (asyncio.TimeoutError, TimeoutError):
                break
            except OSError:                 # e.g. an ICMP error for one of the datagrams
                continue
        return parse_answers(raw), sent
    finally:
        sock.close()


async def discover_cli(ctx: Any, words: list[str]) -> int:
    """Exit 0 when some node answered, 1 when none did (or multicast is impossible here),
    2 on a usage error."""
    p = argparse.ArgumentParser(prog="circusmeta discover",
                                description="Find circusd nodes by multicast; print pool "
                                            "sections.")
    p.add_argument("--multicast", default=DEFAULT_MULTICAST, metavar="udp://GROUP:PORT",
                   help=f"the nodes' [circus] multicast_endpoint (default {DEFAULT_MULTICAST})")
    p.add_argument("--wait", type=float, default=2.0, metavar="S",
                   help="collect answers for S seconds (default 2)")
    p.add_argument("--json", action="store_true", help="print the nodes as a JSON list")
    try:
        args = p.parse_args(words)
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    if args.wait <= 0:
        ctx.warn("circusmeta discover: --wait must be > 0")
        return EXIT_USAGE
    try:
        answers, sent = await discover(args.multicast, args.wait)
    except ValueError as exc:
        ctx.warn(f"circusmeta discover: {exc}")
        return EXIT_USAGE
    except MulticastUnavailable as exc:
        ctx.warn(f"circusmeta discover: multicast is not possible here: {exc} (no route for "
                 f"224.0.0.0/4? e.g. ip route add 224.0.0.0/4 dev eth0)")
        return EXIT_NONE
    except OSError as exc:
        ctx.warn(f"circusmeta discover: {exc}")
        return EXIT_NONE
    if ctx.json or args.json:
        ctx.print(json.dumps([a.to_dict() for a in answers], indent=2))
    elif answers:
        ctx.out.write(sections(answers))
        ctx.out.flush()
    if not answers:
        ctx.warn(f"circusmeta discover: no circusd answered on {args.multicast} within "
                 f"{args.wait:g} s (sent on: {', '.join(sent)}; a node answers only with "
                 f"[circus] multicast_endpoint set to this group)")
        return EXIT_NONE
    return EXIT_FOUND
