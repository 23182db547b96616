"""Tier 2: a real circusd with CURVE on its control and events sockets, roles, revocation,
the audit trail, the exposure rule at start, endpoint_owner, and hardened inputs on a plain node."""
from __future__ import annotations

import json
import os
import pwd
import re
import signal
import socket
import subprocess
import sys
import textwrap
import time

import pytest
import zmq

from conftest import Circusd, Raw, proc_alive
from circus.security.keys import ClientKeys, write_keypair
from securenode import PLAIN_HEAD, Events, Keyed, NodeKeys

pytestmark = pytest.mark.real

WATCHERS = """
[watcher:sleeper]
cmd = sleep 3600
graceful_timeout = 1
"""


def _start(directory, text: str) -> Circusd:
    d = Circusd(directory)
    d.start(text)
    d.wait(lambda: (directory / "control.sock").exists() and (directory / "events.sock").exists(),
           what="control and events sockets")
    return d


def _ok(reply: dict) -> dict:
    assert reply["status"] != "error", reply
    return reply


def _error(reply: dict, code: str) -> dict:
    assert reply["status"] == "error" and reply["code"] == code, reply
    assert reply["tb"] is None
    return reply


class Node:
    """A running circusd, its keys (if any), and a context whose sockets are closed at the end."""

    def __init__(self, d: Circusd, keys: NodeKeys | None) -> None:
        self.d, self.keys = d, keys
        self.ctx = zmq.Context()
        self.control = f"ipc://{d.dir}/control.sock"
        self.events = f"ipc://{d.dir}/events.sock"
        self._socks: list = []

    def client(self, role: str | None = None, keys=None) -> Keyed:
        if role is not None:
            keys = self.keys.client(role)
        c = Keyed(self.ctx, self.control, keys)
        self._socks.append(c)
        return c

    def sub(self, topics: tuple[str, ...], role: str | None = None, keys=None) -> Events:
        if role is not None:
            keys = self.keys.client(role)
        e = Events(self.ctx, self.events, topics, keys)
        self._socks.append(e)
        return e

    def close(self) -> None:
        for s in self._socks:
            s.close()
        self.ctx.term()
        self.d.cleanup()


@pytest.fixture(scope="module")
def secure(tmp_path_factory):
    """One CURVE node for the tests that do not change its keys."""
    root = tmp_path_factory.mktemp("secure")
    keys = NodeKeys.make(root / "keys")
    node = Node(_start(root, keys.head(root) + WATCHERS), keys)
    node.d.wait(lambda: node.d.children("sleep"), what="the sleeper")
    yield node
    node.close()


@pytest.fixture
def fresh_secure(tmp_path):
    """A CURVE node of its own, for tests that change its clients directory."""
    keys = NodeKeys.make(tmp_path / "keys")
    node = Node(_start(tmp_path, keys.head(tmp_path) + WATCHERS), keys)
    yield node
    node.close()


@pytest.fixture(scope="module")
def plain(tmp_path_factory):
    """A node without CURVE, for the hardened inputs."""
    root = tmp_path_factory.mktemp("plain")
    node = Node(_start(root, PLAIN_HEAD.format(dir=root) + WATCHERS), None)
    node.d.wait(lambda: node.d.children("sleep"), what="the sleeper")
    yield node
    node.close()


# -- who may connect ----------------------------------------------------------------------------


def test_clients_without_keys_or_with_unknown_keys_get_no_answer(secure):
    assert secure.client().silent("list")
    assert secure.client(keys=secure.keys.stranger()).silent("list")
    _ok(secure.client("readonly").call("list"))              # the node itself is fine
    secure.d.wait_log("refused a CURVE client: key")
    assert proc_alive(secure.d.pid)


def test_readonly_reads_but_cannot_add(secure):
    ro = secure.client("readonly")
    assert _ok(ro.call("list"))["watchers"] == ["sleeper"]
    assert _ok(ro.call("status", name="sleeper"))["status"] == "active"
    _ok(ro.call("stats", name="sleeper"))
    _ok(ro.call("globaloptions"))
    reply = _error(ro.call("add", name="intruder", cmd="sleep 1"), "forbidden")
    assert "'add' needs the admin role; 'readonly' is readonly" in reply["reason"]
    _error(ro.call("restart", name="sleeper"), "forbidden")
    assert _ok(ro.call("list"))["watchers"] == ["sleeper"]


def test_operator_restarts_but_cannot_add_rm_set_or_quit(secure):
    op = secure.client("operator")
    before = secure.d.children("sleep")
    _ok(op.call("restart", name="sleeper", waiting=True))
    secure.d.wait(lambda: secure.d.children("sleep") and secure.d.children("sleep") != before,
                  what="a new sleeper")
    for command, props in [("add", {"name": "x", "cmd": "sleep 1"}), ("rm", {"name": "sleeper"}),
                           ("set", {"name": "sleeper", "options": {"numprocesses": 2}}), ("quit", {})]:
        reply = _error(op.call(command, **props), "forbidden")
        assert f"'{command}' needs the admin role; 'operator' is operator" in reply["reason"]
    assert proc_alive(secure.d.pid)
    assert _ok(op.call("numprocesses", name="sleeper"))["numprocesses"] == 1


def test_admin_adds_and_removes(secure):
    admin = secure.client("admin")
    _ok(admin.call("add", name="extra", cmd="sleep 3602", start=True))
    secure.d.wait(lambda: secure.d.children("sleep 3602"), what="the added watcher's process")
    _ok(admin.call("rm", name="extra", waiting=True))
    secure.d.wait(lambda: not secure.d.children("sleep 3602"), what="the removed watcher's process")
    assert _ok(admin.call("list"))["watchers"] == ["sleeper"]


def test_events_need_keys(secure):
    keyed = secure.sub(("watcher.",), "readonly")
    bare = secure.sub(("watcher.",))
    stranger = secure.sub(("watcher.",), keys=secure.keys.stranger())
    keyed.sync()
    _ok(secure.client("operator").call("restart", name="sleeper", waiting=True))
    keyed.collect(lambda topic, payload: topic.startswith("watcher.sleeper."))
    assert bare.drain(0.3) == [] and stranger.drain(0.1) == []


# -- audit --------------------------------------------------------------------------------------


def test_audit_records_for_mutations_and_refusals_not_for_reads(secure):
    trail = secure.sub(("audit.",), "readonly")
    trail.sync()
    admin, ro = secure.client("admin"), secure.client("readonly")
    _ok(ro.call("list"))
    _ok(admin.call("add", name="audited", cmd="sleep 3603", start=False,
                   options={"env": {"DB_PASSWORD": "hunter2", "MODE": "x"}}))
    _error(ro.call("add", name="sneaky", cmd="sleep 1"), "forbidden")
    _ok(admin.call("rm", name="audited"))
    records = [payload for topic, payload in trail.collect(
        lambda topic, payload: payload.get("command") == "rm") if topic.startswith("audit.")]
    assert [(r["command"], r["caller"], r["status"]) for r in records] == [
        ("add", "admin", "ok"), ("add", "readonly", "error"), ("rm", "admin", "ok")]
    added, refused = records[0], records[1]
    assert added["role"] == "admin" and added["properties"]["name"] == "audited"
    assert added["properties"]["options"]["env"] == {"DB_PASSWORD": "***", "MODE": "x"}
    assert added["key"] == secure.keys.client("admin").public.decode()[:8]
    assert (refused["role"], refused["code"]) == ("readonly", "forbidden")
    assert trail.drain(0.2) == []                        # nothing for list
    lines = [line for line in secure.d.log_text().splitlines() if "audit: " in line]
    assert any(re.search(r"audit: admin \(admin\)( from \S+)?: add\(name='audited'.*-> ok$", line)
               for line in lines), lines
    assert any(re.search(r"audit: readonly \(readonly\)( from \S+)?: add\(name='sneaky'.*-> forbidden: ",
                         line) for line in lines), lines
    assert "hunter2" not in secure.d.log_text()


# -- revocation and reload ----------------------------------------------------------------------


def test_a_removed_key_is_refused_after_sighup_on_the_same_connection(fresh_secure):
    node = fresh_secure
    ro = node.client("readonly")
    _ok(ro.call("list"))
    os.unlink(node.keys.clients / "readonly" / "readonly.key")
    node.d.signal(signal.SIGHUP)
    node.d.wait_log("1 key(s) revoked")
    reply = _error(ro.call("list"), "forbidden")
    assert "no longer authorized" in reply["reason"]
    assert node.client("readonly").silent("list")          # a new connection gets nowhere
    _ok(node.client("operator").call("list"))
    node.d.wait_log("audit: revoked key (readonly)")


def test_a_broken_clients_directory_keeps_the_keys_in_force(fresh_secure):
    node = fresh_secure
    ro, admin = node.client("readonly"), node.client("admin")
    _ok(ro.call("list"))
    broken = node.keys.clients / "admin" / "broken.key"
    broken.write_text("not a key\n")
    node.d.signal(signal.SIGHUP)
    node.d.wait_log("curve_clients not re-read, the keys in force are kept")
    assert str(broken) in node.d.log_text()
    _ok(ro.call("list"))
    reply = _error(admin.call("reloadconfig", waiting=True), "config_error")
    assert str(broken) in reply["reason"]
    _ok(ro.call("list"))
    _ok(node.client("readonly").call("list"))              # new connections too
    broken.unlink()
    os.unlink(node.keys.clients / "operator" / "operator.key")
    _ok(admin.call("reloadconfig", waiting=True))
    _ok(node.client("readonly").call("list"))
    assert node.client("operator").silent("list")          # the operator key is gone now


# -- the exposure rule at start -----------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_circusd_refuses_a_network_endpoint_without_curve(tmp_path):
    port = _free_port()
    config = tmp_path / "circus.ini"
    config.write_text(f"[circus]\nendpoint = tcp://0.0.0.0:{port}\n"
                      f"pubsub_endpoint = ipc://{tmp_path}/events.sock\n")
    proc = subprocess.run([sys.executable, "-m", "circus.cli.circusd", str(config)], cwd=tmp_path,
                          capture_output=True, text=True, timeout=30)
    assert proc.returncode == 2
    assert f"{config}:2: [circus] endpoint: tcp://0.0.0.0:{port} is reachable" in proc.stderr
    assert "curve_secret_key" in proc.stderr and "insecure = true" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_insecure_true_starts_and_warns(tmp_path):
    port = _free_port()
    # the rule reads the text only: an IPv4-mapped address counts as reachable, while libzmq
    # binds it to 127.0.0.1 (nothing is opened to the network by this test)
    endpoint = f"tcp://[::ffff:127.0.0.1]:{port}"
    d = Circusd(tmp_path)
    try:
        d.start(f"[circus]\nendpoint = {endpoint}\npubsub_endpoint = ipc://{tmp_path}/events.sock\n"
                f"insecure = true\n" + WATCHERS)
        d.wait_log(f"insecure = true: endpoint {endpoint} is reachable from the network WITHOUT")
        ctx = zmq.Context()
        c = Raw(ctx, f"tcp://127.0.0.1:{port}")
        try:
            _ok(c.call("list"))
        finally:
            c.close()
            ctx.term()
        assert d.stop() == 0
    finally:
        d.cleanup()


# -- endpoint_owner -----------------------------------------------------------------------------


def test_endpoint_owner_requires_added_watchers_to_run_as_the_owner(tmp_path):
    owner = pwd.getpwuid(os.geteuid()).pw_name
    d = _start(tmp_path, PLAIN_HEAD.format(dir=tmp_path) + f"endpoint_owner = {owner}\n" + WATCHERS)
    node = Node(d, None)
    try:
        st = os.stat(tmp_path / "control.sock")
        assert st.st_uid == os.geteuid() and st.st_mode & 0o777 == 0o600
        c = node.client()
        reply = _error(c.call("add", name="nouid", cmd="sleep 1"), "forbidden")
        assert f"belongs to {owner!r}" in reply["reason"] and f"uid = {owner!r}" in reply["reason"]
        _error(c.call("add", name="other", cmd="sleep 1", options={"uid": "nobody"}), "forbidden")
        _ok(c.call("add", name="owned", cmd="sleep 3604", start=True, options={"uid": owner}))
        d.wait(lambda: d.children("sleep 3604"), what="the owned watcher's process")
        assert sorted(_ok(c.call("list"))["watchers"]) == ["owned", "sleeper"]
    finally:
        node.close()


# -- without CURVE ------------------------------------------------------------------------------


def test_without_curve_everyone_is_anonymous_admin(plain):
    c = plain.client()
    trail = plain.sub(("audit.",))
    trail.sync()
    _ok(c.call("add", name="anon", cmd="sleep 3605", start=True))
    plain.d.wait(lambda: plain.d.children("sleep 3605"), what="the added watcher's process")
    _ok(c.call("restart", name="anon", waiting=True))
    _ok(c.call("rm", name="anon", waiting=True))
    records = [p for _, p in trail.collect(lambda t, p: p.get("command") == "rm")]
    assert [(r["command"], r["caller"], r["role"], r["key"]) for r in records] == [
        ("add", "anonymous", "admin", None), ("restart", "anonymous", "admin", None),
        ("rm", "anonymous", "admin", None)]
    assert _ok(c.call("list"))["watchers"] == ["sleeper"]


# -- hardened inputs ----------------------------------------------------------------------------


def test_a_catastrophic_regex_is_refused_and_circusd_keeps_answering(plain):
    c = plain.client()
    reply = _error(c.call("start", name="(a+)+$", match="regex"), "invalid_property")
    assert "a quantifier inside a quantified group" in reply["reason"]
    reply = _error(c.call("stop", name="a?" * 30 + "b", match="regex"), "invalid_property")
    assert "ways to match" in reply["reason"]
    assert _ok(c.call("list", wait=2))["watchers"] == ["sleeper"]
    _ok(c.call("start", name="^sl", match="regex"))


@pytest.mark.parametrize("name, why", [("a/b", "path separator"), ("bad\x01name", "control character"),
                                       ("line\nbreak", "control character"), ("..", "cannot be")])
def test_add_refuses_names_that_would_end_up_in_paths_or_logs(plain, name, why):
    reply = _error(plain.client().call("add", name=name, cmd="sleep 1"), "invalid_property")
    assert why in reply["reason"] and reply["reason"].startswith("watcher name")


def test_deeply_nested_request_is_invalid(plain):
    c = plain.client()
    value: object = "x"
    for _ in range(40):
        value = {"k": value}
    c.send_raw(json.dumps({"id": "deep", "command": "list", "properties": {"name": value}}).encode())
    reply = _error(c.recv(), "invalid_message")
    assert reply["id"] == "deep" or reply["id"] is None
    assert "nested deeper than 32" in reply["reason"]
    _ok(c.call("list"))


def test_oversize_frames(plain):
    c = plain.client()
    body = json.dumps({"id": "big", "command": "list", "properties": {"pad": "x" * (2 << 20)}}).encode()
    c.send_raw(body)
    reply = _error(c.recv(), "oversize")
    assert f"message of {len(body)} bytes exceeds {1 << 20}" in reply["reason"]
    huge = plain.client()
    huge.send_raw(b"x" * (5 << 20))
    assert not huge.sock.poll(500)                          # dropped by libzmq's maxmsgsize
    _ok(plain.client().call("list"))
    _ok(c.call("list"))


def test_add_with_an_unknown_user_names_the_user(plain):
    c = plain.client()
    reply = _error(c.call("add", name="ghost", cmd="sleep 1", start=True,
                          options={"uid": "no-such-user-here"}), "invalid_option")
    assert reply["reason"] == "uid: unknown user 'no-such-user-here'"
    reply = _error(c.call("add", name="ghost", cmd="sleep 1", options={"gid": "no-such-group-here"}),
                   "invalid_option")
    assert reply["reason"] == "gid: unknown group 'no-such-group-here'"
    reply = _error(c.call("set", name="sleeper", options={"uid": "no-such-user-here"}), "invalid_option")
    assert "no-such-user-here" in reply["reason"]
    assert _ok(c.call("list"))["watchers"] == ["sleeper"]
    assert _ok(c.call("get", name="sleeper", keys=["uid"]))["options"]["uid"] is None


def test_reloadconfig_with_a_new_node_key_rebinds_under_it(fresh_secure):
    node = fresh_secure
    old_client = node.client("admin")
    _ok(old_client.call("list"))
    new_public, new_secret = write_keypair(str(node.keys.root / "node2"), "node")
    text = node.d.config.read_text().replace(node.keys.node_secret, new_secret)
    node.d.config.write_text(text)
    _ok(old_client.call("reloadconfig", waiting=True))
    renewed = ClientKeys.load(str(node.keys.root / "own" / "admin.key_secret"), new_public)
    fresh = Keyed(node.ctx, node.control, renewed)
    node._socks.append(fresh)
    _ok(fresh.call("list"))             # queued until the rebind under the new key is done
    assert node.client("admin").silent("list")             # the old server key is refused now
    sub = Events(node.ctx, node.events, ("watcher.",), renewed)
    node._socks.append(sub)
    sub.sync()
