"""``/metrics`` in the Prometheus text format, served by circusd-stats from its latest sample.

A scrape never samples anything: it renders the last :class:`~circus.stats.streamer.Snapshot`
(psutil numbers from the stats sample, states, readiness, restarts and exit codes from circusd's
``processes`` reply taken in the same round). So a scrape costs circusd nothing, and scraping
more often than ``stats_interval`` only repeats the same values.

Labels: ``node`` and ``watcher`` everywhere, ``pid`` (and ``wid``, the worker slot) on process
series. A restarted process is a new ``pid`` series; counters that must survive restarts
(restarts, exits) are per watcher.
"""
from __future__ import annotations

import logging
from typing import Any, Iterator

from prometheus_client import start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector, CollectorRegistry

from circus.config.convert import parse_host_port
from circus.stats.streamer import Snapshot

__all__ = ["SnapshotCollector", "serve"]

log = logging.getLogger("circus.stats")

PROCESS_STATES = ("stopped", "starting", "running", "backoff", "stopping", "exited", "fatal")
WATCHER_STATES = ("stopped", "starting", "active", "stopping", "fatal")

_PROCESS_GAUGES = (
    ("cpu_percent", "cpu", "CPU use since the previous sample, % of one core"),
    ("memory_percent", "mem", "resident memory, % of the machine's memory"),
    ("resident_memory_bytes", "rss", "resident set size"),
    ("virtual_memory_bytes", "vms", "virtual memory size"),
    ("open_fds", "num_fds", "open file descriptors"),
    ("threads", "num_threads", "threads"),
    ("uptime_seconds", "age", "seconds since the process started"),
)


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value)


class SnapshotCollector(Collector):
    """Renders the snapshot it was last given; ``update`` is called by the streamer."""

    def __init__(self) -> None:
        self.snapshot: Snapshot | None = None

    def update(self, snapshot: Snapshot) -> None:
        self.snapshot = snapshot            # one reference swap: the scrape thread sees either

    def collect(self) -> Iterator[Any]:
        snap = self.snapshot
        up = GaugeMetricFamily("circus_stats_up", "1 once circusd-stats has sampled the node",
                               labels=["node"])
        up.add_metric([snap.node if snap else ""], 1.0 if snap else 0.0)
        yield up
        if snap is None:
            return
        yield from self._processes(snap)
        yield from self._watchers(snap)
        yield from self._node(snap)
        yield from self._sockets(snap)

    def _processes(self, snap: Snapshot) -> Iterator[Any]:
        wids = {(w, p["pid"]): p for w, rec in snap.records.items()
                for p in rec.get("processes", ()) if p.get("pid")}
        labels = ["node", "watcher", "pid", "wid"]
        families = {key: GaugeMetricFamily(f"circus_process_{name}", doc, labels=labels)
                    for name, key, doc in _PROCESS_GAUGES}
        ready = GaugeMetricFamily("circus_process_ready", "1 if the process passed its "
                                  "readiness check (or has none), else 0", labels=labels)
        state = GaugeMetricFamily("circus_process_state", "1 for the process's current state",
                                  labels=[*labels, "state"])
        for watcher, infos in snap.processes.items():
            for pid, info in infos.items():
                rec = wids.get((watcher, pid), {})
                values = [snap.node, watcher, str(pid), str(rec.get("wid", ""))]
                for _, key, _ in _PROCESS_GAUGES:
                    number = _number(info.get(key))
                    if number is not None:
                        families[key].add_metric(values, number)
                if rec:
                    ready.add_metric(values, 1.0 if rec.get("ready") else 0.0)
                    for name in PROCESS_STATES:
                        state.add_metric([*values, name], 1.0 if rec.get("state") == name else 0.0)
        yield from families.values()
        yield ready
        yield state

    def _watchers(self, snap: Snapshot) -> Iterator[Any]:
        labels = ["node", "watcher"]
        cpu = GaugeMetricFamily("circus_watcher_cpu_percent", "CPU use of the watcher's "
                                "processes, summed, % of one core", labels=labels)
        rss = GaugeMetricFamily("circus_watcher_resident_memory_bytes", "resident memory of the "
                                "watcher's processes, summed", labels=labels)
        running = GaugeMetricFamily("circus_watcher_processes", "processes alive", labels=labels)
        desired = GaugeMetricFamily("circus_watcher_desired_processes", "numprocesses",
                                    labels=labels)
        restarts = CounterMetricFamily("circus_watcher_restarts", "processes respawned after an "
                                       "exit since circusd started", labels=labels)
        exits = CounterMetricFamily("circus_watcher_exits", "process exits by exit code "
                                    "(negative: killed by that signal)", labels=[*labels, "code"])
        state = GaugeMetricFamily("circus_watcher_state", "1 for the watcher's current state",
                                  labels=[*labels, "state"])
        for watcher, infos in snap.processes.items():
            values = [snap.node, watcher]
            cpu.add_metric(values, sum(_number(i.get("cpu")) or 0.0 for i in infos.values()))
            rss.add_metric(values, sum(_number(i.get("rss")) or 0.0 for i in infos.values()))
        for watcher, rec in snap.records.items():
            values = [snap.node, watcher]
            alive = [p for p in rec.get("processes", ()) if p.get("pid")]
            running.add_metric(values, float(len(alive)))
            desired.add_metric(values, float(rec.get("numprocesses", 0)))
            restarts.add_metric(values, float(rec.get("restarts", 0)))
            for code, count in rec.get("exits", {}).items():
                exits.add_metric([*values, str(code)], float(count))
            for name in WATCHER_STATES:
                state.add_metric([*values, name], 1.0 if rec.get("state") == name else 0.0)
        yield from (cpu, rss, running, desired, restarts, exits, state)

    def _node(self, snap: Snapshot) -> Iterator[Any]:
        view, node = snap.node_view, [snap.node]
        load = GaugeMetricFamily("circus_node_load", "load average", labels=["node", "period"])
        for period, value in zip(("1m", "5m", "15m"), view.get("load", ())):
            load.add_metric([*node, period], float(value))
        yield load
        for name, key, doc in (("cpu_percent", "cpu", "machine CPU use, %"),
                               ("memory_used_bytes", "mem_used", "memory in use"),
                               ("memory_total_bytes", "mem_total", "memory installed"),
                               ("processes", "processes", "processes on the machine")):
            family = GaugeMetricFamily(f"circus_node_{name}", doc, labels=["node"])
            number = _number(view.get(key))
            if number is not None:
                family.add_metric(node, number)
            yield family
        disk = GaugeMetricFamily("circus_node_disk_used_ratio", "use of the filesystems holding "
                                 "the working directories", labels=["node", "path"])
        for path, usage in view.get("disk", {}).items():
            disk.add_metric([*node, path], usage["percent"] / 100.0)
        yield disk

    def _sockets(self, snap: Snapshot) -> Iterator[Any]:
        labels = ["node", "socket", "address"]
        queue = GaugeMetricFamily("circus_socket_accept_queue", "connections waiting to be "
                                  "accepted", labels=labels)
        conns = GaugeMetricFamily("circus_socket_connections", "connections being served",
                                  labels=labels)
        for sock in snap.sockets:
            values = [snap.node, str(sock.get("name")), str(sock.get("address"))]
            if _number(sock.get("queue")) is not None:
                queue.add_metric(values, float(sock["queue"]))
            if _number(sock.get("connections")) is not None:
                conns.add_metric(values, float(sock["connections"]))
        yield queue
        yield conns


def serve(address: str, collector: SnapshotCollector) -> tuple[str, int]:
    """Serve ``/metrics`` on ``HOST:PORT`` in a daemon thread; return the bound address."""
    host, port = parse_host_port(address)
    registry = CollectorRegistry(auto_describe=False)
    registry.register(collector)
    server, _ = start_http_server(port, addr=host, registry=registry)
    bound = server.server_address
    log.info("circusd-stats: /metrics on http://%s:%d/metrics", host, bound[1])
    return host, int(bound[1])
