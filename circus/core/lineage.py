"""Which processes belong to which circusd: the lineage marker and what /proc says.

Every process circusd starts carries ``CIRCUS_ARBITER=<node id>.<circusd pid>.<circusd start>`` in
its environment (and so do its descendants, unless they clear their environment). The node id is
derived from the configuration file's real path, so a circusd started again on the same file
recognizes what an earlier instance left: the processes of a dead instance of this node. A pid
alone is not an identity (pids are reused): a process is identified by its pid *and* its start
time in clock ticks since boot (``/proc/PID/stat`` field 22), which a reused pid cannot share.
"""
from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass

__all__ = ["MARKER", "Lineage", "start_ticks", "read_marker", "running", "scan", "Stray", "boot_id",
           "same_pid_namespace"]

#: the environment variable every child of circusd carries
MARKER = "CIRCUS_ARBITER"


def _stat(pid: int | str) -> list[bytes]:
    """The fields of ``/proc/PID/stat`` after the command name (field 3 first); [] if gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            data = fh.read()
    except OSError:
        return []
    # the command name (field 2) may hold spaces and parentheses: split after the last ')'
    return data[data.rfind(b")") + 2:].split()


def start_ticks(pid: int) -> int | None:
    """The start time of ``pid`` in clock ticks since boot, or None when it is gone."""
    fields = _stat(pid)
    try:
        return int(fields[19])
    except (IndexError, ValueError):
        return None


def boot_id() -> str:
    """This boot's id (pids and start ticks only identify a process within one boot)."""
    try:
        with open("/proc/sys/kernel/random/boot_id") as fh:
            return fh.read().strip()
    except OSError:
        return ""


def _pid_ns(pid: int | str) -> str | None:
    try:
        return os.readlink(f"/proc/{pid}/ns/pid")
    except OSError:
        return None


def same_pid_namespace(pid: int) -> bool:
    """Is ``pid`` in our pid namespace? (A container's circusd has its own pids and start times:
    its processes must never be judged by ours.)"""
    mine = _pid_ns("self")
    return mine is None or _pid_ns(pid) == mine


def running(pid: int) -> bool:
    """Is ``pid`` a live process (not a zombie waiting to be reaped)?"""
    fields = _stat(pid)
    return bool(fields) and fields[0] not in (b"Z", b"X")


def read_marker(pid: int) -> str | None:
    """The value of ``CIRCUS_ARBITER`` in ``pid``'s environment (None: absent or unreadable)."""
    try:
        with open(f"/proc/{pid}/environ", "rb") as fh:
            data = fh.read()
    except OSError:
        return None
    key = MARKER.encode() + b"="
    for entry in data.split(b"\0"):
        if entry.startswith(key):
            return entry[len(key):].decode(errors="replace")
    return None


@dataclass(frozen=True)
class Lineage:
    """The marker of one circusd instance."""

    node_id: str
    pid: int
    ticks: int

    @classmethod
    def for_config(cls, config_path: str | None, pid: int | None = None) -> "Lineage":
        pid = os.getpid() if pid is None else pid
        source = os.path.realpath(config_path) if config_path else f"pid:{pid}"
        node_id = hashlib.sha256(source.encode()).hexdigest()[:16]
        return cls(node_id, pid, start_ticks(pid) or 0)

    @property
    def value(self) -> str:
        return f"{self.node_id}.{self.pid}.{self.ticks}"

    @staticmethod
    def parse(value: str) -> "Lineage | None":
        parts = value.split(".")
        if len(parts) != 3:
            return None
        try:
            return Lineage(parts[0], int(parts[1]), int(parts[2]))
        except ValueError:
            return None

    def alive(self) -> bool:
        """Is this circusd instance still running (same pid, same start time)?"""
        return start_ticks(self.pid) == self.ticks


@dataclass(frozen=True)
class Stray:
    """A live process marked by an earlier, dead circusd of the same node."""

    pid: int
    ticks: int
    pgid: int
    owner: Lineage


def scan(me: Lineage) -> list[Stray]:
    """Every live process left by a dead circusd of ``me``'s node (not zombies, not ours)."""
    found: list[Stray] = []
    dead: dict[Lineage, bool] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        pid = int(entry)
        value = read_marker(pid)
        if value is None or not value.startswith(me.node_id + "."):
            continue
        owner = Lineage.parse(value)
        if owner is None or owner == me or not same_pid_namespace(pid):
            continue
        if owner not in dead:
            dead[owner] = not owner.alive()
        if not dead[owner] or not running(pid):
            continue
        ticks = start_ticks(pid)
        try:
            pgid = os.getpgid(pid)
        except OSError:
            continue
        if ticks is not None:
            found.append(Stray(pid, ticks, pgid, owner))
    return found
