"""How captured lines become bytes in a file or on a console: text, text with a time prefix,
JSON lines, or the coloured console prefix.

A *batch* is what the output pump read in one go from one pipe: ``(time, pid, stream, lines)``,
the lines without their ``\\n`` and stamped with the time they arrived. Formatting runs in a
stream's writer thread, not on the loop. Text lines are written byte for byte (not decoded);
JSON needs text, so there undecodable bytes are replaced.
"""
from __future__ import annotations

import json
import zlib
from typing import Callable, Protocol

__all__ = ["Batch", "Format", "TextFormat", "JsonFormat", "FancyFormat", "COLOR_CODES", "pick_color"]

Batch = tuple[float, int, str, list[bytes]]

#: ANSI foreground colours of FancyStdoutStream
COLOR_CODES = {"red": 31, "green": 32, "yellow": 33, "blue": 34, "magenta": 35, "cyan": 36,
               "white": 37}


class Format(Protocol):
    def lines(self, batch: Batch) -> list[bytes]: ...     # one item per line, each ending in \n
    def blob(self, batch: Batch) -> bytes: ...            # the same, joined


class _Prefixed:
    """Lines with an optional ``<time> [<pid>] | `` prefix (0.19's ``time_format``)."""

    def __init__(self, time_format: str | None, before: str = "", after: str = "") -> None:
        self.time_format = time_format or None
        self.before, self.after = before, after
        # strftime per line is costly; the prefix is kept for a second unless it shows fractions
        self._cacheable = self.time_format is not None and "%f" not in self.time_format
        self._cached: tuple[int, int, bytes] = (-1, -1, b"")

    def prefix(self, when: float, pid: int) -> bytes:
        if self.time_format is None:
            return self.before.encode()
        second = int(when)
        if self._cacheable and self._cached[0] == second and self._cached[1] == pid:
            return self._cached[2]
        from datetime import datetime     # loaded by the first line with a time prefix

        stamp = datetime.fromtimestamp(when).strftime(self.time_format)
        prefix = f"{self.before}{stamp} [{pid}] | {self.after}".encode(errors="replace")
        self._cached = (second, pid, prefix)
        return prefix

    def lines(self, batch: Batch) -> list[bytes]:
        when, pid, _, lines = batch
        prefix = self.prefix(when, pid)
        return [prefix + line + b"\n" for line in lines]

    def blob(self, batch: Batch) -> bytes:
        if self.time_format is None and not self.before:
            return b"\n".join(batch[3]) + b"\n"
        return b"".join(self.lines(batch))


class TextFormat(_Prefixed):
    def __init__(self, time_format: str | None = None) -> None:
        super().__init__(time_format)


class FancyFormat(_Prefixed):
    """``FancyStdoutStream``: a coloured ``<time> [<pid>] |`` prefix, then the line as it was."""

    def __init__(self, color: str, time_format: str | None = None) -> None:
        super().__init__(time_format or "%Y-%m-%d %H:%M:%S",
                         before=f"\033[{COLOR_CODES[color]}m", after="\033[0m")


def pick_color(watcher: str) -> str:
    """The colour of a watcher without ``color``: derived from its name, so it stays the same
    across restarts (0.19 picked one at random)."""
    names = sorted(COLOR_CODES)
    return names[zlib.crc32(watcher.encode()) % len(names)]


class JsonFormat:
    """One JSON object per line: ``time`` (ISO 8601, UTC), ``node``, ``watcher``, ``pid``,
    ``stream``, ``line``."""

    def __init__(self, watcher: str, node: Callable[[], str]) -> None:
        self.watcher = watcher
        self.node = node

    def lines(self, batch: Batch) -> list[bytes]:
        from datetime import datetime, timezone

        when, pid, stream, lines = batch
        stamp = datetime.fromtimestamp(when, timezone.utc).isoformat(timespec="microseconds")
        head = json.dumps({"time": stamp.replace("+00:00", "Z"), "node": self.node(),
                           "watcher": self.watcher, "pid": pid, "stream": stream})[:-1]
        dumps = json.dumps
        return [f'{head}, "line": {dumps(line.decode(errors="replace"))}}}\n'.encode()
                for line in lines]

    def blob(self, batch: Batch) -> bytes:
        return b"".join(self.lines(batch))
