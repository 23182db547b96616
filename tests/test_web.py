"""circushttpd: handler tests with tornado's test client against two real circusd nodes (ipc://
endpoints in a temporary directory, circusd-stats publishing), a real pool file and a real
users file; the command line and ``[circus] httpd = true`` as subprocesses."""
from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import socket
import stat
import subprocess
import sys
import textwrap
import time
from http.cookies import SimpleCookie
from pathlib import Path
from urllib.parse import urlencode

import pytest

pytest.importorskip("tornado")
pytest.importorskip("jinja2")

from tornado.httpclient import HTTPRequest  # noqa: E402
from tornado.testing import AsyncHTTPTestCase, gen_test  # noqa: E402
from tornado.websocket import websocket_connect  # noqa: E402

from circus.web.app import WebOptions, make_app, sparkline_points  # noqa: E402
from circus.web.live import Live, LiveState, Source  # noqa: E402
from circus.web.nodes import pool_from_circus, pool_from_file  # noqa: E402
from circus.web.users import Users, UsersError, load_secret  # noqa: E402
from conftest import ROOT, Circusd  # noqa: E402

pytestmark = pytest.mark.real

PY = sys.executable
PASSWORDS = {"ada": "admin-pass-1", "otto": "operator-pass-1", "rita": "readonly-pass-1"}
ROLES = {"ada": "admin", "otto": "operator", "rita": "readonly"}

NODE = """
[circus]
endpoint = ipc://{d}/c.sock
pubsub_endpoint = ipc://{d}/p.sock
stats_endpoint = ipc://{d}/s.sock
statsd = true
stats_interval = 0.2
"""


def _node_config(d: Path, body: str) -> str:
    return textwrap.dedent(NODE.format(d=d)) + textwrap.dedent(body)


def _call(endpoint: str, *args: str) -> str:
    r = subprocess.run([PY, "-m", "circus.cli.circusctl", "--endpoint", endpoint, *args],
                       capture_output=True, text=True, timeout=30)
    return r.stdout.strip()


class Env:
    """Two nodes, a pool file naming them (and a third that does not exist), users."""

    def __init__(self, base: Path) -> None:
        self.base = base
        self.daemons: dict[str, Circusd] = {}

    def start(self) -> None:
        bodies = {
            "n1": """
                [watcher:sl]
                cmd = sleep 300
                numprocesses = 2
                [watcher:talk]
                cmd = sh -c 'while true; do echo line-$$; sleep 0.2; done'
                stdout_stream.class = StdoutStream
                [socket:web]
                host = 127.0.0.1
                port = 0
            """,
            "n2": """
                [watcher:sl]
                cmd = sleep 300
                [watcher:spare]
                cmd = sleep 300
            """,
        }
        for name, body in bodies.items():
            d = self.base / name
            d.mkdir()
            node = Circusd(d)
            node.start(_node_config(d, body), "--name", name)
            self.daemons[name] = node
        for name, node in self.daemons.items():
            node.wait(lambda n=name: (self.base / n / "c.sock").exists(), what=f"{name} socket")
            node.wait(lambda n=name: _call(self.endpoint(n), "numprocesses") not in ("", "0"),
                      what=f"{name} processes")
        text = "[meta]\ntimeout = 2\n"
        for name in self.daemons:
            d = self.base / name
            text += (f"[node:{name}]\nendpoint = ipc://{d}/c.sock\npubsub_endpoint = ipc://{d}/"
                     f"p.sock\nstats_endpoint = ipc://{d}/s.sock\n")
        self.pool = self.base / "pool.ini"
        self.pool.write_text(text + f"[node:gone]\nendpoint = ipc://{self.base}/none.sock\n"
                             "timeout = 0.5\n")
        self.bare_pool = self.base / "bare.ini"     # no stats endpoints
        self.bare_pool.write_text(f"[node:n2]\nendpoint = {self.endpoint('n2')}\n")
        self.users_path = self.base / "users.json"
        users = Users.load(str(self.users_path), missing_ok=True)
        for name, password in PASSWORDS.items():
            users.add(name, ROLES[name], password)
        self.tokens = {name: users.new_token(name) for name in PASSWORDS}
        self.secret = load_secret(str(self.base / "secret"))

    def endpoint(self, name: str) -> str:
        return f"ipc://{self.base / name}/c.sock"

    def stop(self) -> None:
        for node in self.daemons.values():
            node.cleanup()


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    e = Env(tmp_path_factory.mktemp("web"))
    try:
        e.start()
        yield e
    finally:
        e.stop()


class Browser:
    """Cookies kept between requests, as a browser would."""

    def __init__(self, case: "WebCase") -> None:
        self.case = case
        self.cookies: dict[str, str] = {}

    def headers(self, extra: dict | None = None) -> dict:
        h = dict(extra or {})
        if self.cookies:
            h["Cookie"] = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
        return h

    def keep(self, response) -> None:
        for header in response.headers.get_list("Set-Cookie"):
            cookie = SimpleCookie()
            cookie.load(header)
            for name, morsel in cookie.items():
                if morsel.value == "" or "expires=thu, 01 jan 1970" in header.lower() or \
                        morsel["max-age"] == "0":
                    self.cookies.pop(name, None)
                else:
                    self.cookies[name] = morsel.value

    def get(self, path: str, **kw):
        r = self.case.fetch(path, headers=self.headers(kw.pop("headers", None)),
                            follow_redirects=False, raise_error=False, **kw)
        self.keep(r)
        return r

    def post(self, path: str, fields: dict | None = None, body: str | None = None,
             xsrf: bool = True, **kw):
        fields = dict(fields or {})
        if xsrf and body is None:
            fields["_xsrf"] = self.xsrf()
        r = self.case.fetch(path, method="POST", body=body if body is not None
                            else urlencode(fields), headers=self.headers(kw.pop("headers", None)),
                            follow_redirects=False, raise_error=False, **kw)
        self.keep(r)
        return r

    def xsrf(self) -> str:
        if "_xsrf" not in self.cookies:
            self.get("/login")
        return self.cookies["_xsrf"]

    def login(self, name: str, password: str | None = None, next_: str = "/"):
        page = self.get("/login?" + urlencode({"next": next_}))
        assert page.code == 200
        return self.post("/login?" + urlencode({"next": next_}),
                         {"username": name, "password": password or PASSWORDS[name]})


class WebCase(AsyncHTTPTestCase):
    env: Env
    pool_file: str = ""
    live = True

    @pytest.fixture(autouse=True)
    def _env(self, env):
        type(self).env = env

    def get_app(self):
        pool = pool_from_file(self.pool_file or str(self.env.pool))
        self.app_, self.web = make_app(WebOptions(pool=pool, users_path=str(self.env.users_path),
                                                  secret=self.env.secret, live=self.live))
        return self.app_

    def setUp(self) -> None:
        super().setUp()

        async def start():
            self.web.start()
        self.io_loop.run_sync(start)

    def tearDown(self) -> None:
        self.io_loop.run_sync(self.web.aclose)
        super().tearDown()

    def browser(self, user: str | None = None) -> Browser:
        b = Browser(self)
        if user:
            r = b.login(user)
            assert r.code == 302, r.body
        return b

    def wait_for(self, predicate, timeout: float = 10.0, what: str = "condition"):
        deadline = time.monotonic() + timeout
        while True:
            value = predicate()
            if value:
                return value
            if time.monotonic() > deadline:
                pytest.fail(f"timed out after {timeout} s waiting for {what}")
            self.io_loop.run_sync(lambda: asyncio.sleep(0.05))

    def wait_stats(self, node: str, watcher: str) -> None:
        self.wait_for(lambda: self.web.live.state.latest(node, watcher), what=f"stats of "
                      f"{node}/{watcher}")


def rows(html: str, attr: str) -> dict[str, str]:
    """``data-<attr>`` value -> the row's HTML."""
    out = {}
    for m in re.finditer(rf'<tr data-{attr}="([^"]*)"(.*?)</tr>', html, re.S):
        out[m.group(1)] = m.group(0)
    return out


# -- anonymous ------------------------------------------------------------------------------------

class TestAnonymous(WebCase):
    def test_every_page_redirects_to_login_and_every_api_path_is_401(self):
        b = self.browser()
        for path in ("/", "/node/n1", "/node/n1/watcher/sl", "/node/nope", "/whatever"):
            r = b.get(path)
            assert r.code == 302, path
            assert r.headers["Location"] == "/login?" + urlencode({"next": path})
        for path in ("/api/status", "/api/nodes", "/api/unknown", "/metrics"):
            r = b.get(path)
            assert r.code == 401, path
            assert json.loads(r.body) == {"error": "login required"}
        r = b.post("/api/command", body=json.dumps({"node": "n1", "command": "list"}))
        assert (r.code, json.loads(r.body)["error"]) == (401, "login required")
        for path in ("/node/n1/action", "/node/n1/add", "/logout"):
            r = b.post(path, {"action": "stop", "watcher": "sl"}, xsrf=False)
            assert (r.code, r.headers.get("Location")) == (302, "/login"), path
        r = b.get("/ws?node=n1")
        assert r.code == 401

    def test_a_bad_bearer_token_is_401(self):
        r = self.browser().get("/api/status", headers={"Authorization": "Bearer nope"})
        assert r.code == 401


# -- login ----------------------------------------------------------------------------------------

class TestLogin(WebCase):
    def test_login_form_and_wrong_password(self):
        b = self.browser()
        page = b.get("/login").body.decode()
        for needle in ('id="login-form"', 'name="username"', 'name="password"',
                       'name="_xsrf"', 'id="login-submit"'):
            assert needle in page
        r = b.login("ada", "not-the-password")
        assert r.code == 200 and b'id="login-error"' in r.body
        assert "circushttpd_session" not in b.cookies
        r = b.login("nobody", "whatever-pass")
        assert r.code == 200 and b'id="login-error"' in r.body

    def test_login_goes_to_next_and_sets_a_strict_httponly_cookie(self):
        b = self.browser()
        b.get("/login")
        r = b.post("/login?next=%2Fnode%2Fn1", {"username": "ada", "password": PASSWORDS["ada"]})
        assert (r.code, r.headers["Location"]) == (302, "/node/n1")
        header = next(h for h in r.headers.get_list("Set-Cookie")
                      if h.startswith("circushttpd_session="))
        assert "httponly" in header.lower() and "samesite=strict" in header.lower()
        assert "secure" not in header.lower().replace("samesite", "")
        page = b.get("/node/n1").body.decode()
        assert '<span id="whoami" data-role="admin">ada</span>' in page

    def test_login_without_xsrf_is_refused(self):
        b = self.browser()
        r = b.post("/login", {"username": "ada", "password": PASSWORDS["ada"]}, xsrf=False)
        assert r.code == 403

    def test_next_never_leaves_the_site(self):
        for target in ("//evil.example/x", "https://evil.example/", "/\\evil"):
            b = self.browser()
            r = b.login("ada", next_=target)
            assert (r.code, r.headers["Location"]) == (302, "/"), target

    def test_logout_ends_the_session_even_for_a_copied_cookie(self):
        b = self.browser("otto")
        stolen = dict(b.cookies)
        assert b.get("/").code == 200
        r = b.post("/logout")
        assert (r.code, r.headers["Location"]) == (302, "/login")
        assert b.get("/").code == 302
        b.cookies = stolen
        assert b.get("/").code == 302

    def test_a_forged_session_cookie_is_refused(self):
        b = self.browser()
        b.cookies["circushttpd_session"] = '"{\\"u\\": \\"ada\\"}"'
        assert b.get("/").code == 302


# -- pages ----------------------------------------------------------------------------------------

class TestPages(WebCase):
    def test_overview_lists_the_nodes_with_state_and_counts(self):
        page = self.browser("rita").get("/").body.decode()
        assert '<span id="whoami" data-role="readonly">rita</span>' in page
        nodes = rows(page, "node")
        assert set(nodes) == {"n1", "n2", "gone"}
        assert 'data-state="active"' in nodes["n1"] and 'data-state="active"' in nodes["n2"]
        assert 'data-state="not_available"' in nodes["gone"]
        assert 'href="/node/n1"' in nodes["n1"] and 'class="node-link"' in nodes["n1"]
        watchers = re.search(r'<td class="watchers num">(\d+)</td>', nodes["n2"]).group(1)
        assert int(watchers) == 3        # sl, spare, circusd-stats
        assert re.search(r'<td class="processes num">\d+</td>', nodes["n1"])
        assert re.search(r'<td class="load num">\d', nodes["n1"])
        assert re.search(r'<td class="memory">\s*<svg class="bar"', nodes["n1"])

    def test_node_page_shows_watchers_sparklines_and_sockets(self):
        self.wait_stats("n1", "sl")
        page = self.browser("rita").get("/node/n1").body.decode()
        watchers = rows(page, "watcher")
        assert {"sl", "talk", "circusd-stats"} <= set(watchers)
        sl = watchers["sl"]
        assert 'data-state="active"' in sl
        assert re.search(r'<td class="numprocesses num">2 / 2</td>', sl)
        assert re.search(r'<td class="cpu num">\d+\.\d</td>', sl)
        assert '<svg class="sparkline" data-metric="cpu" data-watcher="sl" data-updates="0"' in sl
        assert 'data-metric="mem" data-watcher="sl"' in sl
        assert re.search(r'<polyline points="[\d.]+,[\d.]+', sl)
        assert 'class="watcher-link" href="/node/n1/watcher/sl"' in sl
        assert '<tr data-socket="web">' in page
        assert 'id="progress"' in page

    def test_readonly_gets_no_forms_operator_no_admin_forms(self):
        rita = self.browser("rita").get("/node/n1").body.decode()
        assert 'class="action"' not in rita and 'id="add-watcher"' not in rita
        watcher = self.browser("rita").get("/node/n1/watcher/sl").body.decode()
        assert 'class="action"' not in watcher
        otto = self.browser("otto").get("/node/n1").body.decode()
        for action in ("start", "stop", "restart", "reload", "incr", "decr"):
            assert f'data-action="{action}" data-watcher="sl"' in otto
        assert 'id="add-watcher"' not in otto and 'data-action="reloadconfig"' not in otto
        ada = self.browser("ada").get("/node/n1").body.decode()
        assert 'id="add-watcher"' in ada and 'data-action="reloadconfig"' in ada
        assert 'action="/node/n1/add"' in ada

    def test_watcher_page_processes_output_and_events(self):
        env, b = self.env, self.browser("otto")
        self.wait_for(lambda: "line-" in _call(env.endpoint("n1"), "tail", "talk"),
                      what="output of talk")
        page = b.get("/node/n1/watcher/talk").body.decode()
        (pid,) = rows(page, "pid")
        assert re.search(rf'<td class="pid num">{pid}</td>', page)
        assert re.search(r'<td class="age num" data-age="[\d.]+">\d+s</td>', page)
        assert re.search(rf'<form class="action"[^>]* data-action="kill"[^>]* data-pid="{pid}"',
                         page)
        output = re.search(r'<pre id="output">(.*?)</pre>', page, re.S).group(1)
        assert f"line-{pid}" in output
        # an event of the watcher, seen by circushttpd, is listed
        r = b.post("/node/n1/action", {"action": "restart", "watcher": "talk", "back": "watcher"})
        assert (r.code, r.headers["Location"]) == (303, "/node/n1/watcher/talk")
        self.wait_for(lambda: any(e["event"] == "spawn" for e in
                                  self.web.live.state.recent_events("n1", "talk")),
                      what="a spawn event")
        page = b.get("/node/n1/watcher/talk").body.decode()
        events = re.search(r'<ul id="events" class="events">(.*?)</ul>', page, re.S).group(1)
        assert "talk: started process" in events
        assert 'class="flash flash-ok"' in page and "restart talk: done" in page
        assert str(pid) not in rows(page, "pid")

    def test_an_unknown_node_or_watcher_is_404(self):
        b = self.browser("rita")
        assert b.get("/node/nope").code == 404
        assert b.get("/node/n1/watcher/nope").code == 404

    def test_a_node_that_is_down_still_renders(self):
        page = self.browser("rita").get("/node/gone").body.decode()
        assert "not available" in page and "The node did not answer" in page

    def test_names_are_escaped(self):
        # a hostile watcher name added by an admin is shown as text, never as markup
        env, name = self.env, "x<script>alert(1)<"
        r = self.browser("ada").post("/api/command", body=json.dumps(
            {"node": "n2", "command": "add", "properties": {"name": name, "cmd": "sleep 300"}}),
            headers={"Authorization": f"Bearer {env.tokens['ada']}"})
        assert r.code == 200 and json.loads(r.body)["ok"], r.body
        try:
            page = self.browser("rita").get("/node/n2").body.decode()
            assert "<script>alert" not in page
            assert 'data-watcher="x&lt;script&gt;alert(1)&lt;"' in page
        finally:
            _call(env.endpoint("n2"), "rm", name)


# -- actions --------------------------------------------------------------------------------------

class TestActions(WebCase):
    def numprocesses(self, node: str, watcher: str) -> int:
        return int(_call(self.env.endpoint(node), "numprocesses", watcher))

    def test_operator_incr_and_decr_without_script_then_with_json(self):
        b = self.browser("otto")
        before = self.numprocesses("n2", "spare")
        r = b.post("/node/n2/action", {"action": "incr", "watcher": "spare"})
        assert (r.code, r.headers["Location"]) == (303, "/node/n2")
        assert self.numprocesses("n2", "spare") == before + 1
        r = b.post("/node/n2/action", {"action": "decr", "watcher": "spare"},
                   headers={"Accept": "application/json"})
        body = json.loads(r.body)
        assert r.code == 200 and body["ok"] and body["reply"]["numprocesses"] == before
        assert self.numprocesses("n2", "spare") == before

    def test_stop_and_start_wait_for_the_result(self):
        b = self.browser("otto")
        r = b.post("/node/n2/action", {"action": "stop", "watcher": "spare"})
        assert r.code == 303
        assert _call(self.env.endpoint("n2"), "status", "spare") == "stopped"
        page = b.get("/node/n2").body.decode()
        assert 'data-state="stopped"' in rows(page, "watcher")["spare"]
        r = b.post("/node/n2/action", {"action": "start", "watcher": "spare"},
                   headers={"Accept": "application/json"})
        assert json.loads(r.body)["ok"]
        assert _call(self.env.endpoint("n2"), "status", "spare") == "active"

    def test_kill_a_process(self):
        env = self.env
        pids = _call(env.endpoint("n2"), "list", "spare").split(",")
        r = self.browser("otto").post("/node/n2/action", {"action": "kill", "watcher": "spare",
                                                         "pid": pids[0].strip(),
                                                         "back": "watcher"})
        assert (r.code, r.headers["Location"]) == (303, "/node/n2/watcher/spare")
        self.wait_for(lambda: pids[0].strip() not in _call(env.endpoint("n2"), "list", "spare"),
                      what="the killed pid gone")

    def test_the_server_refuses_what_the_role_does_not_allow(self):
        env = self.env
        before = _call(env.endpoint("n2"), "list", "spare")
        rita = self.browser("rita")
        r = rita.post("/node/n2/action", {"action": "restart", "watcher": "spare"})
        assert r.code == 403
        r = rita.post("/node/n2/action", {"action": "incr", "watcher": "spare"},
                      headers={"Accept": "application/json"})
        assert r.code == 403 and json.loads(r.body)["error"] == "forbidden"
        otto = self.browser("otto")
        assert otto.post("/node/n2/action", {"action": "reloadconfig"}).code == 403
        assert otto.post("/node/n2/add", {"name": "evil", "cmd": "sleep 1"}).code == 403
        assert _call(env.endpoint("n2"), "list", "spare") == before
        assert "evil" not in _call(env.endpoint("n2"), "list")

    def test_a_post_without_xsrf_is_403_and_does_nothing(self):
        env = self.env
        before = _call(env.endpoint("n2"), "list", "spare")
        b = self.browser("ada")
        r = b.post("/node/n2/action", {"action": "stop", "watcher": "spare"}, xsrf=False)
        assert r.code == 403
        r = b.post("/node/n2/action", {"action": "stop", "watcher": "spare",
                                       "_xsrf": "2|00|00|00"}, xsrf=False)
        assert r.code == 403
        assert _call(env.endpoint("n2"), "list", "spare") == before

    def test_bad_action_forms_are_400(self):
        b = self.browser("ada")
        assert b.post("/node/n2/action", {"action": "explode", "watcher": "spare"}).code == 400
        assert b.post("/node/n2/action", {"action": "stop"}).code == 400
        assert b.post("/node/n2/action", {"action": "kill", "watcher": "spare",
                                          "pid": "x"}).code == 400
        assert b.post("/node/n2/add", {"name": "a/b", "cmd": "sleep 1"}).code == 400
        assert b.post("/node/n2/add", {"name": "ok", "cmd": ""}).code == 400

    def test_admin_adds_a_watcher_and_reloads_the_config(self):
        env, b = self.env, self.browser("ada")
        r = b.post("/node/n2/add", {"name": "added", "cmd": "sleep", "args": "300",
                                    "numprocesses": "2"})
        try:
            assert (r.code, r.headers["Location"]) == (303, "/node/n2")
            assert int(_call(env.endpoint("n2"), "numprocesses", "added")) == 2
            page = b.get("/node/n2").body.decode()
            assert "added" in rows(page, "watcher")
        finally:
            _call(env.endpoint("n2"), "rm", "added")
        r = b.post("/node/n2/action", {"action": "reloadconfig"},
                   headers={"Accept": "application/json"})
        assert json.loads(r.body)["ok"], r.body


# -- API ------------------------------------------------------------------------------------------

class TestApi(WebCase):
    def api(self, user: str, command: str, node: str | None = "n2", **props):
        body = {"command": command, "properties": props}
        if node:
            body["node"] = node
        return self.fetch("/api/command", method="POST", body=json.dumps(body),
                          headers={"Authorization": f"Bearer {self.env.tokens[user]}"},
                          raise_error=False)

    def test_status_by_token_and_by_session(self):
        r = self.fetch("/api/status", headers={"Authorization":
                                               f"Bearer {self.env.tokens['rita']}"})
        status = json.loads(r.body)
        assert status["nodes"]["n1"]["state"] == "active"
        assert status["nodes"]["n1"]["watchers"]["sl"] == "active"
        assert status["nodes"]["gone"]["state"] == "not_available"
        r = self.browser("rita").get("/api/status")
        assert json.loads(r.body)["nodes"]["n2"]["watchers"]["spare"] in ("active", "stopped")

    def test_command_with_the_same_roles(self):
        r = self.api("rita", "list")
        assert r.code == 200 and "spare" in json.loads(r.body)["reply"]["watchers"]
        r = self.api("rita", "incr", name="spare")
        assert r.code == 403 and json.loads(r.body)["error"] == "forbidden"
        r = self.api("otto", "add", name="x", cmd="sleep 1")
        assert r.code == 403
        r = self.api("otto", "numprocesses", name="spare")
        assert json.loads(r.body)["reply"]["numprocesses"] >= 0

    def test_a_session_post_needs_the_xsrf_header_a_token_does_not(self):
        b = self.browser("otto")
        body = json.dumps({"node": "n2", "command": "list"})
        assert b.post("/api/command", body=body).code == 403
        r = b.post("/api/command", body=body, headers={"X-XSRFToken": b.cookies["_xsrf"]})
        assert r.code == 200 and json.loads(r.body)["ok"]

    def test_bad_requests(self):
        assert self.api("ada", "nosuchcommand").code == 400
        assert self.api("ada", "list", node="nope").code == 404
        r = self.fetch("/api/command", method="POST", body="{not json",
                       headers={"Authorization": f"Bearer {self.env.tokens['ada']}"},
                       raise_error=False)
        assert r.code == 400 and "not JSON" in json.loads(r.body)["reason"]

    def test_a_node_that_is_down_is_not_an_exception(self):
        r = self.api("rita", "list", node="gone")
        body = json.loads(r.body)
        assert r.code == 502 and body["state"] == "not_available" and body["reply"] is None

    def test_metrics_for_the_pool(self):
        self.wait_stats("n1", "sl")
        self.wait_stats("n2", "sl")
        self.wait_for(lambda: self.web.live.state.process_samples("n1", "sl", time.time()),
                      what="process samples")
        r = self.fetch("/metrics", headers={"Authorization": f"Bearer {self.env.tokens['rita']}"})
        text = r.body.decode()
        assert r.headers["Content-Type"].startswith("text/plain")
        assert 'circus_node_up{node="n1"} 1.0' in text and 'circus_node_up{node="gone"} 0.0' in text
        assert re.search(r'circus_watcher_cpu_percent\{node="n2",watcher="sl"\}', text)
        assert re.search(r'circus_process_cpu_percent\{node="n1",pid="\d+",watcher="sl"', text)
        assert text.count("# TYPE circus_watcher_cpu_percent ") == 1


class TestNoStats(WebCase):
    @pytest.fixture(autouse=True)
    def _bare(self, env):
        type(self).pool_file = str(env.bare_pool)

    def test_metrics_is_404_without_stats_and_pages_still_work(self):
        token = self.env.tokens["rita"]
        r = self.fetch("/metrics", headers={"Authorization": f"Bearer {token}"},
                       raise_error=False)
        assert r.code == 404
        page = self.browser("rita").get("/node/n2").body.decode()
        assert "spare" in rows(page, "watcher") and "No stats stream" in page


# -- live -----------------------------------------------------------------------------------------

class TestLive(WebCase):
    @gen_test(timeout=20)
    async def test_websocket_pushes_stats_and_events(self):
        b = Browser(self)
        page = await self.http_client.fetch(self.get_url("/login"), raise_error=False)
        b.keep(page)
        r = await self.http_client.fetch(self.get_url("/login"), method="POST",
                                         body=urlencode({"username": "otto", "password":
                                                         PASSWORDS["otto"],
                                                         "_xsrf": b.cookies["_xsrf"]}),
                                         headers=b.headers(), follow_redirects=False,
                                         raise_error=False)
        b.keep(r)
        url = self.get_url("/ws?node=n2").replace("http://", "ws://")
        ws = await websocket_connect(HTTPRequest(url, headers=b.headers()))
        try:
            async def first(predicate):
                while True:
                    message = json.loads(await ws.read_message())
                    if predicate(message):
                        return message
            stats = await asyncio.wait_for(first(lambda m: m["type"] == "stats"
                                                 and m["watcher"] == "sl"), 10)
            assert stats["node"] == "n2" and isinstance(stats["cpu"], float)
            assert "pid" not in stats            # processes only on a watcher's page
            await asyncio.get_running_loop().run_in_executor(
                None, _call, self.env.endpoint("n2"), "incr", "spare")
            event = await asyncio.wait_for(first(lambda m: m["type"] == "event"), 10)
            assert event["node"] == "n2" and event["topic"].startswith("watcher.spare.")
            assert "data" in event
        finally:
            ws.close()
            await asyncio.get_running_loop().run_in_executor(
                None, _call, self.env.endpoint("n2"), "decr", "spare")

    @gen_test(timeout=20)
    async def test_a_watcher_page_socket_gets_its_processes_and_output_lines(self):
        b = Browser(self)
        b.keep(await self.http_client.fetch(self.get_url("/login"), raise_error=False))
        b.keep(await self.http_client.fetch(
            self.get_url("/login"), method="POST", headers=b.headers(), follow_redirects=False,
            raise_error=False, body=urlencode({"username": "rita", "password": PASSWORDS["rita"],
                                               "_xsrf": b.cookies["_xsrf"]})))
        url = self.get_url("/ws?node=n1&watcher=talk").replace("http://", "ws://")
        ws = await websocket_connect(HTTPRequest(url, headers=b.headers()))
        seen: dict[str, dict] = {}
        try:
            async def collect():
                while not {"output", "process"} <= set(seen):
                    m = json.loads(await ws.read_message())
                    if m["type"] == "output":
                        assert m["watcher"] == "talk" and m["node"] == "n1"
                        seen["output"] = m
                    elif m["type"] == "stats" and "pid" in m:
                        assert m["watcher"] == "talk"
                        seen["process"] = m
            await asyncio.wait_for(collect(), 10)
            assert seen["output"]["line"] == f"line-{seen['output']['pid']}"
        finally:
            ws.close()
        # the last page gone, the subscription to the output lines is dropped
        deadline = time.monotonic() + 5
        while self.web.live._following and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        assert not self.web.live._following

    @gen_test(timeout=10)
    async def test_websocket_needs_a_session(self):
        url = self.get_url("/ws?node=n1").replace("http://", "ws://")
        with pytest.raises(Exception) as info:
            await websocket_connect(url)
        assert "401" in str(info.value)


# -- users ----------------------------------------------------------------------------------------

class TestUsersLive(WebCase):
    def test_a_role_change_and_a_new_password_apply_at_once(self):
        from dataclasses import replace

        from circus.protocol import Role
        env = self.env
        users = Users.load(str(env.users_path))
        users.add("temp", "admin", "temp-pass-123")
        b = Browser(self)
        try:
            assert b.login("temp", "temp-pass-123").code == 302
            assert 'id="add-watcher"' in b.get("/node/n2").body.decode()
            users.users["temp"] = replace(users.users["temp"], role=Role.READONLY)
            users.save()
            page = b.get("/node/n2").body.decode()
            assert 'data-role="readonly"' in page and 'class="action"' not in page
            users.add("temp", "readonly", "another-pass-123")    # a new password ends sessions
            assert b.get("/node/n2").code == 302
        finally:
            users = Users.load(str(env.users_path))
            users.users.pop("temp", None)
            users.save()


def test_users_file_is_private_and_holds_no_password(tmp_path):
    path = tmp_path / "u.json"
    r = subprocess.run([PY, "-m", "circus.cli.httpd", "adduser", "bob", "--role", "operator",
                        "--users", str(path), "--password-stdin"], input="s3cret-password\n",
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    text = path.read_text()
    assert "s3cret-password" not in text
    entry = json.loads(text)["users"]["bob"]
    assert entry["role"] == "operator" and len(entry["password"]["salt"]) == 32
    users = Users.load(str(path))
    assert users.authenticate("bob", "s3cret-password") and not users.authenticate("bob", "x" * 9)
    r = subprocess.run([PY, "-m", "circus.cli.httpd", "token", "bob", "--users", str(path)],
                       capture_output=True, text=True, timeout=30)
    token = r.stdout.strip()
    assert r.returncode == 0 and len(token) > 30 and token not in path.read_text()
    assert Users.load(str(path)).by_token(token).name == "bob"
    for argv, message in ((["token", "alice"], "no user 'alice'"),
                          (["adduser", "x/y", "--role", "admin"], "invalid user name"),
                          (["adduser", "carl", "--role", "root"], "invalid choice")):
        r = subprocess.run([PY, "-m", "circus.cli.httpd", *argv, "--users", str(path),
                            *(["--password-stdin"] if argv[0] == "adduser" else [])],
                           input="long-enough-pw\n", capture_output=True, text=True, timeout=30)
        assert r.returncode == 2 and message in r.stderr and "Traceback" not in r.stderr
    r = subprocess.run([PY, "-m", "circus.cli.httpd", "adduser", "dan", "--role", "admin",
                        "--users", str(path), "--password-stdin"], input="short\n",
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 2 and "8 to 1024 characters" in r.stderr


def test_secret_is_generated_once_private(tmp_path):
    path = tmp_path / "s"
    first = load_secret(str(path))
    assert len(first) == 64 and stat.S_IMODE(path.stat().st_mode) == 0o600
    assert load_secret(str(path)) == first
    os.chmod(path, 0o644)
    with pytest.raises(UsersError, match="readable by others"):
        load_secret(str(path))


def test_a_broken_users_file_lets_nobody_in(tmp_path):
    path = tmp_path / "u.json"
    users = Users.load(str(path), missing_ok=True)
    users.add("a", "admin", "password-123")
    path.write_text("{broken")
    assert "invalid JSON" in users.refresh()
    assert users.get("a") is None


# -- pure pieces ----------------------------------------------------------------------------------

def test_sparkline_points_scale_to_the_box():
    assert sparkline_points([]) == ""
    series = [(0, 0.0, 1.0), (1, 50.0, 2.0), (2, 100.0, 4.0)]
    points = [tuple(map(float, p.split(","))) for p in sparkline_points(series, "cpu").split()]
    assert points[-1] == (120.0, 1.0) and points[0][1] == 23.0 and points[0][0] < points[1][0]
    mem = sparkline_points(series, "mem").split()
    assert mem[-1] == "120.0,1.0"


def test_live_state_is_bounded_and_maps_topics():
    state = LiveState(history=3, events=2)
    live = Live([], state, clock=lambda: 100.0)
    src = Source("stats", "ipc://x", "web1")
    for i in range(5):
        live.feed(src, "othername/stat.app", {"cpu": float(i), "mem": 1.0})
    assert [s[1] for s in state.watcher_series("web1", "app")] == [2.0, 3.0, 4.0]
    msg = live.feed(src, "othername/stat.app.42", {"cpu": 3.0, "mem": 0.5, "age": 7})
    assert msg == {"type": "stats", "node": "web1", "watcher": "app", "pid": 42, "cpu": 3.0,
                   "mem": 0.5, "age": 7.0, "rss": None, "time": 100.0}
    assert live.feed(src, "stat.app.42", {"cpu": 1.0, "node": "x"}) is None   # legacy copy
    assert live.feed(src, "othername/stat.sockets.9", {"name": "web", "queue": 3})["fd"] == 9
    events = Source("events", "ipc://y", "web1")
    for pid in (1, 2, 42):
        live.feed(events, f"watcher.app.{'reap' if pid == 42 else 'spawn'}",
                  {"process_pid": pid})
    assert [e["event"] for e in state.recent_events("web1", "app")] == ["spawn", "reap"]
    assert 42 not in state.process_samples("web1", "app", 100.0)
    proxy = Source("events", "ipc://z")
    msg = live.feed(proxy, "web2/watcher.db.stop", {})
    assert (msg["node"], msg["watcher"], msg["text"]) == ("web2", "db", "db: every process stopped")


# -- the command line -----------------------------------------------------------------------------

def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_http(proc, url: str, timeout: float = 15.0) -> bytes:
    import urllib.error
    import urllib.request
    deadline = time.monotonic() + timeout
    while True:
        if proc is not None and proc.poll() is not None:
            pytest.fail(f"exited with {proc.returncode} while waiting for {url}")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                return response.read()
        except (urllib.error.URLError, ConnectionError, OSError) as exc:
            if isinstance(exc, urllib.error.HTTPError):
                exc.close()              # it holds the connection (a ResourceWarning at its GC)
            if time.monotonic() > deadline:
                pytest.fail(f"nothing answered at {url} within {timeout} s")
            time.sleep(0.05)


def test_cli_serves_one_node_named_by_nodeinfo_and_stops_on_sigterm(env, tmp_path):
    proc = subprocess.Popen([PY, "-m", "circus.cli.httpd", "--endpoint", env.endpoint("n1"),
                             "--pubsub", f"ipc://{env.base}/n1/p.sock", "--port", "0",
                             "--users", str(env.users_path), "--log-output", str(tmp_path / "log"),
                             "--secret-file", str(tmp_path / "secret")],
                            stdout=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()
        m = re.fullmatch(r"circushttpd listening on http://127\.0\.0\.1:(\d+)/\n", line)
        assert m, line
        base = f"http://127.0.0.1:{m.group(1)}"
        assert b'id="login-form"' in _wait_http(proc, base + "/login")
        import urllib.request
        cookies = urllib.request.HTTPCookieProcessor()
        opener = urllib.request.build_opener(cookies)
        html = opener.open(base + "/login").read().decode()
        xsrf = re.search(r'name="_xsrf" value="([^"]+)"', html).group(1)
        page = opener.open(base + "/login", data=urlencode(
            {"_xsrf": xsrf, "username": "rita", "password": PASSWORDS["rita"]}).encode()).read()
        assert '<tr data-node="n1" data-state="active" data-health="ok">' in page.decode()
        assert stat.S_IMODE((tmp_path / "secret").stat().st_mode) == 0o600
    finally:
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(15)
        proc.stdout.close()
        assert code == 0


@pytest.mark.parametrize("argv, message", [
    ([], "give --config"),
    (["--pool", "p.ini", "--endpoint", "ipc://x"], "exclude each other"),
    (["--pool", "missing.ini"], "cannot read the pool file"),
    (["--endpoint", "http://x"], "expected tcp://"),
    (["--endpoint", "ipc://x", "--curve-key", "k"], "go together"),
    (["--stats", "ipc://x", "--pool", "p.ini"], "go with --endpoint"),
    (["--endpoint", "ipc://x", "--port", "70000"], "--port must be"),
    (["--endpoint", "ipc://x", "--trusted-proxy", "proxy.example"], "not an IP address"),
])
def test_cli_usage_errors_exit_2(tmp_path, argv, message):
    r = subprocess.run([PY, "-m", "circus.cli.httpd", *argv, "--users", str(tmp_path / "u"),
                        "--port" if "--port" not in argv else "--host",
                        "0" if "--port" not in argv else "127.0.0.1"],
                       capture_output=True, text=True, timeout=30, cwd=tmp_path)
    assert r.returncode == 2, r.stderr
    assert message in r.stderr and "Traceback" not in r.stderr


def test_config_mode_reads_endpoints_and_stats_from_circusd_config(env):
    pool = pool_from_circus(str(env.daemons["n1"].config))
    (spec,) = pool.nodes.values()
    assert spec.endpoint == env.endpoint("n1")
    assert spec.stats_endpoint == f"ipc://{env.base}/n1/s.sock"


def test_the_web_example_runs_circushttpd_as_a_helper(circusd, tmp_path):
    """examples/web.ini with its endpoints moved to tmp_path: circusd starts circushttpd."""
    port = _free_port()
    text = (ROOT / "examples" / "web.ini").read_text()
    text = re.sub(r"^(endpoint|pubsub_endpoint|stats_endpoint) = .*$",
                  lambda m: f"{m.group(1)} = ipc://{tmp_path}/{m.group(1)}.sock", text, flags=re.M)
    text = re.sub(r"^httpd_port = .*$", f"httpd_port = {port}", text, flags=re.M)
    text = re.sub(r"^port = 8000$", "port = 0", text, flags=re.M)
    text = text.replace("examples/webapp.py", str(ROOT / "examples" / "webapp.py"))
    users = Users.load(str(tmp_path / "circushttpd.users"), missing_ok=True)
    users.add("ada", "admin", PASSWORDS["ada"])
    d = circusd(text)
    d.wait(lambda: (tmp_path / "endpoint.sock").exists(), what="control socket")
    assert b'id="login-form"' in _wait_http(d.proc, f"http://127.0.0.1:{port}/login", 20)
    assert "circushttpd" in _call(f"ipc://{tmp_path}/endpoint.sock", "list")
    assert d.stop() == 0


def test_a_curve_protected_node_is_reached_with_the_keys(circusd, tmp_path):
    import asyncio

    from circus.security.keys import write_keypair
    from circus.web.live import LiveState
    from circus.web.nodes import Backend, open_pool, pool_from_endpoint
    (tmp_path / "clients" / "admin").mkdir(parents=True)
    server_public, server_secret = write_keypair(str(tmp_path / "keys"), "node")
    client_public, client_secret = write_keypair(str(tmp_path / "keys"), "web")
    os.replace(client_public, tmp_path / "clients" / "admin" / "web.key")
    d = circusd(f"""
        [circus]
        endpoint = ipc://{tmp_path}/c.sock
        pubsub_endpoint = ipc://{tmp_path}/p.sock
        curve_secret_key = {server_secret}
        curve_clients = {tmp_path}/clients
        [watcher:sl]
        cmd = sleep 300
    """.replace("\n        ", "\n"))
    d.wait(lambda: (tmp_path / "c.sock").exists(), what="control socket")

    async def states(client_key, server_key):
        pool = pool_from_endpoint(f"ipc://{tmp_path}/c.sock", None, None, client_key,
                                  server_key, timeout=1.5, name="secure")
        backend = Backend(open_pool(pool), LiveState())
        try:
            return (await backend.status())["nodes"]["secure"]
        finally:
            backend.close()
    with_keys = asyncio.run(states(client_secret, server_public))
    assert with_keys["state"] == "active" and with_keys["watchers"]["sl"] == "active"
    without = asyncio.run(states(None, None))
    assert without["state"] != "active" and without["watchers"] == {}


def test_the_core_never_imports_the_web_side(tmp_path):
    """circusd with httpd = true only builds a command line: tornado, jinja2 and circus.web
    stay out of its process (they are an optional extra)."""
    config = tmp_path / "c.ini"
    config.write_text("[circus]\nhttpd = true\n[watcher:a]\ncmd = sleep 1\n")
    code = ("import os, sys; from circus.config import load_config; import circus.cli.circusd; "
            f"c = load_config({str(config)!r}, os.environ); "
            "print([w.name for w in c.watchers]); "
            "print(sorted(m for m in ('tornado', 'jinja2', 'circus.web') if m in sys.modules))")
    r = subprocess.run([PY, "-c", code], capture_output=True, text=True, timeout=30)
    assert r.stdout.splitlines() == ["['a', 'circushttpd']", "[]"], r.stderr
