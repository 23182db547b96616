"""The audit trail of circusmeta runs that change something (``[meta] log_dir``, ``--log-dir``).

One file per run, named by time, command and arguments, so a directory listing reads as the
history of cron-driven operations (``20261201-030000-restart-rolling-web.log``). It holds JSON
lines: the run (who, when, the command line), then each node's result, then the outcome. Written
once the run is over, through a temporary file renamed into place: a file is never half there.
Files are created mode 0640 (the directory, when circusmeta creates it, 0750), never through a
symbolic link others could have placed (:mod:`circus.security.safepath`): circusmeta often runs
as root from cron.
"""
from __future__ import annotations

import getpass
import json
import os
import re
import socket
import time
from typing import Any, Iterable, Mapping

from circus.security.safepath import replace_private

__all__ = ["write_audit", "audit_name"]

#: mode of an audit file (before the umask)
AUDIT_MODE = 0o640

_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]+")


def audit_name(command: str, args: Iterable[str], when: float) -> str:
    stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime(when))
    words = [command, *(a.lstrip("-") for a in args)]
    slug = _UNSAFE.sub("_", "-".join(w for w in words if w)).strip("_")[:80]
    return f"{stamp}-{slug}.log"


def write_audit(log_dir: str, command: str, argv: list[str], results: Mapping[str, Any],
                exit_code: int, extra: Mapping[str, Any] | None = None,
                when: float | None = None) -> str:
    """Write the run's file in ``log_dir`` (created if needed); return its path."""
    when = time.time() if when is None else when
    os.makedirs(log_dir, mode=0o750, exist_ok=True)
    path = os.path.join(log_dir, audit_name(command, argv, when))
    base, n = path[:-4], 1
    while os.path.exists(path):                  # two runs in the same second
        n += 1
        path = f"{base}-{n}.log"
    lines = [{"run": {"time": when, "user": getpass.getuser(), "host": socket.gethostname(),
                      "command": command, "argv": argv, **(extra or {})}}]
    lines += [{"node": name, **(r.to_dict() if hasattr(r, "to_dict") else dict(r))}
              for name, r in results.items()]
    lines.append({"exit": exit_code, "ended": time.time()})
    text = "".join(json.dumps(line, default=str) + "\n" for line in lines)
    replace_private(path, text.encode(), AUDIT_MODE, prefix=".circusmeta-audit.")
    return path
