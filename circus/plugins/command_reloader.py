"""``CommandReloader``: restart a watcher when the program it runs changes on disk.

Every ``loop_rate`` seconds (default 1) it reads each watcher's ``cmd``, ``working_dir`` and
``env`` (``options``), finds the program — the first word of ``cmd`` split like a shell does
(``shlex``), looked up on the watcher's ``PATH`` when it has no ``/``, relative to
``working_dir`` when it is a relative path — and records its real path (symlinks resolved) and
modification time. When either changes (a new build, a deploy that moves a symlink), the watcher
gets ``restart``. The first look only records. Plugins' watchers and ``circusd-stats`` are left
alone.

Fixed from 0.19, which took the whole ``cmd`` as a path and so never noticed anything for a
command with arguments (``/srv/app/run --port 80``). The program is what is watched: for
``python app.py`` that is the interpreter, not ``app.py``.
"""
from __future__ import annotations

import logging
import os
import shlex
import shutil
from typing import Any, Mapping

from circus.plugins.base import CircusPlugin
from circus.plugins.options import get_period
from circus.plugins.watchdog import is_exempt

__all__ = ["CommandReloader", "resolve_program", "program_state"]

log = logging.getLogger("circus")

State = tuple[str, int]


def resolve_program(cmd: str, working_dir: str | None = None,
                    path: str | None = None) -> str | None:
    """The real path of the program ``cmd`` runs, or ``None`` if it cannot be found."""
    try:
        argv = shlex.split(cmd)
    except ValueError:              # unbalanced quotes: a shell would fail too; best effort
        argv = cmd.split()
    if not argv:
        return None
    program = os.path.expanduser(argv[0])
    if "/" in program:
        full = os.path.join(working_dir or os.getcwd(), program)
    else:
        found = shutil.which(program, path=path)
        if found is None:
            return None
        full = os.path.join(working_dir or os.getcwd(), found)
    return os.path.realpath(full)


def program_state(options: Mapping[str, Any]) -> State | None:
    """``(real path, mtime in ns)`` of a watcher's program from its ``options`` reply."""
    cmd = options.get("cmd")
    if not isinstance(cmd, str):
        return None
    env = options.get("env")
    path = env.get("PATH") if isinstance(env, dict) else None
    working_dir = options.get("working_dir")
    real = resolve_program(cmd, working_dir if isinstance(working_dir, str) else None,
                           path if isinstance(path, str) else os.environ.get("PATH"))
    if real is None:
        return None
    try:
        return real, os.stat(real).st_mtime_ns
    except OSError:
        return None


class CommandReloader(CircusPlugin):
    name = "command_reloader"

    def __init__(self, endpoint: str, pubsub_endpoint: str, check_delay: float | str,
                 ssh_server: str | None = None, **config: Any) -> None:
        super().__init__(endpoint, pubsub_endpoint, check_delay, ssh_server, **config)
        self.loop_rate = get_period(self.config, "loop_rate", 1.0, self.name)
        self.states: dict[str, State] = {}

    def handle_recv(self, data: tuple[bytes, bytes]) -> None:
        """Events are not needed: the programs are looked at every loop."""

    async def handle_init(self) -> None:
        await self.look_after()
        self.every(self.loop_rate, self.look_after)

    async def look_after(self) -> None:
        reply = await self.run_command("list")
        if reply is None:
            return
        watchers = [w for w in reply.get("watchers", []) if isinstance(w, str) and not is_exempt(w)]
        for gone in set(self.states) - set(watchers):
            del self.states[gone]
        for watcher in watchers:
            options = await self.run_command("options", name=watcher)
            if options is None or not isinstance(options.get("options"), dict):
                continue
            state = program_state(options["options"])
            if state is None:
                log.debug("plugin %s: %s: program of %r not found", self.name, watcher,
                          options["options"].get("cmd"))
                continue
            previous = self.states.get(watcher)
            self.states[watcher] = state
            if previous is None:
                log.debug("plugin %s: %s runs %s", self.name, watcher, state[0])
                continue
            if previous == state:
                continue
            what = "moved to " + state[0] if previous[0] != state[0] else f"{state[0]} changed"
            log.info("plugin %s: %s: %s, restarting it", self.name, watcher, what)
            await self.run_command("restart", name=watcher)
