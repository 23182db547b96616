"""asyncio without ``ssl`` in circusd, until something there needs TLS.

``import asyncio`` imports ``ssl``, which loads OpenSSL: about 4.5 MB of circusd's resident
memory, a seventh of it, for a daemon that speaks ZeroMQ (CURVE is libsodium's) and whose TLS
needs are an ``https://`` probe now and then. So circusd imports asyncio with ``ssl`` hidden
(:func:`import_asyncio`) when its configuration does not need TLS (:func:`config_needs_tls`):
asyncio then sets its module-level ``ssl`` to ``None`` as on a Python built without it, and
``ssl`` stays importable for everything else (``smtplib``, ``urllib``).

Before asyncio's TLS is used — the first ``https://`` probe, the first Python hook or stream
class of the user (code that may open TLS connections on circusd's loop) —, :func:`enable`
gives asyncio its ``ssl`` back: it sets what those modules would have set had ``ssl`` been
importable (``ssl`` in every ``asyncio.*`` module that holds it as ``None``, and
``sslproto.SSLAgainErrors``). A circusd started with such a configuration imports asyncio as
usual: nothing is set then.
"""
from __future__ import annotations

import sys
from typing import Any

__all__ = ["import_asyncio", "config_needs_tls", "enable"]


def import_asyncio(tls: bool) -> None:
    """Import asyncio, without ``ssl`` unless ``tls`` (nothing happens when it is imported)."""
    if tls or "asyncio" in sys.modules or "ssl" in sys.modules:
        import asyncio  # noqa: F401
        return
    sys.modules["ssl"] = None           # type: ignore[assignment]  # "import ssl" fails now
    try:
        import asyncio  # noqa: F401,F811
    finally:
        del sys.modules["ssl"]


def enable() -> Any:
    """Make asyncio's TLS usable (a no-op when it is); returns the ``ssl`` module."""
    import ssl

    for name, module in list(sys.modules.items()):
        if name.startswith("asyncio.") and module is not None and \
                "ssl" in vars(module) and vars(module)["ssl"] is None:
            module.ssl = ssl
    sslproto = sys.modules.get("asyncio.sslproto")
    if sslproto is not None and not hasattr(sslproto, "SSLAgainErrors"):
        sslproto.SSLAgainErrors = (ssl.SSLWantReadError, ssl.SSLSyscallError)
    return ssl


def config_needs_tls(config: Any) -> bool:
    """Does this configuration use TLS on circusd's loop from the start: an ``https://`` probe,
    or Python code of the user (hooks, stream classes) that might?"""
    from circus.config.schema import STREAM_CLASSES
    from circus.config.watcher import builtin_stream_name

    for watcher in config.watchers:
        for probe in (watcher.ready, watcher.health):
            if probe and "https:" in probe.lower():
                return True
        if any(not str(target).startswith("exec:") for target, _ in watcher.hooks.values()):
            return True
        for stream in (watcher.stdout_stream, watcher.stderr_stream):
            name = (stream or {}).get("class")
            if name and builtin_stream_name(name) not in STREAM_CLASSES:
                return True
    return False
