"""Circus 0.19's process-environment helpers (``circus.util``): constants of the platform, the
working directory, the interpreter's version, ``env`` strings and dicts."""
from __future__ import annotations

import os
import sys

__all__ = ["MAXFD", "REDIRECT_TO", "IS_WINDOWS", "get_python_version", "get_working_dir",
           "parse_env_str", "parse_env_dict"]

MAXFD = 1024
REDIRECT_TO = getattr(os, "devnull", "/dev/null")
IS_WINDOWS = os.name == "nt"


def get_python_version() -> tuple[int, int, int]:
    return sys.version_info[:3]


def get_working_dir() -> str:
    """The working directory, as ``$PWD`` when that names the same directory (0.19)."""
    cwd = os.getcwd()
    pwd = os.environ.get("PWD")
    try:
        if pwd and os.path.samefile(pwd, cwd):
            return pwd
    except OSError:
        pass
    return cwd


def parse_env_str(env_str: str) -> dict[str, str]:
    """``'A=1,B=2'`` -> ``{'A': '1', 'B': '2'}`` (values with ``$VAR`` expanded)."""
    items = (part.split("=", 1) for part in env_str.split(",") if "=" in part)
    return parse_env_dict({k.strip(): v.strip() for k, v in items})


def parse_env_dict(env: dict[str, str]) -> dict[str, str]:
    """Values with ``$VAR`` expanded from circusd's environment."""
    return {key: os.path.expandvars(value) for key, value in env.items()}
