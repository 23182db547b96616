"""The web user in the node's audit trail: circushttpd on a CURVE node with the node's own key
pair (as ``[circus] httpd = true`` runs it), a real circusd, its audit events and its log.

circushttpd names its logged-in user in the ``on_behalf_of`` property; circusd records it only
from its own key, and drops it, unrecorded, from any other key."""
from __future__ import annotations

import json
import re
import textwrap

import pytest
import zmq

pytest.importorskip("tornado")
pytest.importorskip("jinja2")

from circus.security.audit import audit_record, describe  # noqa: E402
from circus.security.keyring import Identity  # noqa: E402
from circus.security.keys import ClientKeys  # noqa: E402
from circus.protocol import Role  # noqa: E402
from circus.web.users import Users  # noqa: E402
from conftest import Circusd  # noqa: E402
from securenode import CURVE_HEAD, Events, Keyed, NodeKeys  # noqa: E402
from webhttp import Httpd, request  # noqa: E402

pytestmark = pytest.mark.real

USERS = {"adm": ("admin", "admin-pass-1"), "opal": ("operator", "operator-pass-1")}


class Secure:
    def __init__(self, base) -> None:
        self.base = base
        self.keys = NodeKeys.make(base)
        self.node = Circusd(base / "circusd")
        self.ctx = zmq.Context()
        self.httpd: Httpd | None = None

    def start(self) -> None:
        d = self.node.dir
        d.mkdir()
        head = CURVE_HEAD.format(dir=d, node_secret=self.keys.node_secret,
                                 clients=self.keys.clients)
        self.node.start(textwrap.dedent(head) + "[watcher:sl]\ncmd = sleep 300\n",
                        "--name", "secure")
        self.node.wait(lambda: (d / "control.sock").exists() and (d / "events.sock").exists(),
                       what="control and events sockets")
        users = Users.load(str(self.base / "circushttpd.users"), missing_ok=True)
        for name, (role, password) in USERS.items():
            users.add(name, role, password)
        self.token = users.new_token("opal")
        secret = self.keys.node_secret             # as httpd_argv passes it
        self.httpd = Httpd(self.base, "--endpoint", f"ipc://{d}/control.sock", "--pubsub",
                           f"ipc://{d}/events.sock", "--curve-key", secret, "--server-key",
                           secret).start()

    def trail(self) -> Events:
        events = Events(self.ctx, f"ipc://{self.node.dir}/events.sock", ("audit.",),
                        self.keys.client("readonly"))
        events.sync()
        return events

    def own_key(self) -> ClientKeys:
        return ClientKeys.load(self.keys.node_secret, self.keys.node_public)

    def control(self, keys: ClientKeys) -> Keyed:
        return Keyed(self.ctx, f"ipc://{self.node.dir}/control.sock", keys)

    def stop(self) -> None:
        if self.httpd is not None and self.httpd.proc is not None:
            self.httpd.stop()
        self.node.cleanup()
        self.ctx.destroy(linger=0)


@pytest.fixture(scope="module")
def secure(tmp_path_factory):
    s = Secure(tmp_path_factory.mktemp("webaudit"))
    try:
        s.start()
        yield s
    finally:
        s.stop()


def _record(trail: Events, command: str, timeout: float = 20.0) -> dict:
    seen = trail.collect(lambda topic, payload: topic.startswith("audit.") and
                         payload.get("command") == command, timeout)
    return seen[-1][1]


def test_a_dashboard_action_is_audited_with_the_web_user(secure):
    trail = secure.trail()
    try:
        c = secure.httpd.client()
        assert c.login("adm", USERS["adm"][1]).status == 302
        r = c.post("/node/secure/action", {"action": "incr", "watcher": "sl"})
        assert r.status == 303, (r.status, r.text[:300])
        record = _record(trail, "incr")
        assert (record["caller"], record["role"], record["on_behalf_of"]) == \
            ("circusd", "admin", "adm")
        assert "on_behalf_of" not in record["properties"]
        assert record["properties"]["name"] == "sl" and record["status"] == "ok"
        secure.node.wait_log("audit: circusd (admin) for web user 'adm'")
        line = next(x for x in secure.node.log_text().splitlines()
                    if "for web user 'adm'" in x)
        assert re.search(r"audit: circusd \(admin\) for web user 'adm'( from \S+)?: incr\("
                         r".*name='sl'.*-> ok$", line), line
        assert "on_behalf_of" not in line
    finally:
        trail.close()


def test_an_api_call_is_audited_with_the_token_user_whatever_the_body_says(secure):
    trail = secure.trail()
    try:
        body = json.dumps({"command": "decr", "properties": {"name": "sl",
                                                              "on_behalf_of": "adm"}})
        r = request(secure.httpd.port, "POST", "/api/command",
                    {"Authorization": f"Bearer {secure.token}",
                     "Content-Type": "application/json"}, body.encode())
        assert r.status == 200 and json.loads(r.body)["ok"], r.text
        record = _record(trail, "decr")
        assert (record["caller"], record["on_behalf_of"]) == ("circusd", "opal")
    finally:
        trail.close()


def test_a_pool_wide_rolling_restart_is_audited_with_the_web_user(secure):
    trail = secure.trail()
    try:
        r = request(secure.httpd.port, "POST", "/api/rolling",
                    {"Authorization": f"Bearer {secure.token}",
                     "Content-Type": "application/json"}, json.dumps({"watcher": "sl"}).encode())
        assert r.status == 202, r.text
        record = _record(trail, "restart")
        assert (record["caller"], record["on_behalf_of"]) == ("circusd", "opal")
        assert record["properties"]["name"] == "sl" and record["status"] == "ok"
    finally:
        trail.close()


def test_only_the_nodes_own_key_may_name_a_web_user(secure):
    trail = secure.trail()
    admin = secure.control(secure.keys.client("admin"))
    own = secure.control(secure.own_key())
    try:
        reply = admin.call("incr", name="sl", on_behalf_of="mallory")
        assert reply["status"] == "ok", reply
        record = _record(trail, "incr")
        assert (record["caller"], record["on_behalf_of"]) == ("admin", None)
        assert "on_behalf_of" not in record["properties"]
        assert reply["status"] == "ok"
        reply = own.call("decr", name="sl", on_behalf_of="bad name\nforged line")
        assert reply["status"] == "ok", reply
        record = _record(trail, "decr")
        assert (record["caller"], record["on_behalf_of"]) == ("circusd", None)
        assert own.call("incr", name="sl", on_behalf_of="carol.b@x")["status"] == "ok"
        assert _record(trail, "incr")["on_behalf_of"] == "carol.b@x"
        assert own.call("decr", name="sl")["status"] == "ok"        # a 0.19-style request
        assert _record(trail, "decr")["on_behalf_of"] is None
        log = secure.node.log_text()
        assert "mallory" not in log and "forged line" not in log
    finally:
        admin.close()
        own.close()
        trail.close()


def test_the_audit_line_names_the_web_user():
    who = Identity("circusd", Role.ADMIN, "k" * 40)
    record = audit_record("n1", who, None, "restart", {"name": "app"}, {"status": "ok"}, 0.1,
                          on_behalf_of="adm")
    assert record["on_behalf_of"] == "adm"
    assert describe(record) == "audit: circusd (admin) for web user 'adm': restart(name='app') -> ok"
    plain = audit_record("n1", who, "10.0.0.1", "stop", {}, {"status": "ok"}, 0.1)
    assert plain["on_behalf_of"] is None
    assert describe(plain) == "audit: circusd (admin) from 10.0.0.1: stop() -> ok"
