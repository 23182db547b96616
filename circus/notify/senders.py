"""Deliver one message to one destination, without blocking circusd's loop.

* smtp / smtps: ``smtplib`` in a worker thread (socket timeout = the notification's ``timeout``),
  optional STARTTLS (the server certificate is verified against the system's CAs) and login.
* webhook: ``urllib`` in a worker thread: POST of the JSON, any 2xx status is a success.
* exec: the command runs through circusd's own spawn seam and reaper (never
  ``asyncio.create_subprocess_*``: circusd reaps every child itself); the message is written to a
  pipe that becomes its stdin, and exit code 0 is a success. It is killed at ``timeout``.

``send`` raises :class:`DeliveryError` with a short reason when the delivery failed; retrying is
the caller's business. ``smtplib``, ``email``, ``urllib`` and ``ssl`` are imported by the first
delivery that needs them: circusd without such a notification never loads them.
"""
from __future__ import annotations

import asyncio
import dataclasses
import fcntl
import json
import os
from concurrent.futures import Executor
from typing import TYPE_CHECKING, Any, Mapping, Protocol

from circus import __version__
from circus.config import NotifyConfig
from circus.core.policy import describe_exit
from circus.core.spawner import SpawnSpec
from circus.errors import CircusError
from circus.notify.spec import (Destination, ExecDestination, SmtpDestination, WebhookDestination,
                                parse_destination)

if TYPE_CHECKING:
    import email.message

__all__ = ["DeliveryError", "Message", "Sender", "SenderHost", "make_sender", "MAX_STDIN"]

#: the most of a message an exec destination gets on stdin (what one pipe buffer surely holds)
MAX_STDIN = 60 * 1024


class DeliveryError(CircusError):
    """A message could not be delivered; the text says why."""


@dataclasses.dataclass(frozen=True)
class Message:
    subject: str
    text: str
    data: Mapping[str, Any]            # the webhook's JSON
    env: Mapping[str, str]             # extra environment of an exec destination


class Sender(Protocol):
    async def send(self, message: Message) -> None: ...


class SenderHost(Protocol):
    """What the exec destination needs from circusd."""

    environ: Mapping[str, str]

    async def run_command(self, spec: SpawnSpec, timeout: float) -> int: ...


def make_sender(cfg: NotifyConfig, host: SenderHost, executor: Executor) -> Sender:
    dest: Destination = parse_destination(cfg.destination)
    if isinstance(dest, SmtpDestination):
        return SmtpSender(cfg, dest, executor)
    if isinstance(dest, WebhookDestination):
        return WebhookSender(cfg, dest, executor)
    return ExecSender(cfg, dest, host)


def _oserror(exc: OSError) -> str:
    return exc.strerror or str(exc) or type(exc).__name__


class SmtpSender:
    def __init__(self, cfg: NotifyConfig, dest: SmtpDestination, executor: Executor) -> None:
        self.cfg, self.dest, self.executor = cfg, dest, executor

    async def send(self, message: Message) -> None:
        await asyncio.get_running_loop().run_in_executor(self.executor, self._send, message)

    def mail(self, message: Message) -> email.message.EmailMessage:
        import email.message
        import email.utils

        mail = email.message.EmailMessage()
        mail["Subject"] = message.subject
        mail["From"] = self.cfg.mail_from or ""
        mail["To"] = ", ".join(self.cfg.to)
        mail["Date"] = email.utils.formatdate(localtime=False)
        mail["Message-ID"] = email.utils.make_msgid("circus")
        mail["X-Mailer"] = f"circusd {__version__}"
        mail.set_content(message.text)
        return mail

    def _send(self, message: Message) -> None:          # in a worker thread
        import smtplib
        import ssl

        cfg, dest = self.cfg, self.dest
        where = str(dest)
        try:
            context = ssl.create_default_context()
            smtp = smtplib.SMTP_SSL(dest.host, dest.port, timeout=cfg.timeout, context=context) \
                if dest.ssl else smtplib.SMTP(dest.host, dest.port, timeout=cfg.timeout)
            with smtp:
                smtp.ehlo_or_helo_if_needed()
                if cfg.starttls:
                    smtp.starttls(context=context)
                    smtp.ehlo()
                if cfg.username:
                    smtp.login(cfg.username, cfg.password or "")
                refused = smtp.send_message(self.mail(message), cfg.mail_from, list(cfg.to))
        except smtplib.SMTPResponseException as exc:
            text = exc.smtp_error.decode(errors="replace") if isinstance(exc.smtp_error, bytes) \
                else str(exc.smtp_error)
            raise DeliveryError(f"{where}: {exc.smtp_code} {text}") from None
        except smtplib.SMTPRecipientsRefused as exc:
            raise DeliveryError(f"{where}: every recipient refused: "
                                f"{', '.join(exc.recipients)}") from None
        except (smtplib.SMTPException, ssl.SSLError) as exc:
            raise DeliveryError(f"{where}: {exc}") from None
        except TimeoutError:
            raise DeliveryError(f"{where}: timed out after {cfg.timeout:g} s") from None
        except OSError as exc:
            raise DeliveryError(f"{where}: {_oserror(exc)}") from None
        if refused:
            raise DeliveryError(f"{where}: recipients refused: {', '.join(refused)}")


class WebhookSender:
    def __init__(self, cfg: NotifyConfig, dest: WebhookDestination, executor: Executor) -> None:
        self.cfg, self.dest, self.executor = cfg, dest, executor

    async def send(self, message: Message) -> None:
        await asyncio.get_running_loop().run_in_executor(self.executor, self._post, message)

    def _post(self, message: Message) -> None:           # in a worker thread
        import urllib.error
        import urllib.request

        body = json.dumps(message.data).encode()
        request = urllib.request.Request(
            self.dest.url, data=body, method="POST",
            headers={"Content-Type": "application/json", "User-Agent": f"circusd/{__version__}"})
        where = self.dest.url
        try:
            with urllib.request.urlopen(request, timeout=self.cfg.timeout) as response:
                status = response.status
                response.read(65536)
        except urllib.error.HTTPError as exc:
            exc.close()
            raise DeliveryError(f"{where}: HTTP {exc.code} {exc.reason}") from None
        except urllib.error.URLError as exc:
            reason = exc.reason
            text = _oserror(reason) if isinstance(reason, OSError) else str(reason)
            raise DeliveryError(f"{where}: {text}") from None
        except TimeoutError:
            raise DeliveryError(f"{where}: timed out after {self.cfg.timeout:g} s") from None
        except OSError as exc:
            raise DeliveryError(f"{where}: {_oserror(exc)}") from None
        if not 200 <= status < 300:
            raise DeliveryError(f"{where}: HTTP {status}")


class ExecSender:
    def __init__(self, cfg: NotifyConfig, dest: ExecDestination, host: SenderHost) -> None:
        self.cfg, self.dest, self.host = cfg, dest, host

    async def send(self, message: Message) -> None:
        text = f"Subject: {message.subject}\n\n{message.text}".encode()
        read_fd, write_fd = os.pipe()
        try:
            _fill(write_fd, text[:MAX_STDIN])
        finally:
            os.close(write_fd)
        spec = SpawnSpec(argv=self.dest.argv, env={**self.host.environ, **message.env},
                         stdin_fd=read_fd, close_stdout=True, close_stderr=True)
        try:
            code = await self.host.run_command(spec, self.cfg.timeout)
        except TimeoutError:
            raise DeliveryError(f"{self.dest}: killed after {self.cfg.timeout:g} s") from None
        except CircusError as exc:                     # SpawnError: not found, permission...
            raise DeliveryError(f"{self.dest}: {exc}") from None
        finally:
            os.close(read_fd)
        if code != 0:
            raise DeliveryError(f"{self.dest}: {describe_exit(code)}")


def _fill(fd: int, data: bytes) -> None:
    """Write ``data`` into an empty pipe without ever blocking (it fits: MAX_STDIN)."""
    flags = fcntl.fcntl(fd, fcntl.F_GETFL)
    fcntl.fcntl(fd, fcntl.F_SETFL, flags | os.O_NONBLOCK)
    view = memoryview(data)
    while view:
        try:
            view = view[os.write(fd, view):]
        except BlockingIOError:                       # a smaller pipe than usual: truncate
            return
