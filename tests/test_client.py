"""The client library against a fake circusd (real ZeroMQ sockets on ipc://, deadlines everywhere)."""
from __future__ import annotations

import asyncio
import json
import time

import pytest
import zmq

import circus.client
from circus.client import (DEFAULT_ENDPOINT_DEALER, DEFAULT_ENDPOINT_SUB, AsyncClient, AsyncConsumer,
                           CallError, CallTimeout, CircusClient, TunnelError, cast_message,
                           make_message)
from circus.client import wire
from circus.consumer import CircusConsumer
from test_client_fake import err, fake, ok  # noqa: F401  (fixture)


def run(coro, timeout: float = 10.0):
    async def bounded():
        async with asyncio.timeout(timeout):
            return await coro
    return asyncio.run(bounded())


# -- public names -----------------------------------------------------------------------------------

def test_public_names_are_pinned():
    assert sorted(circus.client.__all__) == sorted([
        "AsyncClient", "AsyncConsumer", "CircusClient", "AsyncCircusClient", "CallError",
        "CallTimeout", "TunnelError", "make_message", "cast_message", "make_json",
        "DEFAULT_ENDPOINT_DEALER", "DEFAULT_ENDPOINT_SUB",
        "DEFAULT_ENDPOINT_STATS"])
    for name in circus.client.__all__:
        assert getattr(circus.client, name) is not None
    with pytest.raises(AttributeError):
        circus.client.nope  # noqa: B018


def test_default_endpoints_are_circus_ones():
    assert DEFAULT_ENDPOINT_DEALER == "tcp://127.0.0.1:5555"
    assert DEFAULT_ENDPOINT_SUB == "tcp://127.0.0.1:5556"


def test_message_builders():
    msg = make_message("list", name="web")
    assert msg["command"] == "list" and msg["properties"] == {"name": "web"}
    assert "msg_type" not in msg
    cast = cast_message("incr", name="web", nb=2)
    assert cast["msg_type"] == "cast" and cast["properties"] == {"name": "web", "nb": 2}
    assert make_message("numwatchers")["properties"] == {}
    assert json.loads(circus.client.make_json("list", name="a"))["properties"] == {"name": "a"}


def test_prepare_call_copies_and_sets_a_fresh_id():
    msg = {"command": "list", "id": "mine"}
    id1, body1 = wire.prepare_call(msg)
    id2, _ = wire.prepare_call(msg)
    assert id1 != id2 and len(id1) == 32
    assert json.loads(body1) == {"command": "list", "properties": {}, "id": id1}
    assert msg == {"command": "list", "id": "mine"}
    with pytest.raises(TypeError):
        wire.prepare_call('{"command": "list"}')  # type: ignore[arg-type]


def test_read_reply_skips_stale_and_rejects_garbage():
    assert wire.read_reply([b'{"id": "a", "status": "ok"}'], "b") is None
    assert wire.read_reply([b'{"id": "b", "status": "ok"}'], "b") == {"id": "b", "status": "ok"}
    with pytest.raises(CallError, match="not JSON"):
        wire.read_reply([b"garbage"], "b")
    with pytest.raises(CallError, match="not a JSON object"):
        wire.read_reply([b"[1]"], "b")


# -- blocking client ----------------------------------------------------------------------------------

def test_call_returns_the_reply_and_sends_one_frame(fake):
    server = fake(lambda req: ok(watchers=["a", "b"]))
    with CircusClient(endpoint=server.endpoint, timeout=5) as client:
        reply = client.call(make_message("list"))
    assert reply["status"] == "ok" and reply["watchers"] == ["a", "b"]
    assert reply["id"] == server.last["id"]
    assert len(server.raw[-1]) == 2            # ROUTER sees [identity, json]: one frame sent
    assert server.last["command"] == "list" and server.last["properties"] == {}


def test_send_message_and_error_replies_are_returned(fake):
    server = fake(lambda req: err("program nope not found"))
    with CircusClient(endpoint=server.endpoint) as client:
        reply = client.send_message("status", name="nope")
    assert reply["status"] == "error" and reply["reason"] == "program nope not found"
    assert server.last["properties"] == {"name": "nope"}


def test_stale_replies_are_ignored(fake):
    server = fake(lambda req: [ok(which="stale", id="an-old-call"), ok(which="mine")])
    with CircusClient(endpoint=server.endpoint) as client:
        assert client.send_message("list")["which"] == "mine"


def test_timeout_raises_timed_out(fake):
    server = fake(lambda req: None)
    with CircusClient(endpoint=server.endpoint, timeout=0.3) as client:
        start = time.monotonic()
        with pytest.raises(CallError, match=r"^Timed out\.$"):
            client.send_message("list")
        assert 0.25 < time.monotonic() - start < 2.0


def test_timeout_is_one_deadline_even_with_stale_replies(fake):
    server = fake(lambda req: [ok(id="old", _delay=0.1 * i) for i in range(1, 8)])
    with CircusClient(endpoint=server.endpoint, timeout=0.35) as client:
        start = time.monotonic()
        with pytest.raises(CallTimeout):
            client.send_message("list")
        assert time.monotonic() - start < 0.7


def test_unreachable_endpoint_times_out(tmp_path):
    with CircusClient(endpoint=f"ipc://{tmp_path}/nobody.sock", timeout=0.2) as client:
        with pytest.raises(CallTimeout, match="Timed out"):
            client.send_message("list")


def test_late_reply_to_a_timed_out_call_does_not_confuse_the_next(fake):
    server = fake(lambda req: ok(n=req["properties"]["n"], _delay=0.4 if req["properties"]["n"] == 1 else 0))
    with CircusClient(endpoint=server.endpoint, timeout=0.2) as client:
        with pytest.raises(CallTimeout):
            client.send_message("list", n=1)
        time.sleep(0.3)
        assert client.send_message("list", n=2, )["n"] == 2


def test_cast_returns_at_once(fake):
    server = fake(lambda req: ok())
    with CircusClient(endpoint=server.endpoint, timeout=5) as client:
        start = time.monotonic()
        assert client.call(cast_message("incr", name="web")) is None
        client.cast("decr", name="web")
        assert time.monotonic() - start < 1
    deadline = time.monotonic() + 5
    while len(server.requests) < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert [r["msg_type"] for r in server.requests] == ["cast", "cast"]


def test_stop_after_a_cast_to_nobody_is_bounded(tmp_path):
    client = CircusClient(endpoint=f"ipc://{tmp_path}/nobody.sock", timeout=0.3)
    client.cast("incr", name="web")
    start = time.monotonic()
    client.stop()
    assert time.monotonic() - start < 1.5


def test_garbage_reply_is_a_call_error(fake):
    server = fake(lambda req: {"_raw": b"not json"})
    with CircusClient(endpoint=server.endpoint) as client:
        with pytest.raises(CallError, match="not JSON"):
            client.send_message("list")


def test_sockets_have_random_identity_and_no_linger(fake):
    server = fake()
    with CircusClient(endpoint=server.endpoint) as a, CircusClient(endpoint=server.endpoint) as b:
        assert a.socket.getsockopt(zmq.LINGER) == 0
        assert a.socket.getsockopt(zmq.IDENTITY) != b.socket.getsockopt(zmq.IDENTITY)
        a.send_message("list")
        b.send_message("list")
    assert server.raw[0][0] != server.raw[1][0]


def test_stop_leaves_a_given_context_open(fake):
    server = fake()
    ctx = zmq.Context()
    try:
        client = CircusClient(context=ctx, endpoint=server.endpoint)
        client.send_message("list")
        client.stop()
        assert client.socket.closed and not ctx.closed
        client.stop()                               # idempotent
    finally:
        ctx.term()


def test_ssh_without_pexpect_or_paramiko_is_a_clear_error(monkeypatch):
    monkeypatch.setattr(wire, "_ssh_available", lambda: False)
    with pytest.raises(TunnelError, match="pexpect or paramiko"):
        CircusClient(endpoint="tcp://127.0.0.1:5555", ssh_server="me@host:22")
    with pytest.raises(TunnelError, match="pexpect or paramiko"):
        CircusConsumer(["watcher."], ssh_server="me@host:22")


# -- asyncio client -----------------------------------------------------------------------------------

def test_async_call(fake):
    server = fake(lambda req: ok(numwatchers=3))

    async def main():
        async with AsyncClient(server.endpoint) as client:
            return await client.call("numwatchers")

    reply = run(main())
    assert reply["numwatchers"] == 3 and reply["id"] == server.last["id"]


def test_async_concurrent_calls_get_their_own_replies(fake):
    delays = {"slow": 0.3, "fast": 0.0}
    server = fake(lambda req: ok(who=req["properties"]["who"], _delay=delays[req["properties"]["who"]]))

    async def main():
        async with AsyncClient(server.endpoint) as client:
            slow = asyncio.ensure_future(client.call("status", who="slow"))
            await asyncio.sleep(0.05)
            fast = await client.call("status", who="fast")
            assert not slow.done()
            return fast, await slow

    fast, slow = run(main())
    assert fast["who"] == "fast" and slow["who"] == "slow"


def test_async_timeout_names_command_and_endpoint(fake):
    server = fake(lambda req: None)

    async def main():
        async with AsyncClient(server.endpoint, timeout=0.2) as client:
            with pytest.raises(CallTimeout) as info:
                await client.call("list")
            with pytest.raises(CallTimeout):
                await client.call("list", timeout=0.05)
            return str(info.value)

    text = run(main())
    assert "Timed out after 0.2 s" in text and "'list'" in text and server.endpoint in text


def test_async_ignores_stale_replies(fake):
    server = fake(lambda req: [ok(which="stale", id="old"), ok(which="mine")])

    async def main():
        async with AsyncClient(server.endpoint) as client:
            return await client.call("list")

    assert run(main())["which"] == "mine"


def test_async_cast_and_request(fake):
    server = fake(lambda req: ok(echo=req["properties"]))

    async def main():
        async with AsyncClient(server.endpoint) as client:
            await client.cast("incr", name="w")
            return await client.request(make_message("get", name="w", keys=["cmd"]))

    reply = run(main())
    assert reply["echo"] == {"name": "w", "keys": ["cmd"]}
    assert server.requests[0]["msg_type"] == "cast"


def test_async_closed_client_refuses_calls(fake):
    server = fake()

    async def main():
        client = AsyncClient(server.endpoint)
        await client.call("list")
        await client.aclose()
        assert client.closed
        with pytest.raises(CallError, match="closed"):
            await client.call("list")

    run(main())


def test_async_close_fails_pending_calls(fake):
    server = fake(lambda req: None)

    async def main():
        client = AsyncClient(server.endpoint, timeout=5)
        call = asyncio.ensure_future(client.call("list"))
        await asyncio.sleep(0.05)
        client.close()
        with pytest.raises(CallError, match="closed"):
            await call

    run(main())


# -- events -------------------------------------------------------------------------------------------

def _publish_until(server, topic, payload, received):
    deadline = time.monotonic() + 5
    while not received() and time.monotonic() < deadline:
        server.publish(topic, payload)
        time.sleep(0.02)


def test_circus_consumer_yields_bytes(fake):
    server = fake(pub=True)
    got = []
    with CircusConsumer(["watcher.web."], endpoint=server.pub_endpoint, timeout=0.05) as consumer:
        import threading
        t = threading.Thread(target=_publish_until,
                             args=(server, "watcher.web.spawn", {"process_pid": 1}, lambda: got))
        t.start()
        server.publish("watcher.other.spawn", {"process_pid": 2})
        for topic, message in consumer:
            got.append((topic, message))
            break
        t.join(10)
    assert got == [(b"watcher.web.spawn", b'{"process_pid": 1}')]
    assert consumer.pubsub_socket.closed


def test_async_consumer_decodes_events(fake):
    server = fake(pub=True)

    async def main(raw):
        async with AsyncConsumer(["watcher."], endpoint=server.pub_endpoint, raw=raw) as consumer:
            deadline = time.monotonic() + 5
            while time.monotonic() < deadline:
                server.publish("watcher.web.reap", {"process_pid": 7, "exit_code": 0})
                try:
                    return await consumer.next(timeout=0.05)
                except TimeoutError:
                    continue
            raise AssertionError("no event")

    assert run(main(False)) == ("watcher.web.reap", {"process_pid": 7, "exit_code": 0})
    assert run(main(True)) == (b"watcher.web.reap", b'{"process_pid": 7, "exit_code": 0}')


def test_async_consumer_iterates(fake):
    server = fake(pub=True)

    async def main():
        consumer = AsyncConsumer(endpoint=server.pub_endpoint)
        seen = []

        async def feed():
            while not seen:
                server.publish("watcher.a.start", {"time": 1})
                await asyncio.sleep(0.02)

        feeder = asyncio.ensure_future(feed())
        try:
            async for topic, payload in consumer:
                seen.append((topic, payload))
                break
        finally:
            await feeder
            consumer.close()
        return seen

    assert run(main()) == [("watcher.a.start", {"time": 1})]


def test_0_19_async_client_names(fake):
    server = fake(lambda req: ok(watchers=["w"]) if req["command"] == "list" else None)
    ctx = zmq.Context()

    async def main():
        client = circus.client.AsyncCircusClient(context=ctx, endpoint=server.endpoint, timeout=0.2)
        try:
            assert (await client.call(make_message("list")))["watchers"] == ["w"]
            assert (await client.send_message("list"))["watchers"] == ["w"]
            with pytest.raises(CallError, match=r"^Timed out\.$"):
                await client.send_message("status")
        finally:
            client.stop()

    try:
        run(main())
        assert not ctx.closed
    finally:
        ctx.term()
