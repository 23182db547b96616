"""Property-based fuzzing of a real circusd's control socket (hypothesis).

a. random multipart frames (random bytes, invalid UTF-8, empty, up to 64 KiB, random JSON) from a
   raw DEALER to a node without CURVE: every reply is a clean error, circusd keeps answering, and
   nothing it supervises changes;
b. random request shapes with real command names, sent with a READONLY key to a CURVE node:
   only errors with a known code, or ok for read-only commands; never an internal error, never a
   traceback; no watcher added or removed, no process started or stopped.

Run alone with ``pytest -m fuzz tests/test_security_fuzz.py``.
"""
from __future__ import annotations

import json
import uuid

import pytest
import zmq
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import Circusd, proc_alive
from circus.protocol import COMMANDS, ErrorCode
from securenode import PLAIN_HEAD, Keyed, NodeKeys

pytestmark = [pytest.mark.real, pytest.mark.fuzz]

WATCHERS = """
[watcher:sleeper]
cmd = sleep 3600
numprocesses = 2

[watcher:other]
cmd = sleep 3601
"""

FUZZ = settings(deadline=None, database=None, print_blob=True,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
KNOWN_CODES = {code.text for code in ErrorCode} - {ErrorCode.INTERNAL.text}
COMMAND_NAMES = sorted(COMMANDS)


class Node:
    def __init__(self, root, head: str, keys: NodeKeys | None) -> None:
        self.keys = keys
        self.d = Circusd(root)
        self.d.start(head + WATCHERS)
        self.d.wait(lambda: (root / "control.sock").exists(), what="the control socket")
        self.d.wait(lambda: len(self.d.children()) == 3, what="3 children")
        self.ctx = zmq.Context()
        self.endpoint = f"ipc://{root}/control.sock"

    def client(self, role: str | None = None) -> Keyed:
        return Keyed(self.ctx, self.endpoint, self.keys.client(role) if role else None)

    def snapshot(self, role: str | None = None) -> tuple[list[str], list[int]]:
        c = self.client(role)
        try:
            reply = c.call("list")
        finally:
            c.close()
        assert reply["status"] == "ok", reply
        return sorted(reply["watchers"]), self.d.children()

    def close(self) -> None:
        self.ctx.destroy(linger=0)
        self.d.cleanup()

    def assert_clean_log(self) -> None:
        log = self.d.log_text()
        assert "internal error" not in log and "Traceback" not in log, log[-3000:]


@pytest.fixture(scope="module")
def plain(tmp_path_factory):
    root = tmp_path_factory.mktemp("fuzzplain")
    node = Node(root, PLAIN_HEAD.format(dir=root), None)
    yield node
    node.close()


@pytest.fixture(scope="module")
def secure(tmp_path_factory):
    root = tmp_path_factory.mktemp("fuzzsecure")
    keys = NodeKeys.make(root / "keys")
    node = Node(root, keys.head(root), keys)
    yield node
    node.close()


# -- strategies ---------------------------------------------------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=40),
    lambda children: st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=12), children,
                                                                      max_size=5),
    max_leaves=25)


def _not_a_command(value: object) -> bool:
    """A random JSON body must not happen to be a real request (the plain node runs anything)."""
    return not (isinstance(value, dict) and isinstance(value.get("command"), str)
                and value["command"].lower() in COMMANDS)


def _large(args: tuple[int, bytes]) -> bytes:
    size, unit = args
    return (unit * (size // len(unit) + 1))[:size]


frame = st.one_of(
    st.binary(max_size=64),                                           # incl. empty, invalid UTF-8
    st.text(max_size=64).map(str.encode),
    json_values.filter(_not_a_command).map(lambda v: json.dumps(v).encode()),
    st.tuples(st.integers(1024, 64 * 1024), st.binary(min_size=1, max_size=8)).map(_large),
    st.sampled_from([b"{", b"[]", b"null", b'{"command": 1}', b'{"command": ""}', b"\xff\xfe{}",
                     b'{"command": "nope", "properties": []}', b'{"id": [1], "msg_type": "cast"}',
                     b"[" * 5000, b'{"a":' * 2000]),
)
message = st.lists(frame, min_size=0, max_size=4)


# -- a. random frames ---------------------------------------------------------------------------


def _replies_until(sock: zmq.Socket, sentinel: str, timeout: float = 5.0) -> list[list[bytes]]:
    """Every message on ``sock`` up to the reply whose id is ``sentinel`` (excluded)."""
    got: list[list[bytes]] = []
    while sock.poll(int(timeout * 1000)):
        frames = sock.recv_multipart()
        try:
            body = json.loads(frames[-1])
        except ValueError:
            body = None
        if isinstance(body, dict) and body.get("id") == sentinel:
            return got
        got.append(frames)
    raise AssertionError(f"no answer to the sentinel request within {timeout} s")


def _assert_clean_error(frames: list[bytes]) -> str:
    reply = json.loads(frames[-1])
    assert reply["status"] == "error", reply
    assert reply["code"] in KNOWN_CODES, reply
    assert reply["tb"] is None, reply
    return reply["code"]


def test_random_frames_never_hurt_a_plain_node(plain):
    before = plain.snapshot()
    codes: dict[str, int] = {}

    @settings(FUZZ, max_examples=300)
    @given(st.lists(message, min_size=1, max_size=6))
    def run(batch):
        raw = plain.client()
        try:
            for frames in batch:
                if frames:                        # a DEALER cannot send a message of no frames
                    raw.sock.send_multipart(frames)
            sentinel = uuid.uuid4().hex
            raw.send_raw(json.dumps({"id": sentinel, "command": "numwatchers"}).encode())
            for reply in _replies_until(raw.sock, sentinel):
                code = _assert_clean_error(reply)
                codes[code] = codes.get(code, 0) + 1
        finally:
            raw.close()
        fresh = plain.client()
        try:
            assert fresh.call("list")["status"] == "ok"
        finally:
            fresh.close()

    run()
    assert {"invalid_json", "invalid_message"} <= set(codes), codes     # the fuzz reached circusd
    assert plain.snapshot() == before
    assert proc_alive(plain.d.pid)
    plain.assert_clean_log()


# -- b. random requests with a readonly key -----------------------------------------------------

requests = st.fixed_dictionaries({
    "id": json_values,
    "command": st.sampled_from(COMMAND_NAMES) | st.sampled_from([n.upper() for n in COMMAND_NAMES])
               | st.text(max_size=20),
    "properties": st.dictionaries(
        st.sampled_from(["name", "match", "waiting", "pid", "signum", "options", "keys", "nb",
                         "timeout", "lines", "extended", "graceful", "start", "cmd", "args"])
        | st.text(max_size=10), json_values, max_size=6),
})


def _strict_json(body: str) -> bool:
    def refuse(name: str) -> None:
        raise ValueError(name)
    try:
        json.loads(body, parse_constant=refuse)
    except ValueError:
        return False
    return True


def test_random_requests_with_a_readonly_key_change_nothing(secure):
    before = secure.snapshot("readonly")
    ro = secure.client("readonly")
    outcomes: dict[str, int] = {}

    @settings(FUZZ, max_examples=600)
    @given(requests)
    def run(request):
        body = json.dumps(request)
        ro.send_raw(body.encode())
        assert ro.sock.poll(5000), f"no reply to {request!r}"
        reply = json.loads(ro.sock.recv())
        if not _strict_json(body):              # Infinity is not JSON: refused before anything
            assert reply["code"] == "invalid_json" and reply["id"] is None, reply
            outcomes["invalid_json"] = outcomes.get("invalid_json", 0) + 1
            return
        assert reply["id"] == request["id"]
        command = COMMANDS.get(request["command"].lower()) if isinstance(request["command"], str) else None
        if reply["status"] == "error":
            assert reply["code"] in KNOWN_CODES, reply
            assert reply["tb"] is None, reply
            if command is not None and not command.readonly:
                assert reply["code"] == "forbidden", reply
            outcomes[reply["code"]] = outcomes.get(reply["code"], 0) + 1
        else:
            assert command is not None and command.readonly, (request, reply)
            assert "tb" not in reply or reply["tb"] is None
            outcomes["ok"] = outcomes.get("ok", 0) + 1

    try:
        run()
    finally:
        ro.close()
    assert {"ok", "forbidden", "unknown_command"} <= set(outcomes), outcomes
    assert secure.snapshot("readonly") == before
    assert proc_alive(secure.d.pid)
    secure.assert_clean_log()
