"""Requests for tests/test_fuzz_control.py: their shape, their JSON (with the tokens
``json.dumps`` cannot write), how they print, and what a frame must get before its command sees
it (not JSON, too deep, no such command) or may get (a number that reads as infinity, a lone
surrogate). Pure: no sockets.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Mapping

from circus.protocol import COMMANDS
from circus.protocol.limits import MAX_DEPTH

NAN_TOKENS = ("NaN", "Infinity", "-Infinity")
#: numbers too large for a float: Python reads them as infinity; refusing them is fine too
OVERFLOW_TOKENS = ("1e999", "-1e999")


class Big(str):
    """A long string that prints short (``'y'*100000``), in examples and in strategy reprs."""

    def __repr__(self) -> str:
        return short(str(self))


@dataclass(frozen=True)
class Tok:
    """A JSON token written as is: ``NaN``, ``Infinity``, ``1e999``, ``1000…0``, ``[[[…]]]``."""

    text: str

    def __repr__(self) -> str:
        return f"Tok({short(self.text)})"


@dataclass(frozen=True, eq=False)
class Req:
    """One request. ``raw`` is a frame sent as is instead (garbage); ``frames`` go before the body
    in the same message; ``odd_id`` is echoed next to the tag as the request's id."""

    command: Any
    props: Mapping[str, Any] = field(default_factory=dict)
    cast: bool = False
    odd_id: Any = None
    raw: bytes | None = None
    frames: tuple[bytes, ...] = ()

    def _repr_pretty_(self, printer, cycle) -> None:
        printer.text(repr(self))

    def __repr__(self) -> str:
        if self.raw is not None:
            return f"raw({short(self.raw)})"
        args = ", ".join(f"{k if k.isidentifier() else short(k)}={short(v)}" for k, v in self.props.items())
        extra = "".join([" cast" if self.cast else "", f" id+={short(self.odd_id)}" if self.odd_id is not None
                         else "", f" frames={short(self.frames)}" if self.frames else ""])
        return f"{short(self.command) if not isinstance(self.command, str) else self.command}({args}){extra}"

    def body(self, tag: str) -> bytes:
        if self.raw is not None:
            return self.raw
        msg: dict[str, Any] = {"id": tag if self.odd_id is None else [tag, self.odd_id],
                               "command": self.command, "properties": dict(self.props)}
        if self.cast:
            msg["msg_type"] = "cast"
        return dumps(msg)

    @property
    def name(self) -> Any:
        return self.props.get("name")


def short(value: Any, limit: int = 60) -> str:
    """``repr`` with long strings, lists and dicts abbreviated (``'x'*100000``)."""
    if isinstance(value, (str, bytes)) and len(value) > limit:
        if len(set(value)) == 1:
            return f"{value[:1]!r}*{len(value)}"
        return f"{value[:limit // 2]!r}…({len(value)})"
    if isinstance(value, (list, tuple)) and len(value) > 8:
        return f"[{', '.join(short(v) for v in value[:3])}, … {len(value)} items]"
    if isinstance(value, dict) and len(value) > 6:
        return f"{{{len(value)} keys: {', '.join(short(k) for k in list(value)[:2])}, …}}"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{short(k)}: {short(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ", ".join(short(v) for v in value) + "]"
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) >= 10 ** 12:
        exp = len(str(abs(value))) - 1
        return f"{'-' if value < 0 else ''}10**{exp}" if abs(value) == 10 ** exp else f"{value:.3e}"
    return repr(value)


def dumps(obj: Any) -> bytes:
    """JSON of ``obj`` with each :class:`Tok` written as its text."""
    toks: list[str] = []

    def sub(value: Any) -> Any:
        if isinstance(value, Tok):
            toks.append(value.text)
            return f"\x00{len(toks) - 1}\x00"
        if isinstance(value, dict):
            return {k: sub(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [sub(v) for v in value]
        return value
    plain = sub(obj)
    try:
        text = json.dumps(plain, ensure_ascii=False)
        text.encode()
    except UnicodeEncodeError:                      # a lone surrogate: send it escaped
        text = json.dumps(plain)
    for i, tok in enumerate(toks):
        text = text.replace(json.dumps(f"\x00{i}\x00"), tok)
    return text.encode()


def walk(value: Any):
    yield value
    if isinstance(value, dict):
        for v in value.values():
            yield from walk(v)
    elif isinstance(value, (list, tuple)):
        for v in value:
            yield from walk(v)


def tokens(req: Req) -> list[str]:
    return [v.text for v in walk([req.props, req.odd_id]) if isinstance(v, Tok)]


def depth(value: Any) -> int:
    if isinstance(value, dict):
        return 1 + max((depth(v) for v in value.values()), default=0)
    if isinstance(value, (list, tuple)):
        return 1 + max((depth(v) for v in value), default=0)
    return 0


def frame_problem(req: Req) -> frozenset[str] | None:
    """The codes a request must get before any command sees it (None: it reaches its command)."""
    toks = tokens(req)
    if any(t in NAN_TOKENS for t in toks):
        return frozenset({"invalid_json"})                 # NaN and Infinity are not JSON
    if any(len(t) > 4000 for t in toks):                   # a huge integer, a nesting bomb
        return frozenset({"invalid_json", "invalid_message"})
    top = {"id": "t" if req.odd_id is None else ["t", req.odd_id], "properties": dict(req.props)}
    if depth(top) > MAX_DEPTH:
        return frozenset({"invalid_message", "invalid_json"})
    if not isinstance(req.command, str) or not req.command:
        return frozenset({"invalid_message"})
    if req.command.lower() not in COMMANDS:
        return frozenset({"unknown_command", "invalid_message"})
    return None


def json_doubt(req: Req) -> frozenset[str]:
    """Codes a request may get besides its command's: ``invalid_json`` if it carries a number
    that only reads as infinity, or a string with a lone surrogate (``"\\ud800"``: JSON can
    spell it, UTF-8 cannot)."""
    if any(t in OVERFLOW_TOKENS for t in tokens(req)) or any(
            isinstance(v, str) and any(0xD800 <= ord(c) < 0xE000 for c in v)
            for v in walk([req.command, req.props, req.odd_id, *keys(req.props)])):
        return frozenset({"invalid_json"})
    return frozenset()


def keys(value: Any) -> list[str]:
    return [k for v in walk(value) if isinstance(v, dict) for k in v]


def prop_problems(command: str, props: Mapping[str, Any]) -> set[str]:
    """Codes for properties that do not fit the command's declared types (commands.py)."""
    out: set[str] = set()
    for prop in COMMANDS[command].props:
        value = props.get(prop.name)
        if value is None:
            if prop.required:
                out.add("missing_property")
            continue
        if isinstance(value, Tok):
            value = float(value.text)                       # 1e999: a number (inf)
        if isinstance(value, bool):
            fits = bool in prop.types
        elif isinstance(value, int):
            fits = int in prop.types or float in prop.types
        else:
            fits = isinstance(value, tuple(t for t in prop.types if t not in (bool, int)))
        if not fits or (prop.choices and value not in prop.choices):
            out.add("invalid_property")
    return out
