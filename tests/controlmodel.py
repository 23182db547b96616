"""What circusd's control socket must do with a request, for tests/test_fuzz_control.py.

Pure (no sockets): a model of the watchers (name, numprocesses, started or not, the marker
argument their processes carry), and for each request (tests/controlreq.py) the outcomes
allowed: an error code that changes nothing, or ``ok`` with its effect on the model. Where the documented behaviour leaves a choice (``decr`` below zero: clamped or
refused), every choice is allowed and the reply tells which one happened.

The expectations are those of the documentation, not of the code: a resulting numprocesses
above :data:`MAX_NUMPROCESSES` is refused, NaN/Infinity are not JSON, a watcher name with a
control, format, line/paragraph separator or lone surrogate character, or with spaces around
it, is refused.
"""
from __future__ import annotations

import fnmatch
import re
import unicodedata
from collections import Counter
from dataclasses import dataclass, field, replace
from typing import Any, Callable, Mapping

from circus.protocol import COMMANDS, ErrorCode
from circus.protocol.limits import MAX_PATTERN, MAX_NAME
from controlreq import Req, frame_problem, json_doubt, prop_problems, short

#: the documented maximum of a watcher's numprocesses (``[circus] max_numprocesses``)
MAX_NUMPROCESSES = 10_000
#: what the generators ask for at most when they mean a valid count (keeps the node small)
SANE = 5
KNOWN_ERRORS = frozenset(code.text for code in ErrorCode) - {ErrorCode.INTERNAL.text}
OPTION_ERRORS = frozenset({"invalid_option", "invalid_property", "unknown_option"})
#: name -> (numprocesses, marker) of the watchers of the configuration file
CONFIG_WATCHERS = {"one": (2, "100001"), "two": (1, "100002")}


# -- names ---------------------------------------------------------------------------------------


def name_refused(name: str) -> bool:
    """A name ``add`` must refuse: empty, too long, spaces around it, a path separator, ``.`` or
    ``..``, or a control (Cc), format (Cf: bidi, zero-width), line or paragraph separator (Zl, Zp)
    or lone surrogate (Cs: not UTF-8, so no event or log line could carry the name)."""
    return (not name.strip() or len(name) > MAX_NAME or name != name.strip() or "/" in name
            or "\\" in name or name in (".", "..")
            or any(unicodedata.category(c) in ("Cc", "Cf", "Zl", "Zp", "Cs") for c in name))


def name_undecided(name: str) -> bool:
    """A name the documentation neither allows nor refuses: inner spaces, private use and
    unassigned code points."""
    return any(unicodedata.category(c) in ("Zs", "Co", "Cn") for c in name)


# -- the model -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class W:
    name: str
    n: int
    active: bool
    marker: str
    autostart: bool = True


@dataclass
class Model:
    watchers: dict[str, W] = field(default_factory=dict)
    kept: Counter = field(default_factory=Counter)       # marker -> processes left by rm nostop
    next_marker: int = 200_001

    @classmethod
    def initial(cls) -> "Model":
        return cls({k: W(k, n, True, m) for k, (n, m) in CONFIG_WATCHERS.items()})

    def running(self) -> dict[str, int]:
        return {k: (w.n if w.active else 0) for k, w in self.watchers.items()}

    def describe(self) -> str:
        ws = ", ".join(f"{short(w.name)}={w.n}{'' if w.active else ' stopped'}" for w in self.watchers.values())
        kept = f"; left running by rm nostop: {dict(self.kept)}" if self.kept else ""
        return f"[{ws}]{kept}"

    def set(self, key: str, **changes: Any) -> None:
        self.watchers[key] = replace(self.watchers[key], **changes)


Effect = Callable[[Model, dict], None]


@dataclass
class Outcome:
    """The allowed outcomes of one request: code ("ok" or an error code) -> effect on the model."""

    allowed: dict[str, Effect | None]

    @classmethod
    def refused(cls, codes: set[str] | frozenset[str], check: Effect | None = None) -> "Outcome":
        return cls({c: check for c in codes})


LIMIT_TEXT = re.compile(r"\b10[,_ ]?000\b")


def names_the_limit(model: Model, reply: dict) -> None:
    """A refusal of a count above the maximum says what the maximum is."""
    assert LIMIT_TEXT.search(str(reply.get("reason", ""))), \
        f"the reason does not name the limit of {MAX_NUMPROCESSES}: {reply.get('reason')!r}"


def _over(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > MAX_NUMPROCESSES


def _select(model: Model, name: str, match: str) -> list[str] | None:
    """Keys of the watchers ``name`` designates (None: an invalid pattern)."""
    keys, key = list(model.watchers), name.lower()
    if match == "simple" or (match == "glob" and not any(c in name for c in "*?[")):
        return [key] if key in model.watchers else []
    if match == "glob":
        if len(name) > MAX_PATTERN:
            return None                            # refused: a glob has at most 256 characters
        return [k for k in keys if fnmatch.fnmatchcase(k, key)]
    return [k for k in keys if re.compile(name, re.IGNORECASE).match(k)]


def _add(model: Model, p: Mapping[str, Any]) -> Outcome:
    name, options = p["name"], p.get("options") or {}
    if name_refused(name):
        return Outcome.refused({"invalid_property"})
    errors: set[str] = set()
    n = options.get("numprocesses", 1)
    if not isinstance(n, int) or isinstance(n, bool) or not 0 <= n <= MAX_NUMPROCESSES:
        errors |= {"invalid_option", "invalid_property"}
    if set(options) - {"numprocesses", "autostart", "env", "graceful_timeout", "priority"}:
        errors |= OPTION_ERRORS
    if errors:
        only_over = _over(n) and set(options) <= {"numprocesses", "autostart", "env", "graceful_timeout", "priority"}
        return Outcome.refused(errors, names_the_limit if only_over else None)
    if name.lower() in model.watchers:
        return Outcome.refused({"already_exists"})
    args = p["args"]
    marker = (args.split() if isinstance(args, str) else args)[0]

    def effect(m: Model, reply: dict) -> None:
        m.watchers[name.lower()] = W(name, n, bool(p.get("start")), marker, options.get("autostart", True))
    allowed: dict[str, Effect | None] = {"ok": effect}
    if name_undecided(name):
        allowed["invalid_property"] = None
    return Outcome(allowed)


def _rm(model: Model, p: Mapping[str, Any]) -> Outcome:
    key = p["name"].lower()
    if key not in model.watchers:
        return Outcome.refused({"unknown_watcher"})

    def effect(m: Model, reply: dict) -> None:
        w = m.watchers.pop(key)
        if p.get("nostop") and w.active and w.n:
            m.kept[w.marker] += w.n
    return Outcome({"ok": effect})


def _lifecycle(model: Model, command: str, p: Mapping[str, Any]) -> Outcome:
    name, match = p.get("name"), p.get("match") or "glob"
    errors: set[str] = set()
    if command in ("restart", "reload") and not batch_valid(p.get("batch")):
        errors.add("invalid_property")
    if name is None:
        keys = [k for k, w in model.watchers.items() if command == "stop" or w.autostart]
    else:
        keys = _select(model, name, match)
        if keys is None:
            errors.add("invalid_property")
        elif not keys:
            errors.add("unknown_watcher")
    if errors:
        return Outcome.refused(errors)

    def effect(m: Model, reply: dict) -> None:
        for k in keys:
            m.set(k, active=command != "stop")
    return Outcome({"ok": effect})


def batch_valid(batch: Any) -> bool:
    """The documented forms of ``batch``: N >= 1, or "N%" with 0 < N <= 100."""
    if batch is None:
        return True
    if isinstance(batch, int) and not isinstance(batch, bool):
        return batch >= 1
    if not isinstance(batch, str):
        return False
    text = batch.strip()
    try:
        if text.endswith("%"):
            return 0 < float(text[:-1]) <= 100
        return int(text) >= 1
    except ValueError:
        return False


def _resize(model: Model, command: str, p: Mapping[str, Any]) -> Outcome:
    key, nb = p["name"].lower(), p.get("nb")
    nb = 1 if nb is None else nb
    errors: set[str] = set()
    if key not in model.watchers:
        errors.add("unknown_watcher")
    if nb < 0:
        errors.add("invalid_property")
    if errors:
        return Outcome.refused(errors)
    n = model.watchers[key].n
    if command == "incr" and n + nb > MAX_NUMPROCESSES:        # above the documented maximum
        return Outcome.refused({"invalid_property"}, names_the_limit)
    target = max(0, n + nb if command == "incr" else n - nb)

    def effect(m: Model, reply: dict) -> None:
        if "numprocesses" in reply:                       # waiting: the new target
            assert reply["numprocesses"] == target, f"reply says {reply['numprocesses']}, expected {target}"
        m.set(key, n=target)
    allowed: dict[str, Effect | None] = {"ok": effect}
    if command == "decr" and (n - nb < 0 or nb > MAX_NUMPROCESSES):   # clamped to 0 (0.19) or refused
        allowed["invalid_property"] = names_the_limit if nb > MAX_NUMPROCESSES else None
    return Outcome(allowed)


def _set(model: Model, p: Mapping[str, Any]) -> Outcome:
    key, options = p["name"].lower(), p["options"]
    if key not in model.watchers:
        return Outcome.refused({"unknown_watcher"} | ({"invalid_property"} if not options else set()))
    if not options:
        return Outcome.refused({"invalid_property"})
    errors: set[str] = set()
    for k, v in options.items():
        if k.lower() == "numprocesses" and (not isinstance(v, int) or isinstance(v, bool)
                                            or not 0 <= v <= MAX_NUMPROCESSES):
            errors |= OPTION_ERRORS
        elif k.lower() not in ("numprocesses", "env", "graceful_timeout", "priority"):
            errors |= OPTION_ERRORS
    if errors:
        only_over = len(options) == 1 and _over(next(iter(options.values())))
        return Outcome.refused(errors, names_the_limit if only_over else None)
    n = next((v for k, v in options.items() if k.lower() == "numprocesses"), None)

    def effect(m: Model, reply: dict) -> None:
        if n is not None:
            m.set(key, n=n)
    allowed: dict[str, Effect | None] = {"ok": effect}
    if any(k != k.lower() for k in options):
        allowed.update(dict.fromkeys(OPTION_ERRORS))      # option names in another case
    return Outcome(allowed)


def _kill(model: Model, p: Mapping[str, Any]) -> Outcome:
    errors: set[str] = set()
    if p["name"].lower() not in model.watchers:
        errors.add("unknown_watcher")
    pid = p.get("pid")
    if pid is not None:
        errors.add("invalid_property" if isinstance(pid, str) and not pid.strip().lstrip("-").isdigit()
                   else "unknown_process")                # the generators never know a real pid
    if p.get("signum") is not None and not signal_valid(p["signum"]):
        errors.add("invalid_property")
    if errors:
        return Outcome.refused(errors)
    return Outcome({"ok": lambda m, reply: None})         # same count, new pids


def signal_valid(signum: Any) -> bool:
    import signal
    if isinstance(signum, bool):
        return False
    if isinstance(signum, int):
        return signum in signal.valid_signals()
    if not isinstance(signum, str):
        return False
    word = signum.strip().upper()
    if word.lstrip("-").isdigit():
        return int(word) in signal.valid_signals()
    return (word if word.startswith("SIG") else "SIG" + word) in signal.Signals.__members__


def predict(model: Model, req: Req) -> Outcome:
    """What a request whose effect the model tracks may get, and what ``ok`` changes."""
    out = _predict(model, req)
    for code in json_doubt(req):
        out.allowed.setdefault(code, None)
    return out


def _predict(model: Model, req: Req) -> Outcome:
    problem = frame_problem(req)
    if problem is not None:
        return Outcome.refused(problem)
    command = req.command.lower()
    errors = prop_problems(command, req.props)
    if errors:
        return Outcome.refused(errors)
    p = req.props
    if command == "add":
        out = _add(model, p)
    elif command == "rm":
        out = _rm(model, p)
    elif command in ("start", "stop", "restart", "reload"):
        out = _lifecycle(model, command, p)
    elif command in ("incr", "decr"):
        out = _resize(model, command, p)
    elif command == "set":
        out = _set(model, p)
    elif command == "kill":
        out = _kill(model, p)
    else:
        raise AssertionError(f"{command} is not a tracked command")
    if p.get("timeout") is not None and "ok" in out.allowed:
        out.allowed.setdefault("timeout", None)           # could not start in time: did nothing
    return out


# -- requests whose effect is not tracked ---------------------------------------------------------

#: commands a side request may send valid: read-only, or changing nothing the model tracks
HARMLESS = frozenset(name for name, c in COMMANDS.items() if c.readonly) | {
    "rename", "reopen", "reloadconfig", "signal", "tool"}


def side_allowed(req: Req) -> frozenset[str] | None:
    """Codes a side request may get ("ok" included when it may succeed); None: no reply (cast)."""
    if req.raw is not None:
        return KNOWN_ERRORS
    if req.cast:                                          # the generators cast valid requests only
        return None
    problem = frame_problem(req)
    if problem is not None:
        return problem | json_doubt(req)
    return _side(req, req.command.lower()) | json_doubt(req)


def _side(req: Req, command: str) -> frozenset[str]:
    if command in HARMLESS and not (command == "reloadconfig" and req.props.get("dry_run") is not True):
        return KNOWN_ERRORS | {"ok"}
    nb = req.props.get("nb")
    if command == "incr" and isinstance(nb, int) and not isinstance(nb, bool) and nb > MAX_NUMPROCESSES:
        return frozenset({"invalid_property", "unknown_watcher"})
    return KNOWN_ERRORS                                   # built invalid: refused, whatever the reason
