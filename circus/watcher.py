"""Circus 0.19's ``circus.watcher``: ``Watcher(name, cmd, args=None, **options)``, a watcher for
an arbiter made in Python (``circus.arbiter.Arbiter``, ``circus.get_arbiter``). It is also what
``isinstance`` finds in a hook: hooks get a view of the same kind (see
:mod:`circus.compat.views`). Our own watcher is :mod:`circus.core.watcher`.
"""
from circus.compat.specs import Watcher
from circus.compat.views import WatcherView

__all__ = ["Watcher", "WatcherView"]
