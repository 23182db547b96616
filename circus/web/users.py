"""circushttpd's users file and cookie secret: who may log in, with which role.

The users file is JSON, mode 0600, written by ``circushttpd adduser`` and ``circushttpd token``::

    {"users": {"alice": {"role": "operator",
                         "password": {"salt": HEX, "hash": HEX, "n": 16384, "r": 8, "p": 1},
                         "tokens": [{"id": "3f2a9c1b", "hash": SHA256-HEX, "created": EPOCH}]}}}

Passwords are hashed with ``hashlib.scrypt`` and a random salt per user; API tokens are random
(32 bytes) and only their SHA-256 is stored, so the file gives away neither. The server re-reads
the file when it changes on disk: a user added, removed, demoted or given a new password takes
effect at the next request (a new password ends the user's sessions: see :meth:`User.stamp`).

The cookie secret (``circushttpd.secret``) is generated on first start, 0600, never shipped.
"""
from __future__ import annotations

import hashlib
import hmac
import json
import os
import re
import secrets
import time
from dataclasses import dataclass, field
from typing import Any

from circus.protocol import Role

__all__ = ["User", "Users", "UsersError", "ROLES", "role_of", "hash_password", "load_secret",
           "NAME_RULE"]

ROLES = {"readonly": Role.READONLY, "operator": Role.OPERATOR, "admin": Role.ADMIN}
_NAME = re.compile(r"[A-Za-z0-9_.@-]{1,64}")
NAME_RULE = "1 to 64 letters, digits, '.', '_', '@' or '-'"
#: scrypt cost: 16 MiB of memory and some tens of milliseconds per login
SCRYPT = {"n": 2 ** 14, "r": 8, "p": 1}
MIN_PASSWORD = 8
MAX_PASSWORD = 1024


class UsersError(ValueError):
    """The users file, a user name, a role or a password is not usable; the message says why."""


def role_of(name: str) -> Role:
    try:
        return ROLES[name.lower()]
    except (KeyError, AttributeError):
        raise UsersError(f"unknown role {name!r} (one of {', '.join(ROLES)})") from None


def hash_password(password: str, salt: bytes | None = None, **cost: int) -> dict[str, Any]:
    if not MIN_PASSWORD <= len(password) <= MAX_PASSWORD:
        raise UsersError(f"a password has {MIN_PASSWORD} to {MAX_PASSWORD} characters")
    params = {**SCRYPT, **cost}
    salt = salt or secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, n=params["n"], r=params["r"],
                            p=params["p"], maxmem=128 * params["r"] * params["n"] * 2, dklen=32)
    return {"salt": salt.hex(), "hash": digest.hex(), **params}


def _token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass(frozen=True)
class User:
    name: str
    role: Role
    password: dict[str, Any]
    tokens: tuple[dict[str, Any], ...] = ()

    @property
    def role_name(self) -> str:
        return self.role.name.lower()

    @property
    def stamp(self) -> str:
        """Changes with the password: a session cookie carries it, so a new password (or a
        user removed and added again) ends the sessions opened before."""
        return hashlib.sha256(str(self.password.get("hash", "")).encode()).hexdigest()[:16]

    def check_password(self, password: str) -> bool:
        try:
            salt = bytes.fromhex(self.password["salt"])
            cost = {k: int(self.password[k]) for k in ("n", "r", "p")}
            if not MIN_PASSWORD <= len(password) <= MAX_PASSWORD:
                return False
            given = hash_password(password, salt, **cost)["hash"]
        except (KeyError, ValueError, TypeError):
            return False
        return hmac.compare_digest(given, str(self.password.get("hash", "")))

    def to_json(self) -> dict[str, Any]:
        return {"role": self.role_name, "password": self.password, "tokens": list(self.tokens)}


@dataclass
class Users:
    """The users file, re-read when it changed (``refresh``)."""

    path: str
    users: dict[str, User] = field(default_factory=dict)
    _mtime: float | None = None
    _tokens: dict[str, str] = field(default_factory=dict)     # sha256 -> user name

    @classmethod
    def load(cls, path: str, *, missing_ok: bool = False) -> "Users":
        users = cls(path)
        if missing_ok and not os.path.exists(path):
            return users
        users._read()
        return users

    def _read(self) -> None:
        try:
            stat = os.stat(self.path)
            with open(self.path, encoding="utf-8") as fh:
                data = json.load(fh)
        except FileNotFoundError:
            raise UsersError(f"{self.path}: no users file (create one with: circushttpd adduser "
                             f"NAME --role admin --users {self.path})") from None
        except OSError as exc:
            raise UsersError(f"{self.path}: cannot read the users file: "
                             f"{exc.strerror or exc}") from None
        except ValueError as exc:
            raise UsersError(f"{self.path}: not a users file (invalid JSON: {exc})") from None
        if not isinstance(data, dict) or not isinstance(data.get("users"), dict):
            raise UsersError(f"{self.path}: not a users file (expected {{\"users\": {{...}}}})")
        users: dict[str, User] = {}
        for name, entry in data["users"].items():
            if not isinstance(entry, dict) or not isinstance(entry.get("password"), dict):
                raise UsersError(f"{self.path}: user {name!r} has no password entry")
            try:
                role = role_of(entry.get("role", ""))
            except UsersError as exc:
                raise UsersError(f"{self.path}: user {name!r}: {exc}") from None
            tokens = tuple(t for t in entry.get("tokens", ()) if isinstance(t, dict))
            users[name] = User(name, role, entry["password"], tokens)
        self.users = users
        self._tokens = {t["hash"]: u.name for u in users.values() for t in u.tokens
                        if isinstance(t.get("hash"), str)}
        self._mtime = stat.st_mtime_ns

    def refresh(self) -> str | None:
        """Re-read the file if it changed. A file that became unreadable or invalid lets
        nobody in until it is fixed; the reason is returned (once per change) for the log."""
        try:
            mtime = os.stat(self.path).st_mtime_ns
        except OSError as exc:
            was = self._mtime
            self.users, self._tokens, self._mtime = {}, {}, None
            return None if was is None else \
                f"{self.path}: cannot read the users file: {exc.strerror or exc}"
        if mtime == self._mtime:
            return None
        try:
            self._read()
        except UsersError as exc:
            self.users, self._tokens, self._mtime = {}, {}, mtime
            return str(exc)
        return None

    def get(self, name: str) -> User | None:
        return self.users.get(name)

    def authenticate(self, name: str, password: str) -> User | None:
        user = self.users.get(name)
        if user is None:
            # the same work for an unknown name, so timing does not tell which names exist
            hash_password("x" * MIN_PASSWORD)
            return None
        return user if user.check_password(password) else None

    def by_token(self, token: str) -> User | None:
        name = self._tokens.get(_token_hash(token))
        return self.users.get(name) if name else None

    # -- changing (the CLI) ------------------------------------------------------------------------

    def add(self, name: str, role: str, password: str) -> User:
        if not _NAME.fullmatch(name):
            raise UsersError(f"invalid user name {name!r}: {NAME_RULE}")
        old = self.users.get(name)
        user = User(name, role_of(role), hash_password(password), old.tokens if old else ())
        self.users[name] = user
        self.save()
        return user

    def new_token(self, name: str) -> str:
        user = self.users.get(name)
        if user is None:
            raise UsersError(f"no user {name!r} in {self.path} (users: "
                             f"{', '.join(sorted(self.users)) or 'none'})")
        token = secrets.token_urlsafe(32)
        entry = {"id": secrets.token_hex(4), "hash": _token_hash(token), "created": time.time()}
        self.users[name] = User(user.name, user.role, user.password, (*user.tokens, entry))
        self.save()
        return token

    def save(self) -> None:
        data = {"users": {n: u.to_json() for n, u in sorted(self.users.items())}}
        _write_private(self.path, json.dumps(data, indent=2) + "\n")
        self._read()


def _write_private(path: str, text: str) -> None:
    """Write ``text`` to ``path`` with mode 0600, atomically (a reader never sees half)."""
    directory = os.path.dirname(os.path.abspath(path))
    tmp = os.path.join(directory, f".{os.path.basename(path)}.{secrets.token_hex(4)}")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        os.replace(tmp, path)
    except OSError as exc:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise UsersError(f"{path}: cannot write: {exc.strerror or exc}") from None


def load_secret(path: str) -> bytes:
    """The cookie secret in ``path``, generated (0600) the first time."""
    try:
        with open(path, encoding="ascii") as fh:
            secret = fh.read().strip()
    except FileNotFoundError:
        secret = secrets.token_hex(32)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:                 # another circushttpd just made it
            return load_secret(path)
        except OSError as exc:
            raise UsersError(f"{path}: cannot create the cookie secret: "
                             f"{exc.strerror or exc}") from None
        with os.fdopen(fd, "w", encoding="ascii") as fh:
            fh.write(secret + "\n")
        return secret.encode()
    except (OSError, UnicodeDecodeError) as exc:
        raise UsersError(f"{path}: cannot read the cookie secret: "
                         f"{getattr(exc, 'strerror', None) or exc}") from None
    if len(secret) < 32:
        raise UsersError(f"{path}: the cookie secret is too short ({len(secret)} characters, "
                         "at least 32); delete the file to have a new one generated")
    if os.stat(path).st_mode & 0o077:
        raise UsersError(f"{path}: the cookie secret is readable by others; chmod 600 it")
    return secret.encode()
