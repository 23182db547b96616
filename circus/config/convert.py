"""Value converters: one `Conv` per option type, reading INI text or JSON-typed values.

A converter raises ValueError with a short reason; the caller adds file, line, section and key.
INI text has already been through `$(circus.env.*)` substitution. JSON values come from the
control protocol (`add`/`set`) and must have the right JSON type: no "2" for 2, no 1 for true.
"""

from __future__ import annotations

import math
import re
import resource
import shlex
import signal
from collections.abc import Callable
from typing import Any, cast

from circus.protocol.limits import compile_line_pattern
from circus.records import Record, record

from .substitute import fill_placeholders

__all__ = [
    "Conv", "BOOL", "TEXT", "OPT_TEXT", "USER", "SIGNAL", "NAMES", "SOCKET_NAME", "WORDS", "ARGS",
    "DOTTED", "ENDPOINT", "OPT_ENDPOINT", "OCTAL", "integer", "number", "choice",
    "parse_signal", "parse_bool", "parse_hook", "check_rlimit", "check_dotted", "rlimit_value",
    "json_int", "PROBE", "HEALTH_PROBE", "DEPENDS", "DEPEND_CONDITIONS", "parse_depends",
    "REGEX", "NOTIFY_EVENT_NAMES", "DESTINATION", "ADDRESSES", "COMMAND", "HOST_PORT",
    "parse_host_port",
]

_TRUE = frozenset({"1", "yes", "true", "on"})
_FALSE = frozenset({"0", "no", "false", "off"})
_INT = re.compile(r"[+-]?\d+")
_FLOAT = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?")
_IDENT = r"[A-Za-z_]\w*"
_DOTTED = re.compile(rf"{_IDENT}(\.{_IDENT})*(:{_IDENT}(\.{_IDENT})*)?")
_SCHEME = re.compile(r"[a-z][a-z0-9+.-]*://\S+")


@record
class Conv(Record):
    """How one option's value is checked: `text` for INI, `json` for the protocol; `view` turns a
    checked value back into what `json` accepts (None: tuples become lists, the rest as is)."""

    type_name: str
    text: Callable[[str], object]
    json: Callable[[object], object]
    view: Callable[[Any], object] | None = None


def _expect(value: object, kinds: type | tuple[type, ...], what: str) -> None:
    if isinstance(value, bool) and bool not in (kinds if isinstance(kinds, tuple) else (kinds,)):
        raise ValueError(f"expected {what}, got a boolean")
    if not isinstance(value, kinds):
        raise ValueError(f"expected {what}, got {type(value).__name__} {value!r}")


def json_int(raw: object, what: str = "a JSON integer") -> int:
    """`raw` if it is a JSON integer (a bool is not), else ValueError."""
    _expect(raw, int, what)
    return cast(int, raw)


def parse_bool(text: str) -> bool:
    word = text.strip().lower()
    if word in _TRUE:
        return True
    if word in _FALSE:
        return False
    raise ValueError(f"expected a boolean (true/false, yes/no, on/off, 1/0), got {text!r}")


def _json_bool(value: object) -> bool:
    _expect(value, bool, "a JSON boolean")
    return bool(value)


BOOL = Conv("bool", parse_bool, _json_bool)


def _bounds(value: float, minimum: float | None, maximum: float | None,
            exclusive: bool = False) -> None:
    if minimum is not None and exclusive and value <= minimum:
        raise ValueError(f"must be > {minimum}, got {value}")
    if minimum is not None and value < minimum:
        raise ValueError(f"must be >= {minimum}, got {value}")
    if maximum is not None and value > maximum:
        raise ValueError(f"must be <= {maximum}, got {value}")


def integer(minimum: int | None = None, maximum: int | None = None) -> Conv:
    def text(raw: str) -> int:
        if not _INT.fullmatch(raw.strip()):
            raise ValueError(f"expected an integer, got {raw!r}")
        value = int(raw)
        _bounds(value, minimum, maximum)
        return value

    def json(raw: object) -> int:
        value = json_int(raw)
        _bounds(value, minimum, maximum)
        return value

    return Conv("int", text, json)


def number(minimum: float | None = None, *, exclusive: bool = False) -> Conv:
    """A float >= minimum (> minimum when `exclusive`)."""

    def text(raw: str) -> float:
        if not _FLOAT.fullmatch(raw.strip()):
            raise ValueError(f"expected a number, got {raw!r}")
        value = float(raw)
        _bounds(value, minimum, None, exclusive)
        return value

    def json(raw: object) -> float:
        _expect(raw, (int, float), "a JSON number")
        value = float(raw)  # type: ignore[arg-type]
        if not math.isfinite(value):
            raise ValueError(f"expected a finite number, got {value}")
        _bounds(value, minimum, None, exclusive)
        return value

    return Conv("float", text, json)


def _json_text(raw: object) -> str:
    _expect(raw, str, "a JSON string")
    return str(raw)


def _json_opt_text(raw: object) -> str | None:
    return None if raw is None else _json_text(raw)


TEXT = Conv("str", str, _json_text)
OPT_TEXT = Conv("str", lambda raw: raw or None, _json_opt_text)


def choice(*names: str) -> Conv:
    """One of `names`, matched case-insensitively, returned as spelled in `names`."""
    table = {name.lower(): name for name in names}

    def text(raw: str) -> str:
        found = table.get(raw.strip().lower())
        if found is None:
            raise ValueError(f"expected one of {', '.join(names)}, got {raw!r}")
        return found

    return Conv("|".join(names), text, lambda raw: text(_json_text(raw)))


def _user_text(raw: str) -> str | int | None:
    raw = raw.strip()
    if not raw:
        return None
    return int(raw) if raw.isdigit() else raw


def _user_json(raw: object) -> str | int | None:
    if raw is None or isinstance(raw, str):
        return _user_text(raw or "")
    value = json_int(raw, "a user/group name or number")
    _bounds(value, 0, None)
    return value


# Users and groups are NOT resolved here: an unknown user fails its watcher at spawn time.
USER = Conv("str|int", _user_text, _user_json)


def parse_signal(raw: str | int) -> int:
    """A signal number from a number, a name with or without SIG (any case), or SIGRTMIN+N."""
    if isinstance(raw, int) and not isinstance(raw, bool):
        number_ = raw
    elif isinstance(raw, str):
        word = raw.strip().upper()
        if _INT.fullmatch(word):
            number_ = int(word)
        else:
            name = word if word.startswith("SIG") else "SIG" + word
            match = re.fullmatch(r"(SIGRTMIN|SIGRTMAX)\s*([+-])\s*(\d+)", name)
            if match:
                base = signal.Signals[match.group(1)].value
                offset = int(match.group(3))
                number_ = base + offset if match.group(2) == "+" else base - offset
            elif name in signal.Signals.__members__:
                return signal.Signals[name].value
            else:
                raise ValueError(f"unknown signal {raw!r}")
    else:
        raise ValueError(f"expected a signal name or number, got {raw!r}")
    if number_ not in signal.valid_signals():
        raise ValueError(f"not a valid signal number: {raw!r}")
    return number_


def _signal_json(raw: object) -> int:
    _expect(raw, (int, str), "a signal name or number")
    return parse_signal(raw)  # type: ignore[arg-type]


SIGNAL = Conv("signal", parse_signal, _signal_json)


def _split_names(raw: str) -> tuple[str, ...]:
    return tuple(name.lower() for name in re.split(r"[\s,]+", raw.strip()) if name)


def _names_json(raw: object) -> tuple[str, ...]:
    _expect(raw, list, "a JSON list of names")
    for item in raw:  # type: ignore[attr-defined]
        _expect(item, str, "a JSON list of names")
    return tuple(item.lower() for item in raw)  # type: ignore[attr-defined]


NAMES = Conv("names", _split_names, _names_json)
SOCKET_NAME = Conv(  # socket names are lower-cased, as [socket:NAME] is
    "str", lambda raw: raw.strip().lower() or None,
    lambda raw: None if raw is None else _json_text(raw).strip().lower() or None,
)
WORDS = Conv("words", lambda raw: tuple(raw.split()), _names_json)


def _args_json(raw: object) -> str | tuple[str, ...]:
    if isinstance(raw, list):
        for item in raw:
            _expect(item, str, "a JSON string or list of strings")
        return tuple(raw)
    return _json_text(raw)


ARGS = Conv("str|list", str, _args_json)


def check_dotted(raw: str) -> str:
    """A Python name to import later (`pkg.mod.obj` or `pkg.mod:obj`); syntax only."""
    raw = raw.strip()
    if not _DOTTED.fullmatch(raw) or not ("." in raw or ":" in raw):
        raise ValueError(f"expected a dotted name like 'package.module.name', got {raw!r}")
    return raw


DOTTED = Conv("dotted", check_dotted, lambda raw: check_dotted(_json_text(raw)))


def _endpoint(raw: str) -> str:
    raw = raw.strip()
    if not _SCHEME.fullmatch(raw):
        raise ValueError(f"expected an endpoint like 'tcp://127.0.0.1:5555', got {raw!r}")
    return raw


ENDPOINT = Conv("endpoint", _endpoint, lambda raw: _endpoint(_json_text(raw)))
OPT_ENDPOINT = Conv(
    "endpoint", lambda raw: _endpoint(raw) if raw.strip() else None,
    lambda raw: None if raw in (None, "") else _endpoint(_json_text(raw)),
)


def _octal(raw: str) -> int | None:
    raw = raw.strip()
    if not raw:
        return None
    if not re.fullmatch(r"(0o)?[0-7]{1,4}", raw):
        raise ValueError(f"expected an octal umask like 022, got {raw!r}")
    value = int(raw.removeprefix("0o"), 8)
    _bounds(value, 0, 0o777)
    return value


OCTAL = Conv("octal", _octal, lambda raw: None if raw is None else integer(0, 0o777).json(raw))


def check_rlimit(name: str) -> str:
    """A resource name known to this platform's `resource` module, lower-cased."""
    if not re.fullmatch(r"\w+", name) or not hasattr(resource, "RLIMIT_" + name.upper()):
        known = sorted(n[7:].lower() for n in dir(resource) if n.startswith("RLIMIT_"))
        raise ValueError(f"unknown resource limit {name!r}; known: {', '.join(known)}")
    return name.lower()


def rlimit_value(raw: str) -> int | None:
    """An rlimit: a non-negative integer, or empty / 'unlimited' / 'infinity' for no limit."""
    if raw.strip().lower() in ("", "unlimited", "infinity"):
        return None
    return integer(0).text(raw)  # type: ignore[return-value]


_HOOK_FLAG = re.compile(r",\s*(true|false|yes|no|on|off|1|0)\s*$", re.IGNORECASE)


def check_hook_target(raw: str) -> str:
    """A hook target: a dotted Python name, or ``exec:COMMAND`` (run without a shell)."""
    raw = raw.strip()
    if raw.startswith("exec:"):
        try:
            argv = shlex.split(raw[len("exec:"):])
        except ValueError as exc:
            raise ValueError(f"cannot parse the hook command: {exc}") from None
        if not argv:
            raise ValueError("exec: needs a command")
        return raw
    return check_dotted(raw)


def parse_hook(raw: str) -> tuple[str, bool]:
    """`dotted.name[, true|false]` or `exec:COMMAND[, true|false]` -> (target, ignore_failure).
    A command may contain commas: only a trailing boolean after its last comma is the flag."""
    if raw.strip().startswith("exec:"):
        flag = _HOOK_FLAG.search(raw)
        ignore = parse_bool(flag.group(1)) if flag else False
        return check_hook_target(raw[:flag.start()] if flag else raw), ignore
    name, sep, text = raw.partition(",")
    return check_hook_target(name), (parse_bool(text) if sep else False)


def _probe(liveness: bool) -> Conv:
    """A probe's text, checked with `parse_probe` after `$(circus.X)` placeholders are filled with
    1 (the watcher substitutes the real values at spawn); kept as written. Empty = unset.
    `liveness`: only the kinds a ``health`` probe may be."""

    def text(raw: str) -> str | None:
        raw = raw.strip()
        if not raw:
            return None
        # the probes' grammar is loaded by a configuration that has a probe
        from circus.probes.spec import LIVENESS_KINDS, READINESS_KINDS, parse_probe

        parse_probe(fill_placeholders(raw), LIVENESS_KINDS if liveness else READINESS_KINDS)
        return raw

    return Conv("probe", text, lambda raw: None if raw is None else text(_json_text(raw)))


PROBE = _probe(liveness=False)
HEALTH_PROBE = _probe(liveness=True)

DEPEND_CONDITIONS = ("ready", "started", "completed")
Depends = tuple[tuple[str, str], ...]


def _depend(item: str) -> tuple[str, str]:
    item = item.strip()
    name, colon, condition = item.rpartition(":")
    if not colon:
        name, condition = item, "ready"
    name, condition = name.strip(), condition.strip().lower()
    if condition not in DEPEND_CONDITIONS:
        raise ValueError(f"unknown condition {condition!r} in {item!r}; expected "
                         f"NAME[:{'|'.join(DEPEND_CONDITIONS)}]")
    if not name:
        raise ValueError(f"missing watcher name in {item!r}")
    return name, condition


def _depends(items: list[str]) -> Depends:
    seen: set[str] = set()
    out = []
    for item in items:
        if not item.strip():
            continue  # "a, b," and "a,,b" as NAMES lists allow
        name, condition = _depend(item)
        if name.lower() in seen:
            raise ValueError(f"{name!r} is listed twice")
        seen.add(name.lower())
        out.append((name, condition))
    return tuple(out)


def parse_depends(raw: str) -> Depends:
    """`db, cache:ready, migrate:completed` -> (("db", "ready"), ("cache", "ready"), ...)."""
    return _depends(raw.split(","))


def _depends_json(raw: object) -> Depends:
    _expect(raw, list, 'a JSON list of strings like "db:ready"')
    for item in raw:  # type: ignore[attr-defined]
        _expect(item, str, 'a JSON list of strings like "db:ready"')
    return _depends(list(raw))  # type: ignore[call-overload]


DEPENDS = Conv("dependencies", parse_depends, _depends_json,
               lambda value: [f"{name}:{condition}" for name, condition in value])


def _regex(raw: str) -> str | None:
    raw = raw.strip()
    if not raw:
        return None
    compile_line_pattern(raw)       # searched in output lines: linear time (RE2)
    return raw


REGEX = Conv("regex", _regex, lambda raw: None if raw is None else _regex(_json_text(raw)))


def _notify_events(raw: str) -> tuple[str, ...]:
    # circus.notify.spec (here and below) is loaded by a configuration with a notification
    from circus.notify.spec import NOTIFY_EVENTS

    out: list[str] = []
    for word in re.split(r"[\s,]+", raw.strip()):
        if not word:
            continue
        word = word.lower()
        if word not in NOTIFY_EVENTS:
            raise ValueError(f"unknown event {word!r}; expected some of {', '.join(NOTIFY_EVENTS)}")
        if word not in out:
            out.append(word)
    return tuple(out)


NOTIFY_EVENT_NAMES = Conv("events", _notify_events,
                          lambda raw: _notify_events(" ".join(_names_json(raw))))


def _destination(raw: str) -> str:
    from circus.notify.spec import parse_destination

    parse_destination(raw)
    return raw.strip()


DESTINATION = Conv("destination", _destination, lambda raw: _destination(_json_text(raw)))


def _addresses(raw: str) -> tuple[str, ...]:
    out = tuple(a for a in re.split(r"[\s,]+", raw.strip()) if a)
    for address in out:
        if "@" not in address.strip("@") or address.count("@") != 1:
            raise ValueError(f"not a mail address: {address!r}")
    return out


ADDRESSES = Conv("addresses", _addresses, lambda raw: _addresses(" ".join(_names_json(raw))))


def _command(raw: str) -> str:
    from circus.notify.spec import split_command

    split_command(raw)
    return raw.strip()


COMMAND = Conv("command", _command, lambda raw: _command(_json_text(raw)))


def parse_host_port(raw: str) -> tuple[str, int]:
    """`HOST:PORT`, `[V6]:PORT` or a bare `PORT` (loopback); port 0 picks a free one."""
    raw = raw.strip()
    host, sep, port = raw.rpartition(":")
    if not sep:
        host, port = "127.0.0.1", raw
    host = host.strip("[]") if host.startswith("[") else host
    if not port.isdigit() or not 0 <= int(port) <= 65535 or not host or " " in host:
        raise ValueError(f"expected HOST:PORT like '127.0.0.1:9101', got {raw!r}")
    return host, int(port)


def _host_port(raw: str) -> str | None:
    if not raw.strip():
        return None
    host, port = parse_host_port(raw)
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


HOST_PORT = Conv("host:port", _host_port,
                 lambda raw: None if raw in (None, "") else _host_port(_json_text(raw)))
