"""``circusmeta``: run a pool of circusd nodes as one, from the command line (``--help``
prints :data:`circusmeta.usage.HELP`; this docstring is for the code's readers).

::

    circusmeta [--pool FILE] [--json] [--timeout S] [--log-dir D] COMMAND [ARGS] [--node N | --tag T | --all]

- ``nodes`` — each node's state (active / unresponsive / not_available), address, tags, load,
  memory, watchers and how many are in trouble, processes, round trip (``control.py``);
- ``status``, ``list``, ``stats`` — merged across the pool, every row keyed by node; ``tail``
  — the nodes' last output lines (``tail.py``);
- ``add NAME CMD [--node N | --strategy S] [--tag T] [--numprocesses K] [--spread N] [--start]
  [--option key=value ...]`` — place a new watcher;
- ``restart|reload|stop|start --rolling [--batch N] TARGET`` — node after node (``rolling.py``);
- ``top``, ``proxy``, ``discover`` — the merged live view, the republisher, multicast discovery;
- any other control command — fanned out in parallel, a result per node. A command that changes
  something needs ``--node``, ``--tag`` or ``--all`` (nothing is changed on every node by
  omission); read-only ones default to every node.

Exit codes: 0 all ok, 1 nothing reachable, 2 usage or pool error (a missing or malformed key
file too), 3 no node did it: the nodes that answered refused (e.g. ``forbidden`` for this
client's role), 4 partial. A node
whose CURVE handshake fails is not_available. With a log directory, every run that changes
something leaves an audit file.

Imports are lazy: ``--version`` and ``--help`` load no ZeroMQ; the plain fan-out commands
(``status``, ``nodes``, any control command) run without an event loop (no asyncio); only the
commands that need one (``add``, ``tail``, ``top``, ``proxy``, ``discover``, ``--rolling``) load it.
"""
from __future__ import annotations

import argparse
import os
import sys
from typing import Any, Sequence, TextIO

from circus import __version__
from circus.records import Factory, Record, record

from .errors import EXIT_OK, EXIT_USAGE, UsageError

__all__ = ["main", "Context", "Usage"]

#: the commands that run on an event loop; the others are plain fan-outs, run blocking
ASYNC_COMMANDS = ("add", "tail", "top", "proxy", "discover", "prometheus-sd")


# defined outside this module: ``python -m circusmeta.cli`` runs it as __main__, and the
# subcommand modules must raise the very class main() catches
Usage = UsageError


@record(frozen=False)
class Context(Record):
    """What a subcommand needs: the pool file, output, the global flags, the audit hook."""

    pool_path: str | None
    json: bool = False
    timeout: float | None = None
    log_dir: str | None = None
    out: TextIO = Factory(lambda: sys.stdout)
    err: TextIO = Factory(lambda: sys.stderr)
    argv: list[str] = Factory(list)
    #: the whole command line, without the program's name (a resume command is made from it)
    command_line: list[str] = Factory(list)

    def print(self, text: str = "") -> None:
        print(text, file=self.out, flush=True)

    def warn(self, text: str) -> None:
        print(text, file=self.err, flush=True)

    def audit(self, pool: Any, command: str, results: dict, code: int,
              extra: dict | None = None) -> None:
        log_dir = self.log_dir or pool.config.meta.log_dir
        if not log_dir:
            return
        from .audit import write_audit
        try:
            path = write_audit(log_dir, command, self.argv, results, code, extra)
        except OSError as exc:
            self.warn(f"circusmeta: cannot write the audit file in {log_dir}: {exc}")
            return
        self.warn(f"audit: {path}")


def _global_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="circusmeta", add_help=False,
                                usage="circusmeta [options] COMMAND [ARGS] [--node N | --tag T | "
                                      "--all]",
                                description="Run a pool of circusd nodes as one.")
    p.add_argument("--pool", help="pool file (default: $CIRCUSMETA_POOL, "
                                  "~/.config/circus/pool.ini, /etc/circus/pool.ini)")
    p.add_argument("--json", action="store_true", help="print results as JSON")
    p.add_argument("--timeout", type=float, help="per-node deadline in seconds ([meta] timeout)")
    p.add_argument("--log-dir", dest="log_dir", help="audit directory ([meta] log_dir)")
    p.add_argument("--node", action="append", default=[], help="only this node (repeatable)")
    p.add_argument("--tag", action="append", default=[], help="only nodes with this tag")
    p.add_argument("--all", action="store_true", help="every node of the pool")
    p.add_argument("--help", "-h", action="store_true")
    p.add_argument("--version", action="store_true")
    p.add_argument("command", nargs="?")
    p.add_argument("words", nargs=argparse.REMAINDER)

    def error(message: str) -> Any:
        raise Usage(message)
    p.error = error  # type: ignore[method-assign]
    return p


def take_selection(words: list[str]) -> tuple[list[str], list[str], list[str], bool]:
    """Pull ``--node N`` / ``--tag T`` (repeatable, ``--node=N`` too) and ``--all`` out of a
    command's words: (rest, nodes, tags, all)."""
    rest, nodes, tags, every = [], [], [], False
    i = 0
    while i < len(words):
        word = words[i]
        for flag, into in (("--node", nodes), ("--tag", tags)):
            if word == flag:
                if i + 1 >= len(words):
                    raise Usage(f"{flag} needs a value")
                into.append(words[i + 1])
                i += 1
                break
            if word.startswith(flag + "="):
                into.append(word.split("=", 1)[1])
                break
        else:
            if word == "--all":
                every = True
            else:
                rest.append(word)
        i += 1
    return rest, nodes, tags, every


#: run as the console script (``sys.argv``): the process ends when main returns
_CONSOLE = False


def main(argv: Sequence[str] | None = None) -> int:
    global _CONSOLE
    _CONSOLE = argv is None
    args = list(sys.argv[1:] if argv is None else argv)
    try:
        ns = _global_parser().parse_args(args)
    except Usage as exc:
        print(f"circusmeta: {exc}", file=sys.stderr)
        return EXIT_USAGE
    if ns.version:
        print(f"circusmeta {__version__}")
        return EXIT_OK
    try:
        return _main(ns, args)
    except BrokenPipeError:                # `circusmeta status | head`: the reader left
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_OK


def _known_commands() -> list[str]:
    from circus.protocol import COMMANDS

    from .usage import LOCAL_COMMANDS
    return sorted(set(LOCAL_COMMANDS) | {c for c in COMMANDS if c not in _NOT_FANNED_OUT})


#: circusctl commands that make no sense across a pool
_NOT_FANNED_OUT = ("listen", "ipython")


def _help(ctx: "Context", words: list[str]) -> int:
    from .usage import HELP, unknown_command
    if not words:
        ctx.print(HELP.rstrip())
        return EXIT_OK
    command = words[0].lower()
    if command not in _known_commands():
        raise Usage(unknown_command(command, _known_commands()))
    if command == "help":
        ctx.print(HELP.rstrip())
        return EXIT_OK
    if command == "add":                   # add's own parser (placing.py) has no --help
        from .placing import add_parser
        ctx.print(add_parser().format_help().rstrip())
        return EXIT_OK
    return -1                              # the command's own --help


def _main(ns: argparse.Namespace, args: list[str] | None = None) -> int:
    from .usage import HELP, unknown_command
    if ns.help:
        print(HELP.rstrip())
        return EXIT_OK
    if not ns.command:
        usage = HELP.split("\n\n", 1)[0]
        print(f"{usage}\ncircusmeta: which command? 'circusmeta --help' lists them",
              file=sys.stderr)
        return EXIT_USAGE
    command = ns.command.lower()
    if command in _NOT_FANNED_OUT:
        print(f"circusmeta: {command} is not run across a pool: 'circusctl --pool FILE --node N "
              f"{command}' on one node" + (", or 'circusmeta proxy' for the pool's events"
                                           if command == "listen" else ""), file=sys.stderr)
        return EXIT_USAGE
    if command not in _known_commands():
        print(f"circusmeta: {unknown_command(command, _known_commands())}", file=sys.stderr)
        return EXIT_USAGE
    ctx = Context(ns.pool, ns.json, ns.timeout, ns.log_dir, argv=list(ns.words),
                  command_line=list(args or ()))
    words: list[str] = []
    for node in ns.node:                     # given before the command: same as after it
        words += ["--node", node]            # (first: after an add's ``--`` words are literal)
    for tag in ns.tag:
        words += ["--tag", tag]
    if ns.all:
        words.append("--all")
    words += ns.words
    if command == "help":
        try:
            code = _help(ctx, list(ns.words))
        except Usage as exc:
            ctx.warn(f"circusmeta help: {exc}")
            return EXIT_USAGE
        if code >= 0:
            return code
        command, words = ns.words[0].lower(), [*ns.words[1:], "--help"]
    from circus.config.errors import ConfigError
    try:
        if command in ASYNC_COMMANDS or "--rolling" in words:
            import asyncio
            return asyncio.run(_run(ctx, command, words))
        return _run_blocking(ctx, command, words)
    except Usage as exc:
        ctx.warn(f"circusmeta {ns.command}: {exc}")
        return EXIT_USAGE
    except ConfigError as exc:
        ctx.warn(str(exc))
        return getattr(exc, "exit_code", EXIT_USAGE)   # srv.PoolUnavailable: 1
    except KeyboardInterrupt:
        return 130


def _open(ctx: Context) -> Any:
    from .api import Pool
    from .pool import pool_warnings

    pool = Pool.from_file(ctx.pool_path)
    for warning in pool_warnings(pool.config):
        ctx.warn(f"warning: {warning}")
    return pool


def _selection(pool: Any, words: list[str]) -> tuple[list[str], list[str], bool]:
    """(the command's own words, the selected nodes, whether the selection was explicit)."""
    from .errors import SelectionError

    rest, nodes, tags, every = take_selection(words)
    try:
        selected = pool.select(nodes or None, tags or None)
    except SelectionError as exc:
        raise Usage(str(exc)) from None
    return rest, selected, bool(nodes or tags or every)


def _exiting() -> bool:
    """Whether the process ends when this command is done (not a caller of main())."""
    return _CONSOLE or __name__ == "__main__"


def _run_blocking(ctx: Context, command: str, words: list[str]) -> int:
    """The plain fan-outs: ``nodes`` and every control command (no event loop)."""
    pool = _open(ctx)
    try:
        rest, selected, explicit = _selection(pool, words)
        if command == "nodes":
            from .control import nodes_cli
            return nodes_cli(ctx, pool, selected, rest)
        from .control import control_cli
        return control_cli(ctx, pool, command, rest, selected, explicit)
    finally:
        pool.close(exiting=_exiting())


async def _run(ctx: Context, command: str, words: list[str]) -> int:
    if command == "discover":              # needs no pool file
        from .discover import discover_cli
        return await discover_cli(ctx, words)
    pool = _open(ctx)
    try:
        if command == "add":                 # its command's words are its own (``--``)
            from .placing import add_cli
            return await add_cli(ctx, pool, words)
        if command == "prometheus-sd":       # asks no node: the selection as given
            from .promsd import promsd_cli
            _selection(pool, words)          # an unknown node or tag is a usage error
            rest, nodes, tags, _ = take_selection(words)
            return await promsd_cli(ctx, pool, nodes, tags, rest)
        rest, selected, explicit = _selection(pool, words)
        if command == "tail":
            from .tail import tail_cli
            return await tail_cli(ctx, pool, selected, rest)
        if command == "top":
            from .live import top_cli
            return await top_cli(ctx, pool, selected if explicit else None, rest)
        if command == "proxy":
            from .live import proxy_cli
            return await proxy_cli(ctx, pool, selected, rest)
        from .rollingcli import rolling_cli
        rest.remove("--rolling")
        return await rolling_cli(ctx, pool, command, rest, selected, explicit)
    finally:
        pool.close(exiting=_exiting())


if __name__ == "__main__":
    sys.exit(main())
