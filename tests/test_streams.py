"""Tier 1: stream options, formats, rotation, the writer thread and the pump, in-process."""
from __future__ import annotations

import asyncio
import gzip
import json
import os
import re
import textwrap
import threading
import time
from datetime import datetime
from pathlib import Path

import pytest

from circus.config import ConfigError, parse_config_text
from circus.streams.files import FileStream, WatchedFileStream
from circus.streams.formats import FancyFormat, JsonFormat, TextFormat, pick_color
from circus.streams.output import RECENT_LINES, _Recent
from circus.streams.pump import OutputPump
from circus.streams.registry import CustomStream, build_stream, StreamContext
from circus.streams.timed import TimedRotatingFileStream
from circus.streams.writer import StreamWriter


def watcher(ini: str):
    config = parse_config_text(textwrap.dedent(ini), "test.ini", {})
    return config.watchers[0]


def batch(*lines: str, when: float = 1_700_000_000.5, pid: int = 42, name: str = "stdout"):
    return (when, pid, name, [line.encode() for line in lines])


# -- configuration -------------------------------------------------------------------------------

def test_stream_options_are_checked_and_normalised():
    w = watcher("""
        [watcher:w]
        cmd = x
        stdout_stream.class = TimedRotatingFileStream
        stdout_stream.filename = /tmp/x.log
        stdout_stream.rotate_when = midnight
        stdout_stream.utc = Yes
        stdout_stream.backup_count = 07
        stdout_stream.compress = GZIP
        stdout_stream.format = JSON
        stderr_stream.class = circus.stream.FancyStdoutStream
        stderr_stream.color = Red
    """)
    assert w.stdout_stream == {"class": "TimedRotatingFileStream", "filename": "/tmp/x.log",
                               "rotate_when": "MIDNIGHT", "utc": "true", "backup_count": "7",
                               "compress": "gzip", "format": "json"}
    assert w.stderr_stream == {"class": "FancyStdoutStream", "color": "red"}


def test_utc_false_is_false_and_custom_classes_take_any_option():
    w = watcher("""
        [watcher:w]
        cmd = x
        stdout_stream.class = TimedRotatingFileStream
        stdout_stream.rotate_when = W6
        stdout_stream.utc = False
        stderr_stream.class = my.pkg.Stream
        stderr_stream.anything = Goes
    """)
    assert w.stdout_stream["utc"] == "false"
    assert w.stderr_stream == {"class": "my.pkg.Stream", "anything": "Goes"}


@pytest.mark.parametrize("lines,key,reason", [
    ("stdout_stream.class = StdoutStream\nstdout_stream.filename = f", "stdout_stream.filename",
     "not an option of StdoutStream"),
    ("stdout_stream.filename = f\nstdout_stream.backup_count = -1", "stdout_stream.backup_count",
     "must be >= 0"),
    ("stdout_stream.class = TimedRotatingFileStream\nstdout_stream.rotate_when = d\n"
     "stdout_stream.rotate_interval = 0", "stdout_stream.rotate_interval", "must be >= 1"),
    ("stdout_stream.class = FancyStdoutStream\nstdout_stream.color = pink", "stdout_stream.color",
     "expected one of red, green"),
    ("stdout_stream.filename = f\nstdout_stream.format = xml", "stdout_stream.format",
     "expected one of text, json"),
])
def test_bad_stream_options_name_the_key(lines, key, reason):
    with pytest.raises(ConfigError) as info:
        watcher("[watcher:w]\ncmd = x\n" + lines + "\n")
    issue = info.value.issues[0]
    assert issue.key == key and reason in issue.reason


def test_build_stream_maps_every_builtin_class(tmp_path):
    ctx = StreamContext("web", "stdout", lambda: "n1")
    f = build_stream({"class": "FileStream", "filename": str(tmp_path / "a"), "max_bytes": "10",
                      "backup_count": "2", "compress": "gzip"}, ctx)
    assert isinstance(f, FileStream) and (f.max_bytes, f.backup_count, f.compress) == (10, 2, True)
    t = build_stream({"class": "TimedRotatingFileStream", "filename": str(tmp_path / "b"),
                      "rotate_when": "h", "rotate_interval": "2", "utc": "true"}, ctx)
    assert isinstance(t, TimedRotatingFileStream) and (t.period, t.utc) == (7200, True)
    assert isinstance(build_stream({"class": "WatchedFileStream", "filename": "x"}, ctx),
                      WatchedFileStream)
    assert isinstance(build_stream({"class": "QueueStream"}, ctx), CustomStream)
    temp = build_stream({"class": "FileStream"}, ctx)
    try:
        assert os.path.basename(temp.path).startswith("circus-web-stdout-")
    finally:
        os.remove(temp.path)


# -- formats -------------------------------------------------------------------------------------

def test_text_format_is_byte_exact_and_the_prefix_is_per_line():
    raw = TextFormat()
    b = (1.0, 7, "stdout", [b"a\xff", b"", b"c"])
    assert raw.blob(b) == b"a\xff\n\nc\n" and raw.lines(b) == [b"a\xff\n", b"\n", b"c\n"]
    when = 1_700_000_000.25
    stamped = TextFormat("%Y %H:%M:%S.%f").lines((when, 7, "stdout", [b"x", b"y"]))
    stamp = datetime.fromtimestamp(when).strftime("%Y %H:%M:%S.%f")
    assert stamped == [f"{stamp} [7] | x\n".encode(), f"{stamp} [7] | y\n".encode()]


def test_json_format_fields():
    lines = JsonFormat("web", lambda: "n1").lines(batch("é", "x\xff", when=1_700_000_000.5))
    first, second = (json.loads(line) for line in lines)
    assert first == {"time": "2023-11-14T22:13:20.500000Z", "node": "n1", "watcher": "web",
                     "pid": 42, "stream": "stdout", "line": "é"}
    assert second["line"] == "x\xff"
    assert all(line.endswith(b"}\n") and line.count(b"\n") == 1 for line in lines)


def test_fancy_format_colours_the_prefix_and_picks_a_stable_colour():
    line = FancyFormat("blue").lines(batch("hello"))[0].decode()
    assert re.fullmatch(r"\x1b\[34m\d{4}-\d\d-\d\d \d\d:\d\d:\d\d \[42\] \| \x1b\[0mhello\n", line)
    assert pick_color("web") == pick_color("web")


# -- file streams --------------------------------------------------------------------------------

def test_size_rotation_keeps_lines_whole_and_backups_bounded(tmp_path):
    path = tmp_path / "out.log"
    stream = FileStream(str(path), TextFormat(), max_bytes=100, backup_count=3)
    stream.open()
    lines = [f"line {i:03d}" for i in range(100)]          # 9 bytes each with \n
    for start in range(0, 100, 7):
        stream.write([batch(*lines[start:start + 7])])
    stream.close()
    files = [tmp_path / f"out.log.{n}" for n in (3, 2, 1)] + [path]
    assert not (tmp_path / "out.log.4").exists()
    data = b"".join(p.read_bytes() for p in files)
    assert data == "".join(f"{line}\n" for line in lines[-len(data) // 9:]).encode()
    assert all(len(p.read_bytes()) <= 100 and p.read_bytes().endswith(b"\n") for p in files)


def test_size_rotation_with_gzip_and_a_line_longer_than_max_bytes(tmp_path):
    path = tmp_path / "out.log"
    stream = FileStream(str(path), TextFormat(), max_bytes=10, backup_count=5, compress=True)
    stream.open()
    stream.write([batch("short", "a line much longer than ten bytes", "end")])
    stream.close()
    assert gzip.decompress((tmp_path / "out.log.2.gz").read_bytes()) == b"short\n"
    assert gzip.decompress((tmp_path / "out.log.1.gz").read_bytes()) == \
        b"a line much longer than ten bytes\n"
    assert path.read_bytes() == b"end\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.log", "out.log.1.gz", "out.log.2.gz"]


def test_backup_count_zero_empties_the_file(tmp_path):
    path = tmp_path / "out.log"
    stream = FileStream(str(path), TextFormat(), max_bytes=10, backup_count=0)
    stream.open()
    stream.write([batch("123456", "abcdef")])
    stream.close()
    assert path.read_bytes() == b"abcdef\n" and list(tmp_path.iterdir()) == [path]


def test_an_existing_file_is_appended_to_and_its_size_counts(tmp_path):
    path = tmp_path / "out.log"
    path.write_bytes(b"12345678\n")
    stream = FileStream(str(path), TextFormat(), max_bytes=12, backup_count=1)
    stream.open()
    stream.write([batch("ab", "cd")])
    stream.close()
    assert (tmp_path / "out.log.1").read_bytes() == b"12345678\nab\n" and path.read_bytes() == b"cd\n"


def test_watched_file_stream_reopens_a_moved_or_removed_file(tmp_path):
    path = tmp_path / "out.log"
    stream = WatchedFileStream(str(path), TextFormat())
    stream.open()
    stream.write([batch("one")])
    path.rename(tmp_path / "moved")
    stream.write([batch("two")])
    path.unlink()
    stream.write([batch("three")])
    stream.close()
    assert (tmp_path / "moved").read_bytes() == b"one\n" and path.read_bytes() == b"three\n"


def timed(tmp_path: Path, when: str, **kw) -> TimedRotatingFileStream:
    stream = TimedRotatingFileStream(str(tmp_path / "t.log"), TextFormat(), rotate_when=when, **kw)
    stream.open()
    return stream


def test_timed_rotation_names_files_after_their_period(tmp_path):
    stream = timed(tmp_path, "m", utc=True, backup_count=2)
    t0 = stream.rollover_at - 60 + 1                # inside the current minute
    for minute in range(4):
        stream.write([batch(f"m{minute}", when=t0 + minute * 60)])
    stream.close()
    names = sorted(p.name for p in tmp_path.iterdir())
    assert len(names) == 3 and "t.log" in names     # the current file and 2 backups
    backups = [n for n in names if n != "t.log"]
    start = time.gmtime(t0 + 60)                  # its period began with the line m1
    assert backups[0] == "t.log." + time.strftime("%Y%m%d%H%M", start)
    assert (tmp_path / backups[0]).read_text() == "m1\n"
    assert (tmp_path / "t.log").read_text() == "m3\n"


def test_timed_rotation_never_overwrites_and_skips_quiet_periods(tmp_path):
    stream = timed(tmp_path, "S", compress=True)
    t0 = stream.rollover_at - 0.5
    period_start = time.localtime(stream.rollover_at - 1)      # the file's name: its period
    taken = tmp_path / ("t.log." + time.strftime("%Y%m%d%H%M%S", period_start) + ".gz")
    taken.write_bytes(b"someone else's")
    stream.write([batch("a", when=t0), batch("b", when=t0 + 5)])
    stream.close()
    assert taken.read_bytes() == b"someone else's"
    other = Path(str(taken)[:-3] + "-1.gz")
    assert gzip.decompress(other.read_bytes()) == b"a\n" and stream.rollover_at > t0 + 5
    assert (tmp_path / "t.log").read_bytes() == b"b\n"


def test_midnight_and_weekday_rollovers_fall_on_local_midnights(tmp_path):
    monday_noon = datetime(2024, 4, 29, 12, 0).timestamp()
    midnight = timed(tmp_path, "midnight")
    assert datetime.fromtimestamp(midnight.next_rollover(monday_noon)) == datetime(2024, 4, 30)
    for day, expected in ((0, datetime(2024, 5, 6)), (2, datetime(2024, 5, 1)), (6, datetime(2024, 5, 5))):
        stream = timed(tmp_path, f"w{day}")
        assert datetime.fromtimestamp(stream.next_rollover(monday_noon)) == expected
    every_two = timed(tmp_path, "D", rotate_interval=2)
    assert every_two.next_rollover(monday_noon) == monday_noon + 2 * 86400


# -- the writer thread ---------------------------------------------------------------------------

class SlowTarget:
    def __init__(self, delay: float = 0.0, fail: bool = False) -> None:
        self.delay, self.fail = delay, fail
        self.items: list = []
        self.events: list[str] = []
        self.release = threading.Event()
        self.release.set()

    def write(self, items):
        self.release.wait(10)
        time.sleep(self.delay)
        if self.fail:
            raise OSError(28, "No space left on device")
        self.items.extend(items)
        self.events.append(f"write {len(items)}")

    def reopen(self):
        self.events.append("reopen")

    def close(self):
        self.events.append("close")


def test_the_writer_keeps_order_and_writes_everything_before_closing():
    async def main():
        target = SlowTarget()
        writer = StreamWriter(target, "t", asyncio.get_running_loop())
        writer.put("a", 1)
        reopened = writer.call(target.reopen)
        writer.put("b", 1)
        await reopened
        assert await writer.close(5)
        assert not writer.put("c", 1)
        return target
    target = asyncio.run(main())
    assert target.items == ["a", "b"]
    assert target.events[-1] == "close" and target.events.index("reopen") > 0


def test_a_full_writer_pauses_its_pipes_until_it_drained():
    async def main():
        loop = asyncio.get_running_loop()
        target = SlowTarget()
        target.release.clear()                    # a disk that does not answer
        writer = StreamWriter(target, "t", loop, high=100, low=10)
        pump = OutputPump()
        r, w = os.pipe()
        got: list[bytes] = []

        def sink(pid, name, lines):
            got.extend(lines)
            writer.put(lines, sum(map(len, lines)))
        pipe = pump.attach(r, 1, "stdout", sink, writer)
        os.write(w, b"x" * 150 + b"\n")
        while not pipe.paused:
            await asyncio.sleep(0.01)
        os.write(w, b"later\n")
        await asyncio.sleep(0.1)
        assert got == [b"x" * 150]                 # paused: not read while the writer is full
        t0 = loop.time()
        await asyncio.sleep(0)                     # the loop is not blocked meanwhile
        assert loop.time() - t0 < 0.05
        target.release.set()
        while len(got) < 2:
            await asyncio.sleep(0.01)
        assert got == [b"x" * 150, b"later"] and not pipe.paused
        os.close(w)
        await pump.wait_closed(5)
        await writer.close(5)
    asyncio.run(main())


def test_a_drop_writer_counts_what_it_could_not_keep(caplog):
    async def main():
        target = SlowTarget()
        target.release.clear()
        writer = StreamWriter(target, "console", asyncio.get_running_loop(), overflow="drop",
                              high=10, low=1)
        kept = [writer.put(i, 6) for i in range(5)]
        assert kept == [True, False, False, False, False]
        target.release.set()
        await writer.close(5)
        return writer
    asyncio.run(main())
    assert re.search(r"console: 4 line\(s\) of output dropped", caplog.text)


def test_a_failing_target_loses_its_lines_and_says_so(caplog):
    async def main():
        errors: list[str] = []
        writer = StreamWriter(SlowTarget(fail=True), "web stdout", asyncio.get_running_loop(),
                              on_error=errors.append)
        writer.put((0.0, 1, "stdout", [b"a", b"b"]), 2)
        await writer.close(5)
        await asyncio.sleep(0)
        return errors
    errors = asyncio.run(main())
    assert errors == ["web stdout: write failed, 2 line(s) lost so far: [Errno 28] No space left on device"]


# -- the pump and the recent lines ---------------------------------------------------------------

def test_the_pump_hands_out_whole_lines_and_flushes_a_partial_one_at_eof():
    async def main():
        pump = OutputPump()
        r, w = os.pipe()
        got: list[list[bytes]] = []
        pipe = pump.attach(r, 9, "stderr", lambda pid, name, lines: got.append(lines))
        for piece in (b"ab", b"c\nde", b"f\n\ng", b"h"):
            os.write(w, piece)
            await asyncio.sleep(0.02)
        os.close(w)
        await pump.wait_closed(5, [pipe])
        return got
    got = asyncio.run(main())
    assert [line for lines in got for line in lines] == [b"abc", b"def", b"", b"gh"]


def test_recent_lines_are_bounded_and_filtered_by_stream():
    recent = _Recent()
    for i in range(0, 3000, 3):
        name = "stderr" if i % 2 else "stdout"
        lines = [f"{i + k}".encode() for k in range(3)]
        recent.add(float(i), 100 + i, name, lines, 12)
    assert RECENT_LINES <= recent.lines < RECENT_LINES + 3
    last = recent.last(4, ["stdout", "stderr"])
    assert [e["line"] for e in last] == ["2996", "2997", "2998", "2999"]
    assert [e["seq"] for e in last] == [2997, 2998, 2999, 3000]
    only = recent.last(2, ["stdout"])
    assert [(e["line"], e["stream"]) for e in only] == [("2995", "stdout"), ("2996", "stdout")]
