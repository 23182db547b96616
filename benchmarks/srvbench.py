"""What a pool from DNS costs each circusmeta run, against the same pool as a file.

For N nodes (default 10, 100, 1000): a dnsmasq (Debian's, ``apt-get install dnsmasq-base``) on
a free port of 127.0.0.1 serving N SRV records under one name, an A and a TXT record per target
(tags, stats and prometheus ports), and a pool file listing the same N nodes. Measured,
interleaved (file, DNS, file, DNS ...) and repeated ``--reps`` times:

- ``load_pool`` in this process (the DNS one: one SRV question over UDP, truncated, asked again
  over TCP, then N TXT questions over UDP at once);
- ``circusmeta prometheus-sd`` as a process, from fork to exit (it reads the pool and prints
  the targets: no node is asked, so only the pool's cost is in it).

No circusd is started. Prints medians [min - max] in ms and the 1-minute load before and after.

    .venv/bin/python benchmarks/srvbench.py [--sizes 10,100,1000] [--reps 5] [--out FILE.md]
"""
from __future__ import annotations

import argparse
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from circusmeta import dns
from circusmeta.pool import load_pool

SRV = "_circus._tcp.example.test"


def free_port_both() -> int:
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
            udp.bind(("127.0.0.1", 0))
            port = udp.getsockname()[1]
            with socket.socket() as tcp:
                try:
                    tcp.bind(("127.0.0.1", port))
                except OSError:
                    continue
            return port


def records(n: int) -> list[str]:
    out = []
    for i in range(1, n + 1):
        host = f"node{i}.example.test"
        out += [f"--srv-host={SRV},{host},{10000 + i}",
                f"--host-record={host},127.{i // 65536}.{i // 256 % 256}.{i % 256}",
                f"--txt-record={host},circus-tags=t{i % 3},circus-stats={30000 + i},"
                f"circus-prometheus={20000 + i}"]
    return out


def pool_text(n: int) -> str:
    text = "[meta]\ntimeout = 3\n"
    for i in range(1, n + 1):
        ip = f"127.{i // 65536}.{i // 256 % 256}.{i % 256}"
        text += (f"[node:node{i}]\nendpoint = tcp://{ip}:{10000 + i}\n"
                 f"stats_endpoint = tcp://{ip}:{30000 + i}\n"
                 f"prometheus_endpoint = {ip}:{20000 + i}\ntags = t{i % 3}\n")
    return text


def timed(work) -> float:
    start = time.perf_counter()
    work()
    return (time.perf_counter() - start) * 1000


def cli(pool: str) -> None:
    meta = str(Path(sys.executable).parent / "circusmeta")
    r = subprocess.run([meta, "--pool", pool, "prometheus-sd"], capture_output=True,
                       timeout=60)
    if r.returncode != 0:
        raise SystemExit(f"circusmeta failed: {r.stderr.decode()[-500:]}")


def fmt(values: list[float]) -> str:
    return f"{statistics.median(values):.1f} [{min(values):.1f}-{max(values):.1f}]"


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--sizes", default="10,100,1000")
    p.add_argument("--reps", type=int, default=5)
    p.add_argument("--out")
    args = p.parse_args()
    binary = shutil.which("dnsmasq") or "/usr/sbin/dnsmasq"
    if not os.path.exists(binary):
        raise SystemExit("dnsmasq is needed: apt-get install dnsmasq-base")
    sizes = [int(s) for s in args.sizes.split(",")]
    load_before = os.getloadavg()[0]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for n in sizes:
            port = free_port_both()
            log = open(Path(tmp) / f"dnsmasq{n}.log", "wb")
            daemon = subprocess.Popen(
                [binary, "--no-daemon", "--conf-file=/dev/null", f"--port={port}",
                 "--listen-address=127.0.0.1", "--bind-interfaces", "--no-resolv", "--no-hosts",
                 "--pid-file=", "--local=/example.test/", "--cache-size=0", *records(n)],
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
            try:
                deadline = time.monotonic() + 20
                while True:
                    try:
                        dns.Resolver(("127.0.0.1", port), timeout=0.3).ask(
                            [("probe.example.test", dns.A)])
                        break
                    except dns.DnsError:
                        if daemon.poll() is not None or time.monotonic() > deadline:
                            raise SystemExit(f"dnsmasq did not answer: "
                                             f"{(Path(tmp) / f'dnsmasq{n}.log').read_text()}")
                pool = Path(tmp) / f"pool{n}.ini"
                pool.write_text(pool_text(n))
                url = f"srv://127.0.0.1:{port}/{SRV}"
                assert len(load_pool(url).nodes) == n == len(load_pool(str(pool)).nodes)
                got: dict[str, list[float]] = {k: [] for k in ("file", "dns", "cli-file",
                                                               "cli-dns")}
                for _ in range(args.reps):
                    got["file"].append(timed(lambda: load_pool(str(pool))))
                    got["dns"].append(timed(lambda: load_pool(url)))
                    got["cli-file"].append(timed(lambda: cli(str(pool))))
                    got["cli-dns"].append(timed(lambda: cli(url)))
                rows.append((n, got))
            finally:
                os.kill(daemon.pid, signal.SIGTERM)
                daemon.wait(10)
                log.close()
    load_after = os.getloadavg()[0]
    lines = [f"srvbench: {args.reps} repetitions, interleaved; 1-min load {load_before:.2f} "
             f"before, {load_after:.2f} after; ms, median [min-max]", "",
             "| nodes | load_pool, file | load_pool, DNS | prometheus-sd CLI, file | "
             "prometheus-sd CLI, DNS |", "|---|---|---|---|---|"]
    for n, got in rows:
        lines.append(f"| {n} | {fmt(got['file'])} | {fmt(got['dns'])} | "
                     f"{fmt(got['cli-file'])} | {fmt(got['cli-dns'])} |")
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out:
        Path(args.out).write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
