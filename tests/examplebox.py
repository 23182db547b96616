"""Running the examples as their headers say: the commands of a header, and a sandbox to run
them in.

**Commands.** A header line ``#   $ COMMAND`` (``;`` in a ``;``-commented file) holds one
command; what follows two spaces and ``#``, ``;`` or ``(`` is a note. In a reStructuredText
file, the commands are the lines of a literal block (``# notes`` dropped the same way).

**The sandbox.** A copy of ``examples/`` (without what running them leaves behind) in a
directory of its own, whose ``.venv`` is the virtualenv running the tests: a header's
``.venv/bin/circusd examples/demo.ini`` runs as written, from that directory, with this
checkout's code. Every command runs in one network namespace of the sandbox's (``unshare
--net``, then ``nsenter``; each command given to ``bash -c``, which execs a simple command, so
a signal reaches the program itself): the examples' fixed ports (``tcp://127.0.0.1:5555``, ``8000``...)
are the sandbox's own, so they never meet another test or another person's processes, and
nothing needs rewriting. ``curl`` in a loop is counted through a shim on ``PATH`` that records
each exit code. At the end every process left in the namespace is named and killed; a test
asserts there is none with :meth:`Sandbox.leftovers`.
"""
from __future__ import annotations

import fcntl
import json
import os
import pty
import re
import select
import shutil
import signal
import struct
import subprocess
import sys
import termios
import time
from pathlib import Path
from typing import Callable

import pytest

from conftest import ROOT, proc_cmdline
from vtscreen import VTScreen

__all__ = ["header", "literal_block", "Sandbox", "Screen", "ensure_tool"]

_COMMAND = re.compile(r"^[#;]\s+\$ (?P<text>.+)$")
_NOTE = re.compile(r"\s{2,}[#;(].*$")


def _strip_note(text: str) -> str:
    return _NOTE.sub("", text).strip()


def header(path: Path) -> list[str]:
    """The ``$ COMMAND`` lines of the comment block at the top of ``path``."""
    out = []
    for line in path.read_text().splitlines():
        if not line.startswith(("#", ";")):
            if line.strip():
                break
            continue
        match = _COMMAND.match(line)
        if match:
            out.append(_strip_note(match.group("text")))
    return out


def literal_block(path: Path, after: str, index: int = 0) -> list[str]:
    """The lines of the ``index``-th literal block (``::``) after the line containing
    ``after`` in a reStructuredText file, notes dropped."""
    lines = path.read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if after in line)
    blocks: list[list[str]] = []
    i = start
    while i < len(lines) and len(blocks) <= index:
        if lines[i].rstrip().endswith("::"):
            i += 1
            while i < len(lines) and not lines[i].strip():
                i += 1
            block = []
            while i < len(lines) and (lines[i].startswith(" ") or not lines[i].strip()):
                if lines[i].strip():
                    block.append(_strip_note(lines[i]))
                i += 1
            blocks.append(block)
            continue
        i += 1
    return blocks[index]


def ensure_tool(name: str, package: str | None = None) -> str:
    """The path of ``name``, installed with apt-get when missing (CI must not skip)."""
    found = shutil.which(name)
    if found is None:
        subprocess.run(["apt-get", "install", "-y", "-q", package or name], capture_output=True,
                       timeout=600, env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"})
        found = shutil.which(name)
    assert found, f"{name} is needed and apt-get could not install {package or name}"
    return found


_LEFTOVERS = ("run", "keys", "clients", "*.log", "*.log.*", "circushttpd.users",
              "circushttpd.secret*", "*.state.json*", "__pycache__")


class Sandbox:
    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.dir = tmp / "checkout"
        self.dir.mkdir()
        shutil.copytree(ROOT / "examples", self.dir / "examples",
                        ignore=shutil.ignore_patterns(*_LEFTOVERS))
        (self.dir / "examples" / "logs").mkdir(exist_ok=True)
        venv = Path(sys.prefix)
        assert (venv / "bin" / "circusd").exists(), \
            f"the tests run from a virtualenv with circus installed (make test), not {venv}"
        (self.dir / ".venv").symlink_to(venv)
        self.home = tmp / "home"
        self.home.mkdir()
        for tool, package in (("ip", "iproute2"), ("unshare", "util-linux"),
                              ("nsenter", "util-linux")):
            ensure_tool(tool, package)
        self.curl_log = tmp / "curl-exits"
        shim = tmp / "shim"
        shim.mkdir()
        curl = ensure_tool("curl")
        (shim / "curl").write_text(f'#!/bin/sh\n{curl} "$@"\ncode=$?\n'
                                   f'echo $code >> {self.curl_log}\nexit $code\n')
        (shim / "curl").chmod(0o755)
        self.env = {"PATH": f"{shim}:{os.environ.get('PATH', '/usr/bin:/bin')}",
                    "HOME": str(self.home), "LANG": "C.UTF-8", "TERM": "xterm"}
        self.procs: list[subprocess.Popen] = []
        self.outputs: dict[int, Path] = {}
        self.holder = subprocess.Popen(
            ["unshare", "--net", "--", "sh", "-c", "ip link set lo up && echo up && exec sleep 86400"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        line = self.holder.stdout.readline() if self.holder.stdout else ""
        assert line == "up\n", f"no network namespace: {self.holder.stderr.read() if self.holder.stderr else ''}"
        self.netns = f"/proc/{self.holder.pid}/ns/net"
        self.inode = os.stat(self.netns).st_ino

    # -- running ---------------------------------------------------------------------------

    def argv(self, command: str) -> list[str]:
        return ["nsenter", f"--net={self.netns}", "--", "bash", "-c", command]

    def run(self, command: str, timeout: float = 60, input: str | None = None,
            env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
        """``command`` to its end: its exit code, stdout and stderr."""
        try:
            return subprocess.run(self.argv(command), cwd=self.dir, env={**self.env, **(env or {})},
                                  capture_output=True, text=True, timeout=timeout,
                                  input=input, stdin=None if input is not None else subprocess.DEVNULL)
        except subprocess.TimeoutExpired:
            pytest.fail(f"`{command}` did not end within {timeout} s")

    def spawn(self, command: str, env: dict[str, str] | None = None) -> subprocess.Popen:
        """``command`` in the background (in its own process group, as a terminal's job); its
        output (stdout and stderr) goes to a file, read with :meth:`output`."""
        out = self.tmp / f"out-{len(self.procs)}.txt"
        with open(out, "wb") as fh:
            proc = subprocess.Popen(self.argv(command), cwd=self.dir,
                                    env={**self.env, **(env or {})}, stdin=subprocess.DEVNULL,
                                    stdout=fh, stderr=subprocess.STDOUT, start_new_session=True)
        self.procs.append(proc)
        self.outputs[proc.pid] = out
        return proc

    def output(self, proc: subprocess.Popen) -> str:
        return self.outputs[proc.pid].read_text(errors="replace")

    def interrupt(self, proc: subprocess.Popen, timeout: float = 30, sig: int = signal.SIGINT) -> int:
        """Ctrl-C (SIGINT to the job's process group); its exit code once it ended."""
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            pass
        try:
            return proc.wait(timeout)
        except subprocess.TimeoutExpired:
            pytest.fail(f"not ended {timeout} s after signal {sig}:\n{self.output(proc)[-3000:]}")

    def screen(self, command: str, rows: int = 40, cols: int = 120) -> "Screen":
        return Screen(self.argv(command), self.dir, self.env, rows, cols)

    def json(self, command: str) -> dict:
        """A ``--json`` command of circusctl or circusmeta (not a header's: a check)."""
        r = self.run(command, timeout=30)
        try:
            return json.loads(r.stdout)
        except ValueError:
            return {"error": r.stdout + r.stderr}

    def statuses(self, ctl: str = ".venv/bin/circusctl") -> dict[str, str]:
        return self.json(f"{ctl} --json status").get("statuses") or {}

    def pids(self, watcher: str, ctl: str = ".venv/bin/circusctl") -> list[int]:
        return sorted(self.json(f"{ctl} --json list {watcher}").get("pids") or [])

    def wait(self, predicate: Callable[[], object], what: str, timeout: float = 30,
             alive: tuple[subprocess.Popen, ...] = ()) -> object:
        """Poll until true; fail at the deadline, or at once when one of ``alive`` ended."""
        deadline = time.monotonic() + timeout
        while True:
            value = predicate()
            if value:
                return value
            for proc in alive:
                if proc.poll() is not None:
                    pytest.fail(f"exited ({proc.returncode}) while waiting for {what}:\n"
                                f"{self.output(proc)[-3000:]}")
            if time.monotonic() > deadline:
                tail = "\n".join(f"--- {p.args[-1]}\n{self.output(p)[-1500:]}" for p in alive)
                pytest.fail(f"timed out after {timeout} s waiting for {what}\n{tail}")
            time.sleep(0.1)

    def wait_states(self, wanted: dict[str, str], alive: tuple[subprocess.Popen, ...],
                    timeout: float = 45, ctl: str = ".venv/bin/circusctl") -> dict[str, str]:
        return self.wait(lambda: (lambda s: s if all(s.get(k) == v for k, v in wanted.items())
                                  else None)(self.statuses(ctl)),
                         f"states {wanted}", timeout, alive)

    def curl_exits(self) -> list[int]:
        text = self.curl_log.read_text() if self.curl_log.exists() else ""
        return [int(x) for x in text.split()]

    # -- what is left ----------------------------------------------------------------------

    def leftovers(self) -> list[str]:
        """Processes in the sandbox's network namespace, but for the one holding it."""
        found = []
        for entry in os.listdir("/proc"):
            if not entry.isdigit() or int(entry) == self.holder.pid:
                continue
            try:
                if os.stat(f"/proc/{entry}/ns/net").st_ino != self.inode:
                    continue
            except OSError:
                continue
            state = ""
            try:
                state = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()[0]
            except (OSError, IndexError):
                continue
            if state != "Z":
                found.append(f"{entry} {' '.join(proc_cmdline(int(entry)))}")
        return found

    def close(self) -> list[str]:
        left = self.leftovers()
        for proc in self.procs:
            if proc.poll() is None:
                try:
                    os.killpg(proc.pid, signal.SIGKILL)
                except OSError:
                    pass
                proc.wait(10)
        for line in self.leftovers():
            try:
                os.kill(int(line.split()[0]), signal.SIGKILL)
            except OSError:
                pass
        self.holder.kill()
        self.holder.wait(10)
        for stream in (self.holder.stdout, self.holder.stderr):
            if stream:
                stream.close()
        return left


class Screen:
    """A command on a pseudo-terminal (what a terminal shows, through :class:`VTScreen`)."""

    def __init__(self, argv: list[str], cwd: Path, env: dict[str, str], rows: int,
                 cols: int) -> None:
        self.pid, self.fd = pty.fork()
        if self.pid == 0:           # the child: exec at once
            os.chdir(cwd)
            os.execvpe(argv[0], argv, env)
        self.status: int | None = None
        self.vt = VTScreen(rows, cols)
        fcntl.ioctl(self.fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))

    def _pump(self, seconds: float) -> None:
        ready, _, _ = select.select([self.fd], [], [], seconds)
        if ready:
            try:
                self.vt.feed(os.read(self.fd, 65536))
            except OSError:
                self._reap(block=True)

    def _reap(self, block: bool = False) -> None:
        if self.status is None:
            pid, status = os.waitpid(self.pid, 0 if block else os.WNOHANG)
            if pid:
                self.status = os.waitstatus_to_exitcode(status)

    def shows(self, *texts: str, timeout: float = 30) -> str:
        deadline = time.monotonic() + timeout
        while True:
            text = self.vt.text()
            if all(t in text for t in texts):
                return text
            self._reap()
            if self.status is not None:
                pytest.fail(f"exited ({self.status}) before showing {texts}:\n{text}")
            if time.monotonic() > deadline:
                pytest.fail(f"{texts} not shown within {timeout} s:\n{text}")
            self._pump(0.05)

    def type(self, data: bytes) -> None:
        os.write(self.fd, data)

    def exit_code(self, timeout: float = 15) -> int:
        deadline = time.monotonic() + timeout
        while self.status is None:
            if time.monotonic() > deadline:
                pytest.fail(f"did not exit within {timeout} s:\n{self.vt.text()}")
            self._pump(0.05)
            self._reap()
        return self.status

    def close(self) -> None:
        self._reap()
        if self.status is None:
            os.kill(self.pid, signal.SIGKILL)
            self._reap(block=True)
        os.close(self.fd)
