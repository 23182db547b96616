"""A subscriber to a stats endpoint for tests: latest payload per topic, every wait bounded."""
from __future__ import annotations

import json
import time
from typing import Callable

import pytest
import zmq


class StatsFeed:
    def __init__(self, endpoint: str, topics: tuple[str, ...] = ("",)) -> None:
        self.ctx = zmq.Context()
        self.sock = self.ctx.socket(zmq.SUB)
        self.sock.linger = 0
        for topic in topics:
            self.sock.setsockopt(zmq.SUBSCRIBE, topic.encode())
        self.sock.connect(endpoint)
        self.latest: dict[str, dict] = {}
        self.topics_seen: set[str] = set()

    def pump(self, seconds: float) -> None:
        end = time.monotonic() + seconds
        while (left := end - time.monotonic()) > 0:
            if self.sock.poll(int(left * 1000) + 1):
                topic, body = self.sock.recv_multipart()
                name = topic.decode()
                self.latest[name] = json.loads(body)
                self.topics_seen.add(name)

    def wait(self, predicate: Callable[["StatsFeed"], object], timeout: float = 15.0,
             what: str = "stats", alive: Callable[[], bool] | None = None):
        """Read until ``predicate(self)`` is true; fail at the deadline or when ``alive()`` says
        the publisher's owner died."""
        deadline = time.monotonic() + timeout
        while True:
            value = predicate(self)
            if value:
                return value
            if alive is not None and not alive():
                pytest.fail(f"the stats publisher died while waiting for {what}")
            if time.monotonic() > deadline:
                pytest.fail(f"timed out after {timeout} s waiting for {what}; topics seen: "
                            f"{sorted(self.topics_seen)[:40]}")
            self.pump(0.1)

    def close(self) -> None:
        self.sock.close()
        self.ctx.term()
