"""Logged-out sessions, remembered across restarts in a file beside the cookie secret.

``/logout`` revokes the session's id; a copy of the cookie is refused from then on, also after
circushttpd restarts. A session is valid :data:`~circus.web.auth.SESSION_HOURS` at most (the
cookie's signature says when it was made), so an id is kept only until its session would have
expired anyway. The file (``SECRET.revoked``, next to the cookie secret) is JSON::

    {"not_before": 1764640000.5, "revoked": {"5f2c...": 1764683200, ...}}

written 0600, atomically (a new file renamed over it, flushed to disk), read without following
a symbolic link, and trusted only when nobody else could have written it
(:mod:`circus.web.files`). At most :data:`MAX_REVOKED` ids are kept: one more logout within a
session's lifetime ends *every* session instead (``not_before``: sessions made before it are
refused), which never lets a revoked session back in. A file that is missing is an empty list;
one that cannot be read, is not trusted, or is not such a document also ends every session
(logged): circushttpd cannot tell which sessions were revoked, so it keeps none.
"""
from __future__ import annotations

import asyncio
import json
import logging
import re
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable

from .files import FileProblem, read_trusted, write_private

__all__ = ["Revocations", "MAX_REVOKED", "revocations_path"]

log = logging.getLogger("circus.web")

MAX_REVOKED = 10_000
MAX_FILE = 2 * 1024 * 1024
SLACK = 60.0                    # seconds between a session's "t" and its cookie's signature
_SID = re.compile(r"[0-9a-f]{8,64}")


def revocations_path(secret_path: str) -> str:
    return secret_path + ".revoked"


class Revocations:
    def __init__(self, path: str | None, max_age: float, limit: int = MAX_REVOKED,
                 clock: Callable[[], float] = time.time) -> None:
        self.path, self.max_age, self.limit, self.clock = path, max_age, limit, clock
        self.not_before = 0.0
        self._revoked: dict[str, float] = {}          # session id -> when it expires anyway
        self._writer = ThreadPoolExecutor(1, thread_name_prefix="circushttpd-revoked") \
            if path else None

    def __len__(self) -> int:
        return len(self._revoked)

    # -- reading -----------------------------------------------------------------------------------

    def load(self) -> None:
        """Read the file (at start). Anything doubtful ends every session (logged)."""
        if self.path is None:
            return
        try:
            raw, _ = read_trusted(self.path, MAX_FILE, follow=False)
            data = json.loads(raw)
            not_before, revoked = _parse(data)
        except FileNotFoundError:
            return
        except (FileProblem, ValueError, RecursionError) as exc:
            self._end_all(f"logout revocations not read ({exc})")
            self._save_now()
            return
        now = self.clock()
        self.not_before = not_before
        self._revoked = {sid: until for sid, until in revoked.items() if until > now}

    def revoked(self, session_id: str, issued: Any) -> bool:
        if session_id in self._revoked:
            return True
        return not isinstance(issued, (int, float)) or isinstance(issued, bool) \
            or issued < self.not_before

    # -- revoking ----------------------------------------------------------------------------------

    async def revoke(self, session_id: str, issued: Any) -> None:
        """Refuse this session from now on (at once, in memory), and wait until the file says
        so too (written in a thread: the loop is not held up by the disk)."""
        now = self.clock()
        for sid in [s for s, until in self._revoked.items() if until <= now]:
            del self._revoked[sid]
        # kept as long as the cookie's signature (made with "t") can be valid
        start = issued if isinstance(issued, (int, float)) and not isinstance(issued, bool) \
            else now
        if len(self._revoked) >= self.limit:
            self._end_all(f"more than {self.limit} logouts within {self.max_age / 3600:g} "
                          "hours: the list of logged-out sessions is full")
        self._revoked[session_id] = start + self.max_age + SLACK
        if self._writer is None:
            return
        snapshot = self._document()
        try:
            await asyncio.get_running_loop().run_in_executor(self._writer, self._write, snapshot)
        except FileProblem as exc:
            log.error("logout not saved (%s): after a restart that session would be "
                      "accepted again until it expires", exc)

    def _end_all(self, why: str) -> None:
        self.not_before = self.clock()
        self._revoked.clear()
        log.error("%s: every session is ended (everybody logs in again)", why)

    def _document(self) -> bytes:
        return json.dumps({"not_before": self.not_before, "revoked": self._revoked},
                          separators=(",", ":")).encode()

    def _write(self, data: bytes) -> None:
        assert self.path is not None
        write_private(self.path, data, sync=True)

    def _save_now(self) -> None:
        try:
            self._write(self._document())
        except FileProblem as exc:
            log.error("logout revocations not written: %s", exc)

    def close(self) -> None:
        if self._writer is not None:
            self._writer.shutdown(wait=True)


def _parse(data: Any) -> tuple[float, dict[str, float]]:
    if not isinstance(data, dict) or not isinstance(data.get("revoked"), dict):
        raise ValueError('not a revocations file (expected {"not_before": N, "revoked": {...}})')
    not_before = data.get("not_before", 0)
    if isinstance(not_before, bool) or not isinstance(not_before, (int, float)):
        raise ValueError("not_before is not a number of seconds")
    revoked = data["revoked"]
    if len(revoked) > MAX_REVOKED:
        raise ValueError(f"more than {MAX_REVOKED} entries")
    out: dict[str, float] = {}
    for sid, until in revoked.items():
        if not _SID.fullmatch(sid) or isinstance(until, bool) or \
                not isinstance(until, (int, float)):
            raise ValueError(f"a bad entry {sid[:70]!r}")
        out[sid] = float(until)
    return float(not_before), out
