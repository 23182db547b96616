"""Whether a rolling step's ``ok`` is true: one look at the node after its answer.

A node's ``ok`` to ``restart web`` (sent with ``waiting: true``) says that the operation ran to
its end; it does not say that ``web`` is still the watcher it ran on. Meanwhile another client
may have removed it without stopping it (``rm --nostop``: the restart went on, on a watcher
that is no longer there, and its new processes run unmanaged), removed it and added another
``web`` (which was not restarted), or stopped or started it again. So after each ``ok`` the
node is asked once more about the watcher, and the ``ok`` stands only if its answer bears it
out:

- the answer itself says ``"status": "ok"`` (a reply of another shape is no success);
- restart, reload, start: the watcher is still there (``list name=W``) and, when the answer named
  the processes it started or kept, one of them at least is among the watcher's processes now;
  an answer that started none and kept none, with none running, is done only for a watcher that
  should run none (``status name=W``: its target is 0 and nothing is wrong): circusd answers
  so when the watcher is retrying in backoff;
- stop: the watcher is still there and ``stopped`` (``status name=W``).

Otherwise the item fails with what was seen (:attr:`NodeResult.unconfirmed`); so does an item
whose check gets no answer (the step cannot say it is done). The check is one round trip per
item, with the node's own deadline, and works with 0.19 nodes (whose answers name no processes:
only the watcher's presence and state are checked there).
"""
from __future__ import annotations

from typing import Any, Mapping

import zmq

from circus.records import replace

from .fanout import NodeResult

__all__ = ["confirm", "note"]


def _pids(value: Any) -> set[int]:
    if not isinstance(value, list):
        return set()
    return {p for p in value if isinstance(p, int) and not isinstance(p, bool)}


def _info(reply: Mapping[str, Any]) -> Mapping[str, Any]:
    info = reply.get("info")
    return info if isinstance(info, Mapping) else {}


def note(action: str, reply: Mapping[str, Any] | None) -> str | None:
    """What an ``ok`` did not do although the command's name says so (pure), or None."""
    if reply is None:
        return None
    info = _info(reply)
    kept, started, stopped = (_pids(info.get(k)) for k in ("kept", "started", "stopped"))
    if action == "restart" and kept and not started and not stopped:
        return (f"its processes were kept, not replaced ({', '.join(map(str, sorted(kept)))}): "
                f"a send_hup watcher is sent SIGHUP instead")
    if action == "start" and kept and not started:
        return "it was running already"
    return None


async def _look(pool: Any, node: str, command: str, watcher: str,
                action: str) -> Mapping[str, Any] | str:
    """The node's answer to ``command name=watcher``, or why there is none (a sentence)."""
    try:
        r = await pool.call_one(node, command, name=watcher)
    except (zmq.ZMQError, OSError) as exc:
        return f"the {action} was answered ok, but the check afterwards failed: {exc}"
    if r.reply is None:
        return (f"the {action} was answered ok, but the check afterwards ({command}) got no "
                f"answer: {r.state}: {r.reason}")
    if r.refused:
        if r.reply.get("code") == "unknown_watcher" or "not found" in r.reason:
            return (f"{watcher!r} is no longer on the node: it was removed during the {action} "
                    f"(what the {action} started may run on unmanaged)")
        return f"the {action} was answered ok, but the check afterwards was refused: {r.reason}"
    return r.reply


async def confirm(pool: Any, watcher: str, action: str, result: NodeResult) -> NodeResult:
    """``result`` as is when it is not ok or when the node bears it out; else the same result
    with :attr:`~NodeResult.unconfirmed` saying why it is not done."""
    if not result.ok:
        return result
    assert result.reply is not None

    def failed(why: str) -> NodeResult:
        return replace(result, unconfirmed=why)

    status = result.reply.get("status")
    if status != "ok":
        return failed(f"the node answered status {status!r} to {action!r}, not 'ok'")
    if action == "stop":
        seen = await _look(pool, result.node, "status", watcher, action)
        if isinstance(seen, str):
            return failed(seen)
        state = seen.get("status")
        if state != "stopped":
            return failed(f"{watcher!r} is {state} right after the stop (another request "
                          f"started it again?)")
        return result
    seen = await _look(pool, result.node, "list", watcher, action)
    if isinstance(seen, str):
        return failed(seen)
    info = _info(result.reply)
    ours = _pids(info.get("started")) | _pids(info.get("kept"))
    now = _pids(seen.get("pids"))
    if ours and not ours & now:
        return failed(f"none of the processes the {action} left running "
                      f"({', '.join(map(str, sorted(ours)))}) is one of {watcher!r}'s now "
                      f"({', '.join(map(str, sorted(now))) or 'none'}): the watcher was removed "
                      f"(and added again?) or its new processes died meanwhile")
    if info.get("started") == [] and info.get("kept") == [] and not now:
        # nothing started, nothing kept, nothing runs: a watcher circusd is retrying in
        # backoff answers so; only one that should run nothing is done
        seen = await _look(pool, result.node, "status", watcher, action)
        if isinstance(seen, str):
            return failed(seen)
        wanted = seen.get("numprocesses")
        if seen.get("trouble") or (isinstance(wanted, int) and wanted > 0):
            what = f" ({seen['trouble']}: {seen.get('reason') or '?'})" if seen.get("trouble") \
                else ""
            return failed(f"the {action} was answered ok, but it started no process and none "
                          f"of {watcher!r} runs{what}")
    return result
