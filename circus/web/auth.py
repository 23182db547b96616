"""Who is asking: the session cookie (pages, the page's script, the WebSocket) or an API token.

The session is a signed cookie (tornado's ``set_signed_cookie`` with the generated secret),
``HttpOnly``, ``SameSite=Strict``, ``Secure`` when circushttpd serves HTTPS (or is told it is
behind one), valid :data:`SESSION_HOURS`. It names the user and carries the user's password
stamp and a random session id: the user's current entry in the users file is looked up at each
request (a role change applies at once; a removed user or a new password ends the session), and
``/logout`` revokes the session id. An ``Authorization: Bearer TOKEN`` header authenticates the
API and /metrics; it needs no ``_xsrf`` (a browser never sends it by itself).
"""
from __future__ import annotations

import json
import logging
import secrets
import time
from collections import deque
from typing import Any

from .users import User

__all__ = ["AuthMixin", "Throttle", "SESSION_COOKIE", "SESSION_HOURS"]

log = logging.getLogger("circus.web")

SESSION_COOKIE = "circushttpd_session"
SESSION_HOURS = 12


class Throttle:
    """Failed logins per user name: after ``limit`` failures within ``window`` seconds, that
    name cannot log in until the oldest failure is ``window`` old (scrypt already makes each
    guess cost tens of milliseconds)."""

    def __init__(self, limit: int = 10, window: float = 300.0) -> None:
        self.limit, self.window = limit, window
        self._failures: dict[str, deque[float]] = {}

    def _recent(self, name: str, now: float) -> deque[float]:
        failures = self._failures.get(name, deque())
        while failures and now - failures[0] > self.window:
            failures.popleft()
        return failures

    def blocked(self, name: str, now: float) -> bool:
        return len(self._recent(name, now)) >= self.limit

    def failed(self, name: str, now: float) -> None:
        if len(self._failures) > 10_000:          # bounded, whatever names are tried
            self._failures.clear()
        failures = self._recent(name, now)
        failures.append(now)
        self._failures[name] = failures

    def succeeded(self, name: str) -> None:
        self._failures.pop(name, None)


class AuthMixin:
    """For tornado handlers: ``current_user`` from the session (and, with ``allow_token``,
    from a Bearer token); ``_xsrf`` checked on every POST of a session."""

    allow_token = False
    _token_user: bool = False

    @property
    def web(self) -> Any:
        return self.settings["circushttpd"]            # type: ignore[attr-defined]

    def bearer(self) -> str | None:
        header = self.request.headers.get("Authorization", "")  # type: ignore[attr-defined]
        scheme, _, token = header.partition(" ")
        return token.strip() if scheme.lower() == "bearer" and token.strip() else None

    def get_current_user(self) -> User | None:
        web = self.web
        web.refresh_users()
        if self.allow_token:
            token = self.bearer()
            if token is not None:
                user = web.users.by_token(token)
                self._token_user = user is not None
                return user
        raw = self.get_signed_cookie(SESSION_COOKIE,  # type: ignore[attr-defined]
                                     max_age_days=SESSION_HOURS / 24)
        if raw is None:
            return None
        try:
            session = json.loads(raw)
            name, stamp, sid = session["u"], session["s"], session["i"]
        except (ValueError, KeyError, TypeError):
            return None
        if web.revoked(sid):
            return None
        user = web.users.get(name)
        if user is None or user.stamp != stamp:
            return None
        return user

    def check_xsrf_cookie(self) -> None:
        # an anonymous POST is answered by the login redirect or 401 (not 403), a token
        # request needs no _xsrf; a session's POST needs it
        if self.current_user is None or self._token_user:  # type: ignore[attr-defined]
            return
        super().check_xsrf_cookie()                         # type: ignore[misc]

    def start_session(self, user: User) -> None:
        value = json.dumps({"u": user.name, "s": user.stamp, "i": secrets.token_hex(12),
                            "t": int(time.time())})
        self.set_signed_cookie(SESSION_COOKIE, value, expires_days=None,  # type: ignore
                               **self.web.cookie_flags)

    def end_session(self) -> None:
        raw = self.get_signed_cookie(SESSION_COOKIE,  # type: ignore[attr-defined]
                                     max_age_days=SESSION_HOURS / 24)
        if raw is not None:
            try:
                self.web.revoke(json.loads(raw)["i"])
            except (ValueError, KeyError, TypeError):
                pass
        self.clear_cookie(SESSION_COOKIE, **self.web.clear_flags)  # type: ignore[attr-defined]
