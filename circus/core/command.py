"""Turn a watcher's configuration into a :class:`SpawnSpec` for one process.

Pure apart from user/group database lookups: the environment of circusd and its ``sys.path`` are
passed in. Spawn-time substitutions (``$(circus.wid)``, ``$(circus.sockets.NAME)``,
``$(circus.<option>)``, ``$(circus.env.NAME)``) happen here, per process.
"""
from __future__ import annotations

import dataclasses
import grp
import os
import pwd
import resource
import shlex
import sys
from typing import Mapping, Sequence

from circus.config import WatcherConfig, substitute_spawn
from circus.core.spawner import SpawnSpec
from circus.errors import SpawnError
from circus.records import replace

__all__ = ["build_spec", "helper_spec", "resolve_ids", "spawn_values"]


def spawn_values(cfg: WatcherConfig, wid: int, sockets: Mapping[str, int]) -> dict[str, object]:
    """The names ``$(circus.X)`` can refer to when a process of ``cfg`` is spawned."""
    values: dict[str, object] = {}
    for f in dataclasses.fields(cfg):
        value = getattr(cfg, f.name)
        if isinstance(value, (str, int, float, bool)) or value is None:
            values[f.name] = "" if value is None else value
    values.update({f"env.{k}": v for k, v in cfg.env.items()})
    values.update({f"sockets.{k}": fd for k, fd in sockets.items()})
    values["wid"] = wid
    return values


def _split(text: str, what: str) -> list[str]:
    try:
        return shlex.split(text)
    except ValueError as exc:
        raise SpawnError(f"cannot parse {what} {text!r}: {exc}") from None


def _argv(cfg: WatcherConfig, values: Mapping[str, object]) -> list[str]:
    cmd = substitute_spawn(cfg.cmd, values).replace("$WID", str(values["wid"]))
    if isinstance(cfg.args, str):
        args_text = substitute_spawn(cfg.args, values).replace("$WID", str(values["wid"]))
        args = _split(args_text, "args")
    else:
        args = [substitute_spawn(a, values) for a in cfg.args]
    if cfg.shell:
        line = " ".join([cmd, *(shlex.quote(a) for a in args)]) if args else cmd
        extra = _split(substitute_spawn(cfg.shell_args, values), "shell_args") if cfg.shell_args else []
        return ["/bin/sh", "-c", line, *extra]
    argv = _split(cmd, "cmd") + args
    if not argv:
        raise SpawnError("empty command")
    return argv


#: Runs in the child (as ``python -c``): moves the inherited sockets to fds 3.., sets
#: LISTEN_PID to its own pid (which is the program's: exec keeps it) and execs the program.
LISTEN_FDS_SHIM = """
import fcntl, os, sys
n = int(sys.argv[1]); fds = [int(x) for x in sys.argv[2:2 + n]]; names = sys.argv[2 + n]
argv = sys.argv[3 + n:]
tmp = [fcntl.fcntl(fd, fcntl.F_DUPFD, 3 + n + 16) for fd in fds]
for fd in fds:
    os.close(fd)
for i, fd in enumerate(tmp):
    os.dup2(fd, 3 + i)
    os.close(fd)
os.environ.update(LISTEN_FDS=str(n), LISTEN_PID=str(os.getpid()), LISTEN_FDNAMES=names)
os.execvp(argv[0], argv)
"""


def listen_fds_argv(argv: list[str], sockets: Mapping[str, int], python: str) -> list[str]:
    """``argv`` wrapped so the program gets ``sockets`` systemd-style (sd_listen_fds)."""
    names = sorted(sockets)
    fds = [str(sockets[n]) for n in names]
    return [python, "-c", LISTEN_FDS_SHIM, str(len(fds)), *fds, ":".join(names), *argv]


def resolve_ids(uid: str | int | None, gid: str | int | None) -> tuple[int | None, int | None, tuple[int, ...] | None]:
    """Numeric uid, gid and supplementary groups for a watcher's ``uid``/``gid`` options."""
    if uid is None and gid is None:
        return None, None, None
    user = None
    if uid is not None:
        try:
            user = pwd.getpwuid(int(uid)) if str(uid).isdigit() else pwd.getpwnam(str(uid))
        except KeyError:
            if str(uid).isdigit():
                user = None
            else:
                raise SpawnError(f"unknown user {uid!r}") from None
    num_uid = user.pw_uid if user is not None else (int(uid) if uid is not None else None)
    if gid is not None:
        try:
            num_gid = int(gid) if str(gid).isdigit() else grp.getgrnam(str(gid)).gr_gid
        except KeyError:
            raise SpawnError(f"unknown group {gid!r}") from None
    else:
        num_gid = user.pw_gid if user is not None else None
    groups: tuple[int, ...] | None = None
    if user is not None and num_gid is not None:
        try:
            groups = tuple(os.getgrouplist(user.pw_name, num_gid))
        except OSError:
            groups = None
    if groups is None and num_uid is not None:
        # a uid without a passwd entry (or no group database answer): only its own group, never
        # circusd's supplementary groups (root's, when circusd is root)
        groups = (num_gid,) if num_gid is not None else ()
    if num_uid == os.geteuid() and (num_gid is None or num_gid == os.getegid()):
        return None, None, None   # already that user: nothing to switch (works unprivileged)
    return num_uid, num_gid, groups


def _rlimits(cfg: WatcherConfig) -> dict[int, tuple[int, int]]:
    out: dict[int, tuple[int, int]] = {}
    for name, value in cfg.rlimits.items():
        res = getattr(resource, f"RLIMIT_{name.upper()}")
        if value is None:
            value = resource.RLIM_INFINITY
            if res == resource.RLIMIT_NOFILE:   # unlimited NOFILE is refused: use the hard limit
                value = resource.getrlimit(res)[1]
        out[res] = (value, value)
    return out


def _virtualenv_env(env: dict[str, str], venv: str, py_ver: str | None) -> None:
    bin_dir = os.path.join(venv, "bin")
    env["PATH"] = os.pathsep.join(p for p in (bin_dir, env.get("PATH", "")) if p)
    env["VIRTUAL_ENV"] = venv
    import glob                         # for a watcher with a virtualenv only

    # the directory and the version are taken literally: neither may be a pattern that makes
    # circusd list other directories
    pattern = f"python{glob.escape(py_ver)}" if py_ver else "python*"
    sites = sorted(glob.glob(os.path.join(glob.escape(venv), "lib", pattern, "site-packages")))
    if sites:
        current = env.get("PYTHONPATH")
        env["PYTHONPATH"] = os.pathsep.join([*sites, *([current] if current else [])])


def build_spec(
    cfg: WatcherConfig,
    *,
    wid: int,
    environ: Mapping[str, str],
    python_path: Sequence[str] = (),
    sockets: Mapping[str, int] | None = None,
    extra_env: Mapping[str, str] | None = None,
    confined: bool = False,
) -> SpawnSpec:
    """The :class:`SpawnSpec` of process ``wid`` of ``cfg``; raises SpawnError with the reason.
    ``confined``: the working directory (``working_dir``, else circusd's) is entered after the
    switch to the watcher's user (a watcher of the ``endpoint_owner``: it gets no directory the
    user could not enter)."""
    sockets = dict(sockets or {})
    values = spawn_values(cfg, wid, sockets)
    env = dict(environ) if cfg.copy_env else {}
    if cfg.copy_path:   # as 0.19: circusd's sys.path, unless the configuration sets PYTHONPATH
        env["PYTHONPATH"] = os.pathsep.join(python_path)
    env.update(cfg.env)
    env.update(extra_env or {})
    if cfg.virtualenv:
        _virtualenv_env(env, cfg.virtualenv, cfg.virtualenv_py_ver)
    uid, gid, groups = resolve_ids(cfg.uid, cfg.gid)
    stdin_fd = sockets.get(cfg.stdin_socket.lower()) if cfg.stdin_socket else None
    pass_fds = tuple(sorted(set(sockets.values())))
    argv = _argv(cfg, values)
    executable = cfg.executable
    if cfg.listen_fds and sockets:
        if executable:
            argv[0] = executable
            executable = None
        argv = listen_fds_argv(argv, sockets, sys.executable)
    return SpawnSpec(
        argv=tuple(argv),
        env=env,
        executable=executable,
        cwd=cfg.working_dir,
        cwd_as_user=confined,
        uid=uid,
        gid=gid,
        groups=groups,
        rlimits=_rlimits(cfg),
        close_stdin=cfg.close_child_stdin,
        stdin_fd=stdin_fd,
        close_stdout=cfg.close_child_stdout,
        close_stderr=cfg.close_child_stderr,
        pass_fds=pass_fds,
        shell=cfg.shell,
    )


def helper_spec(cfg: WatcherConfig, argv: list[str], *, environ: Mapping[str, str],
                python_path: Sequence[str] = (), sockets: Mapping[str, int] | None = None,
                extra_env: Mapping[str, str] | None = None, confined: bool = False) -> SpawnSpec:
    """A helper command of a watcher (exec probe, command hook): its user, directory and
    environment, no shell, no inherited sockets, output discarded."""
    spec = build_spec(cfg, wid=0, environ=environ, python_path=python_path, sockets=sockets,
                      extra_env=extra_env, confined=confined)
    return replace(spec, argv=tuple(argv), executable=None, shell=False,
                               close_stdout=True, close_stderr=True, stdin_fd=None, pass_fds=())
