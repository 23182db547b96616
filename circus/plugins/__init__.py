"""Plugins: processes that follow circusd's events and act on them through its control socket.

``CircusPlugin`` keeps Circus 0.19's contract (constructor, ``handle_recv``/``handle_init``/
``handle_stop``, ``call``/``cast``/``split_data``/``load_message``, ``start``/``stop``); the
built-ins live at 0.19's module paths: ``circus.plugins.statsd``, ``.resource_watcher``,
``.watchdog``, ``.command_reloader``, ``.flapping``, ``.http_observer``, ``.redis_observer``.
See docs/plugins.rst.
"""
from __future__ import annotations

from circus.plugins.base import DEFAULT_TIMEOUT, CircusPlugin, Periodic
from circus.plugins.options import PluginConfigError, PluginError

__all__ = ["CircusPlugin", "Periodic", "PluginError", "PluginConfigError", "DEFAULT_TIMEOUT"]
