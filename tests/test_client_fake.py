"""A fake circusd for client and circusctl tests: a real ROUTER (and PUB) on ipc:// in tmp_path.

The server runs in a thread with its own context. ``handler(request) -> reply`` decides each
answer: a dict (sent with the request's id unless it has one), ``None`` (no answer), or a list of
dicts sent in order (to test stale replies). ``delay`` (or a reply's ``_delay`` key) postpones an
answer; a reply's ``_raw`` key replaces the whole frame. Every request is kept
in ``requests``. The tests at the bottom check the fake itself.
"""
from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any, Callable

import pytest
import zmq

Handler = Callable[[dict], Any]


def ok(**fields: Any) -> dict:
    return {"status": "ok", "time": 1795315131.8, **fields}


def err(reason: str, errno: int = 3) -> dict:
    return {"status": "error", "reason": reason, "tb": None, "time": 1795315131.8, "errno": errno}


class FakeServer:
    def __init__(self, tmp_path: Path, handler: Handler | None = None, delay: float = 0.0,
                 pub: bool = False) -> None:
        self.endpoint = f"ipc://{tmp_path}/ctl.sock"
        self.pub_endpoint = f"ipc://{tmp_path}/pub.sock"
        self.handler = handler or (lambda req: ok())
        self.delay = delay
        self.requests: list[dict] = []
        self.raw: list[list[bytes]] = []
        self._ctx = zmq.Context()
        self._router = self._ctx.socket(zmq.ROUTER)
        self._router.linger = 0
        self._router.bind(self.endpoint)
        self._pub: zmq.Socket | None = None
        if pub:
            self._pub = self._ctx.socket(zmq.PUB)
            self._pub.linger = 0
            self._pub.bind(self.pub_endpoint)
        self._outbox: list[tuple[float, list[bytes]]] = []
        self._events: list[list[bytes]] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def publish(self, topic: str, payload: dict | bytes) -> None:
        body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        with self._lock:
            self._events.append([topic.encode(), body])

    def _run(self) -> None:
        poller = zmq.Poller()
        poller.register(self._router, zmq.POLLIN)
        while not self._stop.is_set():
            if dict(poller.poll(10)):
                frames = self._router.recv_multipart()
                self._answer(frames)
            now = time.monotonic()
            with self._lock:
                due = [f for t, f in self._outbox if t <= now]
                self._outbox = [(t, f) for t, f in self._outbox if t > now]
                events, self._events = self._events, []
            for frames in due:
                self._router.send_multipart(frames)
            for frames in events:
                assert self._pub is not None
                self._pub.send_multipart(frames)
        self._router.close(0)
        if self._pub is not None:
            self._pub.close(0)
        self._ctx.term()

    def _answer(self, frames: list[bytes]) -> None:
        self.raw.append(frames)
        ident, body = frames[0], frames[-1]
        try:
            request = json.loads(body)
        except ValueError:
            request = {"invalid": body}
        self.requests.append(request)
        replies = self.handler(request)
        if replies is None or request.get("msg_type") == "cast":
            return
        if isinstance(replies, dict):
            replies = [replies]
        for reply in replies:
            reply = dict(reply)
            delay = reply.pop("_delay", self.delay)
            reply.setdefault("id", request.get("id"))
            body = reply.pop("_raw", None) or json.dumps(reply).encode()
            with self._lock:
                self._outbox.append((time.monotonic() + delay, [ident, body]))

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        assert not self._thread.is_alive(), "fake server thread did not stop"

    @property
    def last(self) -> dict:
        return self.requests[-1]


@pytest.fixture
def fake(tmp_path):
    servers: list[FakeServer] = []

    def make(handler: Handler | None = None, **kw: Any) -> FakeServer:
        server = FakeServer(tmp_path, handler, **kw)
        servers.append(server)
        return server

    yield make
    for server in servers:
        server.close()


def test_fake_answers_a_dealer(fake):
    server = fake(lambda req: ok(echo=req["command"]))
    ctx = zmq.Context()
    try:
        sock = ctx.socket(zmq.DEALER)
        sock.linger = 0
        sock.connect(server.endpoint)
        sock.send(json.dumps({"id": "x", "command": "list", "properties": {}}).encode())
        assert sock.poll(5000)
        assert json.loads(sock.recv()) == {**ok(echo="list"), "id": "x"}
        sock.close()
    finally:
        ctx.term()
