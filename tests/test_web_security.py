"""circushttpd's defences, against a real circushttpd (a subprocess on port 0) over a real circusd,
with a raw HTTP client that sees the exact header bytes and sends from several loopback
addresses: where a login may send the browser (``next``), the security headers and the pages'
compatibility with them, login timing, the throttle per name and per address, which users
file is trusted, and logout revocations across a restart. Pure pieces (the throttle's tables,
the redirect rule, the revocation store) are tested directly as well."""
from __future__ import annotations

import asyncio
import json
import os
import re
import stat
import subprocess
import sys
import statistics
import textwrap
import time
from pathlib import Path
from urllib.parse import quote, unquote, urljoin, urlsplit

import pytest

pytest.importorskip("tornado")
pytest.importorskip("jinja2")

from circus.web.headers import CSP  # noqa: E402
from circus.web.redirects import safe_target  # noqa: E402
from circus.web.revocations import Revocations  # noqa: E402
from circus.web.throttle import (ADDRESS_LIMIT, NAME_DELAY, PAIR_LIMIT, Throttle,  # noqa: E402
                                 address_key, client_address)
from circus.web.users import Users, UsersError, load_secret  # noqa: E402
from conftest import Circusd  # noqa: E402
from webhttp import Httpd, receive_head, request, send  # noqa: E402

pytestmark = pytest.mark.real

PASSWORDS = {"ada": "admin-pass-1", "otto": "operator-pass-1", "rita": "readonly-pass-1",
             "tina": "operator-pass-2", "tom": "operator-pass-3"}
ROLES = {"ada": "admin", "otto": "operator", "rita": "readonly", "tina": "operator",
         "tom": "operator"}
PROXY = "127.0.0.9"


class Site:
    def __init__(self, base: Path) -> None:
        self.base = base
        self.node = Circusd(base / "node")
        self.httpd: Httpd | None = None

    def start(self) -> None:
        d = self.node.dir
        d.mkdir()
        self.node.start(textwrap.dedent(f"""
            [circus]
            endpoint = ipc://{d}/c.sock
            pubsub_endpoint = ipc://{d}/p.sock
            [watcher:sl]
            cmd = sleep 300
        """), "--name", "n1")
        self.node.wait(lambda: (d / "c.sock").exists(), what="control socket")
        users = Users.load(str(self.base / "circushttpd.users"), missing_ok=True)
        for name, password in PASSWORDS.items():
            users.add(name, ROLES[name], password)
        self.token = users.new_token("rita")
        self.httpd = Httpd(self.base, "--endpoint", f"ipc://{d}/c.sock", "--pubsub",
                           f"ipc://{d}/p.sock", "--trusted-proxy", PROXY).start()

    @property
    def port(self) -> int:
        assert self.httpd is not None
        return self.httpd.port

    def client(self, source: str | None = None):
        assert self.httpd is not None
        return self.httpd.client(source)

    def stop(self) -> None:
        if self.httpd is not None and self.httpd.proc is not None:
            self.httpd.stop()
        self.node.cleanup()


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    s = Site(tmp_path_factory.mktemp("websec"))
    try:
        s.start()
        yield s
    finally:
        s.stop()


# -- F5: where a login sends the browser ----------------------------------------------------------

def browser_reads(base: str, location: bytes) -> tuple[str, str]:
    """(scheme, host) a WHATWG browser goes to for ``location`` on page ``base``: tabs and
    newlines removed anywhere, leading and trailing C0 controls and spaces stripped, ``\\``
    taken for ``/`` (http is a special scheme), then resolved against ``base``."""
    text = location.decode("latin-1")
    text = re.sub(r"[\t\n\r]", "", text).strip("".join(map(chr, range(0x21))))
    scheme = re.match(r"([A-Za-z][A-Za-z0-9+.-]*):", text)
    if scheme is None or scheme.group(1).lower() in ("http", "https"):
        text = text.replace("\\", "/")
    url = urlsplit(urljoin(base, text))
    return url.scheme, url.netloc


HOSTILE_NEXT = [
    "/\t/evil.example/", "/\n/evil.example/", "/\r/evil.example/", "/\r\n/evil.example/",
    "/\x00/evil.example/", "\t//evil.example/", " //evil.example/", "//evil.example/",
    "///evil.example/", "/\\evil.example/", "\\/evil.example/", "/\\/evil.example/",
    "\\\\evil.example/", "/\t\\evil.example/", "https://evil.example/", "HTTPS://evil.example/",
    "http:evil.example", "http:/evil.example", "javascript:alert(1)", "//evil.example@n1/",
    "/%09/evil.example/", "/%2F/evil.example/", "/%2f%2fevil.example/", "/%5Cevil.example/",
    "/%5C%5Cevil.example/", "/%252F%252Fevil.example/", "/%25252F%25252Fevil.example/",
    "/./evil.example/", "/.//evil.example/", "/..//evil.example/", "/\x7f/evil.example/",
    "/\x85/evil.example/", "/\u2028/evil.example/", "/\uff0f\uff0fevil.example/",
    "/\u3000/evil.example/", "/ /evil.example/", "\x01//evil.example/",
]
GOOD_NEXT = ["/", "/node/n1", "/node/n1/watcher/sl", "/node/n1?refresh=1", "/node/n1/"]


def _check_location(site: Site, r, hostile: bool, wanted: str | None = None) -> None:
    assert r.status == 302, (r.status, r.text[:300])
    raw = r.raw("location")
    assert raw is not None
    assert all(0x21 <= b <= 0x7e for b in raw) and b"\\" not in raw, raw
    base = f"http://127.0.0.1:{site.port}/login"
    assert browser_reads(base, raw) == ("http", f"127.0.0.1:{site.port}"), raw
    if hostile:
        assert raw == b"/", raw
    if wanted is not None:
        assert raw.decode() == wanted


@pytest.mark.parametrize("target", HOSTILE_NEXT + GOOD_NEXT)
def test_a_login_never_sends_the_browser_to_another_host(site, target):
    hostile = target not in GOOD_NEXT
    c = site.client()
    page = c.get("/login?next=" + quote(target, safe=""))
    assert page.status == 200
    action = re.search(r'id="login-form" method="post" action="([^"]+)"', page.text).group(1)
    rendered = unquote(re.search(r"next=([^&\"]*)", action).group(1))
    assert rendered == ("/" if hostile else target)
    r = c.login("rita", PASSWORDS["rita"], next_=target)
    _check_location(site, r, hostile, None if hostile else target)
    # logged in, /login?next=... redirects at once: the same rule
    again = c.get("/login?next=" + quote(target, safe=""))
    _check_location(site, again, hostile, None if hostile else target)


def test_the_login_redirect_of_an_anonymous_page_keeps_only_safe_targets(site):
    r = request(site.port, "GET", "/node/n1/watcher/sl?x=1")
    assert r.status == 302 and r.header("location") == \
        "/login?next=%2Fnode%2Fn1%2Fwatcher%2Fsl%3Fx%3D1"
    r = request(site.port, "GET", "//evil.example/")     # tornado's own path, not ours
    assert r.status in (302, 404)
    if r.status == 302:
        _, netloc = browser_reads(f"http://127.0.0.1:{site.port}/", r.raw("location"))
        assert netloc == f"127.0.0.1:{site.port}"


@pytest.mark.parametrize("target", HOSTILE_NEXT)
def test_safe_target_refuses_what_a_browser_could_read_as_another_host(target):
    assert safe_target(target) == "/"
    assert safe_target(target.encode("utf-8").decode("latin-1")) == "/"


def test_safe_target_keeps_the_paths_of_this_site():
    for target in GOOD_NEXT + ["/node/n1/watcher/Web%20Server", "/node/%C3%BC",
                               "/node/n1/watcher/50%25cpu", "/x?next=//evil.example"]:
        assert safe_target(target) == target
    assert safe_target("/node/n1#frag") == "/node/n1"
    assert safe_target("/" + "a" * 3000) == "/" and safe_target(None) == "/"
    assert safe_target("") == "/"


# -- F19: the security headers, and pages that need no exception to them ------------------------

def _check_headers(r, what: str) -> None:
    assert r.header("content-security-policy") == CSP, what
    assert r.header("x-frame-options") == "DENY", what
    assert r.header("x-content-type-options") == "nosniff", what
    assert r.header("referrer-policy") == "same-origin", what


def test_every_kind_of_response_has_the_security_headers(site):
    port = site.port
    anonymous = [
        ("GET", "/login", 200), ("GET", "/", 302), ("GET", "/node/n1", 302),
        ("GET", "/no/such/page", 302), ("GET", "/static/circushttpd.css", 200),
        ("GET", "/static/circushttpd.js", 200), ("GET", "/static/missing.css", 404),
        ("GET", "/api/status", 401), ("GET", "/api/nope", 401), ("GET", "/metrics", 401),
        ("GET", "/ws", 401), ("POST", "/login", 403), ("POST", "/logout", 302),
        ("HEAD", "/login", 405), ("PUT", "/login", 403),
    ]
    for method, path, status in anonymous:
        r = request(port, method, path)
        assert r.status == status, (method, path, r.status)
        _check_headers(r, f"{method} {path}")
    bearer = {"Authorization": f"Bearer {site.token}"}
    for path, status in (("/api/status", 200), ("/api/nope", 404), ("/metrics", 404)):
        r = request(port, "GET", path, bearer)
        assert r.status == status, (path, r.status, r.text[:200])
        _check_headers(r, f"token {path}")
    c = site.client()
    assert c.login("rita", PASSWORDS["rita"]).status == 302
    for path, status in (("/", 200), ("/node/n1", 200), ("/node/n1/watcher/sl", 200),
                         ("/node/nope", 404), ("/node/n1/watcher/nope", 404), ("/nope", 404)):
        r = c.get(path)
        assert r.status == status, (path, r.status)
        _check_headers(r, f"session {path}")
    r = c.post("/node/n1/action", {"action": "stop", "watcher": "sl"})
    assert r.status == 403                                 # readonly
    _check_headers(r, "refused action")
    ws = receive_head(send(site.port, "GET", "/ws?node=n1", c._headers({
        "Upgrade": "websocket", "Connection": "Upgrade", "Sec-WebSocket-Version": "13",
        "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
        "Origin": f"http://127.0.0.1:{site.port}"})), timeout=10)
    assert ws.status == 101, ws.head
    _check_headers(ws, "the WebSocket handshake")


def test_the_policy_allows_only_this_site_and_no_inline_code():
    parts = dict(p.strip().split(" ", 1) for p in CSP.split(";"))
    assert parts["default-src"] == "'none'" and parts["frame-ancestors"] == "'none'"
    for directive in ("script-src", "style-src", "connect-src", "img-src", "form-action"):
        assert parts[directive] == "'self'", directive
    assert "unsafe" not in CSP and "data:" not in CSP and "*" not in CSP


def test_the_pages_hold_no_inline_script_style_or_handler(site):
    c = site.client()
    pages = {"/login": c.get("/login").text}
    assert c.login("ada", PASSWORDS["ada"]).status == 302
    for path in ("/", "/node/n1", "/node/n1/watcher/sl", "/watchers"):
        r = c.get(path)
        assert r.status == 200, path
        pages[path] = r.text
    for path, html in pages.items():
        for script in re.findall(r"<script\b[^>]*>", html, re.I):
            assert re.search(r'\bsrc="/static/', script), (path, script)
        assert not re.search(r"<script\b[^>]*>(?!</script>)", html, re.I), path   # no body
        assert not re.search(r"<style\b", html, re.I), path
        assert not re.search(r"\sstyle\s*=", html, re.I), path
        assert not re.search(r"\son[a-z]+\s*=", html, re.I), path
        assert "javascript:" not in html.lower(), path
    static = Path(__file__).parents[1] / "circus" / "web" / "static"
    scripts = sorted(static.glob("*.js"))
    assert [s.name for s in scripts] == ["circushttpd-pool.js", "circushttpd.js"]
    for path in scripts:
        script = path.read_text()
        for unsafe in ("eval(", "new Function", "innerHTML", "outerHTML", "insertAdjacentHTML",
                       "document.write", ".style.", "setAttribute(\"style\"", "cssText"):
            assert unsafe not in script, (path.name, unsafe)


# -- F9: the time of a login does not tell which names exist -------------------------------------

def _cpu(users: Users, name: str, password: str) -> float:
    start = time.thread_time()
    users.authenticate(name, password)
    return time.thread_time() - start


def test_every_password_check_costs_one_scrypt(tmp_path):
    """CPU time of the checking thread (other processes' load does not count)."""
    users = Users.load(str(tmp_path / "u.json"), missing_ok=True)
    users.add("known", "operator", "the-right-password")
    data = json.loads((tmp_path / "u.json").read_text())
    data["users"]["broken"] = {"role": "admin", "password": {"salt": "zz", "hash": "x"}}
    (tmp_path / "u.json").write_text(json.dumps(data))
    users.refresh()
    reference = statistics.median(_cpu(users, "known", "wrong-password-12") for _ in range(3))
    assert reference > 0.005                         # a real scrypt was measured
    cases = [("known", "abc"), ("known", ""), ("known", "x" * 5000), ("unknown", "abc"),
             ("unknown", "wrong-password-12"), ("broken", "wrong-password-12"),
             ("", "wrong-password-12")]
    for name, password in cases:
        cost = statistics.median(_cpu(users, name, password) for _ in range(3))
        assert cost > 0.5 * reference, (name, len(password), cost, reference)
    assert users.authenticate("known", "the-right-password").name == "known"


def test_a_login_takes_as_long_for_a_short_password_as_for_an_unknown_name(site):
    def median_time(name: str, password: str) -> float:
        times = []
        for _ in range(3):
            c = site.client("127.0.0.5")
            c.xsrf()
            start = time.monotonic()
            r = c.login(name, password)
            times.append(time.monotonic() - start)
            assert r.status == 200 and "Wrong user name or password" in r.text
        return statistics.median(times)
    short_known = median_time("tom", "abc")
    unknown = median_time("nobody-here", "wrong-password-12")
    assert short_known > 0.4 * unknown, (short_known, unknown)


# -- F10: the throttle, per name and per address ---------------------------------------------------

def test_a_stranger_cannot_lock_a_user_out(site):
    stranger = site.client("127.0.0.2")
    codes = [stranger.login("otto", f"guess-number-{i}").status for i in range(PAIR_LIMIT + 4)]
    assert codes == [200] * PAIR_LIMIT + [429] * 4, codes
    r = stranger.login("otto", PASSWORDS["otto"])
    assert r.status == 429 and "from your address" in r.text     # not even the right one
    otto = site.client("127.0.0.1")
    r = otto.login("otto", PASSWORDS["otto"])
    assert r.status == 302 and r.header("location") == "/", (r.status, r.text[:300])
    assert otto.get("/").status == 200
    site.httpd.wait_log("failed login for 'otto' from 127.0.0.2")


def test_many_failures_on_a_name_slow_it_down_without_locking_it(site):
    for source in ("127.0.0.3", "127.0.0.4"):
        c = site.client(source)
        assert [c.login("tina", f"guess-{i}").status for i in range(PAIR_LIMIT)] == \
            [200] * PAIR_LIMIT
    c = site.client("127.0.0.1")
    c.xsrf()
    start = time.monotonic()
    r = c.login("tina", PASSWORDS["tina"])
    took = time.monotonic() - start
    assert r.status == 302, (r.status, r.text[:300])
    assert took >= NAME_DELAY, took


def test_an_address_that_sprays_names_is_refused_for_every_name(site):
    c = site.client("127.0.0.6")
    codes = [c.login(f"spray-{i}", "some-password").status for i in range(ADDRESS_LIMIT)]
    assert codes == [200] * ADDRESS_LIMIT
    r = c.login("rita", PASSWORDS["rita"])
    assert r.status == 429 and "from your address" in r.text
    assert site.client("127.0.0.7").login("rita", PASSWORDS["rita"]).status == 302


def test_a_trusted_proxy_names_the_client_and_nobody_else_can(site):
    proxy = site.client(PROXY)
    as_client = {"X-Forwarded-For": "198.51.100.1, 203.0.113.7"}
    codes = [proxy.login("ada", f"guess-{i}", headers=as_client).status
             for i in range(PAIR_LIMIT + 1)]
    assert codes == [200] * PAIR_LIMIT + [429], codes
    site.httpd.wait_log("failed login for 'ada' from 203.0.113.7")
    # another client behind the same proxy is not refused
    r = proxy.login("ada", PASSWORDS["ada"], headers={"X-Forwarded-For": "203.0.113.8"})
    assert r.status == 302
    # from any other peer the header means nothing: counted on the peer itself
    other = site.client("127.0.0.10")
    r = other.login("ada", "guess-x", headers={"X-Forwarded-For": "203.0.113.8"})
    assert r.status == 200
    site.httpd.wait_log("failed login for 'ada' from 127.0.0.10")


def test_a_name_that_cannot_be_a_user_is_cut_in_the_log_and_counted_on_the_address(site):
    c = site.client("127.0.0.8")
    r = c.login("x" * 5000, "some-password")
    assert r.status == 200 and "x" * 65 not in r.text
    site.httpd.wait_log("failed login for '" + "x" * 64 + "' from 127.0.0.8")
    assert "x" * 65 not in site.httpd.log_text()


def test_the_throttle_forgets_the_oldest_key_never_a_recent_one():
    t = Throttle(tracked=100)
    for _ in range(PAIR_LIMIT):
        t.failed("op", "10.0.0.1", 0.0)
    assert t.check("op", "10.0.0.1", 1.0).refused
    for i in range(1000):                     # a flood of other names and addresses
        t.failed(f"n{i}", f"10.1.{i // 250}.{i % 250}", 0.5)
        if i % 50 == 0:
            t.failed("op", "10.0.0.1", 0.5)   # still failing: stays among the newest
    assert t.check("op", "10.0.0.1", 1.0).refused
    assert len(t.pairs) <= 100 and len(t.addresses) <= 100 and len(t.names) <= 100
    assert not t.check("op", "10.0.0.2", 1.0).refused       # another address is not refused
    assert not t.check("op", "10.0.0.1", 2000.0).refused     # the window passed


def test_the_throttle_rules():
    t = Throttle(window=100, pair_limit=2, address_limit=3, name_slow=3, name_delay=2.0)
    t.failed("a", "x", 0)
    t.failed("a", "x", 1)
    assert t.check("a", "x", 2).refused and not t.check("b", "x", 2).refused
    t.failed(None, "x", 3)                    # a name that cannot be a user: the address only
    assert "your address" in t.check("c", "x", 4).refused
    t.failed("a", "y", 5)
    v = t.check("a", "z", 6)
    assert v.refused is None and v.delay == 2.0         # slowed, not refused
    t.succeeded("a", "x")
    assert t.check("a", "x", 7).refused                 # x is still over its address limit
    assert not t.check("a", "x", 104).refused and t.check("a", "q", 200).delay == 0


def test_addresses_and_the_trusted_proxy_rule():
    assert address_key("192.0.2.7") == "192.0.2.7"
    assert address_key("2001:db8:1:2:3:4:5:6") == address_key("2001:db8:1:2:ffff::1") == \
        "2001:db8:1:2::/64"
    assert address_key("::ffff:192.0.2.7") == "192.0.2.7"
    trusted = frozenset({"10.0.0.1", "10.0.0.2"})
    assert client_address("192.0.2.1", ["203.0.113.9"], trusted) == "192.0.2.1"
    assert client_address("10.0.0.1", ["203.0.113.9"], trusted) == "203.0.113.9"
    assert client_address("10.0.0.1", ["1.2.3.4, 203.0.113.9, 10.0.0.2"], trusted) == \
        "203.0.113.9"
    assert client_address("10.0.0.1", ["not-an-address"], trusted) == "10.0.0.1"
    assert client_address("10.0.0.1", [], trusted) == "10.0.0.1"


# -- F13: a users file (or secret) someone else could write is refused ----------------------------

def test_a_users_file_others_could_write_lets_nobody_in_until_fixed(tmp_path):
    users_path = tmp_path / "circushttpd.users"
    Users.load(str(users_path), missing_ok=True).add("adm", "admin", "admin-pass-9")
    node = Circusd(tmp_path / "node")
    node.dir.mkdir()
    node.start(f"[circus]\nendpoint = ipc://{node.dir}/c.sock\n", "--name", "n9")
    httpd = None
    try:
        node.wait(lambda: (node.dir / "c.sock").exists(), what="control socket")
        httpd = Httpd(tmp_path, "--endpoint", f"ipc://{node.dir}/c.sock", "--no-live").start()
        assert httpd.client().login("adm", "admin-pass-9").status == 302
        os.chmod(users_path, 0o666)                       # no rewrite: only the mode changes
        r = httpd.client().login("adm", "admin-pass-9")
        assert r.status == 200 and "users file cannot be used" in r.text
        httpd.wait_log("writable by group or others (mode 666)")
        os.chmod(users_path, 0o620)
        assert httpd.client().login("adm", "admin-pass-9").status == 200
        os.chmod(users_path, 0o600)
        os.chown(users_path, 65534, 65534)
        assert httpd.client().login("adm", "admin-pass-9").status == 200
        httpd.wait_log("owned by uid 65534")
        os.chown(users_path, 0, 0)
        assert httpd.client().login("adm", "admin-pass-9").status == 302
    finally:
        if httpd is not None:
            httpd.stop()
        node.cleanup()


def test_users_files_and_secrets_that_are_not_trusted(tmp_path):
    path = tmp_path / "u.json"
    Users.load(str(path), missing_ok=True).add("a", "admin", "password-123")
    os.chmod(path, 0o646)
    with pytest.raises(UsersError, match="writable by group or others"):
        Users.load(str(path))
    os.chmod(path, 0o600)
    os.symlink(path, tmp_path / "link.json")
    assert Users.load(str(tmp_path / "link.json")).get("a") is not None   # a link is followed
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    with pytest.raises(UsersError, match="not a regular file"):
        Users.load(str(fifo))
    big = tmp_path / "big.json"
    big.write_text('{"users": {}, "x": "' + "y" * (5 * 1024 * 1024) + '"}')
    with pytest.raises(UsersError, match="larger than"):
        Users.load(str(big))
    secret = tmp_path / "secret"
    load_secret(str(secret))
    os.chown(secret, 65534, 65534)
    with pytest.raises(UsersError, match="owned by uid 65534"):
        load_secret(str(secret))
    os.chown(secret, 0, 0)
    assert len(load_secret(str(secret))) == 64


def test_adduser_refuses_a_users_file_others_could_write(tmp_path):
    path = tmp_path / "u.json"
    Users.load(str(path), missing_ok=True).add("a", "admin", "password-123")
    os.chmod(path, 0o666)
    r = subprocess.run([sys.executable, "-m", "circus.cli.httpd", "adduser", "b", "--role",
                        "admin", "--users", str(path), "--password-stdin"],
                       input="password-456\n", capture_output=True, text=True, timeout=30)
    assert r.returncode == 2 and "writable by group or others" in r.stderr, r.stderr
    assert "Traceback" not in r.stderr and '"b"' not in path.read_text()


def test_a_stored_scrypt_cost_is_bounded(tmp_path):
    path = tmp_path / "u.json"
    users = Users.load(str(path), missing_ok=True)
    with pytest.raises(UsersError, match="scrypt cost"):
        users.add("a", "admin", "password-123", n=2 ** 22)
    users.add("a", "admin", "password-123")
    data = json.loads(path.read_text())
    data["users"]["a"]["password"]["n"] = 2 ** 24          # 2 GiB per check: not used
    path.write_text(json.dumps(data))
    users.refresh()
    start = time.monotonic()
    assert users.authenticate("a", "password-123") is None
    assert time.monotonic() - start < 5


# -- F14: logout holds across a restart -------------------------------------------------------------

def _site_for_restart(tmp_path: Path) -> tuple[Circusd, list[str]]:
    Users.load(str(tmp_path / "circushttpd.users"), missing_ok=True).add(
        "adm", "admin", "admin-pass-9")
    node = Circusd(tmp_path / "node")
    node.dir.mkdir()
    node.start(f"[circus]\nendpoint = ipc://{node.dir}/c.sock\n", "--name", "n8")
    node.wait(lambda: (node.dir / "c.sock").exists(), what="control socket")
    return node, ["--endpoint", f"ipc://{node.dir}/c.sock", "--no-live"]


def test_a_logged_out_session_stays_out_after_a_restart(tmp_path):
    node, args = _site_for_restart(tmp_path)
    httpd = Httpd(tmp_path, *args)
    try:
        httpd.start()
        out, kept = httpd.client(), httpd.client()
        assert out.login("adm", "admin-pass-9").status == 302
        assert kept.login("adm", "admin-pass-9").status == 302
        stolen = dict(out.cookies)
        assert out.get("/").status == 200
        r = out.post("/logout", {})
        assert r.status == 302 and r.header("location") == "/login"
        httpd.stop()
        httpd.start()                                # a new port: the same cookies
        out.port = kept.port = httpd.port
        out.cookies = dict(stolen)
        r = out.get("/")
        assert r.status == 302 and r.header("location").startswith("/login"), r.status
        revoked = tmp_path / "circushttpd.secret.revoked"
        assert stat.S_IMODE(revoked.lstat().st_mode) == 0o600 and revoked.is_file()
        assert len(json.loads(revoked.read_text())["revoked"]) == 1
        assert kept.get("/").status == 200           # a session not logged out still is one
        assert httpd.client().login("adm", "admin-pass-9").status == 302
    finally:
        if httpd.proc is not None:
            httpd.stop()
        node.cleanup()


@pytest.mark.parametrize("spoil", ["mode", "link", "junk"])
def test_a_revocations_file_that_cannot_be_trusted_ends_every_session(tmp_path, spoil):
    node, args = _site_for_restart(tmp_path)
    httpd = Httpd(tmp_path, *args)
    elsewhere = tmp_path / "elsewhere.json"
    try:
        httpd.start()
        c = httpd.client()
        assert c.login("adm", "admin-pass-9").status == 302
        assert c.get("/").status == 200
        other = httpd.client()
        assert other.login("adm", "admin-pass-9").status == 302
        assert other.post("/logout", {}).status == 302
        httpd.stop()
        revoked = tmp_path / "circushttpd.secret.revoked"
        if spoil == "mode":
            os.chmod(revoked, 0o666)
        elif spoil == "link":
            elsewhere.write_text('{"not_before": 0, "revoked": {}}')
            revoked.unlink()
            os.symlink(elsewhere, revoked)
        else:
            revoked.write_text("{junk")
        httpd.start()
        c.port = httpd.port
        r = c.get("/")
        assert r.status == 302, "a session survived an untrusted revocations file"
        httpd.wait_log("every session is ended")
        assert not revoked.is_symlink() and stat.S_IMODE(revoked.stat().st_mode) == 0o600
        if spoil == "link":
            assert elsewhere.read_text() == '{"not_before": 0, "revoked": {}}'
        assert httpd.client().login("adm", "admin-pass-9").status == 302
    finally:
        if httpd.proc is not None:
            httpd.stop()
        node.cleanup()


def test_the_revocation_list_is_bounded_and_never_lets_a_session_back(tmp_path):
    asyncio.run(_bounded_revocations(tmp_path))


async def _bounded_revocations(tmp_path: Path) -> None:
    clock = [1000.0]
    path = tmp_path / "r"
    store = Revocations(str(path), max_age=100, limit=3, clock=lambda: clock[0])
    store.load()
    for i in range(3):
        await store.revoke(f"{i:08x}", 990.0 + i)
    assert len(store) == 3 and store.revoked("00000001", 991.0)
    assert not store.revoked("0000aaaa", 995.0)
    await store.revoke("0000000f", 999.0)                   # one more: every session ends
    assert len(store) == 1
    for sid, issued in (("00000001", 991.0), ("0000aaaa", 995.0), ("0000000f", 999.0)):
        assert store.revoked(sid, issued)
    assert not store.revoked("0000bbbb", 1000.5)            # a session made after is fine
    clock[0] = 1200.0                                       # expired entries are dropped
    await store.revoke("000000ff", 1150.0)
    assert len(store) == 1
    again = Revocations(str(path), max_age=100, clock=lambda: clock[0])
    again.load()
    assert again.revoked("000000ff", 1150.0) and again.revoked("00000001", 991.0)
    assert not again.revoked("0000cccc", 1199.0)
    store.close()
    again.close()


# -- bodies and properties the API cannot take ------------------------------------------------------

def test_the_api_refuses_properties_no_command_has_with_400(site):
    bearer = {"Authorization": f"Bearer {site.token}", "Content-Type": "application/json"}
    for prop in ("node", "deadline", "command", "user", "nodes"):
        body = json.dumps({"command": "list", "properties": {prop: "x"}}).encode()
        r = request(site.port, "POST", "/api/command", bearer, body)
        assert r.status == 400 and f"'{prop}'" in json.loads(r.body)["reason"], (prop, r.text)
    big = b'{"command": "list", "x": "' + b"y" * (100 * 1024) + b'"}'
    r = request(site.port, "POST", "/api/command", bearer, big)
    assert r.status == 413 and "larger than 65536 bytes" in json.loads(r.body)["reason"]
    huge = b'{"command": "list", "x": "' + b"y" * (300 * 1024) + b'"}'
    try:                                 # over circushttpd's body limit: 400, then closed
        r = request(site.port, "POST", "/api/command", bearer, huge)
        assert r.status == 400, r.status
    except (ConnectionResetError, BrokenPipeError):
        pass                             # closed before the client read the 400
    assert request(site.port, "GET", "/api/status", bearer).status == 200
