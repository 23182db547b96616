"""Tier 2: output streams with real circusd processes and real children."""
from __future__ import annotations

import gzip
import json
import os
import pwd
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.real
WORKERS = Path(__file__).parent / "workers"
WRITER = WORKERS / "linewriter.py"

@pytest.fixture
def node(control_node):
    return control_node


def writer(*args: object) -> str:
    return f"{sys.executable} {WRITER} " + " ".join(str(a) for a in args)


def expected(name: str, n: int, pad: int = 8) -> bytes:
    return "".join(f"{name} {i:07d} {'x' * pad}\n" for i in range(n)).encode()


def read(path: Path) -> bytes:
    """The file's bytes; none while a rotation has moved it away."""
    try:
        return path.read_bytes()
    except FileNotFoundError:
        return b""


def rotated(path: Path) -> list[Path]:
    """``path.N`` … ``path.1``, ``path``: oldest first."""
    backups = sorted(path.parent.glob(path.name + ".*"), key=lambda p: -int(p.suffix[1:]))
    return [*backups, path]


def quit_and_wait(d, c) -> None:
    assert c.call("quit", waiting=True, wait=30)["status"] == "ok"
    assert d.proc.wait(30) == 0


# -- nothing lost, lines whole -------------------------------------------------------------------

def test_200000_lines_rotated_at_1mb_are_all_there_in_order_and_whole(node, tmp_path):
    out, marker = tmp_path / "out.log", tmp_path / "written"
    d, c = node(f"""
        [watcher:w]
        cmd = {writer("--lines 200000 --marker", marker)}
        stdout_stream.class = FileStream
        stdout_stream.filename = {out}
        stdout_stream.max_bytes = 1000000
        stdout_stream.backup_count = 20
    """)
    d.wait(marker.exists, 60, "the child to write its lines")
    quit_and_wait(d, c)                          # at once: what is in the pipe must still arrive
    files = rotated(out)
    assert len(files) >= 5
    assert b"".join(p.read_bytes() for p in files) == expected("stdout", 200_000)
    for p in files:
        data = p.read_bytes()
        assert len(data) <= 1_000_000 and data.endswith(b"\n")     # rotated between lines


def test_nothing_is_lost_when_circusd_quits_right_after_the_child_wrote(node, tmp_path):
    out, err, marker = tmp_path / "out.log", tmp_path / "err.log", tmp_path / "written"
    d, c = node(f"""
        [watcher:w]
        cmd = {writer("--lines 20000 --stream both --tail no-newline-at-the-end --marker", marker)}
        stdout_stream.filename = {out}
        stderr_stream.filename = {err}
    """)
    d.wait(marker.exists, 30, "the child to write its lines")
    d.signal(signal.SIGTERM)
    assert d.proc.wait(30) == 0
    assert out.read_bytes() == expected("stdout", 20000) + b"no-newline-at-the-end\n"
    assert err.read_bytes() == expected("stderr", 20000) + b"no-newline-at-the-end\n"


def test_lines_of_a_process_that_exits_reach_the_file_before_stop_returns(node, tmp_path):
    out = tmp_path / "out.log"
    d, c = node(f"""
        [watcher:w]
        cmd = {writer("--lines 5000 --then exit")}
        respawn = false
        stdout_stream.filename = {out}
    """)
    d.wait(lambda: c.call("status", name="w")["status"] == "stopped", 30, "the one-shot to end")
    assert out.read_bytes() == expected("stdout", 5000)
    quit_and_wait(d, c)


# -- rotation by others: reopen, SIGUSR1, WatchedFileStream --------------------------------------

@pytest.mark.parametrize("how", ["command", "SIGUSR1"])
def test_reopen_after_external_rotation_sends_new_lines_to_a_new_file(node, tmp_path, how):
    out = tmp_path / "out.log"
    d, c = node(f"""
        [watcher:w]
        cmd = {writer("--lines 100000 --every 0.01")}
        stdout_stream.class = FileStream
        stdout_stream.filename = {out}
    """)
    d.wait(lambda: read(out), 10, "first lines")
    moved = tmp_path / "out.log.old"
    out.rename(moved)                             # what logrotate does
    time.sleep(0.1)
    assert not out.exists()                       # the stream still writes to the moved file
    if how == "command":
        assert c.call("reopen")["status"] == "ok"
    else:
        d.signal(signal.SIGUSR1)
    d.wait(lambda: read(out), 10, "lines in a new file")
    quit_and_wait(d, c)
    old, new = moved.read_text().splitlines(), out.read_text().splitlines()
    numbers = [int(line.split()[1]) for line in old + new]
    assert numbers == list(range(len(numbers)))   # one sequence, split between the two files


def test_watched_file_stream_follows_a_moved_file_by_itself(node, tmp_path):
    out = tmp_path / "out.log"
    d, c = node(f"""
        [watcher:w]
        cmd = {writer("--lines 100000 --every 0.01")}
        stdout_stream.class = WatchedFileStream
        stdout_stream.filename = {out}
    """)
    d.wait(lambda: read(out), 10, "first lines")
    moved = tmp_path / "out.log.1"
    out.rename(moved)
    d.wait(lambda: read(out), 10, "lines in a new file")
    quit_and_wait(d, c)
    numbers = [int(line.split()[1]) for line in (moved.read_text() + out.read_text()).splitlines()]
    assert numbers == list(range(len(numbers)))


def test_set_moves_the_output_to_the_new_file_at_once(node, tmp_path):
    first, second = tmp_path / "first.log", tmp_path / "second.log"
    d, c = node(f"""
        [watcher:w]
        cmd = {writer("--lines 100000 --every 0.01")}
        stdout_stream.filename = {first}
    """)
    d.wait(lambda: read(first), 10, "first lines")
    reply = c.call("set", name="w", options={"stdout_stream.filename": str(second)}, waiting=True, wait=30)
    assert reply["status"] == "ok", reply
    d.wait(lambda: read(second), 10, "lines in the new file")
    size = len(read(first))
    time.sleep(0.2)
    assert len(read(first)) == size                 # the old file is closed
    bad = c.call("set", name="w", options={"stdout_stream.filename": f"{tmp_path}/no/such.log"},
                 waiting=True, wait=30)
    assert bad["status"] == "error" and "cannot open" in bad["reason"]
    grown = len(read(second))
    d.wait(lambda: len(read(second)) > grown, 10, "the old stream kept")
    quit_and_wait(d, c)


# -- each stream class ---------------------------------------------------------------------------

def test_file_stream_time_prefix_and_gzip_of_rotated_files(node, tmp_path):
    out, marker = tmp_path / "out.log", tmp_path / "written"
    d, c = node(f"""
        [watcher:w]
        cmd = {writer("--lines 3000 --marker", marker)}
        stdout_stream.class = FileStream
        stdout_stream.filename = {out}
        stdout_stream.time_format = %Y-%m-%d %H:%M:%S
        stdout_stream.max_bytes = 20000
        stdout_stream.backup_count = 100
        stdout_stream.compress = gzip
    """)
    d.wait(marker.exists, 30, "the child to write its lines")
    pid = c.call("list", name="w")["pids"][0]
    quit_and_wait(d, c)
    backups = sorted(tmp_path.glob("out.log.*.gz"), key=lambda p: -int(p.name.split(".")[2]))
    assert len(backups) >= 5 and not list(tmp_path.glob("out.log.[0-9]"))   # all compressed
    text = b"".join(gzip.decompress(p.read_bytes()) for p in backups) + out.read_bytes()
    lines = text.decode().splitlines()
    prefix = re.compile(rf"\d{{4}}-\d\d-\d\d \d\d:\d\d:\d\d \[{pid}\] \| ")
    assert all(prefix.match(line) for line in lines)
    assert [prefix.sub("", line) for line in lines] == expected("stdout", 3000).decode().splitlines()


def test_timed_rotation_with_a_lower_case_rotate_when(node, tmp_path):
    out = tmp_path / "out.log"
    d, c = node(f"""
        [watcher:w]
        cmd = {writer("--lines 100000 --every 0.01")}
        stdout_stream.class = TimedRotatingFileStream
        stdout_stream.filename = {out}
        stdout_stream.rotate_when = s
        stdout_stream.rotate_interval = 1
        stdout_stream.utc = false
        stdout_stream.backup_count = 100
    """)
    assert c.call("get", name="w", keys=["stdout_stream"])["options"]["stdout_stream"]["rotate_when"] == "S"
    d.wait(lambda: len(list(tmp_path.glob("out.log.*"))) >= 2, 15, "two rotations")
    quit_and_wait(d, c)
    backups = sorted(tmp_path.glob("out.log.*"))
    assert all(re.fullmatch(r"out\.log\.\d{14}(-\d+)?", p.name) for p in backups)
    text = "".join(p.read_text() for p in backups) + out.read_text()
    numbers = [int(line.split()[1]) for line in text.splitlines()]
    assert numbers == list(range(len(numbers)))


def test_json_lines_carry_time_node_watcher_pid_stream_and_line(node, tmp_path):
    out, marker = tmp_path / "out.log", tmp_path / "written"
    d, c = node(f"""
        [watcher:Web]
        cmd = {writer("--lines 3 --stream stderr --tail 'no newline' --marker", marker)}
        stderr_stream.class = FileStream
        stderr_stream.filename = {out}
        stderr_stream.format = json
    """)
    d.wait(marker.exists, 30, "the child to write its lines")
    pid = c.call("list", name="web")["pids"][0]
    node_name = c.call("status", name="web")["node"]
    quit_and_wait(d, c)
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["line"] for r in records] == [f"stderr {i:07d} xxxxxxxx" for i in range(3)] + \
        ["no newline"]
    for r in records:
        assert set(r) == {"time", "node", "watcher", "pid", "stream", "line"}
        assert (r["node"], r["watcher"], r["pid"], r["stream"]) == (node_name, "Web", pid, "stderr")
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z", r["time"])


def test_stdout_and_fancy_stdout_streams_write_to_circusds_stdout(node, tmp_path):
    marker = tmp_path / "written"
    d, c = node(f"""
        [watcher:plain]
        cmd = {writer("--lines 3 --marker", marker)}
        stdout_stream.class = StdoutStream

        [watcher:fancy]
        cmd = {writer("--lines 3 --stream stderr --marker", str(marker) + "2")}
        stderr_stream.class = FancyStdoutStream
        stderr_stream.color = green
    """)
    d.wait(lambda: marker.exists() and Path(str(marker) + "2").exists(), 30, "both children")
    pid = c.call("list", name="fancy")["pids"][0]
    quit_and_wait(d, c)
    text = d.proc.stdout.read().decode()
    assert expected("stdout", 3).decode() in text
    fancy = [line for line in text.splitlines() if "stderr 000000" in line]
    assert len(fancy) == 3
    assert all(re.fullmatch(rf"\x1b\[32m\d{{4}}-\d\d-\d\d \d\d:\d\d:\d\d \[{pid}\] \| \x1b\[0m"
                            rf"stderr \d{{7}} xxxxxxxx", line) for line in fancy)


def test_a_custom_stream_class_by_dotted_name(node, tmp_path, monkeypatch):
    monkeypatch.setenv("PYTHONPATH", str(WORKERS))
    collected, marker = tmp_path / "collected.txt", tmp_path / "written"
    d, c = node(f"""
        [watcher:w]
        cmd = {writer("--lines 3 --marker", marker)}
        stdout_stream.class = customstream.Collect
        stdout_stream.path = {collected}
        stdout_stream.prefix = >
    """)
    d.wait(marker.exists, 30, "the child to write its lines")
    pid = c.call("list", name="w")["pids"][0]
    quit_and_wait(d, c)
    assert collected.read_text() == "opened\n" + "".join(
        f">stdout {pid} stdout {i:07d} xxxxxxxx\n" for i in range(3)) + "closed\n"


def test_a_stream_that_cannot_be_opened_fails_only_its_watcher(node, tmp_path):
    d, c = node(f"""
        [watcher:bad]
        cmd = sleep 3600
        stdout_stream.filename = {tmp_path}/missing-dir/out.log

        [watcher:good]
        cmd = sleep 3601
    """)
    d.wait(lambda: c.call("status", name="bad")["status"] == "fatal", 10, "bad to be fatal")
    reply = c.call("status", name="bad")
    assert "stdout_stream: cannot open" in reply["reason"] and "No such file" in reply["reason"]
    # the watchers start one after the other: good's turn comes once bad has failed
    d.wait(lambda: c.call("status", name="good")["status"] == "active", 10, "good to be active")
    assert d.children("sleep 3600") == []
    quit_and_wait(d, c)


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root")
def test_log_files_belong_to_the_watchers_user(node, tmp_path):
    nobody = pwd.getpwnam("nobody")
    out = tmp_path / "out.log"
    d, c = node(f"""
        [watcher:w]
        cmd = sh -c 'i=0; while [ $i -lt 2000 ]; do echo line $i; i=$((i+1)); done; sleep 3600'
        working_dir = /
        uid = nobody
        stdout_stream.filename = {out}
        stdout_stream.max_bytes = 4000
        stdout_stream.backup_count = 3
        stdout_stream.compress = gzip
    """)
    d.wait(lambda: b"line 1999\n" in read(out), 30, "the last line")
    quit_and_wait(d, c)
    assert len(list(tmp_path.glob("out.log.*.gz"))) == 3
    for p in [out, *tmp_path.glob("out.log.*.gz")]:
        assert (p.stat().st_uid, p.stat().st_gid) == (nobody.pw_uid, nobody.pw_gid), p


# -- circusd's stdout in a container: a reader that stalls ---------------------------------------

def test_a_stalled_stdout_drops_lines_but_never_blocks_circusd(node, tmp_path):
    marker = tmp_path / "written"
    d, c = node(f"""
        [watcher:noisy]
        cmd = {writer("--lines 200000 --pad 100 --marker", marker)}
        stdout_stream.class = StdoutStream
    """)                                          # circusd's stdout is a pipe nobody reads (yet)
    d.wait(marker.exists, 30, "the child to write 20 MB")
    t0 = time.monotonic()
    assert c.call("status", name="noisy")["status"] == "active"
    assert time.monotonic() - t0 < 1.0
    assert c.call("quit")["status"] == "ok"
    data = d.proc.stdout.read()                   # now read: what was kept comes out, then EOF
    assert d.proc.wait(30) == 0
    received = data.count(b"stdout ")
    assert 0 < received < 200_000
    assert re.search(r"circusd's stdout: \d+ line\(s\) of output dropped", d.log_text())


# -- tail ----------------------------------------------------------------------------------------

def ctl(tmp_path: Path, *args: str, timeout: float = 30) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "circus.cli.circusctl", "--endpoint",
                           f"ipc://{tmp_path}/control.sock", *args],
                          capture_output=True, text=True, timeout=timeout)


def test_tail_prints_the_last_lines(node, tmp_path):
    marker = tmp_path / "written"
    d, c = node(f"""
        [watcher:w]
        cmd = {writer("--lines 50 --stream both --marker", marker)}
        stdout_stream.class = StdoutStream
        stderr_stream.filename = {tmp_path}/err.log
    """)
    d.wait(marker.exists, 30, "the child to write its lines")
    d.wait(lambda: len(c.call("tail", name="w", lines=100)["lines"]) == 100, 10, "100 lines")
    r = ctl(tmp_path, "tail", "w", "--stream", "stderr", "--lines", "3")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert len(lines) == 3
    assert all(re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d \[\d+\] stderr \| stderr 00000(47|48|49) x+", line)
               for line in lines)
    reply = c.call("tail", name="w", lines=2000)
    assert len(reply["lines"]) == 100 and reply["topic"] == "output.w."
    assert [e["seq"] for e in reply["lines"]] == sorted(e["seq"] for e in reply["lines"])
    bad = c.call("tail", name="nope")
    assert bad["status"] == "error" and bad["code"] == "unknown_watcher"
    quit_and_wait(d, c)


def test_every_watcher_keeps_its_last_lines_without_a_stream(node, tmp_path):
    """No stream, no probe: circusd still reads the pipes (recent_lines, on by default), keeps
    the lines for tail and passes them on to its own stdout/stderr."""
    d, c = node("""
        [watcher:w]
        cmd = sh -c 'echo out-line; echo err-line >&2; exec sleep 3600'

        [watcher:quiet]
        cmd = sh -c 'echo never-kept; exec sleep 3600'
        recent_lines = 0
    """)
    d.wait(lambda: len(c.call("tail", name="w")["lines"]) == 2, 10, "2 lines")
    r = ctl(tmp_path, "tail", "w")
    assert r.returncode == 0, r.stderr
    assert "out-line" in r.stdout and "err-line" in r.stdout
    assert ctl(tmp_path, "tail", "w", "--stream", "stderr").stdout.count("line") == 1
    r = ctl(tmp_path, "tail", "quiet")
    assert r.returncode == 3
    assert "recent_lines = 0 and no stdout_stream" in r.stderr
    quit_and_wait(d, c)
    out = d.proc.stdout.read().decode()
    assert "out-line" in out and "err-line" in out and "never-kept" in out   # passed on


def test_tail_follow_prints_the_last_lines_then_every_new_one(node, tmp_path):
    d, c = node(f"""
        [watcher:w]
        cmd = {writer("--lines 100000 --every 0.02")}
        stdout_stream.class = FileStream
        stdout_stream.filename = {tmp_path}/out.log
    """)
    d.wait(lambda: len(c.call("tail", name="w", lines=5)["lines"]) == 5, 10, "five lines")
    with subprocess.Popen([sys.executable, "-m", "circus.cli.circusctl", "--endpoint",
                           f"ipc://{tmp_path}/control.sock", "tail", "w", "--lines", "5", "--follow"],
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) as proc:
        got: list[str] = []
        try:
            deadline = time.monotonic() + 20     # a line every 20 ms: 40 lines take about 1 s
            while len(got) < 40 and time.monotonic() < deadline:
                line = proc.stdout.readline()
                if not line:
                    break
                got.append(line)
        finally:
            proc.send_signal(signal.SIGINT)
            errors = proc.communicate(timeout=10)[1]
    assert len(got) == 40, (got, errors)
    assert proc.returncode == 0, errors
    numbers = [int(line.split(" | ")[1].split()[1]) for line in got]
    assert numbers == list(range(numbers[0], numbers[0] + 40))   # no gap, no line twice
    quit_and_wait(d, c)


# -- the example ---------------------------------------------------------------------------------

def test_the_streams_example_runs(circusd, tmp_path):
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    root = Path(__file__).parent.parent
    text = (root / "examples" / "streams.ini").read_text()
    text = text.replace("tcp://127.0.0.1:5555", f"ipc://{tmp_path}/control.sock")
    text = text.replace("tcp://127.0.0.1:5556", f"ipc://{tmp_path}/events.sock")
    text = text.replace("port = 8000", f"port = {port}")
    text = text.replace("examples/logs", str(tmp_path))
    text = text.replace("python3 ", f"{sys.executable} ").replace("examples/webapp.py", f"{root}/examples/webapp.py")
    d = circusd(text)
    d.wait(lambda: b"ready" in read(tmp_path / "web.out.log"), 30, "the web worker's first line")
    d.wait(lambda: b"tick 1\n" in read(tmp_path / "worker.log"), 30, "two ticks")
    r = ctl(tmp_path, "tail", "worker", "--lines", "1")
    assert r.returncode == 0 and re.search(r"\[\d+\] stdout \| tick \d+$", r.stdout), r.stdout + r.stderr
    assert re.match(rb"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d \[\d+\] \| ready\n", read(tmp_path / "web.out.log"))
    d.stop()
    out = d.proc.stdout.read().decode()
    warn = next(json.loads(line) for line in out.splitlines() if line.startswith("{"))
    assert (warn["watcher"], warn["stream"], warn["line"]) == ("container-style", "stderr", "warn 0")
    assert "\x1b[36m" in out and "| \x1b[0mhello 0" in out


def test_an_output_event_carries_at_most_4_kib_of_a_long_line_and_says_so(node, tmp_path):
    """A subscriber that stops reading is bounded by the socket's message count: each output
    event must stay small whatever the line (files and ``tail`` keep it whole)."""
    import zmq

    from circus.streams.output import EVENT_LINE_MAX
    d, c = node(f"""
        [watcher:w]
        cmd = {sys.executable} -c "print('y' * 20000, flush=True); import time; time.sleep(3600)"
        stdout_stream.class = FileStream
        stdout_stream.filename = {tmp_path}/out.log
        autostart = false
    """)
    ctx = zmq.Context()
    sub = ctx.socket(zmq.SUB)
    sub.linger = 0
    try:
        sub.setsockopt(zmq.SUBSCRIBE, b"output.w")
        sub.connect(f"ipc://{tmp_path}/events.sock")
        assert sub.poll(10_000), "circusd did not confirm the output subscription"
        sub.recv_multipart()
        c.call("start", name="w")
        assert sub.poll(10_000), "no output event"
        event = json.loads(sub.recv_multipart()[1])
        assert event["line"] == "y" * EVENT_LINE_MAX and event["cut"] == 20000
        d.wait(lambda: read(tmp_path / "out.log") == b"y" * 20000 + b"\n", 10, "the whole line")
        assert c.call("tail", name="w", lines=1)["lines"][0]["line"] == "y" * 20000
    finally:
        sub.close()
        ctx.term()
    quit_and_wait(d, c)
