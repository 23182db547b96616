"""Bounds on everything a client, a configuration file or a web form may make circusd do.

Pure; the one home of these limits (docs/security.rst tabulates them). Each one exists because
some work or memory is proportional to it and would otherwise be the client's to choose:

* **frame**: :data:`MAX_FRAME` bytes per request (larger: ``oversize``; over
  :data:`MAX_FRAME` x :data:`MAXMSG_FACTOR` libzmq cuts the connection before reading it);
  the controller reads at most :data:`READ_BATCH` requests or :data:`READ_BYTES` bytes per
  wake-up before it lets the rest of the loop run.
* **shape**: a request nested deeper than :data:`MAX_DEPTH`, or with more than
  :data:`MAX_CONTAINERS` JSON objects and arrays, is refused before any handler sees it.
* **numprocesses**: at most ``[circus] max_numprocesses`` per watcher (default
  :data:`MAX_NUMPROCESSES`), checked wherever it is set (file, ``add``, ``set``, ``incr``);
  at most :data:`MAX_WATCHERS` watchers on a node.
* **options**: ``add``/``set`` take at most :data:`MAX_OPTIONS` keys (and ``get`` as many
  ``keys``); an argument list has at most :data:`MAX_ARGS` items, an environment
  :data:`MAX_ENV` variables, one value :data:`MAX_VALUE` characters, and a process's
  arguments and environment together :data:`MAX_EXEC_BYTES` bytes (Linux refuses more at exec).
* **errors**: a reply lists at most :data:`MAX_ISSUES` problems (then how many more).
* **names**: a new watcher's name is 1 to :data:`MAX_NAME` characters with no control,
  format (bidi, zero-width), line or paragraph separator, private-use or unassigned character,
  no whitespace but plain spaces inside, no ``/`` or ``\\``, and not ``.`` or ``..`` (names
  end up in paths, topics, logs, terminals and pages).
* **glob**: a ``match = glob`` pattern has at most :data:`MAX_PATTERN` characters.
* **line patterns** (``ready``/``health = log:REGEX``, ``[notify:NAME] match``) are searched in
  every output line on the event loop: they are compiled by RE2, whose matching time is linear
  in the line's length whatever the pattern (Python's ``re`` took 1.2 s for ``.*a.*b`` on one
  line of 1,024 ``a``), and have at most :data:`MAX_LINE_PATTERN` characters.
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

__all__ = ["MAX_FRAME", "MAXMSG_FACTOR", "READ_BATCH", "READ_BYTES", "MAX_DEPTH",
           "MAX_CONTAINERS", "MAX_NUMPROCESSES", "MAX_NUMPROCESSES_CEILING", "MAX_OPTIONS",
           "MAX_ARGS", "MAX_ENV", "MAX_VALUE", "MAX_EXEC_BYTES", "MAX_ISSUES", "MAX_TAIL",
           "MAX_RECENT_LINES", "MAX_RECENT_BYTES",
           "MAX_SUBSCRIPTIONS", "MAX_WATCHERS", "MAX_NAME", "MAX_PATTERN", "MAX_UNBOUNDED", "MAX_WAYS",
           "MAX_LINE_PATTERN", "compile_line_pattern", "check_depth", "shape_problem", "numprocesses_problem", "check_numprocesses",
           "name_problem", "check_name", "check_glob", "compile_match"]

#: largest control frame answered, in bytes (larger: an ``oversize`` error reply)
MAX_FRAME = 1 << 20
#: a message this many times over MAX_FRAME is cut by libzmq (the peer is disconnected)
#: instead of being read into memory to be answered with ``oversize``
MAXMSG_FACTOR = 4
#: requests read per wake-up of the control socket before the rest of the loop runs
READ_BATCH = 200
#: bytes of requests read per wake-up before the rest of the loop runs (each MiB of JSON costs
#: ~25 ms to decode)
READ_BYTES = 4 << 20
MAX_DEPTH = 32
#: JSON objects and arrays in one request (a real request has a few dozen)
MAX_CONTAINERS = 10_000
#: default of ``[circus] max_numprocesses``: processes of one watcher (a real node never needs
#: more; each one is a fork, two pipes and a slot in every reconcile pass)
MAX_NUMPROCESSES = 10_000
#: the largest ``[circus] max_numprocesses`` accepted
MAX_NUMPROCESSES_CEILING = 1_000_000
#: watchers of one node (file and ``add``; every status reply and reconcile walks them)
MAX_WATCHERS = 10_000
#: keys of ``add``/``set`` options, and ``get`` keys, in one request (a watcher has ~90 options)
MAX_OPTIONS = 256
#: items of a watcher's argument list (``cmd`` and ``args`` split)
MAX_ARGS = 4096
#: variables of a watcher's environment (``env``, besides what copy_env copies)
MAX_ENV = 4096
#: characters of one option value, argument or environment value (Linux's MAX_ARG_STRLEN)
MAX_VALUE = 128 * 1024
#: bytes of one process's arguments and configured environment together
MAX_EXEC_BYTES = 1 << 20
#: problems listed in one error reply or configuration error (then "and N more")
MAX_ISSUES = 20
#: lines one ``tail`` returns
MAX_TAIL = 1000
#: the largest ``recent_lines`` of a watcher (output lines kept in memory), and their bytes
MAX_RECENT_LINES = 10_000
MAX_RECENT_BYTES = 1 << 20
#: distinct ``output.`` topics circusd tracks subscriptions for (more are not followed)
MAX_SUBSCRIPTIONS = 1024
MAX_NAME = 128
MAX_PATTERN = 256
#: characters of a pattern searched in output lines
MAX_LINE_PATTERN = 500
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


def shape_problem(obj: Any, depth_limit: int = MAX_DEPTH,
                  container_limit: int = MAX_CONTAINERS) -> str | None:
    """Why ``obj`` (decoded JSON) is too deep or has too many containers, or ``None``. The walk
    stops at the first container over either limit: its cost is bounded, whatever ``obj`` is."""
    stack: list[tuple[Any, int]] = [(obj, 1)]
    seen = 0
    while stack:
        value, depth = stack.pop()
        if isinstance(value, dict):
            children = value.values()
        elif isinstance(value, list):
            children = value
        else:
            continue
        if depth > depth_limit:
            return f"nested deeper than {depth_limit}"
        seen += 1
        if seen > container_limit:
            return f"more than {container_limit} JSON objects and arrays"
        for child in children:
            if isinstance(child, (dict, list)):
                stack.append((child, depth + 1))
                if len(stack) > container_limit:
                    return f"more than {container_limit} JSON objects and arrays"
    return None


def check_depth(obj: Any, limit: int = MAX_DEPTH) -> bool:
    """Whether ``obj`` (decoded JSON) nests at most ``limit`` containers deep."""
    problem = shape_problem(obj, limit, container_limit=1 << 62)
    return problem is None


def numprocesses_problem(n: object, limit: int, what: str = "numprocesses") -> str | None:
    """Why ``n`` cannot be a watcher's number of processes under ``limit``, or ``None``."""
    if isinstance(n, bool) or not isinstance(n, int):
        return f"{what} must be an integer"
    if n < 0:
        return f"{what} would be {n}: it cannot be negative"
    if n > limit:
        shown = f"{n}" if n < 10 ** 12 else f"{n:.3e}"
        return (f"{what} would be {shown}, above the limit of {limit} processes per watcher "
                "([circus] max_numprocesses)")
    return None


def check_numprocesses(n: object, limit: int, what: str = "numprocesses") -> int:
    problem = numprocesses_problem(n, limit, what)
    if problem:
        raise ProtocolError(ErrorCode.INVALID_PROPERTY, problem)
    assert isinstance(n, int)
    return n


#: Unicode categories a name may not contain: control, format (bidi overrides, zero-width),
#: line and paragraph separators, surrogates, private use, unassigned
_BAD_CATEGORIES = {"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"}


def name_problem(name: object, what: str = "name") -> str | None:
    """Why ``name`` cannot name a watcher (or ``None``)."""
    if not isinstance(name, str):
        return f"{what} must be a string"
    if not name or not name.strip():
        return f"{what} is empty"
    if len(name) > MAX_NAME:
        return f"{what} is longer than {MAX_NAME} characters"
    if name.isascii():          # the only bad ASCII characters are the controls (Cc)
        bad = next((ch for ch in name if ch < " " or ch == "\x7f"), None)
        if bad is not None:
            return f"{what} {name!r} contains a control character (U+{ord(bad):04X})"
    else:
        problem = _unicode_problem(name, what)
        if problem:
            return problem
    if name != name.strip(" "):
        return f"{what} {name!r} begins or ends with a space"
    if "/" in name or "\\" in name:
        return f"{what} {name!r} contains a path separator"
    if name in (".", ".."):
        return f"{what} cannot be {name!r}"
    return None


def _unicode_problem(name: str, what: str) -> str | None:
    import unicodedata          # names are ASCII nearly always: loaded for the others only

    for ch in name:
        category = unicodedata.category(ch)
        if category in _BAD_CATEGORIES:
            kind = {"Cc": "a control character", "Cf": "an invisible formatting character",
                    "Zl": "a line separator", "Zp": "a paragraph separator"}.get(
                        category, "a private-use, unassigned or surrogate character")
            return f"{what} {name!r} contains {kind} (U+{ord(ch):04X})"
        if category == "Zs" and ch != " ":
            return f"{what} {name!r} contains a space other than U+0020 (U+{ord(ch):04X})"
    return None


def check_name(name: object, what: str = "name") -> str:
    problem = name_problem(name, what)
    if problem:
        raise ProtocolError(ErrorCode.INVALID_PROPERTY, problem)
    assert isinstance(name, str)
    return name


def check_glob(pattern: str) -> str:
    """A ``match = glob`` pattern of bounded length (fnmatch compiles it to a regex)."""
    if len(pattern) > MAX_PATTERN:
        raise ProtocolError(ErrorCode.INVALID_PROPERTY, f"pattern longer than {MAX_PATTERN} characters")
    return pattern


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


def compile_line_pattern(pattern: str) -> Any:
    """``pattern`` compiled to be searched in output lines (``.search(line)``), by RE2: linear
    time, no backtracking. RE2's syntax is Python's without back-references and look-around.
    ValueError with the reason if it cannot be used."""
    if not isinstance(pattern, str):
        raise ValueError(f"expected a regular expression, got {type(pattern).__name__}")
    if len(pattern) > MAX_LINE_PATTERN:
        raise ValueError(f"pattern too long: {len(pattern)} characters, at most {MAX_LINE_PATTERN}")
    import re2                          # only circusd, and only with such patterns, loads it
    options = re2.Options()
    options.log_errors = False          # the reason goes into the ValueError, not to stderr
    try:
        return re2.compile(pattern, options=options)
    except re2.error as exc:
        reason = exc.args[0].decode(errors="replace") if exc.args and \
            isinstance(exc.args[0], bytes) else str(exc)
        raise ValueError(f"invalid regular expression {pattern!r}: {reason} (RE2 syntax: "
                         "Python's without back-references or look-around)") from None


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
