"""Circus 0.19's ``resolve_name`` (``circus.util``): the object a dotted name designates."""
from __future__ import annotations

import importlib
from typing import Any

__all__ = ["ImportStringError", "resolve_name"]


class ImportStringError(ImportError):
    """``resolve_name`` could not import a dotted name."""

    def __init__(self, import_name: str, exception: BaseException) -> None:
        self.import_name, self.exception = import_name, exception
        super().__init__(f"cannot import {import_name!r}: {exception}")


def resolve_name(import_name: str, silent: bool = False, reload: bool = False) -> Any:
    """The object at ``pkg.mod.obj`` or ``pkg.mod:obj``; ImportStringError (or None if
    ``silent``) when it cannot be imported."""
    module_name, sep, attr = import_name.partition(":")
    try:
        if sep:
            obj: Any = importlib.import_module(module_name)
            if reload:
                obj = importlib.reload(obj)
            for part in attr.split("."):
                obj = getattr(obj, part)
            return obj
        try:
            module = importlib.import_module(import_name)
            return importlib.reload(module) if reload else module
        except ImportError:
            if "." not in import_name:
                raise
        module_name, _, attr = import_name.rpartition(".")
        module = importlib.import_module(module_name)
        if reload:
            module = importlib.reload(module)
        return getattr(module, attr)
    except (ImportError, AttributeError) as exc:
        if silent:
            return None
        raise ImportStringError(import_name, exc) from None
