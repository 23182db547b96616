"""Probe runners against real sockets, servers and child processes on loopback."""
from __future__ import annotations

import asyncio
import contextlib
import os
import shlex
import shutil
import socket
import ssl
import subprocess
import sys
import textwrap
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest

from circus.probes import ExecProbe, HttpProbe, LogProbe, NotifyProbe, TcpProbe
from circus.probes.notify import NotifySocket, notify, parse_message
from circus.probes.run import LogMatcher, ProbeFailed, check, wait_ready

ROOT = Path(__file__).parent.parent
LIMIT = 10.0  # every test body is bounded by this


def run(coro: Awaitable) -> object:
    async def bounded():
        async with asyncio.timeout(LIMIT):
            return await coro

    return asyncio.run(bounded())


async def run_command(argv: list[str], timeout: float) -> int:
    """What the arbiter provides, done with Popen and a thread for the tests."""

    def blocking() -> int:
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
        try:
            return proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            raise TimeoutError from None

    return await asyncio.to_thread(blocking)


async def no_command(argv: list[str], timeout: float) -> int:
    raise AssertionError("tcp and http probes run no command")


def unused_port() -> socket.socket:
    """A socket bound to a loopback port but not listening: connecting to it is refused."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    return sock


Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


@contextlib.asynccontextmanager
async def serve(handler: Handler, sock: socket.socket | None = None) -> AsyncIterator[int]:
    """A loopback server running `handler` per connection; every connection is closed on exit."""
    tasks: set[asyncio.Task] = set()
    writers: set[asyncio.StreamWriter] = set()

    async def wrapped(reader, writer):
        tasks.add(asyncio.current_task())
        writers.add(writer)
        try:
            await handler(reader, writer)
        except (OSError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    if sock is None:
        server = await asyncio.start_server(wrapped, "127.0.0.1", 0)
    else:
        server = await asyncio.start_server(wrapped, sock=sock)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()
        await server.wait_closed()
        for writer in writers:
            writer.close()  # the handler's reads see the end of the stream and it returns
        async with asyncio.timeout(5):
            await asyncio.gather(*tasks)
        await asyncio.sleep(0)  # let the closed transports release their sockets


def http_server(status: str, requests: list[bytes] | None = None) -> Handler:
    async def handler(reader, writer):
        head = await reader.readuntil(b"\r\n\r\n")
        if requests is not None:
            requests.append(head)
        writer.write(f"HTTP/1.1 {status}\r\nContent-Length: 2\r\nLocation: /elsewhere\r\n"
                     f"\r\nok".encode())
        await writer.drain()

    return handler


async def silent(reader, writer):
    """Accepts, reads, never answers."""
    await reader.read()


# -- tcp ---------------------------------------------------------------------------------------

def test_tcp_connected_and_refused():
    with socket.socket() as listener, unused_port() as closed:
        listener.bind(("127.0.0.1", 0))
        listener.listen()  # the backlog accepts; nobody needs to call accept()
        port = listener.getsockname()[1]
        dead = closed.getsockname()[1]

        async def main():
            ok = await check(TcpProbe("127.0.0.1", port), timeout=2.0, run_command=no_command)
            ko = await check(TcpProbe("127.0.0.1", dead), timeout=2.0, run_command=no_command)
            return ok, ko

        ok, ko = run(main())
    assert ok == (True, f"connected to 127.0.0.1:{port}")
    assert ko == (False, f"connection refused by 127.0.0.1:{dead}")


def test_tcp_unresolvable_host_is_a_failure_not_an_exception():
    async def main():
        return await check(TcpProbe("no-such-host.invalid", 80), timeout=5.0,
                           run_command=no_command)

    ok, detail = run(main())
    assert not ok
    assert "no-such-host.invalid:80" in detail  # "cannot connect to ..." (or a slow resolver)


# -- http --------------------------------------------------------------------------------------

def test_http_200_sends_a_minimal_get():
    requests: list[bytes] = []

    async def main():
        async with serve(http_server("200 OK", requests)) as port:
            url = f"http://127.0.0.1:{port}/health?deep=1"
            return url, port, await check(HttpProbe(url), timeout=2.0, run_command=no_command)

    url, port, result = run(main())
    assert result == (True, f"HTTP 200 from {url}")
    [head] = requests
    lines = head.decode().split("\r\n")
    assert lines[0] == "GET /health?deep=1 HTTP/1.1"
    assert f"Host: 127.0.0.1:{port}" in lines
    assert "Connection: close" in lines


def test_http_503_fails_and_3xx_succeeds_without_following():
    requests: list[bytes] = []

    async def main():
        async with serve(http_server("503 Service Unavailable")) as bad, \
                serve(http_server("302 Found", requests)) as moved:
            url = f"http://127.0.0.1:{bad}"
            ko = await check(HttpProbe(url), timeout=2.0, run_command=no_command)
            ok = await check(HttpProbe(f"http://127.0.0.1:{moved}/"), timeout=2.0,
                             run_command=no_command)
            return url, ko, ok

    url, ko, ok = run(main())
    assert ko == (False, f"HTTP 503 from {url}")
    assert ok[0] and ok[1].startswith("HTTP 302 from")
    assert len(requests) == 1  # the redirect was not followed


def test_http_connection_refused():
    with unused_port() as sock:
        port = sock.getsockname()[1]
        ok, detail = run(check(HttpProbe(f"http://127.0.0.1:{port}/"), timeout=2.0,
                               run_command=no_command))
    assert not ok
    assert detail == f"connection refused by 127.0.0.1:{port}"


def test_http_server_that_never_answers_times_out():
    async def main():
        async with serve(silent) as port:
            url = f"http://127.0.0.1:{port}/"
            start = time.monotonic()
            result = await check(HttpProbe(url), timeout=0.3, run_command=no_command)
            return url, result, time.monotonic() - start

    url, (ok, detail), elapsed = run(main())
    assert not ok
    assert detail == f"timed out waiting for an answer from {url} after 0.3 s"
    assert 0.25 <= elapsed < 2.0


def test_http_garbage_and_empty_answers():
    async def garbage(reader, writer):
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"SSH-2.0-OpenSSH\r\n")

    async def hangup(reader, writer):
        await reader.readuntil(b"\r\n\r\n")

    async def endless(reader, writer):
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 200 " + b"O" * 20000)
        await reader.read()

    async def main():
        async with serve(garbage) as p1, serve(hangup) as p2, serve(endless) as p3:
            return [await check(HttpProbe(f"http://127.0.0.1:{port}/"), timeout=2.0,
                                run_command=no_command) for port in (p1, p2, p3)]

    (ok1, d1), (ok2, d2), (ok3, d3) = run(main())
    assert not ok3 and d3.endswith("status line too long")
    assert not ok1 and d1.startswith("malformed answer from") and "SSH-2.0" in d1
    assert not ok2 and d2.startswith("empty answer from")


def test_https_to_a_plain_http_server_is_a_tls_failure():
    async def plain(reader, writer):
        writer.write(b"HTTP/1.1 400 Bad Request\r\nConnection: close\r\n\r\n")
        await reader.read()

    async def main():
        async with serve(plain) as port:
            return await check(HttpProbe(f"https://127.0.0.1:{port}/"), timeout=2.0,
                               run_command=no_command)

    ok, detail = run(main())
    assert not ok
    assert detail.startswith("TLS error with 127.0.0.1:")


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl command")
def test_https_with_an_untrusted_certificate_is_rejected(tmp_path):
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                    "-subj", "/CN=127.0.0.1", "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True, timeout=30)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)

    async def main():
        server = await asyncio.start_server(lambda r, w: w.close(), "127.0.0.1", 0,
                                            ssl=context)
        port = server.sockets[0].getsockname()[1]
        try:
            return port, await check(HttpProbe(f"https://127.0.0.1:{port}/"), timeout=2.0,
                                     run_command=no_command)
        finally:
            server.close()
            await server.wait_closed()
            await asyncio.sleep(0.05)

    port, (ok, detail) = run(main())
    assert not ok
    assert detail.startswith(f"TLS certificate of 127.0.0.1:{port} rejected: ")
    assert "self-signed" in detail or "self signed" in detail


# -- exec --------------------------------------------------------------------------------------

def py(code: str) -> str:
    return shlex.join([sys.executable, "-c", code])


def test_exec_exit_codes():
    async def main():
        ok = await check(ExecProbe(py("pass")), timeout=5.0, run_command=run_command)
        ko = await check(ExecProbe(py("raise SystemExit(3)")), timeout=5.0,
                         run_command=run_command)
        return ok, ko

    ok, ko = run(main())
    assert ok[0] and ok[1].startswith("exit code 0 from '")
    assert not ko[0] and ko[1].startswith("exit code 3 from '")


def test_exec_passes_a_split_argv_without_shell():
    seen = []

    async def fake(argv, timeout):
        seen.append((argv, timeout))
        return -9

    ok, detail = run(check(ExecProbe("check.sh --url 'http://x/a b' $HOME"), timeout=2.5,
                           run_command=fake))
    assert seen == [(["check.sh", "--url", "http://x/a b", "$HOME"], 2.5)]
    assert (ok, detail) == (False, "'check.sh --url 'http://x/a b' $HOME' killed by SIGKILL")


def test_exec_timeout_and_missing_command():
    async def main():
        slow = await check(ExecProbe(py("import time; time.sleep(30)")), timeout=0.3,
                           run_command=run_command)
        missing = await check(ExecProbe("/nonexistent/check --now"), timeout=2.0,
                              run_command=run_command)
        return slow, missing

    start = time.monotonic()
    (ok1, d1), (ok2, d2) = run(main())
    assert time.monotonic() - start < 5.0
    assert not ok1 and d1.endswith("timed out after 0.3 s")
    assert (ok2, d2) == (False, "cannot run '/nonexistent/check --now': No such file or directory")


def test_exec_run_command_that_ignores_its_timeout_is_cut_off():
    async def stuck(argv, timeout):
        await asyncio.sleep(60)
        return 0

    start = time.monotonic()
    ok, detail = run(check(ExecProbe("stuck"), timeout=0.1, run_command=stuck))
    assert (ok, detail) == (False, "'stuck' timed out after 0.1 s")
    assert time.monotonic() - start < 3.0


def test_check_refuses_probes_it_cannot_run():
    for probe in (NotifyProbe(), LogProbe("ready")):
        with pytest.raises(TypeError):
            run(check(probe, timeout=1.0, run_command=no_command))


# -- wait_ready --------------------------------------------------------------------------------

def test_wait_ready_succeeds_once_the_server_listens():
    with unused_port() as sock:
        port = sock.getsockname()[1]

        async def main():
            loop = asyncio.get_running_loop()

            async def listen_later():
                await asyncio.sleep(0.3)
                sock.listen()

            start = loop.time()
            later = asyncio.create_task(listen_later())
            detail = await wait_ready(TcpProbe("127.0.0.1", port), deadline=start + 5.0,
                                      run_command=no_command)
            await later
            return detail, loop.time() - start

        detail, elapsed = run(main())
    assert detail == f"connected to 127.0.0.1:{port}"
    assert 0.3 <= elapsed < 3.0


def test_wait_ready_http_once_the_server_answers():
    with unused_port() as sock:
        port = sock.getsockname()[1]

        async def main():
            async def serve_later():
                await asyncio.sleep(0.3)
                async with serve(http_server("204 No Content"), sock=sock):
                    await stop.wait()

            stop = asyncio.Event()
            loop = asyncio.get_running_loop()
            server = asyncio.create_task(serve_later())
            try:
                return await wait_ready(HttpProbe(f"http://127.0.0.1:{port}/"),
                                        deadline=loop.time() + 5.0, run_command=no_command)
            finally:
                stop.set()
                await server

        assert run(main()) == f"HTTP 204 from http://127.0.0.1:{port}/"


def test_wait_ready_fails_at_the_deadline_with_the_last_detail():
    with unused_port() as sock:
        port = sock.getsockname()[1]

        async def main():
            loop = asyncio.get_running_loop()
            start = loop.time()
            with pytest.raises(ProbeFailed) as info:
                await wait_ready(TcpProbe("127.0.0.1", port), deadline=start + 0.5,
                                 run_command=no_command)
            return info.value, loop.time() - start

        exc, elapsed = run(main())
    assert exc.detail == f"connection refused by 127.0.0.1:{port}"
    assert str(exc) == exc.detail
    assert 0.5 <= elapsed < 2.0


def test_wait_ready_backs_off_and_bounds_each_attempt_by_the_time_left(monkeypatch):
    pauses: list[float] = []
    timeouts: list[tuple[float, float]] = []
    real_sleep = asyncio.sleep

    async def recording_sleep(delay, *args):
        pauses.append(delay)
        return await real_sleep(delay, *args)

    monkeypatch.setattr(asyncio, "sleep", recording_sleep)

    async def main():
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 1.0

        async def failing(argv, timeout):
            timeouts.append((timeout, deadline - loop.time()))
            return 1

        with pytest.raises(ProbeFailed) as info:
            await wait_ready(ExecProbe("check"), deadline=deadline, run_command=failing,
                             interval=0.05, max_interval=0.2)
        return info.value.detail

    assert run(main()) == "exit code 1 from 'check'"
    # the timeout is computed just before the attempt starts: allow for the time in between
    assert all(timeout <= left + 0.05 for timeout, left in timeouts)
    # 0.05, 0.075, 0.1125, 0.16875, then 0.2 each; the last one cut to the time left
    assert pauses[:4] == pytest.approx([0.05, 0.075, 0.1125, 0.16875])
    assert all(p == pytest.approx(0.2) for p in pauses[4:-1])
    assert 0 < pauses[-1] <= 0.2
    assert len(pauses) <= len(timeouts) <= len(pauses) + 1


def test_wait_ready_attempt_that_hangs_ends_at_the_deadline():
    async def main():
        async with serve(silent) as port:
            loop = asyncio.get_running_loop()
            start = loop.time()
            with pytest.raises(ProbeFailed) as info:
                await wait_ready(HttpProbe(f"http://127.0.0.1:{port}/"), deadline=start + 0.4,
                                 run_command=no_command)
            return info.value.detail, loop.time() - start

    detail, elapsed = run(main())
    assert detail.startswith("timed out waiting for an answer from")
    assert 0.4 <= elapsed < 2.0


# -- log ---------------------------------------------------------------------------------------

def test_log_matcher():
    matcher = LogMatcher(r"listening on \d+")
    assert not matcher.feed("starting...\n")
    assert matcher.feed("INFO listening on 8080\n")
    assert matcher.pattern == r"listening on \d+"
    assert LogMatcher(LogProbe("ready$").regex).feed("server ready\r\n")


# -- notify ------------------------------------------------------------------------------------

CHILD = textwrap.dedent("""
    import os
    from circus.probes.notify import notify
    notify(os.environ["NOTIFY_SOCKET"], "STATUS=warming up")
    notify(os.environ["NOTIFY_SOCKET"], "READY=1\\nSTATUS=serving\\nMAINPID=%d" % os.getpid())
""")

RAW_CHILD = textwrap.dedent("""
    import os, socket
    addr = os.environ["NOTIFY_SOCKET"]
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    s.sendto(b"READY=1", b"\\0" + addr[1:].encode())
    s.close()
""")


def spawn(code: str, address: str) -> subprocess.Popen:
    env = dict(os.environ, NOTIFY_SOCKET=address, PYTHONPATH=str(ROOT))
    return subprocess.Popen([sys.executable, "-c", code], env=env)


async def receive(inbox: asyncio.Queue, child: subprocess.Popen,
                  count: int) -> list[tuple[dict, int]]:
    try:
        return [await inbox.get() for _ in range(count)]
    finally:
        assert await asyncio.to_thread(child.wait, 5) == 0


def test_notify_socket_receives_from_a_real_child():
    async def main():
        inbox: asyncio.Queue = asyncio.Queue()
        allowed: set[int] = set()
        with NotifySocket(lambda fields, pid: inbox.put_nowait((fields, pid)),
                          allowed.__contains__) as ns:
            assert ns.address.startswith("@circus/")
            ns.start(asyncio.get_running_loop())
            # not allowed: the test process itself; queued before the child's, so counted by then
            notify(ns.address, "READY=1\nSTATUS=impostor")
            child = spawn(CHILD, ns.address)
            allowed.add(child.pid)
            got = await receive(inbox, child, 2)
            return child.pid, got, ns.received, ns.dropped

    pid, got, received, dropped = run(main())
    assert got == [
        ({"STATUS": "warming up"}, pid),
        ({"READY": "1", "STATUS": "serving", "MAINPID": str(pid)}, pid),
    ]
    assert (received, dropped) == (2, 1)


def test_notify_socket_raw_sender_and_close():
    async def main():
        inbox: asyncio.Queue = asyncio.Queue()
        ns = NotifySocket(lambda fields, pid: inbox.put_nowait((fields, pid)), lambda pid: True)
        try:
            ns.start()
            child = spawn(RAW_CHILD, ns.address)
            got = await receive(inbox, child, 1)
        finally:
            ns.close()
        ns.close()  # idempotent
        assert ns.closed
        with pytest.raises(ConnectionRefusedError):
            notify(ns.address, "READY=1")  # the name is gone with the socket
        return child.pid, got

    pid, got = run(main())
    assert got == [({"READY": "1"}, pid)]


def test_notify_handler_errors_and_oversized_datagrams_are_contained():
    async def main():
        inbox: asyncio.Queue = asyncio.Queue()

        def handler(fields, pid):
            if "BOOM" in fields:
                raise RuntimeError("handler bug")
            inbox.put_nowait(fields)

        with NotifySocket(handler, lambda pid: True) as ns:
            ns.start()
            notify(ns.address, "BOOM=1")
            notify(ns.address, "X=" + "y" * 5000)  # larger than 4096 bytes: dropped
            notify(ns.address, "READY=1")
            assert await inbox.get() == {"READY": "1"}
            return ns.received, ns.dropped

    assert run(main()) == (2, 1)


def test_notify_to_a_path_socket(tmp_path):
    path = str(tmp_path / "notify.sock")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(path)
        sock.settimeout(5)
        notify(path, "READY=1")
        assert sock.recv(100) == b"READY=1"
    with pytest.raises(ValueError):
        notify("relative.sock", "READY=1")


def test_parse_message():
    assert parse_message(b"READY=1\nSTATUS=a=b\n\nnoequals\nERRNO=2\n") == {
        "READY": "1", "STATUS": "a=b", "ERRNO": "2",
    }
