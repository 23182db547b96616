"""The audit trail: one record per mutating command, logged and published as ``audit.<node>``.

A record says who (key name, role, key fingerprint, peer address), what (command and its
properties, secrets redacted) and how it ended (status, error code and reason, duration)::

    {"node": "web1", "time": 1764640000.1, "caller": "alice", "role": "admin",
     "key": "rq:rM>}U?", "peer": "10.0.0.7", "on_behalf_of": null, "command": "add",
     "properties": {"name": "x", "cmd": "...", "options": {"env": {"DB_PASSWORD": "***"}}},
     "status": "ok", "code": null, "reason": null, "duration": 0.004}

A request may say which user of a front end it is made for: the ``on_behalf_of`` property
(circushttpd sends its logged-in user's name). It is taken out of the properties of every
request, and recorded (``"on_behalf_of": "bob"``, logged as ``circusd (admin) for web user
'bob'``) only when the caller holds the node's own key (``circusd``: the helpers circusd
starts, circushttpd among them), and only if it could be a web user's name
(:func:`web_user`); from any other caller it is dropped unrecorded, so a key cannot put
another name than its own in the trail.

Redaction: the value of any property, option or environment variable whose name contains
``pass``, ``secret``, ``token``, ``key``, ``credential`` or ``auth`` becomes ``"***"``, at any
depth. Read-only commands are not audited (they change nothing, and a monitoring scrape would
drown the trail); a refused command (``forbidden``) always is, whatever its role.
"""
from __future__ import annotations

import re
import time
from typing import Any, Mapping

__all__ = ["redact", "audit_record", "audit_topic", "describe", "web_user", "REDACTED",
           "ON_BEHALF_OF"]

REDACTED = "***"
_SECRET = re.compile(r"pass|secret|token|key|credential|auth", re.IGNORECASE)
#: longest string kept in a record (a 1 MiB cmd is cut, not copied into every log line)
MAX_TEXT = 1024
#: the property a trusted front end names its user in
ON_BEHALF_OF = "on_behalf_of"
_WEB_USER = re.compile(r"[A-Za-z0-9_.@-]{1,64}")      # circushttpd's user names


def web_user(value: Any) -> str | None:
    """``value`` if it could be a web user's name, else None."""
    return value if isinstance(value, str) and _WEB_USER.fullmatch(value) else None


def redact(value: Any, depth: int = 0) -> Any:
    if depth > 40:
        return REDACTED
    if isinstance(value, Mapping):
        return {k: (REDACTED if isinstance(k, str) and _SECRET.search(k) else redact(v, depth + 1))
                for k, v in value.items()}
    if isinstance(value, list):
        return [redact(v, depth + 1) for v in value]
    if isinstance(value, str) and len(value) > MAX_TEXT:
        return value[:MAX_TEXT] + f"... ({len(value)} characters)"
    return value


def audit_topic(node: str) -> str:
    return f"audit.{node}"


def audit_record(node: str, identity: Any, peer: str | None, command: str,
                 properties: Mapping[str, Any], reply: Mapping[str, Any], duration: float,
                 on_behalf_of: str | None = None) -> dict:
    ok = reply.get("status") != "error"
    return {"node": node, "time": time.time(), "caller": identity.name, "role": identity.role_name,
            "key": identity.key[:8] or None, "peer": peer, "on_behalf_of": on_behalf_of,
            "command": command,
            "properties": redact(dict(properties)), "status": "ok" if ok else "error",
            "code": None if ok else reply.get("code"), "reason": None if ok else reply.get("reason"),
            "duration": round(duration, 6)}


def describe(record: Mapping[str, Any]) -> str:
    """One log line for ``record``."""
    who = f"{record['caller']} ({record['role']})"
    if record.get("on_behalf_of"):
        who += f" for web user {record['on_behalf_of']!r}"
    if record.get("peer"):
        who += f" from {record['peer']}"
    props = ", ".join(f"{k}={v!r}" for k, v in record["properties"].items()
                      if v not in (None, False, {}, []))
    outcome = "ok" if record["status"] == "ok" else f"{record['code']}: {record['reason']}"
    return f"audit: {who}: {record['command']}({props}) -> {outcome}"
