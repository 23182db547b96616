"""Password checks off the loop: a real circushttpd whose users have a slow scrypt cost (16 times
the default work), 8 anonymous clients posting logins from 8 addresses at once, and the
dashboard asked for a page meanwhile; the bound on logins in progress per address; the
hashing pool itself."""
from __future__ import annotations

import asyncio
import select
import textwrap
import threading
import time

import pytest

pytest.importorskip("tornado")
pytest.importorskip("jinja2")

from circus.web.hashing import Busy, HashPool  # noqa: E402
from circus.web.users import Users  # noqa: E402
from conftest import Circusd  # noqa: E402
from webhttp import Httpd, receive  # noqa: E402

pytestmark = pytest.mark.real

SLOW = {"p": 16}                 # 16 times the default work per check, the same memory
PASSWORD = "the-right-password"


@pytest.fixture(scope="module")
def slow(tmp_path_factory):
    base = tmp_path_factory.mktemp("weblogin")
    node = Circusd(base / "node")
    node.dir.mkdir()
    httpd = None
    try:
        node.start(textwrap.dedent(f"""
            [circus]
            endpoint = ipc://{node.dir}/c.sock
            [watcher:sl]
            cmd = sleep 300
        """), "--name", "n1")
        node.wait(lambda: (node.dir / "c.sock").exists(), what="control socket")
        users = Users.load(str(base / "circushttpd.users"), missing_ok=True)
        for name in ("slow", "slow2", "reader"):
            users.add(name, "readonly", PASSWORD, **SLOW)
        httpd = Httpd(base, "--endpoint", f"ipc://{node.dir}/c.sock", "--no-live").start()
        yield httpd
    finally:
        if httpd is not None and httpd.proc is not None:
            httpd.stop()
        node.cleanup()


def _wait_any(socks, timeout: float, httpd: Httpd) -> None:
    deadline = time.monotonic() + timeout
    while True:
        readable, _, _ = select.select(socks, [], [], 0.1)
        if readable:
            return
        httpd.check()
        if time.monotonic() > deadline:
            pytest.fail(f"no login answered within {timeout} s")


def test_the_dashboard_answers_while_logins_are_checked(slow):
    # one login alone: how long a password check takes here
    alone = slow.client("127.0.0.30")
    alone.xsrf()
    start = time.monotonic()
    assert alone.login("slow", "a-wrong-password").status == 200
    check = time.monotonic() - start
    assert check > 0.1, check                    # the slow cost is in force
    page = slow.client("127.0.0.1")              # a user of the dashboard, logged in before
    assert page.login("reader", PASSWORD).status == 302
    # 8 clients, 8 addresses, 8 logins at once
    clients = [slow.client(f"127.0.0.{11 + i}") for i in range(8)]
    for c in clients:
        c.xsrf()
    socks = [c.send_post("/login", {"username": "slow", "password": f"wrong-guess-{i}"})
             for i, c in enumerate(clients)]
    try:
        _wait_any(socks, 30 * check + 30, slow)  # the checks are under way
        for path in ("/login", "/", "/login", "/"):
            start = time.monotonic()
            r = page.get(path, timeout=30)
            took = time.monotonic() - start
            assert r.status == (302 if path == "/login" else 200), (path, r.status)
            assert took < check / 2, f"GET {path} took {took:.3f} s, a check {check:.3f} s"
        readable, _, _ = select.select(socks, [], [], 0)
        assert len(socks) - len(readable) >= 3, "the page waited for the logins"
    finally:
        answers = [receive(s, 60 * check + 60) for s in socks]
    assert [a.status for a in answers] == [200] * 8
    assert all("Wrong user name or password" in a.text for a in answers)


def test_an_address_with_too_many_logins_in_progress_is_told_to_wait(slow):
    clients = [slow.client("127.0.0.40") for _ in range(5)]
    for c in clients:
        c.xsrf()
    socks = [c.send_post("/login", {"username": "slow2", "password": f"wrong-{i}"})
             for i, c in enumerate(clients)]
    answers = [receive(s, 120) for s in socks]
    codes = sorted(a.status for a in answers)
    assert codes == [200, 200, 200, 200, 503], codes
    busy = next(a for a in answers if a.status == 503)
    assert "busy with other logins" in busy.text
    slow.wait_log("from 127.0.0.40 not tried: too many logins in progress from this address")
    other = slow.client("127.0.0.41")
    assert other.login("reader", PASSWORD).status == 302     # nobody else is refused


def test_the_hashing_pool_bounds_what_waits():
    async def main() -> None:
        pool = HashPool(workers=1, pending=3, per_address=2)
        gate = threading.Event()
        try:
            first = asyncio.ensure_future(pool.run("a", gate.wait, 10))
            second = asyncio.ensure_future(pool.run("a", gate.wait, 10))
            await asyncio.sleep(0)
            with pytest.raises(Busy, match="from this address"):
                await pool.run("a", gate.wait, 10)
            third = asyncio.ensure_future(pool.run("b", gate.wait, 10))
            await asyncio.sleep(0)
            assert pool.in_progress == 3
            with pytest.raises(Busy, match="too many logins in progress"):
                await pool.run("c", gate.wait, 10)
            gate.set()
            assert await asyncio.wait_for(asyncio.gather(first, second, third), 10) == \
                [True, True, True]
            assert pool.in_progress == 0 and await pool.run("c", lambda: 7) == 7
            # a throttled name's wait is a login in progress too
            waiting = asyncio.ensure_future(pool.run("d", lambda: 8, delay=0.3))
            others = [asyncio.ensure_future(pool.run(f"e{i}", lambda: 9, delay=0.3))
                      for i in range(2)]
            await asyncio.sleep(0)
            with pytest.raises(Busy):
                await pool.run("f", lambda: 10)
            assert await asyncio.wait_for(asyncio.gather(waiting, *others), 10) == [8, 9, 9]
        finally:
            gate.set()
            pool.close()
    asyncio.run(main())
