"""The ZAP handler of a CURVE server process, built on pyzmq's :mod:`zmq.auth`.

A :class:`Gate` owns one ``zmq.auth.thread.ThreadAuthenticator`` for a context: every CURVE
handshake on that context's server sockets asks it whether the client's public key is in the
current :class:`~circus.security.keyring.Keyring`. The handshake runs in the authenticator's
thread, so a flood of connection attempts never waits on (or blocks) the event loop.

Authorization happens per request, not per connection: the User-Id ZeroMQ attaches to each
message is the client's public key, looked up in the keyring of *now*. Replacing the keyring
(:meth:`Gate.replace`, on SIGHUP or reloadconfig) therefore revokes a removed key at once for
control requests, and for new connections on every socket.
"""
from __future__ import annotations

import logging
import time

import zmq
from zmq.auth.thread import ThreadAuthenticator

from circus.security.keyring import Identity, Keyring
from circus.security.keys import ZAP_DOMAIN

__all__ = ["Gate"]

log = logging.getLogger("circus")

#: a refused key is logged once per this many seconds (a client retrying must not flood the log)
REFUSAL_LOG_INTERVAL = 60.0


class _Provider:
    """The credentials callback pyzmq's authenticator calls with (domain, Z85 key)."""

    def __init__(self, gate: "Gate") -> None:
        self.gate = gate

    def callback(self, domain: str, key: bytes) -> bool:
        return self.gate.admit(key)


class Gate:
    def __init__(self, context: zmq.Context, keyring: Keyring) -> None:
        self.keyring = keyring
        self.refused = 0
        self._logged: dict[bytes, float] = {}
        self._auth = ThreadAuthenticator(context, log=logging.getLogger("circus.zap"))
        self._auth.start()
        self._auth.configure_curve_callback(ZAP_DOMAIN, credentials_provider=_Provider(self))

    def replace(self, keyring: Keyring) -> None:
        """Use ``keyring`` from now on (a reference swap: safe against the ZAP thread)."""
        self.keyring = keyring

    def admit(self, key: bytes) -> bool:
        if self.keyring.lookup(key) is not None:
            return True
        self.refused += 1
        now = time.monotonic()
        if now - self._logged.get(key, -REFUSAL_LOG_INTERVAL) >= REFUSAL_LOG_INTERVAL:
            if len(self._logged) > 1000:
                self._logged.clear()
            self._logged[key] = now
            log.warning("refused a CURVE client: key %s... is not in %s", key[:8].decode("ascii", "replace"),
                        self.keyring.directory)
        return False

    def identify(self, user_id: str | None) -> Identity | None:
        """The identity behind a message's User-Id (its client's Z85 key), ``None`` if that key
        is no longer authorized."""
        return self.keyring.lookup(user_id)

    def close(self) -> None:
        self._auth.stop()
