"""Records: classes of named fields, as ``@dataclass`` makes them, for modules on a command's
start-up path.

``@dataclass`` writes and compiles the source of six methods per class when its module is
imported (``__init__``, ``__repr__``, ``__eq__``, ``__hash__``, ``__setattr__``,
``__delattr__``): 0.4–1 ms a class with Python 3.11, which a command-line tool loading a dozen
of them pays at every run. ``@record`` compiles ``__init__`` only; the other methods are the
same for every record and live in :class:`Record`. What a record gives:

- fields from the class's annotations, in order; a class attribute is the field's default,
  ``Factory(make)`` a default made for each instance (``field(default_factory=make)``);
- construction by position or keyword, ``==`` and ``hash`` over the fields of the same class
  (``uncompared=`` leaves some out), ``repr`` (``hidden=`` leaves some out), ``vars()``;
- ``frozen=True`` (the default): a field cannot be assigned or deleted after ``__init__``
  (:class:`FrozenRecordError`); ``frozen=False``: fields are assignable and the record is not
  hashable, like a dataclass with ``eq=True``;
- :func:`replace` and :func:`fields`, as ``dataclasses.replace`` and ``dataclasses.fields``
  (field names only).

No ``__post_init__``, ``InitVar``, ``ClassVar`` or keyword-only fields: a class that needs them
stays a dataclass.
"""
from __future__ import annotations

from typing import Any, Callable, TypeVar

__all__ = ["Factory", "FrozenRecordError", "Record", "fields", "record", "replace"]

R = TypeVar("R", bound="Record")


class FrozenRecordError(AttributeError):
    """A field of a frozen record was assigned or deleted."""


class Factory:
    """The default of a field made anew for each record (a list, a dict)."""

    __slots__ = ("make",)

    def __init__(self, make: Callable[[], Any]) -> None:
        self.make = make


class Record:
    """The methods every record shares; :func:`record` fills in ``_fields`` and ``__init__``."""

    __slots__ = ()
    _fields: tuple[str, ...] = ()
    _compared: tuple[str, ...] = ()
    _shown: tuple[str, ...] = ()

    def __setattr__(self, name: str, value: Any) -> None:
        raise FrozenRecordError(f"cannot assign to field {name!r} of a {type(self).__name__}")

    def __delattr__(self, name: str) -> None:
        raise FrozenRecordError(f"cannot delete field {name!r} of a {type(self).__name__}")

    def _key(self) -> tuple[Any, ...]:
        values = self.__dict__
        return tuple([values[name] for name in self._compared])

    def __eq__(self, other: object) -> bool:
        if other.__class__ is self.__class__:
            return self._key() == other._key()   # type: ignore[attr-defined]
        return NotImplemented

    def __hash__(self) -> int:
        return hash(self._key())

    def __repr__(self) -> str:
        values = self.__dict__
        shown = ", ".join(f"{name}={values[name]!r}" for name in self._shown)
        return f"{type(self).__qualname__}({shown})"


_UNSET = object()
_SELF, _VALUES = "__record_self__", "__record_values__"   # __init__'s own names: no field's


def record(cls: type | None = None, *, frozen: bool = True, hidden: tuple[str, ...] = (),
           uncompared: tuple[str, ...] = ()) -> Any:
    """Make ``cls`` (a subclass of :class:`Record`) a record of its annotated fields."""
    def make(cls: type) -> type:
        if not issubclass(cls, Record):
            raise TypeError(f"@record: {cls.__name__} must derive from circus.records.Record")
        names = tuple(cls.__dict__.get("__annotations__", {}))
        namespace: dict[str, Any] = {"_UNSET": _UNSET}
        params, body = [], []
        for name in names:
            if name in (_SELF, _VALUES, "_UNSET") or name.startswith(("_make_", "_default_")):
                raise TypeError(f"@record: {cls.__name__}.{name}: a name records keep for "
                                f"themselves")
            default = cls.__dict__.get(name, _UNSET)
            if isinstance(default, Factory):
                namespace[f"_make_{name}"] = default.make
                params.append(f"{name}=_UNSET")
                body.append(f"    {_VALUES}[{name!r}] = "
                            f"_make_{name}() if {name} is _UNSET else {name}")
            elif default is not _UNSET:
                namespace[f"_default_{name}"] = default
                params.append(f"{name}=_default_{name}")
                body.append(f"    {_VALUES}[{name!r}] = {name}")
            elif params and "=" in params[-1]:
                raise TypeError(f"@record: {cls.__name__}.{name} has no default but follows a "
                                f"field that has one")
            else:
                params.append(name)
                body.append(f"    {_VALUES}[{name!r}] = {name}")
        source = (f"def __init__({_SELF}, {', '.join(params)}):\n"
                  f"    {_VALUES} = {_SELF}.__dict__\n" + "\n".join(body or ["    pass"]) + "\n")
        exec(source, namespace)                 # the names are the class's own annotations
        init = namespace["__init__"]
        init.__qualname__ = f"{cls.__qualname__}.__init__"
        cls.__init__ = init                     # type: ignore[misc]
        cls._fields = names                     # type: ignore[attr-defined]
        cls._compared = tuple(n for n in names if n not in uncompared)  # type: ignore[attr-defined]
        cls._shown = tuple(n for n in names if n not in hidden)         # type: ignore[attr-defined]
        if not frozen:
            cls.__setattr__ = object.__setattr__  # type: ignore[assignment]
            cls.__delattr__ = object.__delattr__  # type: ignore[assignment]
            cls.__hash__ = None                   # type: ignore[assignment]
        return cls
    return make if cls is None else make(cls)


def replace(obj: R, **changes: Any) -> R:
    """A copy of ``obj`` with ``changes`` (field name -> value), as ``dataclasses.replace``."""
    unknown = set(changes).difference(obj._fields)
    if unknown:
        raise TypeError(f"{type(obj).__name__} has no field {', '.join(sorted(unknown))}")
    values = obj.__dict__
    return type(obj)(**{name: changes[name] if name in changes else values[name]
                        for name in obj._fields})


def fields(obj: Record | type) -> tuple[str, ...]:
    """The names of a record's fields, in order."""
    return obj._fields
