"""``Flapping``: stop a watcher whose processes keep dying, retry later, give up after a while.

Kept for 0.19 configurations; circusd's own restart policy (backoff, ``max_retry``, the watcher
going fatal) already handles crash loops without a plugin.

When ``attempts`` reaps of a watcher (default 2) fall within ``window`` seconds (default 1), the
watcher is flapping: it is stopped, and started again ``retry_in`` seconds later (default 7).
After ``max_retry`` such rounds in a row (default 5; -1 = forever) it is stopped for good. A
watcher may override each value with its own option ``flapping.<option>`` (read with ``options``
on its first reap, and again after an ``updated`` event); ``flapping.active = false`` on a
watcher leaves it alone (0.19's per-watcher switch). Reaps seen while a retry is pending do
not count, nor do those of processes circusd was stopping (a ``kill`` event came first: stop,
restart, decr, kill), so restarting a watcher of several processes is not flapping. Two reaps
farther apart than ``window`` end the series of rounds.

Fixed from 0.19: ``stop`` and ``start`` are sent as calls and their replies checked, so none is
lost (0.19 cast them, and a cast refused by the busy arbiter vanished: a crash-looping watcher
was never stopped). Reaps are timed by circusd's ``time``; 0.19 subtracted ``check_delay`` from
the span to make up for its polled reaping, which circusd does not do any more.
"""
from __future__ import annotations

import asyncio
import enum
import logging
import time
from collections import deque
from dataclasses import dataclass
from typing import Any, Mapping

from circus.plugins.base import CircusPlugin
from circus.plugins.options import PluginConfigError, get_bool, get_float, get_int

__all__ = ["Flapping", "FlapSettings", "FlapDetector", "Verdict"]

log = logging.getLogger("circus")


@dataclass(frozen=True)
class FlapSettings:
    attempts: int = 2
    window: float = 1.0
    retry_in: float = 7.0
    max_retry: int = 5
    active: bool = True     # false on a watcher (``flapping.active``): not checked at all

    @classmethod
    def from_config(cls, config: Mapping[str, Any], where: str, prefix: str = "",
                    base: "FlapSettings | None" = None) -> "FlapSettings":
        """Read ``<prefix>attempts``... from ``config``, defaulting to ``base``'s values;
        raises :class:`PluginConfigError` naming ``where``."""
        base = base or cls()
        cfg = {k[len(prefix):]: str(v) for k, v in config.items() if k.startswith(prefix)}
        settings = cls(attempts=get_int(cfg, "attempts", base.attempts, where, minimum=1),
                       window=get_float(cfg, "window", base.window, where, minimum=0.0)
                       or 0.0,
                       retry_in=get_float(cfg, "retry_in", base.retry_in, where, minimum=0.0)
                       or 0.0,
                       max_retry=get_int(cfg, "max_retry", base.max_retry, where, minimum=-1),
                       active=get_bool(cfg, "active", base.active, where))
        return settings

    def for_watcher(self, options: Mapping[str, Any], watcher: str) -> "FlapSettings":
        """These settings with the watcher's ``flapping.*`` options applied; a bad one is
        logged and ignored."""
        try:
            return FlapSettings.from_config(options, f"flapping (watcher {watcher})",
                                            "flapping.", self)
        except PluginConfigError as exc:
            log.error("%s: using the plugin's settings", exc)
            return self


class Verdict(enum.Enum):
    CALM = "calm"          # not flapping (or not enough reaps yet)
    RETRY = "retry"        # stop now, start again after retry_in
    GIVE_UP = "give_up"    # stop for good


class FlapDetector:
    """Reap times per watcher and flapping rounds. Pure: times are given, nothing is sent."""

    def __init__(self) -> None:
        self.reaps: dict[str, deque[float]] = {}
        self.tries: dict[str, int] = {}

    def reap(self, watcher: str, when: float, settings: FlapSettings) -> tuple[Verdict, int]:
        """Record a reap; the verdict and the round it starts (1-based; 0 when calm)."""
        times = self.reaps.setdefault(watcher, deque())
        times.append(when)
        while len(times) > settings.attempts:
            times.popleft()
        if len(times) < settings.attempts:
            return Verdict.CALM, 0
        if times[-1] - times[0] > settings.window:
            self.tries.pop(watcher, None)
            return Verdict.CALM, 0
        times.clear()
        tries = self.tries.get(watcher, 0)
        if settings.max_retry == -1 or tries < settings.max_retry:
            self.tries[watcher] = tries + 1
            return Verdict.RETRY, tries + 1
        self.tries.pop(watcher, None)
        return Verdict.GIVE_UP, tries

    def forget(self, watcher: str) -> None:
        self.reaps.pop(watcher, None)
        self.tries.pop(watcher, None)


class Flapping(CircusPlugin):
    name = "flapping"

    def __init__(self, endpoint: str, pubsub_endpoint: str, check_delay: float | str,
                 ssh_server: str | None = None, **config: Any) -> None:
        super().__init__(endpoint, pubsub_endpoint, check_delay, ssh_server, **config)
        self.settings = FlapSettings.from_config(self.config, f"plugin {self.name}")
        self.detector = FlapDetector()
        self._per_watcher: dict[str, FlapSettings] = {}
        self._retries: dict[str, asyncio.TimerHandle] = {}
        self._stopping: dict[str, set[int]] = {}    # pids circusd is stopping (a kill event)

    async def _settings(self, watcher: str) -> FlapSettings:
        settings = self._per_watcher.get(watcher)
        if settings is None:
            reply = await self.run_command("options", name=watcher)
            options = reply.get("options") if reply else None
            settings = self.settings.for_watcher(options if isinstance(options, dict) else {},
                                                 watcher)
            self._per_watcher[watcher] = settings
        return settings

    async def handle_recv(self, data: tuple[bytes, bytes]) -> None:
        watcher, action, msg = self.split_data(data)
        pid = msg.get("process_pid")
        if action == "updated":
            self._per_watcher.pop(watcher, None)
        elif action == "remove":
            self._forget(watcher)
        elif action == "kill" and isinstance(pid, int):
            self._stopping.setdefault(watcher, set()).add(pid)
        elif action == "stop":
            self._stopping.pop(watcher, None)
        elif action == "reap" and pid in self._stopping.get(watcher, ()):
            self._stopping[watcher].discard(pid)      # stopped on purpose: not a crash
        elif action == "reap" and watcher not in self._retries:
            when = msg.get("time")
            if not isinstance(when, (int, float)):
                when = time.time()
            settings = await self._settings(watcher)
            if not settings.active:
                return                                # flapping.active = false on the watcher
            verdict, round_ = self.detector.reap(watcher, float(when), settings)
            if verdict is Verdict.RETRY:
                await self._retry(watcher, settings, round_)
            elif verdict is Verdict.GIVE_UP:
                log.error("plugin %s: %s is still flapping after %d retries: stopping it for "
                          "good", self.name, watcher, settings.max_retry)
                await self.run_command("stop", name=watcher)

    async def _retry(self, watcher: str, settings: FlapSettings, round_: int) -> None:
        total = "unlimited" if settings.max_retry == -1 else str(settings.max_retry)
        log.warning("plugin %s: %s is flapping (%d reaps within %g s): stopping it, start again "
                    "in %g s (retry %d of %s)", self.name, watcher, settings.attempts,
                    settings.window, settings.retry_in, round_, total)
        if await self.run_command("stop", name=watcher) is None:
            return
        loop = asyncio.get_running_loop()
        self._retries[watcher] = loop.call_later(
            settings.retry_in, lambda: self.create_task(self._start(watcher), name=f"retry {watcher}"))

    async def _start(self, watcher: str) -> None:
        try:
            log.info("plugin %s: starting %s again", self.name, watcher)
            await self.run_command("start", name=watcher)
        finally:
            self._retries.pop(watcher, None)

    def _forget(self, watcher: str) -> None:
        self.detector.forget(watcher)
        self._stopping.pop(watcher, None)
        self._per_watcher.pop(watcher, None)
        handle = self._retries.pop(watcher, None)
        if handle is not None:
            handle.cancel()

    def handle_stop(self) -> None:
        for handle in self._retries.values():
            handle.cancel()
        self._retries.clear()
