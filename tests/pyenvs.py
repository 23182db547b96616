"""Virtualenvs (and ``pip --target`` directories) of third-party packages for the tests that run
other people's software against ours: built once from PyPI, kept outside the repository in the
temporary directory (``$CIRCUS_TEST_ENVS``, else ``<tmp>/circus-test-envs``), keyed by what they
hold. A half-built one is never used: it is built beside and renamed into place, under a lock.
"""
from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import venv
from pathlib import Path
from typing import Callable, Sequence

__all__ = ["ENVS", "cached_venv", "cached_target", "pip"]

ENVS = Path(os.environ.get("CIRCUS_TEST_ENVS") or Path(tempfile.gettempdir()) / "circus-test-envs")


def _key(name: str, parts: Sequence[str]) -> Path:
    digest = hashlib.sha256("\n".join([sys.version, *parts]).encode()).hexdigest()[:12]
    return ENVS / f"{name}-{digest}"


def pip(python: Path | str, *args: str, timeout: float = 900) -> None:
    """``python -m pip ARGS``; AssertionError with pip's output when it fails."""
    r = subprocess.run([str(python), "-m", "pip", "--disable-pip-version-check", "--quiet",
                        *args], capture_output=True, text=True, timeout=timeout,
                       env={**os.environ, "PIP_NO_INPUT": "1"})
    assert r.returncode == 0, f"pip {' '.join(args)} failed:\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}"


def _build(path: Path, make: Callable[[Path], None]) -> Path:
    ENVS.mkdir(parents=True, exist_ok=True)
    with open(ENVS / f".{path.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if (path / ".complete").exists():
            return path
        work = ENVS / f".{path.name}.building-{os.getpid()}"
        shutil.rmtree(work, ignore_errors=True)
        try:
            make(work)
            (work / ".complete").write_text("")
            shutil.rmtree(path, ignore_errors=True)
            work.rename(path)
        finally:
            shutil.rmtree(work, ignore_errors=True)
    return path


def cached_venv(name: str, requirements: Sequence[str], *,
                then: Callable[[Path], None] | None = None, tag: str = "") -> Path:
    """A virtualenv with ``requirements`` pip-installed (in that order, one ``pip install`` per
    item: an item may hold several words, e.g. ``"--no-deps pkg==1"``), then ``then(venv)``
    (a patch step; change ``tag`` when it changes). Note: a venv cannot be moved, so it is
    built in place and marked complete at the end."""
    path = _key(name, [*requirements, tag])
    if (path / ".complete").exists():
        return path
    ENVS.mkdir(parents=True, exist_ok=True)
    with open(ENVS / f".{path.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if (path / ".complete").exists():
            return path
        shutil.rmtree(path, ignore_errors=True)
        venv.EnvBuilder(with_pip=True, clear=True).create(path)
        for item in requirements:
            pip(path / "bin" / "python", "install", *item.split())
        if then is not None:
            then(path)
        (path / ".complete").write_text("")
    return path


def cached_target(name: str, requirements: Sequence[str]) -> Path:
    """A directory of packages (``pip install --target``) to put on PYTHONPATH; each item of
    ``requirements`` is one ``pip install`` (``"--no-deps pkg==1"`` allowed)."""
    path = _key(name, requirements)
    if (path / ".complete").exists():
        return path

    def make(work: Path) -> None:
        for item in requirements:
            pip(sys.executable, "install", "--target", str(work), *item.split())
    return _build(path, make)
