"""What a client call can fail with, as opposed to an error *reply* (which is a normal reply).

::

    CircusError
     └── CallError            no usable reply: timeout, unreachable endpoint, garbage on the wire
          ├── CallTimeout     nothing came back before the deadline
          ├── Unreachable     no connection could be made, or its handshake failed (said at
          │                   once by a client created with ``diagnose=True``)
          └── TunnelError     the ssh tunnel could not be set up (missing pexpect/paramiko...)

An error reply from circusd (``{"status": "error", ...}``) is returned to the caller, never
raised: it is an answer, and circusctl turns it into exit code 3.
"""
from __future__ import annotations

from circus.errors import CircusError

__all__ = ["CallError", "CallTimeout", "Unreachable", "TunnelError"]


class CallError(CircusError):
    """A call got no usable reply."""


class CallTimeout(CallError):
    """No reply came back before the deadline (circusd unreachable, or too slow)."""


class Unreachable(CallError):
    """No connection to the endpoint: nobody listens there (a missing socket file, a refused
    connection), or the handshake failed (CURVE keys). The message says which."""


class TunnelError(CallError):
    """An ssh tunnel to the endpoint could not be opened."""
