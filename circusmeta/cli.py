"""``circusmeta``: run a pool of circusd nodes as one, from the command line.

::

    circusmeta [--pool FILE] [--json] [--timeout S] [--log-dir D] COMMAND [ARGS] [--node N | --tag T | --all]

- ``nodes`` — each node's state (active / unresponsive / not_available), address, tags, load,
  memory, watchers, processes, round trip;
- ``status``, ``list``, ``stats`` — merged across the pool, every row keyed by node;
- ``add NAME CMD [--node N | --strategy S] [--tag T] [--numprocesses K] [--spread N] [--start]
  [--option key=value ...]`` — place a new watcher;
- ``restart|reload|stop|start --rolling [--batch N] TARGET`` — node after node (``rolling.py``);
- ``top``, ``proxy``, ``discover`` — the merged live view, the republisher, multicast discovery;
- any other control command — fanned out in parallel, a result per node. A command that changes
  something needs ``--node``, ``--tag`` or ``--all`` (nothing is changed on every node by
  omission); read-only ones default to every node.

Exit codes: 0 all ok, 1 nothing reachable, 2 usage or pool error (a missing or malformed key
file too), 3 every node refused (e.g. ``forbidden`` for this client's role), 4 partial. A node
whose CURVE handshake fails is not_available. With a log directory, every run that changes
something leaves an audit file.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import sys
from dataclasses import dataclass, field
from typing import Any, Sequence, TextIO

from circus import __version__
from circus.config import ConfigError

from circus.stats.toprows import human_bytes

from .api import UsageError
from .fanout import EXIT_OK, EXIT_USAGE, NodeResult, exit_code

__all__ = ["main", "Context", "Usage"]



# defined outside this module: ``python -m circusmeta.cli`` runs it as __main__, and the
# subcommand modules must raise the very class main() catches
Usage = UsageError


@dataclass
class Context:
    """What a subcommand needs: the pool file, output, the global flags, the audit hook."""

    pool_path: str | None
    json: bool = False
    timeout: float | None = None
    log_dir: str | None = None
    out: TextIO = field(default_factory=lambda: sys.stdout)
    err: TextIO = field(default_factory=lambda: sys.stderr)
    argv: list[str] = field(default_factory=list)

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


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    try:
        ns = _global_parser().parse_args(args)
    except Usage as exc:
        print(f"circusmeta: {exc}", file=sys.stderr)
        return EXIT_USAGE
    if ns.version:
        print(f"circusmeta {__version__}")
        return EXIT_OK
    if ns.help or not ns.command:
        print(__doc__.strip())
        return EXIT_OK if ns.help else EXIT_USAGE
    ctx = Context(ns.pool, ns.json, ns.timeout, ns.log_dir, argv=list(ns.words))
    words: list[str] = []
    for node in ns.node:                     # given before the command: same as after it
        words += ["--node", node]            # (first: after an add's ``--`` words are literal)
    for tag in ns.tag:
        words += ["--tag", tag]
    if ns.all:
        words.append("--all")
    words += ns.words
    try:
        return asyncio.run(_run(ctx, ns.command.lower(), words))
    except Usage as exc:
        ctx.warn(f"circusmeta {ns.command}: {exc}")
        return EXIT_USAGE
    except ConfigError as exc:
        ctx.warn(str(exc))
        return EXIT_USAGE
    except KeyboardInterrupt:
        return 130


async def _run(ctx: Context, command: str, words: list[str]) -> int:
    from .api import Pool, SelectionError

    if command == "discover":              # needs no pool file
        from .discover import discover_cli
        return await discover_cli(ctx, words)
    pool = Pool.from_file(ctx.pool_path)
    from .pool import key_warnings
    for warning in key_warnings(pool.config):
        ctx.warn(f"warning: {warning}")
    try:
        if command == "add":                 # its command's words are its own (``--``)
            from .placing import add_cli
            return await add_cli(ctx, pool, words)
        rest, nodes, tags, every = take_selection(words)
        try:
            selected = pool.select(nodes or None, tags or None)
        except SelectionError as exc:
            raise Usage(str(exc)) from None
        explicit = bool(nodes or tags or every)
        if command == "nodes":
            return await _nodes(ctx, pool, selected, rest)
        if command == "top":
            from .live import top_cli
            return await top_cli(ctx, pool, selected if explicit else None, rest)
        if command == "proxy":
            from .live import proxy_cli
            return await proxy_cli(ctx, pool, selected, rest)
        if "--rolling" in rest:
            from .rolling import rolling_cli
            rest.remove("--rolling")
            return await rolling_cli(ctx, pool, command, rest, selected if explicit else None)
        return await _control(ctx, pool, command, rest, selected, explicit)
    finally:
        pool.close()


# -- nodes ---------------------------------------------------------------------------------------

async def _nodes(ctx: Context, pool: Any, selected: list[str], rest: list[str]) -> int:
    if rest:
        raise Usage(f"nodes takes no argument, got {' '.join(rest)}")
    results = await pool.nodes(selected)
    code = exit_code(results.values())
    if ctx.json:
        ctx.print(json.dumps({"nodes": [_node_row(pool, r) for r in results.values()],
                              "exit": code}))
        return code
    header = ("NODE", "STATE", "ADDRESS", "TAGS", "LOAD", "MEMORY", "WATCHERS", "PROCS", "RTT")
    rows = [header]
    for r in results.values():
        row = _node_row(pool, r)
        info = row.get("info") or {}
        mem = (f"{human_bytes(info['mem_total'] - info['mem_available'])}/{human_bytes(info['mem_total'])}"
               if info.get("mem_total") else "-")
        rows.append((r.node + (f" (reports {r.reported_name!r})" if r.name_mismatch else ""),
                     r.state, r.endpoint, ",".join(pool.config.nodes[r.node].tags) or "-",
                     " ".join(f"{x:.2f}" for x in info.get("load", ())) or "-", mem,
                     str(info.get("watchers", "-")), str(info.get("processes", "-")),
                     f"{r.rtt * 1000:.1f}ms" if r.rtt is not None else "-"))
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    for row in rows:
        ctx.print("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip())
    for r in results.values():
        if r.state != "active":
            ctx.warn(f"{r.node}: {r.state}: {r.reason}")
    return code


def _node_row(pool: Any, r: NodeResult) -> dict:
    row: dict[str, Any] = {"node": r.node, "state": r.state, "endpoint": r.endpoint,
                           "tags": list(pool.config.nodes[r.node].tags), "rtt": r.rtt}
    if r.ok:
        row["info"] = {k: v for k, v in r.reply.items() if k not in ("status", "id", "time")}
    elif r.reply is not None:
        row["error"] = r.reason
    else:
        row["error"] = r.error
    if r.name_mismatch:
        row["reported_name"] = r.reported_name
    return row


# -- control commands ----------------------------------------------------------------------------

def _merged(command: str, results: dict[str, NodeResult]) -> list[str] | None:
    """``status``/``list``/``stats`` as rows keyed by node (None: print per node)."""
    lines: list[str] = []
    for name, r in results.items():
        if not r.ok:
            continue
        reply = r.reply
        if command == "status" and "statuses" in reply:
            details = reply.get("details") or {}
            for watcher, state in sorted(reply["statuses"].items()):
                why = (details.get(watcher) or {}).get("reason")
                lines.append(f"{name}  {watcher}  {state}" + (f"  ({why})" if why else ""))
        elif command == "list" and "watchers" in reply:
            lines += [f"{name}  {w}" for w in reply["watchers"]]
        elif command == "stats" and "infos" in reply:
            for watcher, infos in sorted(reply["infos"].items()):
                for pid, info in sorted(infos.items()):
                    if isinstance(info, dict):
                        age = info.get("age")
                        age_text = f"{age:.0f}s" if isinstance(age, (int, float)) else str(age)
                        lines.append(f"{name}  {watcher}  {pid}  cpu {info.get('cpu')}%  "
                                     f"mem {info.get('mem')}%  rss {info.get('mem_info1')}  "
                                     f"age {age_text}")
        else:
            return None
    return lines


async def _control(ctx: Context, pool: Any, command: str, rest: list[str],
                   selected: list[str], explicit: bool) -> int:
    from circus.cli.ctl_forms import HelpRequested, UsageError, build_request
    from circus.cli.ctl_output import render
    from circus.protocol import COMMANDS

    spec = COMMANDS.get(command)
    if spec is None or command in ("listen", "ipython"):
        raise Usage(f"unknown command {command!r} (nodes, status, list, stats, add, top, proxy, "
                    f"discover, or a circusctl command)")
    try:
        props, _ = build_request(command, rest)
    except HelpRequested:
        from circus.cli.ctl_forms import command_help
        ctx.print(command_help(command).replace("circusctl", "circusmeta"))
        return EXIT_OK
    except UsageError as exc:
        raise Usage(exc.message) from None
    changes = not spec.readonly
    if changes and not explicit:
        raise Usage(f"{command} changes the nodes: say where with --node N, --tag T or --all")
    timeout = ctx.timeout
    if timeout is None and props.get("waiting"):
        timeout = max(pool.config.meta.timeout, 30.0)     # a waiting command takes its time
    results = await pool.call(command, nodes=selected, deadline=timeout, **props)
    code = exit_code(results.values())
    if ctx.json:
        ctx.print(json.dumps({"command": command, "exit": code,
                              "nodes": {n: r.to_dict() for n, r in results.items()}}))
    else:
        merged = _merged(command, results)
        if merged is not None:
            for line in merged:
                ctx.print(line)
        for name, r in results.items():
            if r.ok and merged is not None:
                continue
            if r.reply is not None:
                text, _ = render(command, r.reply, props)
            else:
                text = f"{r.state}: {r.reason}"
            lines = text.splitlines() or [""]
            if len(lines) == 1:
                ctx.print(f"{name}: {lines[0]}")
            else:
                ctx.print(f"{name}:")
                for line in lines:
                    ctx.print(f"  {line}")
        for r in results.values():
            if r.name_mismatch:
                ctx.warn(f"{r.node}: the circusd there calls itself {r.reported_name!r}")
    if changes:
        ctx.audit(pool, command, results, code, {"properties": props})
    return code


if __name__ == "__main__":
    sys.exit(main())
