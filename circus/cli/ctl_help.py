"""circusctl's help for people: the command list, each command's usage, arguments and flags
in user terms (what it does and prints; the protocol's reply fields stay in
``docs/reference/commands.rst``), and "did you mean" for a mistyped command.
"""
from __future__ import annotations

import argparse
from typing import Iterable

from circus.cli.ctl_forms import (CLI_ONLY, UsageError, clean_doc, command_names, command_parser,
                                  form, global_parser)
from circus.protocol import COMMANDS

__all__ = ["UnknownCommand", "suggest", "did_you_mean", "unknown_command", "summary",
           "description", "command_help", "main_help", "CLI_DOCS"]

#: what a command does and prints, in the operator's terms (replaces the protocol's doc)
CLI_DOCS: dict[str, str] = {
    "status": (
        "Without a name (or with a glob such as 'web*'): every watcher. On a terminal, a table "
        "of each watcher's state, processes running of wanted, pids, uptime, restarts and what "
        "is wrong; otherwise (a pipe, a script) Circus 0.19's 'name: state' lines, what is wrong "
        "in parentheses: 'crasher: active (backoff: ...)'. With a name: its state; on a "
        "terminal also its processes and, when it is in trouble, its last output lines. "
        "--table or --plain choose the view.\n\n"
        "Exit status: 0 when every watcher shown is active with nothing wrong, 3 otherwise "
        "(stopped, starting, in backoff, exited with an error, fatal, unknown)."),
    "tail": (
        "circusd keeps the last lines of every watcher. With a name: <time> [<pid>] <stream> | "
        "<line>. Without a name, every watcher's lines, merged by time, each after its "
        "watcher's name. --follow then prints new lines as they come, until Ctrl-C."),
    "processes": (
        "One row per process, of every watcher or of one: wid, pid, state, uptime, restarts, "
        "last exit and, for a process that is not running, why."),
    "stats": (
        "A table of the processes' resource use: CPU and memory percent, RSS, VMS, age and "
        "command, children under their parent. With a pid, that process only."),
    "dstats": "circusd's own resource use, as a stats table.",
    "nodeinfo": "This node's name, version, pid, uptime, load, memory, watchers and processes.",
    "tool": (
        "Runs the tool (a [tool:NAME] section of circusd's configuration) with ARGS, prints its "
        "output as it comes, and exits with the tool's own exit status (124: killed at its "
        "timeout; 128+N: killed by signal N)."),
    "quit": (
        "Stops every watcher, then circusd exits. In the interactive shell 'quit' leaves the "
        "shell instead: 'shutdown' stops circusd there, after asking."),
    "listen": (
        "Prints each event as 'topic  key=value ...' (with --json, one JSON object per line) "
        "until Ctrl-C. A topic is a prefix: 'watcher.web.' for web's events, 'output.' for "
        "output lines. Here --endpoint names the events endpoint (default "
        "tcp://127.0.0.1:5556), as in Circus 0.19."),
    "incr": "With --waiting, prints the new number of processes (without, ok).",
    "decr": ("With --waiting, prints the new number of processes (without, ok). The oldest "
             "processes go first; asking for more than there are stops at 0 and says so."),
    "start": (
        "With --waiting, answers once the processes started (and are ready, for a watcher with "
        "a readiness check); a process that cannot be started, or exits at once, makes it fail "
        "with the reason and its last output lines (exit 3)."),
    "restart": (
        "With --waiting, answers once the new processes started; a process that cannot be "
        "started, or exits at once, makes it fail with the reason (exit 3). --graceful starts "
        "the replacements and waits until they are ready before stopping the old ones."),
    "reload": "With --waiting, answers once done, or fails with the reason (exit 3).",
    "reloadconfig": (
        "Re-reads circusd's configuration file and applies what changed. A file with errors "
        "changes nothing and the errors are printed (exit 3). --dry-run prints what would "
        "change."),
    "rename": "The new name holds until circusd restarts (it is not written anywhere).",
    "completion": (
        "Prints the completion script for bash, zsh or fish; see the circusctl page of the "
        "docs for where to install it. Watcher names complete by asking circusd "
        "('circusctl list')."),
}

_CLI_POSITIONALS = {"topic": "event topic prefix (default: every event)",
                    "command": "a command name",
                    "shell": "bash, zsh or fish"}


class UnknownCommand(UsageError):
    """A word that is not a command: said in one line, with the likely command."""

    def __str__(self) -> str:
        return f"{self.prog}: {self.message}"


def _distance(a: str, b: str) -> int:
    """Edits (insert, delete, substitute, swap two neighbours) from ``a`` to ``b``."""
    rows = [list(range(len(b) + 1))]
    for i, ca in enumerate(a, 1):
        row = [i]
        for j, cb in enumerate(b, 1):
            cost = min(rows[-1][j] + 1, row[j - 1] + 1, rows[-1][j - 1] + (ca != cb))
            if i > 1 and j > 1 and ca == b[j - 2] and a[i - 2] == cb:
                cost = min(cost, rows[-2][j - 2] + 1)
            row.append(cost)
        rows.append(row)
    return rows[-1][-1]


def suggest(word: str, choices: Iterable[str], limit: int = 3) -> list[str]:
    """The choices ``word`` most likely meant: the nearest by edits (a swap of two letters
    wins), else those it is the start of; none when nothing is near."""
    word = word.lower()
    choices = sorted(set(choices))
    if not word:
        return []
    allowed = 1 if len(word) <= 4 else 2
    scored = [(_distance(word, c), c) for c in choices]
    best = min((d for d, _ in scored), default=allowed + 1)
    if best <= allowed:
        near = [c for d, c in scored if d == best]
        anagrams = [c for c in near if sorted(c) == sorted(word)]
        if len(anagrams) == 1:
            return anagrams
        near.sort(key=lambda c: (abs(len(c) - len(word)), c))
        return near[:limit]
    if len(word) >= 3:
        return [c for c in choices if c.startswith(word)][:limit]
    return []


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """`` (did you mean 'status'?)``, `` (did you mean 'start' or 'stats'?)`` or ``""``."""
    found = suggest(word, choices)
    if not found:
        return ""
    quoted = [repr(c) for c in found]
    text = quoted[0] if len(quoted) == 1 else ", ".join(quoted[:-1]) + " or " + quoted[-1]
    return f" (did you mean {text}?)"


def unknown_command(word: str, what: str = "unknown command", extra: Iterable[str] = (),
                    prog: str = "circusctl") -> UnknownCommand:
    names = [*command_names(), *extra]
    hint = did_you_mean(word, names)
    if not hint:
        hint = f" (commands: {', '.join(sorted(set(names)))})"
    return UnknownCommand(f"{what} {word!r}{hint}", prog=prog)


def summary(name: str) -> str:
    if name in CLI_ONLY:
        return CLI_ONLY[name][0]
    return COMMANDS[name].summary


def description(name: str) -> str:
    lines = [summary(name) + "."]
    command = COMMANDS.get(name)
    doc = CLI_DOCS.get(name) or (clean_doc(command.doc) if command is not None else "")
    if doc:
        lines += ["", doc]
    positionals = form(name)
    if positionals:
        props = {p.name: p for p in command.props} if command else {}
        lines += ["", "arguments:"]
        for pos in positionals:
            prop = props.get(pos.prop)
            text = clean_doc(prop.doc) if prop else _CLI_POSITIONALS.get(pos.prop, "")
            if name == "keygen" and pos.prop == "name":
                text = "the key's name: the files are NAME.key and NAME.key_secret"
            if prop is not None and prop.default not in (None, False, {}, (), []):
                text += f" (default: {prop.default})"
            if pos.many == "pairs":
                text = "option names and values; values are converted per option"
            lines.append(f"  {pos.label:<22}{text}")
    return "\n".join(lines)


def command_help(name: str) -> str:
    parser = command_parser(name)
    parser.description = description(name)
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    return _wrap_description(parser.format_help())


def _wrap_description(text: str) -> str:
    """Long description paragraphs wrapped at 79 columns (the usage and flags are already)."""
    import textwrap
    out = []
    for line in text.split("\n"):
        if line.startswith("usage:"):
            out.append(line)
        elif len(line) > 79 and not line.startswith(" "):
            out += textwrap.wrap(line, 79, break_on_hyphens=False) or [""]
        elif len(line) > 79 and line.startswith("  ") and not line.lstrip().startswith("-"):
            head = len(line) - len(line.lstrip())
            indent = " " * (head + 22) if line[head:head + 1] in "<[" else " " * head
            out += textwrap.wrap(line, 79, subsequent_indent=indent, break_on_hyphens=False)
        else:
            out.append(line)
    return "\n".join(out)


def main_help() -> str:
    names = command_names()
    width = max(len(n) for n in names) + 2
    parser = global_parser()
    parser.description = "Controls a Circus daemon\n\nCommands:\n" + "\n".join(
        f"  {name:<{width}}{summary(name)}" for name in names) + \
        "\n\nRun 'circusctl help COMMAND' for a command's arguments and flags." \
        "\nWithout a command: an interactive shell ('quit' or Ctrl-D leaves it)."
    return parser.format_help()
