"""``circusctl tool NAME [ARGS...]``: run an operator tool on the node, its output streamed back.

1. ``tools`` tells the tool's timeout (how long to wait for the end) and ``globaloptions`` the
   events endpoint;
2. a SUB socket subscribes to ``tool.<name>.<run id>``, the run id chosen here;
3. ``tool`` is sent with ``waiting``: while it runs, each published line is printed as it comes;
   the reply, at the end, carries the exit code and the output, from which the lines not seen live
   are printed, in order (events may be lost: a subscription that was not yet in place, or a
   subscriber too slow for a very chatty tool; the reply never is).

Exit code: the tool's own (0-255); 128+N when it was killed by signal N; 124 when it was killed at
its timeout. Before the tool runs, circusctl's usual codes: 1 no answer, 3 error reply.
"""
from __future__ import annotations

import time
import uuid
from typing import Any, Mapping

import zmq

from circus.client.errors import CallTimeout
from circus.client.wire import connect, make_message, prepare_call, read_reply, setup_sub
from circus.protocol import decode

__all__ = ["run_tool", "tool_exit_code", "TIMED_OUT"]

#: exit code when the tool was killed at its timeout (as timeout(1))
TIMED_OUT = 124
#: waited for the reply beyond the tool's own timeout (seconds)
SLACK = 10.0


def tool_exit_code(reply: Mapping[str, Any]) -> int:
    if reply.get("timed_out"):
        return TIMED_OUT
    code = reply.get("exit_code")
    if not isinstance(code, int):
        return 3
    return 128 - code if code < 0 else min(code, 255)


def _tool_timeout(session: Any, options: Any, name: str) -> float:
    reply = session.client(options).call(make_message("tools"))
    for tool in (reply or {}).get("tools") or ():
        if isinstance(tool, Mapping) and str(tool.get("name", "")).lower() == name.lower():
            timeout = tool.get("timeout")
            if isinstance(timeout, (int, float)):
                return float(timeout)
    return options.timeout          # unknown here: circusd will say why


def run_tool(session: Any, props: dict[str, Any], options: Any) -> int:
    """Run the tool, print its output; return circusctl's exit code."""
    from circus.cli.ctl_output import render, render_json

    name = props["name"]
    run_id = props.get("run_id") or uuid.uuid4().hex[:16]
    request = {"name": name, "args": list(props.get("args") or []), "run_id": run_id,
               "waiting": True}
    client = session.client(options)
    wait = max(options.timeout, _tool_timeout(session, options, name) + SLACK)
    sub = None
    if not options.json:
        endpoint = session._pubsub_endpoint(options)
        sub = setup_sub(client.context.socket(zmq.SUB), [f"tool.{name.lower()}.{run_id}"],
                        options.curve)
        connect(sub, endpoint, options.ssh, options.ssh_keyfile)
    try:
        reply, printed = _call(session, client, request, sub, run_id, wait)
    finally:
        if sub is not None:
            sub.close(linger=0)
    if options.json:
        session.print(render_json(reply, options.prettify, options.prettify and session.out.isatty()))
    elif reply.get("status") != "ok":
        text, _ = render("tool", reply, request)
        session.print(text, error=True)
        return 3
    else:
        _print_rest(session, reply, printed)
    if reply.get("status") != "ok":
        return 3
    if reply.get("timed_out"):
        session.print(f"circusctl: tool {name} was killed after its timeout", error=True)
    return tool_exit_code(reply)


def _call(session: Any, client: Any, request: dict[str, Any], sub: zmq.Socket | None,
          run_id: str, wait: float) -> tuple[dict[str, Any], int]:
    """Send the request; print lines as they come until the reply. (reply, lines printed)."""
    call_id, body = prepare_call(make_message("tool", **request))
    deadline = time.monotonic() + wait
    client.socket.send(body)
    poller = zmq.Poller()
    poller.register(client.socket, zmq.POLLIN)
    if sub is not None:
        poller.register(sub, zmq.POLLIN)
    printed, live = 0, sub is not None
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            raise CallTimeout(f"no answer from {client.endpoint} to 'tool' within {wait:g} s "
                              f"(the tool's timeout and {SLACK:g} s more)")
        ready = dict(poller.poll(max(1, int(left * 1000) + 1)))
        if sub is not None and sub in ready:
            while True:
                try:
                    frames = sub.recv_multipart(zmq.NOBLOCK)
                except zmq.Again:
                    break
                event = _event(frames, run_id)
                if event is None or not live or "seq" not in event:
                    continue
                if event["seq"] == printed + 1:
                    session.print(str(event.get("line", "")))
                    printed += 1
                elif event["seq"] > printed + 1:
                    live = False              # a gap: the rest comes, in order, from the reply
        if client.socket in ready:
            reply = read_reply(client.socket.recv_multipart(), call_id)
            if reply is not None:
                return reply, printed


def _event(frames: list[bytes], run_id: str) -> dict[str, Any] | None:
    try:
        payload = decode(frames[-1])
    except ValueError:
        return None
    if not isinstance(payload, dict) or payload.get("run_id") != run_id:
        return None
    if "seq" in payload and not isinstance(payload["seq"], int):
        return None
    return payload


def _print_rest(session: Any, reply: Mapping[str, Any], printed: int) -> None:
    output = reply.get("output")
    if not isinstance(output, str):
        return
    lines = output.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    first = reply.get("first_line") if isinstance(reply.get("first_line"), int) else 1
    if printed + 1 < first:
        session.print(f"[... {first - printed - 1} earlier line(s) not kept by circusd ...]",
                      error=True)
    for seq, line in enumerate(lines, start=first):
        if seq > printed:
            session.print(line)
