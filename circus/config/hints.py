"""What an unknown key was probably meant to be: the "did you mean" of an error.

Besides near-misses of known keys (``numproceses`` -> ``numprocesses``), real Circus 0.19 files
carry keys that 0.19 silently ignored because they come from elsewhere: supervisord's names
(``user``, ``command``, ``directory``), environment variables written straight into a watcher
section (``RUBY_GC_MALLOC_LIMIT=...``), and dotted keys whose prefix is a typo of a reserved one
(``stdout_steam.class``, ``hook.before_start``, ``stdin_stream.class``). Pure.
"""
from __future__ import annotations

import re
from collections.abc import Iterable

from .errors import did_you_mean

__all__ = ["unknown_key_hint", "reserved_prefix_typo", "RESERVED_PREFIXES"]

#: dotted prefixes that are options of the watcher itself (any other prefix is a plugin's)
RESERVED_PREFIXES = ("hooks", "stdout_stream", "stderr_stream")

# names other tools use for a watcher option (supervisord mostly), and what they are here
_ALIASES = {
    "user": "uid", "group": "gid", "command": "cmd", "program": "cmd", "directory": "working_dir",
    "cwd": "working_dir", "workdir": "working_dir", "numprocs": "numprocesses",
    "processes": "numprocesses", "num_processes": "numprocesses", "workers": "numprocesses",
    "autorestart": "respawn", "stopsignal": "stop_signal", "stopwaitsecs": "graceful_timeout",
    "startretries": "max_retry", "stdout_logfile": "stdout_stream.filename",
    "stderr_logfile": "stderr_stream.filename", "environment": "an [env:NAME] section",
    "env": "an [env:NAME] section",
}
_ENV_NAME = re.compile(r"[A-Z][A-Z0-9_]*")


def unknown_key_hint(key: str, known: Iterable[str], env_section: str | None = None) -> str:
    """A ' (...)' hint for the unknown `key` of a section whose keys are `known`; ''.

    `env_section`: the [env:NAME] section where an environment variable of this section would
    go (watcher sections only)."""
    lower = key.lower()
    alias = _ALIASES.get(lower)
    if alias is not None:
        if alias.startswith("an "):
            return f" (environment variables go in {alias})"
        return f" (did you mean {alias!r}?)"
    close = did_you_mean(key, known)
    if close:
        return close
    if env_section and _ENV_NAME.fullmatch(key):
        return f" (an environment variable? they go in an [{env_section}] section)"
    return ""


def reserved_prefix_typo(prefix: str) -> str | None:
    """The reserved prefix `prefix` is a near-miss of (``stdout_steam`` -> ``stdout_stream``),
    or None: a prefix of its own is a plugin's option namespace (``flapping.max_retry``)."""
    if prefix in RESERVED_PREFIXES:
        return None
    hint = did_you_mean(prefix, RESERVED_PREFIXES)
    return hint[len(" (did you mean '"):-len("'?)")] if hint else None
