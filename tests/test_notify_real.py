"""Tier 2/3: a real circusd sends notifications to real destinations on loopback.

A real SMTP server (aiosmtpd, started here on 127.0.0.1 port 0) gets the mail for a crash loop and
for a matching output line, throttled; STARTTLS and login against it; an exec destination gets the
message on stdin; a webhook gets the JSON; a destination that refuses connections is retried and
logged while circusd keeps answering at once.
"""
from __future__ import annotations

import asyncio
import email
import email.policy
import json
import shutil
import socket
import ssl
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from aiosmtpd.smtp import SMTP, AuthResult

from circus.client.sync import CircusClient
from circus.consumer import CircusConsumer

pytestmark = pytest.mark.real


# -- servers --------------------------------------------------------------------------------------

class MailServer:
    """aiosmtpd on its own loop in a thread, on 127.0.0.1 port 0."""

    def __init__(self, tls: ssl.SSLContext | None = None, login: tuple[str, str] | None = None) -> None:
        self.mails: list[email.message.EmailMessage] = []
        self.envelopes: list[tuple[str, list[str]]] = []
        self.logins: list[str] = []
        self.login = login
        self.loop = asyncio.new_event_loop()
        ready = threading.Event()
        kwargs: dict = {"hostname": "localhost"}
        if tls is not None:
            kwargs.update(tls_context=tls, require_starttls=True)
        if login is not None:
            kwargs.update(authenticator=self._authenticate, auth_required=True,
                          auth_require_tls=tls is not None)

        def run() -> None:
            asyncio.set_event_loop(self.loop)
            self.server = self.loop.run_until_complete(self.loop.create_server(
                lambda: SMTP(self, **kwargs), "127.0.0.1", 0))
            self.port = self.server.sockets[0].getsockname()[1]
            ready.set()
            self.loop.run_forever()

        self.thread = threading.Thread(target=run, daemon=True)
        self.thread.start()
        ready.wait(10)

    def _authenticate(self, server, session, envelope, mechanism, data) -> AuthResult:
        ok = (data.login.decode(), data.password.decode()) == self.login
        if ok:
            self.logins.append(data.login.decode())
        return AuthResult(success=ok)

    async def handle_DATA(self, server, session, envelope) -> str:
        self.envelopes.append((envelope.mail_from, list(envelope.rcpt_tos)))
        mail = email.message_from_bytes(envelope.content, policy=email.policy.default)
        subject = str(mail["Subject"]).strip()      # a folded header keeps its first space here
        del mail["Subject"]
        mail["Subject"] = subject
        mail.text = mail.get_content().replace("\r\n", "\n")
        self.mails.append(mail)
        return "250 OK"

    def wait(self, count: int, daemon, timeout: float = 20.0) -> list:
        daemon.wait(lambda: len(self.mails) >= count, timeout, f"{count} mail(s)")
        return self.mails

    def close(self) -> None:
        async def stop() -> None:
            self.server.close()
            await self.server.wait_closed()
            for task in asyncio.all_tasks():
                if task is not asyncio.current_task():
                    task.cancel()

        asyncio.run_coroutine_threadsafe(stop(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


@pytest.fixture
def mail():
    servers: list[MailServer] = []

    def make(**kw) -> MailServer:
        servers.append(MailServer(**kw))
        return servers[-1]

    yield make
    for server in servers:
        server.close()


class HookServer:
    def __init__(self) -> None:
        self.posts: list[tuple[str, str, dict]] = []
        posts = self.posts

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                posts.append((self.path, self.headers["Content-Type"], json.loads(body)))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(10)


@pytest.fixture
def hook():
    server = HookServer()
    yield server
    server.close()


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


HEAD = """
[circus]
endpoint = ipc://{dir}/c.sock
pubsub_endpoint = ipc://{dir}/p.sock
multicast_endpoint =
name = node-a
"""

CRASHER = """
[watcher:crasher]
cmd = sh -c "echo boom >&2; exit 3"
max_retry = 3
backoff_initial = 0.05
backoff_max = 0.2
"""


def smtp_section(port: int, **extra: str) -> str:
    lines = ["[notify:mail]", f"destination = smtp://127.0.0.1:{port}", "from = circus@node-a",
             "to = ops@example.com, dev@example.com"]
    lines += [f"{k} = {v}" for k, v in extra.items()]
    return "\n".join(lines) + "\n"


def client(daemon) -> CircusClient:
    return CircusClient(endpoint=f"ipc://{daemon.dir}/c.sock", timeout=5)


# -- smtp -----------------------------------------------------------------------------------------

def test_crash_loop_mail_names_the_watcher_the_node_and_the_reason(circusd, tmp_path, mail):
    server = mail()
    d = circusd(HEAD.format(dir=tmp_path) + CRASHER +
                smtp_section(server.port, watchers="crasher", events="fatal", throttle="0"))
    [msg] = server.wait(1, d)
    assert msg["Subject"].startswith("[circus] node-a: crasher is fatal: exited 4 times in ")
    assert msg["Subject"].endswith("exit code 3")
    assert msg["From"] == "circus@node-a" and msg["To"] == "ops@example.com, dev@example.com"
    assert server.envelopes == [("circus@node-a", ["ops@example.com", "dev@example.com"])]
    body = msg.text
    assert "Node:     node-a" in body and "Watcher:  crasher" in body and "Event:    fatal" in body
    assert "Reason:   exited 4 times in" in body
    d.wait_log("notify mail: sent")
    time.sleep(0.5)
    assert len(server.mails) == 1                 # fatal only: no backoff mail
    assert d.stop() == 0


def test_throttle_one_mail_then_the_count_of_the_rest(circusd, tmp_path, mail):
    server = mail()
    d = circusd(HEAD.format(dir=tmp_path) + CRASHER +
                smtp_section(server.port, events="backoff, fatal", throttle="3600"))
    [first] = server.wait(1, d)
    assert first["Subject"].startswith("[circus] node-a: crasher in backoff: exit code 3; respawn in")
    d.wait(lambda: "crasher: fatal" in d.log_text(), what="crasher fatal")
    time.sleep(0.5)
    assert len(server.mails) == 1                 # the rest is held back by the throttle...
    assert d.stop() == 0                          # ...and told when circusd stops
    assert len(server.mails) == 2
    digest = server.mails[1]
    assert digest["Subject"] == "[circus] node-a: 3 more notifications (crasher)"
    body = digest.text
    assert "3 notifications held back by the throttle (one message per 3600 s)" in body
    assert "crasher fatal: exited 4 times" in body and "crasher backoff: exit code 3" in body


def test_a_matching_output_line_is_mailed(circusd, tmp_path, mail):
    server = mail()
    script = ("import sys, time; print('starting', flush=True); "
              "print('ERROR database unreachable', file=sys.stderr, flush=True); time.sleep(0.5); "
              "print('ERROR again', flush=True); time.sleep(60)")
    d = circusd(HEAD.format(dir=tmp_path) + f"""
[watcher:app]
cmd = {sys.executable} -c "{script}"

[watcher:quiet]
cmd = {sys.executable} -c "print('ERROR not watched', flush=True); import time; time.sleep(60)"

""" + smtp_section(server.port, watchers="app", match=r"ERROR \w+", throttle="60"))
    [msg] = server.wait(1, d)
    assert msg["Subject"] == "[circus] node-a: app logged: ERROR database unreachable"
    body = msg.text
    assert "Line (stderr):\n    ERROR database unreachable" in body and "Process:  " in body
    with client(d) as c:
        assert c.send_message("list")["watchers"] == ["app", "quiet"]
    d.wait(lambda: "notify mail: held back" in d.log_text(), what="the second line held back")
    assert d.stop() == 0
    assert len(server.mails) == 2                 # "ERROR again", held back, told at the end
    assert "app match: ERROR again" in server.mails[1].text
    assert all("not watched" not in m.text for m in server.mails)


def _certificate(tmp_path: Path) -> tuple[Path, Path]:
    if shutil.which("openssl") is None:
        pytest.skip("openssl is needed to make a test certificate")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                    "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
                    "-keyout", str(key), "-out", str(cert)], check=True, capture_output=True,
                   timeout=60)
    return cert, key


def test_starttls_and_login(circusd, tmp_path, mail, monkeypatch):
    cert, key = _certificate(tmp_path)
    tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    tls.load_cert_chain(cert, key)
    server = mail(tls=tls, login=("circus", "s3cret"))
    monkeypatch.setenv("SSL_CERT_FILE", str(cert))        # circusd trusts the test certificate
    monkeypatch.setenv("MAIL_PASSWORD", "s3cret")
    d = circusd(HEAD.format(dir=tmp_path) + CRASHER + smtp_section(
        server.port, events="fatal", starttls="true", username="circus",
        password="$(circus.env.mail_password)"))
    [msg] = server.wait(1, d)
    assert "crasher is fatal" in msg["Subject"] and server.logins == ["circus"]
    assert d.stop() == 0


def test_an_untrusted_certificate_fails_and_is_retried(circusd, tmp_path, mail):
    cert, key = _certificate(tmp_path)
    tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    tls.load_cert_chain(cert, key)
    server = mail(tls=tls)
    d = circusd(HEAD.format(dir=tmp_path) + CRASHER + smtp_section(
        server.port, events="fatal", starttls="true", retries="1", retry_delay="0.1"))
    d.wait_log("notify mail: giving up")
    assert "CERTIFICATE_VERIFY_FAILED" in d.log_text() and server.mails == []
    assert d.stop() == 0


# -- exec and webhook -----------------------------------------------------------------------------

SAVE_STDIN = """
import os, sys
with open(sys.argv[1], "a") as out:
    out.write("argv=%r\\n" % sys.argv[2:])
    out.write("event=%s watcher=%s node=%s\\n" % (os.environ["CIRCUS_EVENT"],
              os.environ["CIRCUS_WATCHER"], os.environ["CIRCUS_NODE"]))
    out.write(sys.stdin.read())
"""


def test_exec_destination_gets_the_message_on_stdin(circusd, tmp_path):
    script = tmp_path / "save.py"
    script.write_text(SAVE_STDIN)
    out = tmp_path / "got.txt"
    d = circusd(HEAD.format(dir=tmp_path) + CRASHER + f"""
[notify:pager]
events = fatal
destination = exec:{sys.executable} {script} {out} "two words" ';'
""")
    d.wait(lambda: out.exists() and "Reason:" in out.read_text(), what="the exec destination")
    text = out.read_text()
    assert text.startswith("argv=['two words', ';']\nevent=fatal watcher=crasher node=node-a\n")
    assert "Subject: [circus] node-a: crasher is fatal: exited 4 times" in text
    assert "Watcher:  crasher" in text
    d.wait_log("notify pager: sent")
    assert d.stop() == 0


def test_exec_destination_failing_is_retried(circusd, tmp_path):
    d = circusd(HEAD.format(dir=tmp_path) + CRASHER + f"""
[notify:pager]
events = fatal
destination = exec:{sys.executable} -c "import sys; sys.stdin.read(); sys.exit(5)"
retries = 2
retry_delay = 0.1
""")
    d.wait_log("notify pager: giving up")
    log = d.log_text()
    assert log.count("notify pager: attempt") == 2 and "exit code 5" in log
    assert d.stop() == 0


def test_webhook_gets_the_json(circusd, tmp_path, hook):
    d = circusd(HEAD.format(dir=tmp_path) + CRASHER + f"""
[notify:chat]
watchers = crasher
events = fatal
destination = http://127.0.0.1:{hook.port}/hooks/T0?token=x
""")
    d.wait(lambda: hook.posts, what="the webhook POST")
    path, ctype, data = hook.posts[0]
    assert path == "/hooks/T0?token=x" and ctype == "application/json"
    assert data["notification"] == "chat" and data["node"] == "node-a"
    [occurrence] = data["occurrences"]
    assert occurrence["watcher"] == "crasher" and occurrence["event"] == "fatal"
    assert occurrence["reason"].startswith("exited 4 times")
    assert data["text"].startswith("Node:     node-a\nWatcher:  crasher")
    assert d.stop() == 0


# -- failures never delay supervision -------------------------------------------------------------

def test_a_dead_destination_is_retried_and_logged_without_delaying_replies(circusd, tmp_path):
    port = closed_port()
    d = circusd(HEAD.format(dir=tmp_path) + CRASHER + f"""
[watcher:sleeper]
cmd = sleep 60

[notify:mail]
events = backoff, fatal
throttle = 0
destination = smtp://127.0.0.1:{port}
from = circus@node-a
to = ops@example.com
retries = 3
retry_delay = 0.2

[notify:hook]
events = fatal
destination = http://127.0.0.1:{port}/
retries = 1
retry_delay = 0.2
""", start=False)
    with CircusConsumer(["notify."], endpoint=f"ipc://{tmp_path}/p.sock", timeout=0.1) as events:
        d.start()
        got: list[tuple[bytes, dict]] = []
        with client(d) as c:
            d.wait(lambda: c.send_message("status", name="sleeper").get("status") == "active",
                   what="sleeper active")
            slowest = 0.0
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline and not any(
                    p["retry_in"] is None for t, p in got if t.startswith(b"notify.hook")):
                started = time.monotonic()
                assert c.send_message("list")["watchers"] == ["crasher", "sleeper"]
                slowest = max(slowest, time.monotonic() - started)
                if events.next_ready(0.05):
                    topic, body = events.pubsub_socket.recv_multipart()
                    got.append((topic, json.loads(body)))
        assert slowest < 0.5
    failed = [(t.decode(), p["attempt"], p["retry_in"]) for t, p in got]
    assert ("notify.hook.failed", 2, None) in failed          # retried once, then given up
    assert any(t == "notify.mail.failed" and retry_in for t, _, retry_in in failed)
    assert all("Connection refused" in p["reason"] for _, p in got)
    log = d.log_text()
    assert "notify mail: attempt 1 failed (smtp://127.0.0.1:%d: Connection refused); retrying in " \
           "0.2 s" % port in log
    assert "notify hook: giving up" in log
    assert d.stop() == 0
