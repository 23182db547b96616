"""Misbehaving workers for tests/test_faults.py.

    faulty.py ignore-term READY          ignores SIGTERM, creates READY, sleeps
    faulty.py daemon PIDS                double fork: the middle child setsid()s, the grandchild
                                         appends its pid to PIDS and sleeps; the middle child and
                                         then the worker exit
    faulty.py flood BYTES                writes BYTES bytes of 100-byte lines to stdout, then one
                                         ``tick N`` line every 20 ms for ever
    faulty.py long-lines N               writes N lines of 65,000 bytes, then ``done``, sleeps
"""
from __future__ import annotations

import os
import signal
import sys
import time


def ignore_term(ready: str) -> None:
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    open(ready, "w").close()
    while True:
        time.sleep(3600)


def daemon(pids: str) -> None:
    # like a forking daemon that systemd would call Type=forking: the worker exits once the
    # daemon is set up (a worker that exits before its middle child called setsid() would have
    # that child killed with the worker's process group, which circusd stops after the exit)
    ready_r, ready_w = os.pipe()
    if os.fork():
        os.close(ready_w)
        os.read(ready_r, 1)
        os._exit(0)                       # the worker exits
    os.close(ready_r)
    os.setsid()
    if os.fork():
        os._exit(0)                       # the middle child too
    fd = os.open(pids, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    os.write(fd, f"{os.getpid()}\n".encode())
    os.close(fd)
    os.write(ready_w, b"!")
    os.close(ready_w)
    for fd in (0, 1, 2):
        try:
            os.close(fd)
        except OSError:
            pass
    while True:
        time.sleep(3600)


def flood(total: int) -> None:
    line = b"x" * 99 + b"\n"
    out = sys.stdout.buffer
    for _ in range(total // len(line)):
        out.write(line)
    out.flush()
    n = 0
    while True:
        n += 1
        out.write(f"tick {n}\n".encode())
        out.flush()
        time.sleep(0.02)


def long_lines(count: int) -> None:
    line = b"y" * 65000 + b"\n"
    out = sys.stdout.buffer
    for _ in range(count):
        out.write(line)
    out.write(b"done\n")
    out.flush()
    while True:
        time.sleep(3600)


if __name__ == "__main__":
    mode, arg = sys.argv[1], sys.argv[2]
    if mode == "ignore-term":
        ignore_term(arg)
    elif mode == "daemon":
        daemon(arg)
    elif mode == "long-lines":
        long_lines(int(arg))
    elif mode == "flood":
        flood(int(arg))
    else:
        sys.exit(f"unknown mode {mode!r}")
