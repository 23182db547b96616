"""circusctl's interactive shell: ``(circusctl)`` prompt, help, readline history and completion.

Each line is run exactly as ``circusctl <line>`` would run it, through the same session (one
client kept for the whole shell). Tab completes command names, and watcher names for commands
whose first argument is a watcher. An empty line does nothing (``cmd``'s default would repeat the
last command, which is wrong for ``incr``). EOF (Ctrl-D) leaves.
"""
from __future__ import annotations

import cmd
import os
import shlex
import sys
import time
from typing import Any

from circus.cli.ctl_forms import FORMS, command_names

__all__ = ["CtlShell", "run_shell", "HISTORY_FILE"]

HISTORY_FILE = os.path.join(os.path.expanduser("~"), ".circusctl_history")
HISTORY_LENGTH = 1000
_NAMES_TTL = 2.0


def _takes_watcher(command: str) -> bool:
    form = FORMS.get(command, ())
    return bool(form) and form[0].prop == "name"


class CtlShell(cmd.Cmd):
    prompt = "(circusctl) "

    def __init__(self, session: Any, stdin: Any = None, stdout: Any = None) -> None:
        super().__init__(stdin=stdin, stdout=stdout)
        if stdin is not None:
            self.use_rawinput = False
        self.session = session
        self._names: list[str] = []
        self._names_at = -_NAMES_TTL

    # -- running lines ----------------------------------------------------------------------------

    def emptyline(self) -> bool:
        return False

    def default(self, line: str) -> bool:
        try:
            words = shlex.split(line)
        except ValueError as exc:
            self.session.print(f"*** {exc}", error=True)
            return False
        if not words:
            return False
        if words[0] not in command_names():
            self.stdout.write(f"*** Unknown syntax: {line}\n")
            return False
        self.session.run(words[0], words[1:])
        return False

    def do_help(self, arg: str) -> bool:  # type: ignore[override]
        words = arg.split()
        if not words:
            self.stdout.write("Commands (type help <command>):\n")
            self.columnize(command_names(), 78)
            self.stdout.write("\nEOF (Ctrl-D) leaves the shell.\n")
            return False
        self.session.run("help", words)
        return False

    def do_EOF(self, arg: str) -> bool:
        return True

    def postloop(self) -> None:
        self.stdout.write("\n")

    # -- completion -------------------------------------------------------------------------------

    def completenames(self, text: str, *ignored: Any) -> list[str]:
        return [name for name in command_names() if name.startswith(text)]

    def complete_help(self, text: str, line: str, begidx: int, endidx: int) -> list[str]:
        return self.completenames(text)

    def completedefault(self, text: str, line: str, begidx: int, endidx: int) -> list[str]:
        words = line[:begidx].split()
        if len(words) != 1 or not _takes_watcher(words[0]):
            return []
        return [name for name in self.watcher_names() if name.startswith(text)]

    def watcher_names(self) -> list[str]:
        """Watcher names from circusd, cached briefly; nothing if circusd does not answer."""
        if time.monotonic() - self._names_at < _NAMES_TTL:
            return self._names
        from circus.client.errors import CallError
        from circus.client.wire import make_message

        try:
            reply = self.session.client(self.session.options).call(make_message("list"), timeout=1.0)
        except CallError:
            reply = None
        self._names = sorted(reply.get("watchers") or ()) if isinstance(reply, dict) else []
        self._names_at = time.monotonic()
        return self._names


def _setup_readline() -> Any:
    try:
        import readline
    except ImportError:
        return None
    readline.set_completer_delims(" \t\n")
    readline.set_history_length(HISTORY_LENGTH)
    try:
        readline.read_history_file(HISTORY_FILE)
    except OSError:
        pass
    return readline


def run_shell(session: Any, version: str) -> int:
    """Print the version and the status of every watcher, then read commands until EOF."""
    interactive = sys.stdin.isatty()
    readline = _setup_readline() if interactive else None
    print(version)
    session.run("status", [])
    shell = CtlShell(session)
    try:
        shell.cmdloop()
    except KeyboardInterrupt:
        sys.stdout.write("\n")
    finally:
        if readline is not None:
            try:
                readline.write_history_file(HISTORY_FILE)
            except OSError:
                pass
    return 0
