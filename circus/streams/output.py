"""Where one watcher's captured output goes.

Every batch of whole lines read from a process's stdout or stderr pipe is:

1. kept in a bounded ring of recent lines (``tail``), each with a sequence number;
2. published on the events socket as ``output.<watcher>.<stream>``, only while somebody is
   subscribed to such a topic (``circusctl tail --follow``);
3. handed to the watcher's stream for that pipe (``stdout_stream`` / ``stderr_stream``), or, when
   that pipe has no stream (it is captured for a readiness probe), to circusd's own stdout/stderr.

The streams are opened when the watcher starts and closed when it is stopped for good — after its
processes' pipes were read to the end (bounded), so the last lines of a process are never lost.
The stream classes (:mod:`circus.streams.registry`, with the file streams) are imported by the
first watcher that has a stream: circusd's own stdout and stderr need only the console.
"""
from __future__ import annotations

import asyncio
import logging
import os
import time
from collections import deque
from typing import TYPE_CHECKING, Any, Callable, Iterable, Mapping, Protocol

from circus.errors import StreamError
from circus.protocol.limits import MAX_RECENT_BYTES
from circus.protocol.messages import output_topic
from circus.streams.console import ConsoleStream
from circus.streams.formats import TextFormat
from circus.streams.pump import Gate, OutputPump, Pipe
from circus.streams.writer import StreamWriter

if TYPE_CHECKING:
    from circus.security.asuser import Creds
    from circus.streams.files import Access

__all__ = ["WatcherOutput", "OutputHost", "RECENT_LINES", "RECENT_BYTES", "STREAM_NAMES"]

log = logging.getLogger("circus")

STREAM_NAMES = ("stdout", "stderr")
#: the recent-lines ring of a watcher (``tail``): at most ``recent_lines`` (1,000 unless the
#: watcher says otherwise) lines, and about this many bytes
RECENT_LINES = 1000
RECENT_BYTES = MAX_RECENT_BYTES
#: how long a stopping watcher waits for its pipes to end before closing its streams anyway
DRAIN_TIMEOUT = 1.0
#: how long closing (or reopening) a stream may take before circusd gives up on it
CLOSE_TIMEOUT = 10.0

#: bytes of a line an output *event* carries (``cut`` gives the full length of a longer one): the
#: events socket bounds each subscriber's queue by messages (its high-water mark), so this bounds
#: what a subscriber that stopped reading can make circusd hold (~40 MB, not ~650 MB)
EVENT_LINE_MAX = 4096


class OutputHost(Protocol):
    node: str
    pump: OutputPump
    output_prefixes: set[str]
    #: called with (watcher, pid, "stdout" | "stderr", lines) for every batch of lines
    output_listeners: list[Callable[[str, int, str, list[bytes]], None]]

    def publish(self, topic: str, payload: dict) -> None: ...
    def emit(self, watcher: str, event: str, payload: dict) -> None: ...


class _Recent:
    """Batches of recent lines, bounded by line count and bytes."""

    def __init__(self, limit: int = RECENT_LINES) -> None:
        self.batches: deque[tuple[int, float, int, str, list[bytes], int]] = deque()
        self.lines = 0
        self.bytes = 0
        self.seq = 0            # sequence number of the last line
        self.limit = limit

    def resize(self, limit: int) -> None:
        self.limit = limit
        self._trim()

    def add(self, when: float, pid: int, name: str, lines: list[bytes], size: int) -> int:
        first = self.seq + 1
        self.seq += len(lines)
        self.batches.append((first, when, pid, name, lines, size))
        self.lines += len(lines)
        self.bytes += size
        self._trim()
        return first

    def _trim(self) -> None:
        while self.batches and (self.limit == 0 or (
                len(self.batches) > 1 and (self.lines - len(self.batches[0][4]) >= self.limit
                                           or self.bytes > RECENT_BYTES))):
            old = self.batches.popleft()
            self.lines -= len(old[4])
            self.bytes -= old[5]

    def last(self, n: int, names: Iterable[str]) -> list[dict[str, Any]]:
        wanted = set(names)
        out: list[dict[str, Any]] = []
        for first, when, pid, name, lines, _ in reversed(self.batches):
            if name not in wanted:
                continue
            for index in range(len(lines) - 1, -1, -1):
                if len(out) >= n:
                    return out[::-1]
                out.append({"seq": first + index, "time": when, "pid": pid, "stream": name,
                            "line": lines[index].decode(errors="replace")})
        return out[::-1]


class WatcherOutput:
    def __init__(self, watcher: str, host: OutputHost) -> None:
        self.watcher = watcher
        self.host = host
        self.topics = {name: output_topic(watcher, name) for name in STREAM_NAMES}
        self.recent = _Recent()
        self.streams: dict[str, Any] = {}       # name -> ConsoleStream | StreamWriter
        self.pipes: set[Pipe] = set()
        self.opened = False
        self._configured: tuple[str, ...] = ()
        raw = TextFormat()
        self._console = {"stdout": ConsoleStream(raw, 1), "stderr": ConsoleStream(raw, 2)}

    # -- configuration ----------------------------------------------------------------------------

    @staticmethod
    def configured(cfg: Any) -> tuple[str, ...]:
        """The pipes a watcher's configuration sends to a stream."""
        return tuple(name for name in STREAM_NAMES if getattr(cfg, f"{name}_stream"))

    def open(self, cfg: Any, owner: tuple[int, int] | None, creds: Creds | None = None) -> None:
        """Open the configured streams (at watcher start); StreamError says which one failed.
        ``owner``: who gets the files circusd creates; ``creds``: whose credentials the file
        work is done with (None: circusd's)."""
        if self.opened:
            return
        self.recent.resize(getattr(cfg, "recent_lines", RECENT_LINES))
        loop = asyncio.get_running_loop()
        opened: dict[str, Any] = {}
        names = self.configured(cfg)
        if names:
            from circus.streams.files import Access

            access = Access(creds)
        try:
            for name in names:
                opened[name] = self._open_one(name, getattr(cfg, f"{name}_stream"), owner, access,
                                              loop)
        except StreamError:
            for stream in opened.values():
                if isinstance(stream, StreamWriter):
                    stream.stop()
            raise
        self.streams = opened
        self._configured = tuple(opened)
        self.opened = True

    def _open_one(self, name: str, conf: Mapping[str, str], owner: tuple[int, int] | None,
                  access: Access, loop: asyncio.AbstractEventLoop) -> Any:
        from circus.streams.registry import StreamContext, build_stream

        ctx = StreamContext(self.watcher, name, lambda: self.host.node, owner, access)
        stream = build_stream(conf, ctx)
        if isinstance(stream, ConsoleStream):
            return stream
        try:
            opener = getattr(stream, "open", None)
            if opener is not None:
                opener()
        except OSError as exc:
            where = getattr(stream, "path", conf.get("class"))
            raise StreamError(f"{name}_stream: cannot open {where}: {exc.strerror or exc}") from None
        except Exception as exc:   # a custom stream's open() may raise anything
            raise StreamError(f"{name}_stream: {conf.get('class')}.open() failed: {exc}") from None
        label = f"{self.watcher} {name} ({getattr(stream, 'path', conf.get('class'))})"
        return StreamWriter(stream, label, loop, on_error=self._stream_error)

    def _stream_error(self, message: str) -> None:
        self.host.emit(self.watcher, "stream_error", {"time": time.time(), "reason": message})

    # -- lines (the pump's sink) ------------------------------------------------------------------

    def gate(self, name: str) -> Gate | None:
        stream = self.streams.get(name)
        return stream if isinstance(stream, StreamWriter) else None

    def lines(self, pid: int, name: str, lines: list[bytes]) -> None:
        when = time.time()
        size = sum(map(len, lines)) + len(lines)
        first = self.recent.add(when, pid, name, lines, size)
        if self.host.output_prefixes:
            self._publish(first, when, pid, name, lines)
        for listener in self.host.output_listeners:
            try:
                listener(self.watcher, pid, name, lines)
            except Exception:  # a broken reader must not break the output
                log.exception("%s: output listener failed", self.watcher)
        stream = self.streams.get(name)
        batch = (when, pid, name, lines)
        if isinstance(stream, StreamWriter):
            stream.put(batch, size, len(lines))
        elif stream is not None:
            stream.put(batch, size)
        elif name not in self._configured:        # captured for a probe only: pass it on
            self._console[name].put(batch, size)
        else:
            log.debug("%s: %d %s line(s) after its stream was closed", self.watcher, len(lines), name)

    def _publish(self, first: int, when: float, pid: int, name: str, lines: list[bytes]) -> None:
        topic = self.topics[name]
        if not any(topic.startswith(prefix) for prefix in self.host.output_prefixes):
            return
        for index, line in enumerate(lines):
            payload = {"watcher": self.watcher, "pid": pid, "stream": name, "time": when,
                       "seq": first + index, "line": line[:EVENT_LINE_MAX].decode(errors="replace")}
            if len(line) > EVENT_LINE_MAX:
                payload["cut"] = len(line)      # files, the ring and `tail` keep the whole line
            self.host.publish(topic, payload)

    def attached(self, pipe: Pipe) -> None:
        """A process's pipe now feeds this output (forgotten at its EOF)."""
        self.pipes.add(pipe)
        pipe.on_close = self.pipes.discard

    def last(self, n: int, names: Iterable[str] = STREAM_NAMES) -> list[dict[str, Any]]:
        return self.recent.last(n, names)

    # -- reopen and close -------------------------------------------------------------------------

    async def reopen(self) -> None:
        """Reopen every file (after the operator moved them away): new lines go to new files."""
        calls = [(w, w.call(w.target.reopen)) for w in self.streams.values()
                 if isinstance(w, StreamWriter)]
        for writer, call in calls:
            try:
                await asyncio.wait_for(call, CLOSE_TIMEOUT)
            except TimeoutError:
                log.error("%s: reopen did not finish within %.0f s", writer.label, CLOSE_TIMEOUT)
            except Exception as exc:   # reported; the stream keeps its old file if it has one
                log.error("%s: reopen failed: %s", writer.label, exc)
                self._stream_error(f"{writer.label}: reopen failed: {exc}")

    async def close(self) -> None:
        """The watcher stopped: read its processes' pipes to the end (bounded), then write what
        is queued and close the streams."""
        pump = self.host.pump
        if self.pipes:
            await pump.wait_closed(DRAIN_TIMEOUT, list(self.pipes))
            if self.pipes:              # held open by a left-over descendant: take what is there
                pump.close(list(self.pipes))
        await self.shut()

    async def shut(self) -> None:
        """Close the streams (what is queued is written first)."""
        streams, self.streams = self.streams, {}
        self.opened = False
        writers = [s for s in streams.values() if isinstance(s, StreamWriter)]
        if writers:
            await asyncio.gather(*(w.close(CLOSE_TIMEOUT) for w in writers))


def owner_of(uid: int | None, gid: int | None) -> tuple[int, int] | None:
    """Who owns the files circusd creates for a watcher: its uid/gid, when circusd is root."""
    if os.geteuid() != 0 or (uid is None and gid is None):
        return None
    return (-1 if uid is None else uid, -1 if gid is None else gid)
