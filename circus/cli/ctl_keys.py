"""The CURVE key flags of the command-line tools, and ``circusctl keygen``.

circusctl, circus-top, circus-plugin and circusd-stats take the same pair of flags to talk to a
CURVE-protected circusd (see the security page of the docs)::

    --curve-key FILE     the client's own key pair (NAME.key_secret)
    --server-key FILE    the server's public key (NODE.key; a .key_secret works too)

circusctl and circus-top fall back to ``$CIRCUSCTL_CURVE_KEY`` and ``$CIRCUSCTL_SERVER_KEY``; a
flag wins over its variable. One of the two without the other is a usage error (a CURVE client
needs both, and a half-configured one would only time out); a file that is missing or malformed
is reported with its name (:class:`~circus.security.keys.KeyFileError`).

Loading is done only when a key is given: without keys, nothing of :mod:`circus.security` is
imported (circusctl's start-up stays light).
"""
from __future__ import annotations

import argparse
import os
from typing import Any, Mapping, TextIO

__all__ = ["KeyOptionError", "ENV_CURVE_KEY", "ENV_SERVER_KEY", "add_key_options",
           "client_keys", "pool_keys", "keygen"]

ENV_CURVE_KEY = "CIRCUSCTL_CURVE_KEY"
ENV_SERVER_KEY = "CIRCUSCTL_SERVER_KEY"


class KeyOptionError(Exception):
    """The key flags do not make sense together (a usage error, exit 2)."""


def add_key_options(parser: argparse.ArgumentParser, hidden: bool = False,
                    env: bool = True) -> None:
    """``--curve-key`` and ``--server-key`` (``hidden``: accepted, not shown in the help;
    ``env``: the help names the environment variables)."""
    default: Any = argparse.SUPPRESS if hidden else None
    for flag, dest, var, text in (
            ("--curve-key", "curve_key", ENV_CURVE_KEY,
             "CURVE: this client's key pair, a NAME.key_secret file"),
            ("--server-key", "server_key", ENV_SERVER_KEY,
             "CURVE: the server's public key, its .key file")):
        if hidden:
            text = argparse.SUPPRESS
        elif env:
            text += f" (default: ${var})"
        parser.add_argument(flag, dest=dest, metavar="FILE", default=default, help=text)


def client_keys(curve_key: str | None, server_key: str | None,
                environ: Mapping[str, str] | None = None, err: TextIO | None = None) -> Any:
    """The :class:`~circus.security.keys.ClientKeys` the flags name, or ``None`` without keys.

    ``environ``: where ``$CIRCUSCTL_CURVE_KEY`` / ``$CIRCUSCTL_SERVER_KEY`` are looked up for a
    flag not given (``None``: no fallback). ``err``: where a warning about a secret key file
    others can read is written. Raises :class:`KeyOptionError` or ``KeyFileError``.
    """
    if environ is not None:
        curve_key = curve_key or environ.get(ENV_CURVE_KEY) or None
        server_key = server_key or environ.get(ENV_SERVER_KEY) or None
    if not curve_key and not server_key:
        return None
    if not server_key:
        raise KeyOptionError(f"--curve-key {curve_key} needs --server-key too (the server's "
                             f"public .key file)")
    if not curve_key:
        raise KeyOptionError(f"--server-key {server_key} needs --curve-key too (this client's "
                             f".key_secret file)")
    from circus.security.keys import ClientKeys, secret_file_warning
    keys = ClientKeys.load(os.path.expanduser(curve_key), os.path.expanduser(server_key))
    warning = secret_file_warning(os.path.expanduser(curve_key))
    if warning and err is not None:
        err.write(f"warning: {warning}\n")
        err.flush()
    return keys


def pool_keys(config: Any, node: str) -> Any:
    """The ClientKeys a pool file gives for ``node`` (circusmeta's reading: the node's
    ``server_key`` and client key), or ``None`` for a node without CURVE; ValueError naming what
    is wrong."""
    from circus.config import ConfigError
    from circusmeta.pool import client_keys_for
    try:
        return client_keys_for(config, node)
    except (ConfigError, KeyError) as exc:
        raise ValueError(str(exc).strip("'\"")) from None


def keygen(name: str, directory: str | None, force: bool, out: TextIO, err: TextIO) -> int:
    """Write ``NAME.key`` and ``NAME.key_secret`` in ``directory`` (default: the current one);
    0 when written, 2 (with the reason on ``err``) when not."""
    from circus.security.keys import write_keypair

    directory = os.path.expanduser(directory) if directory else os.curdir
    try:
        public, secret = write_keypair(directory, name, force=force)
    except (FileExistsError, ValueError) as exc:
        err.write(f"circusctl keygen: {exc}\n")
        return 2
    except OSError as exc:
        err.write(f"circusctl keygen: cannot write in {directory}: {exc.strerror or exc}\n")
        return 2
    out.write(f"public key: {public}\n")
    out.write(f"secret key: {secret}\n")
    out.write(f"{os.path.basename(public)} goes into the server's curve_clients/<role>/ directory "
              f"(admin, operator or readonly); for a server key pair it is the server_key of "
              f"clients (--server-key) and {os.path.basename(secret)} is circusd's "
              f"curve_secret_key.\n")
    out.flush()
    return 0
