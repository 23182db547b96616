"""The security headers of every response circushttpd sends: pages, redirects, errors, the API,
``/metrics``, ``/static/`` and the WebSocket handshake.

The pages load one stylesheet and one script from ``/static/`` and nothing else: no inline
script, no inline style, no ``eval``, no other site. The Content-Security-Policy says exactly
that, so an injected ``<script>`` or ``style=""`` would not run even if escaping ever failed;
the page's script talks back only to this site (``fetch`` and the WebSocket: ``connect-src
'self'`` covers ``ws:``/``wss:`` to the same host). No page may be framed (``frame-ancestors
'none'`` and ``X-Frame-Options: DENY``, for browsers without CSP 2), responses are never
sniffed into another type, and the address of a page (node and watcher names) is sent as a
referrer only to this site.
"""
from __future__ import annotations

from typing import Mapping

import tornado.web

__all__ = ["SECURITY_HEADERS", "CSP", "SecurityHeaders", "StaticFiles"]

CSP = "; ".join([
    "default-src 'none'",
    "script-src 'self'",
    "style-src 'self'",
    "img-src 'self'",
    "connect-src 'self'",
    "form-action 'self'",
    "frame-ancestors 'none'",
    "base-uri 'none'",
])

SECURITY_HEADERS: Mapping[str, str] = {
    "Content-Security-Policy": CSP,
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cross-Origin-Opener-Policy": "same-origin",
}


class SecurityHeaders:
    """For tornado handlers (before ``RequestHandler`` in the bases): the headers are set
    again whenever tornado clears the response (an error page included)."""

    def set_default_headers(self) -> None:
        super().set_default_headers()                         # type: ignore[misc]
        for name, value in SECURITY_HEADERS.items():
            self.set_header(name, value)                      # type: ignore[attr-defined]


class StaticFiles(SecurityHeaders, tornado.web.StaticFileHandler):
    """``/static/``: the stylesheet and the script, with the same headers."""
