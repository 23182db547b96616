"""argparse's help formatter without ``shutil``, for the daemons (circusd, circusd-stats).

argparse makes a formatter for every ``add_argument``, and its formatter asks
``shutil.get_terminal_size`` for the width: that imports ``shutil``, hence ``bz2``, ``lzma`` and
their C modules, into a daemon that never prints its help. This one finds the width the same
way (``COLUMNS``, then the terminal of stdout, else 80) with :mod:`os` alone.
"""
from __future__ import annotations

import argparse
import os
import sys

__all__ = ["HelpFormatter", "columns"]


def columns() -> int:
    try:
        width = int(os.environ["COLUMNS"])
    except (KeyError, ValueError):
        width = 0
    if width <= 0:
        try:
            width = os.get_terminal_size(sys.__stdout__.fileno()).columns
        except (AttributeError, ValueError, OSError):
            width = 0
    return width or 80


class HelpFormatter(argparse.HelpFormatter):
    def __init__(self, prog: str, indent_increment: int = 2, max_help_position: int = 24,
                 width: int | None = None) -> None:
        super().__init__(prog, indent_increment, max_help_position,
                         columns() - 2 if width is None else width)
