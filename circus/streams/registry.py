"""Streams from a watcher's configuration: 0.19's short class names, and custom classes by
dotted name (``mypackage.streams.Mine`` or ``mypackage.streams:Mine``).

A custom stream is what 0.19 accepted: a class instantiated with the stream's options as keyword
arguments (strings), then called once per line with ``{"data": line + b"\\n", "pid": pid,
"name": "stdout" | "stderr"}``; ``open()``, ``reopen()`` and ``close()`` are called when present.
It runs in a writer thread of its own (in order, never on circusd's loop), so a slow or failing
custom stream costs its own watcher's output only.
"""
from __future__ import annotations

import importlib
import logging
import os
import queue
from dataclasses import dataclass
from typing import Any, Callable, Mapping

from circus import asynctls
from circus.config.schema import STREAM_CLASSES, STREAM_OPTIONS
from circus.config.watcher import builtin_stream_name
from circus.errors import StreamError
from circus.streams.console import ConsoleStream
from circus.streams.files import (DIRECT, Access, FileStream, FileTarget, Owner, WatchedFileStream,
                                  temporary)
from circus.streams.formats import Batch, FancyFormat, Format, JsonFormat, TextFormat, pick_color
from circus.streams.timed import TimedRotatingFileStream

__all__ = ["StreamContext", "CustomStream", "QueueStream", "build_stream", "Stream"]

log = logging.getLogger("circus")


@dataclass(frozen=True)
class StreamContext:
    watcher: str
    name: str                        # "stdout" | "stderr"
    node: Callable[[], str]
    owner: Owner = None              # (uid, gid) for the files circusd creates
    access: Access = DIRECT          # whose credentials the file work is done with


class CustomStream:
    """Drives a 0.19-style stream object (a callable taking one dict per line)."""

    def __init__(self, obj: Any) -> None:
        self.obj = obj

    def open(self) -> None:
        if callable(getattr(self.obj, "open", None)):
            self.obj.open()

    def write(self, items: list[Batch]) -> None:
        call = self.obj
        for _, pid, name, lines in items:
            for line in lines:
                call({"data": line + b"\n", "pid": pid, "name": name})

    def reopen(self) -> None:
        if callable(getattr(self.obj, "reopen", None)):
            self.obj.reopen()

    def close(self) -> None:
        if callable(getattr(self.obj, "close", None)):
            self.obj.close()


class QueueStream(queue.Queue):
    """0.19's in-memory stream: every line's dict is put on a queue (for embedding circusd).
    Takes (and ignores) any option, as 0.19's did."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__()

    def __call__(self, data: dict) -> None:
        self.put(data)

    def close(self) -> None:
        pass


Stream = FileTarget | CustomStream | ConsoleStream


def build_stream(conf: Mapping[str, str], ctx: StreamContext) -> Stream:
    """The stream described by ``conf`` (a checked ``stdout_stream``/``stderr_stream``), not yet
    opened. Raises StreamError when a custom class cannot be loaded or instantiated."""
    options = dict(conf)
    cls_name = builtin_stream_name(options.pop("class", "FileStream"))
    if cls_name not in STREAM_CLASSES:
        return CustomStream(_custom(cls_name, options, ctx))
    typed = {key: STREAM_OPTIONS[key].text(value) for key, value in options.items()}
    if cls_name == "QueueStream":
        return CustomStream(QueueStream())
    if cls_name == "FancyStdoutStream":
        color = typed.get("color") or pick_color(ctx.watcher)
        return ConsoleStream(FancyFormat(color, typed.get("time_format")))
    fmt = _format(typed, ctx)
    if cls_name == "StdoutStream":
        return ConsoleStream(fmt)
    filename = typed.get("filename") or _temporary(ctx)
    if cls_name == "WatchedFileStream":
        return WatchedFileStream(filename, fmt, ctx.owner, access=ctx.access)
    compress = typed.get("compress") == "gzip"
    if cls_name == "TimedRotatingFileStream":
        return TimedRotatingFileStream(
            filename, fmt, ctx.owner, rotate_when=typed["rotate_when"],
            rotate_interval=typed.get("rotate_interval", 1),
            backup_count=typed.get("backup_count", 0), utc=typed.get("utc", False),
            compress=compress, access=ctx.access)
    return FileStream(filename, fmt, ctx.owner, max_bytes=typed.get("max_bytes", 0),
                      backup_count=typed.get("backup_count", 0), compress=compress,
                      access=ctx.access)


def _format(typed: Mapping[str, Any], ctx: StreamContext) -> Format:
    if typed.get("format") == "json":
        return JsonFormat(ctx.watcher, ctx.node)
    return TextFormat(typed.get("time_format"))


def _temporary(ctx: StreamContext) -> str:
    try:
        path, fds = ctx.access.run(temporary, f"circus-{ctx.watcher}-{ctx.name}-",
                                   ctx.owner if ctx.access.chown else None)
    except OSError as exc:
        raise StreamError(f"{ctx.name}_stream: cannot create a temporary file: "
                          f"{exc.strerror or exc}") from None
    for fd in fds:
        os.close(fd)
    log.info("%s: %s goes to %s (no filename given)", ctx.watcher, ctx.name, path)
    return path


def _custom(dotted: str, options: dict[str, str], ctx: StreamContext) -> Any:
    module_name, sep, attr = dotted.partition(":")
    if not sep:
        module_name, _, attr = dotted.rpartition(".")
    asynctls.enable()          # the user's code may open TLS connections on circusd's loop
    try:
        target: Any = importlib.import_module(module_name)
        for part in attr.split("."):
            target = getattr(target, part)
    except Exception as exc:    # an import runs arbitrary code: any failure is the class's
        raise StreamError(f"{ctx.name}_stream: cannot load {dotted!r}: {exc}") from None
    try:
        obj = target(**options)
    except Exception as exc:
        raise StreamError(f"{ctx.name}_stream: {dotted}({', '.join(options)}) failed: {exc}") from None
    if not callable(obj):
        raise StreamError(f"{ctx.name}_stream: a {dotted} is not callable (it is called per line)")
    return obj
