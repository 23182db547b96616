"""The login throttle: failed logins counted per (name, client address), per client address and
per name, so that guessing is slow and a stranger cannot lock a user out.

===================================== ============================================================
(name, address): 5 failures / 15 min  that name is refused *from that address* until the oldest
                                      of the 5 is 15 minutes old; the user logs in from elsewhere
address: 25 failures / 15 min         that address is refused for every name (a spray of names)
name: 10 failures / 15 min            from then on every login for that name, right or wrong,
                                      from anywhere, waits 2 s before its password is checked:
                                      guessing from many addresses slows down, nobody is locked
===================================== ============================================================

An address is an IPv4 address or an IPv6 /64 (one host usually holds a whole /64). Behind a
reverse proxy, give its address as a trusted proxy (``circushttpd --trusted-proxy``): the
client's address is then the last one the proxy added to ``X-Forwarded-For``; from any other
peer the header is ignored. User names that could not be a user (see
:data:`circus.web.users.NAME_RULE`) are counted on the address only.

Memory is bounded: each table keeps at most :data:`TRACKED` keys and each key only its last
``limit`` failure times; a full table forgets the key whose latest failure is the oldest (never
the whole table). A key someone is still failing on is therefore the last to go: to push it out,
:data:`TRACKED` newer failures are needed, from at least ``TRACKED / address limit`` addresses.
"""
from __future__ import annotations

import ipaddress
from collections import OrderedDict, deque
from dataclasses import dataclass
from typing import Hashable, Iterable

__all__ = ["Throttle", "Verdict", "client_address", "address_key", "WINDOW", "PAIR_LIMIT",
           "ADDRESS_LIMIT", "NAME_SLOW", "NAME_DELAY", "TRACKED"]

WINDOW = 900.0          # seconds a failure counts
PAIR_LIMIT = 5          # failures of one name from one address
ADDRESS_LIMIT = 25      # failures from one address, any names
NAME_SLOW = 10          # failures of one name, any addresses, before each try waits
NAME_DELAY = 2.0        # seconds each try of such a name waits
TRACKED = 10_000        # keys kept per table


@dataclass(frozen=True)
class Verdict:
    """``refused``: why the login is not even tried (None: try it, after ``delay`` seconds)."""

    refused: str | None = None
    delay: float = 0.0


class _Failures:
    """Recent failure times per key, at most ``limit`` per key and ``tracked`` keys."""

    def __init__(self, limit: int, window: float, tracked: int) -> None:
        self.limit, self.window, self.tracked = limit, window, tracked
        self._keys: OrderedDict[Hashable, deque[float]] = OrderedDict()

    def count(self, key: Hashable, now: float) -> int:
        times = self._keys.get(key)
        if times is None:
            return 0
        while times and now - times[0] > self.window:
            times.popleft()
        if not times:
            del self._keys[key]
            return 0
        return len(times)

    def add(self, key: Hashable, now: float) -> None:
        times = self._keys.get(key)
        if times is None:
            times = self._keys[key] = deque(maxlen=self.limit)
            while len(self._keys) > self.tracked:
                self._keys.popitem(last=False)           # the key failed on longest ago
        else:
            self._keys.move_to_end(key)
        times.append(now)

    def forget(self, key: Hashable) -> None:
        self._keys.pop(key, None)

    def __len__(self) -> int:
        return len(self._keys)


class Throttle:
    def __init__(self, window: float = WINDOW, pair_limit: int = PAIR_LIMIT,
                 address_limit: int = ADDRESS_LIMIT, name_slow: int = NAME_SLOW,
                 name_delay: float = NAME_DELAY, tracked: int = TRACKED) -> None:
        self.window, self.name_delay = window, name_delay
        self.pairs = _Failures(pair_limit, window, tracked)
        self.addresses = _Failures(address_limit, window, tracked)
        self.names = _Failures(name_slow, window, tracked)

    def check(self, name: str | None, address: str, now: float) -> Verdict:
        """Before a login of ``name`` (None: not a possible user name) from ``address``."""
        minutes = round(self.window / 60)
        if self.addresses.count(address, now) >= self.addresses.limit:
            return Verdict(f"Too many failed logins from your address: try again in up to "
                           f"{minutes} minutes.")
        if name is not None and self.pairs.count((name, address), now) >= self.pairs.limit:
            return Verdict(f"Too many failed logins for this user from your address: try again "
                           f"in up to {minutes} minutes.")
        if name is not None and self.names.count(name, now) >= self.names.limit:
            return Verdict(None, self.name_delay)
        return Verdict()

    def failed(self, name: str | None, address: str, now: float) -> None:
        self.addresses.add(address, now)
        if name is not None:
            self.pairs.add((name, address), now)
            self.names.add(name, now)

    def succeeded(self, name: str, address: str) -> None:
        """The right password: that name's failures from that address are forgotten (the
        name's own count is not: it is what slows down the others)."""
        self.pairs.forget((name, address))


def address_key(address: str) -> str:
    """What failures are counted against: an IPv4 address, an IPv6 /64; other text as is."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return address[:64]
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.ip_network(f"{ip}/64", strict=False))
    return str(ip)


def client_address(peer: str, forwarded: Iterable[str], trusted: frozenset[str]) -> str:
    """The client's address: ``peer`` (the socket's), or, when ``peer`` is a trusted proxy, the
    right-most address of the ``X-Forwarded-For`` headers (``forwarded``) that is not one."""
    if peer not in trusted:
        return peer
    hops = [h.strip() for value in forwarded for h in value.split(",")]
    for hop in reversed(hops):
        try:
            address = str(ipaddress.ip_address(hop))
        except ValueError:
            return peer                         # a mangled header: count it on the proxy
        if address not in trusted:
            return address
    return peer
