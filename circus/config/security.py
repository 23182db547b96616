"""The ``[circus]`` security options, checked when the configuration loads.

So that ``circusd --check-config``, the start and ``reloadconfig`` all refuse the same things,
with file, section and key: a CURVE secret key file that is missing or malformed, a clients
directory that cannot be read, one of the two without the other, and a ``tcp://`` endpoint
reachable from other machines without CURVE (unless ``insecure = true``). Relative key paths
are made relative to the file that sets them.
"""
from __future__ import annotations

import os
from typing import Any, Callable

from circus.security.exposure import exposed, refusal

__all__ = ["resolve_paths", "check_security"]

Report = Callable[[Any, "str | None", str], None]
CURVE_KEYS = ("curve_secret_key", "curve_clients")


def resolve_paths(values: dict[str, Any], where_of: Callable[[str], Any]) -> None:
    for key in CURVE_KEYS:
        path = values.get(key)
        where = where_of(key)
        if path and not os.path.isabs(path) and where is not None and getattr(where, "file", None):
            values[key] = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(where.file)),
                                                        os.path.expanduser(path)))
        elif path:
            values[key] = os.path.expanduser(path)


def check_security(values: dict[str, Any], defaults: Any, where_of: Callable[[str], Any],
                   report: Report) -> None:
    secret, clients = values.get("curve_secret_key"), values.get("curve_clients")
    if bool(secret) != bool(clients):
        missing = "curve_clients" if secret else "curve_secret_key"
        given = "curve_secret_key" if secret else "curve_clients"
        report(where_of(given), given, f"needs {missing} too (CURVE needs the node's secret key "
               f"and the directory of authorized client keys)")
    elif secret and clients:
        from circus.security.keyring import Keyring
        from circus.security.keys import KeyFileError, load_keypair
        try:
            pair = load_keypair(secret)
        except KeyFileError as exc:
            report(where_of("curve_secret_key"), "curve_secret_key", str(exc))
            pair = None
        try:
            Keyring.load(clients, pair.public if pair else None)
        except (KeyFileError, OSError) as exc:
            report(where_of("curve_clients"), "curve_clients", str(exc))
        return
    if values.get("insecure"):
        return
    endpoints = [(key, values.get(key, getattr(defaults, key)))
                 for key in ("endpoint", "pubsub_endpoint", "stats_endpoint")]
    for key, endpoint in exposed(endpoints):
        report(where_of(key), key, refusal(endpoint))
