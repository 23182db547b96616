"""A child for stream tests: writes numbered lines to stdout and/or stderr.

    linewriter.py --lines N [--stream stdout|stderr|both] [--marker PATH] [--then sleep|exit]
                  [--every SECONDS] [--tail TEXT] [--pad N]

Lines are ``<stream> <number> <padding>``, written as fast as possible (in unaligned chunks, so
lines are cut across writes), or one every ``--every`` seconds. ``--tail TEXT`` writes TEXT last
without a newline. ``--marker`` is created once everything is written; then the child sleeps
(default) or exits.
"""
from __future__ import annotations

import argparse
import os
import sys
import time


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--lines", type=int, default=10)
    parser.add_argument("--stream", default="stdout", choices=("stdout", "stderr", "both"))
    parser.add_argument("--marker")
    parser.add_argument("--then", default="sleep", choices=("sleep", "exit"))
    parser.add_argument("--every", type=float, default=0.0)
    parser.add_argument("--tail", default="")
    parser.add_argument("--pad", type=int, default=8)
    args = parser.parse_args()
    names = ("stdout", "stderr") if args.stream == "both" else (args.stream,)
    fds = {"stdout": 1, "stderr": 2}
    pad = "x" * args.pad
    if args.every:
        for i in range(args.lines):
            for name in names:
                os.write(fds[name], f"{name} {i:07d} {pad}\n".encode())
            time.sleep(args.every)
    else:
        for name in names:
            data = "".join(f"{name} {i:07d} {pad}\n" for i in range(args.lines)).encode()
            view, step = memoryview(data), 4093            # odd-sized writes: lines get cut
            for start in range(0, len(data), step):
                chunk = view[start:start + step]
                while chunk:
                    chunk = chunk[os.write(fds[name], chunk):]
    for name in names:
        if args.tail:
            os.write(fds[name], args.tail.encode())
    if args.marker:
        with open(args.marker, "w") as fh:
            fh.write(str(os.getpid()))
    if args.then == "sleep":
        time.sleep(3600)
    sys.exit(0)


if __name__ == "__main__":
    main()
