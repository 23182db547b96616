"""Circus 0.19's ``circus.process``, for hooks and tools written against it: the status
constants (``after_reap`` gets ``process_status=UNEXISTING`` for a process that exited by itself
and ``None`` for one circusd stopped) and ``Process``, the class of the objects found in a hook's
``watcher.processes`` (``pid``, ``wid``, ``started``, ``status``, ``age()``...). circusd makes
them; a 0.19 program that built a ``Process`` itself to run a command gives the command to a
watcher instead (circus.get_arbiter, or the ``add`` command).
"""
from circus.compat.removed import removed_names
from circus.compat.views import DEAD_OR_ZOMBIE, OTHER, RUNNING, UNEXISTING
from circus.compat.views import ProcessView as Process

__all__ = ["Process", "RUNNING", "DEAD_OR_ZOMBIE", "UNEXISTING", "OTHER"]

__getattr__ = removed_names(__name__, {
    "get_children": "use watcher.processes[pid].children()",
    "debuglog": "circus.util.debuglog",
})
