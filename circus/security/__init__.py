"""Secure remote control: CURVE keys, the authorized clients and their roles, the ZAP handler,
the exposure rule for network endpoints, and the audit trail. See ``docs/security.rst``."""
