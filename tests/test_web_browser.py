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
