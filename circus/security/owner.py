"""``endpoint_owner``: one unprivileged user drives a root circusd, with that user's privileges.

With an ``ipc://`` control endpoint handed to ``endpoint_owner``, whoever can write to the socket
is that user. What they ``add`` (or change with ``set``) must therefore get exactly what the
user could get by themselves: nothing circusd does as root on the watcher's behalf may reach
further. :data:`OWNER_RULES` says, for every watcher option, what the owner may set; the checks
below enforce it when a request arrives (``forbidden``, with the reason), and
:func:`confinement` tells the arbiter which watchers' work circusd does with the owner's
credentials (stream files opened and rotated by a child running as the owner, the working
directory entered after the switch to the owner): a watcher whose ``uid`` is the owner's, so
that the rule still holds for watchers restored from the state file after a restart, and for
paths the owner changes after the check.

``set`` of options that change nothing about what runs or as whom (:data:`OWNER_SAFE_SET`) is
allowed on any watcher; any other ``set`` is checked against the whole resulting configuration.
"""
from __future__ import annotations

import errno
import os
import pwd
import re
import resource
import stat
from typing import Any, Iterable, Mapping, NoReturn

from circus.config.schema import STREAM_CLASSES
from circus.config.substitute import expand_vars
from circus.config.watcher import builtin_stream_name
from circus.protocol import ErrorCode, ProtocolError
from circus.security.asuser import Creds, group_id, run_as, user_creds
from circus.security.safepath import UnsafePath, is_unsafe_file, walk

__all__ = ["OWNER_RULES", "OWNER_SAFE_SET", "check_owner", "check_owner_tool", "confinement",
           "endpoint_owner", "is_user"]

#: ``set`` keys that change nothing about what runs or as whom (allowed on every watcher)
OWNER_SAFE_SET = frozenset({
    "numprocesses", "warmup_delay", "graceful_timeout", "max_retry", "respawn", "restart_policy",
    "autostart", "priority", "max_age", "max_age_variance", "backoff_initial", "backoff_max",
    "min_uptime", "stop_signal", "stop_children", "singleton", "ready_timeout",
})

_ANY = "any value"
#: every watcher option -> what a watcher added or changed through the owner's socket may have
#: (a test keeps it complete: a new option must be judged here)
OWNER_RULES: dict[str, str] = {
    "name": _ANY,
    "cmd": "any command (it runs as the owner); no $(circus.sockets.NAME)",
    "args": "any (no $(circus.sockets.NAME))",
    "executable": "any program: executed after the switch to the owner, so the kernel checks "
                  "the owner's permissions",
    "shell": _ANY + " (the shell runs as the owner)",
    "shell_args": "any (no $(circus.sockets.NAME))",
    "numprocesses": _ANY + " up to the node's limit",
    "recent_lines": _ANY + " (circusd keeps at most 1 MiB of lines per watcher)",
    "warmup_delay": _ANY,
    "working_dir": "a directory the owner can enter: checked as the owner when added or set, "
                   "and entered after the switch to the owner at every spawn; unset: circusd's "
                   "working directory, under the same rule",
    "uid": "the owner only (name or number)",
    "gid": "one of the owner's groups (primary, or supplementary in the group database); "
           "unset: the owner's primary group; the processes get the owner's supplementary "
           "groups, never circusd's",
    "copy_env": "false only (circusd's environment is root's)",
    "copy_path": "false only (it needs copy_env, refused; circusd's sys.path)",
    "env": "any variables; a value may not refer to circusd's environment ($NAME, ${NAME})",
    "virtualenv": "unset (it needs copy_env, refused); a path is taken literally, never as a "
                  "pattern",
    "virtualenv_py_ver": _ANY + " (taken literally; unused without virtualenv)",
    "autostart": _ANY,
    "respawn": _ANY,
    "on_demand": _ANY + " (without sockets it never triggers)",
    "priority": _ANY,
    "singleton": _ANY,
    "use_sockets": "false only (circusd's sockets were bound as root)",
    "sockets": "empty only",
    "stdin_socket": "unset only",
    "close_child_stdin": _ANY,
    "close_child_stdout": _ANY,
    "close_child_stderr": _ANY,
    "stdout_stream": "a built-in class other than QueueStream; files (the file, its rotations "
                     "and compressed backups, a temporary file when no filename is given) are "
                     "opened and created as the owner, and checked as the owner when added "
                     "or set; no custom class (it would run in circusd)",
    "stderr_stream": "as stdout_stream",
    "send_hup": _ANY,
    "stop_signal": _ANY,
    "stop_children": _ANY,
    "graceful_timeout": _ANY,
    "max_retry": _ANY,
    "max_age": _ANY,
    "max_age_variance": _ANY,
    "rlimits": "each at most circusd's hard limit for that resource (limits are set after the "
               "switch to the owner, who cannot raise a hard limit)",
    "hooks": "none (hooks run in circusd)",
    "check_flapping": _ANY,
    "retry_in": _ANY,
    "options": _ANY + " (plugin options, strings)",
    "restart_policy": _ANY,
    "backoff_initial": _ANY,
    "backoff_max": _ANY,
    "min_uptime": _ANY,
    "hook_timeout": _ANY + " (there are no hooks)",
    "ready": _ANY + ": exec: runs as the owner; tcp: and http: are connections circusd makes; "
             "log: is matched by circusd",
    "ready_timeout": _ANY,
    "health": "as ready",
    "health_interval": _ANY,
    "health_failures": _ANY,
    "health_timeout": _ANY,
    "watchdog_timeout": _ANY,
    "depends_on": _ANY,
    "listen_fds": _ANY + " (there are no sockets to pass)",
}

_CWD = "circusd's working directory (no working_dir given)"
_SOCKET_REF = re.compile(r"(\$\(|\(\()circus\.sockets\.", re.IGNORECASE)


def endpoint_owner(opts: Any) -> str | None:
    """The owner of the control endpoint, when the rule applies (an ``ipc://`` endpoint)."""
    owner = opts.endpoint_owner
    return owner if owner and opts.endpoint.startswith("ipc://") else None


def is_user(uid: object, owner: str) -> bool:
    """Whether a watcher's ``uid`` option names ``owner`` (by name or number)."""
    if uid is None:
        return False
    if str(uid) == owner:
        return True
    try:
        owner_uid = pwd.getpwnam(owner).pw_uid
        if isinstance(uid, int) or str(uid).isdigit():
            return int(uid) == owner_uid
        return pwd.getpwnam(str(uid)).pw_uid == owner_uid
    except KeyError:
        return False


def confinement(opts: Any, cfg: Any) -> Creds | None:
    """The credentials circusd does ``cfg``'s file work with (stream files, working directory):
    the owner's when circusd is root and the watcher runs as ``endpoint_owner``; None when circusd
    works as itself."""
    owner = endpoint_owner(opts)
    if owner is None or os.geteuid() != 0 or not is_user(cfg.uid, owner):
        return None
    try:
        login = user_creds(owner)
    except KeyError:
        return None
    if login.uid == 0:
        return None
    gid = login.gid
    if cfg.gid is not None:
        try:
            gid = group_id(cfg.gid)
        except KeyError:
            return login            # the spawn reports the unknown group
    groups = login.groups if gid in login.groups else (gid, *login.groups)
    return Creds(login.uid, gid, tuple(groups), login.name)


def check_owner_tool(opts: Any, tool: Any) -> None:
    """Refuse (``forbidden``) running ``tool`` through the owner's socket unless it runs as the
    owner: its arguments come from the request, and a tool of circusd's user (or of anyone else)
    would run them with more than the owner's privileges."""
    owner = endpoint_owner(opts)
    if owner is None or is_user(tool.uid, owner):
        return
    runs_as = f"uid = {tool.uid!r}" if tool.uid is not None else "circusd's user"
    raise ProtocolError(ErrorCode.FORBIDDEN, f"the control endpoint belongs to {owner!r}: a tool "
                        f"run through it must have uid = {owner!r} (tool {tool.name!r} runs as "
                        f"{runs_as})")


def check_owner(opts: Any, cfg: Any, command: str, changes: Iterable[str] | None = None,
                raw: Mapping[str, Any] | None = None) -> None:
    """Refuse (``forbidden``) a watcher ``cfg`` that ``command`` (add/set) would create through
    the owner's socket with more than the owner's privileges. ``changes``: the keys of a ``set``;
    ``raw``: the options as the request gave them (before ``$NAME`` expansion)."""
    owner = endpoint_owner(opts)
    if owner is None:
        return
    if changes is not None and all(key.lower() in OWNER_SAFE_SET for key in changes):
        return
    why = f"the control endpoint belongs to {owner!r}: a watcher {command}ed through it"

    def refuse(reason: str, code: ErrorCode = ErrorCode.FORBIDDEN) -> NoReturn:
        raise ProtocolError(code, f"{why} {reason}")

    if not is_user(cfg.uid, owner):
        refuse(f"must run as uid = {owner!r}")
    try:
        login = user_creds(owner)
    except KeyError:
        refuse(f"cannot be checked: unknown user {owner!r}")
    _check_gid(cfg, login, refuse)
    if cfg.copy_env:
        refuse("cannot have copy_env (circusd's environment is not the owner's)")
    if cfg.copy_path:
        refuse("cannot have copy_path (circusd's sys.path is not the owner's)")
    for key, value in dict((raw or {}).get("env") or {}).items():
        if isinstance(value, str) and expand_vars(value, {}) != value:
            refuse(f"cannot refer to circusd's environment in env {key} = {value!r}")
    if cfg.hooks:
        refuse("cannot have hooks (they run in circusd)")
    _check_sockets(cfg, refuse)
    _check_rlimits(cfg, owner, refuse)
    paths = _check_streams(cfg, refuse)
    dirs = [("working_dir", cfg.working_dir) if cfg.working_dir else (_CWD, os.getcwd())]
    try:
        problems, _ = run_as(login, _probe, dirs, paths)
    except OSError as exc:
        refuse(f"cannot be checked as {owner!r}: {exc.strerror or exc}", ErrorCode.OS_ERROR)
    for key, path, code, text in problems:
        denied = code in (errno.EACCES, errno.EPERM)
        refuse(f"cannot use {key} {path!r}: {text} (as {owner!r})",
               ErrorCode.FORBIDDEN if denied else ErrorCode.INVALID_OPTION)


def _check_gid(cfg: Any, login: Creds, refuse: Any) -> None:
    if cfg.gid is None:
        return
    try:
        gid = group_id(cfg.gid)
    except KeyError:
        return                  # reported as an unknown group by the caller's id check
    if gid not in login.groups:
        refuse(f"must run in one of {login.name!r}'s groups, not gid = {cfg.gid!r}")


def _check_sockets(cfg: Any, refuse: Any) -> None:
    if cfg.use_sockets or cfg.sockets:
        refuse("cannot use circusd's sockets (use_sockets, sockets: they were bound by circusd)")
    if cfg.stdin_socket:
        refuse("cannot use circusd's sockets (stdin_socket)")
    text = " ".join([cfg.cmd, cfg.args if isinstance(cfg.args, str) else " ".join(cfg.args),
                     cfg.shell_args or ""])
    if _SOCKET_REF.search(text):
        refuse("cannot use circusd's sockets ($(circus.sockets.NAME))")


def _check_rlimits(cfg: Any, owner: str, refuse: Any) -> None:
    for name, value in cfg.rlimits.items():
        res = getattr(resource, f"RLIMIT_{name.upper()}", None)
        if res is None:
            continue
        hard = resource.getrlimit(res)[1]
        if hard == resource.RLIM_INFINITY:
            continue
        if value is None and res != resource.RLIMIT_NOFILE:
            refuse(f"cannot have rlimit_{name} unlimited: the hard limit is {hard} "
                   f"(limits are set as {owner!r}, who cannot raise them)")
        if value is not None and value > hard:
            refuse(f"cannot have rlimit_{name} = {value}: the hard limit is {hard} "
                   f"(limits are set as {owner!r}, who cannot raise them)")


def _check_streams(cfg: Any, refuse: Any) -> list[tuple[str, str]]:
    """The stream files to check as the owner, as (key, path)."""
    paths = []
    for key in ("stdout_stream", "stderr_stream"):
        conf = getattr(cfg, key) or {}
        if not conf:
            continue
        cls = builtin_stream_name(conf.get("class", "FileStream"))
        if cls not in STREAM_CLASSES:
            refuse(f"cannot use the custom stream class {cls!r} (it runs in circusd)")
        if cls == "QueueStream":
            refuse(f"cannot use {key} QueueStream (it keeps every line in circusd's memory)")
        if conf.get("filename") and cls not in ("StdoutStream", "FancyStdoutStream"):
            paths.append((f"{key}.filename", conf["filename"]))
    return paths


def _probe(dirs: list[tuple[str, str]], files: list[tuple[str, str]]) -> tuple[list, list]:
    """Run as the owner: what of ``dirs`` (to enter) and ``files`` (to append to, or to create)
    the owner cannot use, as [key, path, errno, text]. Changes nothing (it may run in circusd
    itself, when circusd is the owner)."""
    problems: list[list[Any]] = []
    for key, path in dirs:
        try:
            if not stat.S_ISDIR(os.stat(path).st_mode):
                raise NotADirectoryError(errno.ENOTDIR, os.strerror(errno.ENOTDIR), path)
            if not os.access(path, os.X_OK):        # the real ids: the owner's in the child
                raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), path)
        except OSError as exc:
            problems.append([key, path, exc.errno, exc.strerror or str(exc)])
    for key, path in files:
        try:
            _probe_file(path)
        except OSError as exc:
            problems.append([key, path, exc.errno, exc.strerror or str(exc)])
    return problems, []


def _probe_file(path: str) -> None:
    dfd, name, kernel = walk(path, follow_last=True)
    try:
        flags = os.O_WRONLY | os.O_APPEND | os.O_CLOEXEC | os.O_NOCTTY | os.O_NONBLOCK
        try:
            fd = os.open(name, flags if kernel else flags | os.O_NOFOLLOW, dir_fd=dfd)
        except FileNotFoundError:
            if not os.access(".", os.W_OK | os.X_OK, dir_fd=dfd):
                raise PermissionError(errno.EACCES, "cannot create files in its directory",
                                      path) from None
            return
        except OSError as exc:
            if exc.errno == errno.ENXIO:        # a FIFO without a reader: it can be opened
                return
            if exc.errno == errno.ELOOP:
                raise UnsafePath(path, "it is a symbolic link that changed") from None
            raise
        try:
            problem = is_unsafe_file(os.fstat(fd))
            if problem:
                raise UnsafePath(path, problem)
        finally:
            os.close(fd)
    finally:
        os.close(dfd)
