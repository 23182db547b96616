"""A worker for examples/plugins.ini: does its work, and tells the watchdog plugin it is alive.

Usage: python3 heartbeat.py [PORT]  (the WatchDog plugin's port, default 1664)
"""
import os
import socket
import sys
import time

port = int(sys.argv[1]) if len(sys.argv) > 1 else 1664
sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
while True:
    # ... one unit of work here ...
    sock.sendto(f"{os.getpid()};{time.time()}".encode(), ("127.0.0.1", port))
    time.sleep(1)
