"""Checking a watcher's ``stdout_stream.*`` / ``stderr_stream.*`` options.

0.19 built a stream by calling its class with every option as a keyword argument, and its
built-in classes took ``**kwargs``: any option was accepted, and an option the class does not
use was silently dropped. Here an option of a built-in class is checked against what the class
uses; one it does not use is a lenient issue (ignored with ``--no-strict``). ``refresh_time``, an
option 0.19 documented for every stream (how often its old reader thread polled the pipes), is
accepted everywhere and has no effect: output is written as it arrives. A problem that made
0.19's stream constructor raise (no class and no filename, an unknown short class name, a
``TimedRotatingFileStream`` without ``rotate_when``, a number that is not one) dropped the
watcher in 0.19: a lenient ``DROPPED`` issue here.

A dotted class (a custom stream) takes any option, as text; whether it can be imported is
checked by :mod:`.resolve`.
"""
from __future__ import annotations

from typing import Any

from . import convert as c
from .errors import DROPPED, IGNORED, did_you_mean
from .schema import STREAM_CLASSES, STREAM_OPTIONS

__all__ = ["finish_stream", "builtin_stream_name", "BUILTIN_STREAM_PACKAGES"]

#: the modules that hold 0.19's built-in stream classes, under their full names
BUILTIN_STREAM_PACKAGES = ("circus.stream", "circus.streams", "circus.stream.file_stream")
# an option whose bad value 0.19 ignored (a random colour, a truthy text), not a dropped watcher
_FORGIVING = ("color", "utc")


def finish_stream(conf: dict[str, tuple[str, Any]], prefix: str, report: Any,
                  where: Any) -> dict[str, str] | None:
    """Check one stream's options {option: (value, where)}; returns {class, options...} with the
    options of a built-in class normalised (``rotate_when = midnight`` -> ``MIDNIGHT``, ``utc = yes``
    -> ``true``), or None after reporting why the stream cannot be built."""
    cls_item = conf.get("class")
    if cls_item is None:
        if "filename" not in conf:
            report(where, prefix, "a stream needs 'class' (or 'filename' for a FileStream)",
                   lenient=DROPPED)
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
        report(cls_where, f"{prefix}.class", f"unknown stream class {cls_name!r}{hint}",
               lenient=DROPPED)
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
            report(option_where, f"{prefix}.{option}", f"not an option of {cls_name}{hint}",
                   lenient=IGNORED)
            continue
        try:
            result[option] = _stream_text(STREAM_OPTIONS[option].text(value))
        except ValueError as exc:
            forgiving = option in _FORGIVING
            report(option_where, f"{prefix}.{option}", str(exc),
                   lenient=IGNORED if forgiving else DROPPED)
            ok = ok and forgiving
    if cls_name == "TimedRotatingFileStream" and "rotate_when" not in conf:
        report(where, f"{prefix}.rotate_when", f"required by {cls_name}", lenient=DROPPED)
        ok = False
    if result.get("format") == "json" and "time_format" in result:
        report(conf["time_format"][1], f"{prefix}.time_format",
               "not used with format = json (every line carries its time)")
        ok = False
    return result if ok else None


def builtin_stream_name(name: str) -> str:
    """0.19's full names of the built-in streams (``circus.stream.FileStream``) as short names."""
    package, _, short = name.replace(":", ".").rpartition(".")
    if package in BUILTIN_STREAM_PACKAGES and short in STREAM_CLASSES:
        return short
    return name


def _stream_text(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)
