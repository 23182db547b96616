"""Doing file work as another user: a forked child drops to that user's credentials, runs one
function, and sends back its JSON-able result and the file descriptors it opened.

A root circusd uses this for what it does on behalf of an ``endpoint_owner`` (see
:mod:`circus.security.owner`): opening, creating, rotating that user's stream files, looking at a
``working_dir``. The kernel then checks every path with the user's own permissions, whatever
links or renames the user plays with: nothing an ``access()`` check could get wrong between the
check and the use.

The child blocks every signal before it drops its privileges (the user may signal it once it is
theirs: only SIGKILL and SIGSTOP get through, and they only cost the user their own request),
never runs the garbage collector (no finaliser of circusd's objects runs in it), and ends with
``os._exit``. The parent waits at most ``timeout`` seconds for the answer, then kills the child.
An exit is reaped here or by circusd's own reaper, whichever comes first.
"""
from __future__ import annotations

import errno
import gc
import grp
import json
import os
import pwd
import signal
import socket
import time
from typing import Any, Callable

from circus.records import Record, record
from circus.security.safepath import UnsafePath

__all__ = ["Creds", "run_as", "user_creds", "HELPER_TIMEOUT", "MAX_REPLY", "MAX_FDS"]

#: seconds a child has to answer
HELPER_TIMEOUT = 5.0
#: bytes of one answer
MAX_REPLY = 64 * 1024
#: descriptors one answer may carry
MAX_FDS = 4

Job = Callable[..., "tuple[Any, list[int]]"]


@record
class Creds(Record):
    """Who the child becomes."""

    uid: int
    gid: int
    groups: tuple[int, ...]
    name: str

    def current(self) -> bool:
        """These are circusd's own credentials: nothing to switch."""
        return (self.uid, self.gid) == (os.geteuid(), os.getegid()) and \
            set(self.groups) <= set(os.getgroups()) | {self.gid}


def user_creds(name: str) -> Creds:
    """A user's login credentials (primary group and every group of the group database).
    KeyError for an unknown user."""
    user = pwd.getpwnam(name)
    try:
        groups = tuple(os.getgrouplist(user.pw_name, user.pw_gid))
    except OSError:
        groups = (user.pw_gid,)
    return Creds(user.pw_uid, user.pw_gid, groups, user.pw_name)


def group_id(group: str | int) -> int:
    """A group's number (KeyError when unknown)."""
    return int(group) if str(group).isdigit() else grp.getgrnam(str(group)).gr_gid


def run_as(creds: Creds, job: Job, *args: Any, timeout: float = HELPER_TIMEOUT) -> tuple[Any, list[int]]:
    """``job(*args)`` run as ``creds``: its result and the descriptors it returned (now ours). An
    OSError raised by the job is raised here (same errno and text); so is one for a child that
    did not answer in time or died."""
    if creds.current():
        return job(*args)
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET | socket.SOCK_CLOEXEC)
    try:
        pid = os.fork()
    except BaseException:
        ours.close()
        theirs.close()
        raise
    if pid == 0:                                    # pragma: no cover - runs in the child
        _child(theirs, creds, job, args)
    theirs.close()
    try:
        ours.settimeout(timeout)
        try:
            message, fds, flags, _ = socket.recv_fds(ours, MAX_REPLY, MAX_FDS)
        except TimeoutError:
            _kill(pid)
            raise OSError(errno.ETIMEDOUT, f"no answer within {timeout:g} s from the helper "
                                           f"running as {creds.name!r}") from None
    finally:
        ours.close()
        _reap(pid)
    if flags & (socket.MSG_TRUNC | socket.MSG_CTRUNC):
        _close(fds)
        raise OSError(errno.EMSGSIZE, f"the helper running as {creds.name!r} sent too much")
    if not message:
        _close(fds)
        raise OSError(errno.EIO, f"the helper running as {creds.name!r} ended without answering")
    try:
        reply = json.loads(message)
    except ValueError:
        _close(fds)
        raise OSError(errno.EIO, f"the helper running as {creds.name!r} sent garbage") from None
    if isinstance(reply, dict) and "ok" in reply:
        return reply["ok"], list(fds)
    _close(fds)
    raise _error(reply, creds)


def _error(reply: Any, creds: Creds) -> OSError:
    if not isinstance(reply, dict):
        return OSError(errno.EIO, f"the helper running as {creds.name!r} sent garbage")
    text = str(reply.get("strerror") or reply.get("error") or "failed")
    filename = reply.get("filename")
    if reply.get("unsafe"):
        return UnsafePath(str(filename), text)
    code = reply.get("errno")
    return OSError(code if isinstance(code, int) else errno.EIO, text,
                   *(() if filename is None else (str(filename),)))


def _child(sock: socket.socket, creds: Creds, job: Job, args: tuple) -> None:  # pragma: no cover
    fds: list[int] = []
    try:
        gc.disable()
        signal.pthread_sigmask(signal.SIG_BLOCK, signal.valid_signals())
        os.setgroups(list(creds.groups))
        os.setresgid(creds.gid, creds.gid, creds.gid)
        os.setresuid(creds.uid, creds.uid, creds.uid)
        result, fds = job(*args)
        body = json.dumps({"ok": result})
    except OSError as exc:
        body = json.dumps({"errno": exc.errno, "strerror": exc.strerror or str(exc),
                           "filename": None if exc.filename is None else os.fsdecode(exc.filename),
                           "unsafe": isinstance(exc, UnsafePath)})
    except BaseException as exc:   # anything else is an answer too: the parent must not wait
        body = json.dumps({"error": f"{type(exc).__name__}: {exc}"})
    try:
        socket.send_fds(sock, [body.encode()], fds)
    except BaseException:
        pass
    finally:
        os._exit(0)


def _kill(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def _reap(pid: int, patience: float = 1.0) -> None:
    """Collect the child if it ended (circusd's own reaper may have done it); give up after
    ``patience`` seconds (killing it): a stopped child must not hold circusd."""
    deadline = time.monotonic() + patience
    killed = False
    while True:
        try:
            done, _ = os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            return
        if done:
            return
        if time.monotonic() > deadline:
            if killed:
                return                      # left to circusd's reaper
            _kill(pid)
            killed = True
            deadline = time.monotonic() + patience
        time.sleep(0.001)


def _close(fds: list[int]) -> None:
    for fd in fds:
        try:
            os.close(fd)
        except OSError:
            pass
