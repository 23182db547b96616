"""Which processes belong to which circusd: the lineage marker and what /proc says.

Every process circusd starts carries ``CIRCUS_ARBITER=<node id>.<circusd pid>.<circusd start>`` in
its environment (and so do its descendants, unless they clear their environment). The node id is
derived from the configuration file's real path, so a circusd started again on the same file
recognizes what an earlier instance left: the processes of a dead instance of this node. A
process is identified by its pid and its start time (:mod:`circus.core.procfs`).
"""
from __future__ import annotations

import os

from circus.core.procfs import MARKER, read_marker, running, same_pid_namespace, start_ticks
from circus.records import Record, record

__all__ = ["MARKER", "Lineage", "start_ticks", "read_marker", "running", "scan", "Stray", "boot_id",
           "same_pid_namespace"]


def _sha256(data: bytes) -> str:
    """SHA-256 from the interpreter's own implementation (``_sha2`` from Python 3.12 on,
    ``_sha256`` before): ``hashlib`` would load OpenSSL's libcrypto, 4 MB of circusd's memory,
    for this one digest."""
    for name in ("_sha2", "_sha256"):
        try:
            module = __import__(name)
        except ImportError:
            continue
        return module.sha256(data).hexdigest()
    import hashlib                    # a Python built without its own SHA-256

    return hashlib.sha256(data).hexdigest()


def boot_id() -> str:
    """This boot's id (pids and start ticks only identify a process within one boot)."""
    try:
        with open("/proc/sys/kernel/random/boot_id") as fh:
            return fh.read().strip()
    except OSError:
        return ""


@record
class Lineage(Record):
    """The marker of one circusd instance."""

    node_id: str
    pid: int
    ticks: int

    @classmethod
    def for_config(cls, config_path: str | None, pid: int | None = None) -> "Lineage":
        pid = os.getpid() if pid is None else pid
        source = os.path.realpath(config_path) if config_path else f"pid:{pid}"
        node_id = _sha256(source.encode())[:16]
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


@record
class Stray(Record):
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
