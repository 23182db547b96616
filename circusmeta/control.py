"""``circusmeta nodes`` and the fanned-out control commands (``status``, ``list``, ``stats``,
``start``, ``decr``, ... any circusctl command): one request per node, in parallel, a result
per node (the text is :mod:`circusmeta.report`'s). They block (``Pool.call_blocking``): no
event loop is needed for one round of requests.

A read-only command naming a watcher (``status web``, ``processes web``) asks the nodes that
*have* it: a node answering ``unknown_watcher`` is listed on stderr as not having it and does not
make the run partial, as long as some node answered otherwise. When none has it, every node's
refusal is shown (with circusd's "did you mean"), exit 3. A command that changes something is
not forgiven so: a node that lacks the watcher failed to do it.
"""
from __future__ import annotations

import json
import os
from typing import Any, Mapping

from circus.stats.health import in_trouble, use_colour

from .fanout import EXIT_OK, NodeResult, exit_code
from .report import list_lines, node_lines, nodes_table, stats_lines, status_lines

__all__ = ["nodes_cli", "control_cli", "node_row", "split_absent"]


# -- nodes ---------------------------------------------------------------------------------------

def node_row(pool: Any, r: NodeResult, status: NodeResult | None = None) -> dict:
    """One node of ``nodes``: its state, address, tags, rtt, ``info`` (its ``nodeinfo``) and
    ``trouble`` (watcher -> fatal / backoff / exited, from its ``status``; None: unknown)."""
    row: dict[str, Any] = {"node": r.node, "state": r.state, "endpoint": r.endpoint,
                           "tags": list(pool.config.nodes[r.node].tags), "rtt": r.rtt}
    if r.ok:
        row["info"] = {k: v for k, v in r.reply.items() if k not in ("status", "id", "time")}
    else:
        row["error"] = r.reason
    troubled = None
    if status is not None and status.ok and isinstance(status.reply.get("statuses"), Mapping):
        details = status.reply.get("details") or {}
        troubled = {}
        for watcher, state in sorted(status.reply["statuses"].items()):
            word = in_trouble({"state": state, **(details.get(watcher) or {})})
            if word:
                troubled[watcher] = word
    row["trouble"] = troubled
    if r.name_mismatch:
        row["reported_name"] = r.reported_name
    return row


def nodes_cli(ctx: Any, pool: Any, selected: list[str], rest: list[str]) -> int:
    from .cli import Usage
    if rest in (["--help"], ["-h"]):
        ctx.print("usage: circusmeta nodes [--node N | --tag T]\n\nEach node's state "
                  "(active, unresponsive, not_available), address, tags, load, memory in use, "
                  "watchers,\nhow many of them are in trouble (fatal, backoff, exited), "
                  "processes and round trip.")
        return EXIT_OK
    if rest:
        raise Usage(f"nodes takes no argument, got {' '.join(rest)}")
    # both at once: a node costs one round trip (an unreachable one, its timeout once)
    infos, statuses = pool.calls_blocking([("nodeinfo", {}), ("status", {})], nodes=selected)
    code = exit_code(infos.values())
    rows = [node_row(pool, r, statuses.get(r.node)) for r in infos.values()]
    if ctx.json:
        ctx.print(json.dumps({"nodes": rows, "exit": code}))
        return code
    for line in nodes_table(rows, use_colour(ctx.out, os.environ)):
        ctx.print(line)
    for r in infos.values():
        if not r.ok:
            ctx.warn(f"{r.node}: {r.state if r.reply is None else 'error'}: {r.reason}")
    return code


# -- control commands ----------------------------------------------------------------------------

def split_absent(readonly: bool, props: Mapping[str, Any], results: Mapping[str, NodeResult]
                 ) -> tuple[dict[str, NodeResult], list[str]]:
    """(the results that count, the nodes that do not have the watcher) for a read-only
    command naming one; nothing is set aside when no node answered otherwise (pure)."""
    everything = dict(results)
    if not readonly or not props.get("name"):
        return everything, []
    absent = [n for n, r in results.items() if r.code == "unknown_watcher"]
    if not absent or not any(r.ok for n, r in results.items() if n not in absent):
        return everything, []
    return {n: r for n, r in results.items() if n not in absent}, absent


def control_cli(ctx: Any, pool: Any, command: str, rest: list[str],
                      selected: list[str], explicit: bool) -> int:
    from circus.cli.ctl_forms import HelpRequested, UsageError, build_request
    from circus.cli.ctl_output import render
    from circus.protocol import COMMANDS

    from .cli import Usage

    spec = COMMANDS[command]
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
    results = pool.call_blocking(command, nodes=selected, deadline=timeout, **props)
    counted, absent = split_absent(spec.readonly, props, results)
    code = exit_code(counted.values())
    name = props.get("name") if isinstance(props.get("name"), str) else None
    if ctx.json:
        out: dict[str, Any] = {"command": command, "exit": code,
                               "nodes": {n: r.to_dict() for n, r in results.items()}}
        if absent:
            out["absent"] = absent
        ctx.print(json.dumps(out))
    else:
        colour = use_colour(ctx.out, os.environ)
        merged: list[str] | None = None
        troubled = 0
        if command == "status":
            merged, troubled = status_lines(counted, colour, name)
        elif command == "list":
            merged = list_lines(counted)
        elif command == "stats":
            merged = stats_lines(counted)
        if merged:                             # one write: a table of 1,000 nodes is 1,000 rows
            ctx.print("\n".join(merged))
        for node, r in counted.items():
            if merged is not None and r.ok:
                continue
            for line in node_lines(node, r, lambda reply: render(command, reply, props)[0],
                                   name, command if props.get("waiting") else None):
                ctx.print(line)
        if absent:
            ctx.warn(f"{name}: not on {', '.join(absent)}")
        if troubled and not (name and not any(c in name for c in "*?[")):
            ctx.warn(f"{troubled} watcher{'s' if troubled != 1 else ''} in trouble: "
                     f"'circusmeta status NAME' shows its processes and last output lines")
        for r in results.values():
            if r.name_mismatch:
                ctx.warn(f"{r.node}: the circusd there calls itself {r.reported_name!r}")
    if changes:
        ctx.audit(pool, command, results, code, {"properties": props})
    return code
