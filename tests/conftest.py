"""Fixtures for tier-2 tests: real circusd processes with real children, in tmp_path."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Callable

import pytest

HERE = Path(__file__).parent
ROOT = HERE.parent


def proc_children(pid: int) -> list[int]:
    out: list[int] = []
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return out
    for tid in tasks:
        try:
            with open(f"/proc/{pid}/task/{tid}/children") as fh:
                out.extend(int(x) for x in fh.read().split())
        except OSError:
            pass
    return out


def proc_alive(pid: int) -> bool:
    """True if ``pid`` exists and is not a zombie."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def proc_cmdline(pid: int) -> list[str]:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as fh:
            return [a.decode() for a in fh.read().split(b"\0") if a]
    except OSError:
        return []


def proc_state(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0]
    except OSError:
        return "-"


def proc_rss_kb(pid: int) -> int:
    """VmRSS of ``pid`` in kB."""
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError(f"no VmRSS for {pid}")


def proc_fd_count(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def proc_zombies(pid: int) -> list[int]:
    """Children of ``pid`` that died and were not reaped."""
    return [p for p in proc_children(pid) if proc_state(p) == "Z"]


class Circusd:
    """A circusd subprocess on a config written to tmp_path; its log goes to a file."""

    def __init__(self, tmp_path: Path) -> None:
        self.dir = tmp_path
        self.log = tmp_path / "circusd.log"
        self.config = tmp_path / "circus.ini"
        self.proc: subprocess.Popen | None = None

    def write(self, text: str) -> Path:
        self.config.write_text(textwrap.dedent(text).lstrip())
        return self.config

    def argv(self, *extra: str) -> list[str]:
        return [sys.executable, "-m", "circus.cli.circusd", "--log-level", "debug",
                "--log-output", str(self.log), *extra, str(self.config)]

    def start(self, text: str | None = None, *extra: str) -> "Circusd":
        if text is not None:
            self.write(text)
        self.proc = subprocess.Popen(self.argv(*extra), cwd=self.dir, stdin=subprocess.DEVNULL,
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        return self

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def children(self, cmd: str | None = None) -> list[int]:
        kids = [p for p in proc_children(self.pid) if proc_alive(p)]
        if cmd is not None:
            kids = [p for p in kids if " ".join(proc_cmdline(p)).startswith(cmd)]
        return sorted(kids)

    def log_text(self) -> str:
        return self.log.read_text() if self.log.exists() else ""

    def wait(self, predicate: Callable[[], object], timeout: float = 10.0, what: str = "condition"):
        """Poll ``predicate`` until true; fail at the deadline or as soon as circusd died."""
        deadline = time.monotonic() + timeout
        while True:
            value = predicate()
            if value:
                return value
            if self.proc is not None and self.proc.poll() is not None:
                out = self.proc.stdout.read().decode() if self.proc.stdout else ""
                pytest.fail(f"circusd exited ({self.proc.returncode}) while waiting for {what}\n"
                            f"{out}\n{self.log_text()[-3000:]}")
            if time.monotonic() > deadline:
                pytest.fail(f"timed out after {timeout} s waiting for {what}\n{self.log_text()[-3000:]}")
            time.sleep(0.01)

    def wait_log(self, text: str, timeout: float = 10.0) -> None:
        self.wait(lambda: text in self.log_text(), timeout, f"log line {text!r}")

    def signal(self, sig: int) -> None:
        os.kill(self.pid, sig)

    def stop(self, timeout: float = 15.0) -> int:
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            pytest.fail(f"circusd did not stop within {timeout} s\n{self.log_text()[-3000:]}")

    def cleanup(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            kids = proc_children(self.pid)
            self.proc.kill()
            self.proc.wait(10)
            for pid in kids:
                try:
                    os.killpg(pid, signal.SIGKILL)
                except OSError:
                    pass
        if self.proc.stdout:
            self.proc.stdout.close()


@pytest.fixture
def circusd(tmp_path):
    daemons: list[Circusd] = []

    def make(text: str | None = None, *extra: str, start: bool = True) -> Circusd:
        d = Circusd(tmp_path if not daemons else tmp_path / f"d{len(daemons)}")
        d.dir.mkdir(exist_ok=True)
        daemons.append(d)
        if text is not None:
            d.write(text)
        if start:
            d.start(None, *extra)
        return d

    yield make
    for d in daemons:
        d.cleanup()



class Raw:
    """A DEALER speaking raw JSON frames, as 0.19's clients do; every receive has a deadline."""

    def __init__(self, ctx, endpoint: str, kind: int | None = None) -> None:
        import zmq
        self.sock = ctx.socket(zmq.DEALER if kind is None else kind)
        self.sock.linger = 0
        self.sock.connect(endpoint)

    def send_raw(self, body: bytes) -> None:
        self.sock.send(body)

    def recv(self, timeout: float = 5.0) -> dict:
        import json
        if not self.sock.poll(int(timeout * 1000)):
            raise AssertionError(f"no reply within {timeout} s")
        return json.loads(self.sock.recv())

    def call(self, command: str, wait: float = 5.0, **props) -> dict:
        import json
        import uuid
        msg_id = uuid.uuid4().hex
        self.send_raw(json.dumps({"id": msg_id, "command": command, "properties": props}).encode())
        reply = self.recv(wait)
        assert reply["id"] == msg_id
        return reply

    def close(self) -> None:
        self.sock.close()


IPC_HEAD = """
[circus]
endpoint = ipc://{dir}/control.sock
pubsub_endpoint = ipc://{dir}/events.sock
"""


@pytest.fixture
def control_node(circusd, tmp_path):
    """``start(body)`` runs circusd on ipc endpoints in tmp_path with the [watcher]/[socket]
    sections of ``body`` and returns (circusd, a Raw client on its control socket)."""
    import zmq
    ctx = zmq.Context()
    clients: list[Raw] = []

    def start(body: str):
        d = circusd(IPC_HEAD.format(dir=tmp_path) + textwrap.dedent(body))
        d.wait(lambda: (tmp_path / "control.sock").exists(), what="control socket")
        c = Raw(ctx, f"ipc://{tmp_path}/control.sock")
        clients.append(c)
        return d, c
    yield start
    for c in clients:
        c.close()
    ctx.term()
