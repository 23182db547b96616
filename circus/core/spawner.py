"""The OS seam: spawn, signal, inspect and reap processes.

Everything the core asks of the operating system goes through an object with the interface of
:class:`OSLayer`. :class:`RealOS` does it for real (fork/exec through ``subprocess``, signals,
``/proc``, SIGCHLD-driven ``waitpid``); ``circus.testing.fakeos.FakeOS`` scripts it for fast tests.

Reaping: circusd installs a SIGCHLD handler on its event loop and collects *every* dead child with
``waitpid(-1, WNOHANG)``: its own processes (reported to ``on_exit``) and grandchildren that were
re-parented to it (circusd is a child subreaper on Linux), which are just collected. Nothing
polls: an exit is seen within one loop iteration.
"""
from __future__ import annotations

import asyncio
import logging
import os
import resource
import signal
import subprocess
from typing import Callable, Mapping, Protocol

from circus.errors import SpawnError
from circus.records import Factory, Record, record

__all__ = ["SpawnSpec", "OSLayer", "RealOS", "ExitHandler", "become_subreaper"]

log = logging.getLogger("circus")

ExitHandler = Callable[[int, int], None]   # (pid, exit code as os.waitstatus_to_exitcode)


@record
class SpawnSpec(Record):
    """Everything needed to start one process, fully resolved (numeric ids, final argv)."""

    argv: tuple[str, ...]
    env: Mapping[str, str]
    executable: str | None = None
    cwd: str | None = None
    cwd_as_user: bool = False             # enter cwd (None: circusd's) after the switch to uid/gid
    uid: int | None = None
    gid: int | None = None
    groups: tuple[int, ...] | None = None
    umask: int | None = None
    rlimits: Mapping[int, tuple[int, int]] = Factory(dict)
    close_stdin: bool = True
    stdin_fd: int | None = None           # a socket duplicated onto stdin (stdin_socket)
    stdout_fd: int | None = None          # write end of a pipe read by circusd
    stderr_fd: int | None = None
    close_stdout: bool = False
    close_stderr: bool = False
    pass_fds: tuple[int, ...] = ()
    shell: bool = False


class OSLayer(Protocol):
    def spawn(self, spec: SpawnSpec) -> int: ...
    def kill(self, pid: int, sig: int) -> bool: ...
    def killpg(self, pgid: int, sig: int) -> bool: ...
    def group_alive(self, pgid: int) -> bool: ...
    def descendants(self, pid: int) -> list[int]: ...
    def start_reaping(self, loop: asyncio.AbstractEventLoop, on_exit: ExitHandler) -> None: ...
    def stop_reaping(self, loop: asyncio.AbstractEventLoop) -> None: ...


def _child_setup(rlimits: Mapping[int, tuple[int, int]], cwd: str | None) -> Callable[[], None]:
    items = tuple(rlimits.items())

    def setup() -> None:  # runs in the child between fork and exec, as its user: keep it minimal
        if cwd is not None:
            os.chdir(cwd)
        for res, limits in items:
            resource.setrlimit(res, limits)

    return setup


class RealOS:
    """The operating system, for real (Linux/POSIX)."""

    def spawn(self, spec: SpawnSpec) -> int:
        devnull = subprocess.DEVNULL
        late_cwd = (spec.cwd if spec.cwd is not None else os.getcwd()) if spec.cwd_as_user else None
        setup = _child_setup(spec.rlimits, late_cwd) if spec.rlimits or late_cwd else None
        try:
            popen = subprocess.Popen(
                list(spec.argv),
                executable=spec.executable,
                env=dict(spec.env),
                cwd=None if spec.cwd_as_user else spec.cwd,
                user=spec.uid,
                group=spec.gid,
                extra_groups=list(spec.groups) if spec.groups is not None else None,
                umask=spec.umask if spec.umask is not None else -1,
                start_new_session=True,          # own session and process group (pgid == pid)
                close_fds=True,
                pass_fds=spec.pass_fds,
                stdin=spec.stdin_fd if spec.stdin_fd is not None else (devnull if spec.close_stdin else None),
                stdout=spec.stdout_fd if spec.stdout_fd is not None else (devnull if spec.close_stdout else None),
                stderr=spec.stderr_fd if spec.stderr_fd is not None else (devnull if spec.close_stderr else None),
                preexec_fn=setup,
                restore_signals=True,
            )
        except FileNotFoundError as exc:
            if spec.cwd is not None and exc.filename == spec.cwd:
                raise SpawnError(f"working_dir {spec.cwd!r} does not exist") from None
            raise SpawnError(f"command not found: {exc.filename or spec.argv[0]!r}") from None
        except PermissionError as exc:
            raise SpawnError(f"permission denied: {exc.filename or spec.argv[0]!r}") from None
        except NotADirectoryError as exc:
            raise SpawnError(f"not a directory: {exc.filename!r}") from None
        except subprocess.SubprocessError as exc:   # e.g. the rlimit step failed in the child
            if late_cwd is not None:
                which = "working_dir" if spec.cwd is not None else "circusd's working directory"
                raise SpawnError(f"could not start {spec.argv[0]!r}: entering {which} "
                                 f"{late_cwd!r} or setting rlimits failed as uid {spec.uid} "
                                 f"({exc})") from None
            raise SpawnError(f"could not start {spec.argv[0]!r}: {exc}") from None
        except OSError as exc:
            raise SpawnError(f"could not start {spec.argv[0]!r}: {exc.strerror or exc}") from None
        except (ValueError, TypeError) as exc:  # e.g. "embedded null byte" in argv, env or a path
            raise SpawnError(f"could not start {spec.argv[0]!r}: {exc}") from None
        # The reaper below owns the exit status. Tell the Popen object it is done so that it never
        # calls waitpid() itself (subprocess._cleanup would steal statuses) nor warns at collection.
        popen.returncode = 0
        return popen.pid

    def kill(self, pid: int, sig: int) -> bool:
        try:
            os.kill(pid, sig)
            return True
        except ProcessLookupError:
            return False

    def killpg(self, pgid: int, sig: int) -> bool:
        try:
            os.killpg(pgid, sig)
            return True
        except ProcessLookupError:
            return False
        except PermissionError:      # pgid reused by a process we may not signal: not ours
            return False

    def group_alive(self, pgid: int) -> bool:
        return self.killpg(pgid, 0)

    def descendants(self, pid: int) -> list[int]:
        """All descendants of ``pid`` (breadth first), from /proc; [] if it is gone."""
        found: list[int] = []
        todo = [pid]
        while todo and len(found) < 100_000:
            current = todo.pop(0)
            for child in _proc_children(current):
                found.append(child)
                todo.append(child)
        return found

    # -- reaping ---------------------------------------------------------------------------------

    def start_reaping(self, loop: asyncio.AbstractEventLoop, on_exit: ExitHandler) -> None:
        def reap() -> None:
            while True:
                try:
                    pid, status = os.waitpid(-1, os.WNOHANG)
                except ChildProcessError:
                    return
                except InterruptedError:  # pragma: no cover - PEP 475 retries, kept for safety
                    continue
                if pid == 0:
                    return
                on_exit(pid, os.waitstatus_to_exitcode(status))

        loop.add_signal_handler(signal.SIGCHLD, reap)
        # a burst of exits fills asyncio's self-pipe: the dropped SIGCHLD bytes are harmless (one
        # pending byte reaps them all) but CPython would print a traceback on stderr for each
        signal.set_wakeup_fd(signal.set_wakeup_fd(-1), warn_on_full_buffer=False)
        reap()   # children that died before the handler existed

    def stop_reaping(self, loop: asyncio.AbstractEventLoop) -> None:
        loop.remove_signal_handler(signal.SIGCHLD)


def _proc_children(pid: int) -> list[int]:
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return []
    out: list[int] = []
    for tid in tasks:
        try:
            with open(f"/proc/{pid}/task/{tid}/children", "rb") as fh:
                out.extend(int(x) for x in fh.read().split())
        except OSError:
            continue
    return out


_PR_SET_CHILD_SUBREAPER = 36


def become_subreaper() -> bool:
    """Make this process a child subreaper (Linux): orphaned descendants are re-parented to it.
    ``prctl`` is looked up among the symbols the process has loaded already (libc's), not with
    ``ctypes.util.find_library``, which runs ``ldconfig``."""
    import ctypes

    try:
        libc = ctypes.CDLL(None, use_errno=True)
        ok = libc.prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False
    if not ok:
        log.warning("could not become a child subreaper: %s", os.strerror(ctypes.get_errno()))
    return ok

