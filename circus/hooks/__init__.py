"""Watcher hooks: 0.19's Python hooks and command hooks, run off the event loop with a timeout.

A hook is configured as ``hooks.<point> = dotted.name[, ignore_failure]`` (0.19) or
``hooks.<point> = exec:/path/to/command args`` (new). Python hooks are called with 0.19's keyword
arguments (``watcher``, ``arbiter``, ``hook_name`` and the point's extras) in a worker thread;
command hooks run as a child process with ``CIRCUS_WATCHER``, ``CIRCUS_NODE``, ``CIRCUS_HOOK`` and
``CIRCUS_PID`` (when there is one) in their environment. Either way the event loop never waits
more than ``timeout`` seconds: a hook that hangs counts as failed (a hung Python hook's thread
cannot be killed and is left to finish; a hung command is killed).

A hook *fails* when it raises, returns a falsy value, exits non-zero or times out. What a failure
does depends on the point (0.19's rules, see :data:`ON_FAILURE`), unless the hook is in the
ignore set: ``before_stop``, ``after_stop``, ``before_signal``, ``after_signal`` and
``extended_stats`` always; others when configured with ``, true``.
"""
from __future__ import annotations

import asyncio
import importlib
import logging
import shlex
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Awaitable, Callable, Mapping

from circus import asynctls

__all__ = ["HOOK_POINTS", "ALWAYS_IGNORED", "ON_FAILURE", "Hook", "HookRunner", "resolve"]

log = logging.getLogger("circus")

HOOK_POINTS = ("before_start", "after_start", "before_spawn", "after_spawn", "before_stop",
               "after_stop", "before_signal", "after_signal", "before_reap", "after_reap",
               "extended_stats")

#: points whose failures never change anything (0.19)
ALWAYS_IGNORED = frozenset({"before_stop", "after_stop", "before_signal", "after_signal",
                            "extended_stats"})

#: what a failure does, by point (documentation; the watcher acts on :meth:`HookRunner.run`'s result)
ON_FAILURE = {
    "before_start": "the start is aborted: the watcher stays stopped",
    "after_start": "the watcher is stopped",
    "before_spawn": "the process is not spawned and the watcher is stopped",
    "after_spawn": "that process is killed and the watcher is stopped",
    "before_signal": "the signal is not sent (SIGKILL always is)",
    "before_reap": "nothing",
    "after_reap": "nothing",
}


@dataclass(frozen=True)
class Hook:
    point: str
    target: str                   # dotted name, or "exec:COMMAND"
    ignore_failure: bool = False

    @property
    def is_command(self) -> bool:
        return self.target.startswith("exec:")

    @property
    def ignored(self) -> bool:
        return self.ignore_failure or self.point in ALWAYS_IGNORED


def resolve(dotted: str) -> Callable[..., Any]:
    """Import ``pkg.mod.func`` or ``pkg.mod:obj.attr``; ValueError with the reason otherwise."""
    module_name, _, attr = dotted.partition(":") if ":" in dotted else dotted.rpartition(".")
    if not module_name or not attr:
        raise ValueError(f"{dotted!r} is not a dotted name")
    asynctls.enable()          # the user's code may open TLS connections on circusd's loop
    try:
        obj: Any = importlib.import_module(module_name)
    except ImportError as exc:
        raise ValueError(f"cannot import {module_name!r}: {exc}") from None
    except Exception as exc:   # importing runs the module's code: a SyntaxError, anything
        raise ValueError(f"cannot import {module_name!r}: {type(exc).__name__}: {exc}") from None
    for part in attr.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise ValueError(f"{module_name!r} has no {attr!r}") from None
    if not callable(obj):
        raise ValueError(f"{dotted!r} is not callable")
    return obj


CommandRunner = Callable[[list[str], Mapping[str, str], float], Awaitable[int]]


class HookRunner:
    """Runs one watcher's hooks; reports each result through ``emit(event, payload)``."""

    def __init__(self, hooks: Mapping[str, tuple[str, bool]], *, timeout: float,
                 run_command: CommandRunner, emit: Callable[[str, dict], None],
                 executor: ThreadPoolExecutor | None = None) -> None:
        self.hooks = {point: Hook(point, target, ignore) for point, (target, ignore) in hooks.items()}
        self.timeout = timeout
        self.run_command = run_command
        self.emit = emit
        self._executor = executor

    def has(self, point: str) -> bool:
        return point in self.hooks

    async def run(self, point: str, env: Mapping[str, str] | None = None, **kwargs: Any) -> bool:
        """Run the hook of ``point`` if any; True when it succeeded or its failure is ignored."""
        hook = self.hooks.get(point)
        if hook is None:
            return True
        ok, error = await self._call(hook, env or {}, kwargs)
        payload = {"name": point, "time": time.time()}
        if ok:
            self.emit("hook_success", payload)
            return True
        log.warning("hook %s (%s) failed: %s", point, hook.target, error)
        self.emit("hook_failure", {**payload, "error": error})
        return hook.ignored

    async def _call(self, hook: Hook, env: Mapping[str, str], kwargs: dict) -> tuple[bool, str]:
        loop = asyncio.get_running_loop()
        if hook.is_command:
            try:
                argv = shlex.split(hook.target[len("exec:"):])
                code = await self.run_command(argv, {**env, "CIRCUS_HOOK": hook.point}, self.timeout)
            except TimeoutError:
                return False, f"timed out after {self.timeout:g} s"
            except (OSError, ValueError) as exc:
                return False, str(exc)
            return (code == 0), ("" if code == 0 else f"exit code {code}")
        try:
            fn = resolve(hook.target)
        except ValueError as exc:
            return False, str(exc)

        def call() -> Any:
            return fn(hook_name=hook.point, **kwargs)
        future = loop.run_in_executor(self._executor, call)
        try:
            result = await asyncio.wait_for(asyncio.shield(future), self.timeout)
        except TimeoutError:
            future.add_done_callback(lambda f: f.cancelled() or f.exception())
            return False, f"timed out after {self.timeout:g} s (its thread is left to finish)"
        except Exception as exc:  # a hook is foreign code: any exception is its failure
            return False, f"{type(exc).__name__}: {exc}"
        return (bool(result), "" if result else "returned a false value")
