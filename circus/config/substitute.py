"""Text substitutions.

- `$(circus.NAME)` / `((circus.NAME))`, NAME case-insensitive and possibly dotted
  (`env.HOME`, `sockets.web`, `wid`, any watcher option). At load only `env.*` is replaced
  (`substitute_env`); the rest is replaced at spawn time (`substitute_spawn`). Unknown names are
  left verbatim.
- `$NAME` (upper case, as 0.19) and `${NAME}` (new) in environment values, from circusd's
  environment; a missing variable expands to "".
"""

from __future__ import annotations

import re
from collections.abc import Mapping

__all__ = ["substitute_spawn", "substitute_env", "expand_vars", "lower_keys", "fill_placeholders",
           "unresolved_env"]

_CIRCUS = re.compile(
    r"\$\(circus\.(?P<a>[\w.-]+)\)|\(\(circus\.(?P<b>[\w.-]+)\)\)", re.IGNORECASE
)
_VAR = re.compile(r"\$\{(?P<braced>[A-Za-z_]\w*)\}|\$(?P<bare>[A-Z][A-Z0-9_]*)")


def lower_keys(*layers: Mapping[str, object]) -> dict[str, object]:
    """Merge mappings (later wins) with lower-cased keys, for case-insensitive lookup."""
    merged: dict[str, object] = {}
    for layer in layers:
        for key, value in layer.items():
            merged[key.lower()] = value
    return merged


def _lookup(values: Mapping[str, object], name: str) -> tuple[bool, object]:
    """Find a dotted `name` as a flat key, or by walking nested mappings; case-insensitive."""
    table = lower_keys(values)
    name = name.lower()
    if name in table:
        return True, table[name]
    head, dot, rest = name.partition(".")
    inner = table.get(head)
    if dot and isinstance(inner, Mapping):
        return _lookup(inner, rest)
    return False, None


def _text(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, (list, tuple)):
        return " ".join(str(item) for item in value)
    return str(value)


def substitute_spawn(text: str, values: Mapping[str, object]) -> str:
    """Replace `$(circus.X)` / `((circus.X))` from `values`; unknown X stays as written.

    `values` may be flat ({"sockets.web": 5}) or nested ({"sockets": {"web": 5}}).
    """

    def replace(match: re.Match[str]) -> str:
        found, value = _lookup(values, match.group("a") or match.group("b"))
        return _text(value) if found else match.group(0)

    return _CIRCUS.sub(replace, text)


def fill_placeholders(text: str, filler: str = "1") -> str:
    """Replace every `$(circus.X)` / `((circus.X))` with `filler`: a stand-in for the values
    known only at spawn time, to check the syntax of a text that contains them."""
    return _CIRCUS.sub(filler, text)


def substitute_env(text: str, env: Mapping[str, str]) -> str:
    """Replace only `$(circus.env.X)` / `((circus.env.X))` from `env` (case-insensitive)."""
    table = lower_keys(env)

    def replace(match: re.Match[str]) -> str:
        name = (match.group("a") or match.group("b")).lower()
        if name.startswith("env.") and name[4:] in table:
            return str(table[name[4:]])
        return match.group(0)

    return _CIRCUS.sub(replace, text)


def unresolved_env(text: str, env: Mapping[str, str]) -> list[str]:
    """The names X of the `$(circus.env.X)` / `((circus.env.X))` in `text` that `env` does not
    have (case-insensitive), in order, each once."""
    table = lower_keys(env)
    found: list[str] = []
    for match in _CIRCUS.finditer(text):
        name = match.group("a") or match.group("b")
        if name.lower().startswith("env.") and name[4:].lower() not in table \
                and name[4:] not in found:
            found.append(name[4:])
    return found


def expand_vars(text: str, environ: Mapping[str, str]) -> str:
    """Expand `$NAME` and `${NAME}` from `environ`; missing variables become ""."""

    def replace(match: re.Match[str]) -> str:
        return environ.get(match.group("braced") or match.group("bare"), "")

    return _VAR.sub(replace, text)
