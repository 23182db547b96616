"""Which endpoints are reachable from other machines, and the rule about them.

Pure: decides from the endpoint strings alone, never resolving a name. An endpoint is *local*
when it is ``ipc://``, ``inproc://``, or ``tcp://`` on a loopback address (``127.0.0.0/8``,
``::1``) or ``localhost``; anything else — ``*``, ``0.0.0.0``, a routable address, an interface
name, a host name — is treated as reachable from the network.

The rule: a reachable endpoint needs CURVE, unless the configuration says ``insecure = true``.
"""
from __future__ import annotations

from typing import Iterable

__all__ = ["is_local", "exposed", "refusal", "INSECURE_WARNING"]

INSECURE_WARNING = ("insecure = true: %s reachable from the network WITHOUT authentication or "
                    "encryption; anyone who reaches it can run any command as this user")


def _tcp_host(endpoint: str) -> str | None:
    if not endpoint.startswith("tcp://"):
        return None
    rest = endpoint[len("tcp://"):]
    if ";" in rest:                   # tcp://source;dest: the destination is what is bound
        rest = rest.split(";", 1)[1]
    if rest.startswith("["):
        return rest[1:rest.find("]")] if "]" in rest else rest[1:]
    return rest.rsplit(":", 1)[0]


def is_local(endpoint: str) -> bool:
    if endpoint.startswith(("ipc://", "inproc://")):
        return True
    host = _tcp_host(endpoint)
    if host is None:
        return False
    if host.lower() in ("localhost", "lo", "127.0.0.1", "::1"):
        return True
    import ipaddress           # any other address (the common ones above need no parsing)

    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def exposed(endpoints: Iterable[tuple[str, str | None]]) -> list[tuple[str, str]]:
    """``(key, endpoint)`` pairs that are reachable from the network (unset ones skipped)."""
    return [(key, ep) for key, ep in endpoints if ep and not is_local(ep)]


def refusal(endpoint: str, secure_keys: str = "curve_secret_key and curve_clients") -> str:
    return (f"{endpoint} is reachable from other machines and has no CURVE authentication: "
            f"set {secure_keys} (make keys with 'circusctl keygen NAME'; see the security page of "
            f"the docs), bind to 127.0.0.1 or an ipc:// path, or set insecure = true to accept "
            f"that anyone who reaches it can run any command")
