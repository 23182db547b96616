"""circusmeta's own errors and exit codes (light: the command line imports this before it
knows whether it has anything to do).

::

    ValueError
     └── UsageError        the command line (or call) is wrong: exit 2, with the message
          ├── SelectionError   --node/--tag name nothing in the pool
          └── TooManyNodes     this process may not open a connection per node (RLIMIT_NOFILE)

A node's failure is no exception: it is a result (:class:`circusmeta.fanout.NodeResult`).
"""
from __future__ import annotations

__all__ = ["UsageError", "SelectionError", "TooManyNodes", "EXIT_OK", "EXIT_UNREACHABLE",
           "EXIT_USAGE", "EXIT_REFUSED", "EXIT_PARTIAL"]

#: exit codes (DESIGN §3.9): all ok, nothing reachable, usage, every node refused, partial
EXIT_OK, EXIT_UNREACHABLE, EXIT_USAGE, EXIT_REFUSED, EXIT_PARTIAL = 0, 1, 2, 3, 4


class UsageError(ValueError):
    """The command line (or call) is wrong: exit 2, with the message."""


class SelectionError(UsageError):
    """``--node``/``--tag`` name nothing in the pool (a usage error: exit 2)."""


class TooManyNodes(UsageError):
    """This process may not open a file descriptor per node (its RLIMIT_NOFILE hard limit is
    too low for the pool): exit 2, saying so."""
