"""The asyncio client: control calls over a DEALER and an events consumer over a SUB.

Many calls may be in flight on one :class:`AsyncClient`: a single reader task owned by the client
hands each reply to the call whose ``id`` it carries and drops replies nobody waits for any more
(answers to calls that timed out). Every call has a deadline.
"""
from __future__ import annotations

import asyncio
from typing import Any, AsyncIterator, Callable, Mapping

import zmq
import zmq.asyncio

from circus.client.errors import CallError, CallTimeout
from circus.client.wire import (DEFAULT_ENDPOINT_DEALER, DEFAULT_ENDPOINT_SUB, connect, is_cast,
                                make_message, prepare_call, setup_dealer, setup_sub)
from circus.protocol import decode, decode_event

__all__ = ["AsyncClient", "AsyncConsumer", "AsyncCircusClient"]


def _async_context(context: zmq.Context | None) -> zmq.asyncio.Context:
    """An asyncio context: a new one, the one given, or one sharing a given blocking context."""
    if context is None:
        return zmq.asyncio.Context()
    if isinstance(context, zmq.asyncio.Context):
        return context
    return zmq.asyncio.Context.shadow(context.underlying)


class AsyncClient:
    """``async with AsyncClient(endpoint) as c: reply = await c.call("list")``."""

    def __init__(self, endpoint: str = DEFAULT_ENDPOINT_DEALER, timeout: float = 5.0,
                 context: zmq.Context | None = None, ssh_server: str | None = None,
                 ssh_keyfile: str | None = None,
                 before_connect: Callable[[zmq.Socket], None] | None = None,
                 curve: Any = None) -> None:
        """``before_connect(socket)`` runs before the socket connects (a socket monitor);
        ``curve``: :class:`circus.security.keys.ClientKeys` for a CURVE-protected circusd."""
        self.endpoint = endpoint
        self.timeout = float(timeout)
        self._own_context = context is None
        self._context = _async_context(context)
        self._socket = setup_dealer(self._context.socket(zmq.DEALER), curve)
        try:
            if before_connect is not None:
                before_connect(self._socket)
            connect(self._socket, endpoint, ssh_server, ssh_keyfile)
        except BaseException:
            self.close()
            raise
        self._pending: dict[str, asyncio.Future[dict[str, Any]]] = {}
        self._reader: asyncio.Task[None] | None = None
        self._cast_pending = False   # a cast may still sit in the queue: close() lets it go out

    @property
    def closed(self) -> bool:
        return self._socket.closed

    async def call(self, command: str, timeout: float | None = None, **props: Any) -> dict[str, Any]:
        """Run ``command`` with ``props``; return the reply (an error reply is returned too)."""
        reply = await self.request(make_message(command, **props), timeout=timeout)
        assert reply is not None
        return reply

    async def cast(self, command: str, **props: Any) -> None:
        """Send ``command`` without waiting for (or getting) an answer."""
        message = make_message(command, **props)
        message["msg_type"] = "cast"
        await self.request(message)

    async def request(self, message: Mapping[str, Any],
                      timeout: float | None = None) -> dict[str, Any] | None:
        """Send a full message dict; return its reply, or ``None`` for a cast."""
        if self.closed:
            raise CallError(f"the client for {self.endpoint} is closed")
        limit = self.timeout if timeout is None else float(timeout)
        call_id, body = prepare_call(message)
        command = message.get("command")
        if is_cast(message):
            await self._send(body, limit, command)
            self._cast_pending = True
            return None
        self._cast_pending = False
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._pending[call_id] = future
        try:
            self._start_reader()
            async with asyncio.timeout(limit):
                await self._socket.send(body)
                return await future
        except TimeoutError:
            raise CallTimeout(f"Timed out after {limit:g} s waiting for circusd at {self.endpoint} "
                              f"to answer {command!r}") from None
        finally:
            self._pending.pop(call_id, None)

    async def _send(self, body: bytes, limit: float, command: Any) -> None:
        try:
            async with asyncio.timeout(limit):
                await self._socket.send(body)
        except TimeoutError:
            raise CallTimeout(f"Timed out after {limit:g} s sending {command!r} to "
                              f"{self.endpoint}") from None

    def _start_reader(self) -> None:
        if self._reader is None or self._reader.done():
            self._reader = asyncio.get_running_loop().create_task(self._read_replies())

    async def _read_replies(self) -> None:
        try:
            while True:
                frames = await self._socket.recv_multipart()
                try:
                    reply = decode(frames[-1])
                except ValueError:
                    continue
                if not isinstance(reply, dict):
                    continue
                future = self._pending.get(reply.get("id"))  # type: ignore[arg-type]
                if future is not None and not future.done():
                    future.set_result(reply)
        except zmq.ZMQError as exc:
            for future in self._pending.values():
                if not future.done():
                    future.set_exception(CallError(f"connection to {self.endpoint} failed: {exc}"))

    def close(self) -> None:
        """Stop the reader, close the socket (and the context when the client made it)."""
        reader, self._reader = getattr(self, "_reader", None), None
        if reader is not None and not reader.done():
            reader.cancel()
        for future in getattr(self, "_pending", {}).values():
            if not future.done():
                future.set_exception(CallError(f"the client for {self.endpoint} was closed"))
        if not self._socket.closed:
            pending = getattr(self, "_cast_pending", False)
            self._socket.close(linger=int(self.timeout * 1000) if pending else 0)
        if self._own_context and not self._context.closed:
            self._context.term()

    async def aclose(self) -> None:
        reader = self._reader
        self.close()
        if reader is not None:
            await asyncio.gather(reader, return_exceptions=True)

    async def __aenter__(self) -> "AsyncClient":
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()


class AsyncConsumer:
    """Events from circusd's pubsub endpoint: ``async for topic, payload in consumer``.

    ``topics`` are subscription prefixes (``""``: everything). Each item is the topic as a string
    and the payload as a dict; an event whose payload is not JSON is skipped. With ``raw=True``
    the two frames are given as bytes, as :class:`circus.consumer.CircusConsumer` does.
    """

    def __init__(self, topics: list[str] | tuple[str, ...] = ("",),
                 endpoint: str = DEFAULT_ENDPOINT_SUB, context: zmq.Context | None = None,
                 ssh_server: str | None = None, ssh_keyfile: str | None = None,
                 raw: bool = False, curve: Any = None) -> None:
        self.endpoint = endpoint
        self.raw = raw
        self._own_context = context is None
        self._context = _async_context(context)
        self._socket = setup_sub(self._context.socket(zmq.SUB), list(topics), curve)
        try:
            connect(self._socket, endpoint, ssh_server, ssh_keyfile)
        except BaseException:
            self.close()
            raise

    def __aiter__(self) -> AsyncIterator[tuple[Any, Any]]:
        return self

    async def __anext__(self) -> tuple[Any, Any]:
        if self._socket.closed:
            raise StopAsyncIteration
        return await self.next()

    async def next(self, timeout: float | None = None) -> tuple[Any, Any]:
        """The next event; raises ``TimeoutError`` if none comes within ``timeout`` seconds."""
        async with asyncio.timeout(timeout):
            while True:
                frames = await self._socket.recv_multipart()
                if len(frames) < 2:
                    continue
                if self.raw:
                    return frames[0], frames[1]
                try:
                    return decode_event(frames)
                except ValueError:
                    continue

    def close(self) -> None:
        if not self._socket.closed:
            self._socket.close(linger=0)
        if self._own_context and not self._context.closed:
            self._context.term()

    async def __aenter__(self) -> "AsyncConsumer":
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.close()


class AsyncCircusClient:
    """Circus 0.19's asynchronous client, by name and signature: ``await client.call(message)``.

    0.19's ran on Tornado; this one is a coroutine API over :class:`AsyncClient`, which Tornado
    coroutines can also ``yield``. A timeout raises ``CallError("Timed out.")`` as 0.19's did.
    """

    def __init__(self, context: zmq.Context | None = None, endpoint: str = DEFAULT_ENDPOINT_DEALER,
                 timeout: float = 5.0, ssh_server: str | None = None,
                 ssh_keyfile: str | None = None, curve: Any = None) -> None:
        self.endpoint = endpoint
        self._client = AsyncClient(endpoint, timeout, context, ssh_server, ssh_keyfile, curve=curve)

    async def call(self, cmd: Mapping[str, Any]) -> dict[str, Any] | None:
        try:
            return await self._client.request(cmd)
        except CallTimeout:
            raise CallTimeout("Timed out.") from None

    async def send_message(self, command: str, **props: Any) -> dict[str, Any] | None:
        return await self.call(make_message(command, **props))

    def stop(self) -> None:
        self._client.close()
