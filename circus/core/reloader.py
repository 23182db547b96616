"""Apply a :class:`~circus.config.ReloadPlan` to a running arbiter, step by step, in order.

The plan is computed purely by ``circus.config.diff``; this module only does what it says:
stop and remove, resize, create and start — lowest priority stopped first, highest started first.
Unchanged watchers are not touched (their runtime changes stay).
"""
from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from circus.config import Config

if TYPE_CHECKING:
    from circus.config.diff import ReloadPlan
    from circus.core.arbiter import Arbiter

__all__ = ["apply_plan"]

log = logging.getLogger("circus")


async def _apply_plugin(arbiter: "Arbiter", action: str, key: str, new_watchers: dict) -> None:
    """A plugin runs as watcher ``plugin:NAME``: remove, replace or add that watcher."""
    from circus.core.watcher import Watcher

    current = arbiter.watchers.get(key)
    if current is not None and action != "add_plugin":
        await arbiter.remove_watcher(current)          # stops its process first
    if action != "remove_plugin" and key in new_watchers:
        watcher = arbiter.watchers[key] = Watcher(new_watchers[key], arbiter)
        await watcher.start()


async def apply_plan(arbiter: "Arbiter", plan: ReloadPlan, new: Config) -> None:
    from circus.core.watcher import Watcher

    new_watchers = {w.name.lower(): w for w in new.watchers}
    new_sockets = {s.name.lower(): s for s in new.sockets}
    for step in plan.steps(arbiter.config, new):
        key = step.name.lower()
        current = arbiter.watchers.get(key)
        if step.action == "stop_watcher" and current is not None:
            await current.stop()
        elif step.action == "remove_watcher" and current is not None:
            await arbiter.remove_watcher(current)
        elif step.action == "resize_watcher" and current is not None:
            await current.set_numprocesses(new_watchers[key].numprocesses)
            current.cfg = new_watchers[key]
        elif step.action == "add_watcher":
            if current is not None:
                await current.close()
                del arbiter.watchers[key]
            arbiter.watchers[key] = Watcher(new_watchers[key], arbiter)
        elif step.action == "start_watcher":
            watcher = arbiter.watchers.get(key)
            if watcher is not None and watcher.cfg.autostart:
                await watcher.start()
        elif step.action == "remove_socket":
            arbiter.sockets.remove(step.name)
        elif step.action in ("rebind_socket", "add_socket"):
            arbiter.sockets.replace(new_sockets[key])
        elif step.action == "apply_circus":
            arbiter.apply_circus_options(new.circus)
        elif step.action == "apply_notifications":
            arbiter.notifier.configure(new.notifications)
        elif step.action in ("remove_plugin", "restart_plugin", "add_plugin"):
            from circus.config.plugin_watchers import PLUGIN_PREFIX   # for a plugin's step only

            await _apply_plugin(arbiter, step.action, PLUGIN_PREFIX + key, new_watchers)
        elif step.action == "apply_tools":
            pass                           # tools are looked up in arbiter.config at each run
        else:
            log.debug("reloadconfig: %s %s: nothing to do in this version", step.action, step.name)
    arbiter.config = new
    arbiter.views.clear()
