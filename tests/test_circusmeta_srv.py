"""Pools from DNS SRV records (circusmeta/srv.py, circusmeta/dns.py).

The wire format and the naming rules are tested on bytes and records built here; the pools on
a real dnsmasq (Debian's, installed with apt-get when missing) serving SRV, A and TXT records
on a free port of 127.0.0.1, in front of real circusd nodes.
"""
from __future__ import annotations

import json
import socket
import subprocess
import struct
import textwrap
import threading
import time
from pathlib import Path

import pytest

from circus.config.errors import ConfigError
from circus.security.keys import write_keypair
from circusmeta import dns, srv
from circusmeta.pool import load_pool, parse_pool
from sdnodes import (BIN, dnsmasq, ensure_tool, free_port, free_port_both, run_meta, start_nodes,
                     stop_nodes, wait_for)

SRV_NAME = "_circus._tcp.example.test"


# -- the wire format -----------------------------------------------------------------------------

def name_bytes(name: str) -> bytes:
    return b"".join(bytes([len(p)]) + p.encode() for p in name.split(".")) + b"\0"


def response(qid: int, qname: str, qtype: int, answers: list[bytes], *, rcode: int = 0,
             tc: bool = False, additional: list[bytes] = ()) -> bytes:
    flags = 0x8180 | rcode | (0x0200 if tc else 0)
    head = struct.pack(">HHHHHH", qid, flags, 1, len(answers), 0, len(additional))
    return head + name_bytes(qname) + struct.pack(">HH", qtype, 1) + b"".join(answers) + \
        b"".join(additional)


def rr(owner: bytes, rtype: int, rdata: bytes, ttl: int = 60) -> bytes:
    return owner + struct.pack(">HHIH", rtype, 1, ttl, len(rdata)) + rdata


def test_a_query_is_a_recursive_question_with_edns():
    q = dns.encode_query(0xBEEF, "_circus._tcp.example.test.", dns.SRV)
    qid, flags, qd, an, ns, ar = struct.unpack(">HHHHHH", q[:12])
    assert (qid, flags, qd, an, ns, ar) == (0xBEEF, 0x0100, 1, 0, 0, 1)
    assert q[12:].startswith(name_bytes("_circus._tcp.example.test") + struct.pack(">HH", 33, 1))
    assert q.endswith(b"\0" + struct.pack(">HHIH", 41, dns.UDP_PAYLOAD, 0, 0))
    for bad in ("a..b", "x" * 64 + ".test", ".".join(["abcdefghij"] * 30), "é.test"):
        with pytest.raises((ValueError, UnicodeError)):
            dns.encode_query(1, bad, dns.A)


def test_answers_are_parsed_with_compression():
    # SRV at offset 12 (the question's name), its target compressed too
    srv_rdata = struct.pack(">HHH", 10, 5, 5555) + b"\x04web1" + b"\xc0\x19"   # -> example.test
    a_rdata = socket.inet_aton("10.0.0.11")
    txt_rdata = b"\x0fcircus-tags=web\x10circus-stats=557"
    data = response(7, SRV_NAME, dns.SRV, [rr(b"\xc0\x0c", dns.SRV, srv_rdata),
                                           rr(b"\x04web1\xc0\x19", dns.A, a_rdata),
                                           rr(b"\x04web1\xc0\x19", dns.TXT, txt_rdata),
                                           rr(b"\x04web1\xc0\x19", dns.AAAA, socket.inet_pton(
                                               socket.AF_INET6, "::1"))],
                    additional=[b"\xff\xff garbage: never read"])
    r = dns.parse_response(data)
    assert (r.id, r.rcode, r.truncated, r.question) == (7, 0, False, (SRV_NAME, dns.SRV))
    assert r.answers[0].data == (10, 5, 5555, "web1.example.test")
    assert [x.name for x in r.answers[1:]] == ["web1.example.test"] * 3
    assert [x.data for x in r.answers[1:]] == ["10.0.0.11", ("circus-tags=web",
                                                             "circus-stats=557"), "::1"]
    # a host's address is the first A/AAAA of the answer to the question about it
    assert srv.addresses({"x.example.test": r}) == {"x.example.test": "10.0.0.11"}


@pytest.mark.parametrize("damage, why", [
    (lambda d: d[:11], "header"),
    (lambda d: d[:12] + b"\xc0\x0c" + d[14:], "loop"),     # the question points at itself
    (lambda d: d[:-3], "past the end"),
    (lambda d: d[:12] + b"\x80" + d[13:], "label type"),
    (lambda d: d[:2] + b"\x01\x00" + d[4:], "QR"),
])
def test_a_malformed_answer_is_an_error_not_a_crash(damage, why):
    good = response(1, "web1.example.test", dns.A, [rr(b"\xc0\x0c", dns.A, b"\x7f\0\0\1")])
    assert dns.parse_response(good).answers[0].data == "127.0.0.1"
    with pytest.raises(dns.DnsMalformed, match=why):
        dns.parse_response(damage(good))


def test_record_lengths_are_checked():
    for rtype, rdata in ((dns.A, b"\1\2\3"), (dns.AAAA, b"\0" * 4), (dns.SRV, b"\0" * 5),
                         (dns.TXT, b"\x05ab")):
        data = response(1, "x.example.test", rtype, [rr(b"\xc0\x0c", rtype, rdata)])
        with pytest.raises(dns.DnsMalformed):
            dns.parse_response(data)


def test_servers_and_urls():
    assert dns.parse_server("127.0.0.1:5353") == ("127.0.0.1", 5353)
    assert dns.parse_server("10.0.0.2") == ("10.0.0.2", 53)
    assert dns.parse_server("[::1]:53") == ("::1", 53) and dns.parse_server("::1") == ("::1", 53)
    for bad in ("dns.example.test", "127.0.0.1:0", "127.0.0.1:99999", "[::1", "1.2.3.4:x"):
        with pytest.raises(ValueError):
            dns.parse_server(bad)
    assert srv.parse_srv_url("srv://_c._tcp.Example.test.") == ("_c._tcp.example.test", None)
    assert srv.parse_srv_url("srv:_c._tcp.x.test") == ("_c._tcp.x.test", None)
    assert srv.parse_srv_url("srv://127.0.0.1:5353/_c._tcp.x.test") == \
        ("_c._tcp.x.test", "127.0.0.1:5353")
    for bad in ("srv://", "srv://a b", "srv://host.test/_c._tcp.x", "srv://1.2.3.4/"):
        with pytest.raises(ValueError):
            srv.parse_srv_url(bad)


def test_system_server_reads_resolv_conf(tmp_path):
    conf = tmp_path / "resolv.conf"
    conf.write_text("# x\nsearch example.test\nnameserver fe80::1%eth0\nnameserver 10.9.8.7\n")
    assert dns.system_server(str(conf)) == ("fe80::1", 53)
    conf.write_text("options ndots:1\n")
    assert dns.system_server(str(conf)) == ("127.0.0.1", 53)
    assert dns.system_server(str(tmp_path / "none")) == ("127.0.0.1", 53)


# -- the rules from records to nodes -------------------------------------------------------------

def targets(*items: tuple[str, int]) -> list[srv.Target]:
    return [srv.Target(SRV_NAME, host, port) for host, port in items]


def test_nodes_are_named_by_txt_or_first_label_with_their_endpoints():
    found = srv.dns_nodes(
        targets(("web1.example.test", 5555), ("host7.example.test", 6000)),
        {"web1.example.test": ["v=spf1 -all", "circus-tags=web, eu", "circus-stats=5557",
                               "circus-pubsub=5556", "circus-prometheus=9101"],
         "host7.example.test": ["circus-node=db1"]},
        {"web1.example.test": "10.0.0.11", "host7.example.test": "fd00::7"}, "p.ini")
    db1, web1 = found                            # in natural order of the names
    assert (web1.name, web1.endpoint, web1.pubsub_endpoint, web1.stats_endpoint, web1.tags,
            web1.prometheus_endpoint, web1.server_key) == \
        ("web1", "tcp://10.0.0.11:5555", "tcp://10.0.0.11:5556", "tcp://10.0.0.11:5557",
         ("web", "eu"), "10.0.0.11:9101", None)
    assert (db1.name, db1.endpoint, db1.stats_endpoint, db1.tags) == \
        ("db1", "tcp://[fd00::7]:6000", None, ())


def test_bad_records_are_errors_naming_the_record():
    with pytest.raises(ConfigError) as err:
        srv.dns_nodes(
            targets(("a.example.test", 1), ("b.example.test", 2), ("c.example.test", 3),
                    ("a.example.test", 4), ("d.example.test", 5)),
            {"b.example.test": ["circus-stats=http", "circus-tag=web"],
             "c.example.test": ["circus-node=bad name!"]},
            {"a.example.test": "10.0.0.1", "b.example.test": "10.0.0.2",
             "c.example.test": "10.0.0.3"}, "p.ini")
    text = str(err.value)
    assert "b.example.test TXT circus-stats: expected a port 1-65535, got 'http'" in text
    assert "b.example.test TXT 'circus-tag=web'" in text and "did you mean" in text
    assert "c.example.test: node name 'bad name!'" in text
    assert "two records are node 'a': a.example.test:1 and a.example.test:4" in text
    assert "d.example.test: no A or AAAA record" in text
    assert text.startswith("p.ini: [meta] srv:")


def test_pins_give_keys_and_win_over_dns(tmp_path):
    config = parse_pool(textwrap.dedent("""
        [meta]
        srv = _circus._tcp.example.test
        client_key = me.key_secret
        [node:web1]
        server_key = web1.key
        tags = pinned
        prometheus_endpoint = 10.1.1.1:9999
        [node:gone]
        server_key = gone.key
        [node:static]
        endpoint = tcp://10.0.0.99:5555
        [collection:c]
        members = web1:app, static:app
        """), str(tmp_path / "p.ini"))
    assert set(config.nodes) == {"static"} and set(config.pins) == {"web1", "gone"}
    dns_found = srv.dns_nodes(targets(("web1.example.test", 5555), ("web2.example.test", 5555)),
                              {"web1.example.test": ["circus-tags=web", "circus-prometheus=9101"]},
                              {"web1.example.test": "10.0.0.11", "web2.example.test": "10.0.0.12"},
                              config.file)
    merged = srv.merge(config, dns_found, ["DNS: _x._tcp.example.test has no SRV record"])
    web1 = merged.nodes["web1"]
    assert web1.endpoint == "tcp://10.0.0.11:5555" and web1.tags == ("pinned",)
    assert web1.server_key == str(tmp_path / "web1.key")
    assert web1.prometheus_endpoint == "10.1.1.1:9999"
    assert merged.nodes["web2"].server_key is None and set(merged.nodes) == \
        {"static", "web1", "web2"}
    assert merged.warnings == ("DNS: _x._tcp.example.test has no SRV record",
                               f"DNS gives no node gone (pinned in {config.file})")
    # a DNS node named as a node of the file with an endpoint, a collection naming neither
    clash = srv.dns_nodes(targets(("static.example.test", 1)), {},
                          {"static.example.test": "10.0.0.1"}, config.file)
    with pytest.raises(ConfigError, match="DNS gives node 'static'.*drop its endpoint"):
        srv.merge(config, clash, [])
    with pytest.raises(ConfigError, match=r"\[collection:c\] members: unknown node 'web1'"):
        srv.merge(config, [], [])


def test_pool_file_options_are_checked(tmp_path):
    cases = {
        "[meta]\nsrv = not a name!\n": "[meta] srv: expected DNS names",
        "[meta]\nsrv = _c._tcp.x.test\ndns_server = resolver.test\n": "must be an IP address",
        "[meta]\ndns_server = 127.0.0.1\n[node:a]\nendpoint = tcp://127.0.0.1:1\n":
            "dns_server: needs srv too",
        "[node:a]\ntags = web\n": "[node:a] no endpoint",
        "[meta]\nsrv = _c._tcp.x.test\n[node:a]\nendpoint = tcp://x:1\nserver_key = k.key\n":
            "needs a client key",
    }
    for text, expected in cases.items():
        with pytest.raises(ConfigError) as err:
            parse_pool(text, "p.ini")
        assert expected in str(err.value), (text, str(err.value))
    # with srv, no node in the file is fine; several names are kept, lower case
    config = parse_pool("[meta]\nsrv = _A._tcp.x.test, _b._tcp.y.test.\n", "p.ini")
    assert config.meta.srv == ("_a._tcp.x.test", "_b._tcp.y.test") and not config.nodes


# -- a silent and a refusing server (in-process) -------------------------------------------------

def test_a_server_that_never_answers_is_unavailable_at_the_deadline():
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as hole:
        hole.bind(("127.0.0.1", 0))
        resolver = dns.Resolver(hole.getsockname(), timeout=1.0, retry=0.2)
        start = time.monotonic()
        with pytest.raises(dns.DnsUnavailable, match="no answer from the DNS server .* within "
                                                       "1 s"):
            resolver.ask([("a.example.test", dns.A)])
        assert 0.95 < time.monotonic() - start < 4
        # sent again while unanswered, further apart each time (at 0, 0.2 and 0.6 s; a
        # loaded machine may push the third past the deadline)
        assert resolver.asked in (2, 3)
        sent = 0
        hole.setblocking(False)
        while True:
            try:
                hole.recv(512)
            except BlockingIOError:
                break
            sent += 1
        assert sent == resolver.asked
    with pytest.raises(dns.DnsUnavailable, match="nothing listens there"):
        dns.Resolver(("127.0.0.1", free_port(socket.SOCK_DGRAM)), timeout=2).ask(
            [("a.example.test", dns.A)])


def test_forged_and_stray_datagrams_are_ignored():
    """A datagram with another id, one answering another question and a damaged one are
    dropped; the real answer is taken."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as server:
        server.bind(("127.0.0.1", 0))

        def answer() -> None:
            data, peer = server.recvfrom(512)
            qid = struct.unpack(">H", data[:2])[0]
            good = response(qid, "a.example.test", dns.A, [rr(b"\xc0\x0c", dns.A,
                                                                b"\x0a\0\0\x05")])
            server.sendto(response(qid ^ 1, "a.example.test", dns.A, []), peer)
            server.sendto(response(qid, "b.example.test", dns.A, []), peer)
            server.sendto(good[:20], peer)
            server.sendto(good, peer)
        thread = threading.Thread(target=answer)
        thread.start()
        got = dns.Resolver(server.getsockname(), timeout=3).ask([("a.example.test", dns.A)])
        thread.join(5)
        assert srv.addresses({"a.example.test": got[("a.example.test", dns.A)]}) == \
            {"a.example.test": "10.0.0.5"}


def test_servfail_is_unavailable_and_nxdomain_is_no_records():
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as server:
        server.bind(("127.0.0.1", 0))

        def answer() -> None:
            for rcode in (3, 2):
                data, peer = server.recvfrom(512)
                qid = struct.unpack(">H", data[:2])[0]
                server.sendto(response(qid, "a.example.test", dns.A, [], rcode=rcode), peer)
        thread = threading.Thread(target=answer)
        thread.start()
        resolver = dns.Resolver(server.getsockname(), timeout=3)
        got = resolver.ask([("a.example.test", dns.A)])
        assert got[("a.example.test", dns.A)].rcode == dns.NXDOMAIN
        with pytest.raises(dns.DnsUnavailable, match="answered SERVFAIL for a.example.test A"):
            resolver.ask([("a.example.test", dns.A)])
        thread.join(5)


# -- a real dnsmasq ------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def dnsmasq_bin() -> str:
    return ensure_tool("dnsmasq", "dnsmasq-base")


@pytest.fixture
def dns_server(dnsmasq_bin, tmp_path):
    """``start(records)``: dnsmasq on a free port answering those options; its port, once it
    answers."""
    started = []

    def start(records: list[str]) -> int:
        port = free_port_both()
        daemon = dnsmasq(dnsmasq_bin, port, records, tmp_path / f"dnsmasq{len(started)}.log")
        started.append(daemon)

        def answers() -> bool:
            try:
                dns.Resolver(("127.0.0.1", port), timeout=0.3).ask([("probe.example.test",
                                                                     dns.A)])
                return True
            except dns.DnsError:
                return False
        wait_for(answers, 15, "dnsmasq answering", daemon.dead)
        return port
    yield start
    for daemon in started:
        daemon.stop()


def records_for(nodes, tags: dict[str, str]) -> list[str]:
    out = []
    for node in nodes:
        host = f"h-{node.name}.example.test"                 # the name comes from TXT
        out += [f"--srv-host={SRV_NAME},{host},{node.control},10,5",
                f"--host-record={host},127.0.0.1",
                f"--txt-record={host},circus-node={node.name},circus-tags={tags[node.name]},"
                f"circus-stats={node.stats},circus-pubsub={node.pubsub},"
                f"circus-prometheus={node.metrics}"]
    return out


@pytest.fixture
def three(tmp_path):
    nodes = start_nodes(tmp_path, ["n1", "n2", "n3"])
    yield nodes
    stop_nodes(nodes)



@pytest.mark.real
def test_a_pool_from_dnsmasq_runs_commands_on_every_node(three, dns_server, tmp_path):
    port = dns_server(records_for(three, {"n1": "web", "n2": "web", "n3": "db"}))
    pool = tmp_path / "pool.ini"
    pool.write_text(f"[meta]\ntimeout = 3\nsrv = {SRV_NAME}\ndns_server = 127.0.0.1:{port}\n")
    code, out, err = run_meta(str(pool), "--json", "nodes")
    assert code == 0, err
    found = {n["node"]: n for n in json.loads(out)["nodes"]}
    assert set(found) == {"n1", "n2", "n3"} and all(n["state"] == "active"
                                                    for n in found.values())
    assert found["n3"]["tags"] == ["db"]
    assert found["n1"]["endpoint"] == f"tcp://127.0.0.1:{three[0].control}"
    code, out, err = run_meta(str(pool), "list", "--tag", "web")
    assert code == 0, err
    assert {line.split()[0] for line in out.splitlines()[1:]} == {"n1", "n2"}
    # without a file: srv://SERVER:PORT/NAME
    code, out, err = run_meta(f"srv://127.0.0.1:{port}/{SRV_NAME}", "status")
    assert code == 0, err
    assert {line.split()[0] for line in out.splitlines()[1:]} == {"n1", "n2", "n3"}
    r = subprocess.run([str(BIN / "circusctl"), "--pool", f"srv://127.0.0.1:{port}/{SRV_NAME}",
                        "--node", "n2", "list"], capture_output=True, text=True, timeout=30)
    assert r.returncode == 0 and r.stdout.split() == ["circusd-stats,crash,sl"], r
    # the other endpoints came from TXT: the nodes' stats (top --once reads them)
    code, out, err = run_meta(str(pool), "top", "--once", "--node", "n2", timeout=60)
    assert code == 0, err
    assert "n2" in out and "sl" in out
    # and their /metrics: Prometheus targets from DNS
    code, out, err = run_meta(str(pool), "prometheus-sd")
    assert code == 0, err
    assert sorted((g["labels"]["circus_node"], g["targets"][0]) for g in json.loads(out)) == \
        sorted((n.name, f"127.0.0.1:{n.metrics}") for n in three)


@pytest.mark.real
def test_dns_gives_candidates_the_pool_file_pins_the_keys(dns_server, tmp_path):
    """A CURVE node found in DNS is reached with the key pinned in the pool file; without
    the pin, or with another key pinned, it is not_available: DNS never vouches for a node."""
    keys = tmp_path / "keys"
    node_public, node_secret = write_keypair(str(keys), "sec1")
    client_public, client_secret = write_keypair(str(keys), "me")
    clients = tmp_path / "clients" / "admin"
    clients.mkdir(parents=True)
    Path(client_public).rename(clients / "me.key")
    other_public, _ = write_keypair(str(keys / "other"), "impostor")
    nodes = start_nodes(tmp_path / "n", ["sec1"], lambda name: f"curve_secret_key = {node_secret}"
                        f"\ncurve_clients = {tmp_path / 'clients'}\n")
    try:
        port = dns_server(records_for(nodes, {"sec1": "secure"}))
        head = f"[meta]\ntimeout = 2\nsrv = {SRV_NAME}\ndns_server = 127.0.0.1:{port}\n" \
               f"client_key = {client_secret}\n"
        pool = tmp_path / "pool.ini"
        pool.write_text(head + f"[node:sec1]\nserver_key = {node_public}\n")
        code, out, err = run_meta(str(pool), "--json", "nodes")
        assert code == 0, err
        assert json.loads(out)["nodes"][0]["state"] == "active"
        for text in (head, head + f"[node:sec1]\nserver_key = {other_public}\n"):
            pool.write_text(text)
            code, out, err = run_meta(str(pool), "--json", "nodes")
            assert code == 1, (out, err)
            assert json.loads(out)["nodes"][0]["state"] == "not_available"
    finally:
        stop_nodes(nodes)


@pytest.mark.real
def test_a_large_srv_answer_comes_over_tcp(dns_server, tmp_path):
    """1,000 SRV records do not fit a UDP answer: dnsmasq truncates it, the client asks again
    over TCP (a 55 KB answer, past the 16 KB that compression pointers reach: dnsmasq's
    additional section is wrong there, and is not used); every node is there, at its own
    address."""
    records = []
    for i in range(1, 1001):
        host = f"node{i}.example.test"
        records += [f"--srv-host={SRV_NAME},{host},{10000 + i}",
                    f"--host-record={host},127.0.{i // 250}.{i % 250 + 1}",
                    f"--txt-record={host},circus-prometheus={20000 + i},circus-tags=t{i % 3}"]
    port = dns_server(records)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:   # truncated over UDP
        udp.settimeout(5)
        udp.sendto(dns.encode_query(99, SRV_NAME, dns.SRV), ("127.0.0.1", port))
        assert dns.parse_response(udp.recv(65535)).truncated
    config = load_pool(f"srv://127.0.0.1:{port}/{SRV_NAME}")
    assert list(config.nodes) == [f"node{i}" for i in range(1, 1001)]
    for i in range(1, 1001):
        node = config.nodes[f"node{i}"]
        ip = f"127.0.{i // 250}.{i % 250 + 1}"
        assert (node.endpoint, node.prometheus_endpoint, node.tags) == \
            (f"tcp://{ip}:{10000 + i}", f"{ip}:{20000 + i}", (f"t{i % 3}",))
    code, out, err = run_meta(f"srv://127.0.0.1:{port}/{SRV_NAME}", "prometheus-sd",
                              "--tag", "t1")
    assert code == 0, err
    groups = json.loads(out)                     # node1, node4, ... node199: natural order
    assert [g["labels"]["circus_node"] for g in groups] == [f"node{i}" for i in range(1, 1001, 3)]
    assert len(groups) == 334 and groups[0]["labels"] == {"circus_node": "node1",
                                                         "circus_tags": ",t1,"}
    assert groups[0]["targets"] == ["127.0.0.2:20001"]


@pytest.mark.real
def test_dns_failures_exit_1_and_bad_records_exit_2(dns_server, tmp_path):
    port = dns_server([f"--srv-host={SRV_NAME},web1.example.test,5555",
                       "--host-record=web1.example.test,127.0.0.1",
                       "--txt-record=web1.example.test,circus-stats=nope",
                       "--srv-host=_empty._tcp.example.test"])
    pool = tmp_path / "pool.ini"
    pool.write_text(f"[meta]\ntimeout = 1\nsrv = {SRV_NAME}\ndns_server = 127.0.0.1:{port}\n")
    code, _, err = run_meta(str(pool), "status")
    assert code == 2 and "web1.example.test TXT circus-stats: expected a port 1-65535, got " \
        "'nope'" in err, err
    for name in ("_nothing._tcp.example.test", "_empty._tcp.example.test"):
        code, _, err = run_meta(f"srv://127.0.0.1:{port}/{name}", "status")
        assert code == 2 and "the pool is empty" in err, err
    # a server that does not answer: the pool is not known, exit 1 at the deadline
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as hole:
        hole.bind(("127.0.0.1", 0))
        pool.write_text(f"[meta]\ntimeout = 1\nsrv = {SRV_NAME}\n"
                        f"dns_server = 127.0.0.1:{hole.getsockname()[1]}\n")
        start = time.monotonic()
        code, _, err = run_meta(str(pool), "status")
        assert code == 1 and "the nodes are not known: no answer from the DNS server" in err, err
        assert time.monotonic() - start < 10
