"""Reading a plugin's options: every value arrives as a string (``--config key:value:::...``).

Each reader takes the plugin's config dict, the key and a default, and raises
:class:`PluginConfigError` naming the plugin, the key and what was expected, so that
``circus-plugin`` can exit 2 with a message the operator can act on instead of a traceback
from deep inside a timer. Pure: no I/O.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Mapping

from circus.config.convert import parse_bool, parse_signal
from circus.errors import CircusError

__all__ = ["PluginError", "PluginConfigError", "Amount", "get_bool", "get_float", "get_int",
           "get_str", "get_signal", "get_regex", "get_amount", "parse_amount", "parse_config_arg",
           "get_period"]


class PluginError(CircusError):
    """A plugin cannot run (its class, its options or its startup failed)."""


class PluginConfigError(PluginError):
    """A plugin option is missing or has a value the plugin cannot use."""


def _fail(plugin: str, key: str, expected: str, raw: object) -> PluginConfigError:
    return PluginConfigError(f"plugin {plugin}: option {key!r}: expected {expected}, got {raw!r}")


def get_str(config: Mapping[str, str], key: str, default: str | None = None) -> str | None:
    value = config.get(key)
    return default if value is None else str(value)


def get_bool(config: Mapping[str, str], key: str, default: bool, plugin: str = "?") -> bool:
    raw = config.get(key)
    if raw is None or str(raw).strip() == "":
        return default
    try:
        return parse_bool(str(raw))
    except ValueError:
        raise _fail(plugin, key, "a boolean (true/false)", raw) from None


def get_period(config: Mapping[str, str], key: str, default: float, plugin: str = "?") -> float:
    """A number of seconds > 0 (``loop_rate``...): the period of a plugin's periodic work."""
    value = get_float(config, key, default, plugin)
    if value is None or not value > 0:
        raise _fail(plugin, key, "a number > 0", config.get(key))
    return value


def get_float(config: Mapping[str, str], key: str, default: float | None, plugin: str = "?",
              minimum: float | None = None) -> float | None:
    raw = config.get(key)
    if raw is None or str(raw).strip() == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        raise _fail(plugin, key, "a number", raw) from None
    if value != value or (minimum is not None and value < minimum):
        raise _fail(plugin, key, f"a number >= {minimum:g}" if minimum is not None else "a number",
                    raw)
    return value


def get_int(config: Mapping[str, str], key: str, default: int, plugin: str = "?",
            minimum: int | None = None) -> int:
    raw = config.get(key)
    if raw is None or str(raw).strip() == "":
        return default
    try:
        value = int(str(raw).strip())
    except ValueError:
        raise _fail(plugin, key, "an integer", raw) from None
    if minimum is not None and value < minimum:
        raise _fail(plugin, key, f"an integer >= {minimum}", raw)
    return value


def get_signal(config: Mapping[str, str], key: str, default: int | None,
               plugin: str = "?") -> int | None:
    raw = config.get(key)
    if raw is None or str(raw).strip() == "":
        return default
    try:
        return parse_signal(str(raw))
    except ValueError:
        raise _fail(plugin, key, "a signal name or number", raw) from None


def get_regex(config: Mapping[str, str], key: str, default: str, plugin: str = "?") -> re.Pattern:
    raw = config.get(key)
    text = default if raw is None or raw == "" else str(raw)
    try:
        return re.compile(text)
    except re.error as exc:
        raise _fail(plugin, key, f"a regular expression ({exc})", text) from None


_UNITS = {"": 1, "B": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40, "P": 1 << 50,
          "E": 1 << 60}
_AMOUNT = re.compile(r"\s*(\d+(?:\.\d*)?|\.\d+)\s*([A-Za-z%]*)\s*")


@dataclass(frozen=True)
class Amount:
    """A memory threshold: a percentage of RAM (a bare number) or a size in bytes (with a unit)."""

    value: float
    is_bytes: bool

    def exceeded_by(self, percent: float, rss: float) -> bool:
        return (rss if self.is_bytes else percent) > self.value

    def undercut_by(self, percent: float, rss: float) -> bool:
        return (rss if self.is_bytes else percent) < self.value

    def __str__(self) -> str:
        return f"{self.value:.0f} bytes" if self.is_bytes else f"{self.value:g}%"


def parse_amount(raw: str) -> Amount:
    """``"90"`` (or ``"90%"``) → 90 % of RAM; ``"200M"``, ``"1.5G"``, ``"512KB"``, ``"1GiB"``, ``"100B"`` → bytes
    (powers of 1024, case-insensitive), as 0.19 read them, for ``min_mem`` as well as ``max_mem``."""
    match = _AMOUNT.fullmatch(raw)
    if not match:
        raise ValueError(f"expected a percentage (90) or a size (200M, 1.5G), got {raw!r}")
    number, unit = float(match.group(1)), match.group(2).upper()
    if unit in ("", "%"):
        return Amount(number, is_bytes=False)
    if unit.endswith("IB") and len(unit) == 3:
        unit = unit[0]
    elif unit.endswith("B") and len(unit) == 2:
        unit = unit[0]
    if unit not in _UNITS:
        raise ValueError(f"unknown size unit {match.group(2)!r} in {raw!r} (B, K, M, G, T, P, E)")
    return Amount(number * _UNITS[unit], is_bytes=True)


def get_amount(config: Mapping[str, str], key: str, default: str | None,
               plugin: str = "?") -> Amount | None:
    raw = config.get(key)
    text = default if raw is None or str(raw).strip() == "" else str(raw)
    if text is None:
        return None
    try:
        return parse_amount(text)
    except ValueError as exc:
        raise PluginConfigError(f"plugin {plugin}: option {key!r}: {exc}") from None


def parse_config_arg(text: str) -> dict[str, str]:
    """``key:value:::key2:value2`` (0.19's ``--config``) → a dict. A value may contain ``:``
    (a URL, a regex); it cannot contain ``:::``. An item without ``:`` is an error."""
    out: dict[str, str] = {}
    for item in text.split(":::"):
        if not item.strip():
            continue
        key, sep, value = item.partition(":")
        if not sep or not key.strip():
            raise ValueError(f"--config items are key:value, got {item!r}")
        out[key.strip()] = value
    return out
