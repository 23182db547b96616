"""A circusd started again: take back what an earlier one left running, end the rest.

:class:`Restore` holds what the state file recorded about processes and what the keeper handed
over (their pipes); :meth:`Restore.adopt` re-adopts each recorded process that still runs *and* is
the same process (same start time in clock ticks: a reused pid is another process), then
:func:`sweep_strays` ends every other live process marked by a dead circusd of this node: the
processes nobody supervises any more (``--fresh``, no state file, a process started after the
last write of the state). Descendants that stayed in an adopted process's group or session are
part of it and are left alone.
"""
from __future__ import annotations

import asyncio
import logging
import os
import signal
import time
from typing import Any

from circus.core.keeper import Handover, collect_handover, handover_path
from circus.core.lineage import Lineage, boot_id, read_marker, running, scan, start_ticks
from circus.core.slots import MAX_WID
from circus.core.process import Process
from circus.core.readiness import ProcessIO
from circus.core.states import ProcessEvent
from circus.errors import LimitExceeded
from circus.records import Factory, Record, record
from circus.streams.console import flush_consoles

__all__ = ["Restore", "sweep_strays", "STRAY_GRACE", "ArbiterSurvival", "WatcherAdoption"]

log = logging.getLogger("circus")

#: seconds a stray process gets between SIGTERM and SIGKILL
STRAY_GRACE = 2.0
#: how often the exit of an adopted process is polled where pidfds are not available
POLL_EXIT = 0.5


@record(frozen=False)
class Restore(Record):
    handover: Handover
    processes: dict[str, list[dict]] = Factory(dict)   # lower-case watcher name
    node_id: str = ""                                                 # our lineage's

    def _ours(self, pid: int) -> bool:
        """Not marked by another node (a process that rewrote its environment, as setproctitle
        does, has no marker left: pid, start time and boot id then decide)."""
        marker = read_marker(pid)
        return marker is None or not self.node_id or marker.startswith(self.node_id + ".")

    def adopt(self, arbiter: Any) -> set[int]:
        """Adopt what still runs; return the adopted pids. Pipes nobody claims are closed."""
        adopted: set[int] = set()
        for key, records in self.processes.items():
            watcher = arbiter.watchers.get(key)
            if watcher is None:
                continue
            wids: set[int] = set()
            for entry in records:
                pid, wid = entry["pid"], entry["wid"]
                if wid in wids or pid in adopted or not 1 <= wid <= MAX_WID:
                    continue
                if start_ticks(pid) != entry["ticks"] or not self._ours(pid):
                    log.info("%s: recorded process %d is gone (or its pid was reused): not adopted",
                             watcher.name, pid)
                    continue
                watcher.adopt(wid, pid, entry["ticks"], float(entry.get("create_time") or 0.0),
                              self.handover.pipes.pop(pid, None))
                wids.add(wid)
                adopted.add(pid)
        if adopted:
            log.info("adopted %d running process(es) of the previous circusd", len(adopted))
        self.handover.close()
        return adopted


def _session(pid: int) -> int | None:
    try:
        return os.getsid(pid)
    except OSError:
        return None


async def sweep_strays(os_: Any, me: Lineage, adopted: set[int]) -> int:
    """End the processes of dead instances of this node that were not adopted; return how many."""
    loop = asyncio.get_running_loop()
    strays = [s for s in scan(me)
              if s.pid not in adopted and s.pgid not in adopted and _session(s.pid) not in adopted]
    if not strays:
        return 0
    log.warning("ending %d process(es) left running by a previous circusd of this node (pids %s)",
                len(strays), " ".join(str(s.pid) for s in strays[:20]))
    for stray in strays:
        os_.kill(stray.pid, signal.SIGTERM)
    deadline = loop.time() + STRAY_GRACE
    left = strays
    while left and loop.time() < deadline:
        await asyncio.sleep(0.05)
        left = [s for s in left if start_ticks(s.pid) == s.ticks and running(s.pid)]
    for stray in left:
        if start_ticks(stray.pid) == stray.ticks:
            os_.kill(stray.pid, signal.SIGKILL)
    return len(strays)



class ArbiterSurvival:
    """The arbiter's side: lineage marker, keeper, pidfds, the state document, ``quit --keep``."""

    def child_env(self) -> dict[str, str]:
        """What every child gets in its environment: our lineage marker."""
        return self._child_env

    def track(self, pid: int, pipes: dict[str, int]) -> None:
        """A new (or adopted) process: the keeper learns about it (and holds its pipes)."""
        if self.keeper is not None:
            self.keeper.hold(pid, pipes)

    def watch_exit(self, pid: int, ticks: int | None = None) -> None:
        """Exit detection of a process that is not our child (adopted): a pidfd, checked against
        the start ticks once open (the pid is then pinned); polling where pidfds do not exist."""
        loop = asyncio.get_running_loop()
        try:
            fd = os.pidfd_open(pid)
        except ProcessLookupError:
            loop.call_soon(self._on_exit, pid, None)
            return
        except OSError:                    # no pidfd (old kernel, seccomp): poll its identity
            self._own_poll(pid, ticks)
            return
        if ticks is not None and start_ticks(pid) != ticks:
            os.close(fd)
            loop.call_soon(self._on_exit, pid, None)
            return
        self._pidfds[pid] = fd

        def gone() -> None:
            loop.remove_reader(fd)
            os.close(fd)
            if self._pidfds.pop(pid, None) is not None:
                self._on_exit(pid, None)
        loop.add_reader(fd, gone)

    def _own_poll(self, pid: int, ticks: int | None) -> None:
        async def poll() -> None:
            while start_ticks(pid) == ticks and running(pid):
                await asyncio.sleep(POLL_EXIT)
            self._on_exit(pid, None)
        self.command_task(poll(), f"exit of adopted {pid}")

    async def _restore(self) -> "Restore":
        """Read the state file (unless --fresh) and the keeper's handover; re-create the watchers
        as they were (runtime changes on top of the file)."""
        assert self.state is not None
        from circus.core.persist import plan_restore

        handover = collect_handover(handover_path(self.state.path))
        document = None if self.fresh else self.state.load()
        if self.fresh:
            log.info("--fresh: the state in %s is ignored", self.state.path)
        if document is None:
            return Restore(handover, {}, self._node_id)
        try:
            plan = plan_restore(document, list(self.config.watchers), self.environ, boot_id())
        except Exception as exc:  # a document of the right version but of the wrong shape
            log.error("state_file %s cannot be applied (%s: %s): starting from the configuration "
                      "only", self.state.path, type(exc).__name__, exc)
            self.state.set_aside()
            return Restore(handover, {}, self._node_id)
        for note in plan.notes:
            log.warning("state_file: %s", note)
        from circus.core.watcher import Watcher     # the watcher module imports this one

        self.watchers = {}
        for cfg in plan.watchers:
            try:
                self.watchers[cfg.name.lower()] = Watcher(cfg, self)
            except LimitExceeded as exc:
                log.error("state_file: %s: not restored", exc)
        for key, count in plan.numprocesses.items():
            w = self.watchers.get(key)
            if w is None:
                continue
            try:
                w._target(min(count, 1) if w.cfg.singleton else count)
            except LimitExceeded as exc:
                log.warning("state_file: %s: keeping %d", exc, w.numprocesses)
        self._keep_stopped = set(plan.stopped)
        written = document.get("written")
        log.info("state_file %s: restored %d watcher(s)%s", self.state.path, len(self.watchers),
                 time.strftime(" (written %Y-%m-%d %H:%M:%S)", time.localtime(written))
                 if isinstance(written, (int, float)) and not isinstance(written, bool) else "")
        return Restore(handover, plan.processes, self._node_id)

    @property
    def _node_id(self) -> str:
        return self.lineage.node_id if self.lineage is not None else ""

    def snapshot(self) -> dict:
        """The state document of now (see ``circus.core.persist``)."""
        from circus.core.persist import snapshot

        for w in self.watchers.values():
            for p in w.slots.values():
                if p.live and p.pid is not None and p.start_ticks is None:
                    p.start_ticks = start_ticks(p.pid)
        return snapshot(self.node, self.lineage.value if self.lineage else "",
                        self.config.watchers, self.watchers.values(), self._boot)

    async def _leave_running(self) -> None:
        """``quit --keep``: record everything, let the keeper hold the pipes and sockets, exit."""
        for w in self.watchers.values():
            w.abandon()
        self.state.flush(self.snapshot())
        log.info("exiting and leaving %d process(es) running for the next circusd (state in %s)",
                 sum(len(w.pids()) for w in self.watchers.values()), self.state.path)
        if self.keeper is not None:
            self.keeper.leave()
        await self.close_tools()
        await self.notifier.close()
        self.pump.close()
        await asyncio.gather(*(w.output.shut() for w in self.watchers.values()))
        await flush_consoles(timeout=2.0)


class WatcherAdoption:
    """The watcher's side: adopting a process, reattaching its output, leaving it running."""

    def adopt(self, wid: int, pid: int, ticks: int, create_time: float,
              pipes: dict[str, int] | None) -> Process:
        """Take over a process an earlier circusd started (still running: checked by the caller).
        It counts toward numprocesses at the next start; its pipes are read once streams are open."""
        loop = asyncio.get_running_loop()
        p = Process(wid)
        p.apply(ProcessEvent.SPAWN)
        p.apply(ProcessEvent.READY)
        age = max(0.0, time.time() - create_time) if create_time else 0.0
        p.pid, p.start_ticks, p.create_time = pid, ticks, create_time or time.time()
        p.started_at, p.spawns, p.adopted = loop.time() - age, 1, True
        p.adopted_pipes = pipes or None
        p.exited = loop.create_future()
        p.ready_waiter = loop.create_future()
        p.ready_waiter.set_result("adopted")
        if self.cfg.max_age > 0:
            p.expires_at = p.started_at + self.cfg.max_age + self.host.random() * self.cfg.max_age_variance
            self._timer(max(p.expires_at, loop.time()))
        self.slots.put(p)
        self._by_pid[pid] = p
        self.host.claim(pid, self)
        self.host.track(pid, dict(pipes or {}))
        self.host.watch_exit(pid, ticks)
        log.info("%s: adopted process %d (wid %d), running for %.0f s", self.name, pid, wid, age)
        self.host.emit(self.name, "adopt", {"process_pid": pid, "time": time.time(), "wid": wid})
        return p

    def _reattach(self) -> None:
        """Adopted processes: read their output through the streams opened now, and check their
        health (``health = ...``) as for the processes this circusd started."""
        for p in self.slots.values():
            if not p.adopted or p.io is not None or p.pid is None:
                continue
            pipes, p.adopted_pipes = p.adopted_pipes or {}, None
            p.io = ProcessIO(None, capture=(), output=self.output, descendant=self.host.is_descendant)
            p.io.reattach(p.pid, pipes, self.host.pump)
            if self.cfg.health:
                self._own(asyncio.get_running_loop().create_task(self._watch_health(p, p.pid)))

    def abandon(self) -> None:
        """circusd exits leaving the processes running (``quit --keep``): end every task of the
        watcher, touch no process."""
        for task in list(self._ops) + list(self._background):
            task.cancel()
        if self._pass is not None:
            self._pass.cancel()
        self._cancel_timers()
        for p in self.slots.values():
            if p.io is not None:
                p.io.close()
