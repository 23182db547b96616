"""Tier 3 in a real browser: headless Chromium (Debian's chromium + chromedriver, driven by
tests/webdriver.py) against circushttpd over two real circusd nodes with live stats.

The browser packages are installed on first use (root + apt); where that is impossible the
tests skip saying why, except on CI (CI=true) where they fail. One browser session serves the
whole module; each test logs in as the user it needs. Screenshots of the login, overview,
node and watcher pages go to $CIRCUS_SCREENSHOTS (default: the module's temporary directory)
as web-login.png, web-overview.png, web-node.png and web-watcher.png.
"""
from __future__ import annotations

import http.server
import json
import os
import re
import struct
import subprocess
import sys
import textwrap
import threading
import time
import urllib.parse
from pathlib import Path

import pytest

import webdriver
from conftest import Circusd

pytestmark = pytest.mark.real

PY = sys.executable
VIEWPORT = (1280, 900)


# -- the browser --------------------------------------------------------------------------

@pytest.fixture(scope="session")
def browser_paths() -> webdriver.Browser:
    try:
        return webdriver.ensure_browser(timeout=600)
    except webdriver.BrowserUnavailable as exc:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"browser tests cannot run on CI: {exc}")
        pytest.skip(f"browser tests skipped: {exc}")


@pytest.fixture(scope="module")
def browser(browser_paths, tmp_path_factory):
    log = tmp_path_factory.mktemp("chromedriver") / "chromedriver.log"
    driver = webdriver.Driver.start(browser_paths, str(log))
    try:
        session = driver.session()
        assert session.set_viewport(*VIEWPORT) == VIEWPORT
        yield session
    finally:
        driver.stop()


@pytest.fixture(scope="module")
def shots(tmp_path_factory) -> Path:
    where = os.environ.get("CIRCUS_SCREENSHOTS")
    path = Path(where) if where else tmp_path_factory.mktemp("screenshots")
    path.mkdir(parents=True, exist_ok=True)
    return path


def png_size(png: bytes) -> tuple[int, int]:
    assert png[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    return struct.unpack(">II", png[16:24])


# -- the harness itself, against a small page served here ---------------------------------

PAGE = """<!doctype html>
<html><head><title>harness</title></head><body>
<h1 id="head">Hello <b>there</b></h1>
<form id="f" method="post" action="/echo">
  <input name="word" id="word" value=""><button id="go" type="submit">Go</button>
</form>
<span id="ticker" data-updates="0"></span>
<ul><li class="item">one</li><li class="item">two</li><li class="item">three</li></ul>
<script>
  var n = 0;
  setInterval(function () {
    document.getElementById("ticker").setAttribute("data-updates", String(++n));
  }, 50);
</script>
</body></html>"""


class _PageHandler(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.reply(200, "text/html", PAGE)

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0)).decode()
        fields = urllib.parse.parse_qs(body)
        if self.path == "/json":
            self.reply(201, "application/json", json.dumps({"got": body}))
        else:
            word = fields.get("word", [""])[0]
            self.reply(200, "text/html", f"<p id='echo'>you said {word}</p>")

    def reply(self, status: int, kind: str, text: str) -> None:
        data = text.encode()
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args) -> None:
        pass


@pytest.fixture(scope="module")
def page_server():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _PageHandler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        thread.join(10)
        server.server_close()


def test_harness_elements_forms_and_scripts(browser, page_server):
    b = browser
    b.get(page_server + "/")
    assert b.title == "harness"
    assert b.find("#head").text == "Hello there"
    assert [e.text for e in b.find_all("li.item")] == ["one", "two", "three"]
    assert b.find("ul").find_all(".item")[1].text == "two"
    assert b.find("#f").attribute("action") == "/echo"
    assert b.find("#f").prop("action") == page_server + "/echo"
    assert b.find_all(".missing") == [] and not b.exists(".missing")
    with pytest.raises(webdriver.NoSuchElement):
        b.find("#missing")
    b.find("#word").send_keys("bonjour")
    assert b.find("#word").prop("value") == "bonjour"
    assert b.execute("return [arguments[0] + 1, arguments[1].id]", 41, b.find("#word")) == \
        [42, "word"]
    assert b.execute("return document.getElementById('go')").attribute("type") == "submit"
    # an async script: a fetch from the page, with its cookie-bearing origin
    reply = b.execute_async("""
        const done = arguments[arguments.length - 1];
        fetch('/json', {method: 'POST', body: 'a=1'})
            .then(r => r.text().then(t => done([r.status, t])))
            .catch(e => done(['error', String(e)]));""")
    assert reply == [201, json.dumps({"got": "a=1"})]
    b.find("#go").click()
    assert b.wait_until(lambda: b.find("#echo").text, what="the posted page") == "you said bonjour"
    assert b.url == page_server + "/echo"


def test_harness_waits_and_screenshots(browser, page_server, tmp_path):
    b = browser
    b.get(page_server + "/")
    first = int(b.find("#ticker").attribute("data-updates"))
    grown = b.wait_until(lambda: int(b.find("#ticker").attribute("data-updates")) > first + 3,
                         timeout=5, what="ticker grows")
    assert grown is True
    t0 = time.monotonic()
    with pytest.raises(webdriver.WaitTimeout) as err:
        b.wait_until(lambda: b.find("#ticker").attribute("data-updates") == "-1", timeout=0.3,
                     what="an impossible value")
    assert time.monotonic() - t0 < 3
    assert "an impossible value" in str(err.value) and "last saw: False" in str(err.value)
    with pytest.raises(webdriver.WaitTimeout) as err:
        b.wait_until(lambda: b.find("#never"), timeout=0.2, what="a missing element")
    assert "NoSuchElement" in str(err.value) and "#never" in str(err.value)

    def dead() -> None:
        raise RuntimeError("the server died")
    with pytest.raises(RuntimeError, match="the server died"):
        b.wait_until(lambda: False, timeout=30, check=dead)
    png = b.screenshot(tmp_path / "harness.png")
    assert png_size(png) == VIEWPORT
    assert (tmp_path / "harness.png").read_bytes() == png


def test_unavailable_browser_says_why(monkeypatch, tmp_path):
    monkeypatch.setattr(webdriver, "CHROMIUM", str(tmp_path / "no-chromium"))
    monkeypatch.setattr(webdriver.os, "geteuid", lambda: 1000)
    with pytest.raises(webdriver.BrowserUnavailable, match="needs root.*uid 1000") as err:
        webdriver.ensure_browser(timeout=5)
    assert "no-chromium" in str(err.value) and "chromium chromium-driver" in str(err.value)
    monkeypatch.setattr(webdriver.shutil, "which", lambda name: None)
    with pytest.raises(webdriver.BrowserUnavailable, match="no apt-get"):
        webdriver.ensure_browser(timeout=5)


# -- circushttpd over two real nodes ------------------------------------------------------

NODES = {
    # node: {watcher: (cmd, numprocesses)}; each watcher has its own cmd, so circusd's real
    # children tell which watcher they belong to
    "alpha": {"web": ("sleep 301", 2), "worker": ("sleep 302", 1)},
    "beta": {"db": ("sleep 303", 1)},
}
USERS = {"admin": "admin", "operator": "operator", "readonly": "readonly"}   # name: role
PASSWORD = "correct horse battery"


def httpd_argv(*args: str) -> list[str]:
    script = Path(PY).parent / "circushttpd"
    if script.exists():
        return [str(script), *args]
    return [PY, "-c", "import sys; from circus.cli.httpd import main; sys.exit(main())", *args]


class Node:
    def __init__(self, name: str, base: Path, watchers: dict | None = None) -> None:
        self.name, self.dir = name, base / name
        self.dir.mkdir()
        self.daemon = Circusd(self.dir)
        self.watchers = NODES[name] if watchers is None else watchers

    def ep(self, kind: str) -> str:
        return f"ipc://{self.dir}/{kind}.sock"

    def start(self) -> None:
        text = textwrap.dedent(f"""
            [circus]
            endpoint = {self.ep("control")}
            pubsub_endpoint = {self.ep("events")}
            stats_endpoint = {self.ep("stats")}
            statsd = true
            stats_interval = 0.25
        """)
        for watcher, (cmd, n) in self.watchers.items():
            text += f"[watcher:{watcher}]\ncmd = {cmd}\nnumprocesses = {n}\n" \
                    f"graceful_timeout = 5\n"
        self.daemon.start(text, "--name", self.name)

    def pids(self, watcher: str) -> list[int]:
        return self.daemon.children(self.watchers[watcher][0])

    def wait_ready(self) -> None:
        for watcher, (_, n) in self.watchers.items():
            self.daemon.wait(lambda w=watcher, n=n: len(self.pids(w)) == n, timeout=20,
                             what=f"{self.name}'s {watcher} processes")


class Httpd:
    """``circushttpd --pool POOL --port 0 --users FILE``; stdout and stderr go to a log file."""

    def __init__(self, base: Path, pool: Path, users: Path) -> None:
        self.log = base / "circushttpd.log"
        self.argv = httpd_argv("--pool", str(pool), "--port", "0", "--users", str(users))
        self.proc: subprocess.Popen | None = None
        self.url = ""

    def start(self, timeout: float = 20.0) -> None:
        with open(self.log, "wb") as out:
            self.proc = subprocess.Popen(self.argv, stdin=subprocess.DEVNULL, stdout=out,
                                         stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        prefix = "circushttpd listening on "
        while True:
            text = self.log_text()
            first = text.split("\n", 1)[0] if "\n" in text else ""
            if first:
                assert first.startswith(prefix), f"unexpected first line: {text[:2000]}"
                self.url = first[len(prefix):].strip().rstrip("/")
                assert self.url.startswith("http://127.0.0.1:"), first
                return
            self.check()
            if time.monotonic() > deadline:
                pytest.fail(f"circushttpd printed no listening line within {timeout} s:\n{text}")
            time.sleep(0.02)

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def check(self) -> None:
        """Fail at once when circushttpd died (for wait_until's ``check``)."""
        if self.proc is not None and self.proc.poll() is not None:
            pytest.fail(f"circushttpd exited ({self.proc.returncode}):\n{self.log_text()[-3000:]}")

    def stop(self, timeout: float = 10.0) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout)


class Pool:
    def __init__(self, nodes: dict[str, Node], httpd: Httpd) -> None:
        self.nodes, self.httpd = nodes, httpd

    @property
    def url(self) -> str:
        return self.httpd.url

    def check(self) -> None:
        self.httpd.check()
        for node in self.nodes.values():
            proc = node.daemon.proc
            if proc is not None and proc.poll() is not None:
                pytest.fail(f"circusd {node.name} exited ({proc.returncode}):\n"
                            f"{node.daemon.log_text()[-3000:]}")


def adduser(users: Path, name: str, role: str) -> None:
    r = subprocess.run(httpd_argv("adduser", name, "--role", role, "--users", str(users),
                                  "--password-stdin"),
                       input=PASSWORD + "\n", capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, f"adduser {name}: {r.returncode}\n{r.stdout}\n{r.stderr}"


@pytest.fixture(scope="module")
def pool(tmp_path_factory):
    base = tmp_path_factory.mktemp("web")
    nodes = {name: Node(name, base) for name in NODES}
    httpd = None
    try:
        for node in nodes.values():
            node.start()
        pool_file = base / "pool.ini"
        text = "[meta]\ntimeout = 5\n"
        for node in nodes.values():
            text += (f"[node:{node.name}]\nendpoint = {node.ep('control')}\n"
                     f"pubsub_endpoint = {node.ep('events')}\n"
                     f"stats_endpoint = {node.ep('stats')}\n")
        pool_file.write_text(text)
        users = base / "circushttpd.users"
        for name, role in USERS.items():
            adduser(users, name, role)
        assert users.stat().st_mode & 0o777 == 0o600
        for node in nodes.values():
            node.wait_ready()
        httpd = Httpd(base, pool_file, users)
        httpd.start()
        yield Pool(nodes, httpd)
    finally:
        if httpd is not None:
            httpd.stop()
        for node in nodes.values():
            if node.daemon.proc is not None:
                node.daemon.stop()
                node.daemon.cleanup()


def path_of(url: str) -> str:
    return urllib.parse.urlsplit(url).path


def login(b: webdriver.Session, pool: Pool, name: str, password: str = PASSWORD,
          next_path: str = "/") -> None:
    """A fresh login as ``name`` (any earlier session's cookies dropped first)."""
    b.get(pool.url + "/login")
    b.delete_cookies()
    b.get(pool.url + "/login?" + urllib.parse.urlencode({"next": next_path}))
    form = b.find("#login-form")
    form.find("input[name=username]").send_keys(name)
    form.find("input[name=password]").send_keys(password)
    b.find("#login-submit").click()
    b.wait_until(lambda: b.find("#whoami").text == name, timeout=10,
                 what=f"logged in as {name}", check=pool.check)
    assert b.find("#whoami").attribute("data-role") == USERS[name]


def open_page(b: webdriver.Session, pool: Pool, path: str, ready_css: str) -> None:
    b.get(pool.url + path)
    b.wait_until(lambda: b.exists(ready_css), timeout=10, what=f"{ready_css} on {path}",
                 check=pool.check)


def page_pids(b: webdriver.Session) -> list[int]:
    return sorted(int(tr.attribute("data-pid")) for tr in b.find_all("#processes tr[data-pid]"))


def fetch(b: webdriver.Session, path: str, body: str | None = None,
          headers: dict[str, str] | None = None, method: str = "POST") -> tuple[int, str]:
    """A request from the page's origin (with its cookies), by the page's own fetch."""
    return tuple(b.execute_async("""
        const [path, method, body, headers, done] = arguments;
        const init = {method, headers, redirect: 'manual', credentials: 'same-origin'};
        if (body !== null) init.body = body;
        fetch(path, init).then(r => r.text().then(t => done([r.status, t])))
                         .catch(e => done([-1, String(e)]));""",
                                 path, method, body, headers or {}, timeout=30))


def test_login_page_then_overview_shows_both_nodes(browser, pool, shots):
    b = browser
    b.get(pool.url + "/login")
    b.delete_cookies()
    b.get(pool.url + "/")
    assert path_of(b.url) == "/login"            # anonymous: sent to the login page
    form = b.find("#login-form")
    assert form.attribute("method").lower() == "post"
    assert form.find("input[name=_xsrf]").attribute("type") == "hidden"
    assert form.find("input[name=password]").attribute("type") == "password"
    png_size(b.screenshot(shots / "web-login.png"))
    # wrong password: the login page again, with an error
    form.find("input[name=username]").send_keys("admin")
    form.find("input[name=password]").send_keys("not the password")
    b.find("#login-submit").click()
    b.wait_until(lambda: b.exists("#login-error"), what="#login-error", check=pool.check)
    assert not b.exists("#whoami")

    login(b, pool, "admin")
    assert path_of(b.url) == "/"
    table = b.find("table#nodes")
    b.wait_until(lambda: sorted(tr.attribute("data-node")
                                for tr in table.find_all("tr[data-node]")) == sorted(NODES),
                 what="both nodes listed")
    for name, watchers in NODES.items():
        row = b.find(f'#nodes tr[data-node="{name}"]')
        assert row.attribute("data-state") == "active", row.text
        assert row.find("td.state").text.strip()
        link = row.find("a.node-link")
        assert link.attribute("href") in (f"/node/{name}", f"{pool.url}/node/{name}")
        cell = row.find("td.watchers").text
        # the watchers cell names the node's watchers or counts them (circusd-stats may count)
        assert all(w in cell for w in watchers) or \
            (cell.strip().isdigit() and int(cell) >= len(watchers)), cell
        procs = row.find("td.processes").text.strip()
        assert procs.split()[0].isdigit() and \
            int(procs.split()[0]) >= sum(n for _, n in watchers.values()), procs
    png_size(b.screenshot(shots / "web-overview.png"))


def test_admin_node_page_forms_live_chart_and_watcher_page(browser, pool, shots):
    b = browser
    login(b, pool, "admin")
    b.find('#nodes tr[data-node="alpha"] a.node-link').click()
    b.wait_until(lambda: path_of(b.url) == "/node/alpha" and b.exists("#watchers"),
                 what="the node page", check=pool.check)
    rows = {tr.attribute("data-watcher"): tr for tr in b.find_all("#watchers tr[data-watcher]")}
    assert {"web", "worker"} <= set(rows), sorted(rows)
    assert rows["web"].attribute("data-state") == "active"
    assert rows["web"].find("td.numprocesses").text.split()[0] == "2"   # "2" or "2 / 2"
    for css in ("td.state", "td.cpu", "td.mem", "a.watcher-link"):
        rows["web"].find(css)
    assert b.exists("table#sockets")
    for action in ("start", "stop", "restart", "reload", "incr", "decr"):
        form = b.find(f'form.action[data-action="{action}"][data-watcher="web"]')
        assert form.attribute("method").lower() == "post"
        assert path_of(form.attribute("action")) == "/node/alpha/action"
        assert form.find("input[name=action]").prop("value") == action
        assert form.find("input[name=watcher]").prop("value") == "web"
        assert form.find("input[name=_xsrf]").prop("value")
    add = b.find("form#add-watcher")
    assert path_of(add.attribute("action")) == "/node/alpha/add"
    for name in ("name", "cmd", "args", "numprocesses"):
        add.find(f"[name={name}]")
    b.find('form.action[data-action="reloadconfig"]')

    # the live chart: the page's JS applies the stats stream to the sparkline
    spark = 'svg.sparkline[data-metric="cpu"][data-watcher="web"]'
    start = int(b.find(spark).attribute("data-updates"))
    b.wait_until(lambda: int(b.find(spark).attribute("data-updates")) >= start + 3, timeout=20,
                 what=f"{spark} data-updates to grow from {start}", check=pool.check)
    mem = 'svg.sparkline[data-metric="mem"][data-watcher="web"]'
    assert b.exists(mem)
    png_size(b.screenshot(shots / "web-node.png"))

    rows["web"].find("a.watcher-link").click()
    b.wait_until(lambda: path_of(b.url) == "/node/alpha/watcher/web" and b.exists("#processes"),
                 what="the watcher page", check=pool.check)
    real = pool.nodes["alpha"].pids("web")
    assert page_pids(b) == real
    for tr in b.find_all("#processes tr[data-pid]"):
        pid = tr.attribute("data-pid")
        assert tr.find("td.pid").text.strip() == pid
        for css in ("td.age", "td.cpu", "td.mem"):
            tr.find(css)
        b.find(f'form.action[data-action="kill"][data-pid="{pid}"]')
    b.find("pre#output")
    b.find("ul#events")
    b.find('form.action[data-action="restart"][data-watcher="web"]')
    png_size(b.screenshot(shots / "web-watcher.png"))


def test_operator_restarts_a_watcher_and_sees_new_pids(browser, pool):
    b = browser
    alpha = pool.nodes["alpha"]
    login(b, pool, "operator", next_path="/node/alpha/watcher/web")
    assert path_of(b.url) == "/node/alpha/watcher/web"       # back to where login was asked
    old = alpha.pids("web")
    assert len(old) == 2 and page_pids(b) == old
    open_page(b, pool, "/node/alpha", "#watchers")
    # an operator has the watcher actions, not the admin forms
    assert b.exists('form.action[data-action="restart"][data-watcher="web"]')
    assert not b.exists("#add-watcher") and not b.exists('form[data-action="reloadconfig"]')
    assert "add-watcher" not in b.source
    form = b.find('form.action[data-action="restart"][data-watcher="web"]')
    form.find("button, input[type=submit]").click()
    new = alpha.daemon.wait(lambda: len(p := alpha.pids("web")) == 2 and not set(p) & set(old)
                            and p, timeout=20, what="web restarted with new pids")
    b.wait_until(lambda: b.find("#progress").text.strip(), timeout=10,
                 what="#progress to report the restart", check=pool.check)
    assert path_of(b.url) == "/node/alpha"
    # the watcher page shows the new processes
    open_page(b, pool, "/node/alpha/watcher/web", "#processes")

    def shown() -> bool:
        if page_pids(b) == new:
            return True
        b.refresh()
        return False
    b.wait_until(shown, timeout=10, interval=0.3, what=f"pids {new} on the watcher page",
                 check=pool.check)
    assert not set(page_pids(b)) & set(old)
    assert alpha.pids("web") == new
    # the restart's events reached the page
    b.wait_until(lambda: b.find_all("#events li") or b.refresh(), timeout=10, interval=0.3,
                 what="events of the restart listed", check=pool.check)


def test_readonly_user_gets_no_action_forms(browser, pool):
    b = browser
    login(b, pool, "readonly")
    assert b.exists('#nodes tr[data-node="alpha"]') and b.exists('#nodes tr[data-node="beta"]')
    for path, ready in (("/", "#nodes"), ("/node/alpha", "#watchers"),
                        ("/node/beta", "#watchers"), ("/node/alpha/watcher/web", "#processes")):
        open_page(b, pool, path, ready)
        assert b.find("#whoami").attribute("data-role") == "readonly"
        assert b.find_all("form.action") == [], path
        assert b.find_all("[data-action]") == [], path
        assert b.find_all('form[action$="/action"], form[action$="/add"]') == [], path
        assert not b.exists("#add-watcher"), path
        forms = [f.attribute("action") for f in b.find_all("form")]
        assert all(path_of(a or "") == "/logout" for a in forms), f"{path}: forms {forms}"
        # reading still works: the tables are there
        if path == "/node/alpha":
            assert b.exists('#watchers tr[data-watcher="web"]')
        if path == "/node/alpha/watcher/web":
            assert page_pids(b) == pool.nodes["alpha"].pids("web")


def test_forged_posts_are_refused_and_restart_nothing(browser, pool):
    b = browser
    alpha = pool.nodes["alpha"]
    web_before = alpha.pids("web")
    form_type = {"Content-Type": "application/x-www-form-urlencoded",
                 "Accept": "application/json"}
    restart_web = "action=restart&watcher=web"
    login(b, pool, "admin")
    open_page(b, pool, "/node/alpha", "#watchers")
    token = b.find('form.action[data-action="restart"] input[name=_xsrf]').prop("value")
    assert token
    forged = [
        ("no _xsrf", restart_web, form_type),
        ("a wrong _xsrf", restart_web + "&_xsrf=2%7Cdeadbeef%7C00%7C1", form_type),
        ("a wrong X-XSRFToken", restart_web, {**form_type, "X-XSRFToken": "2|bad|00|1"}),
    ]
    for what, body, headers in forged:
        status, text = fetch(b, "/node/alpha/action", body, headers)
        assert status == 403, f"{what}: {status} {text[:300]}"
    # the same request with the page's token is accepted (so the 403s above are the token's)
    worker_before = alpha.pids("worker")
    status, text = fetch(b, "/node/alpha/action",
                         "action=restart&watcher=worker&_xsrf=" + urllib.parse.quote(token),
                         form_type)
    assert status == 200, f"{status} {text[:300]}"
    alpha.daemon.wait(lambda: (p := alpha.pids("worker")) and not set(p) & set(worker_before),
                      timeout=20, what="worker restarted by the genuine request")

    # a readonly session with its own valid token: the role is too low
    login(b, pool, "readonly")
    token = b.find("input[name=_xsrf]").prop("value")
    quoted = urllib.parse.quote(token)
    for action in ("restart", "stop", "incr"):
        status, text = fetch(b, "/node/alpha/action", f"action={action}&watcher=web&_xsrf={quoted}",
                             form_type)
        assert status == 403, f"readonly {action}: {status} {text[:300]}"
    status, text = fetch(b, "/node/alpha/add",
                         f"name=evil&cmd=sleep&args=300&numprocesses=1&_xsrf={quoted}", form_type)
    assert status == 403, f"readonly add: {status} {text[:300]}"
    api = {"Content-Type": "application/json", "X-XSRFToken": token}
    status, text = fetch(b, "/api/command", json.dumps(
        {"node": "alpha", "command": "restart", "properties": {"name": "web"}}), api)
    assert status == 403 and json.loads(text)["error"] == "forbidden", f"{status} {text[:300]}"
    status, text = fetch(b, "/api/command", json.dumps(
        {"node": "alpha", "command": "list", "properties": {}}), api)
    assert status == 200, f"readonly list: {status} {text[:300]}"        # the token is good

    assert alpha.pids("web") == web_before
    open_page(b, pool, "/node/alpha/watcher/web", "#processes")
    assert page_pids(b) == web_before
    open_page(b, pool, "/node/alpha", "#watchers")
    assert not b.exists('#watchers tr[data-watcher="evil"]')


def test_logout_then_every_page_asks_for_login(browser, pool):
    b = browser
    login(b, pool, "operator")
    kept = [c for c in b.cookies() if c["name"] != "_xsrf"]
    assert kept, "no session cookie after login"
    b.find("#logout").click()
    b.wait_until(lambda: path_of(b.url) == "/login", what="/login after logout",
                 check=pool.check)
    for path in ("/", "/node/alpha", "/node/beta", "/node/alpha/watcher/web"):
        b.get(pool.url + path)
        url = urllib.parse.urlsplit(b.url)
        assert url.path == "/login", f"{path} -> {b.url}"
        assert urllib.parse.parse_qs(url.query).get("next") == [path], b.url
        assert not b.exists("#whoami")
    status, text = fetch(b, "/api/status", None, method="GET")
    assert status == 401 and json.loads(text) == {"error": "login required"}, (status, text)
    # the logged-out session's cookie, put back by hand, is no longer a login
    for cookie in kept:
        b.add_cookie(cookie)
    b.get(pool.url + "/node/alpha")
    assert path_of(b.url) == "/login", b.url


# -- the Content-Security-Policy and the login's next, in the real browser ------------------

def test_the_pages_work_under_the_policy_and_it_blocks_injected_code(browser, pool):
    b = browser
    login(b, pool, "admin")
    bar = b.execute("var r = document.querySelector('#nodes svg.bar rect.bar-used');"
                    "return r ? r.getBoundingClientRect().width : -1;")
    assert bar > 0, f"the memory bar is not drawn ({bar})"
    open_page(b, pool, "/node/alpha", "#watchers")
    spark = 'svg.sparkline[data-metric="cpu"][data-watcher="web"]'
    start = int(b.find(spark).attribute("data-updates"))
    b.wait_until(lambda: int(b.find(spark).attribute("data-updates")) > start, timeout=20,
                 what="the page's script to apply live stats", check=pool.check)
    # what an injection would try: inline script, inline handler, inline style (the test's
    # own script is the driver's, which the page's policy does not govern)
    result = b.execute_async("""
        const done = arguments[0];
        const seen = [];
        document.addEventListener('securitypolicyviolation',
                                  e => seen.push(e.effectiveDirective));
        const s = document.createElement('script');
        s.textContent = 'window.__inlineRan = true;';
        document.head.appendChild(s);
        const img = document.createElement('img');
        img.setAttribute('onerror', 'window.__handlerRan = true;');
        img.src = 'data:,nothing';
        document.body.appendChild(img);
        const p = document.createElement('p');
        p.id = 'styled';
        p.setAttribute('style', 'width: 123px; display: block');
        document.body.appendChild(p);
        const want = ['script-src-elem', 'script-src-attr', 'style-src-attr'];
        const end = Date.now() + 5000;
        (function check() {        // the reports come asynchronously: until all are in
            if (want.every(d => seen.includes(d)) || Date.now() > end) {
                done({inline: !!window.__inlineRan, handler: !!window.__handlerRan,
                      width: p.getBoundingClientRect().width, seen: seen});
            } else { setTimeout(check, 20); }
        })();""")
    assert result["inline"] is False and result["handler"] is False, result
    assert result["width"] != 123, result
    assert {"script-src-elem", "script-src-attr", "style-src-attr"} <= set(result["seen"]), result


def test_a_login_next_never_takes_the_browser_elsewhere(browser, pool):
    """The Location circushttpd sends, read by the browser's own URL parser, and followed."""
    from webhttp import Client
    b = browser
    here = urllib.parse.urlsplit(pool.url)
    port = here.port
    hostile = ["/\t/127.0.0.1:1/", "/\n/127.0.0.1:1/", "/\\127.0.0.1:1/", "\\\\127.0.0.1:1/",
               "//127.0.0.1:1/", "/%09/127.0.0.1:1/", "/\t\\127.0.0.1:1/", "http:127.0.0.1:1",
               " /\t/127.0.0.1:1/"]
    c = Client(port)
    for target in hostile:
        r = c.login("readonly", PASSWORD, next_=target)
        assert r.status == 302, (target, r.status)
        location = r.raw("location").decode("latin-1")
        host = b.execute("return new URL(arguments[0], arguments[1]).host;", location,
                         pool.url + "/login")
        assert host == here.netloc, (target, location, host)
    for target in hostile[:3]:
        login(b, pool, "readonly", next_path=target)
        url = urllib.parse.urlsplit(b.url)
        assert (url.netloc, url.path) == (here.netloc, "/"), (target, b.url)


# -- telling the truth: trouble, banners and crash output, on a node whose watchers fail ----

TROUBLED = textwrap.dedent("""
    [watcher:sleepers]
    cmd = sleep 311
    graceful_timeout = 5
    [watcher:crasher]
    cmd = sh -c 'echo "crasher-out $$"; echo "crasher-err first $$" >&2; echo "crasher-err last $$" >&2; exit 3'
    max_retry = -1
    backoff_initial = 600
    backoff_max = 600
    [watcher:flaky]
    cmd = sh -c 'echo "flaky-out $$"; echo "flaky-err cannot bind $$" >&2; sleep 0.2; exit 4'
    max_retry = -1
    backoff_initial = 0.5
    backoff_max = 1
    [watcher:broken]
    cmd = /no/such/binary
    max_retry = 1
    [watcher:idle]
    cmd = sleep 312
    autostart = false
    [watcher:zero]
    cmd = sleep 313
    numprocesses = 0
    [watcher:once]
    cmd = sh -c 'echo "Traceback (most recent call last):" >&2; echo "  File app.py, line 3" >&2; echo "OSError: [Errno 98] Address already in use" >&2; exit 2'
    autostart = false
    max_retry = 0
""")
#: the CSS tones (circushttpd.css), as getComputedStyle gives them
BG = {"ok": "rgb(227, 245, 234)", "warn": "rgb(253, 241, 220)", "bad": "rgb(251, 230, 228)",
      "idle": "rgb(236, 238, 242)"}


class TroubledPool(Pool):
    def ctl(self, *args: str) -> str:
        node = self.nodes["gamma"]
        r = subprocess.run([PY, "-m", "circus.cli.circusctl", "--endpoint", node.ep("control"),
                            *args], capture_output=True, text=True, timeout=30)
        return r.stdout.strip()


@pytest.fixture(scope="module")
def troubled(tmp_path_factory):
    """circushttpd over node gamma (watchers that crash, fail to start, are stopped or want
    no process) and node 'down' (no circusd there)."""
    base = tmp_path_factory.mktemp("troubled")
    node = Node("gamma", base, watchers={})
    httpd = None
    try:
        node.daemon.start(textwrap.dedent(f"""
            [circus]
            endpoint = {node.ep("control")}
            pubsub_endpoint = {node.ep("events")}
            stats_endpoint = {node.ep("stats")}
            statsd = true
            stats_interval = 0.25
        """) + TROUBLED, "--name", "gamma")
        pool_file = base / "pool.ini"
        pool_file.write_text(
            f"[meta]\ntimeout = 5\n[node:gamma]\nendpoint = {node.ep('control')}\n"
            f"pubsub_endpoint = {node.ep('events')}\nstats_endpoint = {node.ep('stats')}\n"
            f"[node:down]\nendpoint = ipc://{base}/nobody.sock\ntimeout = 1\n")
        users = base / "circushttpd.users"
        for name, role in USERS.items():
            adduser(users, name, role)
        httpd = Httpd(base, pool_file, users)
        pool = TroubledPool({"gamma": node}, httpd)
        node.daemon.wait(lambda: '"trouble": "backoff"' in pool.ctl("--json", "status",
                                                                     "crasher"),
                         timeout=20, what="crasher in backoff")
        node.daemon.wait(lambda: pool.ctl("status", "broken").startswith("fatal"), timeout=20,
                         what="broken fatal")
        node.daemon.wait(lambda: len(node.daemon.children("sleep 311")) == 1, timeout=20,
                         what="sleepers running")
        httpd.start()
        yield pool
    finally:
        if httpd is not None:
            httpd.stop()
        if node.daemon.proc is not None:
            node.daemon.stop()
            node.daemon.cleanup()


def bg(b: webdriver.Session, css: str) -> str:
    return b.execute("return getComputedStyle(document.querySelector(arguments[0]))"
                     ".backgroundColor;", css)


def badge(b: webdriver.Session, row_css: str) -> tuple[str, str, str]:
    """(word, tone, background colour) of the first badge in ``row_css``."""
    el = b.find(f"{row_css} .badge")
    return el.text.strip(), el.attribute("data-tone"), bg(b, f"{row_css} .badge")


def watcher_rows(b: webdriver.Session) -> list[str]:
    return [tr.attribute("data-watcher") for tr in b.find_all("#watchers tr[data-watcher]")]


def test_trouble_shows_in_colour_on_the_pool_and_node_pages(browser, troubled, shots):
    b = browser
    login(b, troubled, "readonly")
    row = '#nodes tr[data-node="gamma"]'
    assert b.find(row).attribute("data-health") == "bad"
    assert badge(b, f"{row} td.state") == ("active", "ok", BG["ok"])      # it answers
    # ...but its health is red: its unhealthy watchers, counted, named and linked, the worst
    # first (flaky, which crashes every second, is listed when the page caught it in backoff)
    links = b.find_all(f"{row} ul.unhealthy a.watcher-link")
    names = [a.text for a in links]
    assert names in (["broken", "crasher"], ["broken", "crasher", "flaky"]), names
    assert badge(b, f"{row} td.health") == (f"{len(names)} unhealthy", "bad", BG["bad"])
    assert path_of(links[1].attribute("href")) == "/node/gamma/watcher/crasher"
    tones = [li.find(".badge").attribute("data-tone")
             for li in b.find_all(f"{row} ul.unhealthy li")]
    assert tones == ["bad", "warn", "warn"][:len(names)]
    assert bg(b, row) != bg(b, "#nodes thead th") and bg(b, row) != "rgba(0, 0, 0, 0)"
    down = '#nodes tr[data-node="down"]'
    assert b.find(down).attribute("data-state") == "not_available"
    assert badge(b, f"{down} td.state")[1:] == ("bad", BG["bad"])
    png_size(b.screenshot(shots / "web-overview-trouble.png"))

    links[1].click()
    b.wait_until(lambda: path_of(b.url) == "/node/gamma/watcher/crasher", what="crasher page",
                 check=troubled.check)
    open_page(b, troubled, "/node/gamma", "#watchers")
    # the page refreshes its tables live (flaky keeps crashing): read it in one go
    page = b.execute("""
        const bgOf = el => getComputedStyle(el).backgroundColor;
        const rows = {};
        for (const tr of document.querySelectorAll('#watchers tr[data-watcher]')) {
            const badge = tr.querySelector('td.state .badge');
            const last = tr.querySelector('pre.last-lines');
            rows[tr.dataset.watcher] = {word: badge.textContent.trim(), tone: badge.dataset.tone,
                                        bg: bgOf(badge), last: last ? last.textContent : null};
        }
        const spark = [...document.querySelectorAll(
            '#watchers tr[data-watcher="sleepers"] .spark')].map(s => [
                s.querySelector('.spark-label').textContent,
                s.querySelector('.spark-scale').textContent,
                s.querySelector('svg title').textContent]);
        return {rows, spark, count: document.querySelector('#watchers-count').textContent,
                health: document.querySelector('#node-health').textContent};""")
    expect = {"sleepers": ("active", "ok"), "crasher": ("backoff", "warn"),
              "broken": ("fatal", "bad"), "idle": ("stopped", "idle")}
    for name, (word, tone) in expect.items():
        row = page["rows"][name]
        assert (row["word"], row["tone"], row["bg"]) == (word, tone, BG[tone]), (name, row)
    # the header counts the rows (circusd-stats included) and says what is wrong
    assert int(page["count"]) == len(page["rows"]) == len(troubled.ctl("list").split(","))
    assert page["health"] in ("1 fatal, 1 in backoff", "1 fatal, 2 in backoff"), page["health"]
    # the crash loop's row shows its last stderr lines
    last = page["rows"]["crasher"]["last"]
    assert "crasher-err last" in last and "crasher-out" not in last
    assert page["rows"]["sleepers"]["last"] is None
    # sparklines say which is which, and their scale
    assert [label for label, _, _ in page["spark"]] == ["CPU", "mem"]     # shown upper case
    for _, scale, title in page["spark"]:
        assert re.fullmatch(r"\d+\.\d%", scale), scale
    assert "CPU % over the last minute" in page["spark"][0][2]
    assert "memory % of the machine" in page["spark"][1][2]
    png_size(b.screenshot(shots / "web-node-trouble.png"))


def test_a_failing_add_is_a_red_banner_with_the_reason(browser, troubled):
    b = browser
    login(b, troubled, "admin", next_path="/node/gamma")
    before = len(watcher_rows(b))
    assert int(b.find("#watchers-count").text) == before

    def type_in(name: str, text: str) -> bool:
        # the page refreshes its parts live; once the input has the focus it is left alone
        field = b.find(f"form#add-watcher input[name={name}]")
        field.clear()
        field.send_keys(text)
        return b.find(f"form#add-watcher input[name={name}]").prop("value") == text
    b.wait_until(lambda: type_in("name", "bogus"), what="the name typed", check=troubled.check)
    b.wait_until(lambda: type_in("cmd", "/no/such/binary"), what="the command typed",
                 check=troubled.check)
    try:
        b.find("form#add-watcher button[type=submit]").click()
        result = b.wait_until(lambda: b.find("#progress").attribute("data-result"), timeout=30,
                              what="the add's banner", check=troubled.check)
        box = b.find("#progress")
        assert result == "error" and "failed" in box.attribute("class").split()
        assert bg(b, "#progress") == BG["bad"]
        assert box.find(".banner-title").text == "add bogus: added, but it failed to start"
        assert "command not found: '/no/such/binary'" in box.find(".banner-reason").text
        assert box.attribute("data-code") == "spawn_failed"
        assert "done" not in box.find(".banner-title").text
        # the table and its count follow without reloading the page
        b.wait_until(lambda: "bogus" in watcher_rows(b), timeout=10, what="bogus listed",
                     check=troubled.check)
        b.wait_until(lambda: int(b.find("#watchers-count").text) == len(watcher_rows(b)) ==
                     before + 1, timeout=10, what="the count of the rows", check=troubled.check)
        tone = b.wait_until(lambda: b.find('#watchers tr[data-watcher="bogus"] td.state .badge')
                            .attribute("data-tone"), what="bogus's badge", check=troubled.check)
        assert tone in ("warn", "bad")
        # the form keeps what was typed, to be corrected
        assert b.find("form#add-watcher input[name=cmd]").prop("value") == "/no/such/binary"
    finally:
        troubled.ctl("rm", "bogus")


def test_decr_past_zero_is_an_amber_banner(browser, troubled):
    b = browser
    login(b, troubled, "operator", next_path="/node/gamma")
    b.find('form.action[data-action="decr"][data-watcher="zero"] button').click()
    result = b.wait_until(lambda: b.find("#progress").attribute("data-result"), timeout=20,
                          what="the decr's banner", check=troubled.check)
    assert result == "warning" and bg(b, "#progress") == BG["warn"]
    assert b.find("#progress .banner-title").text.endswith("with a warning: it now wants 0 "
                                                           "processes")
    assert "leaves 0, not a negative number" in b.find("#progress .banner-reason").text


def test_a_start_that_dies_shows_its_last_lines_readably(browser, troubled):
    b = browser
    login(b, troubled, "operator", next_path="/node/gamma")
    try:
        b.find('form.action[data-action="start"][data-watcher="once"] button').click()
        result = b.wait_until(lambda: b.find("#progress").attribute("data-result"), timeout=30,
                              what="the start's banner", check=troubled.check)
        assert result == "error" and bg(b, "#progress") == BG["bad"]
        assert b.find("#progress").attribute("data-code") == "not_ready"
        assert b.find("#progress .banner-title").text == "start once: failed"
        assert "exit code 2" in b.find("#progress .banner-reason").text
        lines = b.find("#progress pre.banner-lines")
        # one line each, their indentation kept, in a monospace block
        assert lines.text.splitlines()[-3:] == ["Traceback (most recent call last):",
                                                "  File app.py, line 3",
                                                "OSError: [Errno 98] Address already in use"]
        style = b.execute("var s = getComputedStyle(document.querySelector(arguments[0]));"
                          "return [s.whiteSpace, s.fontFamily];", "#progress pre.banner-lines")
        assert style[0] == "pre-wrap" and "mono" in style[1].lower(), style
    finally:
        troubled.ctl("stop", "once")


def test_a_restart_says_what_happened_in_operator_words(browser, troubled):
    b = browser
    login(b, troubled, "operator", next_path="/node/gamma")
    old = troubled.nodes["gamma"].daemon.children("sleep 311")
    b.find('form.action[data-action="restart"][data-watcher="sleepers"] button').click()
    result = b.wait_until(lambda: b.find("#progress").attribute("data-result"), timeout=30,
                          what="the restart's banner", check=troubled.check)
    new = troubled.nodes["gamma"].daemon.children("sleep 311")
    assert result == "ok" and bg(b, "#progress") == BG["ok"]
    assert b.find("#progress .banner-title").text.endswith(
        f"replaced 1 process: stopped {old[0]}; started {new[0]}")

    def steps() -> list[str]:
        return [li.text for li in b.find_all("#progress li")]
    b.wait_until(lambda: "sleepers: 1 of 1 processes replaced" in steps(), timeout=10,
                 what="the rolling step listed", check=troubled.check)
    assert f"sleepers: started process {new[0]}" in steps()
    assert not [s for s in steps() if s in ("sleepers: reload", "sleepers: progress",
                                            "sleepers: start", "sleepers: stop")], steps()
    # the watcher page's event list words them the same way
    open_page(b, troubled, "/node/gamma/watcher/sleepers", "#events")
    b.wait_until(lambda: "sleepers: every process renewed" in b.find("#events").text or
                 b.refresh(), timeout=10, interval=0.3, what="the end of the restart listed",
                 check=troubled.check)


def test_a_crash_loop_has_its_output_at_hand(browser, troubled, shots):
    b = browser
    login(b, troubled, "readonly", next_path="/node/gamma/watcher/crasher")
    title = b.find("#watcher-title")
    assert title.attribute("data-trouble") == "backoff"
    assert badge(b, "#watcher-title") == ("backoff", "warn", BG["warn"])
    assert "exit code 3" in b.find("#trouble .reason").text
    lines = b.find("#trouble-lines").text
    assert "crasher-err first" in lines and "crasher-err last" in lines
    out = b.find("pre#output").text
    assert "crasher-out" in out and "crasher-err last" in out
    assert not b.exists("#output-note") and "stdout_stream" not in b.source
    assert b.find("#processes-count").text == "1" and b.exists('#processes tr[data-wid="1"]')
    # a watcher that keeps crashing: its new lines arrive live, from new processes
    open_page(b, troubled, "/node/gamma/watcher/flaky", "pre#output")
    assert "flaky-err cannot bind" in b.find("pre#output").text
    b.wait_until(lambda: int(b.find("pre#output").attribute("data-lines") or 0) >= 2,
                 timeout=20, what="live output lines of flaky", check=troubled.check)
    grown = int(b.find("pre#output").attribute("data-lines"))
    pids = set(re.findall(r"flaky-err cannot bind (\d+)", b.find("pre#output").text))
    assert len(pids) >= 2, b.find("pre#output").text
    b.wait_until(lambda: "flaky-err cannot bind" in b.find("#trouble-lines").text, timeout=20,
                 what="flaky's trouble box", check=troubled.check)
    # as its table is refreshed live, its count stays the number of its rows
    for _ in range(5):
        count, shown = b.execute("return [document.querySelector('#processes-count')"
                                 ".textContent, document.querySelectorAll("
                                 "'#processes tbody tr:not(.empty)').length];")
        assert int(count) == shown == 1, (count, shown)
        b.wait_until(lambda: int(b.find("pre#output").attribute("data-lines") or 0) > grown,
                     timeout=20, what="another live line", check=troubled.check)
        grown = int(b.find("pre#output").attribute("data-lines"))
    png_size(b.screenshot(shots / "web-watcher-crash.png"))


def test_a_node_that_is_down_disables_the_admin_forms(browser, troubled):
    b = browser
    login(b, troubled, "admin", next_path="/node/down")
    assert b.find("#admin").attribute("data-answering") == "no"
    assert "down is not available" in b.find("#admin-off").text
    assert b.find("#add-watcher fieldset").prop("disabled") is True
    assert b.execute("return document.querySelector('#add-watcher button').matches(':disabled')")
    assert b.find('form.action[data-action="reloadconfig"] button').prop("disabled") is True
    open_page(b, troubled, "/node/gamma", "#watchers")
    assert b.find("#admin").attribute("data-answering") == "yes"
    assert b.execute("return document.querySelector('#add-watcher button').matches(':disabled')") \
        is False
