"""Where a new watcher goes: placement strategies over a snapshot of the nodes (pure).

Each strategy ranks the candidate nodes by one number taken from ``nodeinfo`` (ties broken by
name, so a placement is reproducible), and says why in words an operator can check:

- ``round_robin``: fewest watchers;
- ``least_loaded``: lowest 1-minute load average per CPU;
- ``least_memory``: lowest share of memory in use;
- ``fewest_processes``: fewest running processes;
- ``random``: any (from the ``rng`` given, seeded by tests).

``--tag`` restricts the candidates; ``--spread N`` takes the N best distinct nodes.
"""
from __future__ import annotations

import random as _random
from dataclasses import dataclass
from typing import Callable, Iterable, Sequence

from .pool import STRATEGIES

__all__ = ["NodeView", "Choice", "PlacementError", "place", "rank"]


class PlacementError(Exception):
    """No placement is possible (no candidate, not enough nodes for the spread...)."""


@dataclass(frozen=True)
class NodeView:
    name: str
    tags: tuple[str, ...] = ()
    watchers: int = 0
    processes: int = 0
    load1: float = 0.0
    cpu_count: int = 1
    mem_total: int = 0
    mem_available: int = 0

    @property
    def load_per_cpu(self) -> float:
        return self.load1 / max(1, self.cpu_count)

    @property
    def mem_used_ratio(self) -> float:
        return 1.0 - self.mem_available / self.mem_total if self.mem_total else 1.0

    @classmethod
    def from_nodeinfo(cls, name: str, tags: Sequence[str], info: dict) -> "NodeView":
        load = info.get("load") or [0.0]
        return cls(name, tuple(tags), int(info.get("watchers", 0)), int(info.get("processes", 0)),
                   float(load[0]), int(info.get("cpu_count", 1) or 1),
                   int(info.get("mem_total", 0)), int(info.get("mem_available", 0)))


@dataclass(frozen=True)
class Choice:
    node: str
    reason: str


_KEYS: dict[str, tuple[Callable[[NodeView], float], Callable[[NodeView], str]]] = {
    "round_robin": (lambda n: n.watchers, lambda n: f"fewest watchers ({n.watchers})"),
    "least_loaded": (lambda n: n.load_per_cpu,
                     lambda n: f"lowest load per CPU ({n.load1:.2f} on {n.cpu_count} CPUs)"),
    "least_memory": (lambda n: n.mem_used_ratio,
                     lambda n: f"least memory in use ({n.mem_used_ratio:.0%})"),
    "fewest_processes": (lambda n: n.processes,
                         lambda n: f"fewest processes ({n.processes})"),
}


def rank(strategy: str, nodes: Iterable[NodeView],
         rng: _random.Random | None = None) -> list[tuple[NodeView, str]]:
    """The nodes best first, each with the reason of its rank."""
    nodes = sorted(nodes, key=lambda n: n.name)
    if strategy == "random":
        nodes = list(nodes)
        (rng or _random.Random()).shuffle(nodes)
        return [(n, "picked at random") for n in nodes]
    if strategy not in _KEYS:
        raise PlacementError(f"unknown strategy {strategy!r}; one of {', '.join(STRATEGIES)}")
    key, why = _KEYS[strategy]
    return [(n, why(n)) for n in sorted(nodes, key=lambda n: (key(n), n.name))]


def place(strategy: str, nodes: Iterable[NodeView], *, tag: str | None = None, spread: int = 1,
          rng: _random.Random | None = None) -> list[Choice]:
    """``spread`` distinct nodes for a new watcher, best first."""
    if spread < 1:
        raise PlacementError("--spread must be at least 1")
    candidates = [n for n in nodes if tag is None or tag in n.tags]
    if not candidates:
        raise PlacementError(f"no reachable node has tag {tag!r}" if tag else
                             "no reachable node to place the watcher on")
    if spread > len(candidates):
        raise PlacementError(f"--spread {spread} needs {spread} distinct nodes, "
                             f"{len(candidates)} can take it"
                             + (f" (tag {tag!r})" if tag else ""))
    ranked = rank(strategy, candidates, rng)[:spread]
    return [Choice(n.name, f"{strategy}: {reason}") for n, reason in ranked]
