"""Circus configuration: Circus 0.19 INI files, loaded unchanged, checked strictly.

The schema (`schema.py`) is the only place where option names, types, defaults and docs live.
`diff` computes what a reload has to do (`ReloadPlan`).
Everything here is pure except `load_config`, which reads the file, its includes and its
``loggerconfig`` file, and imports the dotted paths it names in a child process (`resolve`).
What Circus 0.19 accepted silently is an error unless ``strict=False`` (errors.py).
"""

import sys
import types
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .diff import ReloadPlan, Step, changed_fields, diff
    from .errors import ConfigError, ConfigIssue
    from .loader import load_config, parse_config_text
    from .options import watcher_from_options
    from .schema import (CircusOptions, Config, NotifyConfig, PluginConfig, SocketConfig,
                         ToolConfig, WatcherConfig, option_reference)
    from .substitute import substitute_spawn
    from .summary import summarize

#: exported name -> its module: loaded on first use, so that a tool needing one submodule
#: (``circus.config.errors``, ``circus.config.ini``) does not import the schema and the diff
_EXPORTS = {
    "ReloadPlan": "diff", "Step": "diff", "changed_fields": "diff", "diff": "diff",
    "ConfigError": "errors", "ConfigIssue": "errors",
    "load_config": "loader", "parse_config_text": "loader",
    "watcher_from_options": "options",
    "CircusOptions": "schema", "Config": "schema", "NotifyConfig": "schema",
    "PluginConfig": "schema", "SocketConfig": "schema", "ToolConfig": "schema",
    "WatcherConfig": "schema", "option_reference": "schema",
    "substitute_spawn": "substitute", "summarize": "summary",
}


class _Package(types.ModuleType):
    def __setattr__(self, name: str, value: Any) -> None:
        # importing the submodule ``circus.config.diff`` binds it on the package: the
        # package's ``diff`` stays the function, as when this file imported it eagerly
        if name == "diff" and isinstance(value, types.ModuleType) and hasattr(value, "diff"):
            value = value.diff
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'circus.config' has no attribute {name!r}")
    from importlib import import_module
    value = getattr(import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


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
