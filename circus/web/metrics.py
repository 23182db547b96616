"""``/metrics`` for the whole pool, in the Prometheus text format.

The same series as circusd-stats' own ``/metrics`` (:mod:`circus.stats.prometheus`), for every
node at once, from what circushttpd already follows: the latest samples of each node's stats
stream, and one ``processes`` call per node at scrape time (circusd answers it from its own
records, without sampling). A node that did not answer has ``circus_node_up 0``.
"""
from __future__ import annotations

import time
from typing import Any, Iterable, Mapping

from prometheus_client import generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector, CollectorRegistry

from circus.stats.prometheus import SnapshotCollector
from circus.stats.streamer import Snapshot

from .live import LiveState

__all__ = ["render_metrics", "snapshots", "CONTENT_TYPE"]

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def snapshots(state: LiveState, records: Mapping[str, Mapping[str, Any]],
              nodes: Iterable[str], now: float | None = None) -> list[Snapshot]:
    """One :class:`Snapshot` per node that has published stats."""
    now = time.time() if now is None else now
    out = []
    for node in nodes:
        if node not in state.last_stats:
            continue
        processes: dict[str, dict[int, dict]] = {}
        for (n, watcher), _ in list(state.processes.items()):
            if n == node:
                processes[watcher] = state.process_samples(node, watcher, now)
        sockets = [{**s, "fd": fd} for fd, s in state.node_sockets(node).items()]
        out.append(Snapshot(node, processes, {}, dict(state.nodes.get(node, {})), sockets,
                            dict(records.get(node, {}))))
    return out


class _Pool(Collector):
    def __init__(self, snaps: list[Snapshot], up: Mapping[str, bool]) -> None:
        self.snaps, self.up = snaps, up

    def collect(self) -> Iterable[Any]:
        node_up = GaugeMetricFamily("circus_node_up", "1 if the node answered circushttpd",
                                    labels=["node"])
        for node, ok in self.up.items():
            node_up.add_metric([node], 1.0 if ok else 0.0)
        yield node_up
        merged: dict[str, Any] = {}
        for snap in self.snaps:
            collector = SnapshotCollector()
            collector.update(snap)
            for family in collector.collect():
                if family.name in merged:
                    merged[family.name].samples.extend(family.samples)
                else:
                    merged[family.name] = family
        yield from merged.values()


def render_metrics(state: LiveState, records: Mapping[str, Mapping[str, Any]],
                   up: Mapping[str, bool]) -> bytes:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Pool(snapshots(state, records, up), up))
    return generate_latest(registry)
