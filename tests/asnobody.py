"""Helpers for tests where another user (``nobody``) talks to a root circusd or plants files:
a scratch directory that user can reach, and requests sent from a process running as that user.

``pytest``'s ``tmp_path`` lives under ``/tmp/pytest-of-root`` (mode 0700), which ``nobody``
cannot cross, hence :func:`scratch`.
"""
from __future__ import annotations

import contextlib
import json
import os
import pwd
import shutil
import select
import subprocess
import tempfile
import time
import uuid
from pathlib import Path
from typing import Iterator

NOBODY = pwd.getpwnam("nobody")

@contextlib.contextmanager
def scratch() -> Iterator[Path]:
    """A directory (mode 0755, root's) that ``nobody`` can reach; removed at the end."""
    path = Path(tempfile.mkdtemp(prefix="circus-nobody-", dir="/tmp"))
    try:
        path.chmod(0o755)
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def owned_dir(path: Path) -> Path:
    """``path`` created as a directory of ``nobody``'s (mode 0755)."""
    path.mkdir()
    os.chown(path, NOBODY.pw_uid, NOBODY.pw_gid)
    return path


def run_as_nobody(argv: list[str], cwd: Path, stdin: str = "", timeout: float = 30) -> subprocess.CompletedProcess:
    return subprocess.run(argv, input=stdin, capture_output=True, text=True, cwd=cwd,
                          user=NOBODY.pw_uid, group=NOBODY.pw_gid, extra_groups=[],
                          env={"PATH": "/usr/bin:/bin", "HOME": str(cwd)}, timeout=timeout)


def sh_as_nobody(script: str, cwd: Path) -> None:
    """Run a shell script as ``nobody``; fail with its stderr when it fails."""
    done = run_as_nobody(["/bin/sh", "-c", script], cwd)
    assert done.returncode == 0, done.stderr


def call_as_nobody(endpoint: str, requests: list[tuple[str, dict]], cwd: Path,
                   timeout: float = 10.0) -> list[dict]:
    """Send ``requests`` ((command, properties) pairs) to ``endpoint`` from a forked process that
    switched to ``nobody`` first; their replies (``{"status": "no reply"}`` after ``timeout``
    seconds each). (The interpreter may live where nobody cannot exec it: fork, not exec.)"""
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:                                    # pragma: no cover - the child
        try:
            os.close(read)
            os.setgroups([])
            os.setresgid(NOBODY.pw_gid, NOBODY.pw_gid, NOBODY.pw_gid)
            os.setresuid(NOBODY.pw_uid, NOBODY.pw_uid, NOBODY.pw_uid)
            os.chdir(cwd)
            body = json.dumps(_send(endpoint, requests, timeout))
        except BaseException as exc:
            body = json.dumps({"error": repr(exc)})
        try:
            os.write(write, body.encode())
        finally:
            os._exit(0)
    os.close(write)
    deadline = time.monotonic() + timeout * len(requests) + 30
    chunks = []
    try:
        while True:
            left = deadline - time.monotonic()
            assert left > 0, "the client running as nobody did not finish"
            ready, _, _ = select.select([read], [], [], left)
            if not ready:
                continue
            chunk = os.read(read, 1 << 16)
            if not chunk:
                break
            chunks.append(chunk)
    finally:
        os.close(read)
        os.waitpid(pid, 0)
    replies = json.loads(b"".join(chunks) or b"null")
    assert isinstance(replies, list), replies
    return replies


def _send(endpoint: str, requests: list[tuple[str, dict]], timeout: float) -> list[dict]:
    import zmq
    ctx = zmq.Context()
    sock = ctx.socket(zmq.DEALER)
    sock.linger = 0
    sock.connect(endpoint)
    replies = []
    for command, props in requests:
        mid = uuid.uuid4().hex
        sock.send(json.dumps({"id": mid, "command": command, "properties": props}).encode())
        if not sock.poll(int(timeout * 1000)):
            replies.append({"status": "no reply"})
            continue
        replies.append(json.loads(sock.recv()))
    sock.close()
    ctx.term()
    return replies
