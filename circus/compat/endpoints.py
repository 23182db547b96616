"""Circus 0.19's default endpoints and ``get_connection`` (``circus.util``)."""
from __future__ import annotations

from typing import Any

from circus.client.wire import (DEFAULT_ENDPOINT_DEALER, DEFAULT_ENDPOINT_STATS,
                                DEFAULT_ENDPOINT_SUB)
from circus.client.wire import connect as _connect

__all__ = ["DEFAULT_ENDPOINT_DEALER", "DEFAULT_ENDPOINT_SUB", "DEFAULT_ENDPOINT_STATS",
           "DEFAULT_ENDPOINT_MULTICAST", "get_connection"]

#: 0.19's discovery address (our circusd has discovery off unless configured)
DEFAULT_ENDPOINT_MULTICAST = "udp://237.219.251.97:12027"


def get_connection(socket: Any, endpoint: str, ssh_server: str | None = None,
                   ssh_keyfile: str | None = None) -> None:
    """Connect a ZeroMQ socket to ``endpoint`` (through an ssh tunnel if ``ssh_server``)."""
    _connect(socket, endpoint, ssh_server, ssh_keyfile)
