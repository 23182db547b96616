"""Text helpers of circusctl's human output: aligned columns, durations, sizes (pure).

Columns are aligned on the plain text, then coloured, so that colour codes never shift them.
"""
from __future__ import annotations

import signal
import time
from typing import Any, Callable, Sequence

__all__ = ["Cell", "columns", "duration", "size", "exit_text", "number", "output_line", "stamp"]

Style = Callable[[str], str]


class Cell:
    """One table cell: its text and how to colour it once padded."""

    __slots__ = ("text", "style")

    def __init__(self, text: Any, style: Style | None = None, blank: str = "-") -> None:
        self.text = blank if text is None or text == "" else str(text)
        self.style = style


def columns(rows: Sequence[Sequence[Cell | str]], header: Sequence[str] | None = None,
            right: Sequence[int] = (), indent: str = "", gap: str = "  ",
            header_style: Style | None = None) -> list[str]:
    """Lines of ``rows`` with aligned columns (``right``: indexes aligned right); the last
    column is not padded, and no line ends with spaces."""
    cells = [[c if isinstance(c, Cell) else Cell(c) for c in row] for row in rows]
    if header is not None:
        cells.insert(0, [Cell(h, header_style) for h in header])
    if not cells:
        return []
    count = max(len(row) for row in cells)
    widths = [max((len(row[i].text) for row in cells if i < len(row)), default=0)
              for i in range(count)]
    lines = []
    for row in cells:
        parts = []
        for i, cell in enumerate(row):
            last = i == len(row) - 1
            if i in right:
                text = cell.text.rjust(widths[i])
            else:
                text = cell.text if last else cell.text.ljust(widths[i])
            if cell.style is not None:
                stripped = text.rstrip(" ")
                text = cell.style(stripped) + text[len(stripped):]
            parts.append(text)
        lines.append((indent + gap.join(parts)).rstrip(" "))
    return lines


def duration(seconds: Any) -> str:
    """``0:05:12``, ``2d 3:04:05``; ``-`` for an unknown or negative value."""
    if not isinstance(seconds, (int, float)) or isinstance(seconds, bool) or seconds < 0:
        return "-"
    total = int(seconds)
    days, rest = divmod(total, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    clock = f"{hours}:{minutes:02d}:{secs:02d}"
    return f"{days}d {clock}" if days else clock


def size(value: Any) -> str:
    """Bytes as ``812K``, ``1.3M``, ``23.5G``; a string (0.19's ``"8.22M"``) as is."""
    if isinstance(value, str):
        return value
    if not isinstance(value, (int, float)) or isinstance(value, bool) or value < 0:
        return "-"
    for unit in ("", "K", "M", "G", "T"):
        if value < 1024 or unit == "T":
            if unit == "":
                return f"{int(value)}B"
            return f"{value:.1f}{unit}" if value < 10 or unit in "GT" else f"{value:.0f}{unit}"
        value /= 1024
    return "-"   # not reached


def number(value: Any, digits: int = 1) -> str:
    """A float with ``digits`` decimals; anything else (``"N/A"``) as is."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return f"{value:.{digits}f}"
    return "-" if value is None else str(value)


def exit_text(code: Any) -> str:
    """A process's last exit as an operator reads it: ``1``, ``SIGKILL``; ``-`` for none."""
    if not isinstance(code, int) or isinstance(code, bool):
        return "-"
    if code < 0:
        try:
            return signal.Signals(-code).name
        except ValueError:
            return f"signal {-code}"
    return str(code)


def stamp(when: Any) -> str:
    """An epoch time as local ``YYYY-mm-dd HH:MM:SS``; ``-`` for anything else."""
    if not isinstance(when, (int, float)) or isinstance(when, bool):
        return "-"
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(when))


def output_line(entry: Any) -> str:
    """One captured output line (``tail``): ``<local time> [<pid>] <stream> | <line>``."""
    cut = f" [... {entry['cut']} bytes in all]" if isinstance(entry.get("cut"), int) else ""
    return f"{stamp(entry.get('time'))} [{entry.get('pid')}] {entry.get('stream')} | " \
           f"{entry.get('line')}{cut}"
