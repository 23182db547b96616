"""The CURVE key files a pool file names, read and checked (the rules: :mod:`circusmeta.pool`'s
docstring and the security page of the docs).

Each file is read once per pool; each bad (section, key) is one ``file:line: [section] key:
reason`` issue, all of them in one ConfigError.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable

from circus.config.errors import Issues

if TYPE_CHECKING:
    from .pool import PoolConfig

__all__ = ["client_keys_for", "node_keys", "proxy_client_keys", "proxy_server_keys",
           "key_warnings", "check_key_files"]


class _KeyLoader:
    """Loads each key file once, reports each bad (section, key) once."""

    def __init__(self, config: PoolConfig, issues: Issues) -> None:
        self.config, self.issues = config, issues
        self._cache: dict[tuple[str, bool], Any] = {}
        self._reported: set[tuple[str, str]] = set()

    def _load(self, section: str, key: str, path: str, secret: bool) -> Any:
        from circus.security.keys import KeyFileError, load_keypair, load_public
        if (path, secret) not in self._cache:
            try:
                self._cache[(path, secret)] = (load_keypair if secret else load_public)(path)
            except KeyFileError as exc:
                self._cache[(path, secret)] = exc
        found = self._cache[(path, secret)]
        if not isinstance(found, Exception):
            return found
        if (section, key) not in self._reported:
            self._reported.add((section, key))
            where = self.config.origin(section, key)
            self.issues.add(where.file, where.line, where.section, key, str(found))
        return None

    def pair(self, section: str, key: str, path: str) -> Any:
        return self._load(section, key, path, True)

    def public(self, section: str, key: str, path: str) -> Any:
        return self._load(section, key, path, False)

    def client_keys(self, node: str) -> Any:
        spec = self.config.nodes[node]
        if not spec.server_key:
            return None
        from circus.security.keys import ClientKeys      # CURVE's modules only when used
        section = f"node:{node}"
        if spec.client_key:
            own = self.pair(section, "client_key", spec.client_key)
        elif self.config.meta.client_key:
            own = self.pair("meta", "client_key", self.config.meta.client_key)
        else:
            where = self.config.origin(section, "server_key")
            self.issues.add(where.file, where.line, where.section, "server_key",
                            "needs a client key too: set [meta] client_key")
            own = None
        server = self.public(section, "server_key", spec.server_key)
        if own is None or server is None:
            return None
        return ClientKeys(own.public, own.secret, server.public)


def _loaded(config: PoolConfig, work: Callable[["_KeyLoader"], Any]) -> Any:
    issues = Issues()
    result = work(_KeyLoader(config, issues))
    issues.raise_if_any([config.file])
    return result


def client_keys_for(config: PoolConfig, node_name: str) -> Any:
    """The :class:`~circus.security.keys.ClientKeys` to reach ``node_name`` with, or ``None``
    for a node without ``server_key`` (reached without CURVE). Raises ConfigError naming the
    file, section and key of a key file that is missing or malformed, KeyError for a node that
    is not in the pool."""
    if node_name not in config.nodes:
        raise KeyError(f"no node {node_name!r} in {config.file}")
    return _loaded(config, lambda loader: loader.client_keys(node_name))


def node_keys(config: PoolConfig) -> dict[str, Any]:
    """Every node's ClientKeys (or None), all problems in one ConfigError."""
    return _loaded(config, lambda loader: {n: loader.client_keys(n) for n in config.nodes})


def proxy_client_keys(config: PoolConfig) -> Any:
    """The ClientKeys a subscriber of ``circusmeta proxy`` uses (``[meta] client_key`` and
    ``proxy_key``, else the public half of ``proxy_secret_key``), or None without them."""
    from circus.security.keys import ClientKeys
    meta = config.meta
    server_file, server_key = (meta.proxy_key, "proxy_key") if meta.proxy_key else \
        (meta.proxy_secret_key, "proxy_secret_key")
    if not (server_file and meta.client_key):
        return None

    def work(loader: _KeyLoader) -> Any:
        own = loader.pair("meta", "client_key", meta.client_key)
        server = loader.public("meta", server_key, server_file)
        return ClientKeys(own.public, own.secret, server.public) if own and server else None
    return _loaded(config, work)


def proxy_server_keys(config: PoolConfig) -> tuple[Any, Any] | None:
    """(the proxy's KeyPair, its Keyring) from ``[meta] proxy_secret_key`` and
    ``proxy_clients``, or None when the pool file does not make the proxy a CURVE server."""
    meta = config.meta
    if not (meta.proxy_secret_key and meta.proxy_clients):
        return None
    from circus.security.keyring import Keyring
    from circus.security.keys import KeyFileError

    def work(loader: _KeyLoader) -> Any:
        pair = loader.pair("meta", "proxy_secret_key", meta.proxy_secret_key)
        try:
            keyring = Keyring.load(meta.proxy_clients, pair.public if pair else None)
        except (KeyFileError, OSError) as exc:
            where = config.origin("meta", "proxy_clients")
            loader.issues.add(where.file, where.line, where.section, "proxy_clients", str(exc))
            return None
        return (pair, keyring) if pair else None
    return _loaded(config, work)


def key_warnings(config: PoolConfig) -> list[str]:
    """A warning for each client secret key file that others than its owner can read."""
    paths = [config.meta.client_key] + [n.client_key for n in config.nodes.values()]
    paths = [p for p in dict.fromkeys(paths) if p]
    if not paths:
        return []
    from circus.security.keys import secret_file_warning
    found = (secret_file_warning(p) for p in paths)
    return [w for w in found if w]


def check_key_files(config: "PoolConfig") -> None:
    """Every node's client keys and ``proxy_key`` readable and keys: ConfigError otherwise."""
    issues = Issues()
    loader = _KeyLoader(config, issues)
    for name in config.nodes:
        loader.client_keys(name)
    if config.meta.proxy_key:
        loader.public("meta", "proxy_key", config.meta.proxy_key)
    issues.raise_if_any([config.file])
