"""A worker for readiness tests: becomes ready after --delay seconds in the way --mode says.

modes: tcp (listen on --port), http (serve on inherited --fd), notify (READY=1 to NOTIFY_SOCKET),
log (print a line), never (never ready), crash (write to stderr and exit 2).
"""
import argparse
import os
import socket
import sys
import time


def sd_notify(message: str) -> None:
    address = os.environ["NOTIFY_SOCKET"]
    if address.startswith("@"):
        address = "\0" + address[1:]
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.sendto(message.encode(), address)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--mode", required=True)
    parser.add_argument("--delay", type=float, default=0.5)
    parser.add_argument("--port", type=int)
    parser.add_argument("--fd", type=int)
    args = parser.parse_args()
    print(f"worker {os.getpid()} starting", flush=True)
    if args.mode == "crash":
        time.sleep(args.delay)
        print("boom: the configuration file is missing", file=sys.stderr, flush=True)
        sys.exit(2)
    time.sleep(args.delay)
    if args.mode == "tcp":
        server = socket.socket()
        server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        server.bind(("127.0.0.1", args.port))
        server.listen()
    elif args.mode == "http":
        print("serving", flush=True)
        os.execv(sys.executable, [sys.executable, os.path.join(os.path.dirname(__file__), "httpworker.py"),
                                  "--fd", str(args.fd)])
    elif args.mode == "notify":
        sd_notify("STATUS=warming up")
        sd_notify("READY=1")
    elif args.mode == "watchdog":              # pings for a second, then hangs
        sd_notify("READY=1")
        for _ in range(10):
            sd_notify("WATCHDOG=1")
            time.sleep(0.1)
    elif args.mode == "log":
        print("server is listening now", flush=True)
    print("never ready" if args.mode == "never" else "ready", file=sys.stderr, flush=True)
    while True:
        time.sleep(3600)


if __name__ == "__main__":
    main()
