"""Property-based fuzzing of a real circusd's control socket, with a model of what must run.

Each example starts a fresh circusd (two watchers from its file) and sends batches of requests
drawn by tests/controlgen.py from several DEALER sockets: requests of every command in
``circus.protocol.COMMANDS`` with valid and extreme values (10**30, negative, floats, NaN and
Infinity spelled in the JSON, 100,000-character strings, nesting around the depth limit,
bidi/zero-width/NEL/line-separator characters in names, catastrophic ``match = regex``
patterns, 2,000 arguments, 400-variable environments) and frames that are not requests. Two
main sockets send requests whose effect tests/controlmodel.py tracks (add, rm, start, stop,
restart, reload, incr, decr, set, kill): one at a time with ``waiting: true``, or in bursts
without waiting on one socket; two side sockets send read-only, harmless or invalid requests in
between without waiting; one client sends hundreds of requests per batch and never reads a
reply; some batches carry a frame of 1-4 MiB (answered ``oversize``) or over 4 MiB (cut by
libzmq).

Every reply must be standard JSON with an allowed outcome (a count above the maximum is
refused naming the limit; NaN/Infinity are ``invalid_json``; a name with a control, format,
separator or surrogate character or with spaces around it is refused). After each batch: a
``list`` on a new, connected socket is answered within 100 ms (the best of 3 tries: a loaded CI
machine has hiccups, a frozen node fails all three), circusd is alive, nothing it wrote to its
log or stderr is a traceback, and within a deadline ``list``, ``status``, ``numprocesses``,
``get numprocesses`` and circusd's real children (/proc, by the marker argument of each watcher)
show exactly the model's watchers and processes: an ``ok`` is true, a refusal changed nothing,
nothing runs that no watcher lists.

Every receive has a deadline; a node that stops answering fails the example at once
(``Frozen``), and a wrong reply that came before the freeze is reported instead (it is the
cause). circusd and its children are killed by pid after each example (and by the kernel if
this process dies). Each kind of failure is its own exception class, so that hypothesis reports
and shrinks each one separately.

CI runs a fixed sequence (``derandomize``, 60 examples, about 35 s). A longer randomized
campaign: ``CIRCUS_FUZZ_EXAMPLES=500 pytest -m fuzz tests/test_fuzz_control.py`` (a failure
prints its minimal example and the ``@reproduce_failure`` blob that replays it).
"""
from __future__ import annotations

import itertools
import json
import os
import shutil
import subprocess
import time
from collections import Counter

import pytest
import zmq
from hypothesis import HealthCheck, given, settings
from hypothesis import event as _hypothesis_event
from hypothesis.control import currently_in_test_context
from hypothesis import strategies as st

from circus.protocol import COMMANDS
from conftest import IPC_HEAD, Circusd, proc_cmdline
from controlgen import GENERATED, Head, Step, heads, steps
from controlmodel import CONFIG_WATCHERS, Model, predict, side_allowed
from controlreq import Req, frame_problem, short

pytestmark = [pytest.mark.real, pytest.mark.fuzz]

EXAMPLES = int(os.environ.get("CIRCUS_FUZZ_EXAMPLES", "0"))
FUZZ = settings(deadline=None, database=None, print_blob=True, derandomize=not EXAMPLES,
                max_examples=EXAMPLES or 60, suppress_health_check=list(HealthCheck))
MAX_BATCHES = 4


def event(value: str) -> None:
    """Hypothesis's statistics, inside an example (the final sweep runs outside of one)."""
    if currently_in_test_context():
        _hypothesis_event(value)


LIST_DEADLINE = 0.1         # a list after a batch...
LIST_TRIES = 3              # ...on one of this many new sockets (a loaded CI machine has hiccups)
REPLY_DEADLINE = 10.0       # a waiting request (a few sleeps to start or stop)
SIDE_DEADLINE = 5.0         # the replies to a batch's side requests
CONVERGE = 5.0              # the node shows what the model says
CALL_DEADLINE = 2.0         # one observation request
STUCK = (Req("list"), Req("status"), Req("numwatchers"), Req("processes"), Req("nodeinfo"))

WATCHERS = """
[watcher:one]
cmd = sleep
args = {one}
numprocesses = {n_one}

[watcher:two]
cmd = sleep
args = {two}
numprocesses = {n_two}
stdout_stream.class = FileStream
stdout_stream.filename = {dir}/two.out
"""

_KINDS: dict[str, type] = {}


def failure(kind: str, text: str) -> AssertionError:
    """An AssertionError of a class named after ``kind``: hypothesis reports (and shrinks) each
    kind of failure separately."""
    if kind not in _KINDS:
        _KINDS[kind] = type(kind, (AssertionError,), {})
    return _KINDS[kind](text)


def failure_kind(prefix: str, req: Req) -> str:
    """NaN/Infinity not refused is one failure whatever the command; others are per command."""
    if req.raw is None and frame_problem(req) == {"invalid_json"}:
        return "NanNotRefused"
    return f"{prefix}_{req.command.lower() if isinstance(req.command, str) else 'frame'}"


def _reject(name: str) -> None:
    raise ValueError(f"{name} is not JSON")


def strict(body: bytes, about: str) -> dict:
    try:
        reply = json.loads(body, parse_constant=_reject)
    except ValueError as exc:
        raise failure("NotStandardJSON", f"{about}: the reply is not standard JSON ({exc}): "
                      f"{short(body, 300)}") from None
    if not isinstance(reply, dict):
        raise failure("NotStandardJSON", f"{about}: the reply is not an object: {short(body, 300)}")
    return reply


def excerpt(text: str, at: int) -> str:
    """The start of the traceback at ``at`` and its last lines (the exception; for a logging
    error, the message that was lost)."""
    block = text[at:at + 20_000].split("\n\n", 1)[0]
    lines = block.splitlines()
    return "\n".join(lines if len(lines) <= 16 else [*lines[:8], "  ...", *lines[-6:]])


def outcome(reply: dict) -> str:
    return reply.get("code", "?") if reply.get("status") == "error" else "ok"


def reply_tag(reply: dict) -> str | None:
    rid = reply.get("id")
    if isinstance(rid, list) and rid and isinstance(rid[0], str):
        rid = rid[0]
    return rid if isinstance(rid, str) else None


class Client:
    """A DEALER; every receive has a deadline, no send ever blocks. ``watch``: connection events
    to report on ``self.monitor`` (set up before connecting, so that none is missed)."""

    def __init__(self, ctx: zmq.Context, endpoint: str, watch: int = 0) -> None:
        self.sock = ctx.socket(zmq.DEALER)
        self.sock.linger = 0
        self.monitor = self.sock.get_monitor_socket(watch) if watch else None
        self.sock.connect(endpoint)

    def send(self, frames: list[bytes]) -> bool:
        try:
            self.sock.send_multipart(frames, zmq.NOBLOCK)
            return True
        except zmq.Again:
            return False

    def recv(self, timeout: float) -> bytes | None:
        if not self.sock.poll(max(0, int(timeout * 1000))):
            return None
        return self.sock.recv_multipart()[-1]

    def close(self) -> None:
        if self.monitor is not None:
            self.sock.disable_monitor()
            self.monitor.close(linger=0)
        self.sock.close(linger=0)


class Node:
    """A fresh circusd, its clients, and the model of what it runs."""

    def __init__(self, root) -> None:
        self.root = root
        self.d = Circusd(root)
        values = {"dir": root, "one": CONFIG_WATCHERS["one"][1], "n_one": CONFIG_WATCHERS["one"][0],
                  "two": CONFIG_WATCHERS["two"][1], "n_two": CONFIG_WATCHERS["two"][0]}
        self.d.write(IPC_HEAD.format(dir=root) + WATCHERS.format(**values))
        # circusd's stdout and stderr go to a file: a pipe nobody reads would block circusd once
        # it is full (a burst of logging errors fills it in a moment)
        self.out = root / "circusd.out"
        # and it gets SIGKILL if this process dies (its keeper then ends its children)
        wrap = ["setpriv", "--pdeathsig", "KILL"] if shutil.which("setpriv") else []
        with open(self.out, "wb") as out:
            self.d.proc = subprocess.Popen([*wrap, *self.d.argv()], cwd=root, stdin=subprocess.DEVNULL,
                                           stdout=out, stderr=subprocess.STDOUT)
        self.endpoint = f"ipc://{root}/control.sock"
        self.d.wait(lambda: (root / "control.sock").exists(), what="the control socket")
        self.ctx = zmq.Context()
        self.main = [Client(self.ctx, self.endpoint) for _ in range(2)]
        self.side = [Client(self.ctx, self.endpoint) for _ in range(2)]
        self.probe = Client(self.ctx, self.endpoint)
        self.stuck = Client(self.ctx, self.endpoint)     # never reads: kept for the whole example
        self.model = Model.initial()
        self.tags = itertools.count()
        self.sent: set[str] = set()
        self.batch = ""                                   # what the current batch did so far
        self.pending: list[list[tuple[str, Req, frozenset[str] | None]]] = [[], []]
        self.converge("circusd started")

    def close(self) -> None:
        self.ctx.destroy(linger=0)
        self.d.cleanup()

    def tag(self) -> str:
        return f"t{next(self.tags)}"

    def note(self, text: str) -> None:
        self.batch += f"\n    {text}"

    def context(self) -> str:
        out = self.out.read_text(errors="replace")
        return (f"\n  model: {self.model.describe()}\n  this batch so far:{self.batch or ' nothing'}"
                f"\n  circusd's log ends with:\n{self.d.log_text()[-1500:]}"
                + (f"\n  circusd's stdout/stderr ends with:\n{out[-1500:]}" if out.strip() else ""))

    # -- liveness ---------------------------------------------------------------------------------

    def answers_list(self, timeout: float) -> float | None:
        """Seconds a ``list`` on a new socket took, or None if unanswered within ``timeout``."""
        c = Client(self.ctx, self.endpoint)
        try:
            start = time.monotonic()
            c.send([json.dumps({"id": "alive", "command": "list"}).encode()])
            return time.monotonic() - start if c.recv(timeout) is not None else None
        finally:
            c.close()

    def timed_list(self) -> float | None:
        """Seconds a ``list`` took on a new socket, once connected (None: over 1.1 s)."""
        c = Client(self.ctx, self.endpoint, zmq.EVENT_HANDSHAKE_SUCCEEDED)
        try:
            if not c.monitor.poll(2000):    # done by libzmq's thread, even if circusd's loop hangs
                raise failure("Frozen", f"no connection to the control socket within 2 s{self.context()}")
            start = time.monotonic()
            c.send([json.dumps({"id": "after", "command": "list"}).encode()])
            return time.monotonic() - start if c.recv(LIST_DEADLINE + 1.0) is not None else None
        finally:
            c.close()

    def check_alive(self, what: str) -> None:
        if self.d.proc is not None and self.d.proc.poll() is not None:
            raise failure("NodeDied", f"circusd exited ({self.d.proc.returncode}) {what}{self.context()}")

    def frozen(self, what: str) -> AssertionError:
        """The failure of a node that does not answer; a wrong reply that came before (a request
        wrongly accepted that froze it) is raised instead."""
        self.check_alive(what)
        for i in (0, 1):
            self.collect_side(i, complete=False)
        return failure("Frozen", f"circusd does not answer a list within 1 s {what} (alive, "
                       f"{len(self.d.children())} children){self.context()}")

    def await_reply(self, client: Client, tag: str, about: str) -> dict:
        end = time.monotonic() + REPLY_DEADLINE
        while (left := end - time.monotonic()) > 0:
            body = client.recv(min(0.25, left))
            if body is None:
                if self.answers_list(1.0) is None:
                    raise self.frozen(f"while waiting for the reply to {about}")
                continue
            reply = strict(body, about)
            if reply_tag(reply) == tag or reply.get("id") is None:   # None: a frame not read
                return reply
            raise failure("StrayReply", f"waiting for {about}, got a reply to something else: "
                          f"{short(body, 300)}{self.context()}")
        self.check_alive(f"waiting for {about}")
        raise failure("NoReply", f"no reply to {about} within {REPLY_DEADLINE} s{self.context()}")

    # -- a batch ----------------------------------------------------------------------------------

    def begin(self, index: int, head: Head) -> None:
        self.batch = ""
        self.note(repr(head))
        event(f"{head.stuck} unread requests")
        for i in range(head.stuck):
            self.stuck.send([STUCK[i % len(STUCK)].body(f"stuck{i}")])

    def step(self, step: Step) -> None:
        self.note(repr(step))
        for client, req in step.side:
            self.send_side(client, req)
        if step.burst:
            self.run_burst(step)
        elif step.main:
            self.run_main(step.main[0], self.main[step.sock])
        for i in (0, 1):                    # sent before the main request, read only now
            self.collect_side(i)

    def send(self, client: Client, req: Req, tag: str) -> None:
        if isinstance(req.command, str):
            self.sent.add(req.command.lower())
        if not client.send([*req.frames, req.body(tag)]):
            raise self.frozen(f"(its queue for a client is full, sending {req!r})")

    def send_side(self, index: int, req: Req, allowed: frozenset[str] | None = None) -> None:
        tag = self.tag()
        self.send(self.side[index], req, tag)
        self.pending[index].append((tag, req, side_allowed(req) if allowed is None else allowed))

    def run_main(self, req: Req, client: Client) -> None:
        if req.command == "rm" and req.props.get("nostop"):
            self.converge("before an rm nostop (what it leaves running must be known)")
        expected = predict(self.model, req)
        tag = self.tag()
        self.send(client, req, tag)
        self.apply(req, expected, self.await_reply(client, tag, repr(req)))

    def apply(self, req: Req, expected, reply: dict) -> None:
        got = outcome(reply)
        kind = failure_kind("WrongReply", req)
        if got not in expected.allowed:
            raise failure(kind, f"{req!r} got {got} ({reply.get('reason', reply)}); allowed: "
                          f"{', '.join(sorted(expected.allowed))}{self.context()}")
        event(f"{req.command.lower()}{' (burst)' if 'waiting' not in req.props else ''} -> {got}")
        effect = expected.allowed[got]
        if effect is not None:
            try:
                effect(self.model, reply)
            except AssertionError as exc:
                raise failure(kind, f"{req!r}: {exc}{self.context()}") from None

    def run_burst(self, step: Step) -> None:
        client, tags = self.main[step.sock], []
        for req in step.main:
            tags.append(self.tag())
            self.send(client, req, tags[-1])
        replies: dict[str, dict] = {}
        end = time.monotonic() + SIDE_DEADLINE
        while len(replies) < len(tags) and (left := end - time.monotonic()) > 0:
            body = client.recv(left)
            if body is not None:
                reply = strict(body, f"a reply in {step!r}")
                replies[reply_tag(reply) or "?"] = reply
        for tag, req in zip(tags, step.main):        # in the order circusd read them: a wrong
            if tag not in replies:                    # reply comes before what it froze
                if self.answers_list(1.0) is None:
                    raise self.frozen(f"after the burst {step!r}")
                raise failure("NoReply", f"no reply to {req!r} within {SIDE_DEADLINE} s{self.context()}")
            self.apply(req, predict(self.model, req), replies[tag])

    def big_frame(self, head: Head) -> None:
        kind, size = head.big
        event(f"{kind} frame")
        self.note(f"{kind} frame of {size} bytes")
        pad = b'{"id": "big", "command": "list", "properties": {"pad": "' + b"x" * size + b'"}}'
        if kind == "oversize":
            self.send_side(0, Req(None, raw=pad[:size - 3] + b'"}}'), frozenset({"oversize"}))
            return
        c = Client(self.ctx, self.endpoint, zmq.EVENT_DISCONNECTED)
        try:
            c.send([pad])
            if not c.monitor.poll(3000):
                raise failure("Oversize", f"a frame of {size} bytes (over 4 MiB) was not cut within "
                              f"3 s{self.context()}")
            if c.recv(0) is not None:
                raise failure("Oversize", f"a frame of {size} bytes was answered{self.context()}")
        finally:
            c.close()

    def end(self, index: int) -> None:
        for i in (0, 1):
            self.collect_side(i)
        took: list[str] = []
        for _ in range(LIST_TRIES):
            seconds = self.timed_list()
            if seconds is not None and seconds <= LIST_DEADLINE:
                break
            took.append("no answer within 1.1 s" if seconds is None else f"{seconds * 1000:.0f} ms")
        else:
            self.check_alive(f"after batch {index}")
            raise failure("ListLate", f"list not answered within {LIST_DEADLINE * 1000:.0f} ms after "
                          f"batch {index} ({LIST_TRIES} tries: {', '.join(took)}){self.context()}")
        self.check_alive(f"after batch {index}")
        self.converge(f"after batch {index}")
        for name, text in (("log", self.d.log_text()), ("stdout/stderr", self.out.read_text(errors="replace"))):
            if "Traceback" in text or "internal error" in text:
                at = max(text.find("Traceback"), text.find("internal error"))
                raise failure("Traceback", f"circusd's {name} has a traceback after batch {index}:\n"
                              f"{excerpt(text, at)}{self.context()}")

    def collect_side(self, index: int, complete: bool = True) -> None:
        """Read and check the replies to side{index}'s requests. ``complete``: each must come (else
        Frozen or NoReply); otherwise only those already there are checked. A wrong reply is
        reported before a missing one: it came first."""
        pending, self.pending[index] = self.pending[index], []
        waiting = {tag: (req, allowed) for tag, req, allowed in pending if allowed is not None}
        casts = {tag for tag, _, allowed in pending if allowed is None}
        got: list[tuple[Req, frozenset[str], dict]] = []
        anonymous: list[dict] = []
        end = time.monotonic() + (SIDE_DEADLINE if complete else 0.2)
        while len(got) + len(anonymous) < len(waiting) and (left := end - time.monotonic()) > 0:
            body = self.side[index].recv(left)
            if body is None:
                break
            reply = strict(body, f"a reply to side{index}")
            tag = reply_tag(reply)
            if tag in casts:
                raise failure("CastAnswered", f"a cast was answered: {short(body, 300)}{self.context()}")
            if tag in waiting and all(t is not waiting[tag][0] for t, _, _ in got):
                got.append((*waiting[tag], reply))
            else:
                anonymous.append(reply)
        answered = {id(req) for req, _, _ in got}
        unmatched = [(req, allowed) for req, allowed in waiting.values() if id(req) not in answered]
        stray = []
        for reply in anonymous:             # a frame that could not be read gets a reply without id
            fit = next((u for u in unmatched if outcome(reply) in u[1]), None)
            if fit is None:
                stray.append(reply)
            else:
                unmatched.remove(fit)
                got.append((*fit, reply))
        for req, allowed, reply in got:
            code = outcome(reply)
            if code not in allowed:
                raise failure(failure_kind("SideReply", req), f"side{index}: {req!r} got {code} "
                              f"({reply.get('reason', reply)}); allowed: {', '.join(sorted(allowed))}"
                              f"{self.context()}")
        if stray and complete:
            raise failure("StrayReply", f"side{index}: a reply that answers nothing sent: "
                          f"{short(json.dumps(stray[0]), 300)}{self.context()}")
        if unmatched and complete:
            if self.answers_list(1.0) is None:
                raise self.frozen(f"collecting the replies of side{index}")
            raise failure("NoReply", f"side{index}: no reply to {[r for r, _ in unmatched]} within "
                          f"{SIDE_DEADLINE} s{self.context()}")

    # -- what runs --------------------------------------------------------------------------------

    def call(self, command: str, **props) -> dict:
        tag = self.tag()
        self.probe.send([json.dumps({"id": tag, "command": command, "properties": props}).encode()])
        end = time.monotonic() + CALL_DEADLINE
        while (left := end - time.monotonic()) > 0:
            body = self.probe.recv(left)
            if body is None:
                break
            reply = strict(body, command)
            if reply_tag(reply) == tag:
                return reply
        raise self.frozen(f"({command} {props} not answered within {CALL_DEADLINE} s)")

    def differences(self) -> list[str]:
        m, out = self.model, []
        listed = self.call("list").get("watchers", [])
        if sorted(listed) != sorted(m.watchers):
            out.append(f"list shows {listed}, the model {sorted(m.watchers)}")
        statuses = {k.lower(): v for k, v in self.call("status").get("statuses", {}).items()}
        running = m.running()
        total = self.call("numprocesses").get("numprocesses")
        if total != sum(running.values()):
            out.append(f"numprocesses is {total}, the model says {sum(running.values())}")
        owner: dict[int, str] = {}
        for key, w in m.watchers.items():
            want = "active" if w.active else "stopped"
            if statuses.get(key) != want:
                out.append(f"{short(w.name)} is {statuses.get(key)}, the model says {want}")
            pids = self.call("list", name=key).get("pids")
            owner.update(dict.fromkeys(pids if isinstance(pids, list) else [], key))
            if not isinstance(pids, list) or len(pids) != running[key]:
                out.append(f"{short(w.name)} lists pids {pids}, the model says {running[key]} process(es)")
                continue
            target = self.call("get", name=key, keys=["numprocesses"]).get("options", {}).get("numprocesses")
            if target != w.n:
                out.append(f"{short(w.name)}: numprocesses {target}, the model says {w.n}")
        children = {pid: proc_cmdline(pid) for pid in self.d.children()}
        for pid, key in owner.items():
            argv = children.get(pid)
            if argv is None:
                out.append(f"pid {pid} of {short(key)} is not a live child of circusd")
            elif argv[1:2] != [m.watchers[key].marker]:
                out.append(f"pid {pid} of {short(key)} runs {short(argv)}")
        strays = Counter(argv[1] if len(argv) > 1 else str(argv) for pid, argv in children.items()
                         if pid not in owner)
        if strays != m.kept:
            markers = {w.marker: w.name for w in m.watchers.values()}
            out.append("children of circusd that no watcher lists: "
                       f"{ {markers.get(k, 'marker ' + k): n for k, n in strays.items()} }"
                       f"{'; expected those left by rm nostop: ' + str(dict(m.kept)) if m.kept else ''}")
        return out

    def converge(self, when: str) -> None:
        end = time.monotonic() + CONVERGE
        while True:
            self.check_alive(when)
            problems = self.differences()
            if not problems:
                return
            if time.monotonic() > end:
                raise failure("Diverged", f"{when}, {CONVERGE:.0f} s later, circusd still differs from "
                              f"what its replies said: " + "; ".join(problems) + self.context())
            time.sleep(0.05)


def test_generators_cover_every_command():
    assert GENERATED == set(COMMANDS), sorted(GENERATED ^ set(COMMANDS))


#: the request the final sweep sends for a command the draw missed: a valid one whose effect the
#: model tracks as the main request, the others as a side request (quit refused, as the
#: generators send it: the node must outlive the sweep)
_SWEEP = {"add": {"name": "swept", "cmd": "sleep", "args": ["999991"], "start": True, "waiting": True},
          "quit": {"keep": True}, "ipython": {}, "reloadconfig": {"dry_run": True},
          "set": {"name": "one", "options": {"numprocesses": 1}, "waiting": True},
          "kill": {"name": "one", "signum": "TERM"}}
_TRACKED = {"add", "rm", "start", "stop", "restart", "reload", "incr", "decr", "set", "kill"}


def _sweep_step(command: str) -> Step:
    tracked = {"name": "one", "waiting": True} if command in _TRACKED else {"name": "one"}
    req = Req(command, _SWEEP.get(command, tracked))
    if command in _TRACKED:
        return Step(main=(req,), burst=False, sock=0, side=())
    return Step(main=(), burst=False, sock=0, side=((0, req),))


def test_control_socket_fuzz(tmp_path_factory):
    sent: set[str] = set()

    @FUZZ
    @given(data=st.data())
    def run(data):
        root = tmp_path_factory.mktemp("fz")
        node = Node(root)
        ok = False
        try:
            for b in range(data.draw(st.integers(1, MAX_BATCHES), label="batches")):
                head = data.draw(heads(), label=f"batch {b}")
                node.begin(b, head)
                for s in range(max(head.steps, head.big_at + 1 if head.big else 0)):
                    if head.big and s == head.big_at:
                        node.big_frame(head)
                        node.collect_side(0)
                    if s < head.steps:
                        node.step(data.draw(steps(node.model), label=f"batch {b} step {s}"))
                node.end(b)
            ok = True
        finally:
            sent.update(node.sent)
            node.close()
            if ok:
                shutil.rmtree(root, ignore_errors=True)

    run()
    # the examples are drawn: a command they happened not to send is sent once now, with the
    # same checks (quit last), so that every command is exercised whatever the draw
    missing = sorted(set(COMMANDS) - sent)
    if missing:
        root = tmp_path_factory.mktemp("fz-sweep")
        node = Node(root)
        try:
            node.begin(0, Head(steps=len(missing), stuck=0, big=None, big_at=0))
            for command in missing:
                node.step(_sweep_step(command))
            node.end(0)
            sent.update(node.sent)
        finally:
            node.close()
    assert set(COMMANDS) <= sent, f"never sent: {sorted(set(COMMANDS) - sent)}"
