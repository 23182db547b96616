"""0.19's ``Watcher`` and ``Process`` as hooks see them (the arbiter and its sockets:
:mod:`circus.compat.arbview`).

A Python hook gets ``watcher`` and ``arbiter`` keyword arguments. In Circus 0.19 they were its
own objects, and real hooks read them: ``watcher.processes[pid].wid``, ``watcher._options``,
``watcher.cmd``, ``arbiter.get_watcher(name)``, ``for w in arbiter.watchers``... The classes
here give that view over our watcher and arbiter. They hold no state of their own: every
attribute is read from ours when it is asked for, so a hook that waits sees processes come and
go as 0.19's did.

Hooks run in a worker thread while the event loop goes on: the views only *read* (a snapshot
of a collection is retried if the loop changed it meanwhile), and the few actions they offer
(``send_signal``) are a system call on a pid the watcher owns. Nothing here changes a watcher;
use the control protocol for that.
"""
from __future__ import annotations

import asyncio
import os
import time
from typing import TYPE_CHECKING, Any, Callable, TypeVar

if TYPE_CHECKING:
    from circus.compat.arbview import ArbiterView, CircusSockets

__all__ = ["RUNNING", "DEAD_OR_ZOMBIE", "UNEXISTING", "OTHER", "ProcessView", "WatcherView",
           "StreamFeed", "snapshot"]

#: 0.19's process status constants (``circus.process``); ``after_reap`` gets ``UNEXISTING`` for
#: a process that exited by itself and ``None`` for one that circusd stopped
RUNNING, DEAD_OR_ZOMBIE, UNEXISTING, OTHER = 0, 1, 2, 3

T = TypeVar("T")


def snapshot(read: Callable[[], T]) -> T:
    """``read()`` a collection the event loop may change meanwhile: retried when it did."""
    for _ in range(20):
        try:
            return read()
        except RuntimeError:         # "dictionary changed size during iteration"
            continue
    return read()


def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


def _proc_children(pid: int) -> list[int]:
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
            continue
    return out


class ProcessView:
    """One process of a watcher, as 0.19's ``circus.process.Process`` showed it: ``pid``,
    ``wid``, ``started`` (epoch seconds), ``status`` (:data:`RUNNING`, or :data:`UNEXISTING`
    once it exited), ``age()``, ``children()``, ``send_signal()``. Made by circusd, never by
    hand (``watcher.processes`` lists them)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        raise TypeError("circus.process.Process objects are made by circusd and found in "
                        "watcher.processes; to run a command, give it to a watcher "
                        "(circus.get_arbiter, or the add command)")

    @classmethod
    def _of(cls, watcher: "WatcherView", slot: Any, pid: int) -> "ProcessView":
        view = object.__new__(cls)
        view._watcher, view._slot, view.pid = watcher, slot, pid
        view.wid = slot.wid
        view.started = slot.create_time
        return view

    @property
    def name(self) -> str:
        return self._watcher.name

    @property
    def cmd(self) -> str:
        return self._watcher.cmd

    @property
    def status(self) -> int:
        slot = self._slot
        return RUNNING if slot is not None and slot.pid == self.pid and slot.live else UNEXISTING

    def is_alive(self) -> bool:
        return self.status == RUNNING

    def age(self) -> float:
        return time.time() - self.started

    def returncode(self) -> int | None:
        slot = self._slot
        return None if self.status == RUNNING or slot is None else slot.last_exit

    def children(self, recursive: bool = False) -> list[int]:
        if not self.is_alive():
            return []
        if recursive:
            return self._watcher._os().descendants(self.pid)
        return _proc_children(self.pid)

    def send_signal(self, sig: int) -> None:
        """Send ``sig`` to this process (nothing if it has exited: its pid may be reused)."""
        if self.is_alive():
            self._watcher._os().kill(self.pid, int(sig))

    def send_signal_child(self, pid: int, signum: int) -> None:
        if int(pid) in self.children():
            self._watcher._os().kill(int(pid), int(signum))

    def send_signal_children(self, signum: int, recursive: bool = False) -> None:
        for child in self.children(recursive):
            self._watcher._os().kill(child, int(signum))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ProcessView) and other.pid == self.pid

    def __hash__(self) -> int:
        return hash(self.pid)

    def __lt__(self, other: "ProcessView") -> bool:
        return self.started < other.started

    def __repr__(self) -> str:
        return f"<circus.process.Process pid={self.pid} wid={self.wid} of {self.name!r}>"


class StreamFeed:
    """``watcher.stdout_stream`` of a built-in stream: calling it with 0.19's dict
    (``{"data": bytes, "pid": int, ...}``) writes those lines to the watcher's output (its
    stream, ``tail``) as if the process had written them."""

    def __init__(self, core: Any, name: str, loop: asyncio.AbstractEventLoop) -> None:
        self._core, self.name, self._loop = core, name, loop

    def __call__(self, data: dict) -> None:
        raw = data.get("data", b"")
        lines = (raw if isinstance(raw, bytes) else str(raw).encode()).splitlines()
        if lines:
            pid = int(data.get("pid") or 0)
            self._loop.call_soon_threadsafe(self._core.output.lines, pid, self.name, lines)

    def __repr__(self) -> str:
        return f"<{self.name} stream of {self._core.name!r}>"


class WatcherView:
    """0.19's ``Watcher`` attributes, read from one of our watchers."""

    _core: Any = None
    _own_cfg: Any = None
    _loop: asyncio.AbstractEventLoop | None = None
    _departed: "ProcessView | None" = None
    _arbiter: "ArbiterView | None" = None

    def __init__(self, core: Any, arbiter: "ArbiterView | None" = None,
                 departed: ProcessView | None = None) -> None:
        self._core = core
        self._arbiter = arbiter
        self._departed = departed
        self._loop = _running_loop() or (arbiter._loop if arbiter is not None else None)

    # -- what it runs -----------------------------------------------------------------------------

    @property
    def _cfg(self) -> Any:
        return self._core.cfg if self._core is not None else self._own_cfg

    def _os(self) -> Any:
        if self._core is None:
            raise RuntimeError(f"watcher {self.name!r} is not running in an arbiter")
        return self._core.host.os

    @property
    def name(self) -> str:
        return self._cfg.name

    @property
    def res_name(self) -> str:
        return self.name.lower().replace(" ", "_")

    @property
    def numprocesses(self) -> int:
        return self._core.numprocesses if self._core is not None else self._cfg.numprocesses

    @property
    def args(self) -> str | list[str]:
        args = self._cfg.args
        return list(args) if isinstance(args, tuple) else args

    @property
    def working_dir(self) -> str:
        """Where its processes run: the configured directory, else circusd's (as 0.19)."""
        return self._cfg.working_dir or os.getcwd()

    @property
    def env(self) -> dict[str, str]:
        return dict(self._cfg.env)

    @property
    def rlimits(self) -> dict[str, Any]:
        return dict(self._cfg.rlimits)

    @property
    def hooks(self) -> dict[str, str]:
        """{hook point: its target} (dotted names; 0.19 held the imported callables)."""
        return {point: target for point, (target, _) in self._cfg.hooks.items()}

    @property
    def _options(self) -> dict[str, str]:
        """The free-form options of the watcher (``flapping.max_retry = 3``...), as strings."""
        return dict(self._cfg.options)

    def __getattr__(self, name: str) -> Any:
        # the plain options read as they are configured: cmd, working_dir, graceful_timeout...
        if name in _PLAIN:
            return getattr(self._cfg, name)
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    @property
    def stdout_stream_conf(self) -> dict[str, str] | None:
        return _stream_conf(self._cfg.stdout_stream)

    @property
    def stderr_stream_conf(self) -> dict[str, str] | None:
        return _stream_conf(self._cfg.stderr_stream)

    @property
    def stdout_stream(self) -> Any:
        return self._stream("stdout")

    @property
    def stderr_stream(self) -> Any:
        return self._stream("stderr")

    def _stream(self, name: str) -> Any:
        """The stream object of a custom (0.19-style) stream; for a built-in one, a callable
        that feeds it (:class:`StreamFeed`); None without a stream."""
        if not getattr(self._cfg, f"{name}_stream"):
            return None
        if self._core is None or self._loop is None:
            return None
        writer = self._core.output.streams.get(name)
        obj = getattr(getattr(writer, "target", None), "obj", None)
        return obj if obj is not None else StreamFeed(self._core, name, self._loop)

    # -- its processes ----------------------------------------------------------------------------

    @property
    def processes(self) -> dict[int, ProcessView]:
        """{pid: process} of the live processes, oldest first (in ``before_reap``, the process
        being reaped too, with status UNEXISTING)."""
        if self._core is None:
            return {}
        slots = snapshot(lambda: [s for s in self._core.slots.values()
                                  if s.live and s.pid is not None])
        slots.sort(key=lambda s: (s.create_time, s.wid))
        found = {s.pid: ProcessView._of(self, s, s.pid) for s in slots}
        departed = self._departed
        if departed is not None and departed.pid not in found:
            found = {departed.pid: departed, **found}
        return found

    @property
    def pids(self) -> list[int]:
        return list(self.processes)

    def get_active_pids(self) -> list[int]:
        return [pid for pid, p in self.processes.items() if p.status == RUNNING]

    def get_active_processes(self) -> list[ProcessView]:
        return [p for p in self.processes.values() if p.status == RUNNING]

    def __len__(self) -> int:
        return len(self.processes)

    def send_signal(self, pid: int, signum: int) -> None:
        """Send ``signum`` to one of this watcher's processes (0.19's ``send_signal``; the
        signal hooks are not run for it)."""
        process = self.processes.get(int(pid))
        if process is not None:
            process.send_signal(signum)

    def send_signal_child(self, pid: int, child_id: int, signum: int) -> None:
        process = self.processes.get(int(pid))
        if process is not None:
            process.send_signal_child(child_id, signum)

    def send_signal_children(self, pid: int, signum: int, recursive: bool = False) -> None:
        process = self.processes.get(int(pid))
        if process is not None:
            process.send_signal_children(signum, recursive)

    # -- its state --------------------------------------------------------------------------------

    def status(self) -> str:
        return self._core.compat_status() if self._core is not None else "stopped"

    def is_active(self) -> bool:
        return self.status() == "active"

    def is_stopped(self) -> bool:
        return self.status() in ("stopped", "fatal")

    def is_stopping(self) -> bool:
        return self.status() == "stopping"

    @property
    def sockets(self) -> "CircusSockets":
        """The sockets this watcher's processes get (0.19: every socket of the arbiter)."""
        from circus.compat.arbview import CircusSockets, SocketView
        if self._core is None:
            return CircusSockets()
        from circus.core.sockets import sockets_used
        registry = self._core.host.sockets
        wanted = set(snapshot(lambda: sockets_used(self._cfg, list(registry.sockets))))
        return CircusSockets(SocketView(b) for b in registry.bound() if b.name.lower() in wanted)

    @property
    def arbiter(self) -> "ArbiterView | None":
        if self._arbiter is None and self._core is not None:
            from circus.compat.arbview import ArbiterView
            self._arbiter = ArbiterView(self._core.host, self._loop)
        return self._arbiter

    def __repr__(self) -> str:
        return f"<circus.Watcher name={self.name} numprocesses={self.numprocesses}>"


#: WatcherConfig fields that read unchanged as 0.19 watcher attributes
_PLAIN = frozenset({
    "cmd", "executable", "shell", "shell_args", "uid", "gid", "copy_env",
    "copy_path", "virtualenv", "virtualenv_py_ver", "autostart", "respawn", "on_demand",
    "priority", "singleton", "use_sockets", "stdin_socket", "close_child_stdin",
    "close_child_stdout", "close_child_stderr", "send_hup", "stop_signal", "stop_children",
    "graceful_timeout", "max_retry", "max_age", "max_age_variance", "warmup_delay",
    "check_flapping", "retry_in"})


def _stream_conf(conf: dict[str, str] | None) -> dict[str, str] | None:
    return None if conf is None else {k: v for k, v in conf.items() if k != "class"}
