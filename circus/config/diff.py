"""What `reload` has to do: the pure difference between two Configs (no I/O, no clock).

`diff(old, new)` returns a `ReloadPlan`; `plan.steps(old, new)` lists the actions to apply it, in
dependency order; `plan.describe()` is what `circusctl reload --dry-run` prints; `plan.to_dict()`
/ `ReloadPlan.from_dict()` carry it over the wire.

Better than 0.19's reloadconfig: `[circus]` changes are reported (and applied by the caller), and
a watcher that uses a changed or removed socket is recreated even if its own section is the same.

Rules:
- Watchers and plugins are matched by lower-cased name; a change of spelling alone is no change.
  Sockets are already lower-cased by the loader. Names in the plan are spelled as in the config
  they come from (`new` for added, changed and resized ones, `old` for removed ones) and sorted
  case-insensitively.
- A watcher whose only difference is `numprocesses` is *resized* (live). Any other difference,
  or a socket it uses (old or new definition) being changed or removed, makes it *changed*:
  stopped, recreated and started. A watcher uses a socket when it inherits the sockets
  (`use_sockets`, with `sockets` listing them, empty meaning all), names it as `stdin_socket`, or
  refers to `$(circus.sockets.NAME)` / `((circus.sockets.NAME))` in cmd, args or shell_args.
  An *added* socket does not restart watchers: each new process gets the current sockets.
- `env_changed` tells that the global `[env]` differs; it drives no step of its own, since the
  watchers' merged environments are compared field by field.
- Notifications and tools are simply replaced: `notifications_changed` / `tools_changed` name the
  sections added, removed or changed (one `apply_notifications` / `apply_tools` step each).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, fields
from typing import Any

from .plugin_watchers import PLUGIN_CIRCUS_KEYS, PLUGIN_PREFIX, is_plugin_watcher
from .schema import CircusOptions, Config, NotifyConfig, PluginConfig, SocketConfig, ToolConfig, WatcherConfig

__all__ = ["ReloadPlan", "Step", "STEP_ACTIONS", "changed_fields", "diff"]

STEP_ACTIONS = frozenset({
    "stop_watcher", "remove_watcher", "remove_socket", "rebind_socket", "add_socket",
    "resize_watcher", "add_watcher", "start_watcher", "restart_plugin", "add_plugin",
    "remove_plugin", "apply_circus", "apply_notifications", "apply_tools",
})

_SOCKET_REF = re.compile(
    r"\$\(circus\.sockets\.(?P<a>[\w.-]+)\)|\(\(circus\.sockets\.(?P<b>[\w.-]+)\)\)",
    re.IGNORECASE,
)

Names = tuple[str, ...]
ValueChange = tuple[str, Any, Any]  # (option, old value, new value)


@dataclass(frozen=True)
class Step:
    """One action of a reload, in the order `ReloadPlan.steps` gives."""

    action: str
    name: str
    detail: str = ""

    def __post_init__(self) -> None:
        if self.action not in STEP_ACTIONS:
            raise ValueError(f"unknown reload step action {self.action!r}")

    def to_dict(self) -> dict[str, str]:
        return {"action": self.action, "name": self.name, "detail": self.detail}


@dataclass(frozen=True)
class ReloadPlan:
    """The difference between two configurations, as reload applies it.

    The `*_added/removed/changed` fields are sorted names. The detail fields, one entry per
    changed item and in the same order, say why: `watcher_fields` the watcher's own changed
    options, `watcher_sockets` the used sockets that changed or were removed, `socket_fields`
    (option, old, new) per changed socket option, `plugin_fields` the plugin's changed options.
    """

    watchers_added: Names = ()
    watchers_removed: Names = ()
    watchers_changed: Names = ()
    watchers_resized: tuple[tuple[str, int, int], ...] = ()
    sockets_added: Names = ()
    sockets_removed: Names = ()
    sockets_changed: Names = ()
    plugins_added: Names = ()
    plugins_removed: Names = ()
    plugins_changed: Names = ()
    circus_changed: tuple[ValueChange, ...] = ()
    env_changed: bool = False
    watcher_fields: tuple[tuple[str, Names], ...] = ()
    watcher_sockets: tuple[tuple[str, Names], ...] = ()
    socket_fields: tuple[tuple[str, tuple[ValueChange, ...]], ...] = ()
    plugin_fields: tuple[tuple[str, Names], ...] = ()
    notifications_changed: Names = ()
    tools_changed: Names = ()

    @property
    def empty(self) -> bool:
        """True when the two configurations do not differ at all (env_changed included)."""
        return not any(getattr(self, f.name) for f in fields(self))

    # -- wire ------------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """A JSON-safe dict (lists, dicts and plain values); `from_dict` reverses it."""
        own, socks = dict(self.watcher_fields), dict(self.watcher_sockets)
        sock, plug = dict(self.socket_fields), dict(self.plugin_fields)
        return {
            "watchers_added": list(self.watchers_added),
            "watchers_removed": list(self.watchers_removed),
            "watchers_changed": [
                {"name": name, "fields": list(own.get(name, ())),
                 "sockets": list(socks.get(name, ()))}
                for name in self.watchers_changed
            ],
            "watchers_resized": [{"name": n, "old": a, "new": b}
                                 for n, a, b in self.watchers_resized],
            "sockets_added": list(self.sockets_added),
            "sockets_removed": list(self.sockets_removed),
            "sockets_changed": [
                {"name": name, "changes": [_change_dict(c) for c in sock.get(name, ())]}
                for name in self.sockets_changed
            ],
            "plugins_added": list(self.plugins_added),
            "plugins_removed": list(self.plugins_removed),
            "plugins_changed": [{"name": name, "fields": list(plug.get(name, ()))}
                                for name in self.plugins_changed],
            "circus_changed": [_change_dict(c) for c in self.circus_changed],
            "env_changed": self.env_changed,
            "notifications_changed": list(self.notifications_changed),
            "tools_changed": list(self.tools_changed),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ReloadPlan:
        """The plan `to_dict` described (e.g. received by `circusctl reload --dry-run`)."""
        watchers = data.get("watchers_changed", [])
        sockets = data.get("sockets_changed", [])
        plugins = data.get("plugins_changed", [])
        return cls(
            watchers_added=tuple(data.get("watchers_added", ())),
            watchers_removed=tuple(data.get("watchers_removed", ())),
            watchers_changed=tuple(w["name"] for w in watchers),
            watchers_resized=tuple((r["name"], r["old"], r["new"])
                                   for r in data.get("watchers_resized", ())),
            sockets_added=tuple(data.get("sockets_added", ())),
            sockets_removed=tuple(data.get("sockets_removed", ())),
            sockets_changed=tuple(s["name"] for s in sockets),
            plugins_added=tuple(data.get("plugins_added", ())),
            plugins_removed=tuple(data.get("plugins_removed", ())),
            plugins_changed=tuple(p["name"] for p in plugins),
            circus_changed=tuple(_change_tuple(c) for c in data.get("circus_changed", ())),
            env_changed=bool(data.get("env_changed", False)),
            watcher_fields=tuple((w["name"], tuple(w["fields"])) for w in watchers),
            watcher_sockets=tuple((w["name"], tuple(w["sockets"])) for w in watchers),
            socket_fields=tuple((s["name"], tuple(_change_tuple(c) for c in s["changes"]))
                                for s in sockets),
            plugin_fields=tuple((p["name"], tuple(p["fields"])) for p in plugins),
            notifications_changed=tuple(data.get("notifications_changed", ())),
            tools_changed=tuple(data.get("tools_changed", ())),
        )

    # -- humans ----------------------------------------------------------------------------------
    def describe(self) -> list[str]:
        """One line per difference, e.g. `~ watcher api: cmd, env changed (restart)`."""
        if self.empty:
            return ["no change"]
        lines = [f"+ watcher {n} (added)" for n in self.watchers_added]
        lines += [f"- watcher {n} (removed)" for n in self.watchers_removed]
        own, socks = dict(self.watcher_fields), dict(self.watcher_sockets)
        for name in self.watchers_changed:
            why = [", ".join(own[name]) + " changed"] if own.get(name) else []
            why += [f"socket {s} {'removed' if s in self.sockets_removed else 'changed'}"
                    for s in socks.get(name, ())]
            lines.append(f"~ watcher {name}: {'; '.join(why) or 'changed'} (restart)")
        lines += [f"= watcher {n}: numprocesses {a} -> {b} (resize)"
                  for n, a, b in self.watchers_resized]
        lines += [f"+ socket {n} (added)" for n in self.sockets_added]
        lines += [f"- socket {n} (removed)" for n in self.sockets_removed]
        sock = dict(self.socket_fields)
        lines += [f"~ socket {name}: {_changes_text(sock.get(name, ())) or 'changed'}"
                  for name in self.sockets_changed]
        lines += [f"+ plugin {n} (added)" for n in self.plugins_added]
        lines += [f"- plugin {n} (removed)" for n in self.plugins_removed]
        plug = dict(self.plugin_fields)
        for name in self.plugins_changed:
            own = plug.get(name, ())
            lines.append(f"~ plugin {name}: {', '.join(own) + ' changed' if own else 'changed'}"
                         " (restart)")
        lines += [f"~ [circus] {key}: {_show(a)} -> {_show(b)}"
                  for key, a, b in self.circus_changed]
        if self.env_changed:
            lines.append("~ [env] changed (see the watchers' env)")
        lines += [f"~ notify {n} (replaced)" for n in self.notifications_changed]
        lines += [f"~ tool {n} (replaced)" for n in self.tools_changed]
        return lines

    # -- applying --------------------------------------------------------------------------------
    def steps(self, old: Config, new: Config) -> list[Step]:
        """The actions that apply this plan (computed from `old` to `new`), in order:

        1. remove_plugin for removed plugins; stop_watcher + remove_watcher for removed and
           changed watchers, in stop order (priority ascending, then name; old priorities);
        2. apply_circus when `[circus]` options changed (before anything is bound or started);
        3. remove_socket (removed), rebind_socket (changed), add_socket (added);
        4. resize_watcher;
        5. add_watcher (+ start_watcher when autostart) for changed and added watchers, in start
           order (priority descending, then name; new priorities);
        6. restart_plugin (changed) and add_plugin (added), in start order;
        7. apply_notifications, apply_tools when any of them changed.
        """
        old_w, new_w = _watchers(old), _watchers(new)
        old_p, new_p = _by_name(old.plugins), _by_name(new.plugins)
        out: list[Step] = []

        removed_p = sorted(self.plugins_removed, key=lambda n: _stop_key(_get(old_p, n, "plugin")))
        out += [Step("remove_plugin", n, "removed") for n in removed_p]
        going = [(n, "removed") for n in self.watchers_removed]
        going += [(n, "changed") for n in self.watchers_changed]
        going.sort(key=lambda item: _stop_key(_get(old_w, item[0], "watcher")))
        for name, why in going:
            out += [Step("stop_watcher", name, why), Step("remove_watcher", name, why)]

        if self.circus_changed:
            keys = ", ".join(key for key, _, _ in self.circus_changed)
            out.append(Step("apply_circus", "circus", keys))

        out += [Step("remove_socket", n, "removed") for n in self.sockets_removed]
        sock = dict(self.socket_fields)
        out += [Step("rebind_socket", n, _changes_text(sock.get(n, ())))
                for n in self.sockets_changed]
        out += [Step("add_socket", n, "added") for n in self.sockets_added]

        out += [Step("resize_watcher", n, f"{a} -> {b}") for n, a, b in self.watchers_resized]

        coming = [(n, "changed") for n in self.watchers_changed]
        coming += [(n, "added") for n in self.watchers_added]
        coming.sort(key=lambda item: _start_key(_get(new_w, item[0], "watcher")))
        for name, why in coming:
            out.append(Step("add_watcher", name, why))
            if _get(new_w, name, "watcher").autostart:
                out.append(Step("start_watcher", name, why))

        plug = dict(self.plugin_fields)
        plugins = [(n, "restart_plugin", ", ".join(plug.get(n, ()))) for n in self.plugins_changed]
        plugins += [(n, "add_plugin", "added") for n in self.plugins_added]
        plugins.sort(key=lambda item: _start_key(_get(new_p, item[0], "plugin")))
        out += [Step(action, name, detail) for name, action, detail in plugins]
        if self.notifications_changed:
            out.append(Step("apply_notifications", "notify", ", ".join(self.notifications_changed)))
        if self.tools_changed:
            out.append(Step("apply_tools", "tools", ", ".join(self.tools_changed)))
        return out


# -- the diff ------------------------------------------------------------------------------------

def changed_fields(old: Any, new: Any) -> tuple[str, ...]:
    """Names of the options (schema order) that differ between two instances of one schema class
    (WatcherConfig, SocketConfig, PluginConfig, CircusOptions). A watcher's, socket's or plugin's
    `name` is its identity and is not compared; `[circus] name` (the node name) is an option."""
    if type(old) is not type(new):
        raise TypeError(f"cannot compare {type(old).__name__} with {type(new).__name__}")
    identity = "" if isinstance(old, CircusOptions) else "name"
    return tuple(f.name for f in fields(old)
                 if f.name != identity and getattr(old, f.name) != getattr(new, f.name))


def diff(old: Config, new: Config) -> ReloadPlan:
    """The ReloadPlan that turns the running configuration `old` into `new`."""
    # sockets
    old_s, new_s = _by_name(old.sockets), _by_name(new.sockets)
    sockets_changed = {k: own for k in sorted(old_s.keys() & new_s.keys())
                       if (own := changed_fields(old_s[k], new_s[k]))}
    sockets_removed = set(old_s.keys() - new_s.keys())
    troubled = sockets_removed | set(sockets_changed)

    # watchers (a plugin's own watcher, "plugin:NAME", is the plugin's business: below)
    old_w, new_w = _watchers(old), _watchers(new)
    changed: list[tuple[str, Names, Names]] = []
    resized: list[tuple[str, int, int]] = []
    for key in sorted(old_w.keys() & new_w.keys()):
        a, b = old_w[key], new_w[key]
        own = changed_fields(a, b)
        used = (_sockets_used(a, old_s.keys()) | _sockets_used(b, new_s.keys())) & troubled
        if used or set(own) - {"numprocesses"}:
            changed.append((b.name, own, tuple(sorted(used))))
        elif own:
            resized.append((b.name, a.numprocesses, b.numprocesses))

    # plugins
    old_p, new_p = _by_name(old.plugins), _by_name(new.plugins)
    plugins_changed = [(new_p[k].name, own) for k in sorted(old_p.keys() & new_p.keys())
                       if (own := changed_fields(old_p[k], new_p[k]) or _runs_differently(old, new, k))]

    return ReloadPlan(
        watchers_added=_names(new_w, new_w.keys() - old_w.keys()),
        watchers_removed=_names(old_w, old_w.keys() - new_w.keys()),
        watchers_changed=tuple(n for n, _, _ in changed),
        watchers_resized=tuple(resized),
        sockets_added=_names(new_s, new_s.keys() - old_s.keys()),
        sockets_removed=_names(old_s, sockets_removed),
        sockets_changed=_names(new_s, sockets_changed),
        plugins_added=_names(new_p, new_p.keys() - old_p.keys()),
        plugins_removed=_names(old_p, old_p.keys() - new_p.keys()),
        plugins_changed=tuple(n for n, _ in plugins_changed),
        circus_changed=tuple((k, getattr(old.circus, k), getattr(new.circus, k))
                             for k in changed_fields(old.circus, new.circus)),
        env_changed=old.env != new.env,
        watcher_fields=tuple((n, own) for n, own, _ in changed),
        watcher_sockets=tuple((n, used) for n, _, used in changed),
        socket_fields=tuple(
            (new_s[k].name, tuple((f, getattr(old_s[k], f), getattr(new_s[k], f)) for f in own))
            for k, own in sockets_changed.items()
        ),
        plugin_fields=tuple(plugins_changed),
        notifications_changed=_replaced(old.notifications, new.notifications),
        tools_changed=_replaced(old.tools, new.tools),
    )


# -- helpers -------------------------------------------------------------------------------------

Named = WatcherConfig | SocketConfig | PluginConfig


def _watchers(config: Config) -> dict[str, WatcherConfig]:
    return _by_name(tuple(w for w in config.watchers if not is_plugin_watcher(w.name)))


def _runs_differently(old: Config, new: Config, plugin: str) -> Names:
    """The `[circus]` options that change how plugin `plugin`'s process runs (its endpoints,
    check_delay, log level): such a plugin is restarted although its section is the same."""
    a = next((w for w in old.watchers if w.name.lower() == PLUGIN_PREFIX + plugin), None)
    b = next((w for w in new.watchers if w.name.lower() == PLUGIN_PREFIX + plugin), None)
    if a is None or b is None or a == b:
        return ()
    return tuple(f"[circus] {key}" for key in changed_fields(old.circus, new.circus)
                 if key in PLUGIN_CIRCUS_KEYS) or ("[circus]",)


def _by_name(items: tuple[Any, ...]) -> dict[str, Any]:
    return {item.name.lower(): item for item in items}


def _names(table: dict[str, Named], keys: Any) -> Names:
    return tuple(table[k].name for k in sorted(keys))


def _get(table: dict[str, Any], name: str, kind: str) -> Any:
    try:
        return table[name.lower()]
    except KeyError:
        raise ValueError(f"{kind} {name!r} is not in the configuration this plan was made "
                         "from") from None


def _stop_key(item: WatcherConfig | PluginConfig) -> tuple[int, str, str]:
    return (item.priority, item.name.lower(), item.name)


def _start_key(item: WatcherConfig | PluginConfig) -> tuple[int, str, str]:
    return (-item.priority, item.name.lower(), item.name)


def _replaced(old: tuple[NotifyConfig | ToolConfig, ...],
              new: tuple[NotifyConfig | ToolConfig, ...]) -> Names:
    """Names of the sections added, removed or changed between `old` and `new`."""
    a, b = _by_name(old), _by_name(new)
    return tuple(sorted(k for k in a.keys() | b.keys() if a.get(k) != b.get(k)))


def _sockets_used(w: WatcherConfig, sockets: Any) -> set[str]:
    """Lower-cased names of the sockets (among `sockets`) that watcher `w` uses."""
    used: set[str] = set()
    if w.use_sockets:
        used |= {s.lower() for s in w.sockets} if w.sockets else set(sockets)
    if w.stdin_socket:
        used.add(w.stdin_socket.lower())
    args = w.args if isinstance(w.args, str) else " ".join(w.args)
    for text in (w.cmd, args, w.shell_args or ""):
        used |= {(m.group("a") or m.group("b")).lower() for m in _SOCKET_REF.finditer(text)}
    return used


def _jsonable(value: Any) -> Any:
    if isinstance(value, (tuple, list)):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    return value


def _change_dict(change: ValueChange) -> dict[str, Any]:
    key, old, new = change
    return {"name": key, "old": _jsonable(old), "new": _jsonable(new)}


def _tupled(value: Any) -> Any:
    return tuple(_tupled(v) for v in value) if isinstance(value, list) else value


def _change_tuple(data: dict[str, Any]) -> ValueChange:
    return (data["name"], _tupled(data["old"]), _tupled(data["new"]))


def _show(value: Any) -> str:
    if value is None:
        return "(unset)"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (tuple, list)):
        return " ".join(str(v) for v in value) or "(none)"
    if value == "":
        return '""'
    return str(value)


def _changes_text(changes: tuple[ValueChange, ...]) -> str:
    return ", ".join(f"{key} {_show(a)} -> {_show(b)}" for key, a, b in changes)
