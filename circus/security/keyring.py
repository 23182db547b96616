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
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Mapping

from circus.protocol import Role
from circus.security.keys import KeyFileError, load_public

__all__ = ["Identity", "Keyring", "ROLE_DIRS", "ANONYMOUS", "SELF_NAME"]

ROLE_DIRS: Mapping[str, Role] = {"admin": Role.ADMIN, "operator": Role.OPERATOR,
                                 "readonly": Role.READONLY}
SELF_NAME = "circusd"


@dataclass(frozen=True)
class Identity:
    name: str
    role: Role
    key: str = ""           # Z85 public key; "" without CURVE

    @property
    def role_name(self) -> str:
        return self.role.name.lower()


#: the caller when no CURVE is configured: nothing to tell callers apart, every command allowed
ANONYMOUS = Identity("anonymous", Role.ADMIN)


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
            for name in sorted(os.listdir(path)):
                file = os.path.join(path, name)
                if name.endswith(".key_secret"):
                    warnings.append(f"{file}: a SECRET key in the clients directory; ignored "
                                    f"(only public .key files belong here: move it away)")
                    continue
                if not name.endswith(".key") or name.startswith("."):
                    warnings.append(f"{file}: ignored (not a .key file)")
                    continue
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
