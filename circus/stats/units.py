"""Numbers of the stats stream as people read them (``8.2M``, ``3m05s``): used by every view of
it (circus-top, circusmeta, circushttpd), and light enough for a command that prints one line."""
from __future__ import annotations

from typing import Any

__all__ = ["number", "human_bytes", "human_age"]


def number(value: Any) -> float | None:
    """The value as a float, or None for "N/A", "Zombie", null or anything not numeric."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value)


def human_bytes(value: Any) -> str:
    """``8617984`` -> ``"8.2M"``; "N/A" (or a string the stream already formatted) unchanged."""
    n = number(value)
    if n is None:
        return value if isinstance(value, str) else "-"
    for unit in ("B", "K", "M", "G", "T"):
        if abs(n) < 1024 or unit == "T":
            return f"{n:.0f}{unit}" if unit == "B" else f"{n:.1f}{unit}"
        n /= 1024
    return "-"  # pragma: no cover


def human_age(value: Any) -> str:
    """Seconds as ``"15s"``, ``"3m05s"``, ``"2h03m"`` or ``"4d02h"``: wide enough for a column."""
    n = number(value)
    if n is None:
        return value if isinstance(value, str) else "-"
    s = int(n)
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    if s < 86400:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    return f"{s // 86400}d{s % 86400 // 3600:02d}h"
