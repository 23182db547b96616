"""Circus 0.19's ``circus.stream.file_stream`` (the module its file streams lived in)."""
from circus.compat.streams import FileStream, TimedRotatingFileStream, WatchedFileStream

__all__ = ["FileStream", "WatchedFileStream", "TimedRotatingFileStream"]
