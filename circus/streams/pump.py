"""Read children's stdout/stderr pipes on the event loop and hand out whole lines.

A pipe is read in chunks of up to 64 KiB whenever it is readable; lines are split on ``\\n`` and a
partial line is kept until its end arrives (or until it grows past ``MAX_LINE``, when it is cut).
At EOF — when every process holding the write end has closed it — the partial line is flushed and
the pipe closed. Nothing is lost when a process exits: its pipe is read until EOF.
"""
from __future__ import annotations

import asyncio
import os
from collections import deque
from typing import Callable

__all__ = ["OutputPump", "LineSink", "MAX_LINE", "Tail"]

MAX_LINE = 64 * 1024
CHUNK = 64 * 1024

LineSink = Callable[[int, str, bytes], None]     # (pid, "stdout" | "stderr", line without \n)


class Tail:
    """The last ``size`` lines of a stream (for error messages and ``tail``)."""

    def __init__(self, size: int = 20) -> None:
        self.lines: deque[str] = deque(maxlen=size)

    def add(self, line: bytes) -> None:
        self.lines.append(line.decode(errors="replace"))

    def text(self, n: int | None = None) -> str:
        lines = list(self.lines)[-n:] if n else list(self.lines)
        return "\n".join(lines)


class _Pipe:
    __slots__ = ("fd", "pid", "name", "partial", "sink")

    def __init__(self, fd: int, pid: int, name: str, sink: LineSink) -> None:
        self.fd, self.pid, self.name, self.sink = fd, pid, name, sink
        self.partial = b""


class OutputPump:
    def __init__(self) -> None:
        self._pipes: dict[int, _Pipe] = {}
        self._closed: dict[int, asyncio.Future[None]] = {}
        self._loop: asyncio.AbstractEventLoop | None = None

    def attach(self, fd: int, pid: int, name: str, sink: LineSink) -> None:
        """Start reading ``fd`` (the read end of a child's pipe); the pump owns and closes it."""
        loop = self._loop = asyncio.get_running_loop()
        os.set_blocking(fd, False)
        self._pipes[fd] = _Pipe(fd, pid, name, sink)
        self._closed[fd] = loop.create_future()
        loop.add_reader(fd, self._readable, fd)

    def _readable(self, fd: int) -> None:
        pipe = self._pipes.get(fd)
        if pipe is None:
            return
        try:
            data = os.read(fd, CHUNK)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            self._finish(pipe)
            return
        self._feed(pipe, data)

    def _feed(self, pipe: _Pipe, data: bytes) -> None:
        buf = pipe.partial + data
        *lines, rest = buf.split(b"\n")
        while len(rest) > MAX_LINE:
            lines.append(rest[:MAX_LINE])
            rest = rest[MAX_LINE:]
        pipe.partial = rest
        for line in lines:
            pipe.sink(pipe.pid, pipe.name, line)

    def _finish(self, pipe: _Pipe) -> None:
        if pipe.partial:
            pipe.sink(pipe.pid, pipe.name, pipe.partial)
            pipe.partial = b""
        self._pipes.pop(pipe.fd, None)
        if self._loop is not None:
            self._loop.remove_reader(pipe.fd)
        os.close(pipe.fd)
        done = self._closed.pop(pipe.fd, None)
        if done is not None and not done.done():
            done.set_result(None)

    async def wait_closed(self, timeout: float) -> None:
        """Wait (bounded) until every attached pipe reached EOF — e.g. before circusd exits."""
        pending = [f for f in self._closed.values() if not f.done()]
        if pending:
            await asyncio.wait(pending, timeout=timeout)

    def close(self) -> None:
        """Read what is buffered now, then close every pipe (shutdown)."""
        for pipe in list(self._pipes.values()):
            while True:
                try:
                    data = os.read(pipe.fd, CHUNK)
                except OSError:
                    data = b""
                if not data:
                    break
                self._feed(pipe, data)
            self._finish(pipe)
