"""A tiny xterm screen for tests: feed it what a curses program wrote, read the screen as text.

It understands the subset of xterm control sequences ncurses emits for TERM=xterm (cursor moves,
erasing, scroll regions and scrolling, insert/delete, repeat) and remembers the foreground
colour each character was written in (:meth:`VTScreen.colours_of`); other attributes and modes
are read and ignored. An unknown final byte raises, so a test says what it could not follow.
"""
from __future__ import annotations

import re

__all__ = ["VTScreen"]

_CSI = re.compile(rb"\x1b\[([?>=]?)([0-9;]*)([@-~])")
_COLOUR_NAMES = ("black", "red", "green", "yellow", "blue", "magenta", "cyan", "white")


class _Cell(str):
    """A character written in a colour (a plain str is a character in the default colour)."""

    fg: str | None = None


def _cell(ch: str, fg: str | None) -> str:
    if fg is None:
        return ch
    cell = _Cell(ch)
    cell.fg = fg
    return cell


class VTScreen:
    def __init__(self, rows: int, cols: int) -> None:
        self.rows, self.cols = rows, cols
        self.grid = [[" "] * cols for _ in range(rows)]
        self.y = self.x = 0
        self.top, self.bottom = 0, rows - 1
        self.saved = (0, 0)
        self.last = " "
        self.pending = b""
        self.fg: str | None = None            # the colour characters are written in now

    def resize(self, rows: int, cols: int) -> None:
        """As a terminal window does: keep what fits, blank the rest, reset the scroll region."""
        grid = [(row + [" "] * cols)[:cols] for row in self.grid[:rows]]
        self.grid = grid + [[" "] * cols for _ in range(rows - len(grid))]
        self.rows, self.cols = rows, cols
        self.top, self.bottom = 0, rows - 1
        self.y, self.x = min(self.y, rows - 1), min(self.x, cols - 1)

    # -- text --------------------------------------------------------------------------

    def lines(self) -> list[str]:
        return ["".join(row).rstrip() for row in self.grid]

    def text(self) -> str:
        return "\n".join(self.lines())

    def colours_of(self, text: str) -> set[str | None]:
        """The foreground colours of the characters of ``text`` where it is first on screen
        (None: the default colour); an empty set if it is not there."""
        for row in self.grid:
            at = "".join(row).find(text)
            if at >= 0:
                return {getattr(c, "fg", None) for c in row[at:at + len(text)]}
        return set()

    def _sgr(self, args: list[int]) -> None:
        args = args or [0]
        i = 0
        while i < len(args):
            a = args[i]
            if a in (0, 39):
                self.fg = None
            elif 30 <= a <= 37:
                self.fg = _COLOUR_NAMES[a - 30]
            elif 90 <= a <= 97:
                self.fg = "bright " + _COLOUR_NAMES[a - 90]
            elif a == 38 and i + 2 < len(args) and args[i + 1] == 5:
                n = args[i + 2]
                self.fg = _COLOUR_NAMES[n] if n < 8 else f"colour {n}"
                i += 2
            i += 1

    # -- feeding -----------------------------------------------------------------------

    def feed(self, data: bytes) -> None:
        data = self.pending + data
        self.pending = b""
        i = 0
        while i < len(data):
            b = data[i]
            if b == 0x1B:
                consumed = self._escape(data, i)
                if consumed == 0:             # an incomplete sequence: wait for more bytes
                    self.pending = data[i:]
                    return
                i += consumed
                continue
            if b >= 0x80:                     # UTF-8: decode one character
                length = 2 if b < 0xE0 else 3 if b < 0xF0 else 4
                if i + length > len(data):
                    self.pending = data[i:]
                    return
                self._put(data[i:i + length].decode("utf-8", "replace"))
                i += length
                continue
            self._control(b) if b < 0x20 or b == 0x7F else self._put(chr(b))
            i += 1

    def _control(self, b: int) -> None:
        if b == 0x0D:
            self.x = 0
        elif b == 0x0A:
            self._linefeed()
        elif b == 0x08:
            self.x = max(0, min(self.x, self.cols - 1) - 1)
        elif b == 0x09:
            self.x = min(self.cols - 1, (self.x // 8 + 1) * 8)

    def _put(self, ch: str) -> None:
        if self.x >= self.cols:               # autowrap, deferred to the next character
            self.x = 0
            self._linefeed()
        self.grid[self.y][self.x] = _cell(ch, self.fg)
        self.last = ch
        self.x += 1

    def _linefeed(self) -> None:
        if self.y == self.bottom:
            self._scroll(1)
        elif self.y < self.rows - 1:
            self.y += 1

    def _scroll(self, n: int) -> None:
        """Scroll the region up by n (down for negative n)."""
        region = self.grid[self.top:self.bottom + 1]
        blank = [[" "] * self.cols for _ in range(min(abs(n), len(region)))]
        region = region[abs(n):] + blank if n > 0 else blank + region[:len(region) - abs(n)]
        self.grid[self.top:self.bottom + 1] = region

    def _escape(self, data: bytes, i: int) -> int:
        if i + 1 >= len(data):
            return 0
        nxt = data[i + 1:i + 2]
        if nxt == b"[":
            match = _CSI.match(data, i)
            if match is None:
                if re.fullmatch(rb"\x1b\[[?>=]?[0-9;]*", data[i:]):
                    return 0
                raise ValueError(f"unknown sequence {data[i:i + 12]!r}")
            self._csi(match.group(1), match.group(2), match.group(3))
            return match.end() - i
        if nxt in (b"(", b")"):
            return 3 if i + 2 < len(data) else 0
        if nxt == b"M":
            if self.y == self.top:
                self._scroll(-1)
            else:
                self.y = max(0, self.y - 1)
        elif nxt == b"7":
            self.saved = (self.y, self.x)
        elif nxt == b"8":
            self.y, self.x = self.saved
        elif nxt not in (b"=", b">"):
            raise ValueError(f"unknown escape {data[i:i + 4]!r}")
        return 2

    def _csi(self, private: bytes, params: bytes, final: bytes) -> None:
        args = [int(p) if p else 0 for p in params.split(b";")] if params else []
        n = max(1, args[0]) if args else 1
        f = final.decode()
        if f == "m" and not private:
            self._sgr(args)
            return
        if private or f in "hlt":             # modes, window ops: no text effect
            return
        row = self.grid[self.y]
        x = min(self.x, self.cols - 1)
        if f == "H" or f == "f":
            self.y = min(self.rows, max(1, args[0] if args else 1)) - 1
            self.x = min(self.cols, max(1, args[1] if len(args) > 1 else 1)) - 1
        elif f == "d":
            self.y = min(self.rows, n) - 1
        elif f == "G":
            self.x = min(self.cols, n) - 1
        elif f == "A":
            self.y = max(0, self.y - n)
        elif f == "B":
            self.y = min(self.rows - 1, self.y + n)
        elif f == "C":
            self.x = min(self.cols - 1, self.x + n)
        elif f == "D":
            self.x = max(0, x - n)
        elif f == "K":
            mode = args[0] if args else 0
            span = range(x, self.cols) if mode == 0 else range(0, x + 1) if mode == 1 else range(self.cols)
            for c in span:
                row[c] = " "
        elif f == "J":
            mode = args[0] if args else 0
            if mode == 0:
                self._csi(b"", b"0", b"K")
                for r in range(self.y + 1, self.rows):
                    self.grid[r] = [" "] * self.cols
            elif mode == 1:
                for r in range(0, self.y):
                    self.grid[r] = [" "] * self.cols
                self._csi(b"", b"1", b"K")
            else:
                self.grid = [[" "] * self.cols for _ in range(self.rows)]
        elif f == "X":
            for c in range(x, min(self.cols, x + n)):
                row[c] = " "
        elif f == "@":
            row[x:] = ([" "] * n + row[x:])[:self.cols - x]
        elif f == "P":
            row[x:] = (row[x + n:] + [" "] * n)[:self.cols - x]
        elif f == "b":
            for _ in range(n):
                self._put(self.last)
        elif f == "r":
            self.top = (args[0] if args and args[0] else 1) - 1
            self.bottom = (args[1] if len(args) > 1 and args[1] else self.rows) - 1
            self.y = self.x = 0
        elif f in "ST":
            self._scroll(n if f == "S" else -n)
        elif f in "LM":
            if self.top <= self.y <= self.bottom:
                saved = self.top
                self.top = self.y
                self._scroll(-n if f == "L" else n)
                self.top = saved
        else:
            raise ValueError(f"unknown CSI final {f!r} ({params!r})")
