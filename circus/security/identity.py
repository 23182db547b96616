"""Who a control request comes from: a name and a role (and the CURVE key it was known by).

Apart from :mod:`circus.security.keyring` (which reads the ``curve_clients`` directory and the
key files) so that a circusd without CURVE, whose every caller is :data:`ANONYMOUS`, does not
load the key machinery.
"""
from __future__ import annotations


from circus.protocol import Role
from circus.records import Record, record

__all__ = ["Identity", "ANONYMOUS"]


@record
class Identity(Record):
    name: str
    role: Role
    key: str = ""           # Z85 public key; "" without CURVE

    @property
    def role_name(self) -> str:
        return self.role.name.lower()


#: the caller when no CURVE is configured: nothing to tell callers apart, every command allowed
ANONYMOUS = Identity("anonymous", Role.ADMIN)
