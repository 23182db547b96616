"""The JSON view of a watcher's configuration: what ``options`` and ``get`` return, and what
``set`` merges its changes into before re-validating the whole watcher with the schema."""
from __future__ import annotations

from dataclasses import fields
from typing import Any

from .schema import WatcherConfig

__all__ = ["watcher_options"]


def watcher_options(cfg: WatcherConfig) -> dict[str, Any]:
    """Every option of ``cfg`` with JSON types, keyed as in the INI file (plus ``rlimits``/``hooks``
    objects); ``watcher_from_options`` accepts this dict back unchanged."""
    out: dict[str, Any] = {}
    for f in fields(cfg):
        kind = f.metadata.get("kind")
        value = getattr(cfg, f.name)
        if kind == "name":
            continue
        if kind == "plain":
            view = f.metadata["conv"].view
            if view is not None:
                out[f.name] = view(value)
            else:
                out[f.name] = list(value) if isinstance(value, tuple) else value
        elif kind == "env":
            out["env"] = dict(value)
        elif kind == "rlimits":
            out["rlimits"] = dict(value)
        elif kind == "hooks":
            out["hooks"] = {name: [dotted, ignore] for name, (dotted, ignore) in value.items()}
        elif kind == "stream":
            out[f.name] = dict(value) if value else None
        elif kind == "options":
            out.update(value)
    return out
