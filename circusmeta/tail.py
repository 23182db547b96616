"""``circusmeta tail [NAME]``: the last output lines of the pool's watchers, and with ``--follow``
the new ones, each line prefixed ``NODE/WATCHER | ``.

One ``tail`` request per node (circusd keeps every watcher's last ``recent_lines`` lines, stream
or not; without NAME it merges every watcher's), the nodes' lines merged by time. ``--follow``
first subscribes to each node's events endpoint (``pubsub_endpoint`` in the pool file) for the
``output.`` topics and waits for the node to confirm the subscription, then asks for the last
lines, then prints what the node publishes, so no line falls between the two (a line seen in
both is recognised by its watcher's sequence number). circusd formats and publishes output lines
only while somebody follows them. It runs until SIGINT or SIGTERM (exit 0 then, unless the
first request failed somewhere).

A node without ``pubsub_endpoint`` gives its last lines and is named on stderr as not
followed; a node that does not confirm the subscription in time, too.
"""
from __future__ import annotations

import argparse
import asyncio
import heapq
import json
import signal
from typing import Any

import zmq
import zmq.asyncio

from circus.protocol import output_topic, read_event

from .control import split_absent
from .fanout import exit_code
from .report import node_lines, output_line

__all__ = ["tail_cli", "tail_parser", "merged_lines"]

_USAGE = ("circusmeta tail [NAME] [--lines N] [--stream stdout|stderr] [--follow] "
          "[--node N | --tag T]")


class _Usage(Exception):
    pass


def tail_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="circusmeta tail", add_help=False, usage=_USAGE,
                                description="The last output lines of the pool's watchers "
                                            "(every watcher's without NAME), as NODE/WATCHER | "
                                            "LINE, merged by time.")
    p.add_argument("name", nargs="?", help="only this watcher")
    p.add_argument("--lines", "-n", type=int, default=10, help="lines per node (default 10, at "
                                                               "most 1000)")
    p.add_argument("--stream", choices=("stdout", "stderr"), help="only this one")
    p.add_argument("--follow", "-f", action="store_true",
                   help="then print new lines as they are written, until interrupted")
    p.add_argument("--help", "-h", action="store_true", help="this text")

    def error(message: str) -> Any:
        raise _Usage(message)
    p.error = error  # type: ignore[method-assign]
    return p


def merged_lines(results: dict) -> list[tuple[float, str, dict]]:
    """(time, node, line) of every node's reply, merged by time; a node's own order kept."""
    per_node = []
    for node, r in results.items():
        if r.ok and isinstance(r.reply.get("lines"), list):
            entries = [e for e in r.reply["lines"] if isinstance(e, dict)]
            per_node.append([(float(e.get("time") or 0.0), i, node, e)
                             for i, e in enumerate(entries)])
    return [(t, node, e) for t, _, node, e in heapq.merge(*per_node, key=lambda x: x[0])]


async def tail_cli(ctx: Any, pool: Any, selected: list[str], words: list[str]) -> int:
    from .cli import Usage
    try:
        ns = tail_parser().parse_args(words)
    except _Usage as exc:
        raise Usage(str(exc)) from None
    if ns.help:
        ctx.print(tail_parser().format_help().rstrip())
        return 0
    if not 0 <= ns.lines <= 1000:
        raise Usage(f"--lines must be 0 to 1000, got {ns.lines}")
    props: dict[str, Any] = {"lines": ns.lines}
    if ns.name:
        props["name"] = ns.name
    if ns.stream:
        props["stream"] = ns.stream
    followers: dict[str, _Follower] = {}
    context = zmq.asyncio.Context() if ns.follow else None
    try:
        if ns.follow:
            followers = await _subscribe(ctx, pool, selected, ns, context)
        results = await pool.call("tail", nodes=selected, **props)
        counted, absent = split_absent(True, props, results)
        code = exit_code(counted.values())
        lines = merged_lines(counted)
        if ctx.json and ns.follow:         # JSON lines: one object per output line
            for _, node, entry in lines:
                ctx.print(json.dumps({**entry, "node": node}))
        elif ctx.json:
            ctx.print(json.dumps({"command": "tail", "exit": code, "absent": absent,
                                  "lines": [{**e, "node": node} for _, node, e in lines],
                                  "nodes": {n: _without_lines(r.to_dict())
                                            for n, r in results.items()}}))
        else:
            for _, node, entry in lines:
                ctx.print(output_line(node, entry, ns.name))
        for node, r in counted.items():
            if not r.ok:
                for line in node_lines(node, r, lambda reply: "", ns.name):
                    ctx.warn(line)
        if absent:
            ctx.warn(f"{ns.name}: not on {', '.join(absent)}")
        if not followers:
            return code
        for node, follower in followers.items():
            r = results.get(node)
            if r is None or not r.ok:
                follower.close()
                continue
            for entry in r.reply.get("lines") or ():
                if isinstance(entry, dict) and isinstance(entry.get("seq"), int):
                    key = str(entry.get("watcher"))
                    follower.seen[key] = max(follower.seen.get(key, 0), entry["seq"])
        await _follow(ctx, [f for f in followers.values() if not f.sub.closed], ns)
        return code
    finally:
        for follower in followers.values():
            follower.close()
        if context is not None:
            context.term()


def _without_lines(entry: dict) -> dict:
    reply = entry.get("reply")
    if isinstance(reply, dict) and "lines" in reply:
        entry = {**entry, "reply": {k: v for k, v in reply.items() if k != "lines"}}
    return entry


class _Follower:
    """One node's SUB on its events endpoint, for its output lines."""

    def __init__(self, node: str, address: str, topic: str, context: zmq.asyncio.Context,
                 curve: Any) -> None:
        self.node, self.address, self.topic = node, address, topic
        self.seen: dict[str, int] = {}          # watcher -> last seq already printed
        self.sub = context.socket(zmq.SUB)
        self.sub.linger = 0
        if curve is not None:
            curve.apply(self.sub)
        self.sub.setsockopt(zmq.SUBSCRIBE, topic.encode())
        self.sub.connect(address)

    async def confirmed(self, deadline: float) -> bool:
        """Until circusd confirms the subscription (its event on exactly our topic)."""
        loop = asyncio.get_running_loop()
        while (left := deadline - loop.time()) > 0:
            if not await self.sub.poll(int(left * 1000) + 1):
                return False
            event = read_event(await self.sub.recv_multipart())
            if event is not None and isinstance(event[1], dict) and \
                    event[1].get("subscribed") == self.topic:
                return True
        return False

    def close(self) -> None:
        if not self.sub.closed:
            self.sub.close(0)


async def _subscribe(ctx: Any, pool: Any, selected: list[str], ns: argparse.Namespace,
                     context: zmq.asyncio.Context) -> dict[str, _Follower]:
    topic = output_topic(ns.name, ns.stream or "") if ns.name else "output."
    followers: dict[str, _Follower] = {}
    for node in selected:
        address = pool.config.nodes[node].pubsub_endpoint
        if not address:
            ctx.warn(f"{node}: no pubsub_endpoint in {pool.config.file}: its last lines only, "
                     f"not followed")
            continue
        try:
            followers[node] = _Follower(node, address, topic, context, pool.keys.get(node))
        except zmq.ZMQError as exc:
            ctx.warn(f"{node}: cannot follow {address}: {exc}")
    loop = asyncio.get_running_loop()
    deadline = loop.time() + (ctx.timeout or pool.config.meta.timeout)
    checks = await asyncio.gather(*(f.confirmed(deadline) for f in followers.values()))
    for (node, follower), ok in zip(list(followers.items()), checks):
        if not ok:
            ctx.warn(f"{node}: no confirmation of the subscription to {topic} from "
                     f"{follower.address} within {ctx.timeout or pool.config.meta.timeout:g} s: "
                     f"not followed")
            follower.close()
            del followers[node]
    return followers


async def _follow(ctx: Any, followers: list[_Follower], ns: argparse.Namespace) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)

    async def pump(f: _Follower) -> None:
        while True:
            event = read_event(await f.sub.recv_multipart())
            if event is None or not isinstance(event[1], dict) or "line" not in event[1]:
                continue
            entry = event[1]
            if ns.stream and entry.get("stream") != ns.stream:
                continue
            key = str(entry.get("watcher"))
            seq = entry.get("seq")
            if isinstance(seq, int):
                if seq <= f.seen.get(key, 0):
                    continue                  # printed from the reply already
                f.seen[key] = seq
            ctx.print(json.dumps({**entry, "node": f.node}) if ctx.json
                      else output_line(f.node, entry, ns.name))

    tasks = [asyncio.ensure_future(pump(f)) for f in followers]
    waiter = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait([waiter, *tasks], return_when=asyncio.FIRST_COMPLETED)
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)
        for task in (waiter, *tasks):
            task.cancel()
        await asyncio.gather(waiter, *tasks, return_exceptions=True)
