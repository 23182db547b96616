"""Circus configuration: Circus 0.19 INI files, loaded unchanged, checked strictly.

The schema (`schema.py`) is the only place where option names, types, defaults and docs live.
`diff` computes what a reload has to do (`ReloadPlan`).
Everything here is pure except `load_config`, which reads the file, its includes and its
``loggerconfig`` file, and imports the dotted paths it names in a child process (`resolve`).
What Circus 0.19 accepted silently is an error unless ``strict=False`` (errors.py).
"""

from .diff import ReloadPlan, Step, changed_fields, diff
from .errors import ConfigError, ConfigIssue
from .loader import load_config, parse_config_text
from .options import watcher_from_options
from .schema import (
    CircusOptions,
    Config,
    NotifyConfig,
    PluginConfig,
    SocketConfig,
    ToolConfig,
    WatcherConfig,
    option_reference,
)
from .substitute import substitute_spawn
from .summary import summarize

__all__ = [
    "CircusOptions",
    "Config",
    "ConfigError",
    "ConfigIssue",
    "NotifyConfig",
    "PluginConfig",
    "ReloadPlan",
    "SocketConfig",
    "Step",
    "ToolConfig",
    "WatcherConfig",
    "changed_fields",
    "diff",
    "load_config",
    "option_reference",
    "parse_config_text",
    "substitute_spawn",
    "summarize",
    "watcher_from_options",
]
