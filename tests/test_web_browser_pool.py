"""Tier 3 in a real browser, the pool as one: headless Chromium (tests/webdriver.py) on
circushttpd's watchers page over four real circusd: the rows summed across the nodes, live,
sortable and filtered; a rolling restart run from the page, one that fails in the middle, an
add with placement, and what each role may do. Screenshots go where test_web_browser's do
($CIRCUS_SCREENSHOTS): web-pool-watchers.png, web-pool-rolling-failed.png."""
from __future__ import annotations

import json
import re
import subprocess
import textwrap
import urllib.parse
from pathlib import Path

import pytest

import webdriver
from conftest import Circusd
from test_web_browser import (BG, PY, USERS, Httpd, adduser, bg, browser,  # noqa: F401
                              browser_paths, fetch, login, path_of, png_size, shots)

pytestmark = pytest.mark.real

#: node -> (tags, {watcher: (numprocesses, cmd or None: the web command)})
NODES = {
    "p1": ("front", {"web": (2, None)}),
    "p2": ("front", {"web": (2, None), "crasher": (1, "sh -c 'echo crash >&2; exit 3'")}),
    "p3": ("back", {"web": (1, None), "db": (1, "/no/such/binary")}),
    "p4": ("back", {"web": (1, None)}),
}
#: web runs while its node's ok file exists: without it, a restart of it fails
WEB = "sh -c 'test -e {d}/ok || {{ echo {node}: no ok file >&2; exit 4; }}; exec sleep 500'"


class PoolNode:
    def __init__(self, name: str, base: Path) -> None:
        self.name, self.dir = name, base / name
        self.dir.mkdir()
        (self.dir / "ok").write_text("")
        self.tags, self.watchers = NODES[name]
        self.daemon = Circusd(self.dir)

    def ep(self, kind: str) -> str:
        return f"ipc://{self.dir}/{kind}.sock"

    def start(self) -> None:
        text = textwrap.dedent(f"""
            [circus]
            endpoint = {self.ep("control")}
            pubsub_endpoint = {self.ep("events")}
        """)
        for watcher, (count, cmd) in self.watchers.items():
            text += (f"[watcher:{watcher}]\ncmd = {cmd or WEB.format(d=self.dir, node=self.name)}"
                     f"\nnumprocesses = {count}\ngraceful_timeout = 3\n")
            if watcher == "crasher":
                text += "max_retry = -1\nbackoff_initial = 0.5\nbackoff_max = 1\n"
            if watcher == "db":
                text += "max_retry = 1\n"
        self.daemon.start(text, "--name", self.name)

    def ctl(self, *args: str) -> str:
        r = subprocess.run([PY, "-m", "circus.cli.circusctl", "--endpoint", self.ep("control"),
                            *args], capture_output=True, text=True, timeout=30)
        return r.stdout.strip()

    def pids(self, watcher: str) -> list[int]:
        return sorted(int(p) for p in re.findall(r"\d+", self.ctl("list", watcher)))


class Pool:
    def __init__(self, nodes: dict[str, PoolNode], httpd: Httpd) -> None:
        self.nodes, self.httpd = nodes, httpd

    @property
    def url(self) -> str:
        return self.httpd.url

    def check(self) -> None:
        self.httpd.check()
        for node in self.nodes.values():
            proc = node.daemon.proc
            if proc is not None and proc.poll() is not None:
                pytest.fail(f"circusd {node.name} exited ({proc.returncode}):\n"
                            f"{node.daemon.log_text()[-3000:]}")


@pytest.fixture(scope="module")
def pool(tmp_path_factory):
    base = tmp_path_factory.mktemp("webpool")
    nodes = {name: PoolNode(name, base) for name in NODES}
    httpd = None
    try:
        for node in nodes.values():
            node.start()
        for node in nodes.values():
            node.daemon.wait(lambda n=node: (n.dir / "control.sock").exists(), what="socket")
            node.daemon.wait(lambda n=node: len(n.pids("web")) == n.watchers["web"][0],
                             timeout=20, what=f"{node.name}'s web")
        nodes["p2"].daemon.wait(lambda: '"trouble": "backoff"' in nodes["p2"].ctl(
            "--json", "status", "crasher"), timeout=20, what="crasher in backoff")
        nodes["p3"].daemon.wait(lambda: nodes["p3"].ctl("status", "db").startswith("fatal"),
                                timeout=20, what="db fatal")
        pool_file = base / "pool.ini"
        text = "[meta]\ntimeout = 5\nstrategy = round_robin\n"
        for node in nodes.values():
            text += (f"[node:{node.name}]\nendpoint = {node.ep('control')}\n"
                     f"pubsub_endpoint = {node.ep('events')}\ntags = {node.tags}\n")
        pool_file.write_text(text)
        users = base / "circushttpd.users"
        for name, role in USERS.items():
            adduser(users, name, role)
        httpd = Httpd(base, pool_file, users)
        httpd.start()
        yield Pool(nodes, httpd)
    finally:
        if httpd is not None:
            httpd.stop()
        for node in nodes.values():
            if node.daemon.proc is not None:
                node.daemon.stop()
                node.daemon.cleanup()


ROW = '#pool-watchers tr[data-watcher="{}"]'


def row_data(b: webdriver.Session) -> dict[str, dict]:
    """Every visible row's data (read in one go: the rows are patched live)."""
    return b.execute("""
        const out = {};
        for (const tr of document.querySelectorAll('#pool-watchers tr[data-watcher]')) {
            if (tr.hidden) continue;
            out[tr.dataset.watcher] = {nodes: +tr.dataset.nodes, alive: +tr.dataset.alive,
                wanted: +tr.dataset.wanted, unhealthy: +tr.dataset.unhealthy,
                health: tr.dataset.health,
                shown: tr.querySelector('td.procs').textContent.trim(),
                entries: [...tr.querySelectorAll('ul.entries li')].map(li => li.dataset.node),
                troubled: [...tr.querySelectorAll('ul.unhealthy li')].map(li =>
                    [li.dataset.node, li.dataset.trouble,
                     li.querySelector('a').getAttribute('href')])};
        }
        return out;""")


def order(b: webdriver.Session) -> list[str]:
    return [tr.attribute("data-watcher")
            for tr in b.find_all("#pool-watchers tr[data-watcher]")]


def job_state(b: webdriver.Session) -> dict:
    return b.execute("""
        const box = document.querySelector('#job');
        if (!box) return null;
        return {phase: box.dataset.phase, result: box.dataset.result || null,
                state: box.dataset.state,
                items: Object.fromEntries([...box.querySelectorAll('#job-items li')].map(
                    li => [li.dataset.node, li.dataset.state])),
                head: box.querySelector('#job-head').textContent.trim(),
                reason: (box.querySelector('#job-reason') || {}).textContent || '',
                lines: (box.querySelector('#job-lines') || {}).textContent || '',
                resume: (box.querySelector('#job-resume button') || {}).textContent || null};""")


def watch_chips(b: webdriver.Session) -> None:
    """Record every state each node's chip shows, from now on (window.__chips)."""
    b.execute("""
        window.__chips = {};
        const note = () => document.querySelectorAll('#job-items li').forEach(li => {
            const seen = window.__chips[li.dataset.node] || (window.__chips[li.dataset.node] = []);
            if (seen[seen.length - 1] !== li.dataset.state) seen.push(li.dataset.state);
        });
        new MutationObserver(note).observe(document.body,
            {subtree: true, childList: true, attributes: true, attributeFilter: ['data-state']});""")


def job_end(b: webdriver.Session, pool: Pool, timeout: float = 60.0) -> dict:
    return b.wait_until(lambda: (s := job_state(b)) and s["phase"] == "ended" and s,
                        timeout=timeout, what="the job to end", check=pool.check)


def test_the_watchers_of_the_pool_in_one_table(browser, pool, shots):
    b = browser
    login(b, pool, "readonly")
    b.find('#pool-tabs a[href="/watchers"]').click()
    b.wait_until(lambda: path_of(b.url) == "/watchers" and b.exists("#pool-watchers"),
                 what="the watchers page", check=pool.check)
    rows = row_data(b)
    assert sorted(rows) == ["crasher", "db", "web"]
    web = rows["web"]
    assert (web["nodes"], web["alive"], web["wanted"], web["unhealthy"], web["health"]) == \
        (4, 6, 6, 0, "ok")
    assert web["shown"] == "6 / 6" and web["entries"] == ["p1", "p2", "p3", "p4"]
    assert (rows["crasher"]["unhealthy"], rows["crasher"]["health"]) == (1, "warn")
    assert rows["crasher"]["troubled"] == [["p2", "backoff", "/node/p2/watcher/crasher"]]
    assert (rows["db"]["unhealthy"], rows["db"]["health"], rows["db"]["alive"]) == (1, "bad", 0)
    assert bg(b, ROW.format("db") + " td.unhealthy-cell .badge") == BG["bad"]
    assert bg(b, ROW.format("crasher") + " td.unhealthy-cell .badge") == BG["warn"]
    assert b.find("#answered").text == "4"
    # readonly: no form but the filter and logout
    assert not b.exists("form.rolling") and not b.exists("#pool-add")
    png_size(b.screenshot(shots / "web-pool-watchers.png"))
    # sorted in place by a column, the address kept
    b.find('#pool-watchers th[data-sort="unhealthy"] a').click()
    b.wait_until(lambda: order(b)[-1] == "web", what="sorted by unhealthy", check=pool.check)
    assert order(b)[:2] in (["crasher", "db"], ["db", "crasher"])
    assert "sort=unhealthy" in b.url and "order=desc" in b.url
    b.find('#pool-watchers th[data-sort="nodes"] a').click()
    b.wait_until(lambda: order(b)[0] == "web", what="sorted by nodes", check=pool.check)
    # the name filter at once, then a tag: the server sums the nodes with that tag
    b.find("#filter-name").send_keys("RASH")
    b.wait_until(lambda: list(row_data(b)) == ["crasher"], what="only crasher",
                 check=pool.check)
    assert b.find("#pool-watchers-count").text == "1"
    b.find("#filter-name").clear()
    b.execute("const s = document.querySelector('#filter-tag'); s.value = 'back';"
              "s.dispatchEvent(new Event('change'));")
    b.wait_until(lambda: "tag=back" in b.url and b.exists("#pool-watchers"),
                 what="the back nodes", check=pool.check)
    rows = row_data(b)
    assert sorted(rows) == ["db", "web"]
    assert (rows["web"]["nodes"], rows["web"]["alive"], rows["web"]["entries"]) == \
        (2, 2, ["p3", "p4"])
    # a node's part leads to its watcher page
    b.execute("document.querySelector(arguments[0]).open = true;", ROW.format("web") + " details")
    b.find(ROW.format("web") + ' ul.entries li[data-node="p4"] a').click()
    b.wait_until(lambda: path_of(b.url) == "/node/p4/watcher/web" and b.exists("#processes"),
                 what="p4's web page", check=pool.check)


def test_a_change_on_one_node_shows_without_a_reload(browser, pool):
    b = browser
    login(b, pool, "readonly", next_path="/watchers")
    b.wait_until(lambda: b.execute("return document.body.dataset.live") == "open",
                 what="the page's socket", check=pool.check)
    b.execute("window.__same = true;")
    p4 = pool.nodes["p4"]
    try:
        p4.ctl("incr", "web")
        b.wait_until(lambda: row_data(b)["web"]["alive"] == 7, timeout=20,
                     what="web's 7th process on the page", check=pool.check)
        assert row_data(b)["web"]["shown"] == "7 / 7"
        assert b.find(ROW.format("web") + ' ul.entries li[data-node="p4"]') \
            .attribute("data-alive") == "2"
    finally:
        p4.ctl("decr", "web")
    b.wait_until(lambda: row_data(b)["web"]["alive"] == 6, timeout=20, what="back to 6",
                 check=pool.check)
    assert b.execute("return window.__same === true")         # the same page all along


def test_a_rolling_restart_from_the_page(browser, pool):
    b = browser
    login(b, pool, "operator", next_path="/watchers")
    before = {n: node.pids("web") for n, node in pool.nodes.items()}
    assert not b.exists("#pool-add")                          # add is for admins
    form = b.find('form.rolling[data-watcher="web"]')
    form.find("input[name=batch]").clear()
    form.find("input[name=batch]").send_keys("2")
    watch_chips(b)
    form.find("button").click()
    state = job_end(b, pool)
    assert state["result"] == "ok" and state["state"] == "done", state
    assert state["items"] == {"p1": "done", "p2": "done", "p3": "done", "p4": "done"}
    assert state["head"].startswith("rolling restart of web: done on 4 nodes: 2 steps of 2")
    assert bg(b, "#job") == BG["ok"]
    chips = b.execute("return window.__chips")
    # the second step's nodes were seen waiting, then running, then done
    for node in ("p3", "p4"):
        assert chips[node][-2:] == ["running", "done"], chips
        assert "pending" in chips[node], chips
    for node, old in before.items():
        new = pool.nodes[node].pids("web")
        assert len(new) == len(old) and not set(new) & set(old), node
    assert path_of(b.url) == "/watchers"                      # it ran in place


def test_a_rolling_restart_that_fails_in_the_middle(browser, pool, shots):
    b = browser
    login(b, pool, "operator", next_path="/watchers")
    p1_before = pool.nodes["p1"].pids("web")
    (pool.nodes["p2"].dir / "ok").unlink()
    try:
        b.find('form.rolling[data-watcher="web"] button').click()
        state = job_end(b, pool)
        assert state["result"] == "error" and state["state"] == "failed", state
        assert state["items"] == {"p1": "done", "p2": "failed", "p3": "not_done",
                                  "p4": "not_done"}
        assert state["head"].startswith("rolling restart of web: stopped at step 2 of 4")
        assert state["reason"].startswith("p2: ")
        assert "done: p1" in state["lines"] and "not done: p3, p4" in state["lines"]
        assert "circusmeta restart --rolling web --batch 1 --node p2 --node p3 --node p4" in \
            state["lines"]
        assert state["resume"] == "Resume on p2, p3, p4"
        assert bg(b, "#job") == BG["bad"]
        assert bg(b, '#job-items li[data-node="p2"]') != bg(b, '#job-items li[data-node="p1"]')
        assert "p2" in b.find("#job-failed").text
        png_size(b.screenshot(shots / "web-pool-rolling-failed.png"))
        p1_after = pool.nodes["p1"].pids("web")
        assert not set(p1_after) & set(p1_before)
    finally:
        (pool.nodes["p2"].dir / "ok").write_text("")
    # fixed: resumed from the banner, on the nodes failed and not done only
    b.find("#job-resume button").click()
    b.wait_until(lambda: (s := job_state(b)) and set(s["items"]) == {"p2", "p3", "p4"},
                 what="the resumed job", check=pool.check)
    state = job_end(b, pool)
    assert state["result"] == "ok", state
    assert pool.nodes["p1"].pids("web") == p1_after
    pool.nodes["p2"].daemon.wait(lambda: len(pool.nodes["p2"].pids("web")) == 2, timeout=20,
                                 what="p2's web running")


def test_an_add_placed_by_strategy_from_the_page(browser, pool):
    b = browser
    login(b, pool, "admin", next_path="/watchers")
    form = b.find("#pool-add")
    form.find("input[name=name]").send_keys("api")
    form.find("input[name=cmd]").send_keys("sleep 503")
    form.find("input[name=numprocesses]").clear()
    form.find("input[name=numprocesses]").send_keys("2")
    b.execute("const f = document.querySelector('#pool-add');"
              "f.elements.strategy.value = 'round_robin'; f.elements.tag.value = 'back';")
    try:
        form.find("button[type=submit]").click()
        state = job_end(b, pool)
        # round_robin over the back nodes: p4 has one watcher, p3 two
        assert state["result"] == "ok" and state["items"] == {"p4": "done"}, state
        assert state["head"].startswith("add api: placed on p4")
        assert "round_robin: fewest watchers (1)" in state["reason"]
        assert len(pool.nodes["p4"].pids("api")) == 2
        assert all("api" not in pool.nodes[n].ctl("list") for n in ("p1", "p2", "p3"))
        # the new watcher gets its row without a reload
        b.wait_until(lambda: row_data(b).get("api", {}).get("alive") == 2, timeout=20,
                     what="api's row", check=pool.check)
        assert row_data(b)["api"]["entries"] == ["p4"]
    finally:
        pool.nodes["p4"].ctl("rm", "api")


def test_each_role_is_refused_what_it_may_not_do(browser, pool):
    b = browser
    form_type = {"Content-Type": "application/x-www-form-urlencoded",
                 "Accept": "application/json"}
    before = pool.nodes["p1"].pids("web")
    login(b, pool, "readonly", next_path="/watchers")
    token = urllib.parse.quote(b.find("input[name=_xsrf]").prop("value"))
    status, text = fetch(b, "/watchers/rolling", f"watcher=web&_xsrf={token}", form_type)
    assert status == 403 and "needs the operator role" in json.loads(text)["reason"]
    login(b, pool, "operator", next_path="/watchers")
    token = urllib.parse.quote(b.find("form.rolling input[name=_xsrf]").prop("value"))
    status, text = fetch(b, "/watchers/add", f"name=evil&cmd=sleep+9&_xsrf={token}", form_type)
    assert status == 403 and "needs the admin role" in json.loads(text)["reason"]
    status, text = fetch(b, "/watchers/rolling", "watcher=web", form_type)
    assert status == 403                                       # no _xsrf
    status, text = fetch(b, "/api/add", json.dumps({"name": "evil", "cmd": "sleep 9"}),
                         {"Content-Type": "application/json",
                          "X-XSRFToken": urllib.parse.unquote(token)})
    assert status == 403 and json.loads(text)["error"] == "forbidden"
    assert pool.nodes["p1"].pids("web") == before
    assert all("evil" not in node.ctl("list") for node in pool.nodes.values())
