"""The machine view published as ``<node>/stat.node``: what a pool tool compares nodes by.

Load average, CPU % since the previous sample, memory, the disks holding the processes' working
directories (one entry per filesystem), and how many processes the system and circusd run.
"""
from __future__ import annotations

import os
import time
from typing import Any, Iterable

import psutil

__all__ = ["NodeSampler", "working_dir"]


def working_dir(pid: int) -> str | None:
    try:
        return os.readlink(f"/proc/{pid}/cwd")
    except OSError:
        return None


def _system_processes() -> int:
    try:
        return sum(1 for name in os.listdir("/proc") if name.isdigit())
    except OSError:
        return len(psutil.pids())


class NodeSampler:
    def __init__(self) -> None:
        psutil.cpu_percent(interval=None)            # the first call only starts the measure
        self._cwd: dict[int, str | None] = {}

    def sample(self, node: str, pids: Iterable[int], watchers: int) -> dict[str, Any]:
        pids = list(pids)
        for pid in pids:
            if pid not in self._cwd:
                self._cwd[pid] = working_dir(pid)
        alive = set(pids)
        for pid in [p for p in self._cwd if p not in alive]:
            del self._cwd[pid]
        mem = psutil.virtual_memory()
        try:
            load = [round(x, 2) for x in os.getloadavg()]
        except OSError:
            load = [0.0, 0.0, 0.0]
        return {
            "node": node, "time": time.time(), "load": load,
            "cpu": psutil.cpu_percent(interval=None), "cpu_count": psutil.cpu_count() or 1,
            "mem_used": mem.total - mem.available, "mem_total": mem.total,
            "mem_percent": mem.percent, "disk": self._disks(),
            "processes": _system_processes(), "watchers": watchers, "circus_processes": len(pids),
        }

    def _disks(self) -> dict[str, dict[str, Any]]:
        """Usage of each filesystem holding a working directory, keyed by the first such
        directory (sorted), so a node with every process in /srv shows one entry."""
        out: dict[str, dict[str, Any]] = {}
        devices: set[int] = set()
        for path in sorted({p for p in self._cwd.values() if p}):
            try:
                device = os.stat(path).st_dev
                if device in devices:
                    continue
                usage = psutil.disk_usage(path)
            except OSError:
                continue
            devices.add(device)
            out[path] = {"used": usage.used, "total": usage.total, "percent": usage.percent}
        return out
