"""Who is asking: the session cookie (pages, the page's script, the WebSocket) or an API token.

The session is a signed cookie (tornado's ``set_signed_cookie`` with the generated secret),
``HttpOnly``, ``SameSite=Strict``, ``Secure`` when circushttpd serves HTTPS (or is told it is
behind one), valid :data:`SESSION_HOURS`. It names the user and carries the user's password
stamp and a random session id: the user's current entry in the users file is looked up at each
request (a role change applies at once; a removed user or a new password ends the session), and
``/logout`` revokes the session id (:mod:`.revocations`: also after a restart). An
``Authorization: Bearer TOKEN`` header authenticates the API and /metrics; it needs no
``_xsrf`` (a browser never sends it by itself).

Every handler also sends the security headers (:mod:`.headers`), and counts a login against
the client's address (:meth:`AuthMixin.client_address`, :mod:`.throttle`).
"""
from __future__ import annotations

import ipaddress
import json
import logging
import secrets
import time
from typing import Any

from .headers import SecurityHeaders
from .throttle import client_address
from .users import User

__all__ = ["AuthMixin", "SESSION_COOKIE", "SESSION_HOURS"]

log = logging.getLogger("circus.web")

SESSION_COOKIE = "circushttpd_session"
SESSION_HOURS = 12


class AuthMixin(SecurityHeaders):
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
        if not isinstance(sid, str) or web.revocations.revoked(sid, session.get("t")):
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
                            "t": round(time.time(), 3)})
        self.set_signed_cookie(SESSION_COOKIE, value, expires_days=None,  # type: ignore
                               **self.web.cookie_flags)

    async def end_session(self) -> None:
        """Revoke the session (saved before this returns) and clear its cookie."""
        raw = self.get_signed_cookie(SESSION_COOKIE,  # type: ignore[attr-defined]
                                     max_age_days=SESSION_HOURS / 24)
        session: Any = None
        if raw is not None:
            try:
                session = json.loads(raw)
            except ValueError:
                session = None
        if isinstance(session, dict) and isinstance(session.get("i"), str):
            await self.web.revocations.revoke(session["i"], session.get("t"))
        self.clear_cookie(SESSION_COOKIE, **self.web.clear_flags)  # type: ignore[attr-defined]

    def client_address(self) -> str:
        """The client's address: the socket's peer, or what a trusted proxy says it is."""
        request = self.request                                   # type: ignore[attr-defined]
        peer = request.remote_ip or ""
        try:
            peer = str(ipaddress.ip_address(peer))
        except ValueError:
            pass
        return client_address(peer, request.headers.get_list("X-Forwarded-For"),
                              self.web.trusted_proxies)
