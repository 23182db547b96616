"""Circus 0.19's stream classes (``circus.stream``), with 0.19's call contract.

A 0.19 stream is an object made with the stream's options as keyword arguments and then called
once per piece of output with a dict: ``{"data": bytes, "pid": int, "name": "stdout" or
"stderr"}``; ``open()`` and ``close()`` are called when it has them. circusd calls a custom
stream class (``stdout_stream.class = mypackage.MyStream``) exactly so, once per line, from a
writer thread of its own (:mod:`circus.streams.registry`).

The classes here are that contract over our own file writers, for code that subclasses them or
calls them itself; a configuration naming a built-in class (``FileStream``,
``circus.stream.FileStream``) gets our native stream directly. Options may be strings, as they
come from an INI file (``max_bytes = 1000``); options 0.19 documented but ignored
(``refresh_time``...) are accepted and ignored.
"""
from __future__ import annotations

import os
import random
import sys
import tempfile
import threading
import time
from queue import Empty  # noqa: F401  (0.19 exported it from circus.stream)
from typing import Any, Mapping

from circus.compat.dotted import resolve_name
from circus.compat.values import to_bool, to_str
from circus.config.schema import STREAM_COLORS, STREAM_ROTATE_WHEN
from circus.streams import files, timed
from circus.streams.formats import Batch, FancyFormat, TextFormat
from circus.streams.registry import QueueStream

__all__ = ["FileStream", "WatchedFileStream", "TimedRotatingFileStream", "StdoutStream",
           "FancyStdoutStream", "QueueStream", "Empty", "get_stream"]


def _batch(data: Mapping[str, Any]) -> Batch:
    raw = data.get("data", b"")
    if not isinstance(raw, (bytes, bytearray)):
        raw = str(raw).encode()
    lines = bytes(raw).split(b"\n")
    if lines and not lines[-1]:
        lines.pop()                     # the piece ended a line: no empty line after it
    return (float(data.get("timestamp") or time.time()), int(data.get("pid") or 0),
            str(data.get("name") or "stdout"), lines)


def _temporary() -> str:
    fd, path = tempfile.mkstemp(prefix="circus-stream-")
    os.close(fd)
    return path


class _FileStreamBase:
    """Opens its file on first use (or ``open()``), writes each call's lines, closes on
    ``close()``; safe to call from several threads."""

    def __init__(self, target: files.FileTarget) -> None:
        self._target = target
        self._lock = threading.Lock()
        self._opened = False

    @property
    def _filename(self) -> str:
        return self._target.path

    def open(self) -> None:
        with self._lock:
            self._open()

    def _open(self) -> None:
        if not self._opened:
            self._target.open()
            self._opened = True

    def __call__(self, data: Mapping[str, Any]) -> None:
        batch = _batch(data)
        if batch[3]:
            with self._lock:
                self._open()
                self._target.write([batch])

    write_data = __call__

    def reopen(self) -> None:
        with self._lock:
            if self._opened:
                self._target.reopen()

    def close(self) -> None:
        with self._lock:
            if self._opened:
                self._target.close()
                self._opened = False


class FileStream(_FileStreamBase):
    """Appends to ``filename`` (a temporary file if none); with ``max_bytes``, rotates to
    ``filename.1`` ... ``filename.<backup_count>``; ``time_format`` prefixes each line with
    ``<time> [<pid>] | ``."""

    def __init__(self, filename: str | None = None, max_bytes: int | str = 0,
                 backup_count: int | str = 0, time_format: str | None = None,
                 **kwargs: Any) -> None:
        super().__init__(files.FileStream(filename or _temporary(), TextFormat(time_format),
                                          max_bytes=int(max_bytes),
                                          backup_count=int(backup_count)))


class WatchedFileStream(_FileStreamBase):
    """Appends to ``filename`` and opens it again when it was moved or removed (logrotate)."""

    def __init__(self, filename: str | None = None, time_format: str | None = None,
                 **kwargs: Any) -> None:
        super().__init__(files.WatchedFileStream(filename or _temporary(),
                                                 TextFormat(time_format)))


class TimedRotatingFileStream(_FileStreamBase):
    """A new file every ``rotate_interval`` × ``rotate_when`` (S, M, H, D, MIDNIGHT, W0-W6)."""

    def __init__(self, filename: str | None = None, backup_count: int | str = 0,
                 time_format: str | None = None, rotate_when: str | None = None,
                 rotate_interval: int | str = 1, utc: bool | str = False, **kwargs: Any) -> None:
        when = str(rotate_when or "").upper()
        if when not in STREAM_ROTATE_WHEN:
            raise ValueError(f"rotate_when must be one of {', '.join(STREAM_ROTATE_WHEN)}, "
                             f"not {rotate_when!r}")
        super().__init__(timed.TimedRotatingFileStream(
            filename or _temporary(), TextFormat(time_format), rotate_when=when,
            rotate_interval=int(rotate_interval), backup_count=int(backup_count),
            utc=to_bool(utc)))


class StdoutStream:
    """Writes the output to this process's standard output, as it comes."""

    def __init__(self, **kwargs: Any) -> None:
        pass

    def __call__(self, data: Mapping[str, Any]) -> None:
        sys.stdout.write(to_str(data["data"]))
        sys.stdout.flush()

    def close(self) -> None:
        pass


class FancyStdoutStream(StdoutStream):
    """Each line coloured (``color``: red, green, yellow, blue, magenta, cyan, white; random if
    unset) and prefixed with ``<time> [<pid>] | `` (``time_format``, default
    ``%Y-%m-%d %H:%M:%S``)."""

    def __init__(self, color: str | None = None, time_format: str | None = None,
                 **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.color = color if color in STREAM_COLORS else random.choice(STREAM_COLORS)
        self._format = FancyFormat(self.color, time_format)

    def __call__(self, data: Mapping[str, Any]) -> None:
        batch = _batch(data)
        if batch[3]:
            sys.stdout.write(self._format.blob(batch).decode(errors="replace"))
            sys.stdout.flush()


_BUILTIN = {cls.__name__: cls for cls in (FileStream, WatchedFileStream, TimedRotatingFileStream,
                                          StdoutStream, FancyStdoutStream, QueueStream)}


def get_stream(conf: Mapping[str, Any] | None, reload: bool = False) -> Any:
    """The stream a 0.19 stream configuration describes: ``class`` (a short name of this module
    or a dotted name) and its options, or ``stream`` (an object, returned as is), or just
    ``filename`` (a FileStream). None for an empty configuration."""
    if not conf:
        return None
    options = dict(conf)
    if "class" in options:
        name = options.pop("class")
        cls = _BUILTIN.get(name) if isinstance(name, str) and "." not in name else None
        if cls is None:
            cls = resolve_name(name, reload=reload) if isinstance(name, str) else name
        return cls(**options)
    if "stream" in options:
        return options["stream"]
    if "filename" in options:
        return FileStream(**options)
    raise ValueError("stream configuration invalid: it needs 'class', 'stream' or 'filename'")
