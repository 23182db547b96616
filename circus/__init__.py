"""Circus: a process and socket manager.

Two names are kept from Circus 0.19 for the code written against it: ``logger`` (the
``circus`` logger, which hooks, plugins and stream classes log to: ``from circus import
logger``) and ``get_arbiter`` (run an arbiter inside a Python program; see docs/library.rst).
Importing this package stays cheap: ``get_arbiter`` loads the arbiter on its first call.
"""
import logging

__version__ = "1.0.0.dev0"

__all__ = ["__version__", "logger", "get_arbiter"]

#: the logger of circusd and of its helpers (0.19's ``circus.logger``)
logger = logging.getLogger("circus")


def get_arbiter(watchers, controller=None, pubsub_endpoint=None, statsd=False,
                stats_endpoint=None, statsd_close_outputs=False, multicast_endpoint=None,
                env=None, name=None, context=None, background=False, stream_backend="thread",
                httpd=False, plugins=None, debug=False, proc_name="circusd", loop=None,
                check_delay=1.0, **kw):
    """An arbiter running ``watchers`` (a list of dicts: ``cmd``, and optionally ``name``,
    ``numprocesses``... any watcher option), with Circus 0.19's signature.

    ``arbiter.start()`` runs it in the calling thread until it is stopped (``arbiter.stop()``
    from another thread, SIGTERM/SIGINT in the main thread); with ``background=True``,
    ``start()`` returns once the watchers have started and the arbiter runs in a thread of its
    own. See :func:`circus.compat.library.get_arbiter`.
    """
    from circus.compat.library import get_arbiter as _get_arbiter

    return _get_arbiter(watchers, controller=controller, pubsub_endpoint=pubsub_endpoint,
                        statsd=statsd, stats_endpoint=stats_endpoint,
                        statsd_close_outputs=statsd_close_outputs,
                        multicast_endpoint=multicast_endpoint, env=env, name=name,
                        context=context, background=background, stream_backend=stream_backend,
                        httpd=httpd, plugins=plugins, debug=debug, proc_name=proc_name,
                        loop=loop, check_delay=check_delay, **kw)
