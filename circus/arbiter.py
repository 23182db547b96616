"""Circus 0.19's ``circus.arbiter``: ``Arbiter`` and ``ThreadedArbiter``, to run an arbiter
inside a Python program (docs/library.rst). Our own arbiter is :mod:`circus.core.arbiter`.
"""
from circus.compat.library import Arbiter, ThreadedArbiter

__all__ = ["Arbiter", "ThreadedArbiter"]
