"""circus-top's model: the latest state of every node, watcher and process seen on the stats stream.

The stream (see ``docs/top.rst``) sends, per node and per interval, one message per process, one
aggregate per watcher, the circus group (circusd, circusd-stats), the sockets and the node
itself. circus-top only has to remember the last message of each, forget what stopped being
published, and order and filter what is left.

This module is pure: messages come in with the caller's reading of ``time.monotonic()``; nothing
here reads a socket, the clock or the terminal, so merging, expiry, sorting and filtering are unit
tested without ZeroMQ or curses (the rows drawn from it are in :mod:`circus.stats.toprows`).
It must not import psutil: circus-top only reads the stream, possibly far from the nodes.

Nodes are shown in natural order (``node2`` before ``node10``: :func:`natural_key`). A node
whose stream comes through a degraded ``circusmeta proxy`` (only the aggregates, above its
rate ceiling) says so in ``<node>/stat.degraded``: the node keeps that notice while it is fresh
(:attr:`Node.degraded`), and its processes, no longer published, expire as usual.
"""
from __future__ import annotations

import enum
import re
from dataclasses import dataclass, field, replace
from typing import Any, Iterable, Mapping

from circus.stats.health import TROUBLE_ORDER, in_trouble
from circus.stats.units import number

__all__ = [
    "CIRCUS", "SOCKETS", "Kind", "Sample", "Group", "Sockets", "Node", "Model", "SortKey", "View",
    "number", "parse_topic", "visible_groups", "ordered_processes", "group_value",
    "group_trouble", "natural_key", "node_names", "pool_groups",
]

CIRCUS = "circus"      # the group of circusd itself and circusd-stats
SOCKETS = "sockets"    # the group of the arbiter's listening sockets
# 0.19 also published these helpers as watchers; they are shown once, inside the circus group.
_HELPERS = ("circusd-stats", "circushttpd")
# A node's processes are kept at least this many sampling periods (a slow stream must not blink).
_INTERVAL_SLACK = 2.5


class Kind(enum.Enum):
    """What one stream message is about."""

    NODE = "node"
    AGGREGATE = "aggregate"
    PROCESS = "process"
    SOCKET = "socket"
    SOCKETS = "sockets"
    NOTICE = "notice"          # a degraded proxy's <node>/stat.degraded


_DIGITS = re.compile(r"(\d+)")


def natural_key(name: str) -> tuple:
    """Sort key of a name in natural order: ``node2`` < ``node10`` < ``node100``, ``web-a`` <
    ``Web-b`` (case aside), digits before letters where they differ."""
    parts = _DIGITS.split(name)
    key = tuple((0, int(p), "") if i % 2 else (1, 0, p.lower()) for i, p in enumerate(parts))
    return key, name


def parse_topic(topic: str) -> tuple[str, str] | None:
    """``"web1/stat.sleeper.42"`` -> ``("web1", "sleeper.42")``; None for any other topic.

    0.19's unprefixed topics (``stat.sleeper.42``, still published with
    ``legacy_stats_topics``) carry no node name and are not used.
    """
    node, sep, rest = topic.partition("/stat.")
    if not sep or not node or not rest:
        return None
    return node, rest


@dataclass
class Sample:
    """The last payload of one topic and when (caller's monotonic clock) it arrived."""

    data: dict[str, Any]
    seen: float


@dataclass
class Group:
    """A watcher, or the circus group: its last aggregate and its processes by pid."""

    name: str
    aggregate: Sample | None = None
    processes: dict[int, Sample] = field(default_factory=dict)


@dataclass
class Sockets:
    """The arbiter's sockets: the last totals and each socket by fd."""

    aggregate: Sample | None = None
    items: dict[int, Sample] = field(default_factory=dict)


@dataclass
class Node:
    """Everything known of one node; ``interval`` is its observed sampling period."""

    name: str
    stats: Sample | None = None
    interval: float | None = None
    last_seen: float = 0.0
    groups: dict[str, Group] = field(default_factory=dict)
    sockets: Sockets = field(default_factory=Sockets)
    degraded: Sample | None = None    # the proxy's last notice that it forwards aggregates only

    def group(self, name: str) -> Group:
        found = self.groups.get(name)
        if found is None:
            found = self.groups[name] = Group(name)
        return found


def _classify(rest: str, payload: Mapping[str, Any]) -> tuple[Kind, str, int | None] | None:
    """The kind of a message, its group (watcher) name and its pid or fd.

    The payload decides where the topic is ambiguous: a watcher may be named ``node`` or
    ``sockets``, and watcher names may contain dots.
    """
    if rest == "node" and "load" in payload:
        return Kind.NODE, "", None
    if rest == "degraded" and isinstance(payload.get("degraded"), bool) and "by" in payload:
        return Kind.NOTICE, "", None
    if rest == SOCKETS and "addresses" in payload:
        return Kind.SOCKETS, SOCKETS, None
    if rest.startswith(SOCKETS + ".") and "address" in payload:
        fd = payload.get("fd", rest.rpartition(".")[2])
        return (Kind.SOCKET, SOCKETS, int(fd)) if str(fd).isdigit() else None
    pid = payload.get("pid")
    watcher = payload.get("watcher")
    if isinstance(pid, int) and not isinstance(pid, bool):
        name = watcher if isinstance(watcher, str) else rest.rpartition(".")[0]
        return (Kind.PROCESS, name, pid) if name else None
    if isinstance(pid, list) or "numprocesses" in payload:
        return Kind.AGGREGATE, watcher if isinstance(watcher, str) else rest, None
    return None


class Model:
    """Latest state per node / watcher / pid, fed message by message.

    ``process_timeout`` (seconds, 0 = never) drops processes, sockets and watchers that stopped
    being published. It is stretched to 2.5 sampling periods of their node, so that a stream
    slower than the timeout (``circusd-stats --interval 5``) does not make rows blink.
    """

    def __init__(self, process_timeout: float = 3.0) -> None:
        self.process_timeout = process_timeout
        self.nodes: dict[str, Node] = {}

    def feed(self, topic: str | bytes, payload: Any, now: float) -> Kind | None:
        """Merge one message; returns its kind, or None when it was not ours or malformed."""
        if isinstance(topic, bytes):
            topic = topic.decode("utf-8", "replace")
        parsed = parse_topic(topic)
        if parsed is None or not isinstance(payload, dict):
            return None
        node_name, rest = parsed
        found = _classify(rest, payload)
        if found is None:
            return None
        kind, name, ident = found
        node = self.nodes.get(node_name)
        if node is None:
            node = self.nodes[node_name] = Node(node_name)
        node.last_seen = now
        sample = Sample(payload, now)
        if kind is Kind.NODE:
            if node.stats is not None and now > node.stats.seen:
                period = now - node.stats.seen
                node.interval = period if node.interval is None else 0.7 * node.interval + 0.3 * period
            node.stats = sample
        elif kind is Kind.NOTICE:
            node.degraded = sample if payload["degraded"] else None
        elif kind is Kind.SOCKETS:
            node.sockets.aggregate = sample
        elif kind is Kind.SOCKET:
            assert ident is not None
            node.sockets.items[ident] = sample
        elif kind is Kind.AGGREGATE:
            group = node.group(name)
            group.aggregate = sample
            pids = payload.get("pid")
            if isinstance(pids, list):   # a pid the arbiter no longer lists is gone now
                live = {p for p in pids if isinstance(p, int)}
                for pid in [p for p in group.processes if p not in live]:
                    del group.processes[pid]
        else:
            assert ident is not None
            node.group(name).processes[ident] = sample
        return kind

    def timeout_for(self, node: Node) -> float:
        """The age after which a node's processes are dropped (0 = never)."""
        if self.process_timeout <= 0:
            return 0.0
        if node.interval is None:
            return self.process_timeout
        return max(self.process_timeout, _INTERVAL_SLACK * node.interval)

    def expire(self, now: float) -> int:
        """Drop what was not updated within the timeout; returns how many entries went."""
        dropped = 0
        for node in self.nodes.values():
            limit = self.timeout_for(node)
            if limit <= 0:
                continue
            for group in list(node.groups.values()):
                for pid in [p for p, s in group.processes.items() if now - s.seen > limit]:
                    del group.processes[pid]
                    dropped += 1
                if group.aggregate is not None and now - group.aggregate.seen > limit:
                    group.aggregate = None
                if group.aggregate is None and not group.processes:
                    del node.groups[group.name]
                    dropped += 1
            items = node.sockets.items
            for fd in [f for f, s in items.items() if now - s.seen > limit]:
                del items[fd]
                dropped += 1
            aggregate = node.sockets.aggregate
            if aggregate is not None and now - aggregate.seen > limit:
                node.sockets.aggregate = None
            if node.degraded is not None and now - node.degraded.seen > limit:
                node.degraded = None
        return dropped

    def stale(self, node: Node, now: float) -> float | None:
        """Seconds since the node last spoke, when that is longer than its timeout."""
        limit = self.timeout_for(node) or self.process_timeout
        age = now - node.last_seen
        return age if limit > 0 and age > limit else None


class SortKey(enum.Enum):
    """What watchers and processes are ordered by; numbers go biggest first."""

    CPU = "cpu"
    MEM = "mem"
    AGE = "age"
    NAME = "name"


@dataclass(frozen=True)
class View:
    """What the operator chose to see: order, filter, nodes, selection and drill-down."""

    sort: SortKey = SortKey.CPU
    reverse: bool = False
    filter: str = ""
    nodes: frozenset[str] = frozenset()          # empty: every node
    selected: tuple[str, str] | None = None      # (node, watcher) under the cursor
    detail: tuple[str, str] | None = None        # (node, watcher) drilled into
    node_filter: str = ""                        # only nodes whose name contains it
    pool: bool = False                           # one list of the pool's watchers, sorted

    def sorted_by(self, key: SortKey) -> "View":
        """Choose a sort key; choosing the current one again reverses the order."""
        if key is self.sort:
            return replace(self, reverse=not self.reverse)
        return replace(self, sort=key, reverse=False)

    def shows_node(self, name: str) -> bool:
        return ((not self.nodes or name in self.nodes)
                and self.node_filter.lower() in name.lower())

    def shows_group(self, name: str) -> bool:
        return self.filter.lower() in name.lower()


def group_value(group: Group, key: SortKey) -> float | None:
    """A watcher's CPU (mean), MEM (sum) or AGE (max): its aggregate's, else from its processes."""
    field_name = {SortKey.CPU: "cpu", SortKey.MEM: "mem", SortKey.AGE: "age"}.get(key)
    if field_name is None:
        return None
    if group.aggregate is not None:
        value = number(group.aggregate.data.get(field_name))
        if value is not None:
            return value
    values = [v for s in group.processes.values() if (v := number(s.data.get(field_name))) is not None]
    if not values:
        return None
    if key is SortKey.CPU:
        return sum(values) / len(values)
    return sum(values) if key is SortKey.MEM else max(values)


def _order(items: Iterable[Any], value: Any, name: Any, view: View) -> list[Any]:
    """Sort by the view's key, biggest first (smallest with ``reverse``); "N/A" always last."""
    items = list(items)
    if view.sort is SortKey.NAME:
        return sorted(items, key=name, reverse=view.reverse)
    known = [i for i in items if value(i) is not None]
    unknown = sorted((i for i in items if value(i) is None), key=name)
    sign = 1 if view.reverse else -1
    known.sort(key=lambda i: (sign * value(i), name(i)))
    return known + unknown


def _is_helper_copy(node: Node, group: Group) -> bool:
    """True for a ``circusd-stats`` watcher whose pids the circus group already shows."""
    circus = node.groups.get(CIRCUS)
    if group.name not in _HELPERS or circus is None:
        return False
    return bool(group.processes) and set(group.processes) <= set(circus.processes)


def group_trouble(group: Group) -> str | None:
    """The watcher's trouble (fatal, exited, backoff) as its last aggregate says, or None."""
    return in_trouble(group.aggregate.data) if group.aggregate is not None else None


def visible_groups(node: Node, view: View) -> list[Group]:
    """The node's watchers passing the filter: those in trouble first (worst first), then the
    others, each part in the view's order; then the circus group."""
    groups = [g for g in node.groups.values()
              if view.shows_group(g.name) and not _is_helper_copy(node, g)]
    watchers = _order([g for g in groups if g.name != CIRCUS],
                      lambda g: group_value(g, view.sort), lambda g: g.name, view)
    rank = {g.name: TROUBLE_ORDER.get(group_trouble(g) or "", len(TROUBLE_ORDER))
            for g in watchers}
    watchers.sort(key=lambda g: rank[g.name])          # stable: the view's order within
    return watchers + [g for g in groups if g.name == CIRCUS]


def ordered_processes(group: Group, view: View) -> list[Sample]:
    """A group's processes in the view's order (by pid for NAME)."""
    key = view.sort.value
    return _order(group.processes.values(),
                  lambda s: number(s.data.get(key)) if key != "name" else None,
                  lambda s: int(s.data.get("pid", 0)) if isinstance(s.data.get("pid"), int) else 0,
                  view)


def node_names(model: Model, view: View) -> list[str]:
    """The nodes the view shows, in natural order."""
    return sorted((n for n in model.nodes if view.shows_node(n)), key=natural_key)


def pool_groups(model: Model, view: View) -> list[tuple[Node, Group]]:
    """Every shown node's watchers (and circus groups) passing the filter, as one list: those
    in trouble first (worst first), then the others in the view's order across the pool (the
    busiest of the pool first); by name, a watcher's nodes together, in natural order."""
    items = []
    for name in node_names(model, view):
        node = model.nodes[name]
        items += [(node, g) for g in node.groups.values()
                  if view.shows_group(g.name) and not _is_helper_copy(node, g)]
    ordered = _order(items, lambda i: group_value(i[1], view.sort),
                     lambda i: (i[1].name, natural_key(i[0].name)), view)
    rank = {id(i): TROUBLE_ORDER.get(group_trouble(i[1]) or "", len(TROUBLE_ORDER))
            for i in ordered}
    ordered.sort(key=lambda i: rank[id(i)])            # stable: the view's order within
    return ordered
