"""The audit trail of circusmeta runs that change something (``[meta] log_dir``, ``--log-dir``).

One file per run, named by time, command and arguments, so a directory listing reads as the
history of cron-driven operations (``20261201-030000-restart-rolling-web.log``). It holds JSON
lines: the run (who, when, the command line), then each node's result, then the outcome. Written
once the run is over, through a temporary file renamed into place: a file is never half there.
"""
from __future__ import annotations

import getpass
import json
import os
import re
import socket
import time
from typing import Any, Iterable, Mapping

__all__ = ["write_audit", "audit_name"]

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
    os.makedirs(log_dir, exist_ok=True)
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
    tmp = f"{path}.tmp"
    with open(tmp, "w") as fh:
        for line in lines:
            fh.write(json.dumps(line, default=str) + "\n")
    os.replace(tmp, path)
    return path
