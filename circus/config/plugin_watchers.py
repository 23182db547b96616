"""``[plugin:NAME]`` sections as watchers ``plugin:NAME``, and their command lines.

As in Circus 0.19 a plugin is a process of its own, supervised like any watcher (names are
lower-cased, as a reload matches them). Its command line carries some ``[circus]`` options
(:data:`PLUGIN_CIRCUS_KEYS`): a change of one of them restarts the plugins on reload. Under
CURVE it carries the node's secret key file (see :mod:`.stats_watcher`). A plugin
that exits 0 (``active = false``) is done: its restart policy is ``on-failure``.

Pure: the interpreter's path is a parameter.
"""
from __future__ import annotations

import shlex

from .schema import CircusOptions, PluginConfig, WatcherConfig
from .stats_watcher import HELPER_GRACE, helper_key_args

__all__ = ["PLUGIN_PREFIX", "PLUGIN_CIRCUS_KEYS", "is_plugin_watcher", "plugin_config_arg",
           "plugin_argv", "plugin_watcher"]

PLUGIN_PREFIX = "plugin:"

#: the [circus] options a plugin's command line carries (a change restarts the plugins)
PLUGIN_CIRCUS_KEYS = ("endpoint", "pubsub_endpoint", "check_delay", "loglevel", "debug",
                      "curve_secret_key")


def is_plugin_watcher(name: str) -> bool:
    return name.lower().startswith(PLUGIN_PREFIX)


def plugin_config_arg(plugin: PluginConfig) -> str:
    """0.19's ``--config`` form: ``key:value`` pairs joined by ``:::``, the name first."""
    items = [("name", plugin.name.lower()), *sorted(plugin.options.items())]
    return ":::".join(f"{key}:{value}" for key, value in items)


def plugin_argv(circus: CircusOptions, plugin: PluginConfig, python: str) -> list[str]:
    return [python, "-m", "circus.cli.plugin", "--endpoint", circus.endpoint,
            "--pubsub", circus.pubsub_endpoint, "--check-delay", repr(circus.check_delay),
            "--config", plugin_config_arg(plugin), "--log-level", circus.helper_log_level,
            *helper_key_args(circus), plugin.use]


def plugin_watcher(circus: CircusOptions, plugin: PluginConfig, python: str) -> WatcherConfig:
    return WatcherConfig(name=PLUGIN_PREFIX + plugin.name.lower(),
                         cmd=shlex.join(plugin_argv(circus, plugin, python)),
                         copy_env=True, copy_path=True, singleton=True,
                         priority=plugin.priority, graceful_timeout=HELPER_GRACE,
                         restart_policy="on-failure")
