"""Operator tools: the ``[tool:NAME]`` commands that ``circusctl tool NAME [ARGS...]`` runs.

A run: argv is the tool's ``cmd`` split like a shell would, followed by the caller's arguments,
each one argv item as given (no shell ever sees them). It runs through circusd's spawn seam and
reaper, in its own process group, as the tool's ``uid``/``gid`` in its ``working_dir``, with
circusd's environment plus the global ``[env]`` section, ``CIRCUS_TOOL`` and ``CIRCUS_NODE``.
stdin is /dev/null; stdout and stderr share one pipe, so lines keep the order they were written.

Each line is published while it runs, as ``tool.<name>.<run_id>`` ``{run_id, seq, line}``; the
end as ``{run_id, done: true, exit_code, timed_out}``. The result (exit code and the output, its
last :data:`MAX_OUTPUT` bytes) is the reply of a waiting ``tool`` command. At ``timeout`` the
process group is killed (SIGKILL); after the tool exits, whatever is left of its group is killed
once its output is read (or after :data:`EOF_GRACE`).
"""
from __future__ import annotations

import asyncio
import logging
import os
import re
import signal
import time
from collections import deque
from dataclasses import dataclass
from typing import Any, Mapping, Protocol

from circus.config import ToolConfig
from circus.core.command import resolve_ids
from circus.core.spawner import OSLayer, SpawnSpec
from circus.errors import SpawnError
from circus.protocol import ErrorCode, ProtocolError

__all__ = ["ToolRunner", "ToolResult", "MAX_OUTPUT", "MAX_RUNNING", "EOF_GRACE", "RUN_ID"]

log = logging.getLogger("circus")

#: output kept for the reply (bytes); the events carry every line
MAX_OUTPUT = 256 * 1024
#: tools running at once on a node
MAX_RUNNING = 16
#: after the tool exited, how long its output pipe may stay open (a child of it holding it)
EOF_GRACE = 1.0
#: what a caller-chosen run id may look like
RUN_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")
#: the longest line; a longer one is cut in pieces of this size
MAX_LINE = 64 * 1024


class ToolHost(Protocol):
    os: OSLayer
    node: str
    environ: Mapping[str, str]
    config: Any

    def start_helper(self, spec: SpawnSpec) -> tuple[int, asyncio.Future[int]]: ...
    def publish(self, topic: str, payload: dict) -> None: ...


@dataclass(frozen=True)
class ToolResult:
    name: str
    run_id: str
    exit_code: int            # as os.waitstatus_to_exitcode: negative = killed by that signal
    timed_out: bool
    output: str               # the last MAX_OUTPUT bytes of output, whole lines
    first_line: int           # number (1-based) of the first line in `output`
    lines: int                # how many lines the tool wrote
    duration: float

    def to_reply(self) -> dict[str, Any]:
        return {"tool": self.name, "run_id": self.run_id, "exit_code": self.exit_code,
                "timed_out": self.timed_out, "output": self.output, "first_line": self.first_line,
                "lines": self.lines, "duration": round(self.duration, 3)}


class _Output:
    """The tool's pipe, read on the loop: each line published at once, the tail kept for the
    reply. ``eof`` is done when every writer closed the pipe (or :meth:`close` was called)."""

    def __init__(self, host: ToolHost, topic: str, run_id: str, fd: int) -> None:
        self.host, self.topic, self.run_id, self.fd = host, topic, run_id, fd
        self.kept: deque[str] = deque()
        self.size = 0
        self.seq = 0
        self.partial = b""
        self.loop = asyncio.get_running_loop()
        self.eof: asyncio.Future[None] = self.loop.create_future()
        os.set_blocking(fd, False)
        self.loop.add_reader(fd, self._readable)

    def _readable(self) -> None:
        try:
            data = os.read(self.fd, 65536)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            self.close()
            return
        *lines, self.partial = (self.partial + data).split(b"\n")
        while len(self.partial) > MAX_LINE:
            lines.append(self.partial[:MAX_LINE])
            self.partial = self.partial[MAX_LINE:]
        for line in lines:
            self.line(line)

    def close(self) -> None:
        if self.eof.done():
            return
        self.loop.remove_reader(self.fd)
        while True:                            # what is buffered now
            try:
                data = os.read(self.fd, 65536)
            except OSError:
                break
            if not data:
                break
            self.partial += data
        os.close(self.fd)
        lines = self.partial.split(b"\n") if self.partial else []
        if lines and not lines[-1]:
            lines.pop()
        for line in lines:
            self.line(line)
        self.partial = b""
        self.eof.set_result(None)

    def line(self, data: bytes) -> None:
        text = data.decode(errors="replace")
        self.seq += 1
        self.host.publish(self.topic, {"run_id": self.run_id, "seq": self.seq, "line": text})
        self.kept.append(text)
        self.size += len(text) + 1
        while self.size > MAX_OUTPUT and len(self.kept) > 1:
            self.size -= len(self.kept.popleft()) + 1

    def text(self) -> str:
        return "".join(line + "\n" for line in self.kept)


class ToolRunner:
    def __init__(self, host: ToolHost) -> None:
        self.host = host
        self.running: dict[str, tuple[int, asyncio.Future[int]]] = {}   # run id -> pid, exit

    def get(self, name: str) -> ToolConfig:
        tools = {t.name: t for t in self.host.config.tools}
        try:
            return tools[name.lower()]
        except KeyError:
            known = ", ".join(sorted(tools)) or "none is configured"
            raise ProtocolError(ErrorCode.UNKNOWN_TOOL,
                                f"unknown tool {name!r} (tools: {known})") from None

    def describe(self) -> list[dict[str, Any]]:
        return [{"name": t.name, "description": t.description, "timeout": t.timeout}
                for t in self.host.config.tools]

    def new_run_id(self, wanted: str | None) -> str:
        if wanted is None:
            return os.urandom(6).hex()           # 12 random hex digits, as uuid4's were
        if not RUN_ID.fullmatch(wanted):
            raise ProtocolError(ErrorCode.INVALID_PROPERTY,
                                "property 'run_id' must be 1 to 64 letters, digits, '_' or '-'")
        if wanted in self.running:
            raise ProtocolError(ErrorCode.ALREADY_EXISTS, f"run {wanted!r} is already running")
        return wanted

    def _spec(self, tool: ToolConfig, args: list[str], out_fd: int) -> SpawnSpec:
        from circus.notify.spec import split_command     # loaded by the first tool run

        uid, gid, groups = resolve_ids(tool.uid, tool.gid)
        env = {**self.host.environ, **self.host.config.env,
               "CIRCUS_TOOL": tool.name, "CIRCUS_NODE": self.host.node}
        return SpawnSpec(argv=split_command(tool.cmd) + tuple(args), env=env, cwd=tool.working_dir,
                         uid=uid, gid=gid, groups=groups, close_stdin=True, stdout_fd=out_fd,
                         stderr_fd=out_fd)

    async def run(self, tool: ToolConfig, args: list[str], run_id: str) -> ToolResult:
        """Run ``tool`` with ``args`` until it ends (or its timeout); SpawnError if it cannot."""
        if len(self.running) >= MAX_RUNNING:
            raise ProtocolError(ErrorCode.FAILED, f"{MAX_RUNNING} tools are running already")
        loop = asyncio.get_running_loop()
        started = loop.time()
        read_fd, write_fd = os.pipe()
        try:
            pid, exited = self.host.start_helper(self._spec(tool, args, write_fd))
        except (SpawnError, ValueError) as exc:
            os.close(read_fd)
            raise SpawnError(f"tool {tool.name}: {exc}") from None
        finally:
            os.close(write_fd)
        self.running[run_id] = (pid, exited)
        topic = f"tool.{tool.name}.{run_id}"
        output = _Output(self.host, topic, run_id, read_fd)
        log.info("tool %s (run %s, pid %d): %s", tool.name, run_id, pid,
                 " ".join([tool.cmd, *args])[:500])
        timed_out = False
        try:
            try:
                code = await asyncio.wait_for(asyncio.shield(exited), tool.timeout)
            except TimeoutError:
                timed_out = True
                log.warning("tool %s (run %s): killed after %g s", tool.name, run_id, tool.timeout)
                self.host.os.killpg(pid, signal.SIGKILL)
                code = await exited
            await asyncio.wait([output.eof], timeout=EOF_GRACE)
        finally:
            self.host.os.killpg(pid, signal.SIGKILL)       # what is left of its group, if any
            output.close()
            self.running.pop(run_id, None)
        result = ToolResult(tool.name, run_id, code, timed_out, output.text(),
                            output.seq - len(output.kept) + 1, output.seq, loop.time() - started)
        log.info("tool %s (run %s): exit code %d after %.2f s", tool.name, run_id, code,
                 result.duration)
        self.host.publish(topic, {"run_id": run_id, "done": True, "exit_code": code,
                                  "timed_out": timed_out, "time": time.time()})
        return result

    async def close(self, timeout: float = 2.0) -> None:
        """Kill every running tool and wait (bounded) until they are reaped (circusd stops)."""
        exits = []
        for pid, exited in self.running.values():
            self.host.os.killpg(pid, signal.SIGKILL)
            exits.append(exited)
        if exits:
            await asyncio.wait(exits, timeout=timeout)
