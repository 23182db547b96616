"""Clients of circusd's control and pubsub endpoints.

``AsyncClient`` / ``AsyncConsumer`` are the asyncio clients. ``CircusClient`` (blocking) and
``AsyncCircusClient`` keep Circus 0.19's names and signatures. The asyncio names are loaded on first use, so a
blocking user (circusctl) does not import asyncio.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

from circus.client.errors import CallError, CallTimeout, TunnelError
from circus.client.sync import CircusClient
from circus.client.wire import (DEFAULT_ENDPOINT_DEALER, DEFAULT_ENDPOINT_STATS,
                                DEFAULT_ENDPOINT_SUB, cast_message, make_json, make_message)

if TYPE_CHECKING:
    from circus.client.aio import AsyncCircusClient, AsyncClient, AsyncConsumer

__all__ = [
    "AsyncClient", "AsyncConsumer", "CircusClient", "AsyncCircusClient",
    "CallError", "CallTimeout", "TunnelError",
    "make_message", "cast_message", "make_json",
    "DEFAULT_ENDPOINT_DEALER", "DEFAULT_ENDPOINT_SUB", "DEFAULT_ENDPOINT_STATS",
]


def __getattr__(name: str) -> Any:
    if name in ("AsyncClient", "AsyncConsumer", "AsyncCircusClient"):
        from circus.client import aio
        return getattr(aio, name)
    raise AttributeError(f"module 'circus.client' has no attribute {name!r}")
