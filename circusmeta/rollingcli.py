"""``circusmeta COMMAND --rolling ...``: the command line of rolling operations (the run itself
is :mod:`circusmeta.rolling`'s).

What it prints while it runs: the plan, then a line per step when it ends. On a terminal the
running step's line is rewritten in place (how many items answered, which still run, for how
long); elsewhere (a pipe, cron) a *still running* line is printed every ``--state-every``
seconds. A run that stopped (a failure, Ctrl-C) ends with the exact command that resumes it:
``--from ITEM`` starts the same plan at its first item not done.
"""
from __future__ import annotations

import asyncio
import json
import shlex
from typing import Any, Callable, TextIO

from .confirm import note
from .fanout import EXIT_OK
from .rolling import (ACTIONS, DEFAULT_STEP_TIMEOUT, STATE_EVERY, Progress, RollingReport,
                      UnknownTarget, _items_text, _why, rolling)

__all__ = ["rolling_cli", "resume_command", "EXIT_INTERRUPTED"]

EXIT_INTERRUPTED = 130                  # as the shell reports SIGINT; cli.main returns it too
#: seconds between two updates of a terminal's progress line
LIVE_EVERY = 0.5
_USAGE = ("circusmeta {restart|reload|stop|start} --rolling [--batch N] [--step-timeout S] "
          "[--state-every S] [--from ITEM] TARGET [--node N | --tag T | --all]")
_HELP = """
Run the command on TARGET step by step, each step waiting until its nodes say the work is done
(restart/reload: the replacements are ready; the old processes served meanwhile).

TARGET   a watcher (every selected node that has it, in pool-file order: needs --node,
         --tag or --all), a collection of the pool file (its members in order, nested
         collections in place), or NODE:WATCHER

  --batch N           items per step, at once (default 1; a parallel collection: all)
  --step-timeout S    how long a step may take (default: --timeout or [meta] timeout, at least
                      120 s)
  --state-every S     a "still running" line every S seconds of a long step (default 5; on a
                      terminal the step's line is updated in place instead)
  --from ITEM         start at ITEM (NODE or NODE:WATCHER) of the plan: resume a stopped run
  --node/--tag/--all  only the items on these nodes

A progress line per step, then "done: ...; failed: ... (why); not done: ...". An item is done
when its node answered ok and a look at the node right after bears it out (the watcher is still
there and still the one the command ran on). It stops at the first failed step (error reply, an
ok not borne out, unresponsive, not_available, a node whose circusd calls itself by another
name) and prints the command that resumes it. Exit: 0 all done, 1 nothing reached, 2 usage,
3 the first step failed on a node that answered, 4 partial, 130 interrupted.
"""


def _parse(words: list[str]) -> Any:
    import argparse

    from .cli import Usage

    p = argparse.ArgumentParser(prog="circusmeta", usage=_USAGE, add_help=False)
    p.add_argument("--batch", type=int)
    p.add_argument("--step-timeout", dest="step_timeout", type=float)
    p.add_argument("--state-every", dest="state_every", type=float, default=STATE_EVERY)
    p.add_argument("--from", dest="start_at")
    p.add_argument("--help", "-h", action="store_true")
    p.add_argument("target", nargs="?")

    def error(message: str) -> Any:
        raise Usage(message)
    p.error = error  # type: ignore[method-assign]
    return p.parse_args(words)


def _seconds(s: float) -> str:
    return f"{s:.1f} s" if s < 60 else f"{int(s // 60)} min {s % 60:.0f} s"


def resume_command(argv: list[str], item: str) -> str:
    """The command line ``argv`` (without the program's name) with ``--from item`` instead of
    any ``--from`` it had (pure)."""
    words, skip = [], False
    for word in argv:
        if skip:
            skip = False
        elif word == "--from":
            skip = True
        elif not word.startswith("--from="):
            words.append(word)
    return shlex.join(["circusmeta", *words, "--from", item])


class _Printer:
    """The progress of a run: plain lines, or on a terminal one line rewritten in place."""

    def __init__(self, ctx: Any) -> None:
        self.ctx = ctx
        self.out: Callable[[str], None] = ctx.warn if ctx.json else ctx.print
        stream: TextIO = ctx.err if ctx.json else ctx.out
        isatty = getattr(stream, "isatty", None)
        self.live = bool(isatty and isatty())
        self.stream = stream
        self._open = False                  # a progress line is on the screen, unfinished

    def _rewrite(self, text: str) -> None:
        width = 200
        try:
            import os
            width = os.get_terminal_size(self.stream.fileno()).columns
        except (OSError, ValueError, AttributeError):
            pass
        if len(text) >= width:
            text = text[:max(10, width - 4)] + "..."
        self.stream.write("\r\x1b[K" + text)
        self.stream.flush()
        self._open = True

    def clear(self) -> None:
        if self._open:
            self.stream.write("\r\x1b[K")
            self.stream.flush()
            self._open = False

    def line(self, text: str) -> None:
        self.clear()
        self.out(text)

    def warn(self, text: str) -> None:
        self.clear()
        self.ctx.warn(text)

    def __call__(self, p: Progress) -> None:
        report, step = p.report, p.step
        if p.kind == "plan":
            for node, r in report.unchecked.items():
                self.warn(f"{node}: {r.state}: {r.reason or r.error}: cannot tell whether it "
                          f"has {report.target!r}; it is tried in its turn")
            for node, r in report.misnamed.items():
                self.warn(f"{node}: the circusd there calls itself {r.reported_name!r}: its "
                          f"turn fails, nothing is sent to it")
            n, steps = len(report.items), report.total_steps
            start = (f", from {report.items[0]} ({len(report.skipped)} item"
                     f"{'s' if len(report.skipped) != 1 else ''} before it left out)"
                     if report.skipped and report.items else "")
            self.line(f"rolling {report.action} of {report.target}: {n} item"
                      f"{'s' if n != 1 else ''} in {steps} step{'s' if steps != 1 else ''} "
                      f"(batch {report.batch}){start}")
            return
        assert step is not None
        head = f"[{step.index}/{report.total_steps}] {_items_text(step.items)} {report.action}"
        if p.kind == "start":
            if self.live:
                self._rewrite(f"{head} ...")
        elif p.kind == "running":
            if self.live:
                answered = len(step.items) - len(p.running)
                self._rewrite(f"{head} ... {answered}/{len(step.items)} answered, running: "
                              f"{_items_text(p.running)} ({_seconds(p.elapsed)})")
                return
            finished = [f"{i} {'ok' if r.ok else 'failed'}" for i, r in step.results.items()]
            self.line(f"{head} ... still running: {_items_text(p.running)} "
                      f"({_seconds(p.elapsed)})"
                      + (f"; finished: {_items_text(finished)}" if finished else ""))
        elif p.kind == "done":
            if step.ok:
                self.line(f"{head} ... ok ({_seconds(step.elapsed)})")
                for item, r in step.results.items():
                    if (said := note(report.action, r.reply)) is not None:
                        self.line(f"  {item}: {said}")
            else:
                good = [i for i, r in step.results.items() if r.ok]
                self.line(f"{head} ... failed ({_seconds(step.elapsed)})"
                          + (f"; ok: {_items_text(good)}" if good else ""))
                for item, r in step.results.items():
                    if not r.ok:                # the reason may carry the child's last lines
                        first, *more = _why(r).splitlines() or [""]
                        self.line(f"  {item}: {first}")
                        for line in more:
                            self.line(f"    {line}")
            for r in step.results.values():
                if r.name_mismatch and r.node not in report.misnamed:
                    self.warn(f"{r.node}: the circusd there calls itself {r.reported_name!r}")


def _resume_hint(ctx: Any, report: RollingReport) -> None:
    """Where the run stopped and the commands that go on from there (stderr)."""
    at = report.resume_at
    if at is None:
        return
    failed = list(report.failed)
    where = (f"stopped at step {len(report.steps)} of {report.total_steps}"
             + (f" ({_items_text(failed)} failed)" if failed else ""))
    ctx.warn(f"{where}; {len(report.done)} of {len(report.items)} items done. To resume:")
    ctx.warn(f"  {resume_command(ctx.command_line, at)}")
    later = report.items[report.items.index(at) + 1:]
    if at in failed and later:
        ctx.warn(f"  (or, leaving {at} out: {resume_command(ctx.command_line, later[0])})")


async def rolling_cli(ctx: Any, pool: Any, command: str, words: list[str],
                      selected: list[str], explicit: bool) -> int:
    """``circusmeta COMMAND --rolling ...``: progress, the report, the resume command, the
    audit file."""
    from .cli import Usage

    ns = _parse(words)
    if ns.help:
        ctx.print(f"usage: {_USAGE}\n{_HELP.rstrip()}")
        return EXIT_OK
    if command not in ACTIONS:
        raise Usage(f"--rolling works with {', '.join(ACTIONS)}, not {command!r}")
    if not ns.target:
        raise Usage(f"which watcher or collection? usage: {_USAGE}")
    if ns.batch is not None and ns.batch < 1:
        raise Usage(f"--batch must be at least 1, got {ns.batch}")
    if ns.state_every <= 0 or (ns.step_timeout is not None and ns.step_timeout <= 0):
        raise Usage("--step-timeout and --state-every are seconds > 0")
    names_nodes = ns.target in pool.config.collections or ":" in ns.target
    if not explicit and not names_nodes:     # as for a plain restart: never every node by omission
        raise Usage(f"{command} --rolling {ns.target} changes the nodes: say where with "
                    f"--node N, --tag T or --all")
    step_timeout = ns.step_timeout
    if step_timeout is None:
        step_timeout = max(ctx.timeout or pool.config.meta.timeout, DEFAULT_STEP_TIMEOUT)
    show, seen = _Printer(ctx), []
    state_every = min(ns.state_every, LIVE_EVERY) if show.live else ns.state_every

    def on_progress(p: Progress) -> None:
        if not seen:
            seen.append(p.report)
        show(p)
    try:
        report = await rolling(pool, command, ns.target, batch=ns.batch,
                               nodes=selected if explicit else None, step_timeout=step_timeout,
                               on_progress=on_progress, state_every=state_every,
                               start_at=ns.start_at)
    except UnknownTarget as exc:
        raise Usage(str(exc)) from None
    except asyncio.CancelledError:          # Ctrl-C: say how far it got, then stop
        if seen:
            show.clear()
            ctx.warn(f"interrupted: {seen[0].summary()}")
            _resume_hint(ctx, seen[0])
            _audit(ctx, pool, command, seen[0], EXIT_INTERRUPTED, step_timeout)
        raise
    code = report.exit_code
    if ctx.json:
        ctx.print(json.dumps(report.to_dict()))
    else:
        ctx.print(report.summary())
    if code != EXIT_OK:
        _resume_hint(ctx, report)
    _audit(ctx, pool, command, report, code, step_timeout)
    return code


def _audit(ctx: Any, pool: Any, command: str, report: RollingReport, code: int,
           step_timeout: float) -> None:
    """The audit file: a line per item tried (keyed ``node:watcher``), the plan and outcome."""
    results = {item: {**r.to_dict(), "item": item, "watcher": item.partition(":")[2]}
               for item, r in report.results.items()}
    extra = {k: v for k, v in report.to_dict().items() if k not in ("command", "exit", "steps")}
    extra["steps"] = [{"step": s.index, "items": list(s.items), "ok": s.ok,
                       "elapsed": round(s.elapsed, 3)} for s in report.steps]
    extra["step_timeout"] = step_timeout
    ctx.audit(pool, command, results, code, extra)
