"""Circus 0.19's ``circus.util``, kept for the plugins, hooks, stream classes and tools written
against it — and only for them: it is the 0.19 compatibility surface, not a place for new code.

Each name that public code imports from it either works as it did (implemented in the
:mod:`circus.compat` module of its concept: ``values``, ``endpoints``, ``logs``, ``futures``,
``dotted``, ``environment``) or raises an ImportError that says what to use instead:

* working: ``DEFAULT_ENDPOINT_DEALER``, ``DEFAULT_ENDPOINT_SUB``, ``DEFAULT_ENDPOINT_STATS``,
  ``DEFAULT_ENDPOINT_MULTICAST``, ``LOG_LEVELS``, ``LOG_FMT``, ``LOG_DATE_FMT``,
  ``LOG_DATE_SYSLOG_FMT``, ``MAXFD``, ``REDIRECT_TO``, ``IS_WINDOWS``, ``human2bytes``,
  ``bytes2human``, ``to_bool``, ``to_str``, ``to_bytes``, ``to_signum``, ``to_uid``,
  ``to_gid``, ``get_connection``, ``configure_logger``, ``check_future_exception_and_log``,
  ``tornado_sleep``, ``resolve_name``, ``ImportStringError``, ``get_python_version``,
  ``get_working_dir``, ``debuglog`` (changes nothing), ``parse_env_str``, ``parse_env_dict``,
  ``AsyncPeriodicCallback`` (needs tornado);
* gone (ImportError naming the replacement): see :data:`REMOVED`.
"""
from typing import Any

from circus.compat import dotted, endpoints, environment, futures, logs, values
from circus.compat.dotted import *  # noqa: F401,F403  (the compatibility surface itself)
from circus.compat.endpoints import *  # noqa: F401,F403
from circus.compat.environment import *  # noqa: F401,F403
from circus.compat.futures import *  # noqa: F401,F403
from circus.compat.logs import *  # noqa: F401,F403
from circus.compat.removed import removed_names
from circus.compat.values import *  # noqa: F401,F403

__all__ = [*endpoints.__all__, *environment.__all__, *logs.__all__, *values.__all__,
           *futures.__all__, *dotted.__all__, "AsyncPeriodicCallback"]

#: 0.19 names that are not kept, and what replaces each
REMOVED = {
    "synchronized": "there is no global command lock any more: commands on a watcher are "
                    "serialized and wait their turn (docs/differences.rst)",
    "ConflictError": "commands are never refused for being busy; errors are "
                     "circus.client.CallError (client side) and circus.errors (server side)",
    "TransformableFuture": "use asyncio futures",
    "get_info": "process statistics come from the stats command (circus.client.CircusClient"
                "(...).send_message('stats', name=...)) or circus.stats.procinfo",
    "StrictConfigParser": "configuration files are read by circus.config.load_config",
    "replace_gnu_args": "spawn-time substitution is circus.config.substitute_spawn",
    "DictDiffer": "configuration changes are computed by circus.config.diff",
    "dict_differ": "configuration changes are computed by circus.config.diff",
    "load_virtualenv": "set virtualenv = PATH on the watcher",
    "create_udp_socket": "discovery is circus.core.discovery ([circus] multicast_endpoint)",
    "papa": "papa support is gone (processes survive circusd through [circus] state_file)",
    "ObjectDict": "use a dict or types.SimpleNamespace",
    "convert_opt": "watcher options are typed by circus.config.watcher_from_options",
    "get_username_from_uid": "use pwd.getpwuid(uid).pw_name",
    "get_default_gid": "use pwd.getpwuid(uid).pw_gid",
    "env_to_str": "environments are dicts (the env option)",
}

_removed = removed_names(__name__, REMOVED)


def __getattr__(name: str) -> Any:
    if name == "AsyncPeriodicCallback":
        from circus.compat.periodic import AsyncPeriodicCallback
        return AsyncPeriodicCallback
    return _removed(name)
