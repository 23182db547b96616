"""circus-top's curses screen: keys, scrolling, resizing and the paint loop.

The loop sleeps in ``zmq.Poller.poll`` on the stats sockets, the terminal and a wake-up pipe for
SIGWINCH together, with a timeout up to the next once-a-second repaint: it never spins. Data
arriving repaints at most four times a second (a pool of nodes sends many bursts per second);
a key repaints at once. What is drawn comes from :func:`circus.stats.toprows.rows`; this module
only decides which part fits and how it looks.

States are coloured (fatal and exited red, backoff yellow, active green, starting and stopping
cyan) when the terminal has colours and ``NO_COLOR`` is not set; a state in trouble is bold
either way, so it stands out on a monochrome terminal too.
"""
from __future__ import annotations

import curses
import math
import os
import signal
import socket
import sys
import time
from dataclasses import replace

import zmq

from circus.cli.top_stream import Stream
from circus.stats.health import Tone
from circus.stats.toprows import (Row, Style, move_selection, page_selection, rows, scroll_to,
                                  selectable, title, window)
from circus.stats.topview import Model, SortKey, View

__all__ = ["Screen", "run_screen", "HELP"]

HELP = ("c/m/a/n sort  p pool-wide  / filter  f nodes  Up/Down select  Enter details  Esc back  "
        "q quit")
_PAINT_EVERY = 1.0
_DATA_REPAINT = 0.25
_ENTER = (curses.KEY_ENTER, 10, 13)
_BACKSPACE = (curses.KEY_BACKSPACE, 127, 8)
_ESC = 27
_ARROWS = {ord("A"): curses.KEY_UP, ord("B"): curses.KEY_DOWN}
_SORT_KEYS = {ord("c"): SortKey.CPU, ord("m"): SortKey.MEM, ord("a"): SortKey.AGE,
              ord("n"): SortKey.NAME}
_STYLE = {Style.NODE: curses.A_BOLD, Style.HEADER: curses.A_UNDERLINE, Style.GROUP: curses.A_BOLD}
_COLOURS = {Tone.BAD: curses.COLOR_RED, Tone.WARN: curses.COLOR_YELLOW,
            Tone.GOOD: curses.COLOR_GREEN, Tone.BUSY: curses.COLOR_CYAN}


def tone_attributes(colour: bool) -> dict[Tone, int]:
    """The attribute of each tone: a colour pair when ``colour`` (after ``start_color``), and
    bold for trouble in any case."""
    out = {tone: curses.A_NORMAL for tone in Tone}
    for tone in (Tone.BAD, Tone.WARN):
        out[tone] = curses.A_BOLD
    if colour:
        for pair, (tone, fg) in enumerate(_COLOURS.items(), start=1):
            curses.init_pair(pair, fg, -1)
            out[tone] |= curses.color_pair(pair)
    return out


def _start_colours() -> bool:
    """Colours if the terminal has them and ``NO_COLOR`` is not set. Either way the terminal's
    own foreground and background stay (``curses.wrapper`` starts colour, whose pair 0 would
    otherwise be white on black)."""
    try:
        if not curses.has_colors():
            return False
        curses.start_color()
        curses.use_default_colors()
    except curses.error:
        return False
    return not os.environ.get("NO_COLOR")


class Screen:
    """The state of the screen between two keys: the view, the filter being typed, scrolling."""

    def __init__(self, stdscr: "curses.window", stream: Stream, model: Model, view: View) -> None:
        self.stdscr = stdscr
        self.stream = stream
        self.model = model
        self.view = view
        self.editing: str | None = None     # the filter being typed, None when not typing
        self.editing_nodes = False          # ... the node filter (f), not the watcher one (/)
        self.top = 0                        # index of the first row shown
        self.keys: list[tuple[str, str]] = []
        self.body: list[Row] = []
        self.space = 1                      # rows of the body on screen
        self.quit = False
        self.tones = tone_attributes(False)

    # -- keys ---------------------------------------------------------------------------

    def handle(self, key: int) -> None:
        """Apply one key to the view."""
        if self.editing is not None:
            self._edit(key)
        elif key in (ord("q"), ord("Q")):
            self.quit = True
        elif key in _SORT_KEYS:
            self.view = self.view.sorted_by(_SORT_KEYS[key])
        elif key == ord("/"):
            self.editing, self.editing_nodes = self.view.filter, False
        elif key == ord("f"):
            self.editing, self.editing_nodes = self.view.node_filter, True
        elif key == ord("p") and self.view.detail is None:
            self.view = replace(self.view, pool=not self.view.pool, selected=None)
            self.top = 0
        elif key in (curses.KEY_UP, ord("k")):
            self._move(-1)
        elif key in (curses.KEY_DOWN, ord("j")):
            self._move(1)
        elif key == curses.KEY_PPAGE:
            self._page(-1)
        elif key == curses.KEY_NPAGE:
            self._page(1)
        elif key in _ENTER and self.view.detail is None and self.view.selected is not None:
            self.view = replace(self.view, detail=self.view.selected)
            self.top = 0
        elif key == _ESC or key in _BACKSPACE:
            if self.view.detail is not None:
                self.view = replace(self.view, detail=None)
            elif key == _ESC:
                self.view = replace(self.view, filter="", node_filter="")

    def _edit(self, key: int) -> None:
        assert self.editing is not None
        field = "node_filter" if self.editing_nodes else "filter"
        if key in _ENTER:
            self.view = replace(self.view, detail=None, selected=None, **{field: self.editing})
            self.editing = None
            self.top = 0
        elif key == _ESC:
            self.view = replace(self.view, **{field: ""})
            self.editing = None
        elif key in _BACKSPACE:
            self.editing = self.editing[:-1]
        elif 32 <= key < 127:
            self.editing += chr(key)

    def _move(self, step: int) -> None:
        if self.view.detail is None:
            self.view = replace(self.view, selected=move_selection(self.keys, self.view.selected, step))
        else:
            self.top = max(0, self.top + step)

    def _page(self, direction: int) -> None:
        """A screenful up or down (the selection follows)."""
        rows_ = direction * max(1, self.space - 1)
        self.top = max(0, self.top + rows_)      # the page moves (to the end, past the last
        if self.view.detail is None:             # watcher), and the selection with it
            self.view = replace(self.view, selected=page_selection(self.body, self.view.selected,
                                                                   rows_))

    # -- painting -----------------------------------------------------------------------

    def _put(self, y: int, text: str, attr: int, width: int) -> None:
        try:
            self.stdscr.addnstr(y, 0, text.ljust(width - 1) if attr & curses.A_REVERSE else text,
                                width - 1, attr)
        except curses.error:   # a write at the edge of a shrinking terminal: skip the line
            pass

    def paint(self, now: float) -> None:
        height, width = self.stdscr.getmaxyx()
        self.stdscr.erase()
        if height < 3 or width < 20:
            self._put(0, "circus-top: terminal too small", curses.A_BOLD, width)
            self.stdscr.refresh()
            return
        body = self.body = rows(self.model, self.view, now)
        self.keys = selectable(body)
        if self.view.detail is None and self.view.selected not in self.keys:
            self.view = replace(self.view, selected=self.keys[0] if self.keys else None)
        self.space = height - 2
        self._scroll(body, self.space)
        clock = time.strftime("%H:%M:%S")
        self._put(0, f"{title(self.view, self.model)}  {clock}", curses.A_REVERSE, width)
        sticky, shown = window(body, self.top, self.space)
        lines = ([sticky] if sticky is not None else []) + shown
        for y, row in enumerate(lines, start=1):
            attr = self._attr(row)
            self._put(y, row.text, attr, width)
            self._colour(y, row, attr, width)
        if self.editing is not None:
            what = "node filter" if self.editing_nodes else "filter"
            status = f"{what} (Enter applies, Esc clears): {self.editing}_"
        else:
            more = "  [more below]" if self.top + len(shown) < len(body) else ""
            status = HELP + more
        self._put(height - 1, status, curses.A_DIM, width)
        self.stdscr.refresh()

    def _colour(self, y: int, row: Row, attr: int, width: int) -> None:
        for start, end, tone in row.spans:
            end = min(end, width - 1)
            if start >= end:
                continue
            try:
                self.stdscr.chgat(y, start, end - start, attr | self.tones[tone])
            except curses.error:
                pass

    def _attr(self, row: Row) -> int:
        if row.key is not None and row.key == self.view.selected and self.view.detail is None:
            return curses.A_REVERSE
        return _STYLE.get(row.style, curses.A_NORMAL)

    def _scroll(self, body: list[Row], space: int) -> None:
        """Keep the selected watcher on screen; never scroll past the last row."""
        index = None
        if self.view.detail is None and self.view.selected is not None:
            index = next((i for i, r in enumerate(body) if r.key == self.view.selected), 0)
        self.top = scroll_to(body, self.top, space, index)

    def resize(self) -> None:
        size = os.get_terminal_size(sys.__stdout__.fileno())
        curses.resizeterm(size.lines, size.columns)

    # -- loop ---------------------------------------------------------------------------

    def run(self, wakeup: socket.socket | None = None) -> int:
        """Repaint every second, on data (at most every 0.25 s) and on keys, until ``q``."""
        poller = zmq.Poller()
        self.stream.register(poller)
        poller.register(sys.stdin.fileno(), zmq.POLLIN)
        if wakeup is not None:
            poller.register(wakeup.fileno(), zmq.POLLIN)
        next_paint = 0.0
        last_paint = -math.inf
        pending = False
        while True:
            now = time.monotonic()
            if now >= next_paint or (pending and now - last_paint >= _DATA_REPAINT):
                self.model.expire(now)
                self.paint(now)
                last_paint, next_paint, pending = now, now + _PAINT_EVERY, False
            wake = min(next_paint, last_paint + _DATA_REPAINT) if pending else next_paint
            events = dict(poller.poll(max(1, math.ceil((wake - now) * 1000))))
            if wakeup is not None and wakeup.fileno() in events:
                _read_all(wakeup)
                self.resize()
                next_paint = 0.0
            if self.stream.drain(self.model, time.monotonic()):
                pending = True
            while (key := self._read_key()) != -1:
                if key == curses.KEY_RESIZE:
                    curses.update_lines_cols()
                else:
                    self.handle(key)
                if self.quit:
                    return 0
                next_paint = 0.0


    def _read_key(self) -> int:
        """The next key, -1 if none. Arrow keys in the terminal's normal cursor mode
        (``ESC [ A``, which terminfo does not list when it expects ``ESC O A``) are decoded too."""
        key = self.stdscr.getch()
        if key != _ESC:
            return key
        second = self.stdscr.getch()
        if second not in (ord("["), ord("O")):
            if second != -1:
                curses.ungetch(second)
            return key
        third = self.stdscr.getch()
        if third in _ARROWS:
            return _ARROWS[third]
        for pushed in (third, second)[third == -1:]:
            curses.ungetch(pushed)
        return key


def _read_all(sock: socket.socket) -> None:
    try:
        while sock.recv(512):
            pass
    except BlockingIOError:
        pass


def _main(stdscr: "curses.window", stream: Stream, model: Model, view: View) -> int:
    stdscr.nodelay(True)
    stdscr.keypad(True)
    try:
        curses.set_escdelay(25)   # Esc is a key here, not only the start of a sequence
        curses.curs_set(0)
    except curses.error:          # a terminal without an invisible cursor: leave it
        pass
    # SIGWINCH wakes the poll through a socket pair, so a resize is drawn at once.
    reader, writer = socket.socketpair()
    reader.setblocking(False)
    writer.setblocking(False)
    old_handler = signal.signal(signal.SIGWINCH, lambda signum, frame: None)
    old_fd = signal.set_wakeup_fd(writer.fileno(), warn_on_full_buffer=False)
    try:
        screen = Screen(stdscr, stream, model, view)
        screen.tones = tone_attributes(_start_colours())
        return screen.run(reader)
    finally:
        signal.set_wakeup_fd(old_fd)
        signal.signal(signal.SIGWINCH, old_handler)
        reader.close()
        writer.close()


def run_screen(stream: Stream, model: Model, view: View) -> int:
    """Run the screen until ``q``; the terminal is restored whatever happens."""
    return curses.wrapper(_main, stream, model, view)
