"""Per-process information in Circus 0.19's shape (``stats`` and ``dstats`` commands).

psutil calls can take milliseconds per process: callers run :func:`collect` in a worker thread,
never on the arbiter's event loop.
"""
from __future__ import annotations

import os
import time
from typing import Any, Iterable

import psutil

__all__ = ["process_info", "collect", "NO_SUCH_PROCESS"]

NO_SUCH_PROCESS = "No such process (stopped?)"


def _human(n: float) -> str:
    for unit in ("", "K", "M", "G", "T"):
        if abs(n) < 1024 or unit == "T":
            return f"{n:.0f}" if unit == "" else f"{n:.2f}{unit}"
        n /= 1024
    return str(n)  # pragma: no cover


def _ctime(proc: psutil.Process) -> str:
    t = proc.cpu_times()
    total = t.user + t.system
    minutes, seconds = divmod(total, 60)
    return f"{int(minutes)}:{seconds:05.2f}"


def process_info(proc: psutil.Process, with_children: bool = True) -> dict[str, Any]:
    """0.19's fields plus numeric ``rss``/``vms``/``num_fds``/``num_threads``; "N/A" if denied."""
    info: dict[str, Any] = {"pid": proc.pid}
    with proc.oneshot():
        for key, get in (
            ("cpu", lambda: proc.cpu_percent(interval=None)),
            ("mem", lambda: round(proc.memory_percent(), 3)),
            ("ctime", lambda: _ctime(proc)),
            ("create_time", proc.create_time),
            ("username", proc.username),
            ("nice", proc.nice),
            ("num_threads", proc.num_threads),
            ("num_fds", proc.num_fds),
        ):
            try:
                info[key] = get()
            except psutil.ZombieProcess:
                info[key] = "Zombie" if key == "nice" else "N/A"
            except (psutil.AccessDenied, psutil.NoSuchProcess):
                info[key] = "N/A"
        try:
            mem = proc.memory_info()
            info.update(rss=mem.rss, vms=mem.vms, mem_info1=_human(mem.rss), mem_info2=_human(mem.vms))
        except (psutil.AccessDenied, psutil.NoSuchProcess):
            info.update(rss="N/A", vms="N/A", mem_info1="N/A", mem_info2="N/A")
        try:
            argv = proc.cmdline()
            info["cmdline"] = os.path.basename(argv[0]) if argv else proc.name()
        except (psutil.AccessDenied, psutil.NoSuchProcess):
            info["cmdline"] = "N/A"
    created = info.get("create_time")
    info["age"] = time.time() - created if isinstance(created, float) else "N/A"
    info["children"] = []
    if with_children:
        try:
            info["children"] = [process_info(c, with_children=False) for c in proc.children()]
        except (psutil.AccessDenied, psutil.NoSuchProcess):
            pass
    return info


_cache: dict[int, psutil.Process] = {}


def collect(pids: Iterable[int]) -> dict[int, dict[str, Any] | str]:
    """Info for each pid (CPU % since the previous call for the same process)."""
    out: dict[int, dict[str, Any] | str] = {}
    wanted = set(pids)
    for pid in list(_cache):
        if pid not in wanted:
            del _cache[pid]
    for pid in sorted(wanted):
        try:
            proc = _cache.get(pid) or psutil.Process(pid)
            _cache[pid] = proc
            out[pid] = process_info(proc)
        except psutil.NoSuchProcess:
            _cache.pop(pid, None)
            out[pid] = NO_SUCH_PROCESS
    return out
