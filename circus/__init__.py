"""Circus: a process and socket manager."""

__version__ = "1.0.0.dev0"
