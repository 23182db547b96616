"""The pool's watchers as one: a row per watcher name across the nodes that run it (pure).

From each node's ``processes`` reply (``{watcher: {state, numprocesses, trouble, reason,
processes: [{pid, ...}]}}``), for the nodes in view::

    rows = watcher_rows({"web1": records1, "web2": records2}, ["web1", "web2"])
    -> [{"key": "api", "name": "api", "count": 2, "alive": 3, "wanted": 4, "unhealthy": 1,
         "tone": "warn", "entries": [{"node": "web2", "alive": 1, "wanted": 2,
                                      "state": "active", "trouble": "backoff", "reason": ...},
                                     {"node": "web1", ...}]}]

- ``count``: the nodes that have the watcher; ``alive``: their processes with a pid, summed;
  ``wanted``: their ``numprocesses``, summed;
- ``unhealthy``: on how many of those nodes it is in trouble (fatal, backoff, exited: circusd's
  ``trouble``, or a ``fatal`` state from a circusd that does not say ``trouble``);
- ``tone``: ``bad`` when it is fatal somewhere, ``warn`` when it is in backoff or exited
  somewhere, else ``ok``;
- ``entries``: each node's part, the troubled first (worst first), then in natural order
  (``node2`` before ``node10``).

Watcher names are grouped without regard to case (``Web`` and ``web`` are one row, as rolling
operations find them); the row's name is the spelling most nodes use. Nodes that did not answer
are not in ``records``: what they run is unknown, and the page says so apart.
"""
from __future__ import annotations

import re
from collections import Counter
from typing import Any, Iterable, Mapping, Sequence

from .badges import TROUBLES, watcher_badge

__all__ = ["entry", "watcher_rows", "row_for", "row_changes", "filter_rows", "sort_rows", "natural_key",
           "trouble_of", "SORT_KEYS", "row_tone"]

#: the columns a table can be sorted by, and whether each sorts high values first by default
SORT_KEYS = {"name": False, "nodes": True, "alive": True, "wanted": True, "unhealthy": True}
_ORDER = {t: i for i, t in enumerate(TROUBLES)}


def natural_key(text: str) -> tuple[Any, ...]:
    """``node2`` before ``node10``: digits compare as numbers, the rest without case."""
    return tuple(int(part) if part.isdigit() else part.lower()
                 for part in re.split(r"(\d+)", str(text)) if part != "")


def trouble_of(record: Mapping[str, Any] | None,
               detail: Mapping[str, Any] | None = None) -> str | None:
    """A watcher's ``trouble`` from its ``processes`` record or its ``status`` detail; a fatal
    state counts (a circusd without ``trouble`` still says ``fatal``)."""
    for source in (record or {}, detail or {}):
        kind = source.get("trouble")
        if kind in TROUBLES:
            return str(kind)
    if (record or {}).get("state") == "fatal" or (detail or {}).get("state") == "fatal":
        return "fatal"
    return None


def _count(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else 0


def entry(node: str, record: Mapping[str, Any]) -> dict[str, Any]:
    """One node's part of a row: its processes alive and wanted, state, trouble, reason, and
    the tone of its badge (:func:`.badges.watcher_badge`)."""
    processes = record.get("processes")
    alive = sum(1 for p in processes if isinstance(p, Mapping) and p.get("pid")) \
        if isinstance(processes, list) else 0
    state, trouble = str(record.get("state") or "unknown"), trouble_of(record)
    reason = str(record.get("reason") or "")
    return {"node": node, "alive": alive, "wanted": _count(record.get("numprocesses")),
            "state": state, "trouble": trouble, "reason": reason,
            "tone": watcher_badge(state, trouble, reason).tone}


def row_tone(entries: Iterable[Mapping[str, Any]]) -> str:
    troubles = {e.get("trouble") for e in entries}
    if "fatal" in troubles:
        return "bad"
    return "warn" if troubles & {"backoff", "exited"} else "ok"


def _entry_order(e: Mapping[str, Any]) -> tuple[Any, ...]:
    return (_ORDER.get(e.get("trouble") or "", len(_ORDER)), natural_key(e["node"]))


def row_for(key: str, entries: Sequence[Mapping[str, Any]], names: Iterable[str]) -> dict:
    """The row of watcher ``key`` (its name in lower case) from its nodes' entries; ``names``:
    how each node spells it (the most common spelling names the row)."""
    spelled = Counter(names).most_common()
    ordered = sorted(entries, key=_entry_order)
    return {"key": key, "name": min((n for n, c in spelled if c == spelled[0][1]),
                                    key=natural_key) if spelled else key,
            "count": len(ordered), "alive": sum(e["alive"] for e in ordered),
            "wanted": sum(e["wanted"] for e in ordered),
            "unhealthy": sum(1 for e in ordered if e.get("trouble")),
            "tone": row_tone(ordered), "entries": [dict(e) for e in ordered]}


def watcher_rows(records: Mapping[str, Mapping[str, Any]], nodes: Sequence[str],
                 keys: Iterable[str] | None = None) -> list[dict[str, Any]]:
    """A row per watcher name over ``nodes`` (those without records are skipped), in natural
    order of the names; ``keys``: only these watchers (names in lower case)."""
    wanted = None if keys is None else set(keys)
    parts: dict[str, list[dict[str, Any]]] = {}
    spellings: dict[str, list[str]] = {}
    for node in nodes:
        for name, record in (records.get(node) or {}).items():
            key = str(name).lower()
            if (wanted is not None and key not in wanted) or not isinstance(record, Mapping):
                continue
            parts.setdefault(key, []).append(entry(node, record))
            spellings.setdefault(key, []).append(str(name))
    rows = [row_for(key, parts[key], spellings[key]) for key in parts]
    return sorted(rows, key=lambda r: natural_key(r["name"]))


def row_changes(records: Mapping[str, Mapping[str, Any]], nodes: Sequence[str],
                changed: Mapping[str, Iterable[str]]) -> tuple[list[dict[str, Any]], list[str]]:
    """What the watchers ``changed`` (``{key: nodes whose part changed}``) look like now over
    ``nodes``: ``(rows, gone)``. Each row has the totals, ``entries``: ``{node: entry or None}``
    for the changed nodes in view only (None: the watcher is no longer there), and
    ``troubled``: every entry in trouble, worst first. ``gone``: watchers no node in view has
    any more. A watcher changed only on nodes out of view is left out."""
    inview = set(nodes)
    rows, gone = [], []
    for key in sorted(changed, key=natural_key):
        touched = sorted({n for n in changed[key] if n in inview}, key=natural_key)
        if not touched:
            continue
        found = watcher_rows(records, nodes, keys=[key])
        if not found:
            gone.append(key)
            continue
        row = found[0]
        by_node = {e["node"]: e for e in row["entries"]}
        rows.append({**{k: v for k, v in row.items() if k != "entries"},
                     "entries": {n: by_node.get(n) for n in touched},
                     "troubled": [e for e in row["entries"] if e.get("trouble")]})
    return rows, gone


def filter_rows(rows: Iterable[Mapping[str, Any]], name: str = "") -> list[Mapping[str, Any]]:
    """The rows whose name contains ``name`` (no regard to case; empty: all)."""
    needle = name.strip().lower()
    return [r for r in rows if needle in r["key"]]


def sort_rows(rows: Iterable[Mapping[str, Any]], by: str = "name",
              descending: bool | None = None) -> list[Mapping[str, Any]]:
    """Sorted by a column of :data:`SORT_KEYS` (ties by name, in natural order); a number
    column sorts high values first unless ``descending`` says otherwise."""
    if by not in SORT_KEYS:
        raise ValueError(f"cannot sort by {by!r}: one of {', '.join(SORT_KEYS)}")
    desc = SORT_KEYS[by] if descending is None else descending
    ordered = sorted(rows, key=lambda r: natural_key(r["name"]))
    if by == "name":
        return ordered[::-1] if desc else ordered
    field = "count" if by == "nodes" else by
    return sorted(ordered, key=lambda r: r[field], reverse=desc)
