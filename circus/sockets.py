"""Circus 0.19's ``circus.sockets``: ``CircusSocket`` (a socket for an arbiter made in Python;
also the kind of object a hook finds in ``arbiter.sockets``) and ``CircusSockets`` (a dict of
them by name). Our own sockets are :mod:`circus.core.sockets`.
"""
from circus.compat.specs import CircusSocket
from circus.compat.arbview import CircusSockets, SocketView

__all__ = ["CircusSocket", "CircusSockets", "SocketView"]
