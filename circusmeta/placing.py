"""``circusmeta add``: place a new watcher on the node a strategy picks, and say why."""
from __future__ import annotations

import argparse
import difflib
import json
import shlex
from typing import Any

from circus.cli.ctl_values import ValueProblem, convert_option

from .fanout import EXIT_REFUSED, exit_code
from .pool import STRATEGIES

__all__ = ["add_cli", "add_parser", "split_words", "ADD_USAGE"]


class _Usage(Exception):
    pass


ADD_USAGE = ("circusmeta add NAME CMD... [--node N | --strategy S] [--tag T] [--numprocesses K] "
             "[--spread N] [--start] [--option key=value ...]")

ADD_HELP = """Words after NAME that are not options of add are the command, each word kept as
given: ``add api python3 -m http.server 8201 --tag web --start`` runs ``python3 -m http.server
8201``; ``add job sh -c "exec worker --fast"`` gives sh one argument. After ``--`` every word is
the command's, options of add included. A single word is the whole command line."""


def add_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="circusmeta add", add_help=False, usage=ADD_USAGE,
                                allow_abbrev=False)
    p.add_argument("name")
    p.add_argument("cmd", nargs="+")
    p.add_argument("--node", action="append", default=[])
    p.add_argument("--tag", action="append", default=[])
    p.add_argument("--all", action="store_true")
    p.add_argument("--strategy", choices=STRATEGIES)
    p.add_argument("--numprocesses", type=int)
    p.add_argument("--spread", type=int, default=1)
    p.add_argument("--start", action="store_true")
    p.add_argument("--option", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("-h", "--help", action="store_true")

    def error(message: str) -> Any:
        raise _Usage(message)
    p.error = error  # type: ignore[method-assign]
    return p


def split_words(parser: argparse.ArgumentParser,
                words: list[str]) -> tuple[list[str], list[tuple[str, str]]]:
    """``add NAME CMD...`` as circusctl reads it: the options of add may come anywhere; the first
    other word is NAME, every word after it that is not an option of add is the command's, as
    given (``-m``, ``--bind``...); after ``--`` every word is literal. Returns the words for the
    parser (options, NAME, ``--``, the command) and the command's words that look like a
    misspelt option of add, with that option (for a warning)."""
    if "--" in words:
        return words, []
    options = {opt: action for action in parser._actions for opt in action.option_strings}
    flags: list[str] = []
    head: list[str] = []
    tail: list[str] = []
    index = 0
    while index < len(words):
        word = words[index]
        action = options.get(word.split("=", 1)[0] if word.startswith("--") else word)
        if action is not None:
            takes = action.nargs is None and "=" not in word
            flags += words[index:index + (2 if takes else 1)]
            index += 2 if takes else 1
            continue
        if not head:
            if word.startswith("-") and word != "-":
                raise _Usage(f"unknown option {word} (before NAME; the command's own options "
                             f"come after NAME CMD)")
            head.append(word)
        else:
            tail.append(word)
        index += 1
    names = [opt for opt in options if opt.startswith("--")]
    suspicious = []
    for word in tail:
        close = difflib.get_close_matches(word.split("=", 1)[0], names, n=1, cutoff=0.75) \
            if word.startswith("--") else []
        if close:
            suspicious.append((word, close[0]))
    return flags + head + (["--"] + tail if tail else []), suspicious


def _options(items: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise _Usage(f"--option {item!r}: expected KEY=VALUE")
        try:
            out[key.strip()] = convert_option(key.strip(), value)
        except ValueProblem as exc:
            raise _Usage(f"--option {item!r}: {exc}") from None
    return out


async def add_cli(ctx: Any, pool: Any, words: list[str]) -> int:
    """``circusmeta add``: ``words`` are everything after ``add`` (the selection options given
    before ``add`` come first)."""
    from .api import SelectionError
    from .cli import Usage
    parser = add_parser()
    try:
        words, suspicious = split_words(parser, words)
        head = words[:words.index("--")] if "--" in words else words
        if "-h" in head or "--help" in head:
            ctx.print(f"usage: {ADD_USAGE}\n\n{ADD_HELP}")
            return 0
        ns = parser.parse_args(words)
        options = _options(ns.option)
    except _Usage as exc:
        raise Usage(str(exc)) from None
    nodes, tags = ns.node, ns.tag
    if ns.all:
        raise Usage("add places a watcher: no --all (--spread N puts copies on N nodes)")
    if len(nodes) > 1:
        raise Usage("add takes one --node (or none, and a --strategy)")
    if nodes and (ns.strategy or ns.spread != 1):
        raise Usage("--node places the watcher itself: no --strategy or --spread with it")
    if len(tags) > 1:
        raise Usage("add takes one --tag")
    if ns.numprocesses is not None and ns.numprocesses < 0:
        raise Usage("--numprocesses must be >= 0")
    try:
        pool.select(nodes or None, tags or None)
    except SelectionError as exc:
        raise Usage(str(exc)) from None
    for word, option in suspicious:
        ctx.warn(f"warning: {word} is given to the command (did you mean {option}?)")
    # one word: the whole command, quoted by the caller; several: each stays one word
    cmd = ns.cmd[0] if len(ns.cmd) == 1 else shlex.join(ns.cmd)
    result = await pool.add(ns.name, cmd, node=nodes[0] if nodes else None,
                            strategy=ns.strategy, tag=tags[0] if tags else None,
                            spread=ns.spread, numprocesses=ns.numprocesses, start=ns.start,
                            options=options)
    if result.refused:
        code = EXIT_REFUSED                  # the name exists, or no node can take it
        if ctx.json:
            ctx.print(json.dumps({"name": ns.name, "refused": result.refused,
                                  "existing": result.existing, "exit": code}))
        else:
            ctx.warn(f"circusmeta add: refused: {result.refused}")
        return code
    code = exit_code(result.results.values())
    if ctx.json:
        ctx.print(json.dumps({"name": ns.name, "exit": code, "unchecked": result.unchecked,
                              "placed": [{"node": c.node, "reason": c.reason,
                                          **result.results[c.node].to_dict()}
                                         for c in result.choices]}))
    else:
        for choice in result.choices:
            r = result.results[choice.node]
            what = "added" if r.ok else f"failed: {r.reason}"
            ctx.print(f"{ns.name} -> {choice.node}: {what} ({choice.reason})")
        for node in result.unchecked:
            ctx.warn(f"warning: {node} could not be asked whether it has {ns.name!r}")
    ctx.audit(pool, "add", result.results, code,
              {"name": ns.name, "placed": [c.node for c in result.choices]})
    return code
