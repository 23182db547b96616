"""Circus 0.19's future helpers (``circus.util``), on asyncio."""
from __future__ import annotations

import asyncio
import logging
from typing import Any

__all__ = ["check_future_exception_and_log", "tornado_sleep"]


def check_future_exception_and_log(future: Any) -> BaseException | None:
    """The exception of a done future (logged), or None."""
    exception = getattr(future, "exception", None)
    if exception is None or not getattr(future, "done", lambda: True)():
        return None
    error = exception()
    if error is not None:
        logging.getLogger("circus").error("exception %s caught", error)
    return error


def tornado_sleep(duration: float) -> Any:
    """An awaitable that sleeps (``await tornado_sleep(1)``, or ``yield`` in a coroutine)."""
    return asyncio.ensure_future(asyncio.sleep(duration))
