"""circushttpd tells the operator the truth: an action's banner reports the node's reply (red
for an error reply with its reason and last output lines, amber for a warning, green only for
ok); badges follow circusd's ``trouble``; a crash's output is at hand on the watcher and node
pages; the pool page counts each node's unhealthy watchers; a node that is down offers no
admin form.

Pure units (banners, badges, event words) first, then the pages and forms with tornado's
test client against a real circusd whose watchers really crash, fail to start, or keep no
output (the browser side is in test_web_browser.py)."""
from __future__ import annotations

import json
import re
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

pytest.importorskip("tornado")
pytest.importorskip("jinja2")

from circus.web.badges import node_health, process_badge, watcher_badge  # noqa: E402
from circus.web.banners import banner  # noqa: E402
from circus.web.handlers import FLASH_MAX, _flash_text  # noqa: E402
from circus.web.live import LiveState  # noqa: E402
from circus.web.users import Users, load_secret  # noqa: E402
from circus.web.words import Signalled, describe, exit_words  # noqa: E402
from conftest import Circusd  # noqa: E402
from test_web import PASSWORDS, ROLES, WebCase, rows  # noqa: E402

PY = sys.executable


# -- banners (pure) -------------------------------------------------------------------------------

def test_an_error_reply_is_red_with_its_reason_and_output_lines():
    reply = {"status": "error", "code": "not_ready", "reason":
             "once: process 7005 exit code 2 0.00 s after it started; last output lines:\n"
             "  Traceback (most recent call last):\n    File \"x.py\"\n  OSError: boom"}
    b = banner("start once", "start", reply=reply, state="active", took=0.2)
    assert b["kind"] == "error" and b["title"] == "start once: failed"
    assert b["reason"] == "once: process 7005 exit code 2 0.00 s after it started; last " \
                          "output lines:"
    # the lines keep their own indentation, less the common one
    assert b["lines"] == ["Traceback (most recent call last):", "  File \"x.py\"", "OSError: boom"]
    assert b["code"] == "not_ready" and b["summary"] == ""


def test_an_add_that_could_not_start_says_the_watcher_was_added():
    reply = {"status": "error", "code": "spawn_failed",
             "reason": "bogus: 1 of 1 process(es) could not be started: process 1: command not "
                       "found: '/no/such/binary'; circusd retries it, see its status"}
    b = banner("add bogus", "add", reply=reply, state="active", took=0.1)
    assert (b["kind"], b["title"]) == ("error", "add bogus: added, but it failed to start")
    assert "command not found: '/no/such/binary'" in b["reason"] and b["lines"] == []
    refused = banner("add x", "add", reply={"status": "error", "code": "invalid_option",
                                            "reason": "numprocesses: bad"}, state="active",
                     took=0.0)
    assert refused["title"] == "add x: failed"


def test_a_warning_is_amber_and_ok_is_green_with_what_was_done():
    b = banner("decr zero", "decr", reply={"status": "ok", "numprocesses": 0, "warning":
                                           "zero had numprocesses = 0: decr 1 leaves 0, not a "
                                           "negative number"}, state="active", took=0.01)
    assert b["kind"] == "warning" and b["title"] == "decr zero: done in 0.0 s, with a warning"
    assert b["reason"].startswith("zero had numprocesses = 0") and b["summary"] == \
        "it now wants 0 processes"
    single = banner("incr one", "incr", reply={"status": "ok", "numprocesses": 1,
                                               "singleton": True}, state="active", took=0.0)
    assert single["kind"] == "warning" and "singleton" in single["reason"]
    ok = banner("restart web", "restart", reply={"status": "ok", "info": {
        "stopped": [10, 11], "started": [20, 21], "kept": []}}, state="active", took=1.24)
    assert (ok["kind"], ok["title"]) == ("ok", "restart web: done in 1.2 s")
    assert ok["summary"] == "replaced 2 processes: stopped 10, 11; started 20, 21"
    hup = banner("reload web", "reload", reply={"status": "ok", "info": {
        "stopped": [], "started": [], "kept": [10]}}, state="active", took=0.0)
    assert hup["summary"].startswith("sent SIGHUP to 1 process (10)")
    assert banner("start w", "start", reply={"status": "ok", "info": {"started": [],
                                                                       "kept": [5]}},
                  state="active", took=0)["summary"] == "it was already running (1 process)"
    conf = banner("reloadconfig", "reloadconfig", reply={"status": "ok", "changes": [
        "+ watcher a (added)", "= watcher b: numprocesses 1 -> 2 (resize)"]}, state="active",
        took=0)
    assert conf["summary"] == "applied 2 changes" and conf["lines"][0] == "+ watcher a (added)"
    same = banner("reloadconfig", "reloadconfig", reply={"status": "ok", "changes":
                                                          ["no change"]}, state="active", took=0)
    assert same["kind"] == "ok" and same["summary"].startswith("no change")


def test_no_reply_is_red_and_an_unanswered_action_may_still_run():
    gone = banner("stop web", "stop", reply=None, state="not_available", took=3.0,
                  error="cannot connect to ipc:///x within 3 s")
    assert gone["kind"] == "error" and gone["title"] == "stop web: failed: the node is not " \
                                                        "available"
    assert gone["reason"] == "cannot connect to ipc:///x within 3 s"
    slow = banner("restart web", "restart", reply=None, state="unresponsive", took=120.0,
                  error="connected, but no answer to 'restart' within 120 s")
    assert slow["kind"] == "error" and slow["title"] == "restart web: no answer within 120 s"
    assert "may still be running" in slow["reason"]


def test_the_flash_cookie_keeps_a_bounded_banner():
    long = {"kind": "error", "title": "start x: failed", "reason": "é" * 5000, "summary": "",
            "lines": [f"line {i} " + "x" * 150 for i in range(20)]}
    text = _flash_text(long)
    assert len(text) <= FLASH_MAX
    kept = json.loads(text)
    assert kept["kind"] == "error" and kept["title"] == "start x: failed"
    assert kept["reason"].endswith("...") and kept["lines"] == []
    short = {"kind": "ok", "title": "t", "reason": "", "summary": "s", "lines": ["a", "b"]}
    assert json.loads(_flash_text(short)) == short


# -- badges (pure) --------------------------------------------------------------------------------

@pytest.mark.parametrize("state, trouble, word, tone", [
    ("active", None, "active", "ok"),
    ("active", "backoff", "backoff", "warn"),
    ("active", "exited", "exited", "warn"),
    ("fatal", "fatal", "fatal", "bad"),
    ("fatal", None, "fatal", "bad"),
    ("stopped", None, "stopped", "idle"),
    ("starting", None, "starting", "busy"),
    ("stopping", None, "stopping", "busy"),
])
def test_a_watcher_badge_is_green_only_without_trouble(state, trouble, word, tone):
    b = watcher_badge(state, trouble, "1 process(es) in backoff: exit code 3")
    assert (b.word, b.tone) == (word, tone)
    if trouble in ("backoff", "exited"):
        assert b.title == f"{state}, but 1 process(es) in backoff: exit code 3"


def test_process_badges_and_node_health():
    assert [process_badge(s).tone for s in ("running", "starting", "backoff", "fatal",
                                            "stopped")] == ["ok", "busy", "warn", "bad", "idle"]
    assert process_badge("exited", 3).tone == "warn" and process_badge("exited", 0).tone == "idle"
    health = node_health({"b": {"state": "active", "trouble": "backoff", "reason": "r1"},
                          "a": {"state": "fatal", "trouble": "fatal", "reason": "r2"},
                          "c": {"state": "active", "trouble": None, "reason": "only a note"}},
                         {"a": "fatal", "b": "active", "c": "active", "d": "fatal"})
    assert health.troubled == (("a", "fatal", "r2"), ("d", "fatal", ""), ("b", "backoff", "r1"))
    assert health.tone == "bad" and health.summary == "2 fatal, 1 in backoff"
    assert node_health({"x": {"trouble": "exited"}}).tone == "warn"
    assert node_health({}, {"x": "active"}).summary == "healthy"


# -- event words (pure) ---------------------------------------------------------------------------

def test_events_read_as_what_happened():
    assert describe("web", "spawn", {"process_pid": 41}) == "web: started process 41"
    assert describe("web", "ready", {"process_pid": 41}) == "web: process 41 is ready"
    assert describe("web", "kill", {"process_pid": 41}) == "web: stopping process 41"
    assert describe("web", "kill", {"process_pid": 41}, second_kill=True) == \
        "web: process 41 did not stop in time: killed (SIGKILL)"
    assert describe("web", "reap", {"process_pid": 41, "exit_code": -15}) == \
        "web: process 41 ended (killed by SIGTERM)"
    assert describe("web", "progress", {"done": 1, "total": 2}) == "web: 1 of 2 processes replaced"
    assert describe("web", "reload", {}) == "web: every process renewed"
    assert describe("web", "backoff", {"process_pid": None, "reason": "command not found: 'x'; "
                                       "respawn in 0.10 s", "failures": 1}) == \
        "web: could not start a process: command not found: 'x'; respawn in 0.10 s (failure 1)"
    assert describe("web", "state", {"state": "fatal", "reason": "exited 6 times"}) == \
        "web: gave up (fatal): exited 6 times"
    assert describe("web", "state", {"state": "active"}) == "web: running"
    assert describe("web", "updated", {"key": "numprocesses"}) == \
        "web: number of processes changed"
    assert describe("web", "some_new_thing", {}) == "web: some new thing"
    assert exit_words(0) == "exit code 0" and exit_words(None) == "exit status unknown"
    # no line is the bare event name of circusd's code
    for event in ("reload", "start", "stop", "add", "remove", "exhausted", "respawn"):
        assert describe("sleepers", event, {}) != f"sleepers: {event}"


def test_a_second_kill_of_one_process_is_the_sigkill():
    seen = Signalled(keep=2)
    assert seen.kill_seen("n", 1) is False and seen.kill_seen("n", 1) is True
    seen.forget("n", 1)
    assert seen.kill_seen("n", 1) is False
    seen.kill_seen("n", 2)
    seen.kill_seen("n", 3)                  # 1 is the oldest: forgotten
    assert seen.kill_seen("n", 1) is False
    state = LiveState()
    first = state.feed_event("n", "watcher.web.kill", {"process_pid": 9}, 1.0)
    second = state.feed_event("n", "watcher.web.kill", {"process_pid": 9}, 2.0)
    assert first["text"] == "web: stopping process 9"
    assert second["text"].endswith("killed (SIGKILL)")
    state.feed_event("n", "watcher.web.reap", {"process_pid": 9, "exit_code": -9}, 3.0)
    assert state.feed_event("n", "watcher.web.kill", {"process_pid": 9}, 4.0)["text"] == \
        "web: stopping process 9"


# -- a real node whose watchers are in trouble ----------------------------------------------------

NODE = """
[circus]
endpoint = ipc://{d}/c.sock
pubsub_endpoint = ipc://{d}/p.sock
stats_endpoint = ipc://{d}/s.sock
statsd = true
stats_interval = 0.3

[watcher:fine]
cmd = sleep 300

[watcher:crasher]
cmd = sh -c 'echo "crasher-out $$"; echo "crasher-err first $$" >&2; echo "crasher-err last $$" >&2; exit 3'
max_retry = -1
backoff_initial = 600
backoff_max = 600

[watcher:broken]
cmd = /no/such/binary
max_retry = 1

[watcher:quiet]
cmd = sh -c 'while true; do echo hush; sleep 5; done'
recent_lines = 0

[watcher:idle]
cmd = sleep 300
autostart = false

[watcher:zero]
cmd = sleep 300
numprocesses = 0

[watcher:one]
cmd = sleep 300
singleton = true

[watcher:once]
cmd = sh -c 'echo "once-err $$" >&2; exit 2'
autostart = false
max_retry = 0
"""


def ctl(endpoint: str, *args: str) -> str:
    r = subprocess.run([PY, "-m", "circus.cli.circusctl", "--endpoint", endpoint, *args],
                       capture_output=True, text=True, timeout=30)
    return r.stdout.strip()


class TroubleEnv:
    """Node t1 (watchers in trouble), node t2 (healthy), and 'gone' (no circusd) in a pool."""

    def __init__(self, base: Path) -> None:
        self.base = base
        self.daemons: dict[str, Circusd] = {}

    def endpoint(self, name: str) -> str:
        return f"ipc://{self.base / name}/c.sock"

    def start(self) -> None:
        bodies = {"t1": NODE, "t2": NODE.split("[watcher:crasher]")[0]}
        for name, body in bodies.items():
            d = self.base / name
            d.mkdir()
            node = Circusd(d)
            node.start(textwrap.dedent(body.format(d=d)), "--name", name)
            self.daemons[name] = node
        t1 = self.daemons["t1"]
        t1.wait(lambda: (self.base / "t1" / "c.sock").exists(), what="t1's socket")
        t1.wait(lambda: '"trouble": "backoff"' in ctl(self.endpoint("t1"), "--json", "status",
                                                       "crasher"), timeout=20,
                what="crasher in backoff")
        t1.wait(lambda: ctl(self.endpoint("t1"), "status", "broken").startswith("fatal"), timeout=20,
                what="broken fatal")
        t2 = self.daemons["t2"]
        t2.wait(lambda: ctl(self.endpoint("t2"), "status", "fine").startswith("active"), timeout=20,
                what="t2 up")
        text = "[meta]\ntimeout = 3\n"
        for name in self.daemons:
            d = self.base / name
            text += (f"[node:{name}]\nendpoint = ipc://{d}/c.sock\npubsub_endpoint = ipc://{d}/"
                     f"p.sock\nstats_endpoint = ipc://{d}/s.sock\n")
        self.pool = self.base / "pool.ini"
        self.pool.write_text(text + f"[node:gone]\nendpoint = ipc://{self.base}/none.sock\n"
                             "timeout = 0.5\n")
        self.users_path = self.base / "users.json"
        users = Users.load(str(self.users_path), missing_ok=True)
        for name, password in PASSWORDS.items():
            users.add(name, ROLES[name], password)
        self.tokens = {name: users.new_token(name) for name in PASSWORDS}
        self.secret = load_secret(str(self.base / "secret"))

    def stop(self) -> None:
        for node in self.daemons.values():
            node.cleanup()


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    e = TroubleEnv(tmp_path_factory.mktemp("trouble"))
    try:
        e.start()
        yield e
    finally:
        e.stop()


JSON = {"Accept": "application/json"}


def badge_of(row: str) -> tuple[str, str]:
    """(word, tone) of the first badge in a row's HTML."""
    m = re.search(r'<span class="badge tone-(\w+) s-\w+"[^>]*>([^<]+)</span>', row)
    assert m, row
    return m.group(2), m.group(1)


class TestBanners(WebCase):
    def post_json(self, b, path: str, fields: dict) -> dict:
        r = b.post(path, fields, headers=JSON)
        assert r.code == 200, r.body
        return json.loads(r.body)

    def test_an_add_that_cannot_start_is_red_with_the_reason(self):
        env, b = self.env, self.browser("ada")
        try:
            body = self.post_json(b, "/node/t1/add", {"name": "bogus", "cmd": "/no/such/binary"})
            shown = body["banner"]
            assert body["ok"] is False and shown["kind"] == "error"
            assert shown["title"] == "add bogus: added, but it failed to start"
            assert "command not found: '/no/such/binary'" in shown["reason"]
            assert shown["code"] == "spawn_failed"
            # without the page's script: the same banner, after the redirect
            r = b.post("/node/t1/add", {"name": "bogus2", "cmd": "/no/such/binary"})
            assert (r.code, r.headers["Location"]) == (303, "/node/t1")
            page = b.get("/node/t1").body.decode()
            flash = re.search(r'<div id="flash" class="flash flash-error" data-result="error"'
                              r'.*?</div>\s*</div>', page, re.S)
            assert flash, page[:3000]
            assert "add bogus2: added, but it failed to start" in flash.group(0)
            assert "command not found: &#39;/no/such/binary&#39;" in flash.group(0)
            # the flash is shown once
            assert 'id="flash"' not in b.get("/node/t1").body.decode()
            word, tone = badge_of(rows(page, "watcher")["bogus2"])
            assert tone != "ok" and word in ("backoff", "fatal")
        finally:
            ctl(env.endpoint("t1"), "rm", "bogus")
            ctl(env.endpoint("t1"), "rm", "bogus2")

    def test_a_start_that_dies_shows_the_last_output_lines(self):
        env, b = self.env, self.browser("otto")
        try:
            body = self.post_json(b, "/node/t1/action", {"action": "start", "watcher": "once"})
            shown = body["banner"]
            assert shown["kind"] == "error" and shown["title"] == "start once: failed"
            assert shown["code"] == "not_ready"
            assert any(line.startswith("once-err ") for line in shown["lines"]), shown
            r = b.post("/node/t1/action", {"action": "start", "watcher": "once"})
            assert r.code == 303
            page = b.get("/node/t1").body.decode()
            lines = re.search(r'<pre class="banner-lines">(.*?)</pre>', page, re.S)
            assert lines and "once-err " in lines.group(1), page[:3000]
        finally:
            ctl(env.endpoint("t1"), "stop", "once")

    def test_decr_past_zero_is_amber(self):
        b = self.browser("otto")
        body = self.post_json(b, "/node/t1/action", {"action": "decr", "watcher": "zero"})
        shown = body["banner"]
        assert body["ok"] is True and shown["kind"] == "warning"
        assert "leaves 0" in shown["reason"] and shown["title"].endswith("with a warning")
        r = b.post("/node/t1/action", {"action": "decr", "watcher": "zero"})
        assert r.code == 303
        page = b.get("/node/t1").body.decode()
        assert re.search(r'<div id="flash" class="flash flash-warning" data-result="warning"',
                         page)
        assert "not a negative number" in page

    def test_incr_of_a_singleton_changes_nothing_and_says_so(self):
        body = self.post_json(self.browser("otto"), "/node/t1/action",
                              {"action": "incr", "watcher": "one"})
        assert body["banner"]["kind"] == "warning" and "singleton" in body["banner"]["reason"]
        assert ctl(self.env.endpoint("t1"), "numprocesses", "one") == "1"

    def test_green_only_for_ok_and_it_says_what_was_done(self):
        env, b = self.env, self.browser("otto")
        before = ctl(env.endpoint("t2"), "list", "fine")
        body = self.post_json(b, "/node/t2/action", {"action": "restart", "watcher": "fine"})
        after = ctl(env.endpoint("t2"), "list", "fine")
        shown = body["banner"]
        assert body["ok"] and shown["kind"] == "ok" and shown["title"].startswith(
            "restart fine: done in ")
        assert shown["summary"] == f"replaced 1 process: stopped {before}; started {after}"
        r = b.post("/node/t2/action", {"action": "stop", "watcher": "fine"})
        assert r.code == 303
        page = b.get("/node/t2").body.decode()
        assert '<div id="flash" class="flash flash-ok" data-result="ok"' in page
        assert "stop fine: done in" in page
        assert badge_of(rows(page, "watcher")["fine"]) == ("stopped", "idle")
        body = self.post_json(b, "/node/t2/action", {"action": "start", "watcher": "fine"})
        assert body["banner"]["kind"] == "ok" and body["banner"]["summary"].startswith(
            "started 1 process (")

    def test_reloadconfig_of_a_broken_file_is_red_and_changes_nothing(self):
        env, b = self.env, self.browser("ada")
        node = env.daemons["t2"]
        good = node.config.read_text()
        node.config.write_text(good.replace("[watcher:fine]", "[watcher:fine]\nnumprocesess = 2"))
        try:
            body = self.post_json(b, "/node/t2/action", {"action": "reloadconfig"})
            shown = body["banner"]
            assert shown["kind"] == "error" and shown["code"] == "config_error"
            assert "numprocesess" in shown["reason"] and "circus.ini" in shown["reason"]
        finally:
            node.config.write_text(good)
        body = self.post_json(b, "/node/t2/action", {"action": "reloadconfig"})
        assert body["banner"]["kind"] == "ok", body

    def test_an_action_on_a_node_that_is_down_is_red(self):
        body = self.post_json(self.browser("otto"), "/node/gone/action",
                              {"action": "stop", "watcher": "fine"})
        assert body["banner"]["kind"] == "error"
        assert body["banner"]["title"] == "stop fine: failed: the node is not available"
        assert "cannot connect" in body["banner"]["reason"]


class TestTroubleShows(WebCase):
    def test_node_page_badges_counts_and_last_lines(self):
        page = self.browser("rita").get("/node/t1").body.decode()
        table = rows(page, "watcher")
        assert badge_of(table["fine"]) == ("active", "ok")
        assert badge_of(table["crasher"]) == ("backoff", "warn")
        assert 'data-trouble="backoff"' in table["crasher"]
        assert badge_of(table["broken"]) == ("fatal", "bad")
        assert badge_of(table["idle"]) == ("stopped", "idle")
        # the header counts the rows, and says what is unhealthy
        count = int(re.search(r'<span class="count" id="watchers-count">(\d+)</span>',
                              page).group(1))
        assert count == len(table) == len(ctl(self.env.endpoint("t1"), "list").split(","))
        assert re.search(r'id="node-health">1 fatal, 1 in backoff<', page)
        # the crasher's row shows its last stderr lines
        last = re.search(r'<pre class="last-lines">(.*?)</pre>', table["crasher"], re.S)
        assert last and "crasher-err last " in last.group(1), table["crasher"]
        assert "crasher-out" not in last.group(1)
        assert 'class="last-lines"' not in table["fine"]

    def test_watcher_page_of_a_crash_loop_has_its_output_at_hand(self):
        page = self.browser("rita").get("/node/t1/watcher/crasher").body.decode()
        title = re.search(r'<h1 id="watcher-title".*?</h1>', page, re.S).group(0)
        assert 'data-trouble="backoff"' in title and badge_of(title) == ("backoff", "warn")
        box = re.search(r'<div id="trouble" data-refresh>(.*?)</section>', page, re.S).group(1)
        assert "Why it keeps restarting" in box and "in backoff: exit code 3" in box
        lines = re.search(r'<pre class="last-lines" id="trouble-lines">(.*?)</pre>', box,
                          re.S).group(1)
        assert "crasher-err first " in lines and "crasher-err last " in lines
        # every watcher's Output pane works: no "give it a stdout_stream" text
        output = re.search(r'<pre id="output">(.*?)</pre>', page, re.S).group(1)
        assert "crasher-out " in output and "crasher-err last " in output
        assert "stdout_stream" not in page and 'id="output-note"' not in page
        # the process waiting in backoff is a row (no pid), and the count counts it
        procs = re.search(r'<table id="processes".*?</table>', page, re.S).group(0)
        assert re.search(r'<tr data-wid="1" data-state="backoff">', procs)
        assert re.search(r'<span class="count" id="processes-count">1</span>', page)
        assert re.search(r'<dd id="alive">0 / 1</dd>', page)
        assert 'data-action="kill"' not in procs

    def test_fatal_watcher_page_and_a_healthy_one(self):
        page = self.browser("rita").get("/node/t1/watcher/broken").body.decode()
        box = re.search(r'<div id="trouble" data-refresh>(.*?)</section>', page, re.S).group(1)
        assert "Why it is fatal" in box and "command not found" in box
        assert 'id="trouble-lines-none"' in box           # it never ran: no line
        assert 'class="card trouble tone-bad"' in box
        fine = self.browser("rita").get("/node/t1/watcher/fine").body.decode()
        assert re.search(r'<div id="trouble" data-refresh>\s*</div>', fine)
        assert badge_of(re.search(r'<h1 id="watcher-title".*?</h1>', fine, re.S).group(0)) == \
            ("active", "ok")

    def test_only_a_watcher_without_kept_output_says_so(self):
        page = self.browser("rita").get("/node/t1/watcher/quiet").body.decode()
        note = re.search(r'<p class="note" id="output-note">(.*?)</p>', page, re.S).group(1)
        assert "recent_lines = 0" in note and 'id="output"' not in page
        fine = self.browser("rita").get("/node/t1/watcher/fine").body.decode()
        assert 'id="output-note"' not in fine and 'id="output-empty"' in fine

    def test_the_pool_page_counts_unhealthy_watchers_per_node(self):
        page = self.browser("rita").get("/").body.decode()
        nodes = rows(page, "node")
        t1, t2, gone = nodes["t1"], nodes["t2"], nodes["gone"]
        assert 'data-state="active" data-health="bad"' in t1
        health = re.search(r'<td class="health" data-unhealthy="(\d+)">(.*?)</td>', t1, re.S)
        assert health.group(1) == "2" and "2 unhealthy" in health.group(2)
        names = re.findall(r'<li data-watcher="([^"]+)"><a class="watcher-link" '
                           r'href="(/node/t1/watcher/[^"]+)"', health.group(2))
        assert names == [("broken", "/node/t1/watcher/broken"),
                         ("crasher", "/node/t1/watcher/crasher")]      # the worst first
        assert 'data-health="ok"' in t2 and ">healthy</span>" in t2
        assert 'data-state="not_available" data-health="unknown"' in gone
        r = self.fetch("/api/nodes", headers={"Authorization":
                                              f"Bearer {self.env.tokens['rita']}"})
        api = {n["name"]: n for n in json.loads(r.body)["nodes"]}
        assert api["t1"]["health"]["summary"] == "1 fatal, 1 in backoff"
        assert [t["name"] for t in api["t1"]["health"]["troubled"]] == ["broken", "crasher"]
        assert api["t2"]["health"]["tone"] == "ok" and api["gone"]["health"] is None
        r = self.fetch("/api/status", headers={"Authorization":
                                               f"Bearer {self.env.tokens['rita']}"})
        status = json.loads(r.body)["nodes"]
        assert status["t1"]["watchers"]["crasher"] == "active"          # 0.19's word, kept
        assert status["t1"]["trouble"] == {"broken": "fatal", "crasher": "backoff"}
        assert status["t2"]["trouble"] == {} and "trouble" not in status["gone"]

    def test_a_node_that_is_down_offers_no_admin_form_as_if_it_worked(self):
        page = self.browser("ada").get("/node/gone").body.decode()
        admin = re.search(r'<div class="admin" id="admin" data-refresh data-answering="no">'
                          r'(.*?)</div>\s*</div>', page, re.S)
        assert admin, page
        assert re.search(r'<p class="note admin-off" id="admin-off">gone is not available '
                         r'\(cannot connect', admin.group(1))
        assert "<fieldset disabled>" in admin.group(1)
        assert re.search(r'data-action="reloadconfig".*?<button type="submit" class="btn" '
                         r'title="gone does not answer" disabled>', admin.group(1), re.S)
        up = self.browser("ada").get("/node/t2").body.decode()
        assert 'data-answering="yes"' in up and "disabled" not in \
            re.search(r'<div class="admin".*?</div>\s*</div>', up, re.S).group(0)

    def test_sparklines_have_a_legend_and_a_scale(self):
        self.wait_for(lambda: self.web.live.state.latest("t1", "fine"), what="stats of fine")
        page = self.browser("rita").get("/node/t1").body.decode()
        fine = rows(page, "watcher")["fine"]
        for metric, label in (("cpu", "CPU"), ("mem", "mem")):
            m = re.search(rf'<span class="spark spark-{metric}"><span class="spark-label">'
                          rf'{label}</span><svg class="sparkline" data-metric="{metric}".*?'
                          rf'<span class="spark-scale" data-metric="{metric}" '
                          rf'data-watcher="fine">([\d.]+)%</span>', fine, re.S)
            assert m, fine
            assert float(m.group(1)) >= (1.0 if metric == "cpu" else 0.1)
        assert "is the watcher's processes' CPU %" in page


def test_events_on_the_wire_read_in_operator_words(env):
    """A real restart's events, as circushttpd's live state words them."""
    import zmq

    from circus.protocol import read_event
    ctx = zmq.Context.instance()
    sub = ctx.socket(zmq.SUB)
    sub.linger = 0
    sub.setsockopt(zmq.SUBSCRIBE, b"watcher.fine.")
    monitor = sub.get_monitor_socket(zmq.EVENT_HANDSHAKE_SUCCEEDED)
    sub.connect(f"ipc://{env.base / 't2'}/p.sock")
    assert monitor.poll(10_000), "no connection to t2's events within 10 s"
    sub.disable_monitor()
    monitor.close(linger=0)
    state = LiveState()
    try:
        ctl(env.endpoint("t2"), "restart", "fine", "--graceful", "--waiting")
        texts = []
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and not any("renewed" in t for t in texts):
            if sub.poll(200):
                event = read_event(sub.recv_multipart())
                if event:
                    msg = state.feed_event("t2", event[0], event[1], time.time())
                    if msg:
                        texts.append(msg["text"])
        assert "fine: 1 of 1 processes replaced" in texts, texts
        assert texts[-1] == "fine: every process renewed", texts
        assert any(re.fullmatch(r"fine: started process \d+", t) for t in texts), texts
        assert not any(t in ("fine: reload", "fine: progress") for t in texts), texts
    finally:
        sub.close()
