"""``circusmeta discover``: ask the network which circusd nodes are there (0.19's multicast
discovery) and print them as pool-file sections.

One datagram goes to the group (``udp://237.219.251.97:12027`` by default, 0.19's), sent on the
default interface and on loopback (TTL 1: the local network only); every circusd with that
``[circus] multicast_endpoint`` answers by unicast with ``{"endpoint": ..., "node": ...}``
(0.19 sends only ``endpoint``). Answers are collected for ``--wait`` seconds, at most
:data:`MAX_DATAGRAMS` of them (the others are counted).

Anyone on the network can answer: :mod:`circusmeta.answers` checks every answer and drops those
that are not of the strict shape a pool file may hold; discovery finds candidates, it never
vouches for them (no key is ever taken from an answer).
"""
from __future__ import annotations

import argparse
import asyncio
import ipaddress
import json
import socket
import time
from typing import Any
from urllib.parse import urlparse

from .answers import MAX_ANSWER_BYTES, MAX_REMARKS, Answer, Dropped, Found, parse_answers, sections

__all__ = ["discover_cli", "discover", "Answer", "Dropped", "Found", "parse_answers",
           "sections", "parse_group", "DEFAULT_MULTICAST", "MAX_DATAGRAMS"]

DEFAULT_MULTICAST = "udp://237.219.251.97:12027"
EXIT_FOUND, EXIT_NONE, EXIT_USAGE = 0, 1, 2
#: datagrams read per run; later ones are counted as dropped
MAX_DATAGRAMS = 4096


class MulticastUnavailable(OSError):
    """The datagram could not be sent on any interface (no route for multicast)."""


def parse_group(endpoint: str) -> tuple[str, int]:
    """(group, port) of ``udp://GROUP:PORT``; ValueError unless GROUP is an IPv4 multicast
    address and PORT 1 to 65535."""
    url = urlparse(endpoint)
    try:
        port = url.port
    except ValueError:
        port = None
    if url.scheme != "udp" or not url.hostname or not port:
        raise ValueError(f"multicast endpoint must be udp://GROUP:PORT, got {endpoint!r}")
    try:
        group = ipaddress.IPv4Address(url.hostname)
    except ValueError:
        raise ValueError(f"{url.hostname} is not an IPv4 multicast address (224.0.0.0/4)") \
            from None
    if not group.is_multicast:
        raise ValueError(f"{url.hostname} is not a multicast address (224.0.0.0/4)")
    return str(group), port


async def discover(multicast: str = DEFAULT_MULTICAST, wait: float = 2.0,
                   payload: bytes = b'"circusmeta discover"') -> tuple[Found, list[str]]:
    """Send one datagram per interface and collect answers for ``wait`` seconds.

    Returns (what was found: the checked answers and the dropped ones, the interfaces it was
    sent on); raises :class:`MulticastUnavailable` when it could be sent on none, ValueError
    for a bad ``multicast``.
    """
    group, port = parse_group(multicast)
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
        ignored = 0
        deadline = time.monotonic() + wait
        while (left := deadline - time.monotonic()) > 0:
            try:
                # one byte more than an answer may have: a longer one is seen and dropped
                got = await asyncio.wait_for(loop.sock_recvfrom(sock, MAX_ANSWER_BYTES + 1),
                                             left)
            except (asyncio.TimeoutError, TimeoutError):
                break
            except OSError:                 # e.g. an ICMP error for one of the datagrams
                continue
            if len(raw) < MAX_DATAGRAMS:
                raw.append(got)
            else:
                ignored += 1
        found = parse_answers(raw)
        found.more_dropped += ignored           # beyond MAX_DATAGRAMS: counted, not read
        return found, sent
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
        found, sent = await discover(args.multicast, args.wait)
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
    answers = found.answers
    for dropped in found.dropped:              # escaped: printable ASCII on one line
        ctx.warn(f"circusmeta discover: dropped {dropped}")
    if found.more_dropped:
        ctx.warn(f"circusmeta discover: dropped {found.more_dropped} more answer(s) (repeats, "
                 f"or beyond the first {MAX_REMARKS} remarks)")
    if ctx.json or args.json:
        ctx.print(json.dumps([a.to_dict() for a in answers], indent=2))
    elif answers or found.dropped_count:
        ctx.out.write(sections(found))
        ctx.out.flush()
    if not answers:
        dropped = f"; {found.dropped_count} invalid answer(s) dropped" \
            if found.dropped_count else ""
        ctx.warn(f"circusmeta discover: no circusd answered on {args.multicast} within "
                 f"{args.wait:g} s (sent on: {', '.join(sent)}; a node answers only with "
                 f"[circus] multicast_endpoint set to this group{dropped})")
        return EXIT_NONE
    return EXIT_FOUND
