"""Names of 0.19 modules that no longer exist: importing one raises an ImportError that says what
to use instead (a plain ``cannot import name`` would leave the reader guessing).

A 0.19-path module lists its removed names in a mapping and sets
``__getattr__ = removed_names(__name__, REMOVED)``. Only the listed names raise ImportError; any
other unknown name is an ordinary AttributeError (so ``hasattr`` keeps working for them).
"""
from __future__ import annotations

from typing import Any, Callable, Mapping

__all__ = ["removed_names"]


def removed_names(module: str, removed: Mapping[str, str]) -> Callable[[str], Any]:
    """A module ``__getattr__`` for ``module`` whose ``removed`` names ({name: what to use
    instead}) raise ImportError."""
    def __getattr__(name: str) -> Any:
        instead = removed.get(name)
        if instead is not None:
            raise ImportError(f"{module}.{name} is not part of this Circus (it was Circus "
                              f"0.19's): {instead}", name=module)
        raise AttributeError(f"module {module!r} has no attribute {name!r}")
    return __getattr__
