"""From merged INI sections to a typed Config (pure: no I/O, environment passed in).

Section kinds: [circus], [env], [env:PATTERNS], [watcher:NAME], [socket:NAME], [plugin:NAME],
[notify:NAME], [tool:NAME]; anything else is an error. Sections without options are skipped (as 0.19).

Substitution of `$(circus.env.X)` happens in every value, from environ < [env] < (for watcher
sections) the matching [env:PATTERNS] sections in file order. Environment values first get
`$VAR` / `${VAR}` expanded from environ. A `$(circus.env.X)` of a variable set nowhere is left
as written, as 0.19 did, and reported (lenient).

What Circus 0.19 silently ignored (an unknown section kind, an unknown key of [circus], of a
watcher or of a socket, a socket reference to no [socket:NAME]) is reported as a lenient
``IGNORED`` issue, and the rest is built without it; what made 0.19 drop a watcher at boot is a
``DROPPED`` issue and no watcher (see errors.py). The sections 0.19 did not have ([notify:],
[tool:]) are strict.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Mapping
from dataclasses import MISSING, fields, replace
from fnmatch import fnmatchcase
from typing import Any

from circus.protocol.limits import MAX_NUMPROCESSES, MAX_WATCHERS, name_problem, numprocesses_problem

from .errors import IGNORED, Issues, did_you_mean
from .ini import IniSection, IniValue
from .schema import CircusOptions, Config, NotifyConfig, PluginConfig, SocketConfig, ToolConfig, WatcherConfig
from .resolve import DottedRef
from .stream_options import builtin_stream_name
from .security import check_security, resolve_paths
from .stats_watcher import stats_watcher
from .substitute import expand_vars, lower_keys, substitute_env, unresolved_env
from .watcher import Collector, Report, assemble_watcher

__all__ = ["build_config"]

_KINDS = ("circus", "env", "watcher", "socket", "plugin", "notify", "tool")
_NAMED = ("watcher", "socket", "plugin", "notify", "tool")
_TOPIC_NAME = re.compile(r"[A-Za-z0-9_-]+")  # notify and tool names appear in event topics
_SMTP_ONLY = ("from", "to", "starttls", "username", "password")
_SOCKET_REF = re.compile(r"(?:\$\(|\(\()circus\.sockets\.([\w.-]+)\)\)?", re.IGNORECASE)


class _Builder:
    def __init__(self, sections: Mapping[str, IniSection], environ: Mapping[str, str],
                 issues: Issues) -> None:
        self.environ = environ
        self.issues = issues
        self.circus: IniSection | None = None
        self.global_env: IniSection | None = None
        self.env_sections: list[tuple[tuple[str, ...], IniSection]] = []
        self.named: dict[str, list[tuple[str, IniSection]]] = {kind: [] for kind in _NAMED}
        self.max_numprocesses = MAX_NUMPROCESSES
        self.refs: list[DottedRef] = []   # the dotted paths to import (resolve.py)
        for section in sections.values():
            if section.values:
                self.classify(section)

    def reporter(self, section: IniSection) -> Report:
        def report(where: Any, key: str | None, reason: str, lenient: str | None = None) -> None:
            where = where or section
            self.issues.add(where.file, where.line, section.header, key, reason, lenient)

        return report

    def classify(self, section: IniSection) -> None:
        header = section.header
        kind, colon, rest = header.partition(":")
        name = rest.strip()
        report = self.reporter(section)
        if kind == "circus" and not colon:
            self.circus = section
        elif kind == "env" and not colon:
            self.global_env = section
        elif kind == "env":
            patterns = tuple(p.strip().lower() for p in rest.split(",") if p.strip())
            if not patterns:
                report(None, None, "an [env:PATTERNS] section needs at least one pattern")
            self.env_sections.append((patterns, section))
        elif kind in _NAMED and colon and name:
            self.named[kind].append((name, section))
        elif kind in _NAMED or kind in ("circus", "env"):
            report(None, None, f"malformed section name; expected [{kind}:NAME]" if kind in _NAMED
                   else f"malformed section name; expected [{kind}]")
        else:  # 0.19 skipped the sections it did not know
            hint = did_you_mean(kind, _KINDS)
            report(None, None, f"unknown section kind {kind!r}{hint}; expected one of "
                   "circus, env, env:PATTERNS, watcher:NAME, socket:NAME, plugin:NAME, notify:NAME, "
                   "tool:NAME", lenient=IGNORED)

    # -- environment -------------------------------------------------------------------------
    def expanded(self, section: IniSection | None) -> dict[str, str]:
        if section is None:
            return {}
        return {v.key: expand_vars(v.value, self.environ) for v in section.values.values()}

    def env_for(self, watcher: str | None) -> tuple[dict[str, str], dict[str, str]]:
        """(the environment of a watcher, or the global [env]; the substitution context).

        The context is case-insensitive, so it is merged layer by layer: a later layer wins even
        when the spelling differs (`port` in [env], `PORT` in [env:web]).
        """
        layers = [self.expanded(self.global_env)]
        if watcher is not None:
            layers += [self.expanded(section) for patterns, section in self.env_sections
                       if any(fnmatchcase(watcher.lower(), p) for p in patterns)]
        raw = {k: str(v) for k, v in lower_keys(self.environ, *layers).items()}
        layers = [{k: substitute_env(v, raw) for k, v in layer.items()} for layer in layers]
        env: dict[str, str] = {}
        for layer in layers:
            env.update(layer)
        context = {k: str(v) for k, v in lower_keys(self.environ, *layers).items()}
        return env, context

    # -- sections ----------------------------------------------------------------------------
    def items(self, section: IniSection,
              context: Mapping[str, str]) -> list[tuple[str, str, IniValue]]:
        report = self.reporter(section)
        for v in section.values.values():
            for name in unresolved_env(v.value, context):
                report(v, v.key, f"$(circus.env.{name}): {name} is set neither in circusd's "
                       "environment nor in an [env] section; the text is left as written",
                       lenient=IGNORED)
        return [(v.key, substitute_env(v.value, context), v) for v in section.values.values()]

    def unique(self, kind: str, fold: bool) -> list[tuple[str, IniSection]]:
        """Named sections of `kind`, without names that differ only in case from an earlier one."""
        seen: dict[str, IniSection] = {}
        kept = []
        for name, section in self.named[kind]:
            first = seen.setdefault(name.lower(), section)
            if first is not section:
                self.reporter(section)(
                    None, None, f"duplicate {kind} name: same as [{first.header}] at "
                    f"{first.file}:{first.line} except for case")
                continue
            kept.append((name.lower() if fold else name, section))
        return kept

    def circus_options(self) -> CircusOptions:
        if self.circus is None:
            return CircusOptions()
        report = self.reporter(self.circus)
        col = Collector(CircusOptions, "text", report)
        for key, value, where in self.items(self.circus, self.env_for(None)[1]):
            if not col.feed(key, value, where):
                col.unknown(key, where)
        values = col.good()
        where_of = lambda key: _where(self.circus, key)  # noqa: E731
        resolve_paths(values, where_of)
        check_security(values, CircusOptions, where_of, report)
        if col.given("stats_endpoint") and not col.given("statsd"):
            values["statsd"] = True  # 0.19: an explicit stats endpoint turns the stats on
        return CircusOptions(**values)

    def socket(self, name: str, section: IniSection) -> SocketConfig | None:
        report = self.reporter(section)
        col = Collector(SocketConfig, "text", report)
        for key, value, where in self.items(section, self.env_for(None)[1]):
            if not col.feed(key, value, where):
                col.unknown(key, where)
        values = col.good()
        if values.get("path"):
            if values.setdefault("family", "AF_UNIX") != "AF_UNIX":
                report(col.where["family"], "family", "a socket with a path is AF_UNIX")
                return None
        elif values.get("family") == "AF_UNIX":
            report(col.where["family"], "family", "AF_UNIX needs a path")
            return None
        return SocketConfig(name=name, **values) if col.ok else None

    def plugin(self, name: str, section: IniSection) -> PluginConfig | None:
        report = self.reporter(section)
        col = Collector(PluginConfig, "text", report)
        options: dict[str, str] = {}
        for key, value, where in self.items(section, self.env_for(None)[1]):
            if not col.feed(key, value, where):
                options.setdefault(key, value)
        col.check_required(section)
        if not (col.ok and "use" in col.values):
            return None
        return PluginConfig(name=name, options=options, **col.good())

    def simple(self, cls: type, name: str, section: IniSection) -> tuple[bool, dict[str, Any]]:
        """(all good, the converted values) of a section whose keys are plain options of `cls`,
        and whose name appears in event topics (a section kind of ours: no key is lenient)."""
        report = self.reporter(section)
        col = Collector(cls, "text", report)
        ok = bool(_TOPIC_NAME.fullmatch(name))
        if not ok:
            report(None, None, "a name may only have letters, digits, '_' and '-'")
        for key, value, where in self.items(section, self.env_for(None)[1]):
            if not col.feed(key, value, where):
                col.unknown(key, where, lenient=None)
                ok = False
        col.check_required(section)
        values = col.good()
        required = {f.name for f in fields(cls) if f.default is MISSING and f.name != "name"}
        return ok and col.ok and required <= values.keys(), values

    def notification(self, name: str, section: IniSection,
                     watchers: dict[str, str]) -> NotifyConfig | None:
        ok, values = self.simple(NotifyConfig, name, section)
        report = self.reporter(section)
        given = [key for key in ("match", "events") if _where(section, key) is not None]
        if not values.get("match") and not values.get("events") and \
                all(key in values for key in given):
            report(None, None, "nothing to notify: set match = REGEX and/or events = "
                   "fatal, backoff, unhealthy, restart")
            ok = False
        for watcher in values.get("watchers", ()):
            if watcher not in watchers:
                hint = did_you_mean(watcher, watchers)
                report(_where(section, "watchers"), "watchers", f"unknown watcher {watcher!r}{hint}")
                ok = False
        dest = values.get("destination", "")
        if dest.lower().startswith(("smtp://", "smtps://")):
            for key in ("from", "to"):
                if _where(section, key) is None:
                    report(None, key, f"missing required option (for {dest})")
                    ok = False
            if values.get("starttls") and dest.lower().startswith("smtps://"):
                report(_where(section, "starttls"), "starttls",
                       "smtps:// is TLS from the start; STARTTLS is for smtp://")
                ok = False
            if bool(values.get("username")) != bool(values.get("password")):
                key = "password" if values.get("username") else "username"
                report(None, key, "username and password go together")
                ok = False
        elif dest:
            for key in _SMTP_ONLY:
                if _where(section, key) is not None:
                    report(_where(section, key), key, "only for smtp:// and smtps:// destinations")
                    ok = False
        if not ok:
            return None
        values["watchers"] = tuple(watchers[w] for w in values.get("watchers", ()))
        return NotifyConfig(name=name, **values)

    def tool(self, name: str, section: IniSection) -> ToolConfig | None:
        ok, values = self.simple(ToolConfig, name, section)
        if not ok:
            return None
        return ToolConfig(name=name, **values)

    def watcher(self, name: str, section: IniSection, sockets: set[str]) -> WatcherConfig | None:
        env, context = self.env_for(name)
        report = self.reporter(section)
        problem = name_problem(name, "watcher name")
        if problem:
            report(None, None, problem)
            return None
        items = self.items(section, context)
        watcher = assemble_watcher(name, items, "text", report, env, section,
                                   env_section=f"env:{name}")
        if watcher is None:
            return None
        ok = True
        problem = numprocesses_problem(watcher.numprocesses, self.max_numprocesses)
        if problem:
            report(_where(section, "numprocesses"), "numprocesses", problem)
            ok = False
        refs = [("sockets", s) for s in watcher.sockets]
        refs += [("stdin_socket", watcher.stdin_socket)] if watcher.stdin_socket else []
        texts = {"cmd": watcher.cmd, "args": str(watcher.args), "ready": watcher.ready or "",
                 "health": watcher.health or ""}
        for key, text in texts.items():
            refs += [(key, ref.lower()) for ref in _SOCKET_REF.findall(text)]
        for key, ref in refs:
            if ref in sockets:
                continue
            hint = did_you_mean(ref, sockets)
            if key in ("sockets", "stdin_socket"):  # every spawn would fail
                report(_where(section, key), key, f"unknown socket {ref!r}{hint}")
                ok = False
            else:  # 0.19 left $(circus.sockets.NAME) as written (no fd for it)
                report(_where(section, key), key, f"unknown socket {ref!r}{hint}; no "
                       "[socket:NAME] has that name, the reference is left as written",
                       lenient=IGNORED)
        if watcher.listen_fds and not sockets:
            report(_where(section, "listen_fds"), "listen_fds",
                   "no [socket:NAME] section is defined")
            ok = False
        return watcher if ok else None

    def collect_refs(self, watchers: list[WatcherConfig], sections: Mapping[str, IniSection],
                     plugins: list[PluginConfig], plugin_sections: Mapping[str, IniSection]
                     ) -> None:
        """The dotted paths of the plugins and of the watchers that were built, with where each
        one is written (resolve.py imports them)."""
        def add(kind: str, target: str, section: IniSection, key: str, watcher: str | None,
                paths: tuple[str, ...] = ()) -> None:
            where = _where(section, key) or section
            self.refs.append(DottedRef(kind, target, where.file, where.line, section.header,
                                       getattr(where, "key", key), watcher, paths))

        for plugin in plugins:
            section = plugin_sections.get(plugin.name)
            if section is not None:
                add("plugin", plugin.use, section, "use", None)
        for w in watchers:
            section = sections.get(w.name.lower())
            if section is None:
                continue
            for name in ("stdout_stream", "stderr_stream"):
                cls = (getattr(w, name) or {}).get("class", "")
                if ("." in cls or ":" in cls) and builtin_stream_name(cls) == cls:
                    add("stream", cls, section, f"{name}.class", w.name)
            # resolved as circus.hooks does at run time: circusd's sys.path only (0.19 also
            # searched the watcher's PYTHONPATH; see resolve.py)
            for point, (target, _) in sorted(w.hooks.items()):
                if not target.startswith("exec:"):
                    add("hook", target, section, f"hooks.{point}", w.name)

    def dependencies(self, watchers: list[tuple[str, WatcherConfig | None, IniSection]]
                     ) -> dict[str, WatcherConfig]:
        """Check every depends_on against the other watchers: defined (spelled as defined in the
        result), `completed` only on a watcher that exits for good, no cycle. Returns the
        watchers that were built, by lower-cased name, with depends_on names respelled."""
        defined = {name.lower(): name for name, _, _ in watchers}  # built or not
        built = {name.lower(): w for name, w, _ in watchers if w}
        sections = {name.lower(): section for name, _, section in watchers}
        graph: dict[str, list[str]] = {}
        for key, w in list(built.items()):
            report = self.reporter(sections[key])
            where = _where(sections[key], "depends_on")
            deps = []
            for dep, condition in w.depends_on:
                target = defined.get(dep.lower())
                if target is None:
                    hint = did_you_mean(dep, defined)
                    report(where, "depends_on", f"unknown watcher {dep!r}{hint}")
                    continue
                other = built.get(dep.lower())
                if condition == "completed" and other and other.restart_policy == "always":
                    report(where, "depends_on", f"'{dep}:completed' needs a watcher that exits "
                           f"for good, but [watcher:{target}] has restart_policy = always "
                           "(use never or on-failure)")
                deps.append((target, condition))
                if other is not None and dep.lower() != key:
                    graph.setdefault(key, []).append(dep.lower())
            if tuple(deps) != w.depends_on:
                built[key] = replace(w, depends_on=tuple(deps))
        for cycle in _cycles(graph):
            start = cycle[0]
            path = " -> ".join(built[n].name for n in (*cycle, start))
            self.reporter(sections[start])(_where(sections[start], "depends_on"), "depends_on",
                                           f"dependency cycle: {path}")
        return built

    def build(self, source: str, files: tuple[str, ...]) -> Config:
        circus = self.circus_options()
        self.max_numprocesses = circus.max_numprocesses
        global_env, _ = self.env_for(None)
        socket_sections = self.unique("socket", fold=True)
        sockets = [self.socket(n, s) for n, s in socket_sections]
        names = {name for name, _ in socket_sections}
        plugin_sections = dict(self.unique("plugin", fold=False))
        plugins = [self.plugin(n, s) for n, s in plugin_sections.items()]
        sections = self.unique("watcher", fold=False)
        if len(sections) > MAX_WATCHERS:
            name, section = sections[MAX_WATCHERS]
            self.reporter(section)(None, None, f"{len(sections)} watchers: at most {MAX_WATCHERS}")
            sections = sections[:MAX_WATCHERS]
        watchers = [(n, self.watcher(n, s, names), s) for n, s in sections]
        built = self.dependencies(watchers)
        defined = {n.lower(): (w.name if w else n) for n, w, _ in watchers}
        notifications = [self.notification(n, s, defined)
                         for n, s in self.unique("notify", fold=True)]
        tools = [self.tool(n, s) for n, s in self.unique("tool", fold=True)]
        plugins = sorted((p for p in plugins if p), key=lambda p: p.name.lower())
        all_watchers = list(built.values())
        sections = {n.lower(): s for n, _, s in watchers}
        self.collect_refs(all_watchers, sections, plugins, plugin_sections)
        helpers = [stats_watcher(circus, sys.executable)]
        # the plugins' and circushttpd's watchers are built by their modules, loaded when the
        # configuration asks for them
        if plugins:
            from .plugin_watchers import plugin_watcher

            helpers += [plugin_watcher(circus, p, sys.executable) for p in plugins]
        if circus.httpd:
            from .httpd_watcher import httpd_watcher

            helpers.append(httpd_watcher(circus, sys.executable, source))
        for helper in (h for h in helpers if h is not None):
            if helper.name.lower() in sections:
                self.reporter(sections[helper.name.lower()])(
                    None, None, f"the name {helper.name!r} is taken by circusd's own helper "
                    "process (circusd-stats, or a [plugin:NAME] section)")
                continue
            all_watchers.append(helper)
        return Config(
            circus=circus,
            watchers=tuple(sorted(all_watchers, key=lambda w: w.name.lower())),
            sockets=tuple(sorted((s for s in sockets if s), key=lambda s: s.name)),
            plugins=tuple(plugins),
            env=global_env,
            source=source,
            files=files,
            notifications=tuple(sorted((n for n in notifications if n), key=lambda n: n.name)),
            tools=tuple(sorted((t for t in tools if t), key=lambda t: t.name)),
        )


def _where(section: IniSection, key: str) -> IniValue | None:
    """Where `key` is set in `section` (None: the section itself)."""
    return next((v for v in section.values.values() if v.key.lower() == key), None)


def _cycles(graph: Mapping[str, list[str]]) -> list[list[str]]:
    """One shortest cycle per strongly connected component of `graph` (edges in listed order),
    each starting at its smallest node; sorted by that node."""
    def reach(start: str) -> set[str]:
        seen: set[str] = set()
        todo = list(graph.get(start, ()))
        while todo:
            node = todo.pop()
            if node not in seen:
                seen.add(node)
                todo += graph.get(node, ())
        return seen

    reachable = {node: reach(node) for node in graph}
    done: set[str] = set()
    cycles = []
    for start in sorted(graph):
        if start in done or start not in reachable[start]:
            continue
        component = {n for n in reachable[start] if start in reachable.get(n, ())}
        done |= component
        parent: dict[str, str] = {}
        queue, found = [start], False
        while queue and not found:
            node = queue.pop(0)
            for nxt in graph.get(node, ()):
                if nxt == start:
                    parent[start], found = node, True
                    break
                if nxt in component and nxt not in parent:
                    parent[nxt] = node
                    queue.append(nxt)
        path, node = [], parent[start]
        while node != start:
            path.append(node)
            node = parent[node]
        cycles.append([start, *reversed(path)])
    return cycles


def build_config(sections: Mapping[str, IniSection], environ: Mapping[str, str],
                 source: str, files: tuple[str, ...], issues: Issues,
                 refs: list[DottedRef] | None = None) -> Config:
    """The Config for merged sections; problems are added to `issues` (the caller raises), the
    dotted paths to import to `refs`."""
    builder = _Builder(sections, environ, issues)
    config = builder.build(source, files)
    if refs is not None:
        refs.extend(builder.refs)
    return config
