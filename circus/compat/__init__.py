"""Circus 0.19's Python surface, for the code written against it: hooks, stream classes, plugins
and programs that embed an arbiter.

0.19's module paths (``circus.util``, ``circus.process``, ``circus.watcher``, ``circus.arbiter``,
``circus.sockets``, ``circus.stream``, ``circus.commands``, ``circus.stats.client``,
``circus.circusd``, ``circus.pidfile``) are thin modules that re-export what is implemented here:

* :mod:`circus.compat.views` and :mod:`circus.compat.arbview` — 0.19's ``Watcher``,
  ``Process``, ``Arbiter`` and ``CircusSocket`` as hooks see them, read live from ours;
* :mod:`circus.compat.library` — ``get_arbiter`` and 0.19's ``Arbiter``, to run an arbiter
  inside a Python program, with :mod:`circus.compat.specs` (0.19's ``Watcher`` and
  ``CircusSocket`` constructors) and :mod:`circus.compat.reaping` (its own children only);
* :mod:`circus.compat.streams` — 0.19's stream classes and their call contract;
* the ``circus.util`` names that code in the wild imports, each in the module of its concept:
  :mod:`~circus.compat.values` (sizes, booleans, signals, users), :mod:`~circus.compat.endpoints`,
  :mod:`~circus.compat.logs`, :mod:`~circus.compat.futures`, :mod:`~circus.compat.dotted`
  (``resolve_name``), :mod:`~circus.compat.environment` (working directory, ``env`` strings);
* :mod:`circus.compat.removed` — names that are gone raise an ``ImportError`` saying what
  replaces them.

New code does not need any of this: see docs/library.rst.
"""
