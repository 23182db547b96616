"""Per-process information in Circus 0.19's shape, plus numbers a monitoring system can use.

Shared by the arbiter's ``stats``/``dstats`` commands and by circusd-stats. Sampling takes
tens of microseconds per process, so callers run :meth:`Sampler.collect` in a worker thread,
never on the arbiter's event loop.

What makes it cheap enough for hundreds of processes every second:

- what changes is read from /proc directly, four small reads per process: ``stat`` (CPU time,
  memory, threads, nice, start time — one read where psutil makes several), ``io``, the ``fd``
  listing and ``task/TID/children`` (a few bytes, instead of psutil's scan of every process of
  the system, which made 0.19's ``stats`` quadratic);
- what never changes (user, command line, create time) is read once per process, with psutil;
- CPU % is the CPU time between two samples of the same process over the time between them; a
  pid reused by another process (another start time) starts afresh.
"""
from __future__ import annotations

import os
import threading
import time
from typing import Any, Iterable

import psutil

__all__ = ["Sampler", "process_info", "collect", "NO_SUCH_PROCESS", "human_size"]

NO_SUCH_PROCESS = "No such process (stopped?)"
NA = "N/A"

_GONE = (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess, ProcessLookupError,
         PermissionError, FileNotFoundError)


def human_size(n: float) -> str:
    """0.19's memory strings: ``"8.22M"``."""
    for unit in ("", "K", "M", "G", "T"):
        if abs(n) < 1024 or unit == "T":
            return f"{n:.0f}" if unit == "" else f"{n:.2f}{unit}"
        n /= 1024
    return str(n)  # pragma: no cover


def _ctime(total: float) -> str:
    minutes, seconds = divmod(total, 60)
    return f"{int(minutes)}:{seconds:05.2f}"


def child_pids(pid: int, threads: int = 1) -> list[int]:
    """Direct children of ``pid`` from /proc (every thread's list when it has several)."""
    tids = [pid]
    if threads != 1:
        try:
            tids = [int(t) for t in os.listdir(f"/proc/{pid}/task")]
        except OSError:
            return []
    out: list[int] = []
    for tid in tids:
        try:
            with open(f"/proc/{pid}/task/{tid}/children", "rb") as fh:
                out.extend(int(x) for x in fh.read().split())
        except OSError:
            continue
    return out


#: a process not asked for during this long is forgotten (its next CPU % starts again at 0)
FORGET_AFTER = 60.0
#: CPU % measured over less than this is noise (clock ticks are 10 ms): the last value is kept
MIN_CPU_WINDOW = 0.1

_CLK_TCK = os.sysconf("SC_CLK_TCK")
_PAGE = os.sysconf("SC_PAGE_SIZE")


class _Stat:
    """The fields of /proc/PID/stat we use (one read gives CPU, memory, threads, nice)."""

    __slots__ = ("state", "ticks", "nice", "threads", "start", "vms", "rss")

    def __init__(self, pid: int) -> None:
        try:
            with open(f"/proc/{pid}/stat", "rb") as fh:
                data = fh.read()
        except (FileNotFoundError, ProcessLookupError):
            raise psutil.NoSuchProcess(pid) from None
        rest = data[data.rindex(b")") + 2:].split()      # field n is rest[n - 3]
        self.state = rest[0]
        self.ticks = int(rest[11]) + int(rest[12])      # utime + stime
        self.nice = int(rest[16])
        self.threads = int(rest[17])
        self.start = int(rest[19])                       # start time, ticks since boot
        self.vms = int(rest[20])
        self.rss = int(rest[21]) * _PAGE


def _io(pid: int) -> dict[str, int] | str:
    try:
        with open(f"/proc/{pid}/io", "rb") as fh:
            fields = dict(line.split(b": ", 1) for line in fh.read().splitlines() if b": " in line)
        return {"read_count": int(fields[b"syscr"]), "write_count": int(fields[b"syscw"]),
                "read_bytes": int(fields[b"read_bytes"]),
                "write_bytes": int(fields[b"write_bytes"])}
    except (OSError, KeyError, ValueError):
        return NA


def _num_fds(pid: int) -> int | str:
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return NA


class _Entry:
    __slots__ = ("pid", "start", "static", "seen", "cpu", "cpu_at", "ticks")

    def __init__(self, pid: int, start: int) -> None:
        self.pid = pid
        self.start = start               # tells a reused pid from the process we knew
        self.static: dict[str, Any] | None = None
        self.seen = 0.0
        self.cpu: float | None = None
        self.cpu_at = 0.0
        self.ticks = 0


class Sampler:
    """Samples processes; keeps what it needs between samples (one per sampling thread).

    The numbers that change come from /proc directly (``stat``, ``io``, the ``fd`` listing,
    the children list: four reads per process); psutil gives what is read once per process
    (user, create time, command line) and the rest of the machine's view.
    """

    def __init__(self) -> None:
        self._entries: dict[int, _Entry] = {}
        self._measured: dict[int, dict[str, Any]] = {}
        self._lock = threading.Lock()

    def _entry(self, pid: int, stat: _Stat) -> _Entry:
        entry = self._entries.get(pid)
        if entry is None or entry.start != stat.start:    # new, or the pid was reused
            entry = self._entries[pid] = _Entry(pid, stat.start)
        entry.seen = time.monotonic()
        return entry

    def _static(self, entry: _Entry) -> dict[str, Any]:
        if entry.static is None:
            static: dict[str, Any] = {}
            try:
                proc = psutil.Process(entry.pid)
            except psutil.NoSuchProcess:
                raise
            except _GONE:
                entry.static = {"create_time": NA, "username": NA, "cmdline": NA}
                return entry.static
            for key, get in (("create_time", proc.create_time), ("username", proc.username)):
                try:
                    static[key] = get()
                except _GONE:
                    static[key] = NA
            try:
                argv = proc.cmdline()
                static["cmdline"] = os.path.basename(argv[0]) if argv else proc.name()
            except _GONE:
                static["cmdline"] = NA
            entry.static = static
        return entry.static

    def info(self, pid: int, *, children: str = "list") -> dict[str, Any]:
        """One process. ``children``: ``"list"`` (0.19's ``stats``: a dict per child), or
        ``"total"`` (the stream: ``children: []`` and the descendants summed in
        ``children_total``), or ``"none"``. Raises NoSuchProcess when it is gone."""
        info = dict(self._base(pid))
        threads = info["num_threads"] if isinstance(info["num_threads"], int) else 0
        if children == "list":
            info["children"] = [self._child(c) for c in child_pids(pid, threads)]
            info["children"] = [c for c in info["children"] if c is not None]
        else:
            info["children"] = []
            if children == "total":
                info["children_total"] = self._descendants_total(pid, threads)
        return info

    def _base(self, pid: int) -> dict[str, Any]:
        """A process's own numbers, measured once per round: a process met twice in a round
        (a worker is also a descendant of circusd) is not sampled twice, which would also
        divide its CPU time by a few microseconds."""
        done = self._measured.get(pid)
        if done is not None:
            return done
        stat = _Stat(pid)
        entry = self._entry(pid, stat)
        zombie = stat.state == b"Z"
        info: dict[str, Any] = {
            "pid": pid, "cpu": self._cpu(entry, stat.ticks),
            "num_threads": stat.threads, "num_fds": NA if zombie else _num_fds(pid),
            "nice": "Zombie" if zombie else stat.nice,
            "rss": stat.rss, "vms": stat.vms, "mem_info1": human_size(stat.rss),
            "mem_info2": human_size(stat.vms),
            "mem": round(stat.rss * 100.0 / _total_memory(), 3),
            "ctime": _ctime(stat.ticks / _CLK_TCK), "io": _io(pid),
        }
        info.update(self._static(entry))
        created = info.get("create_time")
        info["age"] = time.time() - created if isinstance(created, float) else NA
        self._measured[pid] = info
        return info

    @staticmethod
    def _cpu(entry: _Entry, ticks: int) -> float:
        """% of one core since the previous sample of this process (0.0 at the first)."""
        now = time.monotonic()
        if entry.cpu is not None and now - entry.cpu_at < MIN_CPU_WINDOW:
            return entry.cpu
        if entry.cpu is None:
            entry.cpu = 0.0
        else:
            entry.cpu = round((ticks - entry.ticks) / _CLK_TCK / (now - entry.cpu_at) * 100, 1)
        entry.cpu_at, entry.ticks = now, ticks
        return entry.cpu

    def _child(self, pid: int) -> dict[str, Any] | None:
        try:
            return self.info(pid, children="none")
        except _GONE:
            self._entries.pop(pid, None)
            return None

    def _descendants_total(self, pid: int, threads: int) -> dict[str, Any]:
        total = {"count": 0, "cpu": 0.0, "rss": 0, "vms": 0, "num_fds": 0}
        todo, seen = child_pids(pid, threads), {pid}
        while todo and total["count"] < 10_000:
            child = todo.pop()
            if child in seen:
                continue
            seen.add(child)
            info = self._child(child)
            if info is None:
                continue
            total["count"] += 1
            for key in ("cpu", "rss", "vms", "num_fds"):
                if isinstance(info[key], (int, float)):
                    total[key] += info[key]
            todo += child_pids(child, info["num_threads"] if isinstance(info["num_threads"], int)
                               else 1)
        total["cpu"] = round(total["cpu"], 2)
        return total

    def collect(self, pids: Iterable[int], *, children: str = "list"
                ) -> dict[int, dict[str, Any] | str]:
        """Info for each pid (CPU % since the previous sample of that pid); pids not asked for
        during :data:`FORGET_AFTER` seconds are forgotten."""
        with self._lock:
            self._measured = {}
            out: dict[int, dict[str, Any] | str] = {}
            for pid in sorted(set(pids)):
                try:
                    out[pid] = self.info(pid, children=children)
                except _GONE:
                    self._entries.pop(pid, None)
                    out[pid] = NO_SUCH_PROCESS
            stale = time.monotonic() - FORGET_AFTER
            for pid in [p for p, e in self._entries.items() if e.seen < stale]:
                del self._entries[pid]
            return out


_TOTAL_MEMORY = 0


def _total_memory() -> int:
    global _TOTAL_MEMORY
    if not _TOTAL_MEMORY:
        _TOTAL_MEMORY = psutil.virtual_memory().total
    return _TOTAL_MEMORY


_default = Sampler()


def process_info(proc: psutil.Process, with_children: bool = True) -> dict[str, Any]:
    """0.19's fields (``children`` listed) plus numeric ``rss``/``vms``/``num_fds``/``io``."""
    return _default.info(proc.pid, children="list" if with_children else "none")


def collect(pids: Iterable[int]) -> dict[int, dict[str, Any] | str]:
    """Info for each pid, for the ``stats`` command (children listed, as 0.19)."""
    return _default.collect(pids)
