"""The arbiter: owns the watchers of one node, routes child exits, runs commands.

Single-threaded and event-driven: it sleeps in the kernel until a child exits (SIGCHLD), a signal
or command arrives, or a timer set by a watcher fires. Signals are commands: SIGHUP is ``reload``,
SIGTERM/SIGINT/SIGQUIT are ``quit``, SIGUSR1 is ``reopen``; they go through :meth:`Arbiter.command`
like a control request does, and ``quit`` preempts whatever is in flight.
"""
from __future__ import annotations

import asyncio
import logging
import os
import random
import signal
import sys
import time
from typing import TYPE_CHECKING, Awaitable, Callable, Iterable, Mapping

from circus.config import CircusOptions, Config, ConfigError, WatcherConfig, load_config
from circus.core.adoption import ArbiterSurvival, sweep_strays
from circus.core.deps import start_order, stop_order
from circus.core.keeper import KeeperLink
from circus.core.lineage import MARKER, Lineage, boot_id
from circus.core.reloader import apply_plan
from circus.core.signals import SIGNAL_COMMANDS, SignalCatcher
from circus.core.sockets import SocketRegistry
from circus.core.spawner import OSLayer, SpawnSpec
from circus.core.watcher import Watcher
from circus.notify.service import Notifier
from circus.streams.console import flush_consoles
from circus.streams.pump import OutputPump
from circus.errors import SpawnError, UnknownWatcher
from circus.protocol import ErrorCode, ProtocolError, topic_name
from circus.records import replace
from circus.security.asuser import Creds
from circus.security.owner import confinement

if TYPE_CHECKING:
    from circus.config.diff import ReloadPlan
    from circus.core.persist import StateFile
    from circus.core.tools import ToolRunner

__all__ = ["Arbiter", "EventListener", "SIGNAL_COMMANDS"]

log = logging.getLogger("circus")

EventListener = Callable[[str, dict], None]

#: how long orphans adopted as subreaper get after SIGTERM at shutdown, before SIGKILL
ORPHAN_GRACE = 1.0


class Arbiter(ArbiterSurvival):
    def __init__(
        self,
        config: Config,
        *,
        os_: OSLayer,
        environ: Mapping[str, str],
        node_name: str,
        python_path: Iterable[str] = (),
        rng: random.Random | None = None,
        reopen_logs: Callable[[], None] | None = None,
        inherited_sockets: Mapping | None = None,
        keeper: KeeperLink | None = None,
        lineage: Lineage | None = None,
        state_file: str | None = None,
        fresh: bool = False,
    ) -> None:
        self.config = config
        self.os = os_
        self.environ = dict(environ)
        self.node = node_name
        self.started_at = time.time()
        self.python_path = tuple(python_path)
        self.rng = rng or random.Random()
        self.watchers: dict[str, Watcher] = {}
        self.listeners: list[EventListener] = []
        #: read-only replies computed since the last event (status of every watcher...)
        self.views: dict[str, dict] = {}
        self.circus_listeners: list[Callable[[CircusOptions, CircusOptions], None]] = []
        #: called on every reload and reloadconfig (SIGHUP too): what is re-read then (CURVE keys)
        self.reload_listeners: list[Callable[[], None]] = []
        self._reopen_logs = reopen_logs
        self.inherited_sockets = inherited_sockets or {}
        self._owners: dict[int, Watcher] = {}
        self.sockets = SocketRegistry()
        self.pump = OutputPump()
        #: topic prefixes of output lines somebody subscribed to (kept by the controller)
        self.output_prefixes: set[str] = set()
        #: called with (watcher, pid, "stdout" | "stderr", lines) for every captured batch
        self.output_listeners: list[Callable[[str, int, str, list[bytes]], None]] = []
        self._tools: ToolRunner | None = None
        self.notifier = Notifier(self)
        self.notifier.configure(config.notifications)
        self.listeners.append(self.notifier.on_event)
        self.output_listeners.append(self.notifier.on_lines)
        self._helpers: dict[int, asyncio.Future[int]] = {}
        self._tasks: set[asyncio.Task] = set()
        self._done = asyncio.Event()
        self._quitting: asyncio.Task | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        #: the keeper process (``circus.core.keeper``) and the lineage marker of our children
        self.keeper = keeper
        self.lineage = lineage
        self._child_env = {MARKER: lineage.value} if lineage is not None else {}
        self.state: StateFile | None = None
        if state_file:                  # circus.core.persist is for a state file only
            from circus.core.persist import StateFile

            self.state = StateFile(state_file)
        self.fresh = fresh
        self._keep_stopped: set[str] = set()     # restored as stopped: not autostarted once
        self._pidfds: dict[int, int] = {}
        self._boot = boot_id() if state_file else ""
        self._signals = SignalCatcher(self.handle_signal)
        for cfg in config.watchers:
            self.watchers[cfg.name.lower()] = Watcher(cfg, self)

    # -- WatcherHost ------------------------------------------------------------------------------

    @property
    def max_numprocesses(self) -> int:
        return self.config.circus.max_numprocesses

    def spawn_context(self, watcher: Watcher) -> dict:
        return {"environ": self.environ, "python_path": self.python_path,
                "sockets": self.sockets.fds_for(watcher.cfg),
                "confined": self.confinement(watcher.cfg) is not None}

    def confinement(self, cfg: WatcherConfig) -> Creds | None:
        """The credentials of the ``endpoint_owner`` ``cfg`` runs as, when circusd must do that
        watcher's file work as them (see circus.security.owner); None: as circusd."""
        return confinement(self.config.circus, cfg)

    def is_descendant(self, root: int, pid: int) -> bool:
        return pid == root or pid in self.os.descendants(root)

    def claim(self, pid: int, watcher: Watcher) -> None:
        self._owners[pid] = watcher

    def emit(self, watcher: str, event: str, payload: dict) -> None:
        self.publish(f"watcher.{topic_name(watcher)}.{event}", payload)
        if event == "stop":
            w = self.watchers.get(watcher.lower())
            if w is not None and w.cfg.on_demand and not self.quitting:
                self._arm_on_demand(w)

    def random(self) -> float:
        return self.rng.random()

    def wants_output(self, watcher: str) -> bool:
        """Must ``watcher``'s output go through circusd (a notification searches its lines)?"""
        return self.notifier.wants_output(watcher)

    def publish(self, topic: str, payload: dict) -> None:
        self.views.clear()                 # every state change publishes an event
        if self.state is not None and self._loop is not None and not self.quitting \
                and not topic.startswith("output."):     # output lines change no state
            self.state.changed(self.snapshot)
        payload = {**payload, "node": self.node}
        for listener in list(self.listeners):
            try:
                listener(topic, payload)
            except Exception:  # a broken subscriber must not break supervision
                log.exception("event listener failed on %s", topic)

    # -- lifecycle --------------------------------------------------------------------------------

    def get(self, name: str) -> Watcher:
        try:
            return self.watchers[name.lower()]
        except KeyError:
            raise UnknownWatcher(name) from None

    def by_start_order(self) -> list[Watcher]:
        """Dependencies first, then highest priority first; ties by name (0.19 order)."""
        return [self.watchers[k] for k in start_order(w.cfg for w in self.watchers.values())]

    def start_helper(self, spec: SpawnSpec) -> tuple[int, asyncio.Future[int]]:
        """Spawn a helper command (probe, tool, notification); the future gets its exit code."""
        pid = self.os.spawn(replace(spec, env={**spec.env, **self._child_env}))
        done = asyncio.get_running_loop().create_future()
        self._helpers[pid] = done
        return pid, done

    async def run_command(self, spec: SpawnSpec, timeout: float) -> int:
        """Run a helper command (e.g. an exec probe) through our reaper; SIGKILL at timeout."""
        pid, done = self.start_helper(spec)
        try:
            return await asyncio.wait_for(asyncio.shield(done), timeout)
        except TimeoutError:
            self.os.killpg(pid, signal.SIGKILL)
            raise

    def _on_exit(self, pid: int, code: int) -> None:
        helper = self._helpers.pop(pid, None)
        if helper is not None:
            if not helper.done():
                helper.set_result(code)
            return
        watcher = self._owners.pop(pid, None)
        if watcher is None:
            log.debug("reaped orphan %d (exit %s)", pid, code)
            return
        if self.keeper is not None:
            self.keeper.drop(pid)
        watcher.on_exit(pid, code)

    def _warn_not_yet_supported(self) -> None:
        """Say what in the configuration will not work as its author may expect."""
        self._warn_shared_probes()

    def _warn_shared_probes(self) -> None:
        """A tcp/http readiness probe on a socket the workers share is answered by any of them:
        it cannot tell that a *new* process is ready (rolling restarts would not wait)."""
        ports = {s.port for s in self.config.sockets if not s.path and s.port}
        for w in self.config.watchers:
            ready = (w.ready or "").lower()
            if w.use_sockets and ready.startswith(("tcp:", "http")) and \
                    any(f":{port}" in ready for port in ports):
                log.warning("%s: ready = %s probes a shared socket: any worker answers it, so it "
                            "cannot tell when a new process is ready; use notify, log:REGEX, exec: "
                            "or a per-process port", w.name, w.ready)

    async def start(self) -> None:
        """Attach to the running loop and start the autostart watchers by priority."""
        self._warn_not_yet_supported()
        self._loop = asyncio.get_running_loop()
        restore = await self._restore() if self.state is not None else None
        held = restore.handover.take_sockets() if restore is not None else {}
        self.sockets.bind_all(self.config.sockets, self.inherited_sockets, held)
        if self.keeper is not None:
            for bound in self.sockets.bound():
                self.keeper.hold_socket(bound.name, bound.fd)
            self.sockets.listeners.append(self.keeper.hold_socket)
        self.os.start_reaping(self._loop, self._on_exit)
        if self.lineage is not None:
            adopted = restore.adopt(self) if restore is not None else set()
            self.command_task(sweep_strays(self.os, self.lineage, adopted), "sweep strays")
        self.publish(f"arbiter.{self.node}.start", {"time": time.time()})
        await self.start_watchers()
        self._keep_stopped.clear()
        if self.state is not None:
            self.state.changed(self.snapshot)

    async def start_watchers(self) -> None:
        """Autostart watchers in dependency order (then priority, high first), each after the
        watchers it depends on reached their condition; on_demand ones wait for a connection."""
        delay = self.config.circus.warmup_delay
        first = True
        for watcher in self.by_start_order():
            adopted = any(p.adopted and p.live for p in watcher.slots.values())
            if self.quitting or not (watcher.cfg.autostart or adopted) or \
                    (watcher.name.lower() in self._keep_stopped and not adopted):
                continue
            if watcher.cfg.on_demand and not adopted:
                self._arm_on_demand(watcher)
                continue
            # adopted processes run already: their dependencies were met when they started
            if not adopted and not await self._dependencies_met(watcher):
                continue
            if not first and delay > 0:
                await asyncio.sleep(delay)
            first = False
            try:
                await watcher.start()
            except Exception as exc:   # one broken watcher never takes the others down
                log.error("%s: could not start: %s", watcher.name, exc)

    async def _dependencies_met(self, watcher: Watcher) -> bool:
        for name, condition in watcher.cfg.depends_on:
            dep = self.watchers.get(name.lower())
            if dep is None:
                log.error("%s: depends on %s, which does not exist", watcher.name, name)
                return False
            timeout = None if condition == "completed" else max(dep.cfg.ready_timeout, 1.0)
            log.info("%s: waiting for %s to be %s", watcher.name, dep.name, condition)
            if not await dep.reached(condition, timeout):
                reason = f"not started: {dep.name} is not {condition}"
                log.error("%s: %s", watcher.name, reason)
                watcher.reason = reason
                self.emit(watcher.name, "dependency_failed",
                          {"time": time.time(), "dependency": dep.name, "condition": condition})
                return False
        return True

    def _arm_on_demand(self, watcher: Watcher) -> None:
        """Start ``watcher`` at the first connection to one of its sockets (whatever its priority)."""
        loop = self._loop
        if loop is None or self.quitting:
            return
        try:
            fds = list(self.sockets.fds_for(watcher.cfg).values())
        except SpawnError as exc:
            log.error("%s: on_demand: %s", watcher.name, exc)
            return
        if not fds:
            log.warning("%s: on_demand without sockets: starting it now", watcher.name)
            self.command_task(watcher.start(), f"start {watcher.name}")
            return

        def wake() -> None:
            for fd in fds:
                loop.remove_reader(fd)
            log.info("%s: a connection arrived, starting on demand", watcher.name)
            self.command_task(watcher.start(), f"start {watcher.name}")
        for fd in fds:
            loop.add_reader(fd, wake)
        log.info("%s: waiting for a connection (on_demand)", watcher.name)

    def by_stop_order(self) -> list[list[Watcher]]:
        """Groups that stop concurrently, in order (dependents before their dependencies)."""
        return [[self.watchers[k] for k in group]
                for group in stop_order(w.cfg for w in self.watchers.values())]

    async def stop_watchers(self) -> None:
        for group in self.by_stop_order():
            await asyncio.gather(*(w.stop() for w in group), return_exceptions=True)

    async def reload(self, graceful: bool = True, sequential: bool = False,
                     batch: int | str | None = None) -> None:
        self._reloaded()
        for watcher in self.by_start_order():
            if watcher.state.value == "stopped" and not watcher.cfg.autostart:
                continue
            await watcher.reload(graceful=graceful, sequential=sequential, batch=batch)
        self.publish(f"arbiter.{self.node}.reload", {"time": time.time()})

    @property
    def quitting(self) -> bool:
        return self._quitting is not None

    async def quit(self, keep: bool = False) -> None:
        """Stop everything (preempting any operation) and end :meth:`serve`. ``keep``: leave the
        processes running for the next circusd (state file + keeper)."""
        if self._quitting is None:
            self._quitting = asyncio.current_task()
            self.publish(f"arbiter.{self.node}.stop", {"time": time.time(), "keep": keep})
            for watcher in self.watchers.values():      # from now on, nothing starts
                watcher.closed = watcher.closed or "circusd is stopping"
            if keep and self.state is not None:
                try:
                    await self._leave_running()
                finally:
                    self._done.set()
                return
            log.info("stopping every watcher")
            try:
                final = self.snapshot() if self.state is not None else None
                for group in self.by_stop_order():
                    await asyncio.gather(*(w.close() for w in group), return_exceptions=True)
                if self.state is not None and final is not None:
                    final["processes"] = {}       # what runs now: nothing (stopped on purpose)
                    self.state.flush(final)
                if self.keeper is not None:
                    self.keeper.bye()
                await self.close_tools()
                await self.notifier.close()
                await self._sweep_orphans()
                await self.pump.wait_closed(timeout=1.0)
                self.pump.close()
                await asyncio.gather(*(w.output.shut() for w in self.watchers.values()))
                await flush_consoles(timeout=2.0)
                self.sockets.close_all()
            finally:
                self._done.set()
        else:
            await self._done.wait()

    async def _sweep_orphans(self) -> None:
        """Grandchildren re-parented to us (subreaper) that outlived their process: end them."""
        me = os.getpid()
        orphans = self.os.descendants(me)
        if not orphans:
            return
        log.info("ending %d orphaned descendant(s)", len(orphans))
        for pid in orphans:
            self.os.kill(pid, signal.SIGTERM)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + ORPHAN_GRACE
        while self.os.descendants(me) and loop.time() < deadline:
            await asyncio.sleep(0.02)
        for pid in self.os.descendants(me):
            self.os.kill(pid, signal.SIGKILL)

    # -- watchers at runtime ----------------------------------------------------------------------

    def add_watcher(self, cfg: WatcherConfig) -> Watcher:
        if cfg.name.lower() in self.watchers:
            raise ProtocolError(ErrorCode.ALREADY_EXISTS, f"{cfg.name!r} already exists")
        watcher = Watcher(cfg, self)
        self.watchers[cfg.name.lower()] = watcher
        self.emit(cfg.name, "add", {"time": time.time()})
        return watcher

    def detach_watcher(self, watcher: Watcher) -> bool:
        """Take ``watcher`` out of the node at once: its name is free, it is not listed, and it
        refuses every new operation; :meth:`remove_watcher` then stops it."""
        if self.watchers.get(watcher.name.lower()) is not watcher:
            return False
        del self.watchers[watcher.name.lower()]
        watcher.closed = "the watcher was removed"
        self.emit(watcher.name, "remove", {"time": time.time()})
        return True

    async def remove_watcher(self, watcher: Watcher, stop: bool = True) -> None:
        """Remove ``watcher`` (detached already, or now) and stop its processes (``stop``) or
        forget them (they keep running, unsupervised, as 0.19's ``rm --nostop``)."""
        if not self.detach_watcher(watcher) and not watcher.closed:
            return
        if stop:
            await watcher.close()
        else:
            watcher.abandon()            # its processes go on, nothing of the watcher runs
            for pid in list(self._owners):
                if self._owners[pid] is watcher:
                    del self._owners[pid]

    async def restart_all(self) -> None:
        """``restart`` without a name: stop everything, re-read the file, start everything."""
        await self.stop_watchers()
        try:
            new = await asyncio.to_thread(self.read_file)
        except (ConfigError, OSError) as exc:
            log.error("restart: keeping the current configuration: %s", exc)
        else:
            await apply_plan(self, self.plan_for(new), new)
        await self.start_watchers()

    @property
    def tools(self) -> ToolRunner:
        """The runner of the ``[tool:NAME]`` tools, made (with its module) by the first tool
        command."""
        if self._tools is None:
            from circus.core.tools import ToolRunner

            self._tools = ToolRunner(self)
        return self._tools

    async def close_tools(self) -> None:
        if self._tools is not None:
            await self._tools.close()

    def plan_for(self, new: Config) -> ReloadPlan:
        """What applying ``new`` would change (circus.config.diff is loaded by the first reload)."""
        from circus.config.diff import diff

        return diff(self.config, new)

    def plan_reload(self) -> ReloadPlan:
        """What ``reloadconfig`` would do (raises ConfigError if the file is wrong)."""
        return self.plan_for(self.read_config())

    async def reload_config(self, new: Config | None = None) -> ReloadPlan:
        """Apply the configuration file (``new``: already read from it) where it changed."""
        new = new if new is not None else self.read_config()
        self._reloaded()
        plan = self.plan_for(new)
        log.info("reloadconfig: %s", "; ".join(plan.describe()))
        await apply_plan(self, plan, new)
        self.publish(f"arbiter.{self.node}.reloadconfig", {"time": time.time(), "plan": plan.to_dict()})
        return plan

    def read_file(self) -> Config:
        """The configuration file, read as it was at start (``--no-strict`` or not); its
        warnings are logged. Blocking (it imports the dotted paths in a child process): run it
        off the loop."""
        new = load_config(self.config.source, self.environ, strict=not self.config.no_strict)
        for issue in new.warnings:
            log.warning("configuration: %s", issue.as_warning())
        return new

    async def read_config_async(self) -> Config:
        """:meth:`read_config` off the event loop."""
        return await asyncio.to_thread(self.read_config)

    def read_config(self) -> Config:
        try:
            return self.read_file()
        except ConfigError as exc:
            raise ProtocolError(ErrorCode.CONFIG_ERROR, f"invalid configuration: {exc}") from None
        except OSError as exc:
            raise ProtocolError(ErrorCode.CONFIG_ERROR,
                                f"cannot read {self.config.source}: {exc.strerror}") from None

    def _reloaded(self) -> None:
        for callback in list(self.reload_listeners):
            callback()

    def rename(self, name: str) -> str:
        """The ``rename`` command: the node's name from now on (in memory only)."""
        old, self.node = self.node, name
        if old != name:
            log.info("node renamed %r -> %r", old, name)
            self.publish(f"arbiter.{name}.rename", {"old": old, "name": name, "time": time.time()})
        return old

    def apply_circus_options(self, opts: CircusOptions) -> None:
        """A reloaded ``[circus]`` section: node name now, endpoints through the listeners."""
        old = self.config.circus
        if opts.state_file != old.state_file:
            log.warning("state_file changed to %r: it takes effect at the next start of circusd",
                        opts.state_file)
        if opts.name and opts.name != old.name:
            log.info("node renamed %r -> %r", self.node, opts.name)
            self.node = opts.name
        for callback in list(self.circus_listeners):
            callback(old, opts)

    def list_sockets(self) -> list[dict]:
        return self.sockets.info()

    # -- commands ---------------------------------------------------------------------------------

    def command(self, name: str, **props: object) -> asyncio.Task:
        """Run a signal's command as a task the arbiter owns."""
        handler: Callable[..., Awaitable[object]] = getattr(self, f"cmd_{name}")
        return self.command_task(handler(**props), f"command:{name}")

    def command_task(self, coro: Awaitable[object], name: str) -> asyncio.Task:
        task = asyncio.get_running_loop().create_task(coro, name=name)  # type: ignore[arg-type]
        self._tasks.add(task)
        task.add_done_callback(self._command_done)
        return task

    def _command_done(self, task: asyncio.Task) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("%s failed: %s", task.get_name(), task.exception())

    async def cmd_quit(self) -> None:
        await self.quit()

    async def cmd_reload(self, graceful: bool = True, sequential: bool = False) -> None:
        if not self.quitting:
            await self.reload(graceful=graceful, sequential=sequential)

    async def cmd_reopen(self) -> None:
        """Reopen circusd's log file and every stream's file (after logrotate moved them)."""
        if self._reopen_logs is not None:
            self._reopen_logs()
        await asyncio.gather(*(w.output.reopen() for w in self.watchers.values()))
        self.publish(f"arbiter.{self.node}.reopen", {"time": time.time()})

    def handle_signal(self, signum: int) -> None:
        name = SIGNAL_COMMANDS[signum]
        log.info("got signal %s: %s", signal.Signals(signum).name, name)
        self.command(name)

    # -- main -------------------------------------------------------------------------------------

    def catch_signals(self) -> None:
        """Take the command signals as commands from now on (called before the endpoints are
        bound, so that a stop signal is never the default death)."""
        self._signals.catch()

    async def serve(self, on_ready: Callable[[], None] | None = None, *,
                    signals: bool = True) -> int:
        """Start, run until ``quit``, clean up. Returns the exit code. ``signals``: take
        SIGHUP/SIGTERM/SIGINT/SIGQUIT/SIGUSR1 as commands (only possible in the main thread;
        an arbiter embedded in a program's other thread is stopped by ``quit``)."""
        loop = asyncio.get_running_loop()
        if signals:
            self.catch_signals()
        try:
            await self.start()
            if on_ready is not None and not self.quitting:
                on_ready()
            await self._done.wait()
            if self._tasks:
                await asyncio.wait(self._tasks, timeout=5)
        finally:
            self._signals.release()
            self.os.stop_reaping(loop)
        return 0


def python_path() -> list[str]:
    return [p for p in sys.path if p]
