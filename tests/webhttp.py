"""Helpers for tests of a real circushttpd: the process itself (port 0, its listening line
awaited with a deadline) and a raw HTTP/1.1 client over loopback that keeps the exact header
bytes and can send from any 127.0.0.0/8 address (several clients, for the login throttle)."""
from __future__ import annotations

import os
import re
import select
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from http.cookies import SimpleCookie
from pathlib import Path
from urllib.parse import urlencode

import pytest

PY = sys.executable


@dataclass
class Response:
    status: int
    head: bytes                                   # the status line and headers, as sent
    headers: list[tuple[str, bytes]]              # (lower-case name, raw value bytes)
    body: bytes

    def header(self, name: str) -> str | None:
        values = [v for n, v in self.headers if n == name.lower()]
        return values[0].decode("latin-1") if values else None

    def raw(self, name: str) -> bytes | None:
        values = [v for n, v in self.headers if n == name.lower()]
        return values[0] if values else None

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", "replace")


def parse_response(data: bytes) -> Response:
    head, sep, body = data.partition(b"\r\n\r\n")
    assert sep, f"no end of headers in {data[:300]!r}"
    lines = head.split(b"\r\n")
    status = int(lines[0].split(b" ")[1])
    headers = []
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        headers.append((name.decode("latin-1").strip().lower(), value.strip(b" ")))
    if any(n == "transfer-encoding" and v.lower() == b"chunked" for n, v in headers):
        body = _dechunk(body)
    return Response(status, head, headers, body)


def _dechunk(body: bytes) -> bytes:
    out = b""
    while body:
        size_line, _, rest = body.partition(b"\r\n")
        size = int(size_line.split(b";")[0], 16)
        if size == 0:
            break
        out += rest[:size]
        body = rest[size + 2:]
    return out


def send(port: int, method: str, path: str, headers: dict[str, str] | None = None,
         body: bytes = b"", source: str | None = None, timeout: float = 30.0) -> socket.socket:
    """Send one request (``Connection: close``) and return the socket, unread."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    if source:
        sock.bind((source, 0))
    sock.connect(("127.0.0.1", port))
    lines = [f"{method} {path} HTTP/1.1", f"Host: 127.0.0.1:{port}"]
    if not any(name.lower() == "connection" for name in headers or {}):
        lines.append("Connection: close")
    for name, value in (headers or {}).items():
        lines.append(f"{name}: {value}")
    if body or method == "POST":
        lines.append(f"Content-Length: {len(body)}")
    sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body)
    return sock


def receive(sock: socket.socket, timeout: float = 30.0) -> Response:
    """Read the whole answer (the server closes after it) within ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    data = b""
    try:
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"no complete answer within {timeout} s: {data[:300]!r}")
            sock.settimeout(left)
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
    finally:
        sock.close()
    return parse_response(data)


def receive_head(sock: socket.socket, timeout: float = 30.0) -> Response:
    """Read only the status line and headers (a WebSocket handshake stays open), then close."""
    deadline = time.monotonic() + timeout
    data = b""
    try:
        while b"\r\n\r\n" not in data:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"no headers within {timeout} s: {data[:300]!r}")
            sock.settimeout(left)
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
    finally:
        sock.close()
    return parse_response(data.split(b"\r\n\r\n", 1)[0] + b"\r\n\r\n")


def answered(sock: socket.socket) -> bool:
    """Whether the server has started answering on ``sock`` (without reading it)."""
    readable, _, _ = select.select([sock], [], [], 0)
    return bool(readable)


def request(port: int, method: str, path: str, headers: dict[str, str] | None = None,
            body: bytes = b"", source: str | None = None, timeout: float = 30.0) -> Response:
    return receive(send(port, method, path, headers, body, source, timeout), timeout)


@dataclass
class Client:
    """A browser-like client: keeps cookies, fetches the ``_xsrf`` pair, logs in."""

    port: int
    source: str | None = None
    cookies: dict[str, str] = field(default_factory=dict)

    def _headers(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        h = dict(extra or {})
        if self.cookies:
            h["Cookie"] = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
        return h

    def keep(self, r: Response) -> Response:
        for name, value in r.headers:
            if name != "set-cookie":
                continue
            cookie = SimpleCookie()
            cookie.load(value.decode("latin-1"))
            for key, morsel in cookie.items():
                if morsel.value == "" or morsel["max-age"] == "0" or \
                        "01 jan 1970" in value.decode("latin-1").lower():
                    self.cookies.pop(key, None)
                else:
                    self.cookies[key] = morsel.value
        return r

    def get(self, path: str, headers: dict[str, str] | None = None,
            timeout: float = 30.0) -> Response:
        return self.keep(request(self.port, "GET", path, self._headers(headers),
                                 source=self.source, timeout=timeout))

    def post(self, path: str, fields: dict[str, str], xsrf: bool = True,
             headers: dict[str, str] | None = None, timeout: float = 30.0) -> Response:
        return self.keep(receive(self.send_post(path, fields, xsrf, headers, timeout), timeout))

    def send_post(self, path: str, fields: dict[str, str], xsrf: bool = True,
                  headers: dict[str, str] | None = None, timeout: float = 30.0) -> socket.socket:
        fields = dict(fields)
        if xsrf:
            fields["_xsrf"] = self.xsrf()
        extra = {"Content-Type": "application/x-www-form-urlencoded", **(headers or {})}
        return send(self.port, "POST", path, self._headers(extra),
                    urlencode(fields).encode(), self.source, timeout)

    def xsrf(self) -> str:
        if "_xsrf" not in self.cookies:
            self.get("/login")
        return self.cookies["_xsrf"]

    def login(self, name: str, password: str, next_: str | None = None,
              headers: dict[str, str] | None = None) -> Response:
        path = "/login" + (f"?{urlencode({'next': next_})}" if next_ is not None else "")
        return self.post(path, {"username": name, "password": password}, headers=headers)


class Httpd:
    """``circushttpd ... --port 0``: stdout read for the listening line, the log in a file."""

    def __init__(self, base: Path, *args: str, users: Path | None = None,
                 secret: Path | None = None) -> None:
        self.base = base
        self.users = users or base / "circushttpd.users"
        self.secret = secret or base / "circushttpd.secret"
        self.log = base / "circushttpd.log"
        self.args = list(args)
        self.proc: subprocess.Popen | None = None
        self.port = 0

    def argv(self) -> list[str]:
        return [PY, "-m", "circus.cli.httpd", *self.args, "--port", "0", "--users",
                str(self.users), "--secret-file", str(self.secret), "--log-level", "debug",
                "--log-output", str(self.log)]

    def start(self, timeout: float = 30.0) -> "Httpd":
        self.proc = subprocess.Popen(self.argv(), stdin=subprocess.DEVNULL,
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        assert self.proc.stdout is not None
        deadline = time.monotonic() + timeout
        line = b""
        while not line.endswith(b"\n"):
            left = deadline - time.monotonic()
            if left <= 0:
                self.kill()
                pytest.fail(f"circushttpd printed no listening line in {timeout} s: {line!r}\n"
                            f"{self.log_text()[-3000:]}")
            ready, _, _ = select.select([self.proc.stdout], [], [], left)
            if ready:
                chunk = os.read(self.proc.stdout.fileno(), 4096)
                if not chunk:
                    code = self.proc.wait(10)
                    pytest.fail(f"circushttpd exited ({code}): {line!r}\n"
                                f"{self.log_text()[-3000:]}")
                line += chunk
        m = re.fullmatch(rb"circushttpd listening on http://127\.0\.0\.1:(\d+)/\n", line)
        assert m, line
        self.port = int(m.group(1))
        return self

    def client(self, source: str | None = None) -> Client:
        return Client(self.port, source)

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def check(self) -> None:
        if self.proc is not None and self.proc.poll() is not None:
            pytest.fail(f"circushttpd exited ({self.proc.returncode}):\n"
                        f"{self.log_text()[-3000:]}")

    def wait_log(self, text: str, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while text not in self.log_text():
            self.check()
            if time.monotonic() > deadline:
                pytest.fail(f"no {text!r} in circushttpd's log within {timeout} s:\n"
                            f"{self.log_text()[-3000:]}")
            time.sleep(0.02)

    def stop(self, timeout: float = 15.0) -> int:
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.terminate()
        try:
            code = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            pytest.fail(f"circushttpd did not stop within {timeout} s")
        if self.proc.stdout:
            self.proc.stdout.close()
        return code

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        if self.proc is not None and self.proc.stdout:
            self.proc.stdout.close()
