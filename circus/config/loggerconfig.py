"""``[circus] loggerconfig`` / ``circusd --logger-config``: a logging configuration file.

As in Circus 0.19 the file's name says its format: ``*.ini`` is read by
``logging.config.fileConfig`` (existing loggers disabled), ``*.json`` and ``*.yaml`` hold a
``logging.config.dictConfig`` dictionary (YAML needs PyYAML). A relative name is relative to
circusd's working directory (0.19 took ``os.path.abspath``), and ``default`` means none. When
one is given it replaces ``loglevel`` and ``logoutput`` (0.19 applied one or the other).

0.19 read the file only when circusd started, and a bad one stopped it with a traceback; here the
configuration check reads it (missing, unreadable, an unknown extension, not parseable, not a
dictConfig dictionary, PyYAML missing: an error with the reason), and circusd applies it.
"""
from __future__ import annotations

import json
import os
from typing import Any

__all__ = ["logger_config_path", "read_logger_config"]

FORMATS = (".ini", ".json", ".yaml")
_INI_SECTIONS = ("loggers", "handlers", "formatters")   # what fileConfig needs


def logger_config_path(value: str | None) -> str | None:
    """The file named by ``value``, absolute; None for none (unset, empty or ``default``)."""
    if not value or value.strip().lower() == "default":
        return None
    return os.path.abspath(os.path.expanduser(value.strip()))


def read_logger_config(path: str) -> tuple[str, Any]:
    """("ini", path) or ("dict", the dictConfig dictionary); ValueError saying what is wrong."""
    suffix = os.path.splitext(path)[1].lower()
    if suffix not in FORMATS:
        raise ValueError(f"{path}: a logger configuration is a *.ini, *.json or *.yaml file")
    try:
        with open(path, encoding="utf-8") as handle:
            text = handle.read()
    except OSError as exc:
        raise ValueError(f"cannot read {path}: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise ValueError(f"{path}: not valid UTF-8") from None
    if suffix == ".ini":
        import configparser             # for an *.ini logger configuration only

        parser = configparser.ConfigParser(interpolation=None)
        try:
            parser.read_string(text, path)
        except configparser.Error as exc:
            raise ValueError(f"{path}: not a valid INI file: {exc}".splitlines()[0]) from None
        missing = [name for name in _INI_SECTIONS if not parser.has_section(name)]
        if missing:
            raise ValueError(f"{path}: logging.config.fileConfig needs the sections "
                             f"{', '.join(f'[{m}]' for m in missing)}")
        return "ini", path
    if suffix == ".json":
        try:
            data = json.loads(text)
        except ValueError as exc:
            raise ValueError(f"{path}: not valid JSON: {exc}") from None
    else:
        try:
            import yaml
        except ImportError:
            raise ValueError(f"{path}: a YAML logger configuration needs PyYAML, which is not "
                             "installed (pip install PyYAML)") from None
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise ValueError(f"{path}: not valid YAML: {exc}".splitlines()[0]) from None
    if not isinstance(data, dict) or data.get("version") != 1:
        raise ValueError(f"{path}: a logging.config.dictConfig dictionary with version: 1 "
                         "is expected")
    return "dict", data
