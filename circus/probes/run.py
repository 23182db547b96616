"""Running probes: one attempt (`check`), retrying until ready or a deadline (`wait_ready`), and
matching output lines (`LogMatcher`).

Everything here is asyncio and never blocks the loop. A probe that fails, hangs or cannot even
be attempted is reported as ``(False, reason)``; only programming errors raise.

Exec probes do not start processes themselves: the arbiter reaps every child with
``waitpid(-1)`` and would take the status away from ``asyncio.create_subprocess_*``. The caller
gives a ``run_command(argv, timeout)`` coroutine function instead, which must:

* run ``argv`` (no shell) and return its exit code — negative ``-N`` when killed by signal N,
  like ``subprocess.Popen.returncode``;
* kill the command and raise ``TimeoutError`` if it has not exited after ``timeout`` seconds,
  and kill it too if it is cancelled;
* raise ``OSError`` if the command cannot be started (not found, not executable...).
"""

from __future__ import annotations

import asyncio
import shlex
import signal
import sys
from collections.abc import Awaitable, Callable
from typing import Any

from circus import asynctls
from circus.protocol.limits import compile_line_pattern

from ..errors import CircusError
from .spec import ExecProbe, HttpProbe, TcpProbe

__all__ = ["check", "wait_ready", "ProbeFailed", "LogMatcher", "RunCommand"]

RunCommand = Callable[[list[str], float], Awaitable[int]]

# Extra time given to run_command beyond the attempt's timeout before check() gives up on it:
# run_command enforces the timeout itself; this only guards against one that does not.
_RUN_COMMAND_GRACE = 1.0
# Time allowed to close a connection once the answer is known (a TLS close can wait for the peer).
_CLOSE_GRACE = 0.1
_MAX_STATUS_LINE = 8192

_ssl_context: Any = None       # ssl.SSLContext, made (and ssl loaded) by the first https probe


class ProbeFailed(CircusError):
    """A probe did not succeed before its deadline; `detail` is the reason of the last attempt."""

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


class LogMatcher:
    """Readiness from output: `feed` each line; True when the line matches (a search, in linear time: RE2)."""

    def __init__(self, pattern: str | Any) -> None:
        self.regex = compile_line_pattern(pattern) if isinstance(pattern, str) else pattern

    @property
    def pattern(self) -> str:
        return self.regex.pattern

    def feed(self, line: str) -> bool:
        return self.regex.search(line.rstrip("\r\n")) is not None

    def __repr__(self) -> str:
        return f"LogMatcher({self.regex.pattern!r})"


def _secs(seconds: float) -> str:
    text = f"{max(seconds, 0.0):.2f}"
    return text[:-1] if text.endswith("0") else text


def _hostport(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _short(text: str, limit: int = 60) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _os_error(exc: OSError, where: str) -> str:
    if isinstance(exc, ConnectionRefusedError):
        return f"connection refused by {where}"
    ssl = sys.modules.get("ssl")     # a TLS error comes from a loaded ssl module
    if ssl is not None and isinstance(exc, ssl.SSLCertVerificationError):
        return f"TLS certificate of {where} rejected: {exc.verify_message or exc.reason}"
    if ssl is not None and isinstance(exc, ssl.SSLError):
        return f"TLS error with {where}: {exc.reason or exc}"
    if isinstance(exc, ConnectionError):
        return f"connection to {where} lost: {exc.strerror or exc}"
    return f"cannot connect to {where}: {exc.strerror or exc}"


async def _close(writer: asyncio.StreamWriter, deadline: float) -> None:
    loop = asyncio.get_running_loop()
    writer.close()
    try:
        async with asyncio.timeout_at(max(deadline, loop.time() + _CLOSE_GRACE)):
            await writer.wait_closed()
    except (TimeoutError, OSError):
        writer.transport.abort()


async def _check_tcp(probe: TcpProbe, deadline: float) -> tuple[bool, str]:
    where = _hostport(probe.host, probe.port)
    try:
        async with asyncio.timeout_at(deadline):
            _, writer = await asyncio.open_connection(probe.host, probe.port)
    except TimeoutError:
        return False, f"timed out connecting to {where}"
    except OSError as exc:
        return False, _os_error(exc, where)
    await _close(writer, deadline)
    return True, f"connected to {where}"


def _default_ssl_context() -> Any:
    global _ssl_context
    if _ssl_context is None:
        _ssl_context = asynctls.enable().create_default_context()
    return _ssl_context


async def _check_http(probe: HttpProbe, deadline: float) -> tuple[bool, str]:
    from urllib.parse import unquote, urlsplit

    url = probe.url
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https") or not parts.hostname:
        return False, f"not an http(s) URL: {url}"
    try:
        port = parts.port or (443 if scheme == "https" else 80)
    except ValueError:
        return False, f"bad port in {url}"
    host = parts.hostname
    where = _hostport(host, port)
    userinfo, _, hostpart = parts.netloc.rpartition("@")
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    headers = [
        f"GET {target} HTTP/1.1",
        f"Host: {hostpart}",
        "User-Agent: circus-probe",
        "Accept: */*",
        "Connection: close",
    ]
    if userinfo:
        user, _, password = userinfo.partition(":")
        import base64

        token = base64.b64encode(f"{unquote(user)}:{unquote(password)}".encode()).decode()
        headers.append(f"Authorization: Basic {token}")
    request = ("\r\n".join(headers) + "\r\n\r\n").encode("latin-1", "replace")
    writer: asyncio.StreamWriter | None = None
    try:
        async with asyncio.timeout_at(deadline):
            reader, writer = await asyncio.open_connection(
                host, port,
                ssl=_default_ssl_context() if scheme == "https" else None,
                limit=_MAX_STATUS_LINE,
            )
            writer.write(request)
            await writer.drain()
            line = await reader.readline()
    except TimeoutError:
        state = "waiting for an answer from" if writer is not None else "connecting to"
        return False, f"timed out {state} {url}"
    except OSError as exc:  # before ValueError: a certificate error is both
        return False, _os_error(exc, where)
    except ValueError:  # the status line is longer than the reader's limit
        return False, f"malformed answer from {url}: status line too long"
    finally:
        if writer is not None:
            await _close(writer, deadline)
    if not line:
        return False, f"empty answer from {url}"
    fields = line.decode("latin-1").split(None, 2)
    if len(fields) < 2 or not fields[0].startswith("HTTP/") or not (
        len(fields[1]) == 3 and fields[1].isdigit()
    ):
        return False, f"malformed answer from {url}: {_short(line.decode('latin-1').strip())!r}"
    status = int(fields[1])
    return 200 <= status < 400, f"HTTP {status} from {url}"


async def _check_exec(
    probe: ExecProbe, deadline: float, timeout: float, run_command: RunCommand
) -> tuple[bool, str]:
    name = _short(probe.command)
    try:
        argv = shlex.split(probe.command)
    except ValueError as exc:
        return False, f"cannot split command '{name}': {exc}"
    if not argv:
        return False, "empty command"
    try:
        async with asyncio.timeout_at(deadline + _RUN_COMMAND_GRACE):
            code = await run_command(argv, timeout)
    except TimeoutError:
        return False, f"'{name}' timed out after {_secs(timeout)} s"
    except OSError as exc:
        return False, f"cannot run '{name}': {exc.strerror or exc}"
    if code == 0:
        return True, f"exit code 0 from '{name}'"
    if code < 0:
        try:
            signame = signal.Signals(-code).name
        except ValueError:
            signame = str(-code)
        return False, f"'{name}' killed by {signame}"
    return False, f"exit code {code} from '{name}'"


async def check(
    probe: TcpProbe | HttpProbe | ExecProbe, *, timeout: float, run_command: RunCommand
) -> tuple[bool, str]:
    """One attempt of a tcp, http or exec probe, within `timeout` seconds: ``(ok, reason)``.

    Failures (refused, timed out, bad status, non-zero exit...) are returned, not raised; a
    probe kind this cannot run (notify, log) is a TypeError.
    """
    loop = asyncio.get_running_loop()
    timeout = max(float(timeout), 0.0)
    deadline = loop.time() + timeout
    if isinstance(probe, TcpProbe):
        ok, detail = await _check_tcp(probe, deadline)
    elif isinstance(probe, HttpProbe):
        ok, detail = await _check_http(probe, deadline)
    elif isinstance(probe, ExecProbe):
        return await _check_exec(probe, deadline, timeout, run_command)
    else:
        raise TypeError(f"check() runs tcp, http and exec probes, not {probe!r}")
    if not ok and detail.startswith("timed out"):
        detail = f"{detail} after {_secs(timeout)} s"
    return ok, detail


async def wait_ready(
    probe: TcpProbe | HttpProbe | ExecProbe,
    *,
    deadline: float,
    run_command: RunCommand,
    interval: float = 0.05,
    max_interval: float = 1.0,
) -> str:
    """Repeat `check` until it succeeds (the success detail is returned) or the loop time passes
    `deadline` (`ProbeFailed` with the reason of the last attempt).

    The pause between attempts starts at `interval` and grows x1.5 up to `max_interval`; each
    attempt is given at most the time left before the deadline.
    """
    loop = asyncio.get_running_loop()
    delay = interval
    detail = "the deadline passed before the first attempt"
    while True:
        left = deadline - loop.time()
        if left <= 0:
            raise ProbeFailed(detail)
        ok, detail = await check(probe, timeout=left, run_command=run_command)
        if ok:
            return detail
        left = deadline - loop.time()
        if left <= 0:
            raise ProbeFailed(detail)
        await asyncio.sleep(min(delay, left))
        delay = min(delay * 1.5, max_interval)
