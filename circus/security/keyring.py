"""Who may connect, and with which role: the ``curve_clients`` directory.

One subdirectory per role, each holding authorized client public keys (``NAME.key``)::

    clients/admin/alice.key
    clients/operator/deploy.key
    clients/readonly/grafana.key

A key's name is its file name without ``.key``. A key found under two roles is an error (which
one was meant cannot be guessed), as is an unreadable or malformed key file. Other files (a
``.key_secret`` dropped there by mistake is reported) and unknown subdirectories are ignored
with a warning. The node's own public key is always known, as ``circusd`` with the admin role:
the helpers circusd starts (circusd-stats, plugins) hold the node's secret key.

Whoever can add a file to ``admin/`` is an administrator of the node, so the directory is
trusted only when nobody else can: the clients directory, each role directory, each key file and
every directory above them must belong to root or circusd's user and be writable by nobody else
(a directory writable by group root, or a sticky one such as ``/tmp`` above the clients directory,
is accepted). Otherwise loading fails with the path and the reason: circusd does not start (or, on
``reloadconfig``, keeps the keys in force and logs the error).
"""
from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from typing import Mapping

from circus.protocol import Role
from circus.security.identity import ANONYMOUS, Identity
from circus.security.keys import KeyFileError, load_public

__all__ = ["Identity", "Keyring", "ROLE_DIRS", "ANONYMOUS", "SELF_NAME"]

ROLE_DIRS: Mapping[str, Role] = {"admin": Role.ADMIN, "operator": Role.OPERATOR,
                                 "readonly": Role.READONLY}
SELF_NAME = "circusd"


@dataclass(frozen=True)
class Keyring:
    directory: str
    keys: Mapping[str, Identity]          # Z85 public key -> identity
    warnings: tuple[str, ...] = ()

    def lookup(self, z85_key: str | bytes | None) -> Identity | None:
        if isinstance(z85_key, bytes):
            z85_key = z85_key.decode("ascii", "replace")
        return self.keys.get(z85_key) if z85_key else None

    def summary(self) -> str:
        counts = {name: sum(1 for i in self.keys.values() if i.role is role and i.name != SELF_NAME)
                  for name, role in ROLE_DIRS.items()}
        return ", ".join(f"{n} {name}" for name, n in counts.items())

    @classmethod
    def load(cls, directory: str, server_public: bytes | None = None) -> "Keyring":
        """Read ``directory``; raises :class:`KeyFileError` naming the file at fault."""
        if not os.path.isdir(directory):
            raise KeyFileError(f"{directory}: not a directory (curve_clients needs one "
                               f"subdirectory per role: {', '.join(ROLE_DIRS)})")
        _check_above(directory)
        _check_trusted(directory)
        keys: dict[str, Identity] = {}
        where: dict[str, str] = {}
        warnings: list[str] = []
        try:
            entries = sorted(os.listdir(directory))
        except OSError as exc:
            raise KeyFileError(f"{directory}: cannot list: {exc.strerror}") from None
        for entry in entries:
            path = os.path.join(directory, entry)
            if entry not in ROLE_DIRS:
                warnings.append(f"{path}: ignored (roles are {', '.join(ROLE_DIRS)})")
                continue
            if not os.path.isdir(path):
                warnings.append(f"{path}: ignored (not a directory)")
                continue
            role = ROLE_DIRS[entry]
            _check_trusted(path)
            for name in sorted(os.listdir(path)):
                file = os.path.join(path, name)
                if name.endswith(".key_secret"):
                    warnings.append(f"{file}: a SECRET key in the clients directory; ignored "
                                    f"(only public .key files belong here: move it away)")
                    continue
                if not name.endswith(".key") or name.startswith("."):
                    warnings.append(f"{file}: ignored (not a .key file)")
                    continue
                _check_trusted(file)
                public = load_public(file).public.decode()
                if public in keys:
                    raise KeyFileError(f"{file}: the same key is already authorized as "
                                       f"{where[public]}; a key has one role")
                keys[public] = Identity(name[:-len(".key")], role, public)
                where[public] = os.path.relpath(file, directory)
        if server_public is not None:
            own = server_public.decode()
            if own in keys:
                warnings.append(f"the node's own public key is also in {where[own]}; "
                                f"it is {SELF_NAME} (admin)")
            keys[own] = Identity(SELF_NAME, Role.ADMIN, own)
        return cls(directory, keys, tuple(warnings))


def untrusted(st: os.stat_result, *, sticky_ok: bool = False) -> str:
    """Why a clients directory, role directory or key file with status ``st`` cannot be trusted
    ("" when it can): another user's, or writable by others."""
    if st.st_uid not in (0, os.geteuid()):
        return f"belongs to uid {st.st_uid}, neither root nor circusd's user"
    if sticky_ok and stat.S_ISDIR(st.st_mode) and st.st_mode & stat.S_ISVTX:
        return ""
    if st.st_mode & 0o002:
        return f"writable by every user (mode {stat.S_IMODE(st.st_mode):o})"
    if st.st_mode & 0o020 and st.st_gid != 0:
        return f"writable by group {st.st_gid} (mode {stat.S_IMODE(st.st_mode):o})"
    return ""


def _check_trusted(path: str) -> None:
    try:
        st = os.stat(path)
    except OSError as exc:
        raise KeyFileError(f"{path}: {exc.strerror}") from None
    problem = untrusted(st)
    if problem:
        raise KeyFileError(f"{path}: {problem}: whoever can change it could authorize any key "
                           f"(chown it to root, chmod go-w)")


def _check_above(directory: str) -> None:
    """The directories above the clients directory: nobody else may swap it for another."""
    here = os.path.dirname(os.path.realpath(directory))
    while True:
        try:
            st = os.stat(here)
        except OSError as exc:
            raise KeyFileError(f"{here}: {exc.strerror}") from None
        problem = untrusted(st, sticky_ok=True)
        if problem:
            raise KeyFileError(f"{directory}: the directory {here} above it {problem}: whoever "
                               f"can change it could replace the clients directory")
        parent = os.path.dirname(here)
        if parent == here:
            return
        here = parent
