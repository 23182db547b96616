"""circusd's own helper processes as watchers: ``circusd-stats`` and one per ``[plugin:NAME]``.

As in Circus 0.19 they are ordinary watchers (listed by ``list`` and ``status``, respawned with
backoff, stopped by ``quit``; plugin names lower-cased, as a reload matches them), so a reload that changes ``[circus]`` or a plugin section restarts
exactly the helper it concerns. Their commands run the current interpreter on our own modules, with
the arbiter's environment and ``sys.path`` (``copy_env``, ``copy_path``).

Pure: the interpreter's path is a parameter.
"""
from __future__ import annotations

import shlex
from typing import Iterable

from .schema import CircusOptions, PluginConfig, WatcherConfig

__all__ = ["STATS_WATCHER", "PLUGIN_PREFIX", "PLUGIN_CIRCUS_KEYS", "helper_watchers", "stats_wanted", "plugin_config_arg",
           "is_helper"]

STATS_WATCHER = "circusd-stats"
PLUGIN_PREFIX = "plugin:"

#: the [circus] options a plugin's command line carries (a change restarts the plugins)
PLUGIN_CIRCUS_KEYS = ("endpoint", "pubsub_endpoint", "check_delay", "loglevel", "debug")

#: seconds a helper gets to stop before SIGKILL: they hold no work a client waits for
HELPER_GRACE = 5.0


def stats_wanted(circus: CircusOptions) -> bool:
    """Is circusd-stats needed: asked for, or the Prometheus exporter (which runs inside it)?"""
    return circus.statsd or circus.prometheus_endpoint is not None


def is_helper(name: str) -> bool:
    lowered = name.lower()
    return lowered == STATS_WATCHER or lowered.startswith(PLUGIN_PREFIX)


def _log_level(circus: CircusOptions) -> str:
    return "debug" if circus.debug else circus.loglevel


def _helper(name: str, argv: list[str], priority: int, policy: str = "always") -> WatcherConfig:
    return WatcherConfig(name=name, cmd=shlex.join(argv), copy_env=True, copy_path=True,
                         singleton=True, priority=priority, graceful_timeout=HELPER_GRACE,
                         restart_policy=policy)


def plugin_config_arg(plugin: PluginConfig) -> str:
    """0.19's ``--config`` form: ``key:value`` pairs joined by ``:::``, the name first."""
    items = [("name", plugin.name.lower()), *sorted(plugin.options.items())]
    return ":::".join(f"{key}:{value}" for key, value in items)


def stats_argv(circus: CircusOptions, python: str) -> list[str]:
    argv = [python, "-m", "circus.cli.stats", "--endpoint", circus.endpoint,
            "--pubsub", circus.pubsub_endpoint, "--statspoint", circus.stats_endpoint,
            "--interval", repr(circus.stats_interval), "--log-level", _log_level(circus)]
    if circus.legacy_stats_topics:
        argv.append("--legacy-topics")
    if circus.prometheus_endpoint is not None:
        argv += ["--prometheus", circus.prometheus_endpoint]
    return argv


def plugin_argv(circus: CircusOptions, plugin: PluginConfig, python: str) -> list[str]:
    return [python, "-m", "circus.cli.plugin", "--endpoint", circus.endpoint,
            "--pubsub", circus.pubsub_endpoint, "--check-delay", repr(circus.check_delay),
            "--config", plugin_config_arg(plugin), "--log-level", _log_level(circus), plugin.use]


def helper_watchers(circus: CircusOptions, plugins: Iterable[PluginConfig],
                    python: str) -> list[WatcherConfig]:
    """The helper watchers this configuration asks for (circusd-stats first, then plugins)."""
    out = []
    if stats_wanted(circus):
        out.append(_helper(STATS_WATCHER, stats_argv(circus, python), priority=0))
    for plugin in plugins:
        # a plugin that exits 0 is done (``active = false``...): it is not started again
        out.append(_helper(PLUGIN_PREFIX + plugin.name.lower(), plugin_argv(circus, plugin, python),
                           priority=plugin.priority, policy="on-failure"))
    return out
