"""Circus 0.19's ``circus.circusd``, for programs that run an arbiter themselves (AiiDA's daemon
does: ``daemonize()``, then ``get_arbiter(...)``). ``main`` is circusd itself
(:mod:`circus.cli.circusd`).
"""
from __future__ import annotations

import os
import resource
import sys

from circus.cli.circusd import main

__all__ = ["main", "daemonize", "get_maxfd", "closerange"]

#: the highest fd :func:`daemonize` closes when the limit is unlimited
MAXFD = 1024

closerange = os.closerange


def get_maxfd() -> int:
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    return MAXFD if hard == resource.RLIM_INFINITY else hard


def daemonize() -> None:
    """Go to the background as 0.19 did: fork twice (the calling process exits 0 at once, the
    grandchild goes on in a new session), close every file descriptor, and point stdin, stdout
    and stderr to /dev/null. (circusd's own ``--daemon`` also waits until the arbiter is up.)"""
    if any(name.startswith("gevent") for name in sys.modules):
        raise ValueError("cannot daemonize when gevent is loaded")
    if os.fork():
        os._exit(0)
    os.setsid()
    if os.fork():
        os._exit(0)
    os.closerange(0, get_maxfd())
    fd = os.open(os.devnull, os.O_RDWR)
    if fd != 0:
        os.dup2(fd, 0)
        os.close(fd)
    os.dup2(0, 1)
    os.dup2(0, 2)
