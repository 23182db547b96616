"""Colours of circusctl's output: only on a terminal, never with ``NO_COLOR`` or ``--no-color``.

A :class:`Paint` wraps text in ANSI colours when it is enabled and returns it unchanged
otherwise, so that rendering code is written once. What gets which colour is decided here:

* states: ``active`` green, ``backoff`` and ``exited`` yellow, ``fatal`` red, ``stopped`` dim,
  ``starting``/``stopping`` cyan (the trouble word wins over the state word);
* errors red, warnings yellow;
* watcher names in ``tail`` (every watcher) each in a colour of their own, stable from one run
  to the next (derived from the name).

The policy (https://no-color.org): ``NO_COLOR`` set to anything non-empty disables colours,
as do ``TERM=dumb`` and a stream that is not a terminal.
"""
from __future__ import annotations

import os
import zlib
from typing import Any, Mapping

__all__ = ["Paint", "wants_color", "PLAIN"]

_CODES = {"red": "31", "green": "32", "yellow": "33", "blue": "34", "magenta": "35",
          "cyan": "36", "dim": "2", "bold": "1"}
_STATE_COLORS = {"active": "green", "running": "green", "backoff": "yellow", "exited": "yellow",
                 "fatal": "red", "stopped": "dim", "starting": "cyan", "stopping": "cyan",
                 "unhealthy": "yellow"}
_NAME_COLORS = ("cyan", "magenta", "blue", "green", "yellow", "red")


def wants_color(stream: Any, disabled: bool = False,
                environ: Mapping[str, str] | None = None) -> bool:
    """Whether to colour what is written to ``stream``."""
    env = os.environ if environ is None else environ
    if disabled or env.get("NO_COLOR") or env.get("TERM") == "dumb":
        return False
    isatty = getattr(stream, "isatty", None)
    try:
        return bool(isatty and isatty())
    except ValueError:                  # a closed stream
        return False


class Paint:
    """``paint.state("fatal", text)``, ``paint.error(text)``...: coloured when enabled."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled

    def color(self, name: str, text: str) -> str:
        if not self.enabled or not text or name not in _CODES:
            return text
        return f"\033[{_CODES[name]}m{text}\033[0m"

    def state(self, word: str | None, text: str | None = None) -> str:
        """``text`` (default: the word itself) in the colour of state ``word``."""
        shown = str(word) if text is None else text
        return self.color(_STATE_COLORS.get(str(word), ""), shown)

    def error(self, text: str) -> str:
        return self.color("red", text)

    def warning(self, text: str) -> str:
        return self.color("yellow", text)

    def bold(self, text: str) -> str:
        return self.color("bold", text)

    def dim(self, text: str) -> str:
        return self.color("dim", text)

    def name(self, name: str, text: str | None = None) -> str:
        """``text`` (default: ``name``) in the colour of watcher ``name``."""
        shown = name if text is None else text
        return self.color(_NAME_COLORS[zlib.crc32(name.encode()) % len(_NAME_COLORS)], shown)


#: a Paint that never colours
PLAIN = Paint(False)
