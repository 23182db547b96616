"""CURVE key files: pyzmq's certificate format (``NAME.key`` public, ``NAME.key_secret`` both).

Loading checks what a bad file would otherwise turn into a silent handshake failure: the file
exists, holds a 40-character Z85 key (32 bytes), and a secret file's public key is the one its
secret key implies. Errors are :class:`KeyFileError`, naming the file and what is wrong with it.

``write_keypair`` creates both files under umask 077 (the secret is never readable by others,
not even for an instant), then opens the public one to everybody.
"""
from __future__ import annotations

import os
import stat
from dataclasses import dataclass

import zmq
from zmq.utils import z85

from circus.errors import CircusError

__all__ = ["KeyFileError", "KeyPair", "ClientKeys", "load_keypair", "load_public", "write_keypair",
           "secret_file_warning", "configure_server", "configure_client", "ZAP_DOMAIN"]

#: the ZAP domain of every circus server socket
ZAP_DOMAIN = "circus"


class KeyFileError(CircusError):
    """A key file that cannot be used; the message names the file."""


@dataclass(frozen=True)
class KeyPair:
    public: bytes              # Z85, 40 bytes
    secret: bytes | None       # Z85, 40 bytes; None for a public key file
    path: str


@dataclass(frozen=True)
class ClientKeys:
    """What a client needs to talk to a CURVE server: its own pair and the server's public key."""

    public: bytes
    secret: bytes
    server: bytes

    @classmethod
    def load(cls, client_secret_file: str, server_key_file: str) -> "ClientKeys":
        own = load_keypair(client_secret_file)
        server = load_public(server_key_file)
        assert own.secret is not None
        return cls(own.public, own.secret, server.public)

    def apply(self, sock: zmq.Socket) -> None:
        configure_client(sock, self)


def _read(path: str) -> tuple[bytes | None, bytes | None]:
    public = secret = None
    try:
        with open(path, "rb") as f:
            data = f.read(64 * 1024)
    except FileNotFoundError:
        raise KeyFileError(f"{path}: no such key file") from None
    except IsADirectoryError:
        raise KeyFileError(f"{path}: is a directory, not a key file") from None
    except OSError as exc:
        raise KeyFileError(f"{path}: cannot read: {exc.strerror}") from None
    for raw in data.splitlines():
        line = raw.strip()
        if line.startswith(b"public-key"):
            public = line.split(b"=", 1)[-1].strip(b" \t'\"")
        elif line.startswith(b"secret-key"):
            secret = line.split(b"=", 1)[-1].strip(b" \t'\"")
    return public, secret


def _check(path: str, what: str, key: bytes | None) -> bytes:
    if key is None:
        raise KeyFileError(f"{path}: no {what} in this file (expected pyzmq's certificate format, "
                           f"as written by 'circusctl keygen')")
    try:
        if len(key) != 40 or len(z85.decode(key)) != 32:
            raise ValueError
    except (ValueError, KeyError, TypeError):
        raise KeyFileError(f"{path}: the {what} is not a 40-character Z85 CURVE key") from None
    return key


def load_public(path: str) -> KeyPair:
    """The public key of a ``.key`` file (a ``.key_secret`` file works too)."""
    public, _ = _read(path)
    return KeyPair(_check(path, "public-key", public), None, path)


def load_keypair(path: str) -> KeyPair:
    """Both keys of a ``.key_secret`` file."""
    public, secret = _read(path)
    if secret is None and public is not None:
        raise KeyFileError(f"{path}: holds only a public key; give the .key_secret file")
    secret = _check(path, "secret-key", secret)
    public = _check(path, "public-key", public)
    if zmq.curve_public(secret) != public:
        raise KeyFileError(f"{path}: its public key does not belong to its secret key")
    return KeyPair(public, secret, path)


def secret_file_warning(path: str) -> str | None:
    """A warning if a secret key file is readable or writable by others than its owner."""
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return None
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        return (f"{path}: secret key file has mode {stat.S_IMODE(mode):04o}; "
                f"others can read it (chmod 600 {path})")
    return None


def write_keypair(directory: str, name: str, *, force: bool = False) -> tuple[str, str]:
    """Write ``NAME.key`` (0644) and ``NAME.key_secret`` (0600) in ``directory``; returns both
    paths. Existing files are kept (``FileExistsError``) unless ``force``."""
    if not name or "/" in name or name.startswith(".") or any(ord(ch) < 32 for ch in name):
        raise ValueError(f"invalid key name {name!r}: no '/', no leading '.', no control characters")
    os.makedirs(directory, mode=0o700, exist_ok=True)
    public_path = os.path.join(directory, f"{name}.key")
    secret_path = os.path.join(directory, f"{name}.key_secret")
    if not force:
        for path in (public_path, secret_path):
            if os.path.lexists(path):
                raise FileExistsError(f"{path} exists (use --force to replace it)")
    public, secret = zmq.curve_keypair()
    _write(secret_path, _certificate(name, public, secret), 0o600)
    _write(public_path, _certificate(name, public, None), 0o644)
    return public_path, secret_path


def _certificate(name: str, public: bytes, secret: bytes | None) -> str:
    kind = "secret" if secret else "public"
    lines = [f"#   CURVE {kind} key '{name}', written by circusctl keygen", "", "metadata",
             f"    name = {name}", "curve", f'    public-key = "{public.decode()}"']
    if secret:
        lines.append(f'    secret-key = "{secret.decode()}"')
    return "\n".join(lines) + "\n"


def _write(path: str, text: str, mode: int) -> None:
    tmp = f"{path}.tmp{os.getpid()}"
    old = os.umask(0o077)
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    finally:
        os.umask(old)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
            os.fchmod(f.fileno(), mode)     # this file, not whatever the name is by now
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def configure_server(sock: zmq.Socket, keys: KeyPair) -> None:
    """Make ``sock`` a CURVE server (before bind); ZAP decides who may connect."""
    sock.zap_domain = ZAP_DOMAIN.encode()
    sock.curve_secretkey = keys.secret
    sock.curve_publickey = keys.public
    sock.curve_server = True


def configure_client(sock: zmq.Socket, keys: ClientKeys) -> None:
    """Make ``sock`` a CURVE client of the server whose public key is ``keys.server``."""
    sock.curve_secretkey = keys.secret
    sock.curve_publickey = keys.public
    sock.curve_serverkey = keys.server
