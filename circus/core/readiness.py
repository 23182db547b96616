"""Per-process readiness and liveness: output capture, the probe, notify socket, health loop.

A process of a watcher with ``ready`` is STARTING until its probe says it is ready (a TCP connect,
an HTTP 2xx/3xx, a command exiting 0, ``READY=1`` on its ``NOTIFY_SOCKET``, or an output line
matching a regex), and RUNNING only then. If it exits first, or the probe does not succeed within
``ready_timeout``, the start failed: the reason carries the last lines of its stderr.

Its stdout and stderr are piped through circusd so that the last lines are known and ``log:``
probes can see them; the lines then go to the watcher's output (its streams, or circusd's own
stdout/stderr). A watcher with a stream but no probe has its streamed pipes captured the same way.

The probe machinery (:mod:`circus.probes`: parsing, the notify socket, running a check) is
imported with a watcher's first probe: most processes have their output captured but no probe,
so what is done for every process tells a probe by its ``kind``.
"""
from __future__ import annotations

import asyncio
import logging
import os
import signal
import time
from typing import TYPE_CHECKING, Awaitable, Callable

from circus.config import substitute_spawn
from circus.core.command import helper_spec
from circus.core.states import ProcessEvent, ProcessState, WatcherState
from circus.errors import NotReady, SpawnError
from circus.streams.output import STREAM_NAMES, WatcherOutput
from circus.streams.pump import OutputPump, Tail, output_pipe

if TYPE_CHECKING:
    from circus.probes.notify import NotifySocket
    from circus.probes.run import LogMatcher
    from circus.probes.spec import Probe

__all__ = ["ProcessIO", "ReadinessMixin"]

log = logging.getLogger("circus")


class ProcessIO:
    """What circusd holds for one process: pipes, the stderr tail, readiness signals."""

    def __init__(self, probe: Probe | None, *, capture: tuple[str, ...], output: WatcherOutput,
                 descendant: Callable[[int, int], bool], watchdog: float = 0.0) -> None:
        loop = asyncio.get_running_loop()
        self.probe = probe
        self.tail = Tail(20)
        kind = probe.kind if probe is not None else None
        #: set by a READY=1 or a matching line (only those probes have one)
        self.ready: asyncio.Future[str] | None = None
        if kind in ("log", "notify"):
            self.ready = loop.create_future()
            self.ready.add_done_callback(lambda f: f.cancelled() or f.exception())
        self.status = ""
        self.last_watchdog = loop.time()
        self.env: dict[str, str] = {}
        self.stdout_w: int | None = None
        self.stderr_w: int | None = None
        self.output = output
        self._read: list[tuple[int, str]] = []
        self._pid = 0
        self._descendant = descendant
        self.notify: NotifySocket | None = None
        self.matcher: LogMatcher | None = None
        if kind == "log":
            from circus.probes.run import LogMatcher

            self.matcher = LogMatcher(probe.pattern)  # type: ignore[union-attr]
            capture = STREAM_NAMES
        if "stdout" in capture:
            out_r, self.stdout_w = output_pipe()
            self._read.append((out_r, "stdout"))
        if "stderr" in capture:
            err_r, self.stderr_w = output_pipe()
            self._read.append((err_r, "stderr"))
        if kind == "notify":
            from circus.probes.notify import NotifySocket

            self.notify = NotifySocket(on_message=self._notified,
                                       allowed=lambda pid: self._descendant(self._pid, pid))
            self.env["NOTIFY_SOCKET"] = self.notify.address
            if watchdog > 0:
                self.env["WATCHDOG_USEC"] = str(int(watchdog * 1_000_000))

    def spawned(self, pid: int, pump: OutputPump) -> None:
        """The process exists: close our copies of the write ends, start reading."""
        self._pid = pid
        self._close_write_ends()
        for fd, name in self._read:
            self.output.attached(pump.attach(fd, pid, name, self._line, self.output.gate(name)))
        self._read = []
        if self.notify is not None:
            self.notify.start(asyncio.get_running_loop())

    @property
    def read_ends(self) -> dict[str, int]:
        """The pipes' read ends (before :meth:`spawned` hands them to the pump)."""
        return {name: fd for fd, name in self._read}

    def reattach(self, pid: int, pipes: dict[str, int], pump: OutputPump) -> None:
        """An adopted process: read the pipes an earlier circusd's keeper handed over."""
        self._read = [(fd, name) for name, fd in pipes.items()]
        self.spawned(pid, pump)

    def abandon(self) -> None:
        """The spawn failed: close everything."""
        self._close_write_ends()
        for fd, _ in self._read:
            os.close(fd)
        self._read = []
        self.close()

    def close(self) -> None:
        if self.notify is not None:
            self.notify.close()
            self.notify = None

    def _close_write_ends(self) -> None:
        for fd in (self.stdout_w, self.stderr_w):
            if fd is not None:
                os.close(fd)
        self.stdout_w = self.stderr_w = None

    # -- signals from the process -----------------------------------------------------------------

    def _line(self, pid: int, name: str, lines: list[bytes]) -> None:
        self.output.lines(pid, name, lines)
        if name == "stderr":
            self.tail.extend(lines)
        if self.matcher is not None and self.ready is not None and not self.ready.done():
            for line in lines:
                if self.matcher.feed(line.decode(errors="replace")):
                    self.ready.set_result(f"log line matched: {line.decode(errors='replace')[:200]}")
                    break

    def _notified(self, fields: dict[str, str], sender: int) -> None:
        if "STATUS" in fields:
            self.status = fields["STATUS"]
        if fields.get("WATCHDOG") == "1":
            self.last_watchdog = asyncio.get_running_loop().time()
        if fields.get("READY") == "1" and self.ready is not None and not self.ready.done():
            self.ready.set_result("READY=1 received" + (f" ({self.status})" if self.status else ""))
        if fields.get("STOPPING") == "1":
            log.info("process %d says it is stopping%s", self._pid, f": {self.status}" if self.status else "")

    def failure(self, reason: str) -> str:
        """``reason`` followed by the last lines of stderr, if any."""
        text = self.tail.text(10)
        return f"{reason}; last stderr lines:\n{text}" if text else reason


def _kind(probe: Probe | None) -> str | None:
    return probe.kind if probe is not None else None


async def wait_for_probe(io: ProcessIO, *, deadline: float,
                         run_probe: Callable[[Probe, float], Awaitable[str]]) -> str:
    """Until ready (returns the detail) or the deadline (raises NotReady with the reason)."""
    loop = asyncio.get_running_loop()
    if io.probe is None:
        return "ready"
    if io.probe.kind in ("notify", "log"):
        assert io.ready is not None
        try:
            return await asyncio.wait_for(asyncio.shield(io.ready), max(0.0, deadline - loop.time()))
        except TimeoutError:
            what = "no READY=1" if io.probe.kind == "notify" else "no output line matched"
            raise NotReady(what) from None
    return await run_probe(io.probe, deadline)


class ReadinessMixin:
    """The readiness and liveness behaviour of a :class:`~circus.core.watcher.Watcher`."""

    def captured(self) -> tuple[str, ...]:
        """The pipes of new processes that circusd reads: those with a stream; both with a probe
        or when something reads every line (notifications); with ``recent_lines`` (the
        default), every pipe that is not closed (``close_child_stdout``...), so that the last
        lines are at hand whatever the configuration."""
        if self.cfg.ready or self.host.wants_output(self.name):
            return STREAM_NAMES
        streamed = self.output.configured(self.cfg)
        if self.cfg.recent_lines > 0:
            return tuple(name for name in STREAM_NAMES
                         if name in streamed or not getattr(self.cfg, f"close_child_{name}"))
        return streamed

    def _make_io(self, ready_text: str | None, values: dict) -> ProcessIO | None:
        """What circusd holds for a new process: with a probe (or an output listener), both pipes
        are captured; with streams only, the pipes that have one; else None (the process inherits
        circusd's stdout and stderr)."""
        streamed = self.captured()
        if not ready_text and not streamed:
            return None
        probe = None
        if ready_text:
            from circus.probes.spec import READINESS_KINDS, parse_probe   # with the first probe

            try:
                probe = parse_probe(substitute_spawn(ready_text, values), READINESS_KINDS)
            except ValueError as exc:
                raise SpawnError(f"ready: {exc}") from None
        return ProcessIO(probe, capture=STREAM_NAMES if probe else streamed, output=self.output,
                         descendant=self.host.is_descendant, watchdog=self.cfg.watchdog_timeout)

    async def _become_ready(self, p, pid: int) -> None:
        loop = asyncio.get_running_loop()
        deadline = p.started_at + self.cfg.ready_timeout
        try:
            detail = await wait_for_probe(p.io, deadline=deadline, run_probe=self._run_probe)
        except NotReady as exc:
            if p.pid == pid and p.state is ProcessState.STARTING:
                self._abort(p, f"not ready after {self.cfg.ready_timeout:g} s: {exc}")
            return
        if p.pid != pid or p.state is not ProcessState.STARTING:
            return
        p.apply(ProcessEvent.READY)
        log.info("%s: process %d ready after %.2f s (%s)", self.name, pid, loop.time() - p.started_at, detail)
        self.host.emit(self.name, "ready", {"process_pid": pid, "time": time.time(), "detail": detail})
        if p.ready_waiter is not None and not p.ready_waiter.done():
            p.ready_waiter.set_result(detail)
        self._changed()
        if self.cfg.health or (self.cfg.watchdog_timeout and _kind(p.io.probe) == "notify"):
            self._own(loop.create_task(self._watch_health(p, pid)))

    async def _run_probe(self, probe: Probe, deadline: float) -> str:
        from circus.probes.run import ProbeFailed, wait_ready

        try:
            return await wait_ready(probe, deadline=deadline, run_command=self._probe_command)
        except ProbeFailed as exc:
            raise NotReady(exc.detail) from None

    async def _probe_command(self, argv: list[str], timeout: float,
                             env: dict[str, str] | None = None) -> int:
        """Run a helper command of this watcher (exec probe, command hook) through the arbiter."""
        spec = helper_spec(self.cfg, argv, extra_env=env, **self.host.spawn_context(self))
        return await self.host.run_command(spec, timeout)

    def _abort(self, p, reason: str) -> None:
        """Stop a process that failed its probe; its exit then counts as a failed start."""
        p.abort_reason = reason
        pid = p.pid
        log.warning("%s: process %d: %s", self.name, pid, reason)
        self.host.os.killpg(pid, self.cfg.stop_signal) or self.host.os.kill(pid, self.cfg.stop_signal)

        async def escalate() -> None:
            await asyncio.sleep(self.cfg.graceful_timeout)
            if p.pid == pid and p.live:
                self.host.os.killpg(pid, signal.SIGKILL)
        self._own(asyncio.get_running_loop().create_task(escalate()))

    async def _watch_health(self, p, pid: int) -> None:
        from circus.probes.run import check
        from circus.probes.spec import LIVENESS_KINDS, parse_probe

        loop = asyncio.get_running_loop()
        cfg = self.cfg
        health = parse_probe(cfg.health, LIVENESS_KINDS) if cfg.health else None
        watchdog = cfg.watchdog_timeout if _kind(p.io.probe) == "notify" else 0.0
        step = min(x for x in (cfg.health_interval if health else 0, watchdog / 2 if watchdog else 0) if x)
        p.io.last_watchdog = loop.time()
        failures, next_check = 0, loop.time() + cfg.health_interval
        while p.pid == pid and p.state is ProcessState.RUNNING:
            await asyncio.sleep(step)
            if p.pid != pid or p.state is not ProcessState.RUNNING:
                return
            if watchdog and loop.time() - p.io.last_watchdog > watchdog:
                self._unhealthy(p, f"watchdog: no WATCHDOG=1 for {watchdog:g} s")
                return
            if health is None or loop.time() < next_check:
                continue
            next_check = loop.time() + cfg.health_interval
            ok, detail = await check(health, timeout=cfg.health_timeout, run_command=self._probe_command)
            failures = 0 if ok else failures + 1
            if failures >= cfg.health_failures:
                self._unhealthy(p, f"unhealthy: {detail} ({failures} checks in a row)")
                return

    def _unhealthy(self, p, reason: str) -> None:
        self.host.emit(self.name, "unhealthy", {"process_pid": p.pid, "time": time.time(), "reason": reason})
        self._abort(p, reason)

    async def _wait_ready(self, slots) -> None:
        """Until every slot's new process is ready; NotReady (with the reason) on the first failure."""
        waiters = [(p, p.ready_waiter) for p in slots if p.ready_waiter is not None]
        for p, waiter in waiters:
            try:
                await asyncio.shield(waiter)
            except NotReady as exc:
                raise NotReady(f"{self.name}: process {p.wid}: {exc}") from None

    # -- depends_on conditions ------------------------------------------------------------------

    def condition(self, what: str) -> bool | None:
        """A ``depends_on`` condition: True reached, False cannot be reached any more, None not yet."""
        if self.state is WatcherState.FATAL:
            return False
        if what == "started":
            return True if self.state is WatcherState.ACTIVE else None
        if what == "ready":
            current = [p for p in self.slots.values() if not p.retiring]
            ready = self.state is WatcherState.ACTIVE and len(current) >= self.numprocesses and \
                all(p.state in (ProcessState.RUNNING, ProcessState.EXITED) for p in current)
            return True if ready else None
        return self.completed_ok                          # "completed"

    async def reached(self, what: str, timeout: float | None = None) -> bool:
        """Wait until :meth:`condition` is decided (False at ``timeout``)."""
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        while (met := self.condition(what)) is None:
            change = loop.create_future()
            self._change_waiters.append(change)
            try:
                await asyncio.wait_for(change, None if deadline is None else max(0.0, deadline - loop.time()))
            except TimeoutError:
                return False
        return met

    def _changed(self) -> None:
        waiters, self._change_waiters = self._change_waiters, []
        for change in waiters:
            if not change.done():
                change.set_result(None)
