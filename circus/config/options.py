"""A WatcherConfig from the control protocol's `add` / `set` options (JSON values).

Same schema and rules as the INI file, with JSON types enforced: an integer must be a JSON
integer ("2" is refused), a boolean a JSON boolean, `env` an object of strings, a stream an
object (with `class`, or `filename` for a FileStream). `rlimit_<name>`, `hooks.<hook>`,
`stdout_stream.<opt>` prefixes work as in INI; `rlimits` and `hooks` may also be objects.
Free-form dotted keys (`flapping.max_retry`) are kept as strings in `options`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from circus.protocol.limits import MAX_OPTIONS

from .errors import ConfigError, Issues
from .schema import WatcherConfig
from .substitute import expand_vars
from .watcher import assemble_watcher

__all__ = ["watcher_from_options", "PROTOCOL_SOURCE"]

PROTOCOL_SOURCE = "<protocol>"  # the `file` of issues found in protocol options


def _env(value: object, report: Any, environ: Mapping[str, str]) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in value.items()
    ):
        report(None, "env", "expected a JSON object of strings")
        return {}
    bad = [k for k in value if not k or "=" in k]
    if bad:   # execve would refuse it at every spawn
        report(None, "env", f"{bad[0]!r} is not an environment variable name (empty, or with '=')")
        return {}
    return {key: expand_vars(text, environ) for key, text in value.items()}


def watcher_from_options(name: str, cmd: str, args: object, options: Mapping[str, object],
                         environ: Mapping[str, str]) -> WatcherConfig:
    """Check `add`/`set` options; raise ConfigError naming each bad key."""
    issues = Issues()
    section = f"watcher:{name}"

    def report(where: Any, key: str | None, reason: str, lenient: str | None = None) -> None:
        issues.add(PROTOCOL_SOURCE, None, section, key, reason)   # nothing is lenient here

    if not isinstance(name, str) or not name.strip():
        report(None, "name", "expected a non-empty JSON string")
    if not isinstance(options, Mapping) or not all(isinstance(k, str) for k in options):
        report(None, "options", "expected a JSON object")
        options = {}
    if len(options) > MAX_OPTIONS:
        report(None, "options", f"{len(options)} options: at most {MAX_OPTIONS} in one request")
        issues.raise_if_any()
    items: list[tuple[str, object, Any]] = [("cmd", cmd, None)]
    if args is not None:
        items.append(("args", args, None))
    items += [(key, value, None) for key, value in options.items() if key != "env"]
    env = _env(options.get("env"), report, environ)
    watcher = assemble_watcher(str(name), items, "json", report, env, None)
    issues.raise_if_any()
    assert watcher is not None  # no issue means a watcher
    return watcher
