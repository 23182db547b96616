"""What a ``[notify:NAME]`` section's values mean: event names and destinations. Pure.

Destinations, checked when the configuration is loaded:

* ``smtp://HOST[:PORT]`` (port 25) or ``smtps://HOST[:PORT]`` (TLS from the first byte, port 465):
  a mail to the section's ``to`` addresses;
* ``exec:COMMAND`` -- the command (split like a shell would, never run through one) gets the
  message on its standard input;
* ``http://...`` or ``https://...`` -- a webhook: the message is POSTed as JSON.
"""
from __future__ import annotations

import shlex
from dataclasses import dataclass

__all__ = ["NOTIFY_EVENTS", "EVENT_TOPICS", "SmtpDestination", "ExecDestination",
           "WebhookDestination", "Destination", "parse_destination", "split_command"]

#: the events a notification can be about
NOTIFY_EVENTS = ("fatal", "backoff", "unhealthy", "restart")

#: the watcher event (``watcher.<name>.<event>``) each notify event comes from
EVENT_TOPICS = {"fatal": "state", "backoff": "backoff", "unhealthy": "unhealthy",
                "restart": "respawn"}


@dataclass(frozen=True)
class SmtpDestination:
    host: str
    port: int
    ssl: bool          # smtps: TLS from the start (STARTTLS is the section's `starttls`)

    def __str__(self) -> str:
        return f"{'smtps' if self.ssl else 'smtp'}://{_hostport(self.host, self.port)}"


@dataclass(frozen=True)
class ExecDestination:
    argv: tuple[str, ...]

    def __str__(self) -> str:
        return "exec:" + shlex.join(self.argv)


@dataclass(frozen=True)
class WebhookDestination:
    url: str

    def __str__(self) -> str:
        return self.url


Destination = SmtpDestination | ExecDestination | WebhookDestination


def _hostport(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def split_command(text: str) -> tuple[str, ...]:
    """A command line split as a shell would (quotes kept together), never run by one."""
    try:
        argv = tuple(shlex.split(text))
    except ValueError as exc:
        raise ValueError(f"cannot split the command {text!r}: {exc}") from None
    if not argv:
        raise ValueError("empty command")
    return argv


def parse_destination(text: str) -> Destination:
    """The destination ``text`` names; ValueError with the reason."""
    text = text.strip()
    if text.lower().startswith("exec:"):
        return ExecDestination(split_command(text[len("exec:"):]))
    from urllib.parse import urlsplit

    try:
        parts = urlsplit(text)
        port = parts.port
    except ValueError as exc:
        raise ValueError(f"bad destination {text!r}: {exc}") from None
    scheme = parts.scheme.lower()
    if scheme in ("smtp", "smtps"):
        if not parts.hostname:
            raise ValueError(f"missing host in {text!r}; expected smtp://HOST[:PORT]")
        if parts.username or parts.password:
            raise ValueError("put the SMTP login in 'username' and 'password', not in the URL")
        if parts.path not in ("", "/") or parts.query or parts.fragment:
            raise ValueError(f"unexpected path or query in {text!r}; expected smtp://HOST[:PORT]")
        default = 465 if scheme == "smtps" else 25
        return SmtpDestination(parts.hostname, port or default, scheme == "smtps")
    if scheme in ("http", "https"):
        if not parts.hostname:
            raise ValueError(f"missing host in {text!r}")
        if parts.username or parts.password:
            raise ValueError("a webhook URL cannot carry a login (user:password@)")
        return WebhookDestination(text)
    raise ValueError(f"unknown destination {text!r}; expected smtp://HOST[:PORT], "
                     "smtps://HOST[:PORT], exec:COMMAND or an http(s):// webhook URL")
