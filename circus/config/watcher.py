"""Assembling a WatcherConfig from (key, value, where) items, shared by INI files and `add`/`set`.

`mode` says how values are typed: "text" (INI strings, already substituted) or "json" (protocol
values, which must carry the right JSON type). Problems go to `report(where, key, reason)`, where
`where` is whatever the caller attached to the item (an INI value with file and line, or None).

Keys are matched case-insensitively against the schema; the first definition of an option wins.
Besides the plain options a watcher takes `rlimit_<name>`, `hooks.<hook>`, `stdout_stream.<opt>`
and `stderr_stream.<opt>`; any other dotted key (`flapping.max_retry`) is a free-form plugin
option kept in `options`.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from dataclasses import MISSING, fields
from typing import Any

from circus.protocol.limits import MAX_ARGS, MAX_ENV, MAX_EXEC_BYTES, MAX_VALUE

from . import convert as c
from .errors import did_you_mean
from .schema import HOOK_NAMES, STREAM_CLASSES, STREAM_OPTIONS, WatcherConfig, schema_fields

__all__ = ["Report", "Collector", "assemble_watcher", "finish_stream", "builtin_stream_name"]

Report = Callable[[Any, "str | None", str], None]
Item = tuple[str, object, Any]

_STREAMS = ("stdout_stream", "stderr_stream")
_RESERVED_PREFIXES = ("hooks",) + _STREAMS
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
        if found.name in self.values:
            return True  # first definition wins, also between case variants
        conv: c.Conv = found.metadata["conv"]
        self.where[found.name] = where
        try:
            if self.mode == "text":
                self.values[found.name] = conv.text(str(value))
            else:
                self.values[found.name] = conv.json(value)
        except ValueError as exc:
            self.values[found.name] = _BAD
            self.report(where, key, str(exc))
        return True

    def unknown(self, key: str, where: Any, extra: Iterable[str] = ()) -> None:
        hint = did_you_mean(key, [*self.fields, *extra])
        self.report(where, key, f"unknown option{hint}")

    def check_required(self, where: Any) -> None:
        for f in fields(self.cls):
            required = f.default is MISSING and f.default_factory is MISSING
            if f.metadata.get("kind") == "plain" and required and f.name not in self.values:
                self.report(where, f.name, "missing required option")

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


def finish_stream(conf: dict[str, tuple[str, Any]], prefix: str, report: Report,
                  where: Any) -> dict[str, str] | None:
    """Check one stream's options {option: (value, where)}; returns {class, options...} with the
    options of a built-in class normalised (``rotate_when = midnight`` -> ``MIDNIGHT``, ``utc = yes``
    -> ``true``). A dotted class (a custom stream) takes any option, as text."""
    cls_item = conf.get("class")
    if cls_item is None:
        if "filename" not in conf:
            report(where, prefix, "a stream needs 'class' (or 'filename' for a FileStream)")
            return None
        cls_item = ("FileStream", where)
    cls_name, cls_where = builtin_stream_name(cls_item[0].strip()), cls_item[1]
    ok = True
    allowed = STREAM_CLASSES.get(cls_name)
    if "." in cls_name or ":" in cls_name:
        try:
            c.check_dotted(cls_name)
        except ValueError as exc:
            report(cls_where, f"{prefix}.class", str(exc))
            ok = False
    elif allowed is None:
        hint = did_you_mean(cls_name, STREAM_CLASSES) or f" (known: {', '.join(STREAM_CLASSES)})"
        report(cls_where, f"{prefix}.class", f"unknown stream class {cls_name!r}{hint}")
        ok = False
    result = {"class": cls_name}
    for option, (value, option_where) in conf.items():
        if option == "class":
            continue
        if allowed is None:
            result[option] = value
            continue
        if option not in allowed:
            hint = did_you_mean(option, allowed)
            report(option_where, f"{prefix}.{option}", f"not an option of {cls_name}{hint}")
            ok = False
            continue
        try:
            result[option] = _stream_text(STREAM_OPTIONS[option].text(value))
        except ValueError as exc:
            report(option_where, f"{prefix}.{option}", str(exc))
            ok = False
    if cls_name == "TimedRotatingFileStream" and "rotate_when" not in conf:
        report(where, f"{prefix}.rotate_when", f"required by {cls_name}")
        ok = False
    if result.get("format") == "json" and "time_format" in result:
        report(conf["time_format"][1], f"{prefix}.time_format",
               "not used with format = json (every line carries its time)")
        ok = False
    return result if ok else None


def builtin_stream_name(name: str) -> str:
    """0.19's full names of the built-in streams (``circus.stream.FileStream``) as short names."""
    package, _, short = name.replace(":", ".").rpartition(".")
    if package in ("circus.stream", "circus.streams") and short in STREAM_CLASSES:
        return short
    return name


def _stream_text(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


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
        try:
            if lower.startswith("rlimit_"):
                self.rlimit(lower[7:], value)
            elif self.mode == "json" and lower == "rlimits":
                for name, limit in _json_object(value, "an object of resource limits").items():
                    self.rlimit(name.lower(), limit)
            elif prefix == "hooks" and dot:
                self.hook(rest, value)
            elif self.mode == "json" and lower == "hooks":
                for name, spec in _json_object(value, "an object of hooks").items():
                    self.hook(name.lower(), spec)
            elif prefix in _STREAMS and dot:
                self.stream_where.setdefault(prefix, where)
                self.streams[prefix].setdefault(rest, (_scalar_text(value, self.mode), where))
            elif self.mode == "json" and lower in _STREAMS:
                self.stream_where.setdefault(lower, where)
                for option, item in _json_object(value, "a stream object").items():
                    text = _scalar_text(item, "json")
                    self.streams[lower].setdefault(option.lower(), (text, where))
            elif dot and prefix not in _RESERVED_PREFIXES:
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

    def hook(self, name: str, value: object) -> None:
        if name not in HOOK_NAMES:
            hint = did_you_mean(name, HOOK_NAMES) or f" (known: {', '.join(HOOK_NAMES)})"
            raise ValueError(f"unknown hook {name!r}{hint}")
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

    def bad(name: str, reason: str) -> None:
        nonlocal ok
        ok = False
        report(col.where.get(name, section_where), name, reason)

    if "cmd" in v and not str(v["cmd"]).strip():
        bad("cmd", "must not be empty")
    if v.get("singleton") and v.get("numprocesses", 1) not in (0, 1):
        bad("numprocesses", "a singleton watcher runs 0 or 1 process")
    for name in ("copy_path", "virtualenv"):
        if v.get(name) and not v.get("copy_env"):
            bad(name, "requires copy_env = true")
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
                     env: dict[str, str], section_where: Any) -> WatcherConfig | None:
    """A WatcherConfig, or None after reporting every problem."""
    col = Collector(WatcherConfig, mode, report)
    composite = _Composite(mode, report)
    for key, value, where in items:
        if not (col.feed(key, value, where) or composite.feed(key, value, where)):
            col.unknown(key, where, ("rlimit_", "hooks.", "stdout_stream.", "stderr_stream."))
            composite.ok = False
    col.check_required(section_where)
    extra = composite.finish()
    values = _cross_check(name, col, report, section_where)
    env_ok = True
    for problem in env_problems(env):
        report(section_where, "env", problem)
        env_ok = False
    if values is None or not (col.ok and composite.ok and env_ok and "cmd" in values):
        return None
    watcher = WatcherConfig(name=name, env=env, **extra, **values)
    if _exec_bytes(watcher) > MAX_EXEC_BYTES:
        report(section_where, "env", f"the command, its arguments and its environment are "
               f"{_exec_bytes(watcher)} bytes: at most {MAX_EXEC_BYTES}")
        return None
    return watcher
