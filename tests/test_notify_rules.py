"""Tier 1: notification matching, the throttle (numbers for a clock), messages, and the notifier's
delivery and retries on a virtual-clock loop with a recording sender."""
from __future__ import annotations

import asyncio

import pytest

from circus.config import NotifyConfig
from circus.notify.rules import Batch, Occurrence, Rule, Throttle, render_data, render_text
from circus.notify.senders import DeliveryError, Message
from circus.notify.service import MAX_RETRY_DELAY, QUEUE_SIZE, Notifier
from circus.notify.spec import (ExecDestination, SmtpDestination, WebhookDestination,
                                parse_destination)
from circus.testing.clock import run_virtual


def cfg(**kw) -> NotifyConfig:
    base = dict(name="mail", events=("fatal", "backoff", "unhealthy", "restart"),
                destination="smtp://127.0.0.1:25", mail_from="c@x", to=("o@x",))
    base.update(kw)
    return NotifyConfig(**base)


def occ(n: int = 0, watcher: str = "web", event: str = "backoff") -> Occurrence:
    return Occurrence(watcher, event, f"exit code {n}", 1_700_000_000.0 + n, 100 + n)


# -- destinations ---------------------------------------------------------------------------------

@pytest.mark.parametrize("text, dest", [
    ("smtp://mail.example.com", SmtpDestination("mail.example.com", 25, False)),
    ("smtp://127.0.0.1:2525", SmtpDestination("127.0.0.1", 2525, False)),
    ("SMTPS://h", SmtpDestination("h", 465, True)),
    ("smtp://[::1]:26", SmtpDestination("::1", 26, False)),
    ("exec:page-me --team 'on call'", ExecDestination(("page-me", "--team", "on call"))),
    ("https://hooks.example.com/T0/B1?x=1", WebhookDestination("https://hooks.example.com/T0/B1?x=1")),
])
def test_destinations(text, dest):
    assert parse_destination(text) == dest


@pytest.mark.parametrize("text, why", [
    ("ftp://h", "unknown destination"), ("smtp://", "missing host"),
    ("smtp://u:p@h", "username"), ("smtp://h/path", "unexpected path"),
    ("exec:", "empty command"), ("exec:a 'b", "No closing quotation"),
    ("http://u:p@h/", "login"), ("smtp://h:99999", "bad destination"),
])
def test_bad_destinations(text, why):
    with pytest.raises(ValueError, match=why):
        parse_destination(text)


# -- matching -------------------------------------------------------------------------------------

def test_events_map_to_the_watcher_events():
    rule = Rule(cfg())
    state = rule.on_event("web", "state", {"state": "fatal", "reason": "exited 3 times"}, 5.0)
    assert (state.event, state.reason, state.time) == ("fatal", "exited 3 times", 5.0)
    assert rule.on_event("web", "state", {"state": "active", "reason": ""}, 5.0) is None
    back = rule.on_event("web", "backoff", {"reason": "exit code 1; respawn in 0.2 s",
                                            "process_pid": 7, "time": 9.0}, 5.0)
    assert (back.event, back.pid, back.time) == ("backoff", 7, 9.0)
    assert rule.on_event("web", "respawn", {"reason": "exit code 0"}, 5.0).event == "restart"
    assert rule.on_event("web", "unhealthy", {"reason": "tcp refused"}, 5.0).event == "unhealthy"
    for other in ("reap", "spawn", "stop", "start", "kill", "ready", "restart"):
        assert rule.on_event("web", other, {}, 5.0) is None


def test_only_the_chosen_events_and_watchers():
    rule = Rule(cfg(events=("fatal",), watchers=("Web", "db")))
    assert rule.on_event("WEB", "state", {"state": "fatal"}, 1.0) is not None
    assert rule.on_event("db", "backoff", {}, 1.0) is None
    assert rule.on_event("api", "state", {"state": "fatal"}, 1.0) is None
    assert Rule(cfg()).covers("anything-added-later")


def test_lines_match_with_search():
    rule = Rule(cfg(events=(), match=r"ERROR|panic:"))
    assert rule.wants_lines("web") and not Rule(cfg()).wants_lines("web")
    found = rule.on_line("web", 42, "stderr", "2024 ERROR db down", 3.0)
    assert (found.event, found.reason, found.pid, found.stream) == ("match", "2024 ERROR db down",
                                                                    42, "stderr")
    assert rule.on_line("web", 42, "stdout", "all fine", 3.0) is None
    assert len(rule.on_line("web", 1, "stdout", "ERROR " + "x" * 5000, 3.0).reason) < 2100


# -- the throttle ---------------------------------------------------------------------------------

def test_throttle_one_batch_per_window_and_the_count_of_what_was_held():
    t = Throttle("mail", 60.0)
    first = t.offer(occ(1), now=100.0)
    assert first == Batch("mail", (occ(1),), 0, (), 60.0)
    for n in range(2, 10):                        # 8 more inside the window: held back
        assert t.offer(occ(n), now=100.0 + n) is None
    assert t.due() == 160.0
    assert t.flush(now=159.9) is None             # not yet
    digest = t.flush(now=160.0)
    assert digest.digest and digest.suppressed == 8
    assert [o.pid for o in digest.held] == [105, 106, 107, 108, 109]      # the latest 5
    assert t.due() is None                        # nothing held any more
    assert t.offer(occ(10), now=200.0) is None    # the digest opened a new window (160-220)
    later = t.offer(occ(11), now=221.0)           # its held occurrence rides with the next one
    assert later.occurrences == (occ(11),) and later.suppressed == 1 and later.held == (occ(10),)


def test_throttle_zero_sends_everything_and_force_flush():
    t = Throttle("mail", 0.0)
    assert all(t.offer(occ(n), now=1.0) is not None for n in range(5))
    t = Throttle("mail", 30.0)
    t.offer(occ(1), 0.0)
    t.offer(occ(2), 1.0)
    assert t.flush(2.0) is None and t.flush(2.0, force=True).suppressed == 1


# -- messages -------------------------------------------------------------------------------------

def test_message_text_names_watcher_node_and_reason():
    fatal = Occurrence("crasher", "fatal", "exited 3 times in 0.5 s: exit code 1", 1_700_000_000.0)
    title, text = render_text(Batch("mail", (fatal,)), "node7")
    assert title == "[circus] node7: crasher is fatal: exited 3 times in 0.5 s: exit code 1"
    assert "Node:     node7" in text and "Watcher:  crasher" in text
    assert "Reason:   exited 3 times in 0.5 s: exit code 1" in text
    assert "2023-11-14 22:13:20 UTC" in text and "held back" not in text

    batch = Batch("mail", (occ(9),), 7, (occ(7), occ(8)), 300.0)
    _, text = render_text(batch, "node7", dropped=2)
    assert "Also: 7 notifications held back by the throttle (one message per 300 s)" in text
    assert "The latest 2:" in text and "exit code 8" in text and "2 earlier messages" in text

    title, text = render_text(Batch("mail", (), 3, (occ(1), occ(2, "db")), 60.0), "n")
    assert title == "[circus] n: 3 more notifications (db, web)"
    assert text.startswith("Node:     n\n\n3 notifications held back")


def test_webhook_json_has_the_fields_and_a_text():
    data = render_data(Batch("hook", (occ(1),), 2, (occ(0),), 60.0), "n1")
    assert data["notification"] == "hook" and data["node"] == "n1" and data["suppressed"] == 2
    assert data["occurrences"][0]["watcher"] == "web" and data["occurrences"][0]["pid"] == 101
    assert data["text"].startswith("Node:     n1") and data["subject"].startswith("[circus] n1")


# -- the notifier on a virtual clock --------------------------------------------------------------

class Host:
    node = "n1"
    environ: dict = {}
    watchers: dict = {}

    def __init__(self) -> None:
        self.events: list[tuple[str, dict]] = []

    def publish(self, topic: str, payload: dict) -> None:
        self.events.append((topic, payload))

    async def run_command(self, spec, timeout):  # pragma: no cover - not used here
        raise AssertionError


class Recorder:
    """A sender that records (virtual time, message) and fails the first `failures` sends."""

    def __init__(self, failures: int = 0, hang: bool = False) -> None:
        self.sent: list[tuple[float, Message]] = []
        self.tries: list[float] = []
        self.failures = failures
        self.hang = hang

    async def send(self, message: Message) -> None:
        loop = asyncio.get_running_loop()
        self.tries.append(loop.time())
        if self.hang:
            await asyncio.sleep(3600)
        if self.failures:
            self.failures -= 1
            raise DeliveryError("smtp://127.0.0.1:25: Connection refused")
        self.sent.append((loop.time(), message))


def notifier(sender: Recorder, **kw) -> tuple[Notifier, Host]:
    host = Host()
    n = Notifier(host, make=lambda c: sender)
    n.configure([cfg(**kw)])
    return n, host


def test_crash_loop_gives_one_mail_then_a_count_at_the_end_of_the_window():
    sender = Recorder()

    async def main():
        n, host = notifier(sender, throttle=60.0)
        loop = asyncio.get_running_loop()
        start = loop.time()
        for i in range(20):                       # a crash loop: one backoff per second
            n.on_event("watcher.web.backoff", {"reason": f"exit code 1 (#{i})", "process_pid": i})
            await asyncio.sleep(1.0)
        n.on_event("watcher.web.state", {"state": "fatal", "reason": "exited 21 times"})
        await asyncio.sleep(100)
        await n.close()
        return start, host

    start, host = run_virtual(main())
    times = [round(t - start) for t, _ in sender.sent]
    assert times == [0, 60]                      # one message per window
    first, second = (m for _, m in sender.sent)
    assert "web in backoff: exit code 1 (#0)" in first.subject
    assert second.subject == "[circus] n1: 20 more notifications (web)"
    assert "20 notifications held back" in second.text and "exited 21 times" in second.text
    assert [t for t, _ in host.events] == ["notify.mail.sent", "notify.mail.sent"]


def test_failed_deliveries_are_retried_with_doubling_delays_then_given_up():
    sender = Recorder(failures=3)

    async def main():
        n, host = notifier(sender, retries=5, retry_delay=10.0)
        start = asyncio.get_running_loop().time()
        n.on_event("watcher.web.state", {"state": "fatal", "reason": "x"})
        await asyncio.sleep(1000)
        return start, host

    start, host = run_virtual(main())
    assert [round(t - start) for t in sender.tries] == [0, 10, 30, 70]
    failed = [p for t, p in host.events if t == "notify.mail.failed"]
    assert [(p["attempt"], p["retry_in"]) for p in failed] == [(1, 10.0), (2, 20.0), (3, 40.0)]
    assert "Connection refused" in failed[0]["reason"]
    assert host.events[-1][0] == "notify.mail.sent" and host.events[-1][1]["attempt"] == 4

    sender = Recorder(failures=100)

    async def give_up():
        n, host = notifier(sender, retries=2, retry_delay=400.0)
        n.on_event("watcher.web.state", {"state": "fatal", "reason": "x"})
        await asyncio.sleep(2000)
        return host

    host = run_virtual(give_up())
    assert len(sender.tries) == 3
    assert [p["retry_in"] for _, p in host.events] == [400.0, MAX_RETRY_DELAY, None]


def test_a_hanging_destination_times_out_and_others_are_not_delayed():
    slow, fast = Recorder(hang=True), Recorder()

    async def main():
        host = Host()
        n = Notifier(host, make=lambda c: slow if c.name == "slow" else fast)
        n.configure([cfg(name="slow", timeout=2.0, retries=0), cfg(name="fast")])
        n.on_event("watcher.web.state", {"state": "fatal", "reason": "x"})
        await asyncio.sleep(0.1)
        assert len(fast.sent) == 1                # not behind the slow one
        await asyncio.sleep(60)
        return host

    host = run_virtual(main())
    failed = [p for t, p in host.events if t == "notify.slow.failed"]
    assert failed and "no answer after 7 s" in failed[0]["reason"]


def test_queue_is_bounded_and_the_drop_is_told():
    sender = Recorder(hang=False, failures=QUEUE_SIZE + 50)

    async def main():
        n, host = notifier(sender, throttle=0.0, retries=0, events=(), match="ERROR")
        n.on_lines("web", 1, "stdout", [b"ERROR %d" % i for i in range(QUEUE_SIZE + 20)])
        assert len(n.channels["mail"].queue) <= QUEUE_SIZE
        await asyncio.sleep(1)
        return n

    n = run_virtual(main())
    assert n.channels["mail"].dropped >= 19


def test_lines_of_other_watchers_and_after_close_are_ignored():
    sender = Recorder()

    async def main():
        n, host = notifier(sender, events=(), match="ERROR", watchers=("web",))
        assert n.wants_output("WEB") and not n.wants_output("db")
        n.on_lines("db", 1, "stdout", [b"ERROR elsewhere"])
        n.on_lines("web", 1, "stderr", [b"fine", b"ERROR here\r"])
        await asyncio.sleep(1)
        await n.close()
        n.on_lines("web", 1, "stderr", [b"ERROR late"])
        await asyncio.sleep(1)

    run_virtual(main())
    assert len(sender.sent) == 1
    assert "web logged: ERROR here" in sender.sent[0][1].subject
    assert sender.sent[0][1].env["CIRCUS_WATCHER"] == "web"


def test_close_sends_the_count_still_held_back():
    sender = Recorder()

    async def main():
        n, host = notifier(sender, throttle=300.0)
        for _ in range(3):
            n.on_event("watcher.web.unhealthy", {"reason": "tcp refused"})
        await asyncio.sleep(1)
        await n.close()

    run_virtual(main())
    assert [m.subject for _, m in sender.sent] == [
        "[circus] n1: web is unhealthy: tcp refused", "[circus] n1: 2 more notifications (web)"]


def test_reconfigure_keeps_unchanged_channels():
    async def main():
        host = Host()
        n = Notifier(host, make=lambda c: Recorder())
        a, b = cfg(name="a"), cfg(name="b")
        n.configure([a, b])
        kept = n.channels["a"]
        n.configure([a, cfg(name="b", throttle=1.0), cfg(name="c")])
        assert n.channels["a"] is kept and n.channels["b"].cfg.throttle == 1.0
        n.configure([])
        assert n.channels == {}

    run_virtual(main())
