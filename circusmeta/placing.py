"""``circusmeta add``: place a new watcher on the node a strategy picks, and say why."""
from __future__ import annotations

import argparse
import json
from typing import Any

from circus.cli.ctl_values import ValueProblem, convert_option

from .fanout import EXIT_REFUSED, exit_code
from .pool import STRATEGIES

__all__ = ["add_cli", "add_parser"]


class _Usage(Exception):
    pass


def add_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="circusmeta add", add_help=False,
                                usage="circusmeta add NAME CMD... [--node N | --strategy S] "
                                      "[--tag T] [--numprocesses K] [--spread N] [--start] "
                                      "[--option key=value ...]")
    p.add_argument("name")
    p.add_argument("cmd", nargs="+")
    p.add_argument("--strategy", choices=STRATEGIES)
    p.add_argument("--numprocesses", type=int)
    p.add_argument("--spread", type=int, default=1)
    p.add_argument("--start", action="store_true")
    p.add_argument("--option", action="append", default=[], metavar="KEY=VALUE")

    def error(message: str) -> Any:
        raise _Usage(message)
    p.error = error  # type: ignore[method-assign]
    return p


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


async def add_cli(ctx: Any, pool: Any, words: list[str], nodes: list[str],
                  tags: list[str]) -> int:
    from .cli import Usage
    try:
        ns = add_parser().parse_intermixed_args(words)
        options = _options(ns.option)
    except _Usage as exc:
        raise Usage(str(exc)) from None
    if len(nodes) > 1:
        raise Usage("add takes one --node (or none, and a --strategy)")
    if nodes and (ns.strategy or ns.spread != 1):
        raise Usage("--node places the watcher itself: no --strategy or --spread with it")
    if len(tags) > 1:
        raise Usage("add takes one --tag")
    if ns.numprocesses is not None and ns.numprocesses < 0:
        raise Usage("--numprocesses must be >= 0")
    result = await pool.add(ns.name, " ".join(ns.cmd), node=nodes[0] if nodes else None,
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
