"""Tier 2: the client library against a real circusd on ipc:// in tmp_path."""
from __future__ import annotations

import asyncio
import time

import pytest

from circus.client import AsyncClient, AsyncConsumer, CircusClient, make_message
from circus.consumer import CircusConsumer

pytestmark = pytest.mark.real

CONFIG = """
[circus]
endpoint = ipc://{dir}/control.sock
pubsub_endpoint = ipc://{dir}/events.sock
multicast_endpoint =

[watcher:sleeper]
cmd = sleep 3600
numprocesses = 1
graceful_timeout = 2
"""


@pytest.fixture
def daemon(circusd, tmp_path):
    d = circusd(CONFIG.format(dir=tmp_path))
    d.control = f"ipc://{tmp_path}/control.sock"
    d.events = f"ipc://{tmp_path}/events.sock"
    with CircusClient(endpoint=d.control, timeout=0.5) as client:
        def ready():
            try:
                return client.send_message("list", name="sleeper")["pids"]
            except Exception:
                return False
        d.wait(ready, timeout=15, what="sleeper running")
    return d


def test_blocking_client(daemon):
    with CircusClient(endpoint=daemon.control) as client:
        assert client.call(make_message("list"))["watchers"] == ["sleeper"]
        reply = client.send_message("incr", name="sleeper", waiting=True)
        assert reply["status"] == "ok" and reply["numprocesses"] == 2
        error = client.send_message("status", name="nope")
        assert error["status"] == "error" and error["errno"] == 3
        client.cast("decr", name="sleeper")
        daemon.wait(lambda: client.send_message("numprocesses", name="sleeper")["numprocesses"] == 1,
                    what="cast decr applied")


def test_async_client_and_consumer(daemon):
    async def main():
        async with AsyncClient(daemon.control) as client, \
                AsyncConsumer(["watcher.sleeper."], endpoint=daemon.events) as events:
            replies = await asyncio.gather(client.call("status", name="sleeper"), client.call("list"),
                                           client.call("numwatchers"))
            assert [r["status"] for r in replies] == ["active", "ok", "ok"]
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                await client.call("incr", name="sleeper", waiting=True)
                try:
                    topic, payload = await events.next(timeout=1.0)
                except TimeoutError:
                    continue
                return topic, payload
            raise AssertionError("no event")

    topic, payload = asyncio.run(main())
    assert topic.startswith("watcher.sleeper.") and "time" in payload


def test_blocking_consumer(daemon):
    with CircusClient(endpoint=daemon.control) as client, \
            CircusConsumer(["watcher.sleeper.spawn"], endpoint=daemon.events, timeout=0.1) as consumer:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            client.send_message("incr", name="sleeper", waiting=True)
            if consumer.next_ready(0.5):
                break
        topic, message = next(iter(consumer))
    assert topic == b"watcher.sleeper.spawn" and b"process_pid" in message
