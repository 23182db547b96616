"""Circus 0.19's ``circus.commands``, for the clients written against it (circus-web builds its
requests with ``get_commands()[name].make_message(**props)``). The commands themselves are
defined once in :mod:`circus.protocol.commands` and run by circusd; this module only describes
them the 0.19 way. ``ok`` / ``error`` build 0.19-shaped replies.
"""
from __future__ import annotations

import time
from typing import Any

from circus.compat.removed import removed_names
from circus.protocol.commands import COMMANDS

__all__ = ["get_commands", "ok", "error", "CommandInfo"]


class CommandInfo:
    """One command as 0.19's command classes showed it to clients: ``name``, ``properties``
    (the required ones), ``waiting`` and ``make_message(**props)``."""

    def __init__(self, name: str, spec: Any) -> None:
        self.name = name
        self.properties = [p.name for p in spec.props if p.required]
        self.waiting = spec.waiting
        self.__doc__ = spec.doc or spec.summary

    def make_message(self, **props: Any) -> dict[str, Any]:
        name = props.pop("command", self.name)
        return {"command": name, "properties": props or {}}

    def __repr__(self) -> str:
        return f"<command {self.name}>"


def get_commands() -> dict[str, CommandInfo]:
    """{name: command} for every command circusd knows."""
    return {name: CommandInfo(name, spec) for name, spec in COMMANDS.items()}


def ok(props: dict | None = None) -> dict[str, Any]:
    return {"status": "ok", "time": time.time(), **(props or {})}


def error(reason: str = "unknown", tb: str | None = None, errno: int = 0) -> dict[str, Any]:
    return {"status": "error", "reason": reason, "tb": tb, "time": time.time(), "errno": errno}


__getattr__ = removed_names(__name__, {
    "Command": "commands are defined in circus.protocol.commands and cannot be added from "
               "outside; use a [tool:NAME] section for an operator command",
})
