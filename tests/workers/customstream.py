"""A custom stream class for tests, configured by dotted name (``customstream.Collect``)."""
from __future__ import annotations


class Collect:
    """Writes ``<prefix><name> <pid> <data>`` per line to ``path``; notes open and close."""

    def __init__(self, path: str, prefix: str = "") -> None:
        self.path = path
        self.prefix = prefix
        self.fh = None

    def open(self) -> None:
        self.fh = open(self.path, "a")
        self.fh.write("opened\n")

    def __call__(self, data: dict) -> None:
        self.fh.write(f"{self.prefix}{data['name']} {data['pid']} {data['data'].decode()}")

    def close(self) -> None:
        self.fh.write("closed\n")
        self.fh.close()
