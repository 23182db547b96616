"""The topic rules of ``circusmeta proxy`` (pure: no sockets, no clock).

What a node publishes and what the proxy makes of it::

    web1/stat.sleeper.42        a node's stats topic, already prefixed: forwarded untouched
    stat.sleeper.42             a 0.19 circusd-stats (no "node" in the payload): web1/stat...
    watcher.web.spawn           an event of web1: web1/watcher.web.spawn, payload unchanged

The prefixed stats are forwarded by libzmq without Python seeing them: the proxy's upstream
socket subscribes to every topic that does not start with ``stat.`` (:func:`not_starting_with`),
so the unprefixed copies of ``legacy_stats_topics`` are not even sent to it. A 0.19 node's
unprefixed topics come on a socket of their own and get the pool's name for the node
(:func:`stats_topic`); events always go through Python (:func:`event_topic`: their topics carry
no node name).

Above its rate ceiling the proxy forwards the watchers' aggregates and the node view and drops
the per-process and per-socket messages (:func:`is_detail`), saying so in
``<node>/stat.degraded`` (:mod:`circusmeta.shedding`).
"""
from __future__ import annotations

import json
from dataclasses import dataclass

__all__ = ["FeedState", "stats_topic", "event_topic", "is_detail", "not_starting_with",
           "LEGACY", "DEGRADED"]

#: what 0.19's stats topics (and the copies of ``legacy_stats_topics``) start with
LEGACY = b"stat."
#: the last part of a node's degradation notice topic, ``<node>/stat.degraded``
DEGRADED = "degraded"
_AGGREGATE_MARK = b'"pid": ['       # a watcher's aggregate lists its pids; a process has one


@dataclass
class FeedState:
    """What one upstream stats socket taught us: whether it publishes prefixed topics."""

    prefixed: bool = False


def own_name(body: bytes) -> str | None:
    """The ``node`` of a JSON payload, when it is a usable node name."""
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
    if not topic.startswith(LEGACY):
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
    return (own_name(body) or node).encode() + b"/" + topic


def is_detail(topic: bytes, body: bytes) -> bool:
    """True for a per-process or per-socket message (``web1/stat.api.4242``,
    ``web1/stat.sockets.7``), which a degraded proxy drops; False for a watcher's aggregate,
    the circus group's, the sockets' totals and the node view, which it forwards.

    The topic decides (a trailing number), and the payload only where the topic is ambiguous:
    the aggregate of a watcher named ``web.2`` lists its pids (``"pid": [``).
    """
    _, dot, last = topic.rpartition(b".")
    return bool(dot) and last.isdigit() and _AGGREGATE_MARK not in body


def not_starting_with(prefix: bytes) -> list[bytes]:
    """The subscriptions that receive every topic except those starting with ``prefix``
    (ZeroMQ subscriptions are prefixes: this is the exact complement, 255 per byte of
    ``prefix``). A topic shorter than ``prefix`` and a prefix of it (``sta``) matches none."""
    out: list[bytes] = []
    for i, byte in enumerate(prefix):
        head = prefix[:i]
        out.extend(head + bytes([b]) for b in range(256) if b != byte)
    return out
