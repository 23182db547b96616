"""Every dotted path of a configuration is imported when it is checked, never first at run time.

A plugin's ``use``, a custom stream's ``class`` and a Python hook (``hooks.<name> =
pkg.mod.func``) name objects by dotted path (``pkg.mod.obj`` or ``pkg.mod:obj.attr``, as the
runtime resolves them). ``--check-config``, the start and ``reloadconfig`` check that each one
can be imported and is what it must be:

- a plugin: a subclass of ``circus.plugins.CircusPlugin`` (what ``circus-plugin`` requires);
- a stream class and a hook: a callable.

Importing a module runs its code, so it is done in a child process (the current interpreter,
``-I``, circusd's environment and working directory), never in circusd: a module that hangs,
exits, crashes or prints cannot harm it, and nothing else of it runs (no plugin is started, no
hook is called, no stream is built). The child's ``sys.path`` is circusd's own, as the runtime
imports them (``circus.hooks.resolve``, ``circus.streams.registry``, ``circus-plugin`` with
``copy_path``). 0.19 also added the directories of a watcher's ``PYTHONPATH`` to circusd's path so
that a hook there could be loaded; our hook runner does not, so neither does the check (a
``DottedRef`` can carry extra ``paths``: the day the runtime searches them, the check passes
them). It answers within :data:`RESOLVE_TIMEOUT` seconds or the rest is reported as not answered
in time.

When a path does not resolve: a plugin is an error (0.19 refused such a file too); a hook or a
stream class is a ``DROPPED`` issue (0.19 dropped that watcher at boot): an error, or with
``--no-strict`` a warning and that watcher is not loaded.
"""
from __future__ import annotations

import json
import os
import selectors
import subprocess
import sys
import time
from collections.abc import Iterable, Mapping, Sequence

from circus.records import Record, record

from .errors import DROPPED, Issues

__all__ = ["DottedRef", "RESOLVE_TIMEOUT", "resolve_refs", "report_unresolved"]

#: seconds the importing child may take for all the paths of one configuration
RESOLVE_TIMEOUT = 15.0

KINDS = ("plugin", "stream", "hook")


@record
class DottedRef(Record):
    """One dotted path of a configuration, and where it is written."""

    kind: str                        # "plugin" | "stream" | "hook"
    target: str                      # pkg.mod.obj or pkg.mod:obj.attr
    file: str
    line: int | None
    section: str
    key: str
    watcher: str | None = None       # the watcher it belongs to (a plugin: None)
    paths: tuple[str, ...] = ()      # appended to sys.path for this one (none today)


# The child: reads {"path": [...], "items": [{"kind", "target", "paths"}]} on stdin, answers one
# JSON line {"i": N, "error": reason-or-null} per item on the fd given as argv[1] (its stdout and
# stderr go to /dev/null: what an imported module prints is not an answer).
_CHILD = r"""
import importlib, json, os, sys
out = os.fdopen(int(sys.argv[1]), "w")
request = json.load(sys.stdin)
base = list(request["path"])
for i, item in enumerate(request["items"]):
    target, kind = item["target"], item["kind"]
    sys.path[:] = base + [p for p in item["paths"] if p not in base]
    module_name, sep, attr = target.partition(":")
    if not sep:
        module_name, _, attr = target.rpartition(".")
    error = None
    try:
        obj = importlib.import_module(module_name)
    except BaseException as exc:
        error = "cannot import %r: %s: %s" % (module_name, type(exc).__name__, exc)
    else:
        for part in attr.split("."):
            try:
                obj = getattr(obj, part)
            except BaseException:
                error = "module %r has no %r" % (module_name, attr)
                break
    if error is None and kind == "plugin":
        try:
            from circus.plugins import CircusPlugin
            good = isinstance(obj, type) and issubclass(obj, CircusPlugin)
        except BaseException as exc:
            good, error = False, "cannot import circus.plugins: %s" % (exc,)
        if error is None and not good:
            error = "%r is not a subclass of circus.plugins.CircusPlugin" % (target,)
    elif error is None and not callable(obj):
        error = "%r is not callable" % (target,)
    out.write(json.dumps({"i": i, "error": error and error.splitlines()[0][:400]}) + "\n")
    out.flush()
"""


def resolve_refs(refs: Sequence[DottedRef], *, environ: Mapping[str, str],
                 sys_path: Iterable[str] | None = None, cwd: str | None = None,
                 python: str | None = None, timeout: float = RESOLVE_TIMEOUT
                 ) -> list[str | None]:
    """For each ref, None when it resolves, else why not (same order)."""
    if not refs:
        return []
    cwd = cwd or os.getcwd()
    path = [os.path.join(cwd, p) if not os.path.isabs(p) else p
            for p in (sys.path if sys_path is None else sys_path)]
    request = json.dumps({"path": path, "items": [
        {"kind": r.kind, "target": r.target,
         "paths": [os.path.join(cwd, p) for p in r.paths if p]} for r in refs]})
    answers: dict[int, str | None] = {}
    timed_out = False
    read_fd, write_fd = os.pipe()
    try:
        child = subprocess.Popen(
            [python or sys.executable, "-I", "-c", _CHILD, str(write_fd)], stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=cwd, env=dict(environ),
            pass_fds=(write_fd,), start_new_session=True)
    except OSError as exc:
        os.close(read_fd)
        os.close(write_fd)
        return [f"cannot start {python or sys.executable} to import it: {exc}"] * len(refs)
    os.close(write_fd)
    try:
        answers, timed_out = _collect(child, read_fd, request, timeout)
    finally:
        os.close(read_fd)
        if child.poll() is None:
            _kill(child)
        child.wait()   # inside circusd its reaper may have collected the status first: fine
        if child.stdin:
            child.stdin.close()
    late = f"importing it did not finish within {timeout:g} s (a module that blocks at import?)"
    died = "the importing process ended before answering (the import crashed it?)"
    return [answers[i] if i in answers else (late if timed_out else died)
            for i in range(len(refs))]


def _collect(child: subprocess.Popen, read_fd: int, request: str,
             timeout: float) -> tuple[dict[int, str | None], bool]:
    """(the answers, whether the deadline passed first)."""
    assert child.stdin is not None
    try:
        child.stdin.write(request.encode())
        child.stdin.close()
    except OSError:
        pass
    answers: dict[int, str | None] = {}
    buffer = b""
    deadline = time.monotonic() + timeout
    with selectors.DefaultSelector() as selector:
        selector.register(read_fd, selectors.EVENT_READ)
        while True:
            left = deadline - time.monotonic()
            if left <= 0 or not selector.select(left):
                _kill(child)
                return answers, True
            chunk = os.read(read_fd, 65536)
            if not chunk:
                break
            buffer += chunk
            *lines, buffer = buffer.split(b"\n")
            for line in lines:
                answer = json.loads(line)
                answers[answer["i"]] = answer["error"]
    return answers, False


def _kill(child: subprocess.Popen) -> None:
    try:
        os.killpg(child.pid, 9)
    except OSError:
        pass


def report_unresolved(refs: Sequence[DottedRef], reasons: Sequence[str | None],
                      issues: Issues) -> set[str]:
    """Add an issue per ref that did not resolve; returns the watchers to drop (--no-strict)."""
    dropped: set[str] = set()
    for ref, reason in zip(refs, reasons):
        if reason is None:
            continue
        what = {"plugin": "plugin class", "stream": "stream class", "hook": "hook"}[ref.kind]
        lenient = None if ref.kind == "plugin" else DROPPED
        issues.add(ref.file, ref.line, ref.section, ref.key, f"{what} {ref.target!r}: {reason}",
                   lenient)
        if ref.watcher is not None:
            dropped.add(ref.watcher)
    return dropped
