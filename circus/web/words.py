"""A watcher's lifecycle events in an operator's words, for the dashboard's event lists and for
the progress lines of an action while it runs.

circusd names its events after what its code did (``watcher.web.reload`` ends a graceful
restart as well as a reload); the page says what happened to the watcher and its processes::

    describe("web", "spawn", {"process_pid": 4121})        -> "web: started process 4121"
    describe("web", "progress", {"done": 1, "total": 2})   -> "web: 1 of 2 processes replaced"
    describe("web", "reload", {})                          -> "web: every process renewed"

Pure: no clock, no I/O. :class:`Signalled` remembers which processes were already sent their
stop signal, so that a second ``kill`` event for one process reads as the SIGKILL it is.
"""
from __future__ import annotations

import signal
from collections import OrderedDict
from typing import Any, Mapping

__all__ = ["describe", "exit_words", "Signalled"]


def exit_words(code: Any) -> str:
    """``exit code 3``, ``killed by SIGTERM``, or ``exit status unknown``."""
    if isinstance(code, bool) or not isinstance(code, int):
        return "exit status unknown"
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit code {code}"


def _process(pid: Any) -> str:
    return f"process {pid}" if isinstance(pid, int) else "a process"


_STATES = {
    "starting": "starting",
    "active": "running",
    "stopping": "stopping",
    "stopped": "stopped",
}


def _state(name: str, payload: Mapping[str, Any]) -> str:
    state = str(payload.get("state", ""))
    reason = str(payload.get("reason") or "")
    if state == "fatal":
        return f"{name}: gave up (fatal)" + (f": {reason}" if reason else "")
    words = _STATES.get(state, state or "changed state")
    return f"{name}: {words}" + (f" ({reason})" if reason else "")


def describe(name: str, event: str, payload: Mapping[str, Any] | None,
             second_kill: bool = False) -> str:
    """One line for watcher ``name``'s ``event`` (its topic's last part) and payload.
    ``second_kill``: this process was already sent its stop signal (the ``kill`` event is then
    the SIGKILL after the graceful timeout)."""
    p: Mapping[str, Any] = payload if isinstance(payload, Mapping) else {}
    pid = p.get("process_pid")
    reason = str(p.get("reason") or "")
    if event == "spawn":
        return f"{name}: started {_process(pid)}"
    if event == "ready":
        return f"{name}: {_process(pid)} is ready"
    if event == "kill":
        if second_kill:
            return f"{name}: {_process(pid)} did not stop in time: killed (SIGKILL)"
        return f"{name}: stopping {_process(pid)}"
    if event == "reap":
        return f"{name}: {_process(pid)} ended ({exit_words(p.get('exit_code'))})"
    if event == "backoff":
        what = f"{_process(pid)} failed" if isinstance(pid, int) else "could not start a process"
        return f"{name}: {what}" + (f": {reason}" if reason else "") + \
            (f" (failure {p['failures']})" if isinstance(p.get("failures"), int) else "")
    if event == "respawn":
        return f"{name}: {_process(pid)} ended" + (f" ({reason})" if reason else "") + \
            ": replaced at once"
    if event == "progress":
        done, total, failed = p.get("done"), p.get("total"), p.get("failed")
        if failed:
            return f"{name}: restart stopped after {done} of {total} processes were replaced " \
                   f"(the others keep running): {failed}"
        return f"{name}: {done} of {total} processes replaced"
    if event == "reload":
        # the end of a graceful restart or reload: every process replaced, or sent SIGHUP
        # (send_hup) -- the event does not say which
        return f"{name}: every process renewed"
    if event == "state":
        return _state(name, p)
    if event == "start":
        return f"{name}: start finished"
    if event == "stop":
        return f"{name}: every process stopped"
    if event == "exhausted":
        return f"{name}: every process has exited and none is to be respawned"
    if event == "updated":
        key = p.get("key")
        if key == "numprocesses":
            return f"{name}: number of processes changed"
        return f"{name}: option {key} changed" if key else f"{name}: options changed"
    if event == "add":
        return f"{name}: added"
    if event == "remove":
        return f"{name}: removed"
    if event == "adopt":
        return f"{name}: took over running {_process(pid)}"
    if event == "unhealthy":
        return f"{name}: {_process(pid)} is unhealthy" + (f": {reason}" if reason else "")
    if event == "dependency_failed":
        dep, cond = p.get("dependency"), p.get("condition")
        return f"{name}: not started: {dep} is not {cond}" if dep else \
            f"{name}: not started: a dependency failed"
    if event in ("hook_success", "hook_failure"):
        hook = p.get("name") or "a"
        if event == "hook_success":
            return f"{name}: hook {hook} ran"
        error = p.get("error")
        return f"{name}: hook {hook} failed" + (f": {error}" if error else "")
    return f"{name}: {event.replace('_', ' ')}"


class Signalled:
    """The processes recently sent their stop signal (at most ``keep``, oldest forgotten)."""

    def __init__(self, keep: int = 1000) -> None:
        self.keep = keep
        self._seen: OrderedDict[tuple[str, int], None] = OrderedDict()

    def kill_seen(self, node: str, pid: Any) -> bool:
        """Record a ``kill`` event of ``pid``; True when one was seen before (this is the
        SIGKILL)."""
        if not isinstance(pid, int):
            return False
        key = (node, pid)
        if key in self._seen:
            self._seen.move_to_end(key)
            return True
        self._seen[key] = None
        while len(self._seen) > self.keep:
            self._seen.popitem(last=False)
        return False

    def forget(self, node: str, pid: Any) -> None:
        if isinstance(pid, int):
            self._seen.pop((node, pid), None)
