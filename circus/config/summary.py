"""A human summary of a Config, printed by `circusd --check-config`."""

from __future__ import annotations

import signal

from .schema import CircusOptions, Config, WatcherConfig

__all__ = ["summarize"]


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:  # real-time signals other than SIGRTMIN/SIGRTMAX have no name
        return str(number)


def _watcher_line(w: WatcherConfig) -> str:
    args = " ".join(w.args) if isinstance(w.args, tuple) else w.args
    command = f"{w.cmd} {args}".replace("\n", " ").strip()
    flags = [f"numprocesses={w.numprocesses}", f"priority={w.priority}",
             f"restart={w.restart_policy}"]
    if not w.autostart:
        flags.append("autostart=off")
    if w.singleton:
        flags.append("singleton")
    if w.stop_signal != signal.SIGTERM:
        flags.append(f"stop_signal={_signal_name(w.stop_signal)}")
    if w.use_sockets:
        flags.append("sockets=" + (",".join(w.sockets) or "all"))
    if w.listen_fds:
        flags.append("listen_fds")
    if w.ready:
        flags.append(f"ready={w.ready}".replace("\n", " "))
    if w.health:
        flags.append(f"health={w.health}".replace("\n", " "))
    if w.depends_on:
        flags.append("depends_on=" + ",".join(
            name if condition == "ready" else f"{name}:{condition}"
            for name, condition in w.depends_on))
    return f"  {w.name}: {command}  [{', '.join(flags)}]"


def _security_line(c: CircusOptions) -> str:
    if c.curve_secret_key:
        return f"security: CURVE, node key {c.curve_secret_key}, client keys in {c.curve_clients}"
    if c.insecure:
        return "security: none, insecure = true (endpoints reachable from the network are open)"
    return "security: none (every endpoint is loopback or ipc://)"


def summarize(cfg: Config) -> str:
    """Endpoints, watchers (command, process count), sockets and plugins, one per line."""
    c = cfg.circus
    lines = [
        f"configuration: {cfg.source}"
        + (f" (+{len(cfg.files) - 1} included)" if len(cfg.files) > 1 else ""),
        f"node: {c.name or '(host name)'}",
        f"endpoints: control {c.endpoint}, pubsub {c.pubsub_endpoint}"
        + (f", stats {c.stats_endpoint}" if c.statsd else "")
        + (f", multicast {c.multicast_endpoint}" if c.multicast_endpoint else ""),
        _security_line(c),
        *([f"not strict (--no-strict or strict = false): {len(cfg.warnings)} warning(s), "
           "printed above"] if cfg.warnings else []),
        f"watchers ({len(cfg.watchers)}):",
        *(_watcher_line(w) for w in cfg.watchers),
        f"sockets ({len(cfg.sockets)}):",
    ]
    for s in cfg.sockets:
        where = s.path if s.path else f"{s.host}:{s.port}"
        lines.append(f"  {s.name}: {s.family} {s.type} {where}")
    lines.append(f"plugins ({len(cfg.plugins)}):")
    lines += [f"  {p.name}: {p.use}" for p in cfg.plugins]
    if cfg.notifications:
        lines.append(f"notifications ({len(cfg.notifications)}):")
        for n in cfg.notifications:
            what = [f"events={','.join(n.events)}"] if n.events else []
            what += [f"match={n.match}"] if n.match else []
            what += [f"watchers={','.join(n.watchers) or 'all'}", f"throttle={n.throttle:g}s"]
            lines.append(f"  {n.name}: {_destination(n.destination)}  [{', '.join(what)}]")
    if cfg.tools:
        lines.append(f"tools ({len(cfg.tools)}):")
        lines += [f"  {t.name}: {t.cmd}" + (f"  ({t.description})" if t.description else "")
                  for t in cfg.tools]
    return "\n".join(lines)


def _destination(text: str) -> str:
    """A destination without what may be secret (a webhook's path and query hold tokens)."""
    if text.lower().startswith(("http://", "https://")):
        scheme, _, rest = text.partition("://")
        return f"{scheme}://{rest.split('/', 1)[0]}/..."
    return text
