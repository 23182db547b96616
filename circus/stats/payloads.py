"""The stats stream's topics and payloads (pure: no sockets, no clock, no psutil).

Every topic starts with the node name so one subscriber can follow one node or a whole pool the
same way (subscribe to ``web1/stat.`` or to ``""``)::

    <node>/stat.<watcher>.<pid>    one process                      (0.19: stat.<watcher>.<pid>)
    <node>/stat.<watcher>          a watcher's aggregate            (0.19: stat.<watcher>)
    <node>/stat.circus.<pid>       circusd, circusd-stats           (0.19: stat.circus.<pid>)
    <node>/stat.circus             their aggregate
    <node>/stat.sockets.<fd>       one listening socket             (0.19: stat.sockets.<fd>)
    <node>/stat.sockets            all of them
    <node>/stat.node               the machine: load, CPU, memory, disks   (new)

:func:`legacy_topic` gives 0.19's unprefixed topic; the node view has none (a 0.19 subscriber
would read it as a watcher called "node"). :func:`wanted_forms` says which of the two forms the
current subscriptions want (the stats socket is an XPUB that sees them): a form nobody is
subscribed to is not published.

New fields (a 0.19 subscriber ignores them): a watcher's aggregate carries its state as circusd's
``processes`` reply tells it (:func:`watcher_state`: ``state``, ``trouble``, ``reason``,
``wanted``, ``restarts``), each process its ``state`` (``running``, ``starting``...), the node
view the node's own count of processes and of watchers in trouble: circus-top shows trouble
without asking the node anything more.
"""
from __future__ import annotations

from typing import Any, Iterable, Mapping

__all__ = ["prefix", "process_topic", "watcher_topic", "socket_topic", "node_topic",
           "legacy_topic", "wanted_forms", "LEGACY_PREFIX", "process_payload", "aggregate",
           "sockets_aggregate", "split_topic", "watcher_state", "process_states", "node_counts"]

_SUMMED = ("rss", "vms", "num_fds", "num_threads")


def prefix(node: str) -> str:
    return f"{node}/stat."


def process_topic(node: str, watcher: str, pid: int) -> str:
    return f"{node}/stat.{watcher}.{pid}"


def watcher_topic(node: str, watcher: str) -> str:
    return f"{node}/stat.{watcher}"


def socket_topic(node: str, fd: int | None = None) -> str:
    return f"{node}/stat.sockets" if fd is None else f"{node}/stat.sockets.{fd}"


def node_topic(node: str) -> str:
    return f"{node}/stat.node"


def legacy_topic(topic: str) -> str | None:
    """0.19's topic for a prefixed one (None for the node view, which 0.19 did not have)."""
    _, sep, rest = topic.partition("/")
    if not sep or rest == "stat.node":
        return None
    return rest


#: what every 0.19 topic starts with (0.19's clients subscribe to it)
LEGACY_PREFIX = "stat."


def _overlaps(subscription: str, prefix: str) -> bool:
    """True when a subscriber to ``subscription`` receives some topic starting with ``prefix``."""
    return prefix.startswith(subscription) or subscription.startswith(prefix)


def wanted_forms(subscriptions: Iterable[str], node: str) -> tuple[bool, bool]:
    """``(prefixed, legacy)``: is somebody subscribed to a topic of the node-prefixed form
    (``<node>/stat....``), to one of 0.19's form (``stat....``)?

    The empty subscription (everything: circusmeta's proxy, the dashboard, circus-top) counts for
    the prefixed form only: the tools that subscribe to everything are ours and read the node's
    name from the topic; 0.19's clients subscribe to ``stat.``. A subscription such as ``s`` or
    ``stat.web`` wants 0.19's form; ``web1/`` or ``web1/stat.web`` the prefixed one of ``web1``.
    """
    prefixed = legacy = False
    own = prefix(node)
    for sub in subscriptions:
        prefixed = prefixed or _overlaps(sub, own)
        legacy = legacy or (sub != "" and _overlaps(sub, LEGACY_PREFIX))
    return prefixed, legacy


def split_topic(topic: str) -> tuple[str, str, str | None] | None:
    """``(node, watcher, pid-or-fd or None)`` of a prefixed topic; None if not one of ours.
    The node view is ``(node, "node", None)``."""
    node, sep, rest = topic.partition("/")
    if not sep or not rest.startswith("stat."):
        return None
    body = rest[len("stat."):]
    watcher, dot, sub = body.rpartition(".")
    if dot and sub.isdigit():
        return node, watcher, sub
    return node, body, None


def process_payload(node: str, watcher: str, info: Mapping[str, Any],
                    name: str | None = None, state: str | None = None) -> dict[str, Any]:
    """A process's sample as published: 0.19's ``subtopic``/``name`` plus node and watcher
    (and its ``state`` when circusd told it)."""
    out = {**info, "node": node, "watcher": watcher, "subtopic": info["pid"], "name": name}
    if state is not None:
        out["state"] = state
    return out


def watcher_state(record: Any) -> dict[str, Any]:
    """The fields a watcher's aggregate gets from its entry of circusd's ``processes`` reply:
    ``state`` (0.19's word), ``trouble`` (fatal, backoff, exited or None), ``reason``,
    ``wanted`` (the numprocesses target) and ``restarts``; nothing for a missing entry."""
    if not isinstance(record, Mapping):
        return {}
    return {"state": record.get("state"), "trouble": record.get("trouble"),
            "reason": record.get("reason") or "", "wanted": record.get("numprocesses"),
            "restarts": record.get("restarts")}


def process_states(records: Mapping[str, Any]) -> dict[int, str]:
    """pid -> state of every live process of a ``processes`` reply's ``watchers``."""
    out: dict[int, str] = {}
    for record in records.values():
        if not isinstance(record, Mapping):
            continue
        for p in record.get("processes") or ():
            if isinstance(p, Mapping) and isinstance(p.get("pid"), int) and p.get("state"):
                out[p["pid"]] = str(p["state"])
    return out


def node_counts(watchers: Mapping[str, Iterable[int]], records: Mapping[str, Any],
                skip: str) -> dict[str, int]:
    """The node view's own counts: ``watcher_processes`` (the watchers' live processes, not the
    machine's) and ``in_trouble`` (watchers whose trouble is set), ``skip`` not counted."""
    troubled = sum(1 for name, rec in records.items()
                   if name != skip and isinstance(rec, Mapping) and rec.get("trouble"))
    return {"watcher_processes": sum(len(list(pids)) for name, pids in watchers.items()
                                     if name != skip),
            "in_trouble": troubled}


def _numbers(values: Iterable[Any]) -> list[float]:
    return [v for v in values if isinstance(v, (int, float)) and not isinstance(v, bool)]


def aggregate(node: str, watcher: str, infos: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """0.19's aggregate (pids, mean CPU, summed memory %, oldest age) plus sums and a count."""
    infos = [i for i in infos if isinstance(i, Mapping)]
    cpus = _numbers(i.get("cpu") for i in infos)
    mems = _numbers(i.get("mem") for i in infos)
    ages = _numbers(i.get("age") for i in infos)
    out: dict[str, Any] = {
        "node": node, "watcher": watcher, "pid": [i["pid"] for i in infos],
        "cpu": round(sum(cpus) / len(cpus), 2) if cpus else 0.0,
        "cpu_sum": round(sum(cpus), 2),
        "mem": round(sum(mems), 3),
        "age": max(ages) if ages else 0.0,
        "numprocesses": len(infos),
    }
    for key in _SUMMED:
        out[key] = sum(int(v) for v in _numbers(i.get(key) for i in infos))
    return out


def sockets_aggregate(node: str, sockets: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """0.19's ``{addresses, reads}`` plus the summed queue and connection counts."""
    sockets = list(sockets)
    out: dict[str, Any] = {"node": node, "addresses": [s["address"] for s in sockets],
                           "reads": sum(int(s.get("reads") or 0) for s in sockets)}
    for key in ("queue", "connections"):
        values = _numbers(s.get(key) for s in sockets)
        out[key] = int(sum(values)) if values else None
    return out
