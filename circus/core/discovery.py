"""Multicast discovery (0.19's ``multicast_endpoint``): answer "who is there?" datagrams.

Off unless ``[circus] multicast_endpoint = udp://GROUP:PORT`` is set (0.19 was on by default and
listened on 0.0.0.0). The socket is bound to the group address itself, so only datagrams sent to
the group are received; it joins the group on the default interface and on loopback. Any datagram
is answered, by unicast to its sender, with ``{"endpoint": <control endpoint>, "node": <name>}``
(0.19 sent only ``endpoint``). A setup failure is logged and circusd runs on without discovery.
"""
from __future__ import annotations

import asyncio
import ipaddress
import json
import logging
import socket
import struct
from typing import Callable
from urllib.parse import urlparse

__all__ = ["parse_multicast", "start_discovery"]

log = logging.getLogger("circus")


def parse_multicast(endpoint: str) -> tuple[str, int]:
    url = urlparse(endpoint)
    if url.scheme != "udp" or not url.hostname or not url.port:
        raise ValueError(f"multicast endpoint must be udp://GROUP:PORT, got {endpoint!r}")
    if not ipaddress.ip_address(url.hostname).is_multicast:
        raise ValueError(f"{url.hostname} is not a multicast address (224.0.0.0/4)")
    return url.hostname, url.port


class _Responder(asyncio.DatagramProtocol):
    def __init__(self, answer: Callable[[], bytes]) -> None:
        self.answer = answer
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        if self.transport is not None:
            self.transport.sendto(self.answer(), addr)


async def start_discovery(endpoint: str, answer: Callable[[], dict]) -> asyncio.DatagramTransport | None:
    """Serve discovery on ``endpoint``; ``answer()`` gives the reply's fields. None on failure."""
    try:
        group, port = parse_multicast(endpoint)
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if hasattr(socket, "SO_REUSEPORT"):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((group, port))
        joined = 0
        for interface in ("0.0.0.0", "127.0.0.1"):
            mreq = struct.pack("4s4s", socket.inet_aton(group), socket.inet_aton(interface))
            try:
                sock.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP, mreq)
                joined += 1
            except OSError as exc:
                log.debug("multicast: cannot join %s on %s: %s", group, interface, exc)
        if not joined:
            sock.close()
            raise OSError(f"cannot join multicast group {group}")
        sock.setblocking(False)
        loop = asyncio.get_running_loop()
        transport, _ = await loop.create_datagram_endpoint(
            lambda: _Responder(lambda: json.dumps(answer()).encode()), sock=sock)
    except (OSError, ValueError) as exc:
        log.warning("multicast discovery disabled: %s", exc)
        return None
    log.info("answering discovery on %s", endpoint)
    return transport  # type: ignore[return-value]
