"""Where a watcher calls its hooks (see :mod:`circus.hooks` for how they run).

``before_start`` failing aborts the start (the watcher stays stopped); ``after_start`` failing
stops the watcher; ``before_spawn`` failing refuses the spawn and stops the watcher;
``after_spawn`` failing stops the watcher (that process included). The stop, signal and reap
hooks and ``extended_stats`` are run and reported, their failures change nothing.

Python hooks get 0.19's view of the watcher and the arbiter (:mod:`circus.compat.views`), and
``after_reap`` gets 0.19's ``process_status``: ``None`` when circusd stopped the process,
``UNEXISTING`` (2) when it exited by itself.

Both modules are imported when a watcher runs its first hook: most watchers have none.
"""
from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from circus.compat.views import WatcherView
    from circus.hooks import HookRunner

__all__ = ["HooksMixin"]


class HooksMixin:
    """The hook calls of a :class:`~circus.core.watcher.Watcher`."""

    _hook_runner: HookRunner | None = None
    _hook_runner_cfg: object = None

    def _hooks(self) -> HookRunner:
        if self._hook_runner is None or self._hook_runner_cfg is not self.cfg:
            from circus.hooks import HookRunner

            self._hook_runner = HookRunner(
                self.cfg.hooks, timeout=self.cfg.hook_timeout, run_command=self._hook_command,
                emit=lambda event, payload: self.host.emit(self.name, event, payload))
            self._hook_runner_cfg = self.cfg
        return self._hook_runner

    async def _hook(self, point: str, _view: WatcherView | None = None, **extra: object) -> bool:
        """Run ``point``'s hook if configured; False only when it failed and that matters."""
        if point not in self.cfg.hooks:
            return True
        from circus.compat.views import WatcherView

        env = {"CIRCUS_WATCHER": self.name, "CIRCUS_NODE": str(getattr(self.host, "node", ""))}
        pid = extra.get("pid", extra.get("process_pid"))
        if pid is not None:
            env["CIRCUS_PID"] = str(pid)
        view = _view if _view is not None else WatcherView(self)
        return await self._hooks().run(point, env=env, watcher=view, arbiter=view.arbiter, **extra)

    def _reap_hooks(self, pid: int, code: int | None) -> None:
        """before_reap / after_reap, from the (synchronous) exit handler: run as owned tasks.
        ``before_reap`` still finds the process in ``watcher.processes`` (as in 0.19)."""
        if not ({"before_reap", "after_reap"} & set(self.cfg.hooks)):
            return
        from circus.compat.views import UNEXISTING, ProcessView, WatcherView

        stamp = time.time()
        slot = next((s for s in list(self.slots.values()) if s.pid == pid), None)
        status = None if slot is None or slot.planned_exit else UNEXISTING
        before = WatcherView(self)
        if slot is not None:
            before._departed = ProcessView._of(before, slot, pid)

        async def run() -> None:
            await self._hook("before_reap", _view=before, process_pid=pid, time=stamp)
            await self._hook("after_reap", process_pid=pid, time=stamp, exit_code=code,
                             process_status=status)
        self._own(asyncio.get_running_loop().create_task(run()))

    async def _hook_command(self, argv: list[str], env: dict, timeout: float) -> int:
        return await self._probe_command(argv, timeout, env)
