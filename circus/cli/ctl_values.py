"""Turning the strings typed after ``circusctl set NAME KEY VALUE`` into the JSON types circusd wants.

circusd enforces JSON types for ``set`` (``"2"`` is not an integer), so the CLI converts each value
by its key, as circusctl 0.19 did. Keys this table does not know (options added after 0.19) are
sent as JSON when the text is JSON (``true``, ``3``, ``{"a": 1}``), else as a plain string.
"""
from __future__ import annotations

import json
import signal
from typing import Any, Callable

__all__ = ["ValueProblem", "convert_option", "to_bool", "to_signum", "HOOK_NAMES"]

TRUE_WORDS = ("yes", "true", "on", "1")
FALSE_WORDS = ("no", "false", "off", "0")
HOOK_NAMES = ("before_start", "after_start", "before_spawn", "after_spawn", "before_stop",
              "after_stop", "before_signal", "after_signal", "before_reap", "after_reap",
              "extended_stats")


class ValueProblem(ValueError):
    """A value typed on the command line cannot be read for its key."""


def to_bool(text: str) -> bool:
    word = text.strip().lower()
    if word in TRUE_WORDS:
        return True
    if word in FALSE_WORDS:
        return False
    raise ValueProblem(f"{text!r} is not a boolean (use one of {', '.join(TRUE_WORDS + FALSE_WORDS)})")


def _int(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise ValueProblem(f"{text!r} is not an integer") from None


def _float(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise ValueProblem(f"{text!r} is not a number") from None


def to_signum(text: str) -> int:
    """A signal number from ``15``, ``TERM``, ``sigterm`` or ``SIGRTMIN+1``."""
    try:
        return int(text)
    except ValueError:
        pass
    name, _, offset = text.strip().upper().partition("+")
    if not name.startswith("SIG"):
        name = "SIG" + name
    number = getattr(signal, name, None)
    if not isinstance(number, int) or (offset and not offset.isdigit()):
        raise ValueProblem(f"{text!r} is not a signal")
    return int(number) + (int(offset) if offset else 0)


def _env(text: str) -> dict[str, str]:
    env: dict[str, str] = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ValueProblem(f"env wants KEY=VALUE[,KEY=VALUE...], got {item!r}")
        env[key.strip()] = value.strip()
    return env


def _hooks(text: str) -> dict[str, str]:
    hooks: dict[str, str] = {}
    for item in filter(None, text.split(",")):
        name, sep, target = item.partition(":")
        if not sep or ":" in target:
            raise ValueProblem(f"hooks want NAME:dotted.callable[,...], got {item!r}")
        if name not in HOOK_NAMES:
            raise ValueProblem(f"unknown hook {name!r} (one of {', '.join(HOOK_NAMES)})")
        hooks[name] = target
    return hooks


def _text(text: str) -> str:
    return text


_BY_KEY: dict[str, Callable[[str], Any]] = {
    "numprocesses": _int, "max_retry": _int, "max_age": _int, "max_age_variance": _int,
    "warmup_delay": _float, "retry_in": _float, "graceful_timeout": _float,
    "working_dir": _text, "uid": _text, "gid": _text, "cmd": _text, "args": _text,
    "send_hup": to_bool, "stop_children": to_bool, "shell": to_bool, "copy_env": to_bool,
    "respawn": to_bool, "singleton": to_bool, "close_child_stdin": to_bool,
    "close_child_stdout": to_bool, "close_child_stderr": to_bool,
    "stop_signal": to_signum, "env": _env, "hooks": _hooks,
}


def _unknown(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return text


def convert_option(key: str, text: str) -> Any:
    """The JSON value to send for option ``key`` typed as ``text``."""
    if key in _BY_KEY:
        return _BY_KEY[key](text)
    if key.startswith(("stdout_stream.", "stderr_stream.")):
        sub = key.split(".", 1)[1]
        return _int(text) if sub in ("max_bytes", "backup_count") else text
    if key.startswith("hooks."):
        if key[len("hooks."):] not in HOOK_NAMES:
            raise ValueProblem(f"unknown hook {key[len('hooks.'):]!r} (one of {', '.join(HOOK_NAMES)})")
        return text
    if key.startswith("rlimit_"):
        return _int(text)
    return _unknown(text)
