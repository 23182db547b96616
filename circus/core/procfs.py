"""What ``/proc`` says about a process: its start time, whether it runs, its lineage marker.

A pid alone is not an identity (pids are reused): a process is identified by its pid *and* its
start time in clock ticks since boot (``/proc/PID/stat`` field 22), which a reused pid cannot
share. This module imports nothing but :mod:`os`: the keeper process
(:mod:`circus.core.keeperproc`), a fresh interpreter started without ``site``, imports it too.
"""
import os

__all__ = ["MARKER", "start_ticks", "running", "read_marker", "same_pid_namespace"]

#: the environment variable every child of circusd carries
MARKER = "CIRCUS_ARBITER"


def _stat(pid):
    """The fields of ``/proc/PID/stat`` after the command name (field 3 first); [] if gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            data = fh.read()
    except OSError:
        return []
    # the command name (field 2) may hold spaces and parentheses: split after the last ')'
    return data[data.rfind(b")") + 2:].split()


def start_ticks(pid):
    """The start time of ``pid`` in clock ticks since boot, or None when it is gone."""
    fields = _stat(pid)
    try:
        return int(fields[19])
    except (IndexError, ValueError):
        return None


def running(pid):
    """Is ``pid`` a live process (not a zombie waiting to be reaped)?"""
    fields = _stat(pid)
    return bool(fields) and fields[0] not in (b"Z", b"X")


def _pid_ns(pid):
    try:
        return os.readlink(f"/proc/{pid}/ns/pid")
    except OSError:
        return None


def same_pid_namespace(pid):
    """Is ``pid`` in our pid namespace? (A container's circusd has its own pids and start times:
    its processes must never be judged by ours.)"""
    mine = _pid_ns("self")
    return mine is None or _pid_ns(pid) == mine


def read_marker(pid):
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
