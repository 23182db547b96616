"""Prometheus's HTTP service discovery (``http_sd``) for the pool: a small HTTP server answering
``GET /targets`` with the target groups of :mod:`circusmeta.promsd`.

Run by ``circusmeta prometheus-sd --listen`` and ``circusmeta proxy --http-sd``. Each request
reads the pool again (the file, and DNS for a pool from DNS) in a worker thread, so Prometheus
sees a node added or gone at its next refresh; requests that come while a read runs share its
result. A pool that cannot be read is answered ``503`` with the reason (Prometheus keeps the
targets it had), never an empty or partial list. The format: ``200``, ``Content-Type:
application/json``, a JSON list of ``{"targets": [...], "labels": {...}}``.

HTTP/1.1 with one request per connection; a request head larger than :data:`MAX_HEAD` bytes or
slower than ``timeout`` seconds is dropped. There is no authentication: what it serves is the
nodes' metrics addresses and tags. Keep it on loopback or a management network, as the nodes'
``/metrics``.
"""
from __future__ import annotations

import asyncio
from typing import Any, Callable

from .promsd import render, split_address

__all__ = ["SdServer", "open_for", "MAX_HEAD", "PATH"]

MAX_HEAD = 8192
PATH = "/targets"
_REASONS = {200: "OK", 400: "Bad Request", 404: "Not Found", 405: "Method Not Allowed",
            431: "Request Header Fields Too Large", 503: "Service Unavailable"}


class SdServer:
    """``load()`` returns (target groups, names of the nodes without prometheus_endpoint) or
    raises ConfigError; ``log(text)`` gets a line when the answer changes."""

    def __init__(self, load: Callable[[], tuple[list[dict], list[str]]],
                 log: Callable[[str], None], *, timeout: float = 5.0) -> None:
        self.load, self.log, self.timeout = load, log, timeout
        self.served = 0
        self._server: asyncio.AbstractServer | None = None
        self._reading: asyncio.Task | None = None
        self._last: tuple[Any, ...] | None = None
        self._clients: set[asyncio.Task] = set()

    async def start(self, address: str) -> str:
        """Bind ``HOST:PORT`` (port 0: a free one); the address bound. OSError, ValueError."""
        host, port = split_address(address, any_port=True)
        self._server = await asyncio.start_server(self._serve, host, port, limit=MAX_HEAD)
        bound = self._server.sockets[0].getsockname()
        return f"[{bound[0]}]:{bound[1]}" if ":" in bound[0] else f"{bound[0]}:{bound[1]}"

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            for task in list(self._clients):
                task.cancel()
            await asyncio.gather(*self._clients, return_exceptions=True)
            await self._server.wait_closed()
            self._server = None

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._clients.add(task)
        try:
            status, body, kind, head_only = await self._answer(reader)
            head = (f"HTTP/1.1 {status} {_REASONS[status]}\r\nContent-Type: {kind}\r\n"
                    f"Content-Length: {len(body)}\r\nConnection: close\r\n"
                    + ("Allow: GET, HEAD\r\n" if status == 405 else "") + "\r\n")
            writer.write(head.encode() + (b"" if head_only else body))
            await asyncio.wait_for(writer.drain(), self.timeout)
            self.served += status == 200
        except (OSError, asyncio.TimeoutError, asyncio.IncompleteReadError):
            pass                           # the client left or stalled: nothing to answer
        finally:
            self._clients.discard(task)
            writer.close()

    async def _answer(self, reader: asyncio.StreamReader) -> tuple[int, bytes, str, bool]:
        """(status, body, content type, HEAD: the body is not sent)."""
        text = "text/plain; charset=utf-8"
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), self.timeout)
        except asyncio.LimitOverrunError:
            return 431, b"request head too large\n", text, False
        words = head.split(b"\r\n", 1)[0].split()
        if len(words) != 3 or not words[2].startswith(b"HTTP/1."):
            return 400, b"expected GET /targets HTTP/1.1\n", text, False
        method, path = words[0], words[1].split(b"?", 1)[0]
        if path != PATH.encode():
            return 404, f"not here: http_sd is at {PATH}\n".encode(), text, False
        if method not in (b"GET", b"HEAD"):
            return 405, b"GET or HEAD only\n", text, False
        head_only = method == b"HEAD"
        try:
            groups, skipped = await self._read()
        except Exception as exc:           # the pool cannot be read: ConfigError, DNS, a bug
            reason = str(exc) or type(exc).__name__
            if self._last != ("error", reason):
                self._last = ("error", reason)
                self.log(f"cannot read the pool, answering 503: {reason}")
            return 503, (reason + "\n").encode(), text, head_only
        body = render(groups)
        if self._last != ("ok", body, tuple(skipped)):
            self._last = ("ok", body, tuple(skipped))
            without = f" (no prometheus_endpoint: {', '.join(skipped[:10])}" \
                      f"{' ...' if len(skipped) > 10 else ''})" if skipped else ""
            self.log(f"serving {len(groups)} target{'s' if len(groups) != 1 else ''}{without}")
        return 200, body, "application/json", head_only

    async def _read(self) -> tuple[list[dict], list[str]]:
        """One read of the pool at a time; a request during a read waits for that one."""
        if self._reading is None or self._reading.done():
            self._reading = asyncio.ensure_future(asyncio.to_thread(self.load))
        return await asyncio.shield(self._reading)


async def open_for(pool_path: str, address: str, log: Callable[[str], None]) -> SdServer:
    """A started server of the whole pool at ``pool_path`` (``circusmeta proxy --http-sd``);
    OSError when ``address`` cannot be bound."""
    from .promsd import source
    server = SdServer(source(pool_path), log)
    log(f"http_sd on http://{await server.start(address)}{PATH}")
    return server
