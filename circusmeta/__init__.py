"""circusmeta: treat a pool of circusd nodes as one (stateless).

``Pool`` is the library side (``async with Pool.from_file(path) as pool: await pool.call(...)``),
a result per node; ``circusmeta.cli`` the command line. The pool file is the only state.

The names below are loaded on first use: ``circusmeta --version`` imports none of them.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .api import AddResult, Pool, SelectionError
    from .fanout import ACTIVE, NOT_AVAILABLE, UNRESPONSIVE, NodeResult, exit_code
    from .pool import Collection, Member, NodeSpec, PoolConfig, load_pool, locate_pool, parse_pool
    from .rolling import Progress, RollingReport, Step, UnknownTarget
    from .rolling import rolling as run_rolling

#: exported name -> (module, name in it); ``circusmeta.rolling`` stays the module, its
#: function is exported as run_rolling
_EXPORTS = {
    "Pool": ("api", "Pool"), "AddResult": ("api", "AddResult"),
    "SelectionError": ("errors", "SelectionError"),
    "NodeResult": ("fanout", "NodeResult"), "exit_code": ("fanout", "exit_code"),
    "ACTIVE": ("fanout", "ACTIVE"), "UNRESPONSIVE": ("fanout", "UNRESPONSIVE"),
    "NOT_AVAILABLE": ("fanout", "NOT_AVAILABLE"),
    "PoolConfig": ("pool", "PoolConfig"), "NodeSpec": ("pool", "NodeSpec"),
    "Collection": ("pool", "Collection"), "Member": ("pool", "Member"),
    "parse_pool": ("pool", "parse_pool"), "load_pool": ("pool", "load_pool"),
    "locate_pool": ("pool", "locate_pool"),
    "run_rolling": ("rolling", "rolling"), "RollingReport": ("rolling", "RollingReport"),
    "Step": ("rolling", "Step"), "Progress": ("rolling", "Progress"),
    "UnknownTarget": ("rolling", "UnknownTarget"),
}

__all__ = list(_EXPORTS)


def __getattr__(name: str) -> Any:
    try:
        module, attr = _EXPORTS[name]
    except KeyError:
        raise AttributeError(f"module 'circusmeta' has no attribute {name!r}") from None
    from importlib import import_module
    value = getattr(import_module(f"{__name__}.{module}"), attr)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
