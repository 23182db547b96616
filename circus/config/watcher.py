"""Assembling a WatcherConfig from (key, value, where) items, shared by INI files and `add`/`set`.

`mode` says how values are typed: "text" (INI strings, already substituted) or "json" (protocol
values, which must carry the right JSON type). Problems go to `report(where, key, reason,
lenient=None)`, where `where` is whatever the caller attached to the item (an INI value with
file and line, or None) and `lenient` says what Circus 0.19 did with it (``errors.IGNORED``: the
key is left out and the watcher is built; ``errors.DROPPED``: no watcher). The protocol (`add`,
`set`) refuses every issue; an INI file with ``--no-strict`` only the others.

Keys are matched case-insensitively against the schema; the first definition of an option wins.
Besides the plain options a watcher takes `rlimit_<name>`, `hooks.<hook>`, `stdout_stream.<opt>`
and `stderr_stream.<opt>`; any other dotted key (`flapping.max_retry`) is a free-form plugin
option kept in `options`, unless its prefix is a typo of ``hooks``, ``stdout_stream`` or
``stderr_stream`` (``stdout_steam.class``: an issue, not an option).
"""

from __future__ import annotations

import json
import shlex
from collections.abc import Callable, Iterable
from dataclasses import MISSING, fields
from typing import Any

from circus.protocol.limits import MAX_ARGS, MAX_ENV, MAX_EXEC_BYTES, MAX_VALUE

from . import convert as c
from .errors import DROPPED, IGNORED
from .hints import RESERVED_PREFIXES, reserved_prefix_typo, unknown_key_hint
from .schema import HOOK_NAMES, WatcherConfig, schema_fields
from .stream_options import builtin_stream_name, finish_stream
from .substitute import fill_placeholders

__all__ = ["Report", "Collector", "assemble_watcher", "finish_stream", "builtin_stream_name"]

Report = Callable[..., None]   # report(where, key, reason, lenient=None)
Item = tuple[str, object, Any]

_STREAMS = ("stdout_stream", "stderr_stream")
_NUL = "a NUL byte: no value can hold one (a process's arguments, environment and paths cannot)"
_BAD = object()  # a value that was given but could not be converted


class Collector:
    """Converts the plain options of one schema class; remembers where each one came from."""

    def __init__(self, cls: type, mode: str, report: Report) -> None:
        self.cls = cls
        self.fields = schema_fields(cls)
        self.mode = mode
        self.report = report
        self.values: dict[str, Any] = {}
        self.where: dict[str, Any] = {}

    def feed(self, key: str, value: object, where: Any) -> bool:
        """Take `key` if it is a plain option of the class; False means "not mine"."""
        found = self.fields.get(key.lower())
        if found is None:
            return False
        if found.name in self.values:  # first definition wins, also between case variants
            first = self.where.get(found.name)
            at = f" (first at {first.file}:{first.line})" if getattr(first, "line", None) else ""
            self.report(where, key, f"set again{at}; this value is ignored", lenient=IGNORED)
            return True
        conv: c.Conv = found.metadata["conv"]
        self.where[found.name] = where
        if _has_nul(value):
            self.values[found.name] = _BAD
            self.report(where, key, _NUL)
            return True
        try:
            if self.mode == "text":
                self.values[found.name] = conv.text(str(value))
            else:
                self.values[found.name] = conv.json(value)
        except ValueError as exc:
            self.values[found.name] = _BAD
            self.report(where, key, str(exc))
        return True

    def unknown(self, key: str, where: Any, extra: Iterable[str] = (), *,
                lenient: str | None = IGNORED, env_section: str | None = None) -> None:
        """Report the unknown `key`: IGNORED (0.19 ignored it) unless `lenient` says otherwise
        (the sections 0.19 did not have are strict)."""
        hint = unknown_key_hint(key, [*self.fields, *extra], env_section)
        self.report(where, key, f"unknown option{hint}", lenient=lenient)

    def check_required(self, where: Any, lenient: str | None = None) -> None:
        for f in fields(self.cls):
            required = f.default is MISSING and f.default_factory is MISSING
            if f.metadata.get("kind") == "plain" and required and f.name not in self.values:
                self.report(where, f.name, "missing required option", lenient=lenient)

    def given(self, name: str) -> bool:
        return name in self.values

    def good(self) -> dict[str, Any]:
        """The values that converted (see `ok` for whether any did not)."""
        return {k: v for k, v in self.values.items() if v is not _BAD}

    @property
    def ok(self) -> bool:
        return all(v is not _BAD for v in self.values.values())


def _scalar_text(value: object, mode: str) -> str:
    if mode == "text" or isinstance(value, str):
        return str(value)
    if isinstance(value, (bool, int, float)) or value is None:
        return json.dumps(value)
    raise ValueError(f"expected a JSON string, number or boolean, got {type(value).__name__}")


class _Composite:
    """rlimits, hooks, streams and free-form options of one watcher."""

    def __init__(self, mode: str, report: Report) -> None:
        self.mode = mode
        self.report = report
        self.ok = True
        self.rlimits: dict[str, int | None] = {}
        self.hooks: dict[str, tuple[str, bool]] = {}
        self.streams: dict[str, dict[str, tuple[str, Any]]] = {name: {} for name in _STREAMS}
        self.stream_where: dict[str, Any] = {}
        self.options: dict[str, str] = {}

    def fail(self, where: Any, key: str, reason: str) -> None:
        self.ok = False
        self.report(where, key, reason)

    def feed(self, key: str, value: object, where: Any) -> bool:
        lower = key.lower()
        prefix, dot, rest = lower.partition(".")
        if _has_nul(value):
            self.fail(where, key, _NUL)
            return True
        try:
            typo = reserved_prefix_typo(prefix) if dot else None
            if typo is not None:
                self.report(where, key, f"unknown option (did you mean '{typo}.{key.partition('.')[2]}'?)",
                            lenient=IGNORED)
            elif lower.startswith("rlimit_"):
                self.rlimit(lower[7:], value)
            elif self.mode == "json" and lower == "rlimits":
                for name, limit in _json_object(value, "an object of resource limits").items():
                    self.rlimit(name.lower(), limit)
            elif prefix == "hooks" and dot:
                self.hook(rest, value, where)
            elif self.mode == "json" and lower == "hooks":
                for name, spec in _json_object(value, "an object of hooks").items():
                    self.hook(name.lower(), spec, where)
            elif prefix in _STREAMS and dot:
                self.stream_where.setdefault(prefix, where)
                self.streams[prefix].setdefault(rest, (_scalar_text(value, self.mode), where))
            elif self.mode == "json" and lower in _STREAMS:
                self.stream_where.setdefault(lower, where)
                for option, item in _json_object(value, "a stream object").items():
                    text = _scalar_text(item, "json")
                    self.streams[lower].setdefault(option.lower(), (text, where))
            elif dot and prefix not in RESERVED_PREFIXES:
                self.options.setdefault(key, _scalar_text(value, self.mode))
            else:
                return False
        except ValueError as exc:
            self.fail(where, key, str(exc))
        return True

    def rlimit(self, name: str, value: object) -> None:
        name = c.check_rlimit(name)
        if self.mode == "text":
            self.rlimits.setdefault(name, c.rlimit_value(str(value)))
        elif value is None:
            self.rlimits.setdefault(name, None)
        else:
            limit = c.json_int(value)
            if limit < 0:
                raise ValueError(f"must be >= 0, got {limit}")
            self.rlimits.setdefault(name, limit)

    def hook(self, name: str, value: object, where: Any) -> None:
        if name not in HOOK_NAMES:  # 0.19 kept it under that name and never called it
            hint = unknown_key_hint(name, HOOK_NAMES) or f" (known: {', '.join(HOOK_NAMES)})"
            self.report(where, f"hooks.{name}", f"unknown hook {name!r}{hint}",
                        lenient=IGNORED)
            return
        if self.mode == "text" or isinstance(value, str):
            self.hooks.setdefault(name, c.parse_hook(str(value)))
        elif isinstance(value, list) and len(value) == 2 and isinstance(value[1], bool):
            target = c.check_hook_target(str(c.TEXT.json(value[0])))
            self.hooks.setdefault(name, (target, value[1]))
        else:
            raise ValueError("expected 'dotted.name[, true|false]', 'exec:COMMAND' or [target, bool]")

    def finish(self) -> dict[str, Any]:
        result: dict[str, Any] = {
            "rlimits": self.rlimits, "hooks": self.hooks, "options": self.options,
        }
        for name, conf in self.streams.items():
            if conf:
                stream = finish_stream(conf, name, self.report, self.stream_where[name])
                self.ok = self.ok and stream is not None
                result[name] = stream
        return result


def _has_nul(value: object) -> bool:
    if isinstance(value, str):
        return "\0" in value
    if isinstance(value, (list, tuple)):
        return any(_has_nul(item) for item in value)
    if isinstance(value, dict):
        return any(_has_nul(k) or _has_nul(v) for k, v in value.items())
    return False


def _split_problem(text: str) -> str | None:
    """Why `text` cannot be split into arguments as each spawn splits it, or None."""
    try:
        shlex.split(fill_placeholders(text))
    except ValueError as exc:
        return f"cannot be split into arguments: {exc} (in {text!r})"
    return None


def _json_object(value: object, what: str) -> dict[str, object]:
    if not isinstance(value, dict) or not all(isinstance(k, str) for k in value):
        raise ValueError(f"expected {what}")
    return value


def _cross_check(watcher: str, col: Collector, report: Report,
                 section_where: Any) -> dict[str, Any] | None:
    """Rules between options (checked on the values that converted); fills in restart_policy or
    respawn from the other. None if a rule is broken. (Rules between watchers, such as
    depends_on naming a defined watcher, are the caller's: build.py for a file.)"""
    v = col.good()
    ok = True

    def bad(name: str, reason: str, lenient: str | None = None) -> None:
        nonlocal ok
        ok = False
        report(col.where.get(name, section_where), name, reason, lenient=lenient)

    # what made 0.19's Watcher() raise: the watcher was dropped at boot (DROPPED)
    if "cmd" in v and not str(v["cmd"]).strip():
        bad("cmd", "must not be empty", DROPPED)
    if v.get("singleton") and v.get("numprocesses", 1) not in (0, 1):
        bad("numprocesses", "a singleton watcher runs 0 or 1 process", DROPPED)
    for name in ("copy_path", "virtualenv"):
        if v.get(name) and not v.get("copy_env"):
            bad(name, "requires copy_env = true", DROPPED)
    # what every spawn would fail on
    texts = [("cmd", v.get("cmd"))] if not v.get("shell") else [("shell_args", v.get("shell_args"))]
    texts.append(("args", v.get("args")))
    for name, text in texts:
        problem = _split_problem(text) if isinstance(text, str) and text else None
        if problem:
            bad(name, problem)
    if v.get("backoff_max", 30.0) < v.get("backoff_initial", 0.1):
        bad("backoff_max", "must be >= backoff_initial")
    ready_ok = "ready" in v or not col.given("ready")  # a bad ready is reported already
    notify = (v.get("ready") or "").lower() == "notify"
    if v.get("watchdog_timeout", 0.0) > 0 and ready_ok and not notify:
        bad("watchdog_timeout", "requires ready = notify")
    if any(dep.lower() == watcher.lower() for dep, _ in v.get("depends_on", ())):
        bad("depends_on", f"watcher {watcher!r} cannot depend on itself")
    for name, problem in _size_problems(v):
        bad(name, problem)
    if "restart_policy" in v and "respawn" in v:
        if v["respawn"] != (v["restart_policy"] != "never"):
            bad("restart_policy", f"contradicts respawn = {str(v['respawn']).lower()}")
    elif "restart_policy" in v:
        v["respawn"] = v["restart_policy"] != "never"
    elif not col.given("restart_policy"):
        v["restart_policy"] = "always" if v.get("respawn", True) else "never"
    return v if ok else None


def _size_problems(v: dict[str, Any]) -> list[tuple[str, str]]:
    """Options over the size limits of ``circus.protocol.limits`` (what each spawn copies)."""
    problems = []
    for name, value in v.items():
        if isinstance(value, str) and len(value) > MAX_VALUE:
            problems.append((name, f"{len(value)} characters: at most {MAX_VALUE}"))
    args = v.get("args", ())
    items = args if isinstance(args, tuple) else str(args).split()
    for item in items if isinstance(args, tuple) else ():
        if len(item) > MAX_VALUE:
            problems.append(("args", f"an argument of {len(item)} characters: at most {MAX_VALUE}"))
            break
    count = len(str(v.get("cmd", "")).split()) + len(items)
    if count > MAX_ARGS:
        problems.append(("args", f"{count} arguments: at most {MAX_ARGS}"))
    return problems


def env_problems(env: dict[str, str]) -> list[str]:
    """Why ``env`` is over the size limits (``circus.protocol.limits``), or []."""
    problems = []
    if len(env) > MAX_ENV:
        problems.append(f"{len(env)} variables: at most {MAX_ENV}")
    long = next((k for k, value in env.items() if len(k) + len(value) > MAX_VALUE), None)
    if long is not None:
        problems.append(f"{long[:40]!r} is over {MAX_VALUE} characters")
    return problems


def _exec_bytes(watcher: WatcherConfig) -> int:
    args = watcher.args if isinstance(watcher.args, tuple) else (watcher.args,)
    return len(watcher.cmd) + sum(len(a) + 1 for a in args) + \
        sum(len(k) + len(v) + 2 for k, v in watcher.env.items())


def assemble_watcher(name: str, items: Iterable[Item], mode: str, report: Report,
                     env: dict[str, str], section_where: Any,
                     env_section: str | None = None) -> WatcherConfig | None:
    """A WatcherConfig, or None after reporting every problem. An unknown key is reported as
    IGNORED and left out (`env_section`: where its environment variables would go, for the
    hint); a DROPPED issue or any other error means None."""
    col = Collector(WatcherConfig, mode, report)
    composite = _Composite(mode, report)
    for key, value, where in items:
        if not (col.feed(key, value, where) or composite.feed(key, value, where)):
            col.unknown(key, where, ("rlimit_", "hooks.", "stdout_stream.", "stderr_stream."),
                        env_section=env_section)
    col.check_required(section_where, lenient=DROPPED)   # no cmd: 0.19 dropped the watcher
    extra = composite.finish()
    values = _cross_check(name, col, report, section_where)
    env_ok = True
    for problem in env_problems(env):
        report(section_where, "env", problem)
        env_ok = False
    if _has_nul(env):
        report(section_where, "env", _NUL)
        env_ok = False
    if values is None or not (col.ok and composite.ok and env_ok and "cmd" in values):
        return None
    watcher = WatcherConfig(name=name, env=env, **extra, **values)
    if _exec_bytes(watcher) > MAX_EXEC_BYTES:
        report(section_where, "env", f"the command, its arguments and its environment are "
               f"{_exec_bytes(watcher)} bytes: at most {MAX_EXEC_BYTES}")
        return None
    return watcher
