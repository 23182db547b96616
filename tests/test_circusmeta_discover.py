"""``circusmeta discover``: what an answer may say, and that what it prints is safe to put in a
pool file whatever the network sends.

First the pure checks (the answers of the 2026-12 review's D8, hostile datagrams, a hypothesis
fuzz whose every output is read back with the pool file's own parser), then on the wire: real
circusd nodes and a rogue responder in a network namespace the test makes, whose only interface
is its loopback (with a route for 224.0.0.0/4), so that no datagram leaves the machine — not
even the one ``discover`` sends on the default interface.
"""
from __future__ import annotations

import ipaddress
import json
import os
import random
import re
import secrets
import select
import shutil
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from circus.config.errors import Issues
from circus.config.ini import parse_ini
from circusmeta.discover import parse_answers, sections
from circusmeta.pool import MetaOptions, NodeSpec, parse_pool
from conftest import ROOT, Circusd

META = [sys.executable, "-m", "circusmeta.cli"]
SLEEP = f'{sys.executable} -c "import time; time.sleep(3600)"'

HONEST = (b'{"endpoint": "tcp://10.0.0.11:5555", "node": "web1"}', ("10.0.0.11", 40001))
#: the rogue endpoint of the review (D8): a key of its own, a [meta] section, a second node
ROGUE_ENDPOINT = ("tcp://10.9.9.9:5555\nserver_key = /tmp/attacker.key\n\n[meta]\n"
                  "log_dir = /tmp/x\n\n[node:web2]\nendpoint = tcp://10.9.9.9:5556")

#: what the test accepts as an endpoint, written independently of the code under test
_SAFE_ENDPOINT = re.compile(r"tcp://(?:[0-9]{1,3}(?:\.[0-9]{1,3}){3}|\[[0-9A-Fa-f:.]+\]|"
                            r"[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*):[1-9][0-9]{0,4}|"
                            r"ipc://(?:/[A-Za-z0-9_.+-]+)+")
_SAFE_NAME = re.compile(r"[A-Za-z0-9_.-]{1,64}")


def read_back(text: str) -> dict[str, str]:
    """The printed text read as a pool file: {node: endpoint}; fails unless it holds only
    [node:NAME] sections (each once) with only ``endpoint``, on lines of printable ASCII."""
    for line in text.splitlines():                  # every Unicode line break splits here
        assert all(" " <= c <= "~" for c in line), line
        assert line == "" or line.startswith("# ") or line.startswith("[node:") or \
            line.startswith("endpoint = "), line
    issues = Issues()
    found = parse_ini(text, "<discover>", issues)
    assert not issues, issues
    headers = [s.header for s in found]
    assert all(h.startswith("node:") for h in headers), headers
    assert text.count("\n[node:") + text.startswith("[node:") == len(headers), text
    nodes = {}
    for section in found:
        assert set(section.values) == {"endpoint"}, (section.header, section.values)
        nodes[section.header[len("node:"):]] = section.values["endpoint"].value
    if nodes:
        config = parse_pool(text, "<discover>")
        assert config.meta == MetaOptions() and not config.collections
        assert config.nodes == {n: NodeSpec(n, e) for n, e in nodes.items()}
    return nodes


# -- pure --------------------------------------------------------------------------------------

def test_the_rogue_answer_of_d8_injects_no_key_and_no_section():
    rogue = (json.dumps({"endpoint": ROGUE_ENDPOINT, "node": "web1"}).encode(),
             ("10.9.9.9", 40002))
    for raw in ([HONEST, rogue], [rogue, HONEST]):
        text = sections(parse_answers(raw))
        assert read_back(text) == {"web1": "tcp://10.0.0.11:5555"}, text
        assert "server_key" not in text.replace("\\nserver_key", "")
        # the remark shows the answer escaped, on one comment line
        remark = [line for line in text.splitlines() if "10.9.9.9:40002" in line]
        assert len(remark) == 1 and remark[0].startswith(
            "# dropped the answer from 10.9.9.9:40002: endpoint 'tcp://10.9.9.9:5555"
            "\\nserver_key = /tmp/attacker.key\\n\\n[meta]"), remark


def test_hostile_datagrams_are_dropped_with_an_escaped_remark():
    evil = {
        "line separator": {"endpoint": "tcp://10.9.9.9:5555\u2028[meta]", "node": "a"},
        "paragraph separator": {"endpoint": "tcp://10.9.9.9:5555\u2029x = y", "node": "a"},
        "NEL": {"endpoint": "tcp://10.9.9.9:5555\x85server_key = k", "node": "a"},
        "vertical tab": {"endpoint": "tcp://10.9.9.9:5555\x0b[meta]"},
        "file separator": {"endpoint": "tcp://10.9.9.9:5555\x1c[meta]"},
        "CR": {"endpoint": "tcp://10.9.9.9:5555\r[meta]"},
        "zero width space": {"endpoint": "tcp://10.9.9.9\u200b:5555"},
        "bidi override": {"endpoint": "tcp://10.9.9.9:5555", "node": "web\u202e1"},
        "inline comment": {"endpoint": "tcp://10.9.9.9:5555 ;x"},
        "key": {"endpoint": "tcp://10.9.9.9:5555=1"},
        "section": {"endpoint": "tcp://[meta]:5555"},
        "hash": {"endpoint": "ipc:///tmp/a#b"},
        "port 0": {"endpoint": "tcp://10.9.9.9:0"},
        "port too big": {"endpoint": "tcp://0.0.0.0:65536"},
        "leading zero": {"endpoint": "tcp://10.9.9.9:05555"},
        "no port": {"endpoint": "tcp://10.9.9.9"},
        "bad ipv4": {"endpoint": "tcp://10.9.9.999:5555"},
        "short ipv4": {"endpoint": "tcp://10.9.9:5555"},
        "bare ipv6": {"endpoint": "tcp://::1:5555"},
        "ipv6 zone": {"endpoint": "tcp://[fe80::1%eth0]:5555"},
        "underscore host": {"endpoint": "tcp://my_host:5555"},
        "relative ipc": {"endpoint": "ipc://control.sock"},
        "dotdot ipc": {"endpoint": "ipc:///run/../etc/passwd"},
        "long ipc": {"endpoint": "ipc:///" + "a" * 200},
        "udp": {"endpoint": "udp://10.9.9.9:5555"},
        "number": {"endpoint": 5555},
        "no endpoint": {"node": "a"},
        "name with space": {"endpoint": "tcp://10.9.9.9:5555", "node": "web 1"},
        "name too long": {"endpoint": "tcp://10.9.9.9:5555", "node": "a" * 65},
        "name not a string": {"endpoint": "tcp://10.9.9.9:5555", "node": ["x"]},
        "name with newline": {"endpoint": "tcp://10.9.9.9:5555", "node": "a\n[meta]"},
    }
    junk = [(b"[" * 2000, ("10.9.9.9", 1)),            # nested deeper than json's recursion
            (b"\xff\xfe[meta]", ("10.9.9.9", 2)),      # not UTF-8
            (b'"just a string"', ("10.9.9.9", 3)),
            (json.dumps({"endpoint": "tcp://10.0.0.12:5555", "pad": "x" * 3000}).encode(),
             ("10.9.9.9", 4)),                          # larger than an answer may be
            (HONEST[0], ("not an address", 5)), (HONEST[0], ("10.0.0.11",))]
    bodies = [(json.dumps(body).encode(), ("10.9.9.9", 1000 + i))
              for i, body in enumerate(evil.values())]
    assert len(bodies) <= 32                            # each described (MAX_REMARKS)
    for raw in ([HONEST] + bodies, [HONEST] + junk):
        _check_dropped(raw)


def _check_dropped(raw: list) -> None:
    found = parse_answers(raw)
    assert [(a.name, a.endpoint) for a in found.answers] == [("web1", "tcp://10.0.0.11:5555")]
    assert found.dropped_count == len(raw) - 1
    text = sections(found)
    assert read_back(text) == {"web1": "tcp://10.0.0.11:5555"}
    remarks = [line for line in text.splitlines() if line.startswith("# dropped ")]
    assert len(remarks) == found.dropped_count
    if raw[1][1] == ("10.9.9.9", 1000):
        assert "# dropped the answer from 10.9.9.9:1000: endpoint 'tcp://10.9.9.9:5555" \
               "\\u2028[meta]': a space, control, non-ASCII or invisible character" in remarks
        assert any("node name 'web\\u202e1'" in r for r in remarks)
        assert any("port 65536 is not 1 to 65535" in r for r in remarks)
        assert any("'tcp://10.9.9.9:5555\\x85server_key = k'" in r for r in remarks)
    else:
        assert any("not JSON: b'[[[[" in r and r.endswith("...") for r in remarks)
        assert any("not JSON: b'\\xff\\xfe[meta]'" in r for r in remarks)
        assert any("not a JSON object: 'just a string'" in r for r in remarks)
        assert any("more than 2048 bytes" in r for r in remarks)
        assert any(r.startswith("# dropped the answer from ") and "not an IP address" in r
                   for r in remarks)


def test_valid_answers_are_kept_as_they_came_and_remarked_where_useful():
    raw = [HONEST, HONEST,                                          # both interfaces: once
           (b'{"endpoint": "tcp://0.0.0.0:5555"}', ("10.0.0.12", 40001)),       # 0.19: no node
           (b'{"endpoint": "tcp://10.0.0.13:5555", "node": "web1"}', ("10.0.0.13", 40001)),
           (b'{"endpoint": "tcp://127.0.0.1:5555", "node": "web4"}', ("10.0.0.14", 40001)),
           (b'{"endpoint": "tcp://[::]:5555", "node": "web5"}', ("10.0.0.15", 40001)),
           (b'{"endpoint": "tcp://*:5555", "node": "web6", "extra": "\\n[meta]"}',
            ("10.0.0.16", 40001)),
           (b'{"endpoint": "tcp://[2001:db8::7]:5555", "node": "web7"}', ("10.0.0.17", 40001)),
           (b'{"endpoint": "tcp://web8.example.com:5555", "node": "web8"}', ("10.0.0.18", 1)),
           (b'{"endpoint": "ipc:///run/circus/web9.sock", "node": "web9"}', ("10.0.0.19", 1)),
           (b'{"endpoint": "tcp://10.0.0.20:5555", "node": null}', ("10.0.0.20", 1))]
    found = parse_answers(raw)
    assert [(a.name, a.endpoint) for a in found.answers] == [
        ("web1", "tcp://10.0.0.11:5555"), ("node-10-0-0-12", "tcp://10.0.0.12:5555"),
        ("web1-2", "tcp://10.0.0.13:5555"), ("web4", "tcp://127.0.0.1:5555"),
        ("web5", "tcp://10.0.0.15:5555"), ("web6", "tcp://10.0.0.16:5555"),
        ("web7", "tcp://[2001:db8::7]:5555"), ("web8", "tcp://web8.example.com:5555"),
        ("web9", "ipc:///run/circus/web9.sock"), ("node-10-0-0-20", "tcp://10.0.0.20:5555")]
    assert found.dropped == []
    text = sections(found)
    assert read_back(text) == {a.name: a.endpoint for a in found.answers}
    assert "# answered from 10.0.0.11:40001\n" in text
    assert "circusd binds tcp://0.0.0.0:5555; using the responder's address" in text
    assert "# the node calls itself 'web1'\n" in text and "loopback endpoint" in text
    assert "an ipc endpoint: reachable only on that machine" in text
    # two answers giving one name: both say so (one of them may be an impostor)
    assert text.count("# 2 answers call themselves 'web1' (from 10.0.0.11:40001, "
                      "10.0.0.13:40001)") == 2
    assert json.loads(json.dumps([a.to_dict() for a in found.answers]))[2]["reported_name"] \
        == "web1"
    assert sections(parse_answers([])) == ""
    # answers made by hand are held to the same rules; their comments cannot break a line
    from circusmeta.answers import Answer
    with pytest.raises(ValueError):
        sections([Answer("web1", "tcp://10.0.0.1:5555\n[meta]", ("10.0.0.1", 1))])
    with pytest.raises(ValueError):
        sections([Answer("web 1", "tcp://10.0.0.1:5555", ("10.0.0.1", 1))])
    text = sections([Answer("web1", "tcp://10.0.0.1:5555", ("10.0.0.1", 1),
                            remark="a\n[meta]\u2028x = y")])
    assert read_back(text) == {"web1": "tcp://10.0.0.1:5555"}
    assert "# a\\n[meta]\\u2028x = y\n" in text


def test_a_flood_of_answers_is_bounded():
    from circusmeta.answers import MAX_NODES, MAX_REMARKS
    raw = [(json.dumps({"endpoint": f"tcp://10.1.{i // 250}.{i % 250 + 1}:5555",
                        "node": f"n{i}"}).encode(), ("10.1.0.1", 1)) for i in range(MAX_NODES + 50)]
    raw += [(b"junk", ("10.1.0.2", port)) for port in range(1, 101)]
    found = parse_answers(raw)
    assert len(found.answers) == MAX_NODES
    assert len(found.dropped) == MAX_REMARKS and found.dropped_count == 150
    text = sections(found)
    assert len(read_back(text)) == MAX_NODES
    assert text.rstrip().endswith(f"# dropped {150 - MAX_REMARKS} more answer(s) (repeats, or "
                                  f"beyond the first {MAX_REMARKS} remarks)")
    # the same bad answer again and again: said once, counted
    found = parse_answers([HONEST] + [(b"junk", ("10.1.0.2", 1))] * 10)
    assert [str(d) for d in found.dropped] == ["the answer from 10.1.0.2:1: not JSON: b'junk'"]
    assert found.dropped_count == 10


# -- fuzz --------------------------------------------------------------------------------------

_NASTY = ["\n", "\r", "\r\n", "\x0b", "\x0c", "\x1c", "\x1d", "\x1e", "\x85", "\u2028",
          "\u2029", "\t", " ", "\x00", "\x7f", "\u200b", "\u200e", "\u202e", "\u2066",
          "\ufeff", "\u00a0", "=", ":", "[", "]", ";", " ;", "#", "%", "\\", '"', "'",
          "\ud800", "\n[meta]\nlog_dir = /tmp/x\n", "\nserver_key = /tmp/k\n",
          "\n  server_key = /tmp/k"]

_label = st.from_regex(r"[A-Za-z]([A-Za-z0-9-]{0,10}[A-Za-z0-9])?", fullmatch=True)
_hosts = st.one_of(
    st.ip_addresses(v=4).map(str),
    st.ip_addresses(v=6).map(lambda a: f"[{a}]"),
    st.lists(_label, min_size=1, max_size=4).map(".".join),
    st.sampled_from(["*", "0.0.0.0", "[::]"]))
_good_endpoints = st.one_of(
    st.builds(lambda h, p: f"tcp://{h}:{p}", _hosts, st.integers(1, 65535)),
    st.lists(st.from_regex(r"[A-Za-z0-9_+-][A-Za-z0-9_.+-]{0,12}", fullmatch=True),
             min_size=1, max_size=5).map(lambda parts: "ipc:///" + "/".join(parts)))
_good_names = st.from_regex(r"[A-Za-z0-9_.-]{1,64}", fullmatch=True)


@st.composite
def _spoiled(draw, good):
    text = draw(good)
    at = draw(st.integers(0, len(text)))
    return text[:at] + draw(st.sampled_from(_NASTY)) + text[at:]


_endpoints = st.one_of(_good_endpoints, _spoiled(_good_endpoints), st.text(max_size=40),
                       st.integers(), st.none(), st.lists(st.text(max_size=5), max_size=2))
_names = st.one_of(st.just(None), _good_names, _spoiled(_good_names), st.text(max_size=70),
                   st.integers())


@st.composite
def _datagram(draw):
    if draw(st.integers(0, 9)) == 0:
        return draw(st.binary(max_size=120))
    body = {}
    if draw(st.integers(0, 19)):
        body["endpoint"] = draw(_endpoints)
    name = draw(_names)
    if name is not None or draw(st.booleans()):
        body["node"] = name
    if draw(st.booleans()):
        body[draw(st.text(max_size=8))] = draw(st.text(max_size=20))
    text = json.dumps(body, ensure_ascii=draw(st.booleans()))
    return text.encode("utf-8", "surrogatepass")


_responders = st.tuples(st.ip_addresses(v=4).map(str), st.integers(0, 65535))


def _unspecified(host: str) -> bool:
    try:
        return host == "*" or ipaddress.ip_address(host.strip("[]")).is_unspecified
    except ValueError:
        return False


def _good_host(host: str) -> bool:
    """An IPv4 address, a bracketed IPv6 one, or a DNS name whose last label is not numeric."""
    try:
        ipaddress.ip_address(host.strip("[]"))
        return host.startswith("[") == (":" in host) and "%" not in host
    except ValueError:
        labels = host.split(".")
        return not labels[-1].isdigit() and len(host) <= 253 and all(
            re.fullmatch(r"[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?", x) for x in labels)


def _expected(body: object, responder: str) -> tuple[tuple, str] | None:
    """For a datagram's JSON: (its identity, the endpoint to be printed) if the test judges it
    a good answer, else None."""
    if not isinstance(body, dict):
        return None
    endpoint, name = body.get("endpoint"), body.get("node")
    if not isinstance(endpoint, str) or not (
            name is None or (isinstance(name, str) and _SAFE_NAME.fullmatch(name))):
        return None
    placed = endpoint
    tcp = re.fullmatch(r"tcp://(\*|[^:\[\]]*|\[[^\]]*\]):([0-9]+)", endpoint)
    if tcp and tcp[1] != "*" and not _good_host(tcp[1]):
        return None
    if tcp and _unspecified(tcp[1]):
        placed = f"tcp://{responder}:{tcp[2]}"
    if not _SAFE_ENDPOINT.fullmatch(placed):
        return None
    if placed.startswith("ipc://"):
        parts = placed[len("ipc://"):].split("/")
        if len(placed) - len("ipc://") > 107 or "." in parts or ".." in parts:
            return None
    elif not 1 <= int(tcp[2]) <= 65535:
        return None
    return (name, endpoint), placed


@settings(max_examples=600, deadline=None, database=None,
          suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(_datagram(), _responders), max_size=12), st.randoms())
def test_fuzz_whatever_the_answers_the_output_reads_back_as_only_their_nodes(raw, rnd):
    rogue = (json.dumps({"endpoint": ROGUE_ENDPOINT, "node": "web1"}).encode(), ("10.9.9.9", 1))
    raw = list(raw)
    raw.insert(rnd.randint(0, len(raw)), rogue)
    found = parse_answers(raw)
    nodes = read_back(sections(found))
    # only [node:X] sections with only an endpoint: the nodes kept, each of a safe shape
    assert nodes == {a.name: a.endpoint for a in found.answers}
    assert len(nodes) == len(found.answers)
    for name, endpoint in nodes.items():
        assert _SAFE_NAME.fullmatch(name) and _SAFE_ENDPOINT.fullmatch(endpoint), (name, endpoint)
    # and they are exactly the good answers (each once), with the endpoints they sent
    good: dict[tuple, str] = {}
    for data, (host, _) in raw:
        try:
            body = json.loads(data)
        except (ValueError, RecursionError):
            continue
        expected = _expected(body, host)
        if expected is not None:
            good.setdefault(*expected)
    assert sorted(a.endpoint for a in found.answers) == sorted(good.values()), (raw, found)
    assert found.dropped_count >= 1                 # the rogue, at least


# -- on the wire, in a network namespace -------------------------------------------------------

ROGUE = textwrap.dedent(r'''
    import json, select, socket, struct, sys
    group, port = sys.argv[1], int(sys.argv[2])
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    s.bind((group, port))
    s.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP,
                 struct.pack("4s4s", socket.inet_aton(group), socket.inet_aton("0.0.0.0")))
    answers = [json.loads(line) for line in sys.argv[3:]]
    print("listening", flush=True)
    while True:
        ready, _, _ = select.select([s, sys.stdin], [], [], 30)
        if not ready or sys.stdin in ready:
            break
        _, peer = s.recvfrom(4096)
        for a in answers:
            s.sendto(a.encode("utf-8", "surrogatepass") if isinstance(a, str) else
                     json.dumps(a).encode(), peer)
''')


class Lan:
    """A network namespace whose only interface is its loopback: what is sent there stays."""

    def __init__(self, name: str) -> None:
        self.name = name
        group = ipaddress.IPv4Address("239.255.0.0") + random.randrange(1, 65535)
        self.multicast = f"udp://{group}:{random.randrange(20000, 60000)}"
        self.procs: list[subprocess.Popen] = []

    def run(self, *argv: str, timeout: float = 20.0) -> subprocess.CompletedProcess:
        return subprocess.run(["ip", "netns", "exec", self.name, *argv], capture_output=True,
                              text=True, timeout=timeout, cwd=ROOT, stdin=subprocess.DEVNULL)

    def discover(self, *args: str) -> subprocess.CompletedProcess:
        return self.run(*META, *args, "discover", "--multicast", self.multicast, "--wait", "1")

    def rogue(self, *answers) -> subprocess.Popen:
        group, port = self.multicast[len("udp://"):].rsplit(":", 1)
        proc = subprocess.Popen(["ip", "netns", "exec", self.name, sys.executable, "-c", ROGUE,
                                 group, port, *(json.dumps(a) for a in answers)],
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE)
        self.procs.append(proc)
        ready, _, _ = select.select([proc.stdout], [], [], 10)
        assert ready and proc.stdout.readline() == b"listening\n", proc.stderr.read()
        return proc

    def circusd(self, tmp_path: Path, name: str) -> Circusd:
        ns = self.name

        class InNamespace(Circusd):
            def argv(self, *extra: str) -> list[str]:
                return ["ip", "netns", "exec", ns, *super().argv(*extra)]

        d = InNamespace(tmp_path / name)
        d.dir.mkdir()
        d.start(textwrap.dedent(f"""
            [circus]
            endpoint = ipc://{d.dir}/control.sock
            pubsub_endpoint = ipc://{d.dir}/events.sock
            multicast_endpoint = {self.multicast}
            statsd = false

            [watcher:sleeper]
            cmd = {SLEEP}
            """), "--name", name)
        return d


def _ip(*args: str) -> None:
    proc = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=15,
                          stdin=subprocess.DEVNULL)
    if proc.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)}: {proc.stderr.strip()}")


@pytest.fixture
def lan():
    if os.geteuid() != 0:
        pytest.skip("the wire test runs in a network namespace, which needs root (CI runs as "
                    "root): outside one, discover's datagram would go out of the machine")
    if not shutil.which("ip"):
        pytest.skip("`ip` (iproute2) is not installed (apt-get install iproute2)")
    net = Lan(f"cmdisc-{secrets.token_hex(4)}")
    _ip("netns", "add", net.name)
    try:
        _ip("-n", net.name, "link", "set", "lo", "up")
        _ip("-n", net.name, "route", "add", "224.0.0.0/4", "dev", "lo", "src", "127.0.0.1")
        yield net
    finally:
        for proc in net.procs:
            if proc.poll() is None:
                proc.stdin.close()
                try:
                    proc.wait(5)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(5)
            for stream in (proc.stdout, proc.stderr):
                stream.close()
        subprocess.run(["ip", "netns", "del", net.name], capture_output=True, timeout=15)


@pytest.mark.real
def test_discover_on_the_wire_prints_the_nodes_and_drops_the_rogue(lan, tmp_path):
    nodes = {name: lan.circusd(tmp_path, name) for name in ("web1", "web2")}
    try:
        for d in nodes.values():
            d.wait_log("answering discovery on", 15)
        lan.rogue({"endpoint": ROGUE_ENDPOINT, "node": "web1"},
                  {"endpoint": "tcp://127.0.0.1:5555\u2028[meta]", "node": "web3"},
                  {"endpoint": "tcp://127.0.0.1:5555", "node": "web\u202e3"},
                  "[" * 1500,
                  {"endpoint": "ipc:///tmp/rogue.sock", "node": "web2"})    # an impostor
        res = lan.discover()
        assert res.returncode == 0, res.stderr
        found = read_back(res.stdout)
        # the impostor is kept (its answer is well formed) under the next free name, and both
        # answers calling themselves web2 say so: which came first is the network's order
        assert found["web1"] == f"ipc://{nodes['web1'].dir}/control.sock", res.stdout
        assert sorted(found) == ["web1", "web2", "web2-2"], res.stdout
        assert {found["web2"], found["web2-2"]} == {f"ipc://{nodes['web2'].dir}/control.sock",
                                                   "ipc:///tmp/rogue.sock"}, res.stdout
        assert res.stdout.count("answers call themselves 'web2'") == 2, res.stdout
        assert "# answered from 127.0.0.1:" in res.stdout
        dropped = [line for line in res.stderr.splitlines()
                   if line.startswith("circusmeta discover: dropped the answer from 127.0.0.1:")]
        assert len(dropped) >= 4, res.stderr                  # each of the four, per datagram
        assert all(" " <= c <= "~" for line in res.stderr.splitlines() for c in line)
        assert "\\nserver_key = /tmp/attacker.key" in res.stderr

        res = lan.discover("--json")
        assert res.returncode == 0, res.stderr
        listed = {a["node"]: a["endpoint"] for a in json.loads(res.stdout)}
        assert sorted(listed) == sorted(found) and \
            sorted(listed.values()) == sorted(found.values()), res.stdout
        assert "dropped the answer from 127.0.0.1:" in res.stderr
    finally:
        for d in nodes.values():
            d.cleanup()


@pytest.mark.real
def test_discover_on_the_wire_without_answers_and_usage_errors(lan):
    res = lan.discover()
    assert res.returncode == 1 and "no circusd answered" in res.stderr, res.stderr
    lan.rogue("junk")
    res = lan.discover()
    assert res.returncode == 1 and "invalid answer(s) dropped" in res.stderr, res.stderr
    assert res.stdout.startswith("# dropped the answer from 127.0.0.1:") and \
        read_back(res.stdout) == {}
    res = lan.run(*META, "discover", "--multicast", "udp://10.0.0.1:5")
    assert res.returncode == 2 and "not a multicast address" in res.stderr
    res = lan.run(*META, "discover", "--multicast", "udp://239.1.1.1:99999")
    assert res.returncode == 2 and "must be udp://GROUP:PORT" in res.stderr
    res = lan.run(*META, "discover", "--wait", "0")
    assert res.returncode == 2 and "--wait must be > 0" in res.stderr
