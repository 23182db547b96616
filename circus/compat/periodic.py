"""0.19's ``circus.util.AsyncPeriodicCallback``: tornado's PeriodicCallback, which also takes
0.19's third ``io_loop`` argument (a plugin copied from 0.19's built-ins passes its loop). A
callback that returns an awaitable is awaited before the next call (tornado 6 does that)."""
from __future__ import annotations

from typing import Any, Callable

try:
    from tornado.ioloop import PeriodicCallback
except ImportError:                                  # pragma: no cover - tornado is an extra
    raise ImportError("circus.util.AsyncPeriodicCallback needs tornado (pip install tornado); "
                      "new plugins use CircusPlugin.every(seconds, fn)") from None

__all__ = ["AsyncPeriodicCallback"]


class AsyncPeriodicCallback(PeriodicCallback):
    def __init__(self, callback: Callable[[], Any], callback_time: float,
                 io_loop: Any = None, jitter: float = 0) -> None:
        super().__init__(callback, callback_time, jitter)
