"""A small W3C WebDriver client for the browser tests: Debian's chromedriver driving headless
Chromium, over urllib and json only.

    ensure_browser()          -> Browser paths, installing the Debian packages when missing
    Driver.start(browser)     -> a chromedriver subprocess on a free loopback port
    driver.session()          -> Session (headless Chromium with a temporary profile)
    session.get / find / find_all / execute / execute_async / screenshot / wait_until
    Element.click / send_keys / clear / text / attribute / prop / find / find_all

Every HTTP call to chromedriver has a timeout, every wait a deadline. Errors:

    WebDriverError            a command refused by chromedriver (W3C error code + message)
    ├── NoSuchElement
    └── StaleElement
    BrowserUnavailable        Chromium/chromedriver missing and cannot be installed (says why)
    WaitTimeout               wait_until's deadline passed (says what it last saw)
"""
from __future__ import annotations

import base64
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Any, Callable

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
PACKAGES = ("chromium", "chromium-driver")
ELEMENT_KEY = "element-6066-11e4-a52e-4f735466cecf"
CHROME_ARGS = ("--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1280,900")


class WebDriverError(Exception):
    def __init__(self, error: str, message: str, command: str = "") -> None:
        super().__init__(f"{command}: {error}: {message.splitlines()[0] if message else ''}")
        self.error, self.message, self.command = error, message, command


class NoSuchElement(WebDriverError):
    pass


class StaleElement(WebDriverError):
    pass


class BrowserUnavailable(Exception):
    """Chromium or chromedriver is missing and could not be installed; the message says why."""


class WaitTimeout(AssertionError):
    pass


_ERRORS = {"no such element": NoSuchElement, "stale element reference": StaleElement}


# -- installing ---------------------------------------------------------------------------

@dataclass(frozen=True)
class Browser:
    chromium: str
    chromedriver: str


def _found() -> Browser | None:
    if os.access(CHROMIUM, os.X_OK) and os.access(CHROMEDRIVER, os.X_OK):
        return Browser(CHROMIUM, CHROMEDRIVER)
    return None


def _apt(args: list[str], timeout: float) -> tuple[int, str]:
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    try:
        r = subprocess.run(["apt-get", "-o", "DPkg::Lock::Timeout=120", *args], env=env,
                           stdin=subprocess.DEVNULL, capture_output=True, text=True,
                           timeout=timeout)
    except subprocess.TimeoutExpired:
        return -1, f"apt-get {' '.join(args)} did not finish within {timeout:.0f} s"
    return r.returncode, (r.stdout + r.stderr)


def ensure_browser(timeout: float = 600.0) -> Browser:
    """Return the paths of Chromium and chromedriver, installing the Debian packages
    (``apt-get install -y --no-install-recommends chromium chromium-driver``, after an
    ``apt-get update`` when the package lists are missing) when they are not there yet.
    Raises BrowserUnavailable naming the reason when that is impossible."""
    found = _found()
    if found:
        return found
    missing = [p for p in (CHROMIUM, CHROMEDRIVER) if not os.access(p, os.X_OK)]
    if shutil.which("apt-get") is None:
        raise BrowserUnavailable(f"{', '.join(missing)} missing and there is no apt-get to "
                                 f"install {' '.join(PACKAGES)}")
    if os.geteuid() != 0:
        raise BrowserUnavailable(f"{', '.join(missing)} missing; installing {' '.join(PACKAGES)} "
                                 f"needs root (running as uid {os.geteuid()})")
    deadline = time.monotonic() + timeout
    install = ["install", "-y", "--no-install-recommends", *PACKAGES]
    code, out = _apt(install, timeout)
    if code != 0:
        ucode, uout = _apt(["update"], max(deadline - time.monotonic(), 1))
        if ucode != 0:
            raise BrowserUnavailable(f"apt-get install {' '.join(PACKAGES)} failed and "
                                     f"apt-get update failed too (no network?):\n"
                                     f"{_tail(out)}\n{_tail(uout)}")
        code, out = _apt(install, max(deadline - time.monotonic(), 1))
    found = _found()
    if code != 0 or not found:
        raise BrowserUnavailable(f"apt-get install {' '.join(PACKAGES)} failed (exit {code}):\n"
                                 f"{_tail(out)}")
    return found


def _tail(text: str, lines: int = 8) -> str:
    return "\n".join(text.strip().splitlines()[-lines:])


# -- the driver process -------------------------------------------------------------------

def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _http(method: str, url: str, body: Any = None, timeout: float = 30.0) -> Any:
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method,
                                 headers={"Content-Type": "application/json; charset=utf-8"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            payload = resp.read()
    except urllib.error.HTTPError as exc:
        payload = exc.read()
        exc.close()
        try:
            value = json.loads(payload)["value"]
        except (ValueError, KeyError, TypeError):
            raise WebDriverError("http error", f"HTTP {exc.code}: {payload[:300]!r}",
                                 f"{method} {url}") from None
        cls = _ERRORS.get(value.get("error", ""), WebDriverError)
        raise cls(value.get("error", "unknown error"), value.get("message", ""),
                  f"{method} {url}") from None
    return json.loads(payload)["value"] if payload else None


class Driver:
    """A chromedriver subprocess on a free loopback port; ``stop()`` ends it by its PID."""

    def __init__(self, browser: Browser, proc: subprocess.Popen, port: int, log: str) -> None:
        self.browser, self.proc, self.port, self.log = browser, proc, port, log
        self.url = f"http://127.0.0.1:{port}"
        self.sessions: list[Session] = []

    @classmethod
    def start(cls, browser: Browser, log: str | None = None, timeout: float = 20.0) -> "Driver":
        port = free_port()
        log = log or os.path.join(tempfile.gettempdir(), f"chromedriver-{port}.log")
        with open(log, "wb") as fh:
            proc = subprocess.Popen([browser.chromedriver, f"--port={port}", "--log-level=WARNING"],
                                    stdin=subprocess.DEVNULL, stdout=fh, stderr=subprocess.STDOUT)
        drv = cls(browser, proc, port, log)
        deadline = time.monotonic() + timeout
        while True:
            if proc.poll() is not None:
                raise WebDriverError("not started", f"chromedriver exited ({proc.returncode}):\n"
                                     f"{drv.log_text()}", "start")
            try:
                if _http("GET", f"{drv.url}/status", timeout=2).get("ready"):
                    return drv
            except (OSError, WebDriverError, ValueError):
                pass
            if time.monotonic() > deadline:
                drv.stop()
                raise WebDriverError("not started", f"chromedriver not ready within {timeout} s",
                                     "start")
            time.sleep(0.05)

    def log_text(self) -> str:
        try:
            with open(self.log, errors="replace") as fh:
                return fh.read()[-3000:]
        except OSError:
            return ""

    def session(self, args: tuple[str, ...] = CHROME_ARGS, timeout: float = 60.0) -> "Session":
        profile = tempfile.mkdtemp(prefix="circus-chromium-")
        caps = {"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "pageLoadStrategy": "normal",
            "unhandledPromptBehavior": "accept",       # a confirm() is answered yes
            "timeouts": {"implicit": 0, "pageLoad": 20000, "script": 10000},
            "goog:chromeOptions": {"binary": self.browser.chromium,
                                   "args": [*args, f"--user-data-dir={profile}"]},
        }}}
        try:
            value = _http("POST", f"{self.url}/session", caps, timeout=timeout)
        except BaseException:
            shutil.rmtree(profile, ignore_errors=True)
            raise
        s = Session(self, value["sessionId"], profile)
        self.sessions.append(s)
        return s

    def stop(self, timeout: float = 10.0) -> None:
        for s in list(self.sessions):
            s.quit()
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout)


# -- the session --------------------------------------------------------------------------

class Session:
    def __init__(self, driver: Driver, session_id: str, profile: str) -> None:
        self.driver, self.id, self.profile = driver, session_id, profile
        self.base = f"{driver.url}/session/{session_id}"

    def cmd(self, method: str, path: str, body: Any = None, timeout: float = 30.0) -> Any:
        if method == "POST" and body is None:
            body = {}
        return _http(method, self.base + path, body, timeout)

    # navigation
    def get(self, url: str) -> None:
        self.cmd("POST", "/url", {"url": url})

    @property
    def url(self) -> str:
        return self.cmd("GET", "/url")

    @property
    def title(self) -> str:
        return self.cmd("GET", "/title")

    @property
    def source(self) -> str:
        return self.cmd("GET", "/source")

    def back(self) -> None:
        self.cmd("POST", "/back")

    def refresh(self) -> None:
        self.cmd("POST", "/refresh")

    def set_viewport(self, width: int, height: int) -> tuple[int, int]:
        """Resize the window so the page area (and so a screenshot) is ``width`` x ``height``."""
        inner = self.execute("return [window.innerWidth, window.innerHeight]")
        rect = self.cmd("GET", "/window/rect")
        self.cmd("POST", "/window/rect", {"width": rect["width"] + width - inner[0],
                                          "height": rect["height"] + height - inner[1]})
        return tuple(self.execute("return [window.innerWidth, window.innerHeight]"))

    # elements
    def find(self, css: str) -> "Element":
        return Element(self, self.cmd("POST", "/element", {"using": "css selector", "value": css})
                       [ELEMENT_KEY], css)

    def find_all(self, css: str) -> list["Element"]:
        found = self.cmd("POST", "/elements", {"using": "css selector", "value": css})
        return [Element(self, e[ELEMENT_KEY], css) for e in found]

    def exists(self, css: str) -> bool:
        return bool(self.find_all(css))

    # scripts (arguments may be Elements; returned elements come back as Elements)
    def execute(self, script: str, *args: Any) -> Any:
        return self._unwrap(self.cmd("POST", "/execute/sync",
                                     {"script": script, "args": [_wrap(a) for a in args]}))

    def execute_async(self, script: str, *args: Any, timeout: float = 10.0) -> Any:
        """Run ``script`` whose last argument is the callback to call with the result."""
        self.cmd("POST", "/timeouts", {"script": int(timeout * 1000)})
        return self._unwrap(self.cmd("POST", "/execute/async",
                                     {"script": script, "args": [_wrap(a) for a in args]},
                                     timeout=timeout + 10))

    def _unwrap(self, value: Any) -> Any:
        if isinstance(value, dict) and ELEMENT_KEY in value:
            return Element(self, value[ELEMENT_KEY], "<script result>")
        if isinstance(value, list):
            return [self._unwrap(v) for v in value]
        return value

    # cookies
    def cookies(self) -> list[dict]:
        return self.cmd("GET", "/cookie")

    def delete_cookies(self) -> None:
        self.cmd("DELETE", "/cookie")

    def add_cookie(self, cookie: dict) -> None:
        keep = ("name", "value", "path", "domain", "secure", "httpOnly", "expiry", "sameSite")
        self.cmd("POST", "/cookie", {"cookie": {k: v for k, v in cookie.items() if k in keep}})

    def screenshot(self, path: str | os.PathLike | None = None) -> bytes:
        png = base64.b64decode(self.cmd("GET", "/screenshot"))
        if path is not None:
            with open(path, "wb") as fh:
                fh.write(png)
        return png

    def wait_until(self, predicate: Callable[[], Any], timeout: float = 10.0,
                   what: str = "condition", interval: float = 0.05,
                   check: Callable[[], None] | None = None) -> Any:
        """Call ``predicate`` until it returns something true and return that. A missing or
        stale element counts as "not yet". ``check()`` may raise to end the wait early (a
        server died). At the deadline raise WaitTimeout with the last value or error seen."""
        deadline = time.monotonic() + timeout
        last: Any = "<nothing yet>"
        while True:
            try:
                value = predicate()
                if value:
                    return value
                last = value
            except (NoSuchElement, StaleElement) as exc:
                last = exc
            if check is not None:
                check()
            if time.monotonic() > deadline:
                raise WaitTimeout(f"timed out after {timeout} s waiting for {what}; "
                                  f"last saw: {last!r} (page {self._safe_url()})")
            time.sleep(interval)

    def _safe_url(self) -> str:
        try:
            return self.url
        except (OSError, WebDriverError):
            return "?"

    def quit(self) -> None:
        if self in self.driver.sessions:
            self.driver.sessions.remove(self)
            try:
                _http("DELETE", self.base, timeout=15)
            except (OSError, WebDriverError):
                pass
            shutil.rmtree(self.profile, ignore_errors=True)


def _wrap(arg: Any) -> Any:
    return {ELEMENT_KEY: arg.id} if isinstance(arg, Element) else arg


class Element:
    def __init__(self, session: Session, element_id: str, css: str) -> None:
        self.session, self.id, self.css = session, element_id, css
        self.base = f"/element/{element_id}"

    def __repr__(self) -> str:
        return f"<Element {self.css!r}>"

    def find(self, css: str) -> "Element":
        return Element(self.session, self.session.cmd(
            "POST", f"{self.base}/element", {"using": "css selector", "value": css})[ELEMENT_KEY],
            css)

    def find_all(self, css: str) -> list["Element"]:
        found = self.session.cmd("POST", f"{self.base}/elements",
                                 {"using": "css selector", "value": css})
        return [Element(self.session, e[ELEMENT_KEY], css) for e in found]

    def click(self) -> None:
        self.session.cmd("POST", f"{self.base}/click")

    def clear(self) -> None:
        self.session.cmd("POST", f"{self.base}/clear")

    def send_keys(self, text: str) -> None:
        self.session.cmd("POST", f"{self.base}/value", {"text": text})

    @property
    def text(self) -> str:
        return self.session.cmd("GET", f"{self.base}/text")

    @property
    def tag(self) -> str:
        return self.session.cmd("GET", f"{self.base}/name")

    def attribute(self, name: str) -> str | None:
        return self.session.cmd("GET", f"{self.base}/attribute/{name}")

    def prop(self, name: str) -> Any:
        return self.session.cmd("GET", f"{self.base}/property/{name}")

    @property
    def displayed(self) -> bool:
        return self.session.cmd("GET", f"{self.base}/displayed")
