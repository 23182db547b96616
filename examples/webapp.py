"""A minimal web worker for examples/zero-downtime.ini: serves on the listening socket it
inherits (--fd N), says "ready" on stdout, finishes the request in progress on SIGTERM."""
import argparse
import http.server
import os
import signal
import socket
import threading


class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = f"hello from worker {os.getpid()}\n".encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--fd", type=int, required=True)
    args = parser.parse_args()
    sock = socket.socket(fileno=args.fd)
    # non-blocking: when several workers wake for one connection, the ones that lose the race
    # get EAGAIN from accept() (ignored by socketserver) instead of blocking in it, deaf to
    # their stop signal
    sock.setblocking(False)
    server = http.server.HTTPServer(sock.getsockname()[:2], Handler, bind_and_activate=False)
    server.socket = sock
    signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=server.shutdown).start())
    print("ready", flush=True)
    server.serve_forever(poll_interval=0.1)


if __name__ == "__main__":
    main()
