"""Bounds on what a request may contain: nesting depth, names, and ``match = regex`` patterns.

Pure. The frame size is bounded in :mod:`circus.protocol.messages`; here:

* **depth**: a request nested deeper than :data:`MAX_DEPTH` is refused before any handler sees it.
* **names**: a new watcher's name is 1 to :data:`MAX_NAME` characters with no control
  character, no ``/`` or ``\\``, and not ``.`` or ``..`` (names end up in paths, topics, logs).
* **regex**: a pattern has a bounded matching cost. Python's ``re`` backtracks and cannot be
  interrupted, so a pattern like ``(a+)+$`` would freeze circusd. Refused: a quantifier inside a
  quantified group, an alternation inside a quantified group, back-references, more than
  :data:`MAX_UNBOUNDED` unbounded (or long) quantifiers, a quantifier asking for more than
  :data:`MAX_NAME` repetitions, patterns over :data:`MAX_PATTERN` characters, and patterns
  with more than :data:`MAX_WAYS` ways to match a name (each optional or bounded part
  multiplies them: thirty ``a?`` in a row are 2**30 ways, and would freeze circusd as surely
  as ``(a+)+$``). What is left matches a name of :data:`MAX_NAME` characters
  in about a millisecond at most.
"""
from __future__ import annotations

import re
import warnings
from typing import Any

try:                                    # the parser of the re module, as used by re.compile
    from re import _constants as sre_constants, _parser as sre_parse  # type: ignore[attr-defined]
except ImportError:                     # pragma: no cover - Python < 3.11
    import sre_constants  # type: ignore[no-redef]
    import sre_parse  # type: ignore[no-redef]

from circus.protocol.errors import ErrorCode, ProtocolError

__all__ = ["MAX_DEPTH", "MAX_NAME", "MAX_PATTERN", "MAX_UNBOUNDED", "MAX_WAYS", "check_depth",
           "name_problem", "check_name", "compile_match"]

MAX_DEPTH = 32
MAX_NAME = 128
MAX_PATTERN = 256
MAX_UNBOUNDED = 2
#: a quantifier allowing more repetitions than this counts as unbounded
LONG_REPEAT = 16
#: most ways a pattern may have to match a name: the product of each quantifier's choices (a
#: quantifier repeats at most MAX_NAME times on a name), summed over alternatives; two unbounded
#: quantifiers and an optional part fit
MAX_WAYS = 2 * (MAX_NAME + 1) ** 2

_REPEATS = {sre_constants.MAX_REPEAT, sre_constants.MIN_REPEAT}
if hasattr(sre_constants, "POSSESSIVE_REPEAT"):
    _REPEATS.add(sre_constants.POSSESSIVE_REPEAT)


def check_depth(obj: Any, limit: int = MAX_DEPTH) -> bool:
    """Whether ``obj`` (decoded JSON) nests at most ``limit`` containers deep."""
    stack: list[tuple[Any, int]] = [(obj, 1)]
    while stack:
        value, depth = stack.pop()
        if isinstance(value, dict):
            children = value.values()
        elif isinstance(value, list):
            children = value
        else:
            continue
        if depth > limit:
            return False
        stack.extend((child, depth + 1) for child in children if isinstance(child, (dict, list)))
    return True


def name_problem(name: object, what: str = "name") -> str | None:
    """Why ``name`` cannot name a watcher (or ``None``)."""
    if not isinstance(name, str):
        return f"{what} must be a string"
    if not name or not name.strip():
        return f"{what} is empty"
    if len(name) > MAX_NAME:
        return f"{what} is longer than {MAX_NAME} characters"
    if any(ord(ch) < 32 or ord(ch) == 127 for ch in name):
        return f"{what} {name!r} contains a control character"
    if "/" in name or "\\" in name:
        return f"{what} {name!r} contains a path separator"
    if name in (".", ".."):
        return f"{what} cannot be {name!r}"
    return None


def check_name(name: object, what: str = "name") -> str:
    problem = name_problem(name, what)
    if problem:
        raise ProtocolError(ErrorCode.INVALID_PROPERTY, problem)
    assert isinstance(name, str)
    return name


def _walk(items: Any, under_repeat: bool, counts: list[int]) -> str | None:
    for op, av in items:
        if op in _REPEATS:
            low, high, sub = av
            if low > MAX_NAME:
                return f"a repetition of at least {low} (a name has at most {MAX_NAME} characters)"
            if high > 1:
                if under_repeat:
                    return "a quantifier inside a quantified group"
                if high > LONG_REPEAT:
                    counts[0] += 1
            problem = _walk(sub, under_repeat or high > 1, counts)
        elif op is sre_constants.BRANCH:
            if under_repeat:
                return "an alternation inside a quantified group"
            problem = next((p for p in (_walk(b, under_repeat, counts) for b in av[1]) if p), None)
        elif op is sre_constants.SUBPATTERN:
            problem = _walk(av[-1], under_repeat, counts)
        elif op in (sre_constants.ASSERT, sre_constants.ASSERT_NOT):
            problem = _walk(av[1], under_repeat, counts)
        elif op in (sre_constants.GROUPREF, sre_constants.GROUPREF_EXISTS):
            return "a back-reference"
        elif hasattr(sre_constants, "ATOMIC_GROUP") and op is sre_constants.ATOMIC_GROUP:
            problem = _walk(av, under_repeat, counts)
        else:
            problem = None
        if problem:
            return problem
    return None


def _ways(items: Any) -> int:
    """An upper bound of the ways ``items`` can match a name (capped just over MAX_WAYS)."""
    total = 1
    for op, av in items:
        if op in _REPEATS:
            low, high, sub = av
            inner, reps = _ways(sub), min(high, MAX_NAME)
            low = min(low, reps)
            if inner == 1:
                factor = max(reps - low + 1, 1)
            else:                               # every repetition chooses again
                factor, power = 0, inner ** min(low, 64)
                for _ in range(low, reps + 1):
                    factor += power
                    power *= inner
                    if factor > MAX_WAYS:
                        break
        elif op is sre_constants.BRANCH:
            factor = sum(_ways(branch) for branch in av[1])
        elif op is sre_constants.SUBPATTERN:
            factor = _ways(av[-1])
        elif op in (sre_constants.ASSERT, sre_constants.ASSERT_NOT):
            factor = _ways(av[1])
        elif hasattr(sre_constants, "ATOMIC_GROUP") and op is sre_constants.ATOMIC_GROUP:
            factor = _ways(av)
        else:
            factor = 1
        total = min(total * factor, MAX_WAYS + 1)
    return total


def compile_match(pattern: str) -> re.Pattern[str]:
    """``pattern`` compiled (case-insensitive) if its cost is bounded; else an error reply."""
    if len(pattern) > MAX_PATTERN:
        raise ProtocolError(ErrorCode.INVALID_PROPERTY, f"regex longer than {MAX_PATTERN} characters")
    try:
        with warnings.catch_warnings():     # re's FutureWarnings ("possible nested set") are
            warnings.simplefilter("ignore")  # about a client's text, not circusd's code
            parsed = sre_parse.parse(pattern, re.IGNORECASE)
            compiled = re.compile(pattern, re.IGNORECASE)
    except (re.error, RecursionError, OverflowError) as exc:
        raise ProtocolError(ErrorCode.INVALID_PROPERTY, f"invalid regex {pattern!r}: {exc}") from None
    counts = [0]
    problem = _walk(parsed, False, counts)
    if problem is None and counts[0] > MAX_UNBOUNDED:
        problem = f"more than {MAX_UNBOUNDED} unbounded quantifiers"
    if problem is None and _ways(parsed) > MAX_WAYS:
        problem = f"more than {MAX_WAYS} ways to match (too many optional or repeated parts)"
    if problem:
        raise ProtocolError(ErrorCode.INVALID_PROPERTY,
                            f"regex {pattern!r} refused: {problem} (its matching cost is unbounded; "
                            f"use a simpler pattern or match = glob)")
    return compiled
