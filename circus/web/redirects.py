"""Where a redirect may go: a path of this site, nothing a browser could read as another host.

The login page's ``next`` comes from the address bar, so from anyone who sends a link. Browsers
do not read a ``Location`` the way a strict parser does: the WHATWG URL parser drops tabs and
newlines anywhere, strips leading control characters and spaces, and takes ``\\`` for ``/``, so
``/\\t/evil.example`` and ``/\\\\evil.example`` are the protocol-relative ``//evil.example``.
:func:`safe_target` therefore refuses rather than cleans: only printable ASCII without spaces
and backslashes, one leading ``/`` and no empty, ``.`` or ``..`` segment, in the path as sent
and once and twice percent-decoded (a path still encoded after that is refused too); then it
rebuilds the target from its path and query (no fragment). Anything doubtful is ``/``.
"""
from __future__ import annotations

from urllib.parse import unquote, urlsplit

__all__ = ["safe_target", "MAX_TARGET"]

MAX_TARGET = 2048


def _bad_text(text: str) -> bool:
    """Anything but printable ASCII, or a backslash."""
    return any(not 0x21 <= ord(ch) <= 0x7e or ch == "\\" for ch in text)


def _bad_decoded(text: str) -> bool:
    """A control character (C0, DEL, C1) or a backslash in a percent-decoded path."""
    return any(ord(ch) < 0x20 or 0x7f <= ord(ch) <= 0x9f or ch == "\\" for ch in text)


def _bad_segments(path: str) -> bool:
    if not path.startswith("/"):
        return True
    segments = path[1:].split("/")
    if segments[-1] == "":                  # one trailing slash is a path like any other
        segments.pop()
    return any(s in ("", ".", "..") for s in segments)


def safe_target(target: object, default: str = "/") -> str:
    """``target`` if it is surely a path of this site (rebuilt from its path and query),
    else ``default``."""
    if not isinstance(target, str) or not target or len(target) > MAX_TARGET:
        return default
    if _bad_text(target) or not target.startswith("/") or target.startswith("//"):
        return default
    try:
        parts = urlsplit(target)
    except ValueError:
        return default
    if parts.scheme or parts.netloc or _bad_segments(parts.path):
        return default
    path = parts.path
    for _ in range(2):                      # decoded once, then twice
        if "%" not in path:
            break
        try:
            path = unquote(path, errors="strict")
        except UnicodeDecodeError:
            return default
        if _bad_decoded(path) or _bad_segments(path):
            return default
    else:
        if "%" in path and unquote(path) != path:
            return default                  # encoded three times over: doubtful
    return parts.path + (f"?{parts.query}" if parts.query else "")
