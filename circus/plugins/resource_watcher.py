"""``ResourceWatcher``: restart a watcher (or signal a child) that keeps using too much, or too
little, CPU or memory.

Every ``loop_rate`` seconds (default 60) it calls ``stats`` for ``watcher`` and checks each
process against the limits; a check that fails ``max_count`` + 1 times in a row (default 3 + 1:
a passing sample resets it) triggers the action:

* without ``process_children``: the watcher's processes are checked and the watcher is
  restarted (``restart``);
* with ``process_children = true``: the *children* of the watcher's processes are checked one by
  one, and a failing child gets ``child_signal`` (default 15, SIGTERM) through ``signal``'s
  ``childpid`` property — that child only (0.19 sent a property the command ignored, and so
  signalled the watcher's processes themselves).

Limits: ``max_cpu`` (90, %), ``min_cpu`` (unset), ``max_mem`` (90), ``min_mem`` (unset) — a bare
number is a percentage of RAM, a number with a unit (``200M``, ``1.5G``, ``512KB``) a resident
size in bytes, for ``min_mem`` too (0.19 read a ``min_mem`` with a unit as a percentage) —
and ``health_threshold`` (75): the mean of a process's CPU % and memory % may not exceed it.

Each failed check counts ``_resource_watcher.<watcher>.over_cpu`` (``under_cpu``,
``over_memory``, ``under_memory``, ``over_health``) on statsd (``host``, ``port``,
``sample_rate``, ``application_name`` as for the statsd plugins), each action ``restarting``,
each failed ``stats`` call ``error``. CPU % is measured between two samples, so a process's
first sample reads 0.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Hashable, Iterable, Mapping

from circus.plugins.options import (Amount, PluginConfigError, get_amount, get_bool, get_float,
                                    get_int, get_signal, get_str)
from circus.plugins.statsd import BaseObserver

__all__ = ["ResourceWatcher", "Limits", "Usage", "Counters", "CHECKS"]

log = logging.getLogger("circus")

#: the checks, in the order they are reported
CHECKS = ("over_cpu", "under_cpu", "over_memory", "under_memory", "over_health")


@dataclass(frozen=True)
class Usage:
    """What one process uses: CPU %, memory % of RAM, resident bytes."""

    cpu: float
    mem: float
    rss: float

    @classmethod
    def from_info(cls, info: Mapping[str, Any]) -> "Usage | None":
        """From a ``stats`` process info; ``None`` when a value is missing ("N/A")."""
        values = [info.get(k) for k in ("cpu", "mem", "rss")]
        if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
            return None
        return cls(*(float(v) for v in values))  # type: ignore[arg-type]


@dataclass(frozen=True)
class Limits:
    max_cpu: float | None = 90.0
    min_cpu: float | None = None
    max_mem: Amount | None = Amount(90.0, is_bytes=False)
    min_mem: Amount | None = None
    health_threshold: float | None = 75.0

    @classmethod
    def from_config(cls, config: Mapping[str, str], plugin: str) -> "Limits":
        return cls(max_cpu=get_float(config, "max_cpu", 90.0, plugin),
                   min_cpu=get_float(config, "min_cpu", None, plugin),
                   max_mem=get_amount(config, "max_mem", "90", plugin),
                   min_mem=get_amount(config, "min_mem", None, plugin),
                   health_threshold=get_float(config, "health_threshold", 75.0, plugin))

    def failed(self, usage: Usage) -> set[str]:
        """The checks ``usage`` fails."""
        out = set()
        if self.max_cpu is not None and usage.cpu > self.max_cpu:
            out.add("over_cpu")
        if self.min_cpu is not None and usage.cpu < self.min_cpu:
            out.add("under_cpu")
        if self.max_mem is not None and self.max_mem.exceeded_by(usage.mem, usage.rss):
            out.add("over_memory")
        if self.min_mem is not None and self.min_mem.undercut_by(usage.mem, usage.rss):
            out.add("under_memory")
        if self.health_threshold is not None and (usage.cpu + usage.mem) / 2 > self.health_threshold:
            out.add("over_health")
        return out


class Counters:
    """Consecutive failures per subject (the watcher, or a child pid) and check. Pure."""

    def __init__(self) -> None:
        self.counts: dict[Hashable, dict[str, int]] = {}

    def record(self, subject: Hashable, failed: Iterable[str]) -> dict[str, int]:
        """Count one sample: a failed check goes up by one, a passed one back to 0."""
        failed = set(failed)
        counts = self.counts.setdefault(subject, dict.fromkeys(CHECKS, 0))
        for check in CHECKS:
            counts[check] = counts[check] + 1 if check in failed else 0
        return counts

    def exceeded(self, subject: Hashable, max_count: int) -> list[str]:
        counts = self.counts.get(subject, {})
        return [check for check in CHECKS if counts.get(check, 0) > max_count]

    def reset(self, subject: Hashable) -> None:
        self.counts.pop(subject, None)

    def keep(self, subjects: Iterable[Hashable]) -> None:
        """Forget the subjects not in ``subjects`` (children that are gone)."""
        alive = set(subjects)
        for subject in [s for s in self.counts if s not in alive]:
            del self.counts[subject]


def _int(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


class ResourceWatcher(BaseObserver):
    name = "resource_watcher"

    def __init__(self, endpoint: str, pubsub_endpoint: str, check_delay: float | str,
                 ssh_server: str | None = None, **config: Any) -> None:
        super().__init__(endpoint, pubsub_endpoint, check_delay, ssh_server, **config)
        watcher = get_str(self.config, "watcher") or get_str(self.config, "service")
        if not watcher:
            raise PluginConfigError(f"plugin {self.name}: option 'watcher' is required (the "
                                    "watcher whose processes are checked)")
        self.watcher = watcher
        self.limits = Limits.from_config(self.config, self.name)
        self.max_count = get_int(self.config, "max_count", 3, self.name, minimum=0)
        self.process_children = get_bool(self.config, "process_children", False, self.name)
        self.child_signal = get_signal(self.config, "child_signal", 15, self.name)
        self.counters = Counters()

    def _count(self, failed: Iterable[str]) -> None:
        for check in sorted(failed):
            self.statsd.increment(f"_resource_watcher.{self.watcher}.{check}")

    async def look_after(self) -> None:
        reply = await self.run_command("stats", name=self.watcher)
        info = reply.get("info") if reply is not None else None
        if not isinstance(info, dict):
            self.statsd.increment(f"_resource_watcher.{self.watcher}.error")
            return
        if self.process_children:
            await self._check_children(info)
        else:
            await self._check_processes(info)

    async def _check_processes(self, info: Mapping[str, Any]) -> None:
        usages = [u for u in (Usage.from_info(i) for i in info.values() if isinstance(i, dict)) if u]
        if not usages:
            return
        failed = set().union(*(self.limits.failed(u) for u in usages))
        self._count(failed)
        self.counters.record(self.watcher, failed)
        exceeded = self.counters.exceeded(self.watcher, self.max_count)
        if exceeded:
            log.warning("plugin %s: %s failed %s more than %d times in a row: restarting it",
                        self.name, self.watcher, ", ".join(exceeded), self.max_count)
            self.statsd.increment(f"_resource_watcher.{self.watcher}.restarting")
            self.counters.reset(self.watcher)
            await self.run_command("restart", name=self.watcher)

    async def _check_children(self, info: Mapping[str, Any]) -> None:
        seen = []
        for parent_key, process in info.items():
            parent = _int(parent_key)
            if parent is None or not isinstance(process, dict):
                continue
            for child in process.get("children") or ():
                pid = _int(child.get("pid")) if isinstance(child, dict) else None
                usage = Usage.from_info(child) if pid is not None else None
                if usage is None:
                    continue
                seen.append(pid)
                failed = self.limits.failed(usage)
                self._count(failed)
                self.counters.record(pid, failed)
                exceeded = self.counters.exceeded(pid, self.max_count)
                if exceeded:
                    log.warning("plugin %s: child %d of %s's process %d failed %s more than %d "
                                "times in a row: sending it signal %d", self.name, pid,
                                self.watcher, parent, ", ".join(exceeded), self.max_count,
                                self.child_signal)
                    self.statsd.increment(f"_resource_watcher.{self.watcher}.restarting")
                    self.counters.reset(pid)
                    await self.run_command("signal", name=self.watcher, pid=parent, childpid=pid,
                                           signum=self.child_signal)
        self.counters.keep(seen)
