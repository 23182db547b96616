"""0.19's ``Watcher`` and ``CircusSocket`` constructors, and the arbiter options of
``get_arbiter``, turned into our typed configuration — checked by the same schema as an INI
file, so a typo is refused with the key named.

Python objects that 0.19 accepted where a configuration has dotted names (a hook given as a
function, a stream given as an object or a class) are registered in :data:`OBJECTS` and
referred to by a dotted name into it: the arbiter runs in this process, so it finds them there.
"""
from __future__ import annotations

import dataclasses
import os
import signal
import socket
from types import SimpleNamespace
from typing import Any, Iterable, Mapping

from circus.compat.arbview import SocketView
from circus.compat.views import WatcherView
from circus.config import (CircusOptions, Config, ConfigError, SocketConfig, WatcherConfig,
                           parse_config_text, watcher_from_options)

__all__ = ["OBJECTS", "register", "Watcher", "CircusSocket", "build_config", "LIBRARY_SOURCE"]

#: objects given to the library (hook functions, stream objects) reachable by a dotted name
OBJECTS = SimpleNamespace()
#: the name of the configuration of an arbiter made in Python (it has no file)
LIBRARY_SOURCE = "<arbiter made in Python: it has no configuration file>"

#: 0.19 options that mean nothing here and are accepted as long as they ask for nothing
_IGNORED = {"stream_backend": None, "use_papa": False, "loop": None, "prereload_fn": None}


def register(obj: Any) -> str:
    """A dotted name that resolves to ``obj`` in this process."""
    key = f"o{id(obj):x}"
    setattr(OBJECTS, key, obj)
    return f"{__name__}:OBJECTS.{key}"


def _fail(what: str, exc: ConfigError) -> ValueError:
    reasons = "; ".join(" ".join(p for p in (f"{i.key}:" if i.key else "", i.reason) if p)
                        for i in exc.issues)
    return ValueError(f"{what}: {reasons}")


def _hook(value: Any) -> list[Any]:
    target, ignore = (value if isinstance(value, (tuple, list)) and len(value) == 2
                      else (value, False))
    if callable(target) and not isinstance(target, str):
        target = register(target)
    return [target, bool(ignore)]


def _stream(conf: Mapping[str, Any] | None) -> dict[str, Any] | None:
    if conf is None:
        return None
    conf = dict(conf)
    if "stream" in conf:                   # 0.19: an object to call, as is
        obj = conf.pop("stream")
        conf["class"] = register(lambda **_: obj)
    elif "class" in conf and not isinstance(conf["class"], str):
        conf["class"] = register(conf["class"])
    return conf


class Watcher(WatcherView):
    """A watcher for a Python-made arbiter, with Circus 0.19's constructor:
    ``Watcher(name, cmd, args=None, numprocesses=1, ..., **options)``. Every watcher option of
    the INI file is a keyword (docs/reference/options.rst); ``hooks`` may map a point to a
    function, ``stdout_stream``/``stderr_stream`` may give ``class`` as a class or ``stream`` as
    an object. Once its arbiter runs, the object shows the live watcher (``processes``,
    ``status()``...)."""

    def __init__(self, name: str, cmd: str, args: Any = None, **options: Any) -> None:
        options = dict(options)
        for key, allowed in _IGNORED.items():
            value = options.pop(key, allowed)
            if key != "stream_backend" and value is not allowed and value != allowed:
                raise ValueError(f"Watcher({name!r}): {key} is not supported here")
        if "hooks" in options and options["hooks"] is not None:
            options["hooks"] = {point: _hook(v) for point, v in dict(options["hooks"]).items()}
        for key in ("stdout_stream", "stderr_stream"):
            if key in options:
                options[key] = _stream(options[key])
        if options.get("env") is not None:
            options["env"] = {str(k): str(v) for k, v in dict(options["env"]).items()}
        for key, kind in (("numprocesses", int), ("graceful_timeout", float)):
            if isinstance(options.get(key), str):          # 0.19 converted these two
                options[key] = kind(options[key])
        options = {k: v for k, v in options.items() if v is not None}   # None: the default
        if isinstance(options.get("stop_signal"), signal.Signals):
            options["stop_signal"] = int(options["stop_signal"])
        try:
            self._own_cfg = watcher_from_options(name, cmd, args, options, os.environ)
        except ConfigError as exc:
            raise _fail(f"Watcher({name!r})", exc) from None

    @classmethod
    def load_from_config(cls, config: Mapping[str, Any]) -> "Watcher":
        """0.19's form: one dict with ``name``, ``cmd`` and the options."""
        config = dict(config)
        return cls(name=config.pop("name"), cmd=config.pop("cmd"), **config)

    def _attach(self, core: Any) -> None:
        WatcherView.__init__(self, core)

    def _detach(self) -> None:
        self._own_cfg = self._core.cfg
        WatcherView.__init__(self, None)


def _ini(header: str, items: Mapping[str, Any]) -> str:
    lines = [f"[{header}]"]
    for key, value in items.items():
        if value is None:
            continue
        if isinstance(value, bool):
            value = "true" if value else "false"
        text = str(value)
        if "\n" in text or "\r" in text:
            raise ValueError(f"{header}: {key}: a value cannot span lines")
        lines.append(f"{key} = {text}")
    return "\n".join(lines) + "\n"


def _parse(text: str, what: str) -> Config:
    try:
        return parse_config_text(text, LIBRARY_SOURCE, dict(os.environ))
    except ConfigError as exc:
        raise _fail(what, exc) from None


def _name_of(number: int, prefix: str, default: str) -> str:
    for name in dir(socket):
        if name.startswith(prefix) and getattr(socket, name) == number:
            return name
    return default


class CircusSocket(SocketView):
    """A socket for a Python-made arbiter, with Circus 0.19's constructor. It is bound when the
    arbiter starts; then ``fileno()``, ``host`` and ``port`` are those of the bound socket."""

    def __init__(self, name: str = "", host: str = "localhost", port: int = 8080,
                 family: int | str = socket.AF_INET, type: int | str = socket.SOCK_STREAM,
                 proto: int | str = 0, backlog: int = 2048, path: str | None = None,
                 umask: int | None = None, replace: bool = False, interface: str | None = None,
                 so_reuseport: bool = False, blocking: bool = False, use_papa: bool = False) -> None:
        if use_papa:
            raise ValueError(f"CircusSocket({name!r}): use_papa is not supported here")
        if not isinstance(family, str):
            family = _name_of(int(family), "AF_", "AF_INET")
        if not isinstance(type, str):
            type = _name_of(int(type), "SOCK_", "SOCK_STREAM")
        if not isinstance(proto, str):
            proto = _proto_name(int(proto)) if proto else ""
        items = {"host": host, "port": port, "path": path, "family": family.upper(),
                 "type": type.upper(), "proto": proto or None, "backlog": backlog,
                 "umask": umask, "replace": replace, "interface": interface,
                 "so_reuseport": so_reuseport, "blocking": blocking}
        config = _parse(_ini(f"socket:{name}", items), f"CircusSocket({name!r})")
        self._own_cfg: SocketConfig = config.sockets[0]
        self._registry: Any = None

    @property
    def _bound(self) -> Any:     # type: ignore[override]
        if self._registry is None:
            return None
        return next((b for b in self._registry.bound() if b.name == self._own_cfg.name), None)

    @classmethod
    def load_from_config(cls, config: Mapping[str, Any]) -> "CircusSocket":
        return cls(**dict(config))


def _proto_name(number: int) -> str:
    for name in ("tcp", "udp", "sctp", "icmp"):
        try:
            if socket.getprotobyname(name) == number:
                return name
        except OSError:
            continue
    raise ValueError(f"unknown protocol number {number}")


def _plugin_section(plugin: Mapping[str, Any]) -> str:
    plugin = dict(plugin)
    use = plugin.pop("use", None)
    if not use:
        raise ValueError(f"plugin {plugin!r}: 'use' (the plugin class) is required")
    name = str(plugin.pop("name", None) or use.replace(".", "-"))
    return _ini(f"plugin:{name}", {"use": use, **plugin})


def build_config(circus: Mapping[str, Any], watchers: Iterable[Watcher],
                 sockets: Iterable[CircusSocket], plugins: Iterable[Mapping[str, Any]]) -> Config:
    """The whole configuration of a Python-made arbiter: the [circus] options (checked as the
    INI file's are, security rules included), its sockets, plugins (and circusd-stats) and
    watchers."""
    sockets = list(sockets)
    text = _ini("circus", circus)
    for sock in sockets:
        cfg = sock._own_cfg
        text += _ini(f"socket:{cfg.name}", {f.name: getattr(cfg, f.name)
                                            for f in dataclasses.fields(SocketConfig)
                                            if f.name != "name"})
    for plugin in plugins:
        text += _plugin_section(plugin)
    config = _parse(text, "arbiter")
    mine: list[WatcherConfig] = [w._cfg for w in watchers]
    names = [w.name.lower() for w in (*config.watchers, *mine)]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise ValueError(f"arbiter: two watchers are called {', '.join(map(repr, twice))}")
    return dataclasses.replace(config, watchers=tuple(sorted(
        (*config.watchers, *mine), key=lambda w: w.name.lower())))


def circus_options(**values: Any) -> dict[str, Any]:
    """[circus] items from 0.19's arbiter keywords (None: the default)."""
    umask = values.get("umask")
    if isinstance(umask, int):
        values["umask"] = format(umask, "o")
    for key in ("loglevel",):
        if isinstance(values.get(key), str):
            values[key] = values[key].lower()
    known = {f.name for f in dataclasses.fields(CircusOptions)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ValueError(f"arbiter: unknown option(s) {', '.join(unknown)}")
    return values
