"""Hypothesis strategies for tests/test_fuzz_control.py: requests of every control command.

A batch is a :class:`Head` (how many steps, how many requests for the client that never reads,
a frame over the size limit) and steps drawn one by one from the model of what runs, so that
valid counts stay small (at most :data:`~controlmodel.SANE` per watcher) while extreme ones
(10**30, 2**63, negative, floats, NaN) are sent too. A :class:`Step` is a *main* request whose
effect the model tracks (sent with ``waiting: true`` and answered before the next one), or a
*burst* of them sent back to back without waiting on one socket (their order is kept), plus
*side* requests on two other sockets, never waited for: read-only, harmless, built invalid, or
not requests at all.
"""
from __future__ import annotations

import json
from dataclasses import dataclass

from hypothesis import strategies as st

from circus.protocol import COMMANDS, MAX_FRAME
from circus.protocol.limits import MAX_DEPTH, MAX_NAME
from controlmodel import MAX_NUMPROCESSES, SANE, Model
from controlreq import Big, Req, Tok, short

# -- pools ---------------------------------------------------------------------------------------

NEW_NAMES = ("fz-a", "FZ-b", "fz.c", "ñandú", "名前", Big("x" * MAX_NAME), "w_1")
REFUSED_NAMES = ("a\u202eb", "\u200b", "x\x85y", "x\u2028y", "x\u2029y", " lead", "trail ", "\ufeffz",
                 "soft\u00adhyphen", "zw\u200dj", "\u061cx", "", " ", "a/b", "..", Big("x" * (MAX_NAME + 1)),
                 "tab\tx", "nul\x00x", "del\x7fx", Big("y" * 100_000), "lone\ud800")
UNDECIDED_NAMES = ("a b", "priv\ue000")
MISSING_NAMES = ("nope", "ghost", "zz-missing")
GLOBS = ("*", "fz-*", "FZ*", "?ne", "[ot]*", "*a*", "t?o", "nope*", Big("*" * 500 + "b"))
REGEXES = ("fz-.*", "^one$", "one|two", ".*", "[a-z]+", "x{128}", "n.pe")
CATASTROPHIC = ("(a+)+$", "(a|aa)+$", "(a*)*b", "(x+x+)+y", "((ab)*)*c", "(.*a){20}", "a{1000000}",
                "(?:a?){40}a{40}", r"(a)\1", "(", "[", "*", Big("a" * 10_000))
#: counts above the maximum. None just above it: a node without the limit would spend seconds
#: finding slots for 10,001 processes and then start them (10**5 or more it never gets through)
HUGE = (10 ** 30, 10 ** 100, 2 ** 63, 2 ** 64, 2 ** 31, 10 ** 6, 10 * MAX_NUMPROCESSES + 1)
NEGATIVE = (-1, -2 ** 63, -10 ** 30)
NOT_INT = (1.5, 2.0, "3", True, [], {}, "", Tok("1e999"), Tok("-1e999"))
NAN = (Tok("NaN"), Tok("Infinity"), Tok("-Infinity"))
HUGE_DIGITS = Tok("1" + "0" * 5000)
BOMB = Tok("[" * 100_000 + "]" * 100_000)
ODD_CHARS = "\u202e\u200b\x85\u2028\u2029\ufeff\u00ad\u200d\U0001f600\u0301\x00\x1b\x7f\ud800é名"
BATCHES = (None, 1, 2, "50%", "100%", 10 ** 30, 0, -1, "0%", "150%", "abc", "nan%", "1e999%")
HARMLESS_SIGNALS = ("CONT", "SIGCONT", 18, "winch", "URG", "chld")
BAD_SIGNALS = ("SIGFOO", 10 ** 30, -1, "", 0, 1.5)
TIMEOUTS = (None, None, None, 0, 5, -1, 10 ** 30, Tok("1e999"))
READONLY = tuple(sorted(name for name, c in COMMANDS.items() if c.readonly))


class _Many(list):
    """A long list that prints short."""

    def __repr__(self) -> str:
        return short(list(self))


def weighted(*pairs: tuple[int, st.SearchStrategy]) -> st.SearchStrategy:
    """``(weight, strategy)`` pairs; the first one is what examples shrink to. (``one_of`` would
    not do: it drops a strategy given twice, and flattens nested ``one_of`` into one level.)"""
    return st.sampled_from([s for n, s in pairs for _ in range(n)]).flatmap(lambda s: s)


texts = st.text(alphabet=st.characters(codec="utf-8") | st.sampled_from(ODD_CHARS), max_size=30)
scalars = (st.none() | st.booleans() | st.integers() | st.sampled_from(HUGE + NEGATIVE)
           | st.floats(allow_nan=False, allow_infinity=False) | texts)
json_values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=4)
                           | st.dictionaries(texts, inner, max_size=4), max_leaves=12)
odd_ids = st.sampled_from([10 ** 30, -1, 0, 1.5, 1e308, Big("i" * 10_000), "\u202e\u200b", [1, [2]],
                           {"a": None}, True, Tok("1e999")])
#: every property name of every command: junk properties must not be one of them
PROP_NAMES = frozenset(p.name for c in COMMANDS.values() for p in c.props)
junk_props = st.dictionaries((st.sampled_from(["extra", "x\u202e", "", "deep", "WAITING"]) | texts)
                             .filter(lambda k: k not in PROP_NAMES), json_values, max_size=3)


def nested(levels: int) -> object:
    value: object = "bottom"
    for i in range(levels):
        value = [value] if i % 2 else {"k": value}
    return value


def big_env(size: int) -> dict[str, str]:
    return {f"FZ_{i}": "v" * 100 for i in range(size)}


envs = st.builds(lambda k, extra: {**big_env(k), **extra}, st.sampled_from([0, 1, 50, 400]),
                 st.dictionaries(st.from_regex(r"[A-Z_][A-Z0-9_]{0,15}", fullmatch=True),
                                 st.text(alphabet=st.characters(codec="utf-8", exclude_characters="\x00"),
                                         max_size=40),
                                 max_size=4))


# -- main requests (their effect is modelled) -----------------------------------------------------


def names(model: Model, existing: int = 6, missing: bool = True) -> st.SearchStrategy[str]:
    """Names of watchers that exist (any case), may be added, must be refused, or never exist
    (``missing``: never given to ``add``)."""
    keys = sorted(model.watchers)
    pools: list[tuple[int, st.SearchStrategy]] = []
    if keys:                            # first: the examples hypothesis prints use these
        pools.append((existing, st.tuples(st.sampled_from(keys), st.booleans())
                      .map(lambda t: t[0].upper() if t[1] else t[0])))
    pools += [(2, st.sampled_from(NEW_NAMES)), (1, st.sampled_from(REFUSED_NAMES + UNDECIDED_NAMES))]
    if missing:
        pools.append((1, st.sampled_from(MISSING_NAMES)))
    return weighted(*pools)


def counts(low: int, high: int, bad: tuple = HUGE + NEGATIVE + NOT_INT + NAN) -> st.SearchStrategy:
    return weighted((4, st.integers(low, max(low, high))), (1, st.sampled_from(bad)))


def _add(model: Model, marker: str) -> st.SearchStrategy[Req]:
    args = st.one_of(st.just([marker]), st.integers(0, 2000).map(lambda k: [marker] + ["0"] * k),
                     st.just(f"{marker} 0 0"))
    good = st.fixed_dictionaries({}, optional={
        "numprocesses": st.integers(0, 3), "autostart": st.booleans(), "env": envs,
        "graceful_timeout": st.sampled_from([1, 2.5]), "priority": st.integers(-3, 3)})
    bad = st.builds(lambda o, k, v: {**{i: j for i, j in o.items() if i != "numprocesses"}, k: v}, good,
                    st.sampled_from(["numprocesses", "nope", "NumProcesses"]),
                    st.sampled_from(HUGE + NEGATIVE + NOT_INT))
    return st.builds(lambda name, a, o, s: Req("add", {"name": name, "cmd": "sleep", "args": a,
                                                       "options": o, "start": s, "waiting": True}),
                     names(model, existing=2, missing=False), args, weighted((3, good), (1, bad)),
                     st.booleans())


@st.composite
def _resize(draw, model: Model) -> Req:
    name = draw(names(model))
    n = model.watchers[name.lower()].n if name.lower() in model.watchers else 0
    command = draw(st.sampled_from(["incr", "decr"]))
    nb = draw(st.none() | (counts(0, SANE - n) if command == "incr" else counts(0, n + 1)))
    props = {"name": name, "waiting": True} | ({} if nb is None else {"nb": nb})
    return Req(command, props | _timeout(draw))


def _timeout(draw) -> dict:
    value = draw(st.sampled_from(TIMEOUTS))
    return {} if value is None else {"timeout": value}


@st.composite
def _lifecycle(draw, model: Model) -> Req:
    command = draw(st.sampled_from(["start", "stop", "restart", "reload"]))
    kind = draw(st.sampled_from(["exact", "exact", "exact", "glob", "regex", "bad_match"]
                                + (["all"] if command in ("start", "stop") else [])))
    props: dict = {"waiting": True}
    if kind == "exact":
        props |= {"name": draw(names(model))} | draw(st.sampled_from([{}, {"match": "glob"},
                                                                        {"match": "simple"}]))
    elif kind == "glob":
        props |= {"name": draw(st.sampled_from(GLOBS)), "match": "glob"}
    elif kind == "regex":
        props |= {"name": draw(st.sampled_from(REGEXES)), "match": "regex"}
    elif kind == "bad_match":
        props |= {"name": draw(names(model)), "match": draw(st.sampled_from(["fuzzy", "GLOB", 1]))}
    if command in ("restart", "reload"):
        props["graceful"] = draw(st.booleans())
        batch = draw(st.sampled_from(BATCHES))
        if batch is not None:
            props["batch"] = batch
    if command == "reload":
        props["sequential"] = draw(st.booleans())
    return Req(command, props | _timeout(draw))


def _set(model: Model) -> st.SearchStrategy[Req]:
    options = weighted(
        (2, st.builds(lambda n: {"numprocesses": n}, counts(0, SANE))),
        (2, st.builds(lambda n: {"NumProcesses": n}, st.integers(0, SANE))),   # option names ignore case
        (1, st.builds(lambda e: {"env": e}, envs)),
        (1, st.sampled_from([{"graceful_timeout": 3}, {"priority": 2}, {"nope": 1}, {}])))
    return st.builds(lambda name, o: Req("set", {"name": name, "options": o, "waiting": True}),
                     names(model), options)


def _kill(model: Model) -> st.SearchStrategy[Req]:
    return st.builds(
        lambda name, pid, sig, gt: Req("kill", {"name": name, "waiting": True, **pid, **sig, **gt}),
        names(model),
        st.sampled_from([{}, {}, {}, {"pid": 1}, {"pid": -1}, {"pid": 0}, {"pid": 10 ** 30},
                         {"pid": "abc"}, {"pid": "1"}]),
        st.sampled_from([{}, {}, {"signum": "TERM"}, {"signum": 15}, {"signum": "sigint"},
                         {"signum": "KILL"}, {"signum": "nope"}, {"signum": 10 ** 30}]),
        st.sampled_from([{}, {}, {"graceful_timeout": 1}, {"graceful_timeout": 0},
                         {"graceful_timeout": -1}, {"graceful_timeout": 10 ** 30},
                         {"graceful_timeout": Tok("1e999")}]))


def _rm(model: Model) -> st.SearchStrategy[Req]:
    return st.builds(lambda name, nostop: Req("rm", {"name": name, "waiting": True}
                                              | ({"nostop": True} if nostop else {})),
                     names(model, existing=8), st.sampled_from([False] * 5 + [True]))


def tracked(model: Model) -> st.SearchStrategy[Req]:
    marker = str(model.next_marker)
    return weighted((3, _resize(model)), (3, _lifecycle(model)), (2, _add(model, marker)),
                    (1, _rm(model)), (2, _set(model)), (1, _kill(model)))


@st.composite
def burst(draw, model: Model) -> tuple[Req, ...]:
    """2-6 requests without ``waiting`` on one socket. Exact names only, and nothing about a
    watcher after its ``rm`` (which takes effect a moment after its reply)."""
    keys = sorted(model.watchers) + ["fz-a", "fz-b", "ñandú"]
    out: list[Req] = []
    gone: set[str] = set()
    for i in range(draw(st.integers(2, 6))):
        name = draw(st.sampled_from(keys))
        kind = draw(st.sampled_from(["start", "stop", "restart", "reload", "incr", "decr", "add", "rm",
                                     "huge"]))
        if name.lower() in gone:
            continue
        if kind == "add":
            marker = str(model.next_marker + 1 + i)
            req = Req("add", {"name": name, "cmd": "sleep", "args": [marker],
                              "options": {"numprocesses": draw(st.integers(0, 2))}, "start": draw(st.booleans())})
        elif kind in ("incr", "decr"):
            req = Req(kind, {"name": name, "nb": draw(st.integers(0, 1 if kind == "incr" else 2))})
        elif kind == "huge":
            req = Req("incr", {"name": name, "nb": draw(st.sampled_from(HUGE))})
        else:
            req = Req(kind, {"name": name})
            if kind == "rm":
                gone.add(name.lower())
        out.append(req)
    if draw(st.booleans()) and out[-1].command != "rm":     # and now remove what was just changed
        out.append(Req("rm", {"name": out[-1].name}))
    return tuple(out)


# -- side requests (their effect is not modelled: read-only, harmless, or built invalid) -----------


def _readonly(model: Model) -> st.SearchStrategy[Req]:
    values = {
        "name": names(model) | st.sampled_from(GLOBS) | texts,
        "keys": st.lists(st.sampled_from(["numprocesses", "env", "cmd", "nope", 5, Big("x" * 10_000)]), max_size=4)
                | json_values,
        "option": st.sampled_from(["endpoint", "name", "nope", "\u202e"]) | json_values,
        "stream": st.sampled_from(["stdout", "stderr", "both", 1]),
        "lines": st.sampled_from([0, 10, 1000, 10 ** 30, -1, Tok("1e999"), 1.5]),
        "process": st.sampled_from([1, -1, 10 ** 30, "abc", "1"]),
        "extended": st.booleans() | json_values,
    }
    props = st.fixed_dictionaries({}, optional=values)
    return st.builds(lambda c, up, p: Req(c.upper() if up else c, p), st.sampled_from(READONLY),
                     st.sampled_from([False] * 4 + [True]), props)


def _harmless(model: Model) -> st.SearchStrategy[Req]:
    name = names(model)
    return st.one_of(
        st.builds(lambda n: Req("rename", {"name": n}), st.sampled_from(
            ["n1", "node.x", Big("a" * 64), Big("a" * 65), "bad name", "\u202e", "", "名前"])),
        st.just(Req("reopen")),
        st.just(Req("reloadconfig", {"dry_run": True})),
        st.builds(lambda n, s, p: Req("signal", {"name": n, "signum": s, **p}), name,
                  st.sampled_from(HARMLESS_SIGNALS + BAD_SIGNALS),
                  st.sampled_from([{}, {"pid": 1}, {"pid": -1}, {"pid": 10 ** 30}, {"pid": "x"},
                                   {"children": True}, {"recursive": True}, {"childpid": 1},
                                   {"pid": 1, "childpid": -1}])),
        st.builds(lambda n, a, r: Req("tool", {"name": n, "args": a, **r}),
                  st.sampled_from(["nope", "\u202e", Big("t" * 100_000)]),
                  st.sampled_from([[], _Many(["a"] * 5000), [1], "notalist"]),
                  st.sampled_from([{}, {"run_id": "ok_1"}, {"run_id": "bad id"}, {"run_id": Big("r" * 65)}])),
    )


def _invalid(model: Model) -> st.SearchStrategy[Req]:
    """Requests of every mutating command that must be refused, whatever the node's state."""
    anyname = names(model)
    missing = st.sampled_from(MISSING_NAMES + ("nope*",))
    return st.one_of(
        st.builds(lambda n: Req("add", {"name": n, "cmd": "sleep", "args": ["1"], "start": True}),
                  st.sampled_from(REFUSED_NAMES)),
        st.builds(lambda n, v: Req("add", {"name": n, "cmd": "sleep", "args": ["1"], "start": True,
                                           "options": {"numprocesses": v}}),
                  st.sampled_from(MISSING_NAMES), st.sampled_from(HUGE + NEGATIVE + NOT_INT)),
        st.just(Req("add", {"name": "nocmd"})),
        st.builds(lambda n: Req("rm", {"name": n}), missing | st.sampled_from(REFUSED_NAMES)),
        st.builds(lambda c, p: Req(c, {"name": p, "match": "regex"}),
                  st.sampled_from(["start", "stop", "restart", "reload"]), st.sampled_from(CATASTROPHIC)),
        st.builds(lambda c, n: Req(c, {"name": n, "match": "fuzzy"}),
                  st.sampled_from(["start", "stop", "restart", "reload"]), anyname),
        st.builds(lambda c, n, b: Req(c, {"name": n, "batch": b}),
                  st.sampled_from(["restart", "reload"]), missing, st.sampled_from(BATCHES)),
        st.builds(lambda c, n: Req(c, {"name": n}), st.sampled_from(["start", "stop"]), missing),
        st.builds(lambda n, v: Req("incr", {"name": n, "nb": v}), anyname,
                  st.sampled_from(HUGE + NEGATIVE + NOT_INT)),
        st.builds(lambda n, v: Req("decr", {"name": n, "nb": v}), anyname,
                  st.sampled_from(NEGATIVE + NOT_INT)),
        st.builds(lambda n, o: Req("set", {"name": n, "options": o}), anyname, st.sampled_from(
            [{}, {"numprocesses": 10 ** 30}, {"numprocesses": 10 * MAX_NUMPROCESSES + 1}, {"numprocesses": -1},
             {"numprocesses": 1.5}, {"nope": 1}, [], "numprocesses=3"])),
        st.sampled_from([Req("quit", {"keep": True}), Req("quit", {"keep": "x"}),
                         Req("quit", {"waiting": "x"})]),
        st.just(Req("ipython")),
        st.builds(lambda n: Req("kill", {"name": n, "pid": 10 ** 30}), anyname),
    )


def _garbage() -> st.SearchStrategy[Req]:
    def not_a_command(value: object) -> bool:
        return not (isinstance(value, dict) and isinstance(value.get("command"), str))
    return st.one_of(
        st.binary(max_size=64).filter(lambda b: not b.strip().startswith(b"{")).map(lambda b: Req(None, raw=b)),
        json_values.filter(not_a_command).map(lambda v: Req(None, raw=json.dumps(v).encode())),
        st.sampled_from([b"", b"{", b"[]", b"null", b'{"command": 1}', b'{"command": ""}', b"\xff\xfe{}",
                         b"\xef\xbb\xbf{}", b'{"command": "list", "properties": []}',
                         b'{"command": "list", "properties": "x"}', b"\xc3\x28"]).map(lambda b: Req(None, raw=b)),
        st.builds(lambda c: Req(c), st.sampled_from(["list\u200b", "\u202elist", "nope", "listen", "",
                                                     Big("q" * 100_000), 5, None, ["list"]])),
        st.builds(lambda f, r: Req(r.command, r.props, frames=f), st.sampled_from([(b"",), (b"x", b"")]),
                  st.just(Req("numwatchers"))),
    )


def _tokens(model: Model) -> st.SearchStrategy[Req]:
    """NaN/Infinity (not JSON), 1e999 (a float overflow), a 5,000-digit integer, a nesting bomb,
    and nesting around MAX_DEPTH, in every place a value goes."""
    tok = st.sampled_from(NAN + (HUGE_DIGITS, BOMB, Tok("1e999")))
    return st.one_of(
        st.builds(lambda c, t: Req(c, {"name": t}), st.sampled_from(READONLY), tok),
        st.builds(lambda t: Req("incr", {"name": "one", "nb": t, "waiting": True}), tok),
        st.builds(lambda t: Req("numwatchers", odd_id=t), tok),
        st.builds(lambda t: Req("list", {"extra": [t]}), tok),
        st.builds(lambda k: Req("numwatchers", {"deep": nested(k)}),
                  st.integers(MAX_DEPTH - 4, MAX_DEPTH + 2)),
    )


def side_request(model: Model) -> st.SearchStrategy[Req]:
    plain = weighted((3, _readonly(model)), (3, _harmless(model)), (3, _invalid(model)),
                     (2, _garbage()), (2, _tokens(model)))
    dressed = st.builds(lambda r, extra, oid: Req(r.command, {**extra, **r.props}, odd_id=oid)
                        if r.raw is None and not r.frames and r.odd_id is None else r,
                        plain, junk_props, st.none() | st.none() | odd_ids)
    cast = st.builds(lambda r: Req(r.command, {}, cast=True), _readonly(model))
    return weighted((6, dressed), (1, cast))


# -- batches -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Head:
    steps: int
    stuck: int                  # requests for the client that never reads its replies
    big: tuple[str, int] | None  # ("oversize", size) is answered; ("cut", size) is dropped by libzmq
    big_at: int

    def _repr_pretty_(self, printer, cycle) -> None:
        printer.text(repr(self))

    def __repr__(self) -> str:
        big = f", {self.big[0]} frame of {self.big[1]} bytes before step {self.big_at}" if self.big else ""
        return f"Head({self.steps} steps, {self.stuck} unread requests{big})"


@dataclass(frozen=True)
class Step:
    main: tuple[Req, ...]
    burst: bool
    sock: int
    side: tuple[tuple[int, Req], ...]

    def _repr_pretty_(self, printer, cycle) -> None:
        printer.text(repr(self))

    def __repr__(self) -> str:
        if self.burst:
            main = f"burst@main{self.sock}[{', '.join(map(repr, self.main))}]"
        else:
            main = f"main{self.sock}: {self.main[0]!r}" if self.main else "no main request"
        side = "".join(f"; side{c}: {r!r}" for c, r in self.side)
        return f"<{main}{side}>"


@st.composite
def heads(draw) -> Head:
    big = draw(weighted(
        (4, st.none()),
        (1, st.tuples(st.just("oversize"), st.sampled_from([MAX_FRAME + 1, 2 * MAX_FRAME, 4 * MAX_FRAME - 4096]))),
        (1, st.tuples(st.just("cut"), st.sampled_from([4 * MAX_FRAME + 4096, 8 * MAX_FRAME])))))
    return Head(draw(st.integers(0, 6)), draw(st.sampled_from([0, 0, 50, 400])), big, draw(st.integers(0, 6)))


@st.composite
def steps(draw, model: Model) -> Step:
    main = draw(weighted((4, tracked(model).map(lambda r: (r,))), (1, burst(model)), (1, st.just(()))))
    burst_ = len(main) > 1 or (bool(main) and "waiting" not in main[0].props)
    side = draw(st.lists(st.tuples(st.integers(0, 1), side_request(model)), max_size=4))
    return Step(main, burst_, draw(st.integers(0, 1)), tuple(side))


#: every command some generator sends (the test checks that this is all of COMMANDS)
GENERATED = frozenset({"add", "rm", "start", "stop", "restart", "reload", "incr", "decr", "set", "kill",
                       "rename", "reopen", "reloadconfig", "signal", "tool", "quit", "ipython", *READONLY})

__all__ = ["Head", "Step", "heads", "steps", "GENERATED", "short"]
