"""Hook targets for tests/test_hooks.py (imported by dotted name)."""
import time

calls = []


def ok(**kwargs):
    calls.append(kwargs)
    return True


def falsy(**kwargs):
    return False


def boom(**kwargs):
    raise RuntimeError("boom")


def slow(**kwargs):
    time.sleep(2)
    return True
