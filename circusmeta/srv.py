"""Pools from DNS: each SRV record of a name is a node (``[meta] srv = NAME`` in the pool file,
or ``--pool srv://NAME`` without a file).

::

    _circus._tcp.example.test.  SRV  0 0 5555 web1.example.test.   ; a node: its control port
    web1.example.test.          A    10.0.0.11                      ; its address
    web1.example.test.          TXT  "circus-tags=web,eu" "circus-stats=5557"

The rules (:func:`dns_nodes` is pure; :func:`resolve_pool` asks the server):

- a node per SRV record: control endpoint ``tcp://ADDRESS:PORT``, ADDRESS the target's first A
  record (else AAAA), asked of the same server (ZeroMQ's own resolver could not be pointed at
  it) in a question of its own (see dns.Response); priority and weight are not used: every
  target is a node. A target ``.`` is none.
- its name: the TXT ``circus-node=NAME`` of the target, else the target's first label
  (``web1``). Two records of one name are an error (give each circusd its own target name).
  The nodes come after the pool file's own, in natural order of their names (node2 before
  node10), whatever order the server answers in.
- the target's TXT strings ``circus-KEY=VALUE`` give the rest: ``tags`` (comma-separated),
  ``pubsub``, ``stats`` and ``prometheus`` (ports on the same address). Other strings are
  ignored; an unknown ``circus-`` key or a bad value is an error naming the record.
- **keys are never taken from DNS.** DNS gives candidates; the pool file pins what is trusted:
  a ``[node:NAME]`` section without ``endpoint`` holds what the operator sets for DNS's node
  NAME — ``server_key`` (then an impostor at that address fails the CURVE handshake),
  ``client_key``, ``timeout``, ``tags``, the other endpoints — and wins over the TXT. A node
  without a pin is reached without CURVE, on DNS's word.
- the pool file's own nodes (with ``endpoint``) stay; one named as a DNS node is an error.

A DNS server that does not answer (or says SERVFAIL / REFUSED) makes the pool unknown:
:class:`PoolUnavailable` (``circusmeta`` exits 1), never a pool of the nodes that happened to
answer. No SRV record at all is a pool error (exit 2).
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Sequence

from circus.config.errors import ConfigError, ConfigIssue, did_you_mean
from circus.records import replace

from . import dns
from .pool import MetaOptions, NodeSpec, PoolConfig

__all__ = ["PoolUnavailable", "Target", "read_meta", "parse_srv_url",
           "pool_from_url", "resolve_pool", "dns_nodes", "TXT_KEYS"]

TXT_KEYS = ("node", "tags", "pubsub", "stats", "prometheus")
_PREFIX = "circus-"
_NAME = re.compile(r"[A-Za-z0-9_.-]{1,64}")
_DNS_NAME = re.compile(r"(?=.{1,253}\.?$)([A-Za-z0-9_]([A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?\.)*"
                       r"[A-Za-z0-9_]([A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?\.?")


class PoolUnavailable(ConfigError):
    """The DNS server did not answer: which nodes make the pool is not known (exit 1)."""

    exit_code = 1


@dataclass(frozen=True)
class Target:
    """One SRV record: ``host`` (the target, lower case, no final dot) and ``port``."""

    srv: str
    host: str
    port: int


# -- the pool file's options ---------------------------------------------------------------------

def read_meta(values: Mapping[str, Any], bad: Callable[[Any, str], None]) -> dict[str, Any]:
    """``[meta] srv`` (DNS names, comma-separated) and ``dns_server`` (HOST[:PORT]) checked:
    the MetaOptions fields they set; ``bad(value, reason)`` for each problem."""
    out: dict[str, Any] = {}
    if "srv" in values:
        names = tuple(n for n in re.split(r"[\s,]+", values["srv"].value.strip()) if n)
        wrong = [n for n in names if not _DNS_NAME.fullmatch(n)]
        if not names or wrong:
            bad(values["srv"], f"expected DNS names like _circus._tcp.example.com, got "
                               f"{values['srv'].value.strip()!r}")
        else:
            out["srv"] = tuple(n.rstrip(".").lower() for n in names)
    if "dns_server" in values:
        try:
            host, port = dns.parse_server(values["dns_server"].value)
        except ValueError as exc:
            bad(values["dns_server"], str(exc))
        else:
            out["dns_server"] = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        if "srv" not in values:
            bad(values["dns_server"], "needs srv too (the SRV names whose records are the "
                                      "nodes)")
    return out


def parse_srv_url(text: str) -> tuple[str, str | None]:
    """(SRV name, DNS server or None) of ``srv://NAME``, ``srv:NAME`` or
    ``srv://SERVER[:PORT]/NAME`` (as RFC 4501's ``dns:`` URIs); ValueError."""
    rest = text[4:]
    server = None
    if rest.startswith("//"):
        rest = rest[2:]
        if "/" in rest:
            server, rest = rest.split("/", 1)
    name = rest.strip()
    if not _DNS_NAME.fullmatch(name):
        raise ValueError(f"{text!r}: expected srv://NAME or srv://SERVER:PORT/NAME, NAME a DNS "
                         f"name like _circus._tcp.example.com")
    if server is not None:
        host, port = dns.parse_server(server)
        server = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    return name.rstrip(".").lower(), server


# -- from the answers to the nodes (pure) --------------------------------------------------------

def _issue(where: str, reason: str) -> ConfigIssue:
    return ConfigIssue(where, None, "meta", "srv", reason)


def srv_targets(answers: Mapping[str, dns.Response]) -> tuple[list[Target], list[str]]:
    """The SRV records of each name, in answer order: (targets, warnings about names without
    any)."""
    targets, warnings = [], []
    for name, answer in answers.items():
        found: list[tuple[int, int, int, str]] = [
            r.data for r in dns.records(answer, dns.SRV)]         # type: ignore[misc]
        usable = [Target(name, str(t).rstrip(".").lower(), port) for _, _, port, t in found
                  if str(t).strip(".") and port]
        if not usable:
            why = "does not exist (NXDOMAIN)" if answer.rcode == dns.NXDOMAIN else \
                "has no SRV record" if not found else "says the service is not available here"
            warnings.append(f"DNS: {name} {why}")
        targets += usable
    return targets, warnings


def addresses(answers: Mapping[str, dns.Response]) -> dict[str, str]:
    """host -> its first address, from the answer to the A (or AAAA) question about it (never
    from another question's answer, nor from an additional section: see dns.Response)."""
    out: dict[str, str] = {}
    for host, answer in answers.items():
        found = [r for r in answer.answers if r.type in (dns.A, dns.AAAA)]
        if found:
            out[host] = str(found[0].data)
    return out


def _port(value: str) -> int | None:
    return int(value) if value.isdigit() and 0 < int(value) < 65536 else None


def dns_nodes(targets: Sequence[Target], txt: Mapping[str, Sequence[str]],
              address: Mapping[str, str], where: str) -> list[NodeSpec]:
    """A NodeSpec per target (see the module's rules); ConfigError naming each bad record."""
    issues: list[ConfigIssue] = []
    nodes: dict[str, tuple[NodeSpec, Target]] = {}
    for target in targets:
        what = f"{target.srv}: {target.host}"
        attrs: dict[str, str] = {}
        for string in txt.get(target.host, ()):
            key, sep, value = string.partition("=")
            if not key.lower().startswith(_PREFIX):
                continue
            key = key[len(_PREFIX):].lower()
            if key not in TXT_KEYS or not sep:
                issues.append(_issue(where, f"{what} TXT {string[:80]!r}: expected "
                                     f"circus-KEY=VALUE, KEY one of {', '.join(TXT_KEYS)}"
                                     f"{did_you_mean(key, TXT_KEYS)}"))
                continue
            attrs[key] = value.strip()
        ip = address.get(target.host)
        if ip is None:
            issues.append(_issue(where, f"{what}: no A or AAAA record for the target"))
            continue
        host = f"[{ip}]" if ":" in ip else ip
        name = attrs.get("node") or target.host.split(".")[0]
        if not _NAME.fullmatch(name):
            issues.append(_issue(where, f"{what}: node name {name[:80]!r}: a name has 1 to 64 "
                                 f"letters, digits, '.', '_' or '-' (set TXT circus-node=NAME)"))
            continue
        ports = {}
        for key in ("pubsub", "stats", "prometheus"):
            if key in attrs:
                ports[key] = _port(attrs[key])
                if ports[key] is None:
                    issues.append(_issue(where, f"{what} TXT circus-{key}: expected a port "
                                         f"1-65535, got {attrs[key][:80]!r}"))
        tags = tuple(t for t in re.split(r"[\s,]+", attrs.get("tags", "")) if t)
        for tag in tags:
            if not _NAME.fullmatch(tag):
                issues.append(_issue(where, f"{what} TXT circus-tags: tag {tag[:80]!r}: 1 to 64 "
                                     f"letters, digits, '.', '_' or '-'"))
        if name in nodes:
            first = nodes[name][1]
            issues.append(_issue(where, f"two records are node {name!r}: {first.host}:"
                                 f"{first.port} and {target.host}:{target.port} (give each "
                                 f"circusd its own target name, or TXT circus-node=NAME)"))
            continue

        def endpoint(key: str, scheme: str = "tcp://") -> str | None:
            return f"{scheme}{host}:{ports[key]}" if ports.get(key) else None
        nodes[name] = (NodeSpec(name, f"tcp://{host}:{target.port}", endpoint("pubsub"),
                                endpoint("stats"), tags,
                                prometheus_endpoint=endpoint("prometheus", "")), target)
    if issues:
        raise ConfigError(issues)
    return [nodes[name][0] for name in sorted(nodes, key=_natural)]


def _natural(name: str) -> list[Any]:
    """node2 before node10: answers come in any order (servers rotate them), the pool's order
    must not change from one run to the next."""
    return [(0, int(part), "") if part.isdigit() else (1, 0, part)
            for part in re.split(r"(\d+)", name) if part]


def merge(config: PoolConfig, found: Sequence[NodeSpec], warnings: Sequence[str]) -> PoolConfig:
    """The pool file's nodes, DNS's nodes with the file's pins applied; ConfigError for a name
    in both, or a collection naming a node that is in neither."""
    issues: list[ConfigIssue] = []
    nodes = dict(config.nodes)
    for spec in found:
        if spec.name in nodes:
            issues.append(_issue(config.file, f"DNS gives node {spec.name!r} ({spec.endpoint}) "
                                 f"and the pool file has a [node:{spec.name}] with an endpoint: "
                                 f"drop its endpoint to pin keys for DNS's node (or rename one)"))
            continue
        pin = config.pins.get(spec.name)
        if pin is not None:
            spec = replace(spec, **{key: value for key, value in vars(pin).items()
                                    if key not in ("name", "endpoint") and value})
        nodes[spec.name] = spec
    missing = [name for name in config.pins if name not in nodes]
    notes = list(warnings)
    if missing:
        notes.append(f"DNS gives no node {', '.join(missing)} (pinned in {config.file})")
    for collection in config.collections.values():
        for member in collection.members:
            if member.node and member.node not in nodes:
                issues.append(ConfigIssue(config.file, None, f"collection:{collection.name}",
                                          "members", f"unknown node {member.node!r} in {member} "
                                          f"(neither in the pool file nor in DNS)"
                                          f"{did_you_mean(member.node, nodes)}"))
    if not nodes:
        issues.append(_issue(config.file, f"the pool is empty: "
                             f"{'; '.join(warnings) or 'no node in DNS'}"))
    if issues:
        raise ConfigError(issues)
    return replace(config, nodes=nodes, warnings=(*config.warnings, *notes))


# -- asking the server (I/O) ---------------------------------------------------------------------

def resolve_pool(config: PoolConfig, resolver: dns.Resolver | None = None) -> PoolConfig:
    """``config`` with the nodes of its ``[meta] srv`` names added (see the module's rules).
    PoolUnavailable when the server does not answer; ConfigError for bad records."""
    meta = config.meta
    if resolver is None:
        server = dns.parse_server(meta.dns_server) if meta.dns_server else dns.system_server()
        resolver = dns.Resolver(server, timeout=meta.timeout)
    try:
        answers = resolver.ask((name, dns.SRV) for name in meta.srv)
        targets, warnings = srv_targets({n: answers[(n, dns.SRV)] for n in meta.srv})
        hosts = list(dict.fromkeys(t.host for t in targets))
        more = resolver.ask([(h, dns.TXT) for h in hosts] + [(h, dns.A) for h in hosts])
        known = addresses({h: more[(h, dns.A)] for h in hosts})
        if missing := [h for h in hosts if h not in known]:
            six = resolver.ask((h, dns.AAAA) for h in missing)
            known.update(addresses({h: six[(h, dns.AAAA)] for h in missing}))
    except dns.DnsUnavailable as exc:
        raise PoolUnavailable([_issue(config.file, f"the nodes are not known: {exc}")]) from None
    except dns.DnsMalformed as exc:
        raise PoolUnavailable([_issue(config.file, f"the nodes are not known: a bad answer from "
                                                   f"the DNS server: {exc}")]) from None
    txt = {h: [s for r in dns.records(more[(h, dns.TXT)], dns.TXT)
               for s in r.data] for h in hosts}                    # type: ignore[attr-defined]
    return merge(config, dns_nodes(targets, txt, known, config.file), warnings)


def pool_from_url(url: str) -> PoolConfig:
    """The pool of ``srv://...`` (no pool file: default options, nothing pinned)."""
    try:
        name, server = parse_srv_url(url)
    except ValueError as exc:
        raise ConfigError([ConfigIssue(url, None, None, None, str(exc))]) from None
    return resolve_pool(PoolConfig(MetaOptions(srv=(name,), dns_server=server), {}, file=url))
