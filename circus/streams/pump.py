"""Read children's stdout/stderr pipes on the event loop and hand out whole lines.

A pipe is read in chunks of up to 256 KiB whenever it is readable; lines are split on ``\\n`` and a
partial line is kept until its end arrives (or until it grows past ``MAX_LINE``, when it is cut).
The lines of one chunk go to the sink together, as a list. At EOF — when every process holding the
write end has closed it — the partial line is flushed and the pipe closed. Nothing is lost when a
process exits: its pipe is read until EOF.

Back-pressure: a pipe may have a *gate* (the writer of the stream it feeds). When the gate is full
(a slow disk), the pump stops reading that pipe until the gate has drained; the child then blocks
on its own write, as it would writing to a slow file itself, and the loop is never held up.
"""
from __future__ import annotations

import asyncio
import fcntl
import os
from collections import deque
from typing import Callable, Iterable, Protocol

__all__ = ["OutputPump", "Pipe", "Gate", "LineSink", "MAX_LINE", "Tail", "output_pipe"]

MAX_LINE = 64 * 1024
CHUNK = 256 * 1024
#: capacity asked for a child's output pipe (Linux; the default is 64 KiB): a child that writes
#: fast blocks less often, and circusd reads more per wake-up
PIPE_SIZE = 256 * 1024


def output_pipe() -> tuple[int, int]:
    """A pipe for a child's stdout or stderr, (read end, write end), as large as allowed."""
    r, w = os.pipe()
    try:
        fcntl.fcntl(w, getattr(fcntl, "F_SETPIPE_SZ", 1031), PIPE_SIZE)
    except OSError:                 # above /proc/sys/fs/pipe-max-size: keep the default
        pass
    return r, w

LineSink = Callable[[int, str, list[bytes]], None]   # (pid, "stdout" | "stderr", lines without \n)


class Gate(Protocol):
    def full(self) -> bool: ...
    def when_drained(self, callback: Callable[[], None]) -> None: ...


class Tail:
    """The last ``size`` lines of a stream (for error messages); nothing is held (not even an
    empty deque) before the first line."""

    __slots__ = ("size", "_lines")

    def __init__(self, size: int = 20) -> None:
        self.size = size
        self._lines: deque[bytes] | None = None

    @property
    def lines(self) -> deque[bytes]:
        if self._lines is None:
            self._lines = deque(maxlen=self.size)
        return self._lines

    def add(self, line: bytes) -> None:
        self.lines.append(line)

    def extend(self, lines: Iterable[bytes]) -> None:
        self.lines.extend(lines)

    def text(self, n: int | None = None) -> str:
        if self._lines is None:
            return ""
        lines = list(self._lines)[-n:] if n else list(self._lines)
        return "\n".join(line.decode(errors="replace") for line in lines)


class Pipe:
    """One attached pipe; ``done`` once it reached EOF (or was closed at shutdown), when
    ``on_close`` is called. A future to wait for that is made only for a waiter: a process's
    two pipes cost no asyncio objects but their readers."""

    __slots__ = ("fd", "pid", "name", "partial", "sink", "gate", "done", "paused", "on_close",
                 "_waiter")

    def __init__(self, fd: int, pid: int, name: str, sink: LineSink, gate: Gate | None) -> None:
        self.fd, self.pid, self.name, self.sink, self.gate = fd, pid, name, sink, gate
        self.partial = b""
        self.done = False
        self.paused = False
        self.on_close: Callable[[Pipe], None] | None = None
        self._waiter: asyncio.Future[None] | None = None

    def closed(self, loop: asyncio.AbstractEventLoop) -> asyncio.Future[None]:
        """A future done once the pipe is."""
        if self._waiter is None:
            self._waiter = loop.create_future()
            if self.done:
                self._waiter.set_result(None)
        return self._waiter

    def finished(self) -> None:
        if self.done:
            return
        self.done = True
        if self.on_close is not None:
            self.on_close(self)
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)


class OutputPump:
    def __init__(self) -> None:
        self._pipes: dict[int, Pipe] = {}
        self._loop: asyncio.AbstractEventLoop | None = None

    def attach(self, fd: int, pid: int, name: str, sink: LineSink, gate: Gate | None = None) -> Pipe:
        """Start reading ``fd`` (the read end of a child's pipe); the pump owns and closes it."""
        loop = self._loop = asyncio.get_running_loop()
        os.set_blocking(fd, False)
        pipe = Pipe(fd, pid, name, sink, gate)
        self._pipes[fd] = pipe
        loop.add_reader(fd, self._readable, pipe)
        return pipe

    def _readable(self, pipe: Pipe) -> None:
        if self._pipes.get(pipe.fd) is not pipe:
            return
        try:
            data = os.read(pipe.fd, CHUNK)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            self._finish(pipe)
            return
        self._feed(pipe, data)
        gate = pipe.gate
        if gate is not None and gate.full():
            self._pause(pipe, gate)

    def _pause(self, pipe: Pipe, gate: Gate) -> None:
        assert self._loop is not None
        pipe.paused = True
        self._loop.remove_reader(pipe.fd)
        gate.when_drained(lambda: self._resume(pipe))

    def _resume(self, pipe: Pipe) -> None:
        if not pipe.paused or self._pipes.get(pipe.fd) is not pipe or self._loop is None:
            return
        pipe.paused = False
        self._loop.add_reader(pipe.fd, self._readable, pipe)

    def _feed(self, pipe: Pipe, data: bytes) -> None:
        lines = (pipe.partial + data).split(b"\n") if pipe.partial else data.split(b"\n")
        rest = lines.pop()
        while len(rest) > MAX_LINE:
            lines.append(rest[:MAX_LINE])
            rest = rest[MAX_LINE:]
        pipe.partial = rest
        if lines:
            pipe.sink(pipe.pid, pipe.name, lines)

    def _finish(self, pipe: Pipe) -> None:
        if pipe.partial:
            pipe.sink(pipe.pid, pipe.name, [pipe.partial])
            pipe.partial = b""
        if self._pipes.get(pipe.fd) is pipe:
            del self._pipes[pipe.fd]
            if self._loop is not None and not pipe.paused:
                self._loop.remove_reader(pipe.fd)
            os.close(pipe.fd)
        pipe.finished()

    async def wait_closed(self, timeout: float, pipes: Iterable[Pipe] | None = None) -> None:
        """Wait (bounded) until these pipes (all by default) reached EOF — e.g. before circusd
        exits, or before a stopped watcher closes its streams."""
        chosen = list(self._pipes.values() if pipes is None else pipes)
        loop = asyncio.get_running_loop()
        pending = [p.closed(loop) for p in chosen if not p.done]
        if pending:
            await asyncio.wait(pending, timeout=timeout)

    def close(self, pipes: Iterable[Pipe] | None = None) -> None:
        """Read what is buffered now in these pipes (all by default), then close them."""
        chosen = list(self._pipes.values() if pipes is None else pipes)
        for pipe in chosen:
            if self._pipes.get(pipe.fd) is not pipe:
                continue
            while True:
                try:
                    data = os.read(pipe.fd, CHUNK)
                except OSError:
                    data = b""
                if not data:
                    break
                self._feed(pipe, data)
            self._finish(pipe)
