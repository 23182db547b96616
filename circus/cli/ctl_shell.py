"""circusctl's interactive shell: ``(circusctl)`` prompt, help, readline history and completion.

Each line is run exactly as ``circusctl <line>`` would run it, through the same session (one
client kept for the whole shell), with two exceptions that keep an operator from stopping
everything by accident:

* ``quit`` and ``exit`` (and EOF, Ctrl-D) leave the shell; circusd goes on;
* ``shutdown [--keep] [--waiting] [--yes]`` stops circusd (0.19's ``quit`` command), after
  asking ``Really stop circusd and every watcher? [y/N]`` unless ``--yes``.

Outside the shell ``circusctl quit`` keeps 0.19's meaning. Tab completes command names, and
watcher names for commands whose first argument is a watcher. An empty line does nothing
(``cmd``'s default would repeat the last command, which is wrong for ``incr``). A mistyped
command gets "did you mean".
"""
from __future__ import annotations

import cmd
import os
import shlex
import sys
import time
from typing import Any

from circus.cli.ctl_forms import command_names, watcher_commands

__all__ = ["CtlShell", "run_shell", "HISTORY_FILE", "SHELL_COMMANDS", "CONFIRM"]

HISTORY_FILE = os.path.join(os.path.expanduser("~"), ".circusctl_history")
HISTORY_LENGTH = 1000
_NAMES_TTL = 2.0
#: the shell's own commands, next to circusctl's
SHELL_COMMANDS = ("exit", "shutdown")
CONFIRM = "Really stop circusd and every watcher? [y/N] "
_LEAVE_HINT = ("in the shell, quit and exit leave the shell (circusd goes on); 'shutdown' stops "
               "circusd and every watcher")


def _takes_watcher(command: str) -> bool:
    return command in watcher_commands()


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
        if words[0] in ("quit", "exit"):
            if len(words) == 1:
                return True
            self.session.print(f"*** {_LEAVE_HINT}", error=True)
            return False
        if words[0] == "shutdown":
            self.shutdown(words[1:])
            return False
        if words[0] not in command_names():
            from circus.cli.ctl_help import did_you_mean
            hint = did_you_mean(words[0], [*command_names(), *SHELL_COMMANDS]) or \
                " (type help for the commands)"
            self.session.print(f"*** unknown command {words[0]!r}{hint}", error=True)
            return False
        self.session.run(words[0], words[1:])
        return False

    def shutdown(self, words: list[str]) -> None:
        """Stop circusd (0.19's ``quit``), after a yes."""
        rest = [w for w in words if w not in ("--yes", "-y")]
        if len(rest) == len(words):
            self.stdout.write(CONFIRM)
            self.stdout.flush()
            answer = self.stdin.readline() if not self.use_rawinput else _read()
            if answer.strip().lower() not in ("y", "yes"):
                self.stdout.write("circusd goes on\n")
                return
        self.session.run("quit", rest)

    def do_help(self, arg: str) -> bool:  # type: ignore[override]
        words = arg.split()
        if not words:
            self.stdout.write("Commands (type help <command>):\n")
            self.columnize(sorted({*command_names(), *SHELL_COMMANDS}), 78)
            self.stdout.write("\nquit, exit or Ctrl-D leave the shell (circusd goes on).\n"
                              "shutdown [--keep] [--waiting] stops circusd and every watcher "
                              "(it asks first; --yes does not).\n")
            return False
        if words == ["quit"] or words == ["exit"]:
            self.stdout.write("quit, exit: leave the shell (circusd goes on)\n")
            return False
        if words == ["shutdown"]:
            self.stdout.write("shutdown [--keep] [--waiting] [--yes]: stop every watcher, then "
                              "circusd exits (circusctl quit outside the shell); asks first "
                              "unless --yes\n")
            return False
        self.session.run("help", words)
        return False

    def do_EOF(self, arg: str) -> bool:
        return True

    def postloop(self) -> None:
        self.stdout.write("\n")

    # -- completion -------------------------------------------------------------------------------

    def completenames(self, text: str, *ignored: Any) -> list[str]:
        return [name for name in sorted({*command_names(), *SHELL_COMMANDS})
                if name.startswith(text)]

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


def _read() -> str:
    try:
        return input()
    except EOFError:
        return ""


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
