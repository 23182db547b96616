"""Start and stop order of watchers: dependencies first, then priority. Pure.

``depends_on`` edges must be satisfied: a watcher starts after the watchers it depends on and
stops before them. Among watchers free to go, the higher ``priority`` starts first (0.19's rule),
ties by name. The config loader already refused cycles; a cycle here is a bug and raises.
"""
from __future__ import annotations

from typing import Iterable, Protocol, Sequence

__all__ = ["start_order", "stop_order"]


class _Cfg(Protocol):
    name: str
    priority: int
    depends_on: Sequence[tuple[str, str]]


def start_order(configs: Iterable[_Cfg]) -> list[str]:
    """Lower-cased watcher names in start order."""
    items = {c.name.lower(): c for c in configs}
    deps = {name: {d.lower() for d, _ in c.depends_on if d.lower() in items} for name, c in items.items()}
    order: list[str] = []
    done: set[str] = set()
    while len(order) < len(items):
        free = [n for n in items if n not in done and deps[n] <= done]
        if not free:
            raise ValueError(f"dependency cycle among {sorted(set(items) - done)}")
        nxt = min(free, key=lambda n: (-items[n].priority, n))
        order.append(nxt)
        done.add(nxt)
    return order


def stop_order(configs: Iterable[_Cfg]) -> list[list[str]]:
    """Groups that may stop concurrently, in order: without dependencies, equal priorities
    (lowest first, as 0.19); with dependencies, one at a time in reverse start order."""
    configs = list(configs)
    if any(c.depends_on for c in configs):
        return [[name] for name in reversed(start_order(configs))]
    groups: dict[int, list[str]] = {}
    for c in configs:
        groups.setdefault(c.priority, []).append(c.name.lower())
    return [sorted(groups[p]) for p in sorted(groups)]
