"""How a watcher changes what runs: 0.19's reloads, graceful rolling restarts, resizes
(``incr``/``decr``/``numprocesses``), and applying new options (``set``): a resize, a rolling
reload, or nothing, depending on the keys.

``reload`` keeps 0.19's meanings: not graceful = stop everything then start; ``send_hup`` = SIGHUP
every process; ``sequential`` = one at a time, stop then start. The default is a *rollout*: start
the replacements, wait until they are ready, then stop the old ones, ``batch`` processes at a
time (all at once unless asked). A replacement that never gets ready ends the rollout and the old
processes not yet replaced keep serving.
"""
from __future__ import annotations

import asyncio
import logging
import signal
import time

from circus.core import outcome
from circus.core.policy import batch_size
from circus.core.process import Process
from circus.config import WatcherConfig
from circus.core.states import WatcherState as WS
from circus.errors import NotReady, StreamError

__all__ = ["RolloutMixin", "RELOAD_KEYS"]

log = logging.getLogger("circus")

#: options whose change needs the processes replaced (0.19 reloads for these too)
RELOAD_KEYS = frozenset({
    "cmd", "args", "executable", "shell", "shell_args", "working_dir", "uid", "gid", "env",
    "copy_env", "copy_path", "virtualenv", "virtualenv_py_ver", "use_sockets", "sockets",
    "stdin_socket", "close_child_stdin", "close_child_stdout", "close_child_stderr", "rlimits",
    "max_age", "max_age_variance",
})


def _needs_reload(key: str) -> bool:
    key = key.lower()
    return key in RELOAD_KEYS or key.startswith(("rlimit_", "stdout_stream", "stderr_stream"))




class RolloutMixin:
    """The reload behaviour of a :class:`~circus.core.watcher.Watcher`."""

    async def _reload(self, graceful: bool, sequential: bool, batch: int | str | None = None) -> dict:
        if self.state in (WS.STOPPED, WS.FATAL):
            return await self._start()
        old = [p for p in self.slots.values() if p.live and not p.retiring]
        stopped = sorted(p.pid for p in old if p.pid is not None)
        if not graceful:
            await self._stop()
            info = await self._start()
            return {"stopped": stopped, "started": info["started"], "kept": []}
        if self.cfg.send_hup:
            for p in old:
                if p.pid is not None:
                    self.host.os.kill(p.pid, signal.SIGHUP)
            self.host.emit(self.name, "reload", {"time": time.time()})
            return {"stopped": [], "started": [], "kept": stopped}
        before = set(self.pids())
        if sequential:
            for i, p in enumerate(old):
                if i and self.cfg.warmup_delay > 0:
                    await asyncio.sleep(self.cfg.warmup_delay)
                p.retiring = True
                await self._stop_slot(p)
                await self._converge()
        else:
            await self._rollout(old, batch_size(batch, len(old)))
        await self._respawn_backoff()           # those that wait in backoff: now, as new ones
        self.host.emit(self.name, "reload", {"time": time.time()})
        return {"stopped": stopped, "started": sorted(set(self.pids()) - before), "kept": []}

    async def _rollout(self, old: list[Process], size: int) -> None:
        """Replace ``old`` ``size`` at a time: start the new ones, wait until they are ready, then
        stop the old ones. A replacement that never gets ready ends the rollout: it is stopped
        and the old processes not yet replaced keep serving."""
        done = 0
        for i in range(0, len(old), size):
            group = old[i:i + size]
            for p in group:
                p.retiring = True
            before = set(self.slots.values())
            await self._converge()
            fresh = [p for p in self.slots.values() if p not in before]
            try:
                failed = next((p for p in fresh if p.spawn_error), None)
                if failed is not None:       # no replacement: the old ones keep serving
                    raise NotReady(f"{self.name}: process {failed.wid} could not be started: "
                                   f"{failed.spawn_error}")
                await self._wait_ready(fresh)
            except NotReady as exc:
                for p in group:
                    p.retiring = False
                for p in fresh:
                    p.retiring = True
                await asyncio.gather(*(self._stop_slot(p) for p in fresh))
                self.host.emit(self.name, "progress", {"time": time.time(), "done": done,
                                                       "total": len(old), "failed": str(exc)})
                raise NotReady(f"rolling restart stopped after {done} of {len(old)} processes "
                               f"were replaced (the others keep serving): {exc}") from None
            await asyncio.gather(*(self._stop_slot(p) for p in group))
            done += len(group)
            self.host.emit(self.name, "progress", {"time": time.time(), "done": done,
                                                   "total": len(old)})
            log.info("%s: rolling restart %d/%d", self.name, done, len(old))

    def retarget(self, n: int) -> int:
        """Set the number of processes *now*, in the order requests arrive (so that incr/decr
        compose), and let the coalescing reconcile pass apply it: N queued resizes cost one
        pass with the net change, not N converges."""
        if not self.cfg.singleton:
            self._target(max(0, n))
            self.host.emit(self.name, "updated", {"time": time.time(), "key": "numprocesses"})
            self.kick()
        return self.numprocesses

    async def set_numprocesses(self, n: int | None = None, *, delta: int = 0) -> int:
        """Set the number of processes to ``n`` (or change it by ``delta``, resolved when the
        operation runs, after those queued before it) and wait until the new processes are ready
        and the stopped ones are gone."""
        async def body() -> int:
            if self.cfg.singleton:
                return self.numprocesses
            self._target(max(0, self.numprocesses + delta if n is None else n))
            before = set(self.slots.values())
            await self._converge()
            fresh = [p for p in self.slots.values() if p not in before]
            await self._wait_ready(fresh)
            outcome.check_started(self, fresh)
            return self.numprocesses
        return await self._run("numprocesses", body)

    async def _swap_streams(self, old: WatcherConfig) -> None:
        """New stream options while running: the new streams take over at once (the processes are
        then replaced, so that each pipe is captured as the new options say). If they cannot be
        opened, the old options and streams stay."""
        await self.output.shut()
        try:
            self._open_output()
        except StreamError:
            self.cfg = old
            self._open_output()
            raise

    async def update(self, cfg: WatcherConfig, keys: tuple[str, ...]) -> None:
        """Apply a new configuration (``set``): resize, reload or just remember, per key."""
        async def body() -> None:
            old, self.cfg = self.cfg, cfg
            if self.output.opened and (old.stdout_stream, old.stderr_stream) != \
                    (cfg.stdout_stream, cfg.stderr_stream):
                await self._swap_streams(old)
            if cfg.singleton:
                self.numprocesses = min(self.numprocesses, 1)
            if "numprocesses" in {k.lower() for k in keys}:
                self._target(min(cfg.numprocesses, 1) if cfg.singleton else cfg.numprocesses)
            for key in keys:
                self.host.emit(self.name, "updated", {"time": time.time(), "key": key})
            if self.state is WS.ACTIVE and any(_needs_reload(k) for k in keys):
                await self._reload(graceful=True, sequential=False)
            else:
                await self._converge()
        await self._run("set", body)
