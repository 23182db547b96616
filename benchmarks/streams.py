"""Stream throughput: lines/s a child gets into a file through circusd's FileStream, against the
same child writing to the file directly (its stdout redirected to the file, no circusd).

The child writes N numbered 59-byte lines to stdout as fast as it can and notes when it started.
The time counted is from that start until the file holds the last line (lines arrive in order);
the number of lines is then checked. Run from the repository root with the project's venv:

    .venv/bin/python benchmarks/streams.py [--lines 5000000] [--reps 3]

Each variant runs ``--reps`` times; the median is reported. Variants through circusd: a plain
FileStream, with rotation at 10 MB, with a time prefix, and JSON lines.
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

CHILD = textwrap.dedent("""
    import sys, time
    n, start_file = int(sys.argv[1]), sys.argv[2]
    with open(start_file, "w") as fh:
        fh.write(repr(time.time()))
    out = sys.stdout.buffer
    chunk = 1000
    for base in range(0, n, chunk):
        out.write(b"".join(b"line %09d the quick brown fox jumps over the lazy dog\\n" % i
                           for i in range(base, min(n, base + chunk))))
    out.flush()
    time.sleep(3600)
""")

VARIANTS = {
    "FileStream": "",
    "FileStream, max_bytes 10 MB": "stdout_stream.max_bytes = 10000000\n"
                                   "stdout_stream.backup_count = 1000\n",
    "FileStream, time_format": "stdout_stream.time_format = %Y-%m-%d %H:%M:%S\n",
    "FileStream, format = json": "stdout_stream.format = json\n",
}


def wait_last_line(path: Path, n: int, timeout: float) -> float:
    """When ``path`` ends with line ``n - 1`` (lines arrive in order: then all of them are in)."""
    marker = b"line %09d the quick" % (n - 1)
    deadline = time.monotonic() + timeout
    while True:
        try:
            with open(path, "rb") as fh:
                fh.seek(max(0, os.fstat(fh.fileno()).st_size - 300))
                if marker in fh.read():
                    return time.time()
        except FileNotFoundError:
            pass
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out after {timeout} s waiting for the last line in {path}")
        time.sleep(0.001)


def count_lines(paths: list[Path]) -> int:
    total = 0
    for path in paths:
        with open(path, "rb") as fh:
            while chunk := fh.read(1 << 20):
                total += chunk.count(b"\n")
    return total


def started(start_file: Path, timeout: float = 30.0) -> float:
    deadline = time.monotonic() + timeout
    while not start_file.exists() or not start_file.read_text():
        if time.monotonic() > deadline:
            raise SystemExit("the child did not start")
        time.sleep(0.001)
    return float(start_file.read_text())


def direct(tmp: Path, child: Path, n: int) -> float:
    out, start_file = tmp / "direct.log", tmp / "start"
    for p in (out, start_file):
        p.unlink(missing_ok=True)
    with open(out, "wb") as fh:
        proc = subprocess.Popen([sys.executable, str(child), str(n), str(start_file)], stdout=fh)
    try:
        end = wait_last_line(out, n, 300)
        rate = n / (end - started(start_file))
    finally:
        proc.kill()
        proc.wait()
    assert count_lines([out]) == n
    return rate


def through_circusd(tmp: Path, child: Path, n: int, extra: str) -> float:
    out, start_file = tmp / "stream.log", tmp / "start"
    for p in [start_file, *tmp.glob("stream.log*")]:
        p.unlink(missing_ok=True)
    config = tmp / "circus.ini"
    config.write_text(textwrap.dedent(f"""
        [circus]
        endpoint = ipc://{tmp}/control.sock
        pubsub_endpoint = ipc://{tmp}/events.sock

        [watcher:bench]
        cmd = {sys.executable} {child} {n} {start_file}
        stdout_stream.class = FileStream
        stdout_stream.filename = {out}
    """) + extra)
    proc = subprocess.Popen([sys.executable, "-m", "circus.cli.circusd", "--log-output",
                             str(tmp / "circusd.log"), str(config)], stdout=subprocess.DEVNULL)
    try:
        end = wait_last_line(out, n, 300)
        rate = n / (end - started(start_file))
    finally:
        proc.terminate()
        proc.wait(30)
    assert count_lines(list(tmp.glob("stream.log*"))) == n
    return rate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--lines", type=int, default=5_000_000)
    parser.add_argument("--reps", type=int, default=3)
    args = parser.parse_args()
    size = len(b"line %09d the quick brown fox jumps over the lazy dog\n" % 0)
    results: dict[str, list[float]] = {}
    with tempfile.TemporaryDirectory(prefix="circus-streams-") as name:
        tmp = Path(name)
        child = tmp / "child.py"
        child.write_text(CHILD)
        for _ in range(args.reps):
            results.setdefault("direct to the file (no circusd)", []).append(
                direct(tmp, child, args.lines))
            for label, extra in VARIANTS.items():
                results.setdefault(f"through circusd: {label}", []).append(
                    through_circusd(tmp, child, args.lines, extra))
    print(f"{args.lines} lines of {size} bytes, median of {args.reps} "
          f"(python {sys.version.split()[0]}, {os.cpu_count()} CPUs)")
    for label, values in results.items():
        print(f"  {label:<48} {statistics.median(values):>12,.0f} lines/s")


if __name__ == "__main__":
    main()
