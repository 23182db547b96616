"""Asking a Redis server for its ``INFO``, over asyncio, with one deadline for the whole exchange.

Just what :class:`~circus.plugins.redis_observer.RedisObserver` needs, so that Circus does not
depend on redis-py: connect (TCP, TLS or a Unix socket), ``AUTH`` when the URL carries a
password, ``SELECT`` a database other than 0, ``INFO``; the RESP replies those commands get
(simple strings, errors, integers, bulk strings). URLs as redis-py reads them:

* ``redis://[[user]:password@]host[:port][/db]`` (port 6379, db 0), ``rediss://`` for TLS;
* ``unix://[[user]:password@]/path/to/socket[?db=N]``;
* ``?password=...`` and ``?db=N`` in the query too.

:func:`parse_url` and :func:`parse_info` are pure; :func:`fetch_info` does the I/O and raises
:class:`RedisUnavailable` (no connection, no answer in time, an error reply) with the reason.
"""
from __future__ import annotations

import asyncio
import ssl
from dataclasses import dataclass
from urllib.parse import parse_qs, unquote, urlsplit

__all__ = ["RedisTarget", "RedisUnavailable", "parse_url", "parse_info", "fetch_info",
           "encode_command"]

#: a bulk reply larger than this is refused (INFO is a few kB)
MAX_BULK = 4 << 20


class RedisUnavailable(Exception):
    """The server could not be asked: the message says why."""


@dataclass(frozen=True)
class RedisTarget:
    host: str = "localhost"
    port: int = 6379
    path: str | None = None          # a Unix socket
    db: int = 0
    username: str | None = None
    password: str | None = None
    tls: bool = False

    def __str__(self) -> str:
        where = f"unix://{self.path}" if self.path else f"{self.host}:{self.port}"
        return f"{where}/{self.db}" if self.db else where


def parse_url(url: str) -> RedisTarget:
    """The target of a ``redis://``, ``rediss://`` or ``unix://`` URL; ValueError saying what is
    wrong with it."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in ("redis", "rediss", "unix"):
        raise ValueError(f"expected a redis://, rediss:// or unix:// URL, got {url!r}")
    query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
    username = unquote(parts.username) if parts.username else None
    password = unquote(parts.password) if parts.password is not None else query.get("password")
    db_text = query.get("db", "")
    if scheme != "unix" and parts.path.strip("/"):
        db_text = parts.path.strip("/")
    try:
        db = int(db_text) if db_text else 0
    except ValueError:
        raise ValueError(f"the database of {url!r} is not a number: {db_text!r}") from None
    if db < 0:
        raise ValueError(f"the database of {url!r} must be >= 0")
    if scheme == "unix":
        if not parts.path:
            raise ValueError(f"{url!r} names no socket path")
        return RedisTarget(path=unquote(parts.path), db=db, username=username,
                           password=password)
    try:
        port = parts.port or 6379
    except ValueError:
        raise ValueError(f"the port of {url!r} is not a number from 1 to 65535") from None
    return RedisTarget(host=parts.hostname or "localhost", port=port, db=db,
                       username=username or None, password=password, tls=scheme == "rediss")


def encode_command(*words: str) -> bytes:
    """A command as RESP: an array of bulk strings."""
    out = [f"*{len(words)}\r\n".encode()]
    for word in words:
        data = word.encode()
        out.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(out)


async def _reply(reader: asyncio.StreamReader) -> str | int | None:
    line = await reader.readline()
    if not line.endswith(b"\r\n"):
        raise RedisUnavailable("the server closed the connection")
    kind, rest = line[:1], line[1:-2].decode(errors="replace")
    if kind == b"+":
        return rest
    if kind == b"-":
        raise RedisUnavailable(f"the server answered: {rest}")
    if kind == b":":
        return int(rest)
    if kind == b"$":
        size = int(rest)
        if size < 0:
            return None
        if size > MAX_BULK:
            raise RedisUnavailable(f"a reply of {size} bytes is too large")
        data = await reader.readexactly(size + 2)
        return data[:-2].decode(errors="replace")
    raise RedisUnavailable(f"not a Redis reply: {line[:40]!r}")


async def _exchange(target: RedisTarget) -> str:
    if target.path:
        reader, writer = await asyncio.open_unix_connection(target.path)
    else:
        context = ssl.create_default_context() if target.tls else None
        reader, writer = await asyncio.open_connection(target.host, target.port, ssl=context)
    try:
        commands = []
        if target.password is not None:
            commands.append(("AUTH", *([target.username] if target.username else []),
                             target.password))
        if target.db:
            commands.append(("SELECT", str(target.db)))
        commands.append(("INFO",))
        writer.write(b"".join(encode_command(*c) for c in commands))
        await writer.drain()
        reply: str | int | None = None
        for _ in commands:
            reply = await _reply(reader)
        if not isinstance(reply, str):
            raise RedisUnavailable(f"INFO got {reply!r}")
        return reply
    finally:
        writer.close()
        try:
            await writer.wait_closed()
        except OSError:
            pass


async def fetch_info(target: RedisTarget, timeout: float) -> dict[str, str | int | float]:
    """The server's ``INFO``, parsed; RedisUnavailable when it cannot be had within
    ``timeout`` seconds (connecting included)."""
    try:
        text = await asyncio.wait_for(_exchange(target), timeout)
    except TimeoutError:
        raise RedisUnavailable(f"no answer from {target} within {timeout:g} s") from None
    except (OSError, asyncio.IncompleteReadError, ValueError, ssl.SSLError) as exc:
        raise RedisUnavailable(f"{target}: {exc or type(exc).__name__}") from None
    return parse_info(text)


def _value(text: str) -> str | int | float:
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def parse_info(text: str) -> dict[str, str | int | float]:
    """``INFO``'s ``key:value`` lines (``# Section`` lines skipped); numbers become numbers, the
    rest stays text (``db0:keys=1,expires=0`` included)."""
    out: dict[str, str | int | float] = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.partition(":")
        if sep:
            out[key] = _value(value.strip())
    return out
