"""The hook of examples/circus-0.19.ini, written for Circus 0.19: a hook is called with keyword
arguments (``watcher``, ``arbiter``, ``hook_name`` and the extras of its point) and returns a
true value to let the watcher go on. circusd imports it by its dotted name, ``apphooks.announce``,
from its PYTHONPATH."""
import logging

log = logging.getLogger("circus")


def announce(watcher, arbiter, hook_name, **extras):
    log.info("%s: %s hook of examples/apphooks.py", watcher.name, hook_name)
    return True
