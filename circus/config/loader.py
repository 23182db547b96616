"""Reading a configuration: the main file, its includes (recursively), then `build_config`.

`include = globs...` and `include_dir = dirs...` (each adds `<dir>/*.ini`) are read from each
file's own [circus] section and resolved against that file's directory. Stricter than 0.19: a
literal include (no glob characters) or include_dir that does not exist is a lenient issue (0.19
only logged a warning), an include cycle is an error; a glob that matches nothing is fine. Files
are merged in reading order (main file first, each include followed by its own includes), the
first definition of an option winning.

Strict or not: every issue is an error by default. With ``strict=False`` (``circusd
--no-strict``) or ``[circus] strict = false``, the lenient ones (what 0.19 ignored or dropped,
see errors.py) are returned in ``Config.warnings`` instead, and what they concern is left out.

``load_config`` also reads the ``loggerconfig`` file and imports every dotted path (plugins,
stream classes, hooks) in a child process (resolve.py). The only disk access of the package is
here; `parse_config_text` resolves includes in a mapping of in-memory files and imports nothing.
"""

from __future__ import annotations

import os.path
from collections.abc import Mapping
from fnmatch import fnmatchcase
from dataclasses import replace
from typing import Protocol

from .build import build_config
from .errors import IGNORED, ConfigError, ConfigIssue, Issues
from .loggerconfig import logger_config_path, read_logger_config
from .resolve import DottedRef, report_unresolved, resolve_refs
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
        import glob                     # for the includes of a configuration only

        return sorted(p for p in glob.glob(pattern) if os.path.isfile(p))

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
        merge_sections(self.sections, parsed, self.issues)
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
                    self.fail(item, f"included {what} not found: {full}", IGNORED)
                    continue
                pattern = os.path.join(full, "*.ini") if key == "include_dir" else full
                found += [(item, match, literal and key == "include")
                          for match in self.source.glob(pattern)]
        return found

    def fail(self, item: IniValue, reason: str, lenient: str | None = None) -> None:
        self.issues.add(item.file, item.line, "circus", item.key, reason, lenient)


def _reason(exc: BaseException) -> str:
    if isinstance(exc, UnicodeDecodeError):
        return "not valid UTF-8"
    return getattr(exc, "strerror", None) or str(exc)


def _load(path: str, text: str, source: _Source, environ: Mapping[str, str], strict: bool,
          on_disk: bool) -> Config:
    issues = Issues()
    includes = _Includes(source, issues)
    includes.visit(path, text, ())
    files = tuple(includes.files)
    refs: list[DottedRef] = []
    config = build_config(includes.sections, environ, path, files, issues, refs)
    dropped: set[str] = set()
    if on_disk:
        _check_logger_config(config, includes.sections.get("circus"), path, issues)
        dropped = report_unresolved(refs, resolve_refs(refs, environ=environ), issues)
    errors, warnings = issues.split(strict and config.circus.strict, files)
    if errors:
        raise ConfigError(errors, warnings)
    if dropped:
        config = _without(config, dropped)
    return replace(config, warnings=tuple(warnings), no_strict=not strict)


def _check_logger_config(config: Config, circus: IniSection | None, path: str,
                         issues: Issues) -> None:
    target = logger_config_path(config.circus.loggerconfig)
    if target is None:
        return
    try:
        read_logger_config(target)
    except ValueError as exc:
        where = next((v for v in (circus.values.values() if circus else ())
                      if v.key.lower() == "loggerconfig"), None)
        issues.add(where.file if where else path, where.line if where else None, "circus",
                   "loggerconfig", str(exc))


def _without(config: Config, names: set[str]) -> Config:
    """`config` without the watchers `names` (dropped: a hook or stream class that does not
    import, with --no-strict); a watcher that depends on one of them is an error."""
    kept = tuple(w for w in config.watchers if w.name not in names)
    broken = [ConfigIssue(config.source, None, f"watcher:{w.name}", "depends_on",
                          f"depends on {dep!r}, which is not loaded (see the warnings)")
              for w in kept for dep, _ in w.depends_on if dep in names]
    if broken:
        raise ConfigError(broken)
    return replace(config, watchers=kept)


def load_config(path: str, environ: Mapping[str, str], strict: bool = True) -> Config:
    """Read and check the configuration file `path` and its includes; raise ConfigError.
    `strict=False` (circusd --no-strict): what Circus 0.19 ignored or dropped is a warning
    (``Config.warnings``) instead of an error."""
    disk = _Disk()
    try:
        text = disk.read(path)
    except (OSError, UnicodeDecodeError) as exc:
        reason = f"cannot read the configuration: {_reason(exc)}"
        raise ConfigError([ConfigIssue(path, None, None, None, reason)]) from None
    return _load(path, text, disk, environ, strict, on_disk=True)


def parse_config_text(text: str, filename: str, environ: Mapping[str, str],
                      files: Mapping[str, str] | None = None, strict: bool = True) -> Config:
    """Check a configuration given as text. Includes are looked up in `files` ({path: text},
    paths relative to `filename`'s directory), never on disk; nothing is imported and the
    loggerconfig file is not read."""
    return _load(filename, text, _Memory({**(files or {}), filename: text}), environ, strict,
                 on_disk=False)
