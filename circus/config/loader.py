"""Reading a configuration: the main file, its includes (recursively), then `build_config`.

`include = globs...` and `include_dir = dirs...` (each adds `<dir>/*.ini`) are read from each
file's own [circus] section and resolved against that file's directory. Stricter than 0.19: a
literal include (no glob characters) or include_dir that does not exist is an error, and so is an
include cycle; a glob that matches nothing is fine. Files are merged in reading order (main file
first, each include followed by its own includes), the first definition of an option winning.

The only disk access of the package is `_Disk`; `parse_config_text` resolves includes in a mapping
of in-memory files instead.
"""

from __future__ import annotations

import glob as globlib
import os.path
from collections.abc import Mapping
from fnmatch import fnmatchcase
from typing import Protocol

from .build import build_config
from .errors import ConfigError, ConfigIssue, Issues
from .ini import IniSection, IniValue, merge_sections, parse_ini
from .schema import Config

__all__ = ["load_config", "parse_config_text"]

_GLOB_CHARS = frozenset("*?[")


class _Source(Protocol):
    def read(self, path: str) -> str: ...
    def glob(self, pattern: str) -> list[str]: ...
    def exists(self, path: str, directory: bool) -> bool: ...


class _Disk:
    """The file system, read-only."""

    def read(self, path: str) -> str:
        with open(path, encoding="utf-8") as handle:
            return handle.read()

    def glob(self, pattern: str) -> list[str]:
        return sorted(p for p in globlib.glob(pattern) if os.path.isfile(p))

    def exists(self, path: str, directory: bool) -> bool:
        return os.path.isdir(path) if directory else os.path.isfile(path)


class _Memory:
    """Files given as {path: text}; paths are compared after os.path.normpath."""

    def __init__(self, files: Mapping[str, str]) -> None:
        self.files = {os.path.normpath(path): text for path, text in files.items()}

    def read(self, path: str) -> str:
        try:
            return self.files[os.path.normpath(path)]
        except KeyError:
            raise FileNotFoundError(2, "No such file or directory", path) from None

    def glob(self, pattern: str) -> list[str]:
        parts = os.path.normpath(pattern).split(os.sep)
        return sorted(
            path for path in self.files
            if len(path.split(os.sep)) == len(parts)
            and all(fnmatchcase(a, b) for a, b in zip(path.split(os.sep), parts))
        )

    def exists(self, path: str, directory: bool) -> bool:
        path = os.path.normpath(path)
        if directory:
            return any(name.startswith(path + os.sep) for name in self.files)
        return path in self.files


class _Includes:
    """Reads a file and, depth first, everything it includes."""

    def __init__(self, source: _Source, issues: Issues) -> None:
        self.source = source
        self.issues = issues
        self.sections: dict[str, IniSection] = {}
        self.files: list[str] = []
        self.done: set[str] = set()

    def visit(self, path: str, text: str, stack: tuple[str, ...]) -> None:
        self.files.append(path)
        self.done.add(os.path.normpath(path))
        parsed = parse_ini(text, path, self.issues)
        merge_sections(self.sections, parsed)
        own = next((s for s in parsed if s.header == "circus"), None)
        chain = (*stack, os.path.normpath(path))
        for item, target, literal in self.targets(path, own):
            key = os.path.normpath(target)
            if key in chain and literal:
                cycle = " -> ".join((*chain[chain.index(key):], key))
                self.fail(item, f"include cycle: {cycle}")
            elif key not in self.done and key not in chain:
                try:
                    included = self.source.read(target)
                except (OSError, UnicodeDecodeError) as exc:
                    self.fail(item, f"cannot read {target}: {_reason(exc)}")
                    continue
                self.visit(key, included, chain)

    def targets(self, path: str, circus: IniSection | None) -> list[tuple[IniValue, str, bool]]:
        """(include option, file to read, named literally?) for one file's includes, in order.

        A glob that matches a file being read (such as `*.ini` matching the including file) is
        skipped quietly; only a literal include can make a cycle.
        """
        if circus is None:
            return []
        options: dict[str, IniValue] = {}
        for value in circus.values.values():
            options.setdefault(value.key.lower(), value)
        base = os.path.dirname(path)
        found: list[tuple[IniValue, str, bool]] = []
        for key in ("include", "include_dir"):
            item = options.get(key)
            if item is None:
                continue
            for word in item.value.split():
                full = os.path.join(base, word)
                literal = not (_GLOB_CHARS & set(word))
                if literal and not self.source.exists(full, directory=key == "include_dir"):
                    what = "directory" if key == "include_dir" else "file"
                    self.fail(item, f"included {what} not found: {full}")
                    continue
                pattern = os.path.join(full, "*.ini") if key == "include_dir" else full
                found += [(item, match, literal and key == "include")
                          for match in self.source.glob(pattern)]
        return found

    def fail(self, item: IniValue, reason: str) -> None:
        self.issues.add(item.file, item.line, "circus", item.key, reason)


def _reason(exc: BaseException) -> str:
    if isinstance(exc, UnicodeDecodeError):
        return "not valid UTF-8"
    return getattr(exc, "strerror", None) or str(exc)


def _load(path: str, text: str, source: _Source, environ: Mapping[str, str]) -> Config:
    issues = Issues()
    includes = _Includes(source, issues)
    includes.visit(path, text, ())
    files = tuple(includes.files)
    config = build_config(includes.sections, environ, path, files, issues)
    issues.raise_if_any(files)
    return config


def load_config(path: str, environ: Mapping[str, str]) -> Config:
    """Read and check the configuration file `path` and its includes; raise ConfigError."""
    disk = _Disk()
    try:
        text = disk.read(path)
    except (OSError, UnicodeDecodeError) as exc:
        reason = f"cannot read the configuration: {_reason(exc)}"
        raise ConfigError([ConfigIssue(path, None, None, None, reason)]) from None
    return _load(path, text, disk, environ)


def parse_config_text(text: str, filename: str, environ: Mapping[str, str],
                      files: Mapping[str, str] | None = None) -> Config:
    """Check a configuration given as text. Includes are looked up in `files` ({path: text},
    paths relative to `filename`'s directory), never on disk."""
    return _load(filename, text, _Memory({**(files or {}), filename: text}), environ)

