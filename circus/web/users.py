"""circushttpd's users file and cookie secret: who may log in, with which role.

The users file is JSON, mode 0600, written by ``circushttpd adduser`` and ``circushttpd token``::

    {"users": {"alice": {"role": "operator",
                         "password": {"salt": HEX, "hash": HEX, "n": 16384, "r": 8, "p": 1},
                         "tokens": [{"id": "3f2a9c1b", "hash": SHA256-HEX, "created": EPOCH}]}}}

Passwords are hashed with ``hashlib.scrypt`` and a random salt per user; API tokens are random
(32 bytes) and only their SHA-256 is stored, so the file gives away neither. The server re-reads
the file when it changes on disk: a user added, removed, demoted or given a new password takes
effect at the next request (a new password ends the user's sessions: see :meth:`User.stamp`).

A password check always costs one scrypt, whatever the name and the password (an unknown
name, a password of the wrong length and a broken entry are checked against a dummy of the
same cost), so its time does not tell which names exist. The cost stored with each password
is bounded (:func:`cost_problem`); a file that names a larger one cannot make circushttpd
spend more than :data:`MAX_SCRYPT_MEMORY` and 64 times the default work per check.

The file is trusted only when nobody but circushttpd's user (or root) could have written it
(:mod:`circus.web.files`): a users file owned by another user, or writable by group or others,
lets nobody in and says why; so is one larger than :data:`MAX_FILE`.

The cookie secret (``circushttpd.secret``) is generated on first start, 0600, never shipped;
one readable by others, or not trusted as above, is refused.
"""
from __future__ import annotations

import hashlib
import hmac
import json
import os
import re
import secrets
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from circus.protocol import Role

from .files import FileProblem, read_trusted, write_private

__all__ = ["User", "Users", "UsersError", "ROLES", "role_of", "hash_password", "load_secret",
           "NAME_RULE", "valid_name", "cost_problem", "SCRYPT", "MAX_FILE"]

ROLES = {"readonly": Role.READONLY, "operator": Role.OPERATOR, "admin": Role.ADMIN}
_NAME = re.compile(r"[A-Za-z0-9_.@-]{1,64}")
NAME_RULE = "1 to 64 letters, digits, '.', '_', '@' or '-'"
#: scrypt cost: 16 MiB of memory and some tens of milliseconds per login
SCRYPT = {"n": 2 ** 14, "r": 8, "p": 1}
MIN_PASSWORD = 8
MAX_PASSWORD = 1024
#: the most a stored cost may ask for: memory per check, and work (n * r * p) per check
MAX_SCRYPT_MEMORY = 64 * 1024 * 1024
MAX_SCRYPT_WORK = 64 * SCRYPT["n"] * SCRYPT["r"] * SCRYPT["p"]
#: the largest users file read
MAX_FILE = 4 * 1024 * 1024
MAX_SECRET_FILE = 4096


class UsersError(ValueError):
    """The users file, a user name, a role or a password is not usable; the message says why."""


def role_of(name: str) -> Role:
    try:
        return ROLES[name.lower()]
    except (KeyError, AttributeError):
        raise UsersError(f"unknown role {name!r} (one of {', '.join(ROLES)})") from None


def valid_name(name: object) -> bool:
    """Whether ``name`` could be a user's (:data:`NAME_RULE`)."""
    return isinstance(name, str) and _NAME.fullmatch(name) is not None


def cost_problem(cost: dict[str, Any]) -> str | None:
    """Why a stored scrypt cost ``{"n", "r", "p"}`` is not used (None: it is fine)."""
    try:
        n, r, p = (cost[k] for k in ("n", "r", "p"))
    except (KeyError, TypeError):
        return "no n, r and p"
    if not all(isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in (n, r, p)):
        return "n, r and p must be positive integers"
    if n < 2 or n & (n - 1):
        return f"n must be a power of two, got {n}"
    if 128 * r * n > MAX_SCRYPT_MEMORY:
        return f"n * r needs more than {MAX_SCRYPT_MEMORY // 2 ** 20} MiB"
    if n * r * p > MAX_SCRYPT_WORK:
        return f"n * r * p is above {MAX_SCRYPT_WORK} (64 times the default)"
    return None


def _scrypt(password: str, salt: bytes, cost: dict[str, int]) -> str:
    return hashlib.scrypt(password.encode(), salt=salt, n=cost["n"], r=cost["r"], p=cost["p"],
                          maxmem=128 * cost["r"] * cost["n"] * 2 + 1024 * 1024,
                          dklen=32).hex()


def hash_password(password: str, salt: bytes | None = None, **cost: int) -> dict[str, Any]:
    if not MIN_PASSWORD <= len(password) <= MAX_PASSWORD:
        raise UsersError(f"a password has {MIN_PASSWORD} to {MAX_PASSWORD} characters")
    params = {**SCRYPT, **cost}
    problem = cost_problem(params)
    if problem:
        raise UsersError(f"scrypt cost: {problem}")
    salt = salt or secrets.token_bytes(16)
    return {"salt": salt.hex(), "hash": _scrypt(password, salt, params), **params}


_DUMMY_SALT = secrets.token_bytes(16)


def dummy_check(cost: dict[str, int]) -> bool:
    """The work of a password check, for nothing (an unknown name, a password of the wrong
    length): always False."""
    _scrypt("x" * MIN_PASSWORD, _DUMMY_SALT, cost)
    return False


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

    def check_password(self, password: str, dummy: dict[str, int] | None = None) -> bool:
        """One scrypt in every case: a password of the wrong length, or an entry whose salt
        or cost cannot be used, is checked against a dummy of the user's cost if it is
        usable, else ``dummy`` (the file's usual cost), and refused."""
        cost = {k: self.password.get(k) for k in ("n", "r", "p")}
        usable = cost_problem(cost) is None
        try:
            salt = bytes.fromhex(str(self.password["salt"]))
            stored = str(self.password["hash"])
        except (KeyError, ValueError):
            salt, stored = b"", ""
        if not usable or len(salt) < 8 or not stored or \
                not isinstance(password, str) or \
                not MIN_PASSWORD <= len(password) <= MAX_PASSWORD:
            return dummy_check(cost if usable else (dummy or SCRYPT))
        return hmac.compare_digest(_scrypt(password, salt, cost), stored)

    def to_json(self) -> dict[str, Any]:
        return {"role": self.role_name, "password": self.password, "tokens": list(self.tokens)}


@dataclass
class Users:
    """The users file, re-read when it changed (``refresh``)."""

    path: str
    users: dict[str, User] = field(default_factory=dict)
    _mtime: tuple[int, ...] | None = None        # what the file looked like when read
    _tokens: dict[str, str] = field(default_factory=dict)     # sha256 -> user name
    #: the cost of an unknown name's dummy check: the one most users of the file have
    dummy_cost: dict[str, int] = field(default_factory=lambda: dict(SCRYPT))
    #: why the file is not used (None: it is, or there is none)
    problem: str | None = None

    @classmethod
    def load(cls, path: str, *, missing_ok: bool = False) -> "Users":
        users = cls(path)
        if missing_ok and not os.path.exists(path):
            return users
        users._read()
        return users

    def _read(self) -> None:
        try:
            raw, stat = read_trusted(self.path, MAX_FILE)
            data = json.loads(raw.decode("utf-8"))
        except FileNotFoundError:
            raise UsersError(f"{self.path}: no users file (create one with: circushttpd adduser "
                             f"NAME --role admin --users {self.path})") from None
        except FileProblem as exc:
            raise UsersError(f"the users file {exc}") from None
        except (ValueError, RecursionError) as exc:
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
        costs = Counter(tuple(u.password.get(k) for k in ("n", "r", "p")) for u in users.values()
                        if cost_problem(u.password) is None)
        self.dummy_cost = dict(zip(("n", "r", "p"), costs.most_common(1)[0][0])) if costs \
            else dict(SCRYPT)
        self.users, self.problem = users, None
        self._tokens = {t["hash"]: u.name for u in users.values() for t in u.tokens
                        if isinstance(t.get("hash"), str)}
        self._mtime = _signature(stat)

    def refresh(self) -> str | None:
        """Re-read the file if it changed. A file that became unreadable or invalid lets
        nobody in until it is fixed; the reason is returned (once per change) for the log."""
        try:
            mtime = _signature(os.stat(self.path))
        except OSError as exc:
            was = self._mtime
            self.users, self._tokens, self._mtime = {}, {}, None
            self.problem = None if isinstance(exc, FileNotFoundError) else \
                f"{self.path}: cannot read the users file: {exc.strerror or exc}"
            return None if was is None else \
                f"{self.path}: cannot read the users file: {exc.strerror or exc}"
        if mtime == self._mtime:
            return None
        try:
            self._read()
        except UsersError as exc:
            self.users, self._tokens, self._mtime = {}, {}, mtime
            self.problem = str(exc)
            return str(exc)
        return None

    def get(self, name: str) -> User | None:
        return self.users.get(name)

    def authenticate(self, name: str, password: str) -> User | None:
        """The user if ``password`` is theirs. Always one scrypt of the file's usual cost (a
        dummy for an unknown name), so timing does not tell which names exist. Blocking:
        circushttpd runs it in its hashing threads (:mod:`circus.web.hashing`)."""
        dummy = self.dummy_cost
        user = self.users.get(name)
        if user is None:
            dummy_check(dummy)
            return None
        return user if user.check_password(password, dummy) else None

    def by_token(self, token: str) -> User | None:
        name = self._tokens.get(_token_hash(token))
        return self.users.get(name) if name else None

    # -- changing (the CLI) ------------------------------------------------------------------------

    def add(self, name: str, role: str, password: str, **cost: int) -> User:
        """Add or update ``name``; ``cost``: scrypt's ``n``, ``r``, ``p`` if not the default."""
        if not _NAME.fullmatch(name):
            raise UsersError(f"invalid user name {name!r}: {NAME_RULE}")
        old = self.users.get(name)
        user = User(name, role_of(role), hash_password(password, **cost),
                    old.tokens if old else ())
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
        try:
            write_private(self.path, (json.dumps(data, indent=2) + "\n").encode())
        except FileProblem as exc:
            raise UsersError(str(exc)) from None
        self._read()


def _signature(st: os.stat_result) -> tuple[int, ...]:
    """Changes when the file is rewritten, replaced, or its mode or owner change."""
    return (st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


def load_secret(path: str) -> bytes:
    """The cookie secret in ``path``, generated (0600) the first time; refused when others
    could read it or could have written it."""
    try:
        raw, st = read_trusted(path, MAX_SECRET_FILE)
        secret = raw.decode("ascii").strip()
    except FileNotFoundError:
        secret = secrets.token_hex(32)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        except FileExistsError:                 # another circushttpd just made it
            return load_secret(path)
        except OSError as exc:
            raise UsersError(f"{path}: cannot create the cookie secret: "
                             f"{exc.strerror or exc}") from None
        with os.fdopen(fd, "w", encoding="ascii") as fh:
            fh.write(secret + "\n")
        return secret.encode()
    except FileProblem as exc:
        raise UsersError(f"the cookie secret {exc}") from None
    except UnicodeDecodeError:
        raise UsersError(f"{path}: the cookie secret is not text; delete the file to have a "
                         "new one generated") from None
    if len(secret) < 32:
        raise UsersError(f"{path}: the cookie secret is too short ({len(secret)} characters, "
                         "at least 32); delete the file to have a new one generated")
    if st.st_mode & 0o077:
        raise UsersError(f"{path}: the cookie secret is readable by others; chmod 600 it")
    return secret.encode()
