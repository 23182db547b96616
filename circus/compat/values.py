"""Circus 0.19's value conversions (``circus.util``): sizes, booleans, text and bytes, signals,
users and groups, read and written as 0.19 did, for the plugins and hooks that call them."""
from __future__ import annotations

import signal
from typing import Any

__all__ = ["human2bytes", "bytes2human", "to_bool", "to_str", "to_bytes", "to_signum", "to_uid",
           "to_gid"]

_UNITS = ("K", "M", "G", "T", "P", "E", "Z", "Y")


def bytes2human(n: int) -> str:
    """``10000`` -> ``'9.77K'`` (powers of 1024, two decimals; below 1024: the number)."""
    if not isinstance(n, int):
        raise TypeError(n)
    for power, unit in reversed(list(enumerate(_UNITS, 1))):
        if n >= 1 << (10 * power):
            return f"{n / (1 << (10 * power)):.2f}{unit}"
    return f"{n}B"


#: the unit spellings 0.19 read: each tuple is bytes, then powers of 1024
_UNIT_SETS = (("B", *_UNITS), ("Bi", "Ki", "Mi", "Gi", "Ti", "Pi", "Ei", "Zi", "Yi"),
              ("byte", "kilo", "mega", "giga", "tera", "peta", "exa", "zetta", "iotta"),
              ("byte", "kibi", "mebi", "gibi", "tebi", "pebi", "exbi", "zebi", "yobi"))


def human2bytes(s: str) -> int:
    """``'10M'`` -> ``10485760``: a number and a unit (B, K or k, M, G... ; Ki, Mi...; kilo,
    mega...; powers of 1024), as 0.19 read them. A number without a unit is a ValueError (0.19's
    plugins rely on it: a bare number is a percentage there)."""
    text = str(s)
    digits = len(text) - len(text.lstrip("0123456789."))
    number, unit = text[:digits], text[digits:].strip()
    if unit == "k":
        unit = "K"
    for units in _UNIT_SETS:
        if unit in units:
            try:
                return int(float(number) * (1 << (10 * units.index(unit))))
            except ValueError:
                break
    raise ValueError(f"can't interpret {s!r} as a size (a number and a unit: 512B, 10K, 1.5G)")


_TRUE = ("yes", "true", "on", "1")
_FALSE = ("no", "false", "off", "0")


def to_bool(s: Any) -> bool:
    """A boolean from a bool or 0.19's words (yes/no, true/false, on/off, 1/0, any case)."""
    if isinstance(s, bool):
        return s
    text = str(s).strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise ValueError(f"{s!r} is not a boolean")


def to_str(s: Any, encoding: str = "utf8", errors: str = "replace") -> str:
    return s.decode(encoding, errors) if isinstance(s, (bytes, bytearray)) else str(s)


def to_bytes(s: Any, encoding: str = "utf8") -> bytes:
    return bytes(s) if isinstance(s, (bytes, bytearray)) else str(s).encode(encoding)


def to_signum(signum: int | str) -> int:
    """A signal number from a number, ``'15'``, ``'TERM'``, ``'SIGTERM'`` or ``'SIGRTMIN+1'``."""
    if isinstance(signum, int):
        return signum
    text = str(signum).strip().upper()
    if text.isdigit():
        return int(text)
    name, _, offset = text.partition("+")
    if not name.startswith("SIG"):
        name = "SIG" + name
    number = getattr(signal, name, None)
    if not isinstance(number, int) or (offset and not offset.isdigit()):
        raise ValueError(f"signal invalid: {signum!r}")
    return int(number) + (int(offset) if offset else 0)


def to_uid(name: int | str) -> int:
    import pwd
    if isinstance(name, int) or str(name).isdigit():
        return int(name)
    try:
        return pwd.getpwnam(str(name)).pw_uid
    except KeyError:
        raise ValueError(f"{name!r} is not a known user") from None


def to_gid(name: int | str) -> int:
    import grp
    if isinstance(name, int) or str(name).isdigit():
        return int(name)
    try:
        return grp.getgrnam(str(name)).gr_gid
    except KeyError:
        raise ValueError(f"{name!r} is not a known group") from None
