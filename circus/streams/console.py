"""circusd's own stdout and stderr as destinations: StdoutStream, FancyStdoutStream, and the
output of captured processes that have no stream of their own.

Everything that goes to fd 1 (or fd 2) goes through one writer thread per descriptor, so lines
from different processes never interleave mid-line and the loop never blocks on the console. In a
container stdout is usually a pipe; if nobody reads it, the writer's bounded queue fills up and
further lines are dropped and counted (logged once output flows again) instead of stopping the
processes or circusd.
"""
from __future__ import annotations

import asyncio
import os
from typing import Any

from circus.streams.formats import Batch, Format
from circus.streams.writer import StreamWriter

__all__ = ["ConsoleStream", "console", "flush_consoles"]

#: bytes queued for the console before lines are dropped
CONSOLE_HIGH_WATER = 1024 * 1024

_writers: dict[int, StreamWriter] = {}


class ConsoleStream:
    """Lines formatted by ``fmt`` and written to circusd's ``fd`` (1: stdout, 2: stderr)."""

    def __init__(self, fmt: Format, fd: int = 1) -> None:
        self.fmt = fmt
        self.fd = fd

    def put(self, batch: Batch, size: int) -> None:
        console(self.fd).put((self.fmt, batch), size, len(batch[3]))


class _ConsoleTarget:
    def __init__(self, fd: int) -> None:
        self.fd = fd

    def write(self, items: list[tuple[Format, Batch]]) -> None:
        data = memoryview(b"".join([fmt.blob(batch) for fmt, batch in items]))
        while data:
            data = data[os.write(self.fd, data):]

    def reopen(self) -> None:
        pass

    def close(self) -> None:
        pass


def console(fd: int) -> StreamWriter:
    """The writer of circusd's ``fd`` for the running loop (created on first use)."""
    loop = asyncio.get_running_loop()
    writer = _writers.get(fd)
    if writer is None or writer.loop is not loop or writer.loop.is_closed():
        if writer is not None:
            writer.stop()
        name = {1: "stdout", 2: "stderr"}.get(fd, f"fd {fd}")
        writer = _writers[fd] = StreamWriter(_ConsoleTarget(fd), f"circusd's {name}", loop,
                                             overflow="drop", high=CONSOLE_HIGH_WATER,
                                             low=CONSOLE_HIGH_WATER // 4)
    return writer


async def flush_consoles(timeout: float) -> None:
    """Wait (bounded) until what was queued for the console is written (circusd's exit); say how
    many lines were dropped, if any."""
    loop = asyncio.get_running_loop()
    writers = [w for w in _writers.values() if w.loop is loop]
    pending: list[Any] = [w.call(lambda: None) for w in writers]
    if pending:
        await asyncio.wait(pending, timeout=timeout)
    for writer in writers:
        writer.report_dropped()
