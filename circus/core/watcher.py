"""A watcher: a named group of identical processes kept at ``numprocesses``.

How it works:

* **Reconcile, level-triggered.** Anything that may change what should run (an exit, a backoff or
  max_age timer, a command) calls :meth:`Watcher.kick`. A reconcile pass then compares the wanted
  slots with the live ones: spawns what is missing (honouring backoff), retires the oldest surplus,
  replaces processes past ``max_age``, and fails the watcher when a slot gave up.
* **Serialized per watcher, never refused.** Operations and reconcile passes take the watcher's
  lock in arrival order; nothing is rejected for being busy. Operations run as tasks the watcher
  owns, so a client that goes away does not cancel them half way.
* **Stop preempts.** ``stop`` (and so ``quit``) cancels a start, reload or reconcile in flight or
  queued: every spawned pid is recorded at once, so nothing is lost by the cancellation.
"""
from __future__ import annotations

import asyncio
import contextvars
import logging
import time
from typing import Awaitable, Callable, Protocol, TypeVar

from circus.config import WatcherConfig
from circus.core.command import resolve_ids
from circus.core.policy import RestartPolicy, Verdict, after_exit, describe_exit
from circus.core.process import Process, drain_group, terminate
from circus.core.hookpoints import HooksMixin
from circus.core.adoption import WatcherAdoption
from circus.core.readiness import ReadinessMixin
from circus.core.rollout import RolloutMixin
from circus.core.spawner import OSLayer
from circus.core.states import (WATCHER_TRANSITIONS, ProcessEvent, ProcessState, WatcherEvent,
                                WatcherState, apply)
from circus.core import outcome
from circus.core.spawning import spawn_slot
from circus.core.slots import SlotTable
from circus.errors import (Interrupted, LimitExceeded, NotReady, OperationTimeout, Removed, SpawnError,
                           StreamError, WatcherError)
from circus.protocol.limits import numprocesses_problem
from circus.security.asuser import Creds
from circus.streams.output import WatcherOutput, owner_of
from circus.streams.pump import OutputPump

__all__ = ["Watcher", "WatcherHost"]

log = logging.getLogger("circus")
T = TypeVar("T")
PS, WS = ProcessState, WatcherState


#: spawns in a row before a reconcile pass yields to the event loop (commands, exits)
SPAWN_BATCH = 16
#: new slots made in a row before a reconcile pass yields to the event loop
SLOT_BATCH = 256

#: loop time by which a queued operation must have started (set per request by the controller)
OP_DEADLINE: contextvars.ContextVar[float | None] = contextvars.ContextVar("op_deadline", default=None)

class WatcherHost(Protocol):
    """What a watcher needs from its arbiter."""

    os: OSLayer
    node: str
    pump: OutputPump
    output_prefixes: set[str]
    max_numprocesses: int

    def publish(self, topic: str, payload: dict) -> None: ...
    def wants_output(self, watcher: str) -> bool: ...
    def spawn_context(self, watcher: "Watcher") -> dict: ...
    def confinement(self, cfg: WatcherConfig) -> Creds | None: ...
    def claim(self, pid: int, watcher: "Watcher") -> None: ...
    def emit(self, watcher: str, event: str, payload: dict) -> None: ...
    def random(self) -> float: ...
    def child_env(self) -> dict[str, str]: ...
    def track(self, pid: int, pipes: dict[str, int]) -> None: ...
    def watch_exit(self, pid: int, ticks: int | None = None) -> None: ...


class Watcher(ReadinessMixin, RolloutMixin, HooksMixin, WatcherAdoption):
    def __init__(self, cfg: WatcherConfig, host: WatcherHost) -> None:
        self.cfg = cfg
        self.name = cfg.name
        self.host = host
        self.numprocesses = 0
        self._target(min(cfg.numprocesses, 1) if cfg.singleton else cfg.numprocesses)
        self.closed = ""                           # why no operation runs any more ("": open)
        self.state = WS.STOPPED
        self._state_text = self.state.value        # cached: status is asked often
        self.reason = ""
        self.slots = SlotTable()
        self._by_pid: dict[int, Process] = {}
        self._lock = asyncio.Lock()
        self._ops: set[asyncio.Task] = set()
        self._background: set[asyncio.Task] = set()
        self._pass: asyncio.Task | None = None
        self._dirty = False
        self._timers: set[asyncio.TimerHandle] = set()
        self._change_waiters: list[asyncio.Future[None]] = []
        self.completed_ok: bool | None = None     # one-shot watchers: did every process exit 0?
        self.restarts = 0                          # respawns of a slot (for stats and /metrics)
        self.exits: dict[int, int] = {}            # exit code -> how many processes exited so
        self.output = WatcherOutput(cfg.name, host)

    # -- views ------------------------------------------------------------------------------------

    @property
    def policy(self) -> RestartPolicy:
        return RestartPolicy(self.cfg.restart_policy)

    def pids(self) -> list[int]:
        return sorted(p.pid for p in self.slots.values() if p.live and p.pid is not None)

    def status(self) -> str:
        return str(self.state)

    def compat_status(self) -> str:
        """The state as 0.19's ``status`` reports it (plus ``fatal``, which 0.19 did not have)."""
        return self._state_text

    def describe_reason(self) -> str:
        """Why the watcher is in its state, or what is wrong with it while active ('' if fine)."""
        if self.state is not WS.ACTIVE:
            return self.reason
        return self._backoff_note() or self.reason

    def _backoff_note(self) -> str:
        backoff = [p for p in self.slots.values() if p.state is PS.BACKOFF and p.reason]
        return f"{len(backoff)} process(es) in backoff: {backoff[0].reason}" if backoff else ""

    def describe(self) -> str:
        """Rich state, e.g. ``fatal (exited 6 times in 3.2 s: exit code 1)``."""
        reason = self.describe_reason()
        return f"{self.state} ({reason})" if reason else str(self.state)

    # -- serialization ----------------------------------------------------------------------------

    def _target(self, n: int) -> int:
        """The one way the number of processes is set (file, add, set, incr, decr): never above
        the node's ``max_numprocesses``."""
        problem = numprocesses_problem(n, self.host.max_numprocesses)
        if problem:
            raise LimitExceeded(f"{self.name}: {problem}")
        self.numprocesses = n
        return n

    async def _run(self, what: str, body: Callable[[], Awaitable[T]], *, preempt: bool = False) -> T:
        if self.closed and not preempt:
            raise Removed(f"{what} of {self.name!r} not done: {self.closed}")
        if preempt:
            self._preempt()
        task = asyncio.get_running_loop().create_task(self._locked(body), name=f"{self.name}:{what}")
        task.preemptible = not preempt  # type: ignore[attr-defined]
        self._ops.add(task)
        task.add_done_callback(self._ops.discard)
        await asyncio.wait({task})
        if task.cancelled():
            raise Interrupted(f"{what} of {self.name!r} was interrupted by a stop")
        return task.result()

    async def _locked(self, body: Callable[[], Awaitable[T]]) -> T:
        deadline = OP_DEADLINE.get()
        if deadline is None:
            await self._lock.acquire()
        else:
            try:
                async with asyncio.timeout_at(deadline):
                    await self._lock.acquire()
            except TimeoutError:
                raise OperationTimeout(f"{self.name!r} was busy: the operation could not start "
                                       "before its deadline and was not done") from None
        try:
            return await body()
        finally:
            self._lock.release()

    def _preempt(self) -> None:
        for task in list(self._ops):
            if getattr(task, "preemptible", False):
                task.cancel()
        if self._pass is not None:
            self._pass.cancel()

    # -- operations -------------------------------------------------------------------------------

    async def start(self) -> dict:
        return await self._run("start", self._start)

    async def stop(self) -> None:
        await self._run("stop", self._stop, preempt=True)

    async def restart(self, graceful: bool = False, batch: int | str | None = None) -> dict:
        """Stop then start (0.19); ``graceful``: a rolling replacement, ``batch`` at a time (1)."""
        if graceful:
            return await self._run("restart", lambda: self._reload(True, False, batch or 1))

        async def body() -> dict:
            stopped = self.pids()
            await self._stop()
            info = await self._start()
            return {"stopped": stopped, "started": info["started"], "kept": []}
        return await self._run("restart", body)

    async def reload(self, graceful: bool = True, sequential: bool = False,
                     batch: int | str | None = None) -> dict:
        return await self._run("reload", lambda: self._reload(graceful, sequential, batch))

    def _open_output(self) -> None:
        try:
            uid, gid, _ = resolve_ids(self.cfg.uid, self.cfg.gid)
        except SpawnError:
            uid = gid = None            # the spawn reports the unknown user
        self.output.open(self.cfg, owner_of(uid, gid), self.host.confinement(self.cfg))

    async def kill(self, pid: int | None = None, sig: int | None = None,
                   graceful_timeout: float | None = None) -> None:
        """Stop one process (or all) with the stop policy; the reconcile respawns them."""
        async def body() -> None:
            victims = [p for p in self.slots.values() if p.live and (pid is None or p.pid == pid)]
            if pid is not None and not victims:
                raise WatcherError(f"process {pid} not found in {self.name!r}")
            await asyncio.gather(*(self._stop_slot(p, sig, graceful_timeout) for p in victims))
            self.kick()
        await self._run("kill", body)

    async def close(self, why: str = "the watcher was removed") -> None:
        """Stop everything and cancel the watcher's own tasks (``rm``, arbiter shutdown). From
        the first moment on, the watcher takes no more operations: those queued are cancelled by
        the stop, those that arrive later are refused (:class:`~circus.errors.Removed`)."""
        self.closed = self.closed or why
        await self.stop()
        for handle in self._timers:
            handle.cancel()
        for task in list(self._background):
            task.cancel()
        if self._background:
            await asyncio.wait(self._background)

    # -- implementation ---------------------------------------------------------------------------

    def _set_state(self, event: WatcherEvent, reason: str = "", note: str = "") -> None:
        """Move the watcher's state; ``reason`` stays with it, ``note`` is only logged (what is
        wrong with an active watcher: its processes say it)."""
        old = self.state
        self.state = apply(WATCHER_TRANSITIONS, self.state, event, f"watcher {self.name}")
        self._state_text = self.state.value
        self.reason = reason
        self._changed()
        if self.state is not old:
            why = reason or note
            level = logging.ERROR if self.state is WS.FATAL else \
                logging.WARNING if note and not reason else logging.INFO
            log.log(level, "%s: %s%s", self.name, self.state,
                    f" ({why})" if why and not note else f", but {note}" if why else "")
            self.host.emit(self.name, "state", {"state": str(self.state), "reason": reason,
                                                "previous": str(old)})

    async def _start(self) -> dict:
        if self.state in (WS.ACTIVE, WS.STARTING):
            return await self._respawn_backoff()
        if not await self._hook("before_start"):
            raise WatcherError(f"{self.name}: the before_start hook failed: start aborted")
        self._set_state(WatcherEvent.START)
        self.completed_ok = None
        try:
            self._open_output()
        except StreamError as exc:
            self._set_state(WatcherEvent.STOP, str(exc))
            self._set_state(WatcherEvent.FAILED, str(exc))
            self.host.emit(self.name, "stop", {"time": time.time()})
            raise
        for slot in list(self.slots.values()):       # leftovers of a fatal run
            if not slot.live:
                self._discard(slot)
        self._reattach()
        before = set(self.pids())
        await self._converge()
        try:
            await self._wait_ready([p for p in self.slots.values() if p.state is PS.STARTING])
        finally:
            if self.state is WS.STARTING:
                self._set_state(WatcherEvent.STARTED, note=self._backoff_note())
                self.host.emit(self.name, "start", {"time": time.time()})
        if not await self._hook("after_start"):
            await self._stop()
            raise WatcherError(f"{self.name}: the after_start hook failed: watcher stopped")
        outcome.check_started(self)          # a process that could not be spawned: an error
        return {"started": sorted(set(self.pids()) - before), "kept": sorted(before)}

    async def _respawn_backoff(self) -> dict:
        """An operator's start (or restart) of an active watcher whose processes wait in backoff
        (a crash loop): try them again now, with a fresh count of failed starts, and say how
        it went (an error if they cannot even be spawned)."""
        loop = asyncio.get_running_loop()
        waiting = [p for p in self.slots.values() if p.state is PS.BACKOFF and not p.retiring]
        before = set(self.pids())
        if not waiting:
            return {"started": [], "kept": sorted(before)}
        for p in waiting:
            p.retry_at, p.failures, p.streak_started = loop.time(), 0, None
        await self._converge()
        await self._wait_ready([p for p in waiting if p.state is PS.STARTING])
        outcome.check_started(self, waiting)
        return {"started": sorted(set(self.pids()) - before), "kept": sorted(before)}

    async def _stop(self) -> None:
        self._cancel_timers()
        if self.state is WS.STOPPED:
            if any(p.live for p in self.slots.values()):    # adopted, the watcher never started
                await self._stop_all()
            return
        if self.state is WS.FATAL:
            for slot in list(self.slots.values()):
                self._discard(slot)
            self._set_state(WatcherEvent.CLEAR)
            return
        await self._hook("before_stop")
        if self.state is not WS.STOPPING:
            self._set_state(WatcherEvent.STOP)
        await self._stop_all()
        await self.output.close()
        self._set_state(WatcherEvent.STOPPED)
        self.host.emit(self.name, "stop", {"time": time.time()})
        await self._hook("after_stop")

    async def _stop_all(self) -> None:
        await asyncio.gather(*(self._stop_slot(p) for p in list(self.slots.values())))

    # -- reconcile --------------------------------------------------------------------------------

    def kick(self) -> None:
        """Ask for a reconcile pass (cheap; coalesces)."""
        if self.closed and self.state is WS.STOPPED:
            return
        self._dirty = True
        if self._pass is None or self._pass.done():
            loop = asyncio.get_running_loop()
            self._pass = loop.create_task(self._locked(self._reconcile), name=f"{self.name}:reconcile")

    async def _reconcile(self) -> None:
        while self._dirty:
            self._dirty = False
            await self._converge(wait_stops=False)

    async def _converge(self, wait_stops: bool = True) -> None:
        """One reconcile step; the caller holds the lock."""
        if self.state not in (WS.STARTING, WS.ACTIVE):
            return
        loop = asyncio.get_running_loop()
        now = loop.time()
        fatal = next((p for p in self.slots.values() if p.state is PS.FATAL), None)
        if fatal is not None:
            await self._fail(fatal.reason)
            return
        stops: list[Awaitable[None]] = []
        for p in self.slots.values():                   # max_age
            if p.live and p.state is not PS.STOPPING and not p.retiring and \
                    p.expires_at is not None and p.expires_at <= now:
                p.retiring = True
                stops.append(self._stop_slot(p))
        counted = [p for p in self.slots.values() if not p.retiring and p.state is not PS.STOPPING]
        surplus = len(counted) - self.numprocesses
        if surplus > 0:
            rank = {PS.EXITED: 0, PS.FATAL: 0, PS.STOPPED: 1, PS.BACKOFF: 1}
            victims = sorted(counted, key=lambda p: (rank.get(p.state, 2), p.started_at))[:surplus]
            for p in victims:
                p.retiring = True
                stops.append(self._stop_slot(p))
        for made in range(-surplus):          # at most max_numprocesses, in bounded steps
            self.slots.new()
            if made % SLOT_BATCH == SLOT_BATCH - 1:
                await asyncio.sleep(0)
        if stops:
            task = loop.create_task(self._gather(stops))
            self._own(task)
            if wait_stops:
                await asyncio.shield(task)
        spawned = 0
        for p in sorted(self.slots.values(), key=lambda s: s.wid):
            if p.retiring:
                continue
            due = p.state is PS.STOPPED or (p.state is PS.BACKOFF and p.retry_at is not None
                                            and p.retry_at <= loop.time())
            if p.state is PS.BACKOFF and not due and p.retry_at is not None:
                self._timer(p.retry_at)
            if not due:
                continue
            if spawned and self.cfg.warmup_delay > 0:
                await asyncio.sleep(self.cfg.warmup_delay)
            elif spawned % SPAWN_BATCH == SPAWN_BATCH - 1:
                await asyncio.sleep(0)        # a fork costs ~1 ms: let commands in between
            if not await self._hook("before_spawn"):
                log.error("%s: the before_spawn hook failed: stopping the watcher", self.name)
                await self._stop()
                return
            self._spawn(p)
            if p.pid is not None and p.live and not await self._hook("after_spawn", pid=p.pid):
                log.error("%s: the after_spawn hook failed: stopping the watcher", self.name)
                await self._stop()
                return
            spawned += 1
        if any(p.state is PS.FATAL for p in self.slots.values()):
            self.kick()
        elif self.slots and all(p.state is PS.EXITED for p in self.slots.values()):
            log.info("%s: every process exited and none is to be respawned", self.name)
            self.completed_ok = all(p.last_exit == 0 for p in self.slots.values())
            self.host.emit(self.name, "exhausted", {"time": time.time()})
            self._set_state(WatcherEvent.STOP, "all processes exited")
            await self._stop_all()
            await self.output.close()
            self._set_state(WatcherEvent.STOPPED, "all processes exited")
            self.host.emit(self.name, "stop", {"time": time.time()})

    async def _gather(self, aws: list[Awaitable[None]]) -> None:
        await asyncio.gather(*aws)
        self.kick()

    async def _fail(self, reason: str) -> None:
        self._cancel_timers()
        self._set_state(WatcherEvent.STOP, reason)
        await self._stop_all()
        await self.output.close()
        self._set_state(WatcherEvent.FAILED, reason)
        self.host.emit(self.name, "stop", {"time": time.time()})

    def _spawn(self, p: Process) -> None:
        spawn_slot(self, p)

    def on_exit(self, pid: int, code: int | None) -> None:
        """Called by the arbiter when one of this watcher's processes has been reaped (``code``
        None: an adopted process, whose exit status went to its new parent, not to us)."""
        p = self._by_pid.pop(pid, None)
        if p is None:
            return
        loop = asyncio.get_running_loop()
        uptime = loop.time() - p.started_at
        p.last_exit, p.last_uptime = code, uptime
        p.planned_exit = p.state is PS.STOPPING or p.retiring
        if code is not None:
            self.exits[code] = self.exits.get(code, 0) + 1
        self.host.emit(self.name, "reap", {"process_pid": pid, "time": time.time(), "exit_code": code})
        self._reap_hooks(pid, code)
        if p.exited is not None and not p.exited.done():
            p.exited.set_result(code)
        what = p.abort_reason or (describe_exit(code) if code is not None
                                  else "exited (status unknown: an adopted process)")
        if p.io is not None:
            p.io.close()
            what = p.io.failure(what) if p.state is PS.STARTING else what
        if p.ready_waiter is not None and not p.ready_waiter.done():
            verb = "was stopped" if p.state is PS.STOPPING else "exited"
            p.ready_waiter.set_exception(NotReady(
                p.abort_reason and what or f"{verb} before it was ready: {what}"))
        if p.state is PS.STOPPING:
            p.apply(ProcessEvent.REAPED)
            self._forget(p)
            return
        self._own(loop.create_task(self._drain_leftovers(pid)))
        if p.retiring:
            p.apply(ProcessEvent.FINISH)
            self._discard(p)
        else:
            # a process that never became ready is a failed start, however long it tried
            counted_uptime = 0.0 if p.state is PS.STARTING else uptime
            self._after_exit(p, code, counted_uptime, what.split("\n", 1)[0])
        log.info("%s: process %d exited after %.2f s: %s", self.name, pid, uptime, p.reason or what)
        self._changed()
        self.kick()

    def _after_exit(self, p: Process, code: int | None, uptime: float | None, what: str) -> None:
        loop = asyncio.get_running_loop()
        cfg = self.cfg
        decision = after_exit(exit_code=code, uptime=uptime, failures=p.failures, policy=self.policy,
                              min_uptime=cfg.min_uptime, max_retry=cfg.max_retry,
                              backoff_initial=cfg.backoff_initial, backoff_max=cfg.backoff_max,
                              jitter=self.host.random())
        if decision.failures == 1 or p.streak_started is None:
            p.streak_started = loop.time()
        if decision.failures == 0:
            p.streak_started = None
        p.failures = decision.failures
        span = loop.time() - (p.streak_started or loop.time())
        if decision.verdict is Verdict.GIVE_UP:
            verb = "failed to start" if code is None else "exited"
            p.reason = f"{verb} {p.failures} times in {span:.1f} s: {what}"
            p.apply(ProcessEvent.GIVE_UP)
        elif decision.verdict is Verdict.FINISH:
            p.reason = what
            p.apply(ProcessEvent.FINISH)
        else:
            p.reason = f"{what}; respawn in {decision.delay:.2f} s" if decision.delay else what
            p.retry_at = loop.time() + decision.delay
            p.apply(ProcessEvent.RETRY)
            if decision.delay:
                self._timer(p.retry_at)
            # a failed start waits (backoff); a process that had been running is replaced at once
            self.host.emit(self.name, "backoff" if decision.delay else "respawn", {
                "process_pid": p.pid, "time": time.time(), "exit_code": code,
                "reason": p.reason, "delay": round(decision.delay, 3), "failures": p.failures})

    async def _stop_slot(self, p: Process, sig: int | None = None, timeout: float | None = None) -> None:
        if not p.live or p.pid is None:
            self._discard(p)
            return
        if p.state is not PS.STOPPING:
            p.apply(ProcessEvent.STOP)

        def on_kill(pid: int) -> None:
            self.host.emit(self.name, "kill", {"process_pid": pid, "time": time.time()})

        signum, pid = (self.cfg.stop_signal if sig is None else sig), p.pid
        await self._hook("before_signal", pid=pid, signum=signum)
        await terminate(self.host.os, p, sig=signum,
                        timeout=self.cfg.graceful_timeout if timeout is None else timeout,
                        stop_children=self.cfg.stop_children, on_kill=on_kill)
        await self._hook("after_signal", pid=pid, signum=signum)
        if not p.live:
            self._forget(p)

    async def _drain_leftovers(self, pgid: int) -> None:
        """After an unexpected exit, stop what is left of that process's group."""
        if self.host.os.killpg(pgid, self.cfg.stop_signal):
            loop = asyncio.get_running_loop()
            await drain_group(self.host.os, pgid, loop.time() + self.cfg.graceful_timeout)

    def _discard(self, p: Process) -> None:
        """Drop a slot that has no live process."""
        if p.state is not PS.STOPPED:
            p.apply(ProcessEvent.DISCARD)
        self._forget(p)

    def _forget(self, p: Process) -> None:
        self.slots.remove(p)

    def _timer(self, when: float) -> None:
        loop = asyncio.get_running_loop()
        handle = loop.call_at(when, self._fire)
        self._timers.add(handle)

    def _fire(self) -> None:
        self._timers = {h for h in self._timers if not h.cancelled() and
                        h.when() > asyncio.get_running_loop().time()}
        self.kick()

    def _cancel_timers(self) -> None:
        for handle in self._timers:
            handle.cancel()
        self._timers.clear()

    def _own(self, task: asyncio.Task) -> None:
        self._background.add(task)
        task.add_done_callback(self._background.discard)
