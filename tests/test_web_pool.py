"""circushttpd's pool-wide watchers over HTTP: the rows summed across three real circusd (and a
node that does not exist), the API of the rolling restarts and the adds with placement, their
jobs, the role checks, and the page's WebSocket. A real circushttpd process (port 0) over a
real pool file; the pure parts (rows, jobs, requests) at the end."""
from __future__ import annotations

import asyncio
import json
import re
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

pytest.importorskip("tornado")
pytest.importorskip("jinja2")

from conftest import Circusd  # noqa: E402
from webhttp import Httpd, receive_head, request, send  # noqa: E402

pytestmark = pytest.mark.real

PY = sys.executable
PASSWORD = "pool-pass-123"
ROLES = {"ada": "admin", "otto": "operator", "rita": "readonly"}
#: node -> (tags, {watcher: (numprocesses, cmd or None)}); None: the shared web command
NODES = {
    "n1": ("front live", {"web": (2, None), "worker": (1, "sleep 401"), "extra": (1, "sleep 402")}),
    "n2": ("front live", {"web": (2, None), "crasher": (1, "sh -c 'echo crash-$$ >&2; exit 3'")}),
    "n10": ("back live", {"web": (1, None)}),
}
#: the web watcher runs while its node's ok file exists (remove it: its restart fails)
WEB = "sh -c 'test -e {d}/ok || {{ echo {node} is broken >&2; exit 4; }}; exec sleep 400'"


def ctl(endpoint: str, *args: str) -> str:
    r = subprocess.run([PY, "-m", "circus.cli.circusctl", "--endpoint", endpoint, *args],
                       capture_output=True, text=True, timeout=30)
    return r.stdout.strip()


class Env:
    def __init__(self, base: Path) -> None:
        self.base = base
        self.daemons: dict[str, Circusd] = {}
        self.httpd: Httpd | None = None
        self.tokens: dict[str, str] = {}

    def ep(self, node: str, kind: str = "c") -> str:
        return f"ipc://{self.base / node}/{kind}.sock"

    def pids(self, node: str, watcher: str) -> list[int]:
        out = ctl(self.ep(node), "list", watcher)
        return sorted(int(p) for p in re.findall(r"\d+", out))

    def start(self) -> None:
        for name, (_, watchers) in NODES.items():
            d = self.base / name
            d.mkdir()
            (d / "ok").write_text("")
            text = textwrap.dedent(f"""
                [circus]
                endpoint = {self.ep(name)}
                pubsub_endpoint = {self.ep(name, "p")}
            """)
            for watcher, (count, cmd) in watchers.items():
                text += (f"[watcher:{watcher}]\ncmd = {cmd or WEB.format(d=d, node=name)}\n"
                         f"numprocesses = {count}\ngraceful_timeout = 3\n")
                if watcher == "crasher":
                    text += "max_retry = -1\nbackoff_initial = 0.5\nbackoff_max = 1\n"
            node = Circusd(d)
            node.start(text, "--name", name)
            self.daemons[name] = node
        for name, (_, watchers) in NODES.items():
            node = self.daemons[name]
            node.wait(lambda n=name: (self.base / n / "c.sock").exists(), what=f"{name} socket")
            for watcher, (count, _) in watchers.items():
                if watcher != "crasher":
                    node.wait(lambda n=name, w=watcher, c=count: len(self.pids(n, w)) == c,
                              timeout=20, what=f"{name}'s {watcher}")
        node = self.daemons["n2"]
        node.wait(lambda: '"trouble": "backoff"' in ctl(self.ep("n2"), "--json", "status",
                                                         "crasher"),
                  timeout=20, what="crasher in backoff")
        text = "[meta]\ntimeout = 3\nstrategy = round_robin\n"
        for name, (tags, _) in NODES.items():
            text += (f"[node:{name}]\nendpoint = {self.ep(name)}\n"
                     f"pubsub_endpoint = {self.ep(name, 'p')}\ntags = {tags}\n")
        text += f"[node:gone]\nendpoint = ipc://{self.base}/nobody.sock\ntimeout = 0.5\n" \
                "tags = back\n"
        (self.base / "pool.ini").write_text(text)
        users = self.base / "users"
        for user, role in ROLES.items():
            r = subprocess.run([PY, "-m", "circus.cli.httpd", "adduser", user, "--role", role,
                                "--users", str(users), "--password-stdin"],
                               input=PASSWORD + "\n", capture_output=True, text=True, timeout=60)
            assert r.returncode == 0, r.stderr
            r = subprocess.run([PY, "-m", "circus.cli.httpd", "token", user, "--users",
                                str(users)], capture_output=True, text=True, timeout=60)
            assert r.returncode == 0, r.stderr
            self.tokens[user] = r.stdout.strip().split()[-1]
        self.httpd = Httpd(self.base, "--pool", str(self.base / "pool.ini"), users=users)
        self.httpd.start()

    def check(self) -> None:
        assert self.httpd is not None
        self.httpd.check()
        for name, node in self.daemons.items():
            if node.proc is not None and node.proc.poll() is not None:
                pytest.fail(f"circusd {name} exited:\n{node.log_text()[-2000:]}")

    def api(self, user: str, method: str, path: str, body: object = None,
            timeout: float = 60.0) -> tuple[int, dict]:
        assert self.httpd is not None
        data = b"" if body is None else json.dumps(body).encode()
        r = request(self.httpd.port, method, path, {"Authorization": f"Bearer {self.tokens[user]}",
                                                    "Content-Type": "application/json"},
                    data, timeout=timeout)
        return r.status, (json.loads(r.body) if r.body else {})

    def wait(self, predicate, timeout: float = 30.0, what: str = "condition"):
        deadline = time.monotonic() + timeout
        while True:
            value = predicate()
            if value:
                return value
            self.check()
            if time.monotonic() > deadline:
                pytest.fail(f"timed out after {timeout} s waiting for {what}")
            time.sleep(0.05)

    def job_end(self, user: str, job_id: str, timeout: float = 60.0) -> dict:
        def ended():
            code, job = self.api(user, "GET", f"/api/jobs/{job_id}")
            assert code == 200, job
            return job if job["phase"] == "ended" else None
        return self.wait(ended, timeout, f"job {job_id} to end")

    def job_page(self, job_id: str, user: str = "otto") -> str:
        """The job's page, as the user sees it (its panel and banner, rendered)."""
        assert self.httpd is not None
        client = self.httpd.client()
        assert client.login(user, PASSWORD).status == 302
        r = client.get(f"/jobs/{job_id}")
        assert r.status == 200, r.text[-2000:]
        return r.text

    def rows(self, user: str = "rita", query: str = "") -> dict[str, dict]:
        code, body = self.api(user, "GET", "/api/watchers" + query)
        assert code == 200, body
        return {r["key"]: r for r in body["watchers"]}

    def stop(self) -> None:
        if self.httpd is not None and self.httpd.proc is not None:
            self.httpd.stop()
        for node in self.daemons.values():
            node.cleanup()


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    e = Env(tmp_path_factory.mktemp("pool"))
    try:
        e.start()
        yield e
    finally:
        e.stop()


# -- the rows -----------------------------------------------------------------------------------

def test_a_row_per_watcher_sums_the_nodes_and_counts_the_unhealthy(env):
    code, body = env.api("rita", "GET", "/api/watchers")
    assert code == 200
    rows = {r["key"]: r for r in body["watchers"]}
    assert list(rows) == ["crasher", "extra", "web", "worker"]       # natural order
    web = rows["web"]
    assert (web["count"], web["alive"], web["wanted"], web["unhealthy"], web["tone"]) == \
        (3, 5, 5, 0, "ok")
    # each node's part, in natural order (n2 before n10), each alive / wanted as circusd says
    assert [(e["node"], e["alive"], e["wanted"]) for e in web["entries"]] == \
        [("n1", 2, 2), ("n2", 2, 2), ("n10", 1, 1)]
    crasher = rows["crasher"]
    assert (crasher["count"], crasher["wanted"], crasher["unhealthy"], crasher["tone"]) == \
        (1, 1, 1, "warn")
    assert crasher["entries"][0]["trouble"] == "backoff" and crasher["alive"] in (0, 1)
    assert body["answered"] == 3 and body["nodes"] == ["n1", "n2", "n10", "gone"]
    assert body["unanswered"]["gone"]["state"] == "not_available"
    assert "nobody.sock" in body["unanswered"]["gone"]["reason"]
    assert body["refresh"]["count"] >= 1 and body["refresh"]["cpu"] is not None


def test_filtered_by_tag_and_name_and_sorted(env):
    front = env.rows(query="?tag=front")
    assert front["web"]["count"] == 2 and front["web"]["alive"] == 4
    assert [e["node"] for e in front["web"]["entries"]] == ["n1", "n2"]
    back = env.rows(query="?tag=back")
    assert list(back) == ["web"] and back["web"]["count"] == 1
    code, body = env.api("rita", "GET", "/api/watchers?tag=back")
    assert body["unanswered"] == {"gone": body["unanswered"]["gone"]} and body["answered"] == 1
    assert list(env.rows(query="?name=OR")) == ["worker"]
    code, body = env.api("rita", "GET", "/api/watchers?sort=unhealthy")
    assert [r["key"] for r in body["watchers"]][0] == "crasher" and body["order"] == "desc"
    code, body = env.api("rita", "GET", "/api/watchers?sort=nodes&order=asc")
    assert [r["key"] for r in body["watchers"]][-1] == "web"
    assert env.api("rita", "GET", "/api/watchers?tag=nope")[0] == 404
    code, body = env.api("rita", "GET", "/api/watchers?sort=cpu")
    assert code == 400 and "cannot sort by 'cpu'" in body["reason"]


def test_the_page_links_each_node_and_shows_forms_by_role(env):
    client = env.httpd.client()
    assert client.login("rita", PASSWORD).status == 302
    page = client.get("/watchers?tag=front&sort=unhealthy").text
    row = re.search(r'<tr data-watcher="web".*?</tr>', page, re.S).group(0)
    assert 'data-nodes="2" data-alive="4" data-wanted="4" data-unhealthy="0"' in row
    assert 'href="/node/n1/watcher/web"' in row and 'href="/node/n2/watcher/web"' in row
    assert "n10" not in row
    crasher = re.search(r'<tr data-watcher="crasher".*?</tr>', page, re.S).group(0)
    assert 'data-health="warn"' in crasher and "1 unhealthy" in crasher
    assert 'data-trouble="backoff"' in crasher
    # sorted by unhealthy: crasher first; the sort links say where they go
    assert page.index('data-watcher="crasher"') < page.index('data-watcher="web"')
    assert 'href="/watchers?tag=front&amp;sort=name&amp;order=asc"' in page
    assert 'class="rolling"' not in page and 'id="pool-add"' not in page
    assert 'id="pool-tabs"' in client.get("/").text
    operator = env.httpd.client()
    operator.login("otto", PASSWORD)
    page = operator.get("/watchers").text
    assert 'form class="rolling"' in page and 'id="pool-add"' not in page
    admin = env.httpd.client()
    admin.login("ada", PASSWORD)
    page = admin.get("/watchers").text
    assert 'form class="rolling"' in page and 'id="pool-add"' in page
    assert '<option value="round_robin" selected>' in page
    assert 'nobody.sock' in page and "what it runs is not counted" in page


# -- roles ----------------------------------------------------------------------------------------

def test_roles_are_checked_on_the_server(env):
    before = env.pids("n1", "web")
    code, body = env.api("rita", "POST", "/api/rolling", {"watcher": "web"})
    assert (code, body["error"]) == (403, "forbidden") and "operator role" in body["reason"]
    code, body = env.api("otto", "POST", "/api/add", {"name": "nope", "cmd": "sleep 1"})
    assert (code, body["error"]) == (403, "forbidden") and "admin role" in body["reason"]
    # the forms: the same checks, also for a post made by hand
    rita = env.httpd.client()
    rita.login("rita", PASSWORD)
    r = rita.post("/watchers/rolling", {"watcher": "web"}, headers={"Accept": "application/json"})
    assert r.status == 403 and json.loads(r.body)["error"] == "forbidden"
    otto = env.httpd.client()
    otto.login("otto", PASSWORD)
    r = otto.post("/watchers/add", {"name": "nope", "cmd": "sleep 1"})
    assert r.status == 403 and "admin role" in r.text
    r = otto.post("/watchers/rolling", {"watcher": "web"}, xsrf=False)
    assert r.status == 403                                  # no _xsrf
    anonymous = request(env.httpd.port, "POST", "/api/rolling", {}, b"{}")
    assert anonymous.status == 401
    assert env.pids("n1", "web") == before
    assert "nope" not in env.rows()


def test_bad_requests_say_why(env):
    for body, reason in (({"watcher": "web", "batch": 0}, "batch must be a whole number"),
                         ({"watcher": "web", "action": "stop"}, "one of restart, reload"),
                         ({"watcher": "a/b"}, "path separator"),
                         ({"watcher": "web", "nodes": ["n9"]}, "no node 'n9'"),
                         ({"watcher": "web", "tag": "blue"}, "no node has tag 'blue'"),
                         ({"watcher": "web", "speed": 3}, "unknown field 'speed'")):
        code, answer = env.api("otto", "POST", "/api/rolling", body)
        assert code == 400 and reason in answer["reason"], (body, answer)
    for body, reason in (({"name": "x"}, "needs a command"),
                         ({"name": "x", "cmd": "sleep 1", "strategy": "best"}, "unknown strategy"),
                         ({"name": "x", "cmd": "sleep 1", "node": "n1", "spread": 2},
                          "no strategy or spread"),
                         ({"name": "x", "cmd": "sleep 1", "spread": 9}, "spread must be")):
        code, answer = env.api("ada", "POST", "/api/add", body)
        assert code == 400 and reason in answer["reason"], (body, answer)
    code, answer = env.api("otto", "POST", "/api/rolling", {"watcher": "nosuch",
                                                             "tag": "front"})
    assert code == 409 and answer["error"] == "refused"
    assert "no watcher or collection called 'nosuch'" in answer["reason"]
    assert "rolling restart of nosuch: refused" in env.job_page(answer["job"]["id"])
    # a node that cannot be asked whether it has it keeps its turn, and fails it: never
    # skipped silently
    code, answer = env.api("otto", "POST", "/api/rolling", {"watcher": "nosuch"})
    assert code == 202 and answer["job"]["order"] == ["gone:nosuch"]
    assert "gone: not available" in answer["job"]["warnings"][0]
    job = env.job_end("otto", answer["job"]["id"])
    assert job["state"] == "failed" and job["items"]["gone:nosuch"]["state"] == "failed"


# -- rolling restarts -----------------------------------------------------------------------------

def test_a_rolling_restart_replaces_every_node_s_processes(env):
    before = {n: env.pids(n, "web") for n in NODES}
    code, body = env.api("otto", "POST", "/api/rolling", {"watcher": "web", "batch": 2,
                                                           "tag": "live"})
    assert code == 202, body
    job = body["job"]
    assert job["order"] == ["n1:web", "n2:web", "n10:web"] and job["total_steps"] == 2
    assert job["user"] == "otto" and job["params"]["batch"] == 2
    job = env.job_end("otto", job["id"])
    assert job["state"] == "done" and job["counts"]["done"] == 3
    assert all(i["state"] == "done" for i in job["items"].values())
    assert job["banner"]["kind"] == "ok"
    assert job["banner"]["title"] == "rolling restart of web: done on 3 nodes"
    for node in NODES:
        after = env.pids(node, "web")
        assert len(after) == len(before[node]) and not set(after) & set(before[node]), node
    assert "replaced" in job["items"]["n1:web"]["note"]
    page = env.job_page(job["id"])
    assert 'data-phase="ended"' in page and 'data-result="ok"' in page
    assert page.count('class="chip st-done"') == 3 and 'id="job-resume"' not in page
    code, listed = env.api("rita", "GET", "/api/jobs")
    assert listed["jobs"][0]["id"] == job["id"] and "items" not in listed["jobs"][0]


def test_a_failure_in_the_middle_stops_there_and_says_how_to_resume(env):
    (env.base / "n2" / "ok").unlink()
    try:
        before_n10 = env.pids("n10", "web")
        code, body = env.api("otto", "POST", "/api/rolling", {"watcher": "web",
                                                               "step_timeout": 30,
                                                               "tag": "live"})
        assert code == 202, body
        job = env.job_end("otto", body["job"]["id"])
        items = {k: v["state"] for k, v in job["items"].items()}
        assert items == {"n1:web": "done", "n2:web": "failed", "n10:web": "not_done"}
        assert "n2 is broken" in job["items"]["n2:web"]["reason"] or \
            "exit code 4" in job["items"]["n2:web"]["reason"], job["items"]["n2:web"]
        banner = job["banner"]
        assert job["state"] == "failed" and banner["kind"] == "error"
        assert banner["title"] == "rolling restart of web: stopped at step 2 of 3"
        assert banner["reason"].startswith("n2: ")
        assert banner["resume"]["nodes"] == ["n2", "n10"]
        assert banner["resume"]["cli"] == ("circusmeta restart --rolling web --batch 1 "
                                           "--node n2 --node n10")
        assert "done: n1" in banner["lines"] and "not done: n10" in banner["lines"]
        assert env.pids("n10", "web") == before_n10          # never sent
        page = env.job_page(job["id"])
        assert 'data-result="error"' in page and 'data-item="n2:web" data-node="n2" ' \
            'data-state="failed"' in page
        assert 'name="nodes" value="n2,n10"' in page and "Resume on n2, n10" in page
        assert "Resume on" not in env.job_page(job["id"], "rita")   # readonly: no form
    finally:
        (env.base / "n2" / "ok").write_text("")
    # fixed: resumed on the nodes failed and not done only
    before_n1 = env.pids("n1", "web")
    code, body = env.api("otto", "POST", "/api/rolling",
                         {"watcher": "web", "nodes": banner["resume"]["nodes"]})
    assert code == 202 and body["job"]["order"] == ["n2:web", "n10:web"]
    job = env.job_end("otto", body["job"]["id"])
    assert job["state"] == "done", job["banner"]
    assert env.pids("n1", "web") == before_n1
    env.wait(lambda: len(env.pids("n2", "web")) == 2, what="n2's web running again")


def test_a_second_rolling_restart_of_the_same_watcher_waits_its_turn(env):
    code, first = env.api("otto", "POST", "/api/rolling", {"watcher": "web", "tag": "live"})
    assert code == 202
    code, second = env.api("otto", "POST", "/api/rolling", {"watcher": "web"})
    assert (code, second["error"]) == (409, "busy") and first["job"]["id"] in second["reason"]
    assert env.job_end("otto", first["job"]["id"])["state"] == "done"


def test_without_script_a_form_post_goes_to_the_job_page(env):
    otto = env.httpd.client()
    otto.login("otto", PASSWORD)
    r = otto.post("/watchers/rolling", {"watcher": "worker", "tag": "live", "batch": "1"})
    assert r.status == 303
    job_id = re.fullmatch(r"/jobs/([0-9a-f]+)", r.header("location")).group(1)
    page = otto.get(f"/jobs/{job_id}").text
    assert 'data-node="n1"' in page
    if 'data-phase="ended"' not in page:                 # the page reloads itself meanwhile
        assert '<noscript><meta http-equiv="refresh" content="2"></noscript>' in page
    assert env.job_end("otto", job_id)["state"] == "done"
    assert 'data-phase="ended"' in otto.get(f"/jobs/{job_id}").text
    assert otto.get("/jobs/00000000").status == 404


# -- adds with placement --------------------------------------------------------------------------

def test_an_add_is_placed_where_the_strategy_says(env):
    # round_robin: fewest watchers; n10 has 1, n2 has 2, n1 has 3
    code, body = env.api("ada", "POST", "/api/add", {"name": "api", "cmd": "sleep 403",
                                                     "numprocesses": 3, "spread": 2})
    assert code == 202, body
    job = env.job_end("ada", body["job"]["id"])
    try:
        assert job["state"] == "done" and job["order"] == ["n10", "n2"]
        assert job["items"]["n10"]["note"].startswith("round_robin: fewest watchers (1); "
                                                      "started 3 processes (")
        assert job["banner"]["title"] == "add api: placed on n10, n2"
        assert "add api: placed on n10, n2" in env.job_page(job["id"], "ada")
        assert len(env.pids("n10", "api")) == 3 and len(env.pids("n2", "api")) == 3
        assert "api" not in ctl(env.ep("n1"), "list")
        row = env.wait(lambda: env.rows().get("api"), what="api in the rows")
        assert (row["count"], row["alive"], row["wanted"]) == (2, 6, 6)
        # a name the pool has is refused, on any node
        code, body = env.api("ada", "POST", "/api/add", {"name": "API", "cmd": "sleep 1",
                                                         "node": "n1"})
        assert code == 409 and "already exists on n2, n10" in body["reason"]
        # a tag narrows the candidates: of the front nodes, n1 runs 4 processes, n2 5 or 6
        code, body = env.api("ada", "POST", "/api/add", {"name": "api2", "cmd": "sleep 404",
                                                         "tag": "front",
                                                         "strategy": "fewest_processes"})
        assert code == 202
        job = env.job_end("ada", body["job"]["id"])
        assert job["order"] == ["n1"] and job["state"] == "done", job
        assert job["items"]["n1"]["note"].startswith("fewest_processes: fewest processes (4)")
    finally:
        for node in ("n10", "n2"):
            ctl(env.ep(node), "rm", "api")
        ctl(env.ep("n1"), "rm", "api2")


def test_an_add_whose_command_cannot_run_is_a_failed_node(env):
    code, body = env.api("ada", "POST", "/api/add", {"name": "bogus", "cmd": "/no/such/binary",
                                                     "node": "n1"})
    assert code == 202
    job = env.job_end("ada", body["job"]["id"])
    try:
        assert job["state"] == "failed" and job["items"]["n1"]["state"] == "failed"
        reason = job["items"]["n1"]["reason"]
        assert reason.startswith("added, but it failed to start") and "/no/such/binary" in reason
        assert job["banner"]["kind"] == "error" and job["banner"]["title"] == \
            "add bogus: failed on n1"
    finally:
        ctl(env.ep("n1"), "rm", "bogus")


# -- live -----------------------------------------------------------------------------------------

def test_the_socket_pushes_what_changed_on_one_node(env):
    from tornado.httpclient import HTTPRequest
    from tornado.websocket import websocket_connect
    client = env.httpd.client()
    client.login("rita", PASSWORD)
    cookie = "; ".join(f"{k}={v}" for k, v in client.cookies.items())

    async def run() -> dict:
        url = f"ws://127.0.0.1:{env.httpd.port}/ws/pool?tag=front"
        ws = await websocket_connect(HTTPRequest(url, headers={"Cookie": cookie}))
        try:
            hello = json.loads(await asyncio.wait_for(ws.read_message(), 10))
            assert hello["type"] == "hello"
            await asyncio.get_running_loop().run_in_executor(None, ctl, env.ep("n1"), "incr",
                                                             "worker")
            while True:
                m = json.loads(await asyncio.wait_for(ws.read_message(), 15))
                if m["type"] == "watchers":
                    rows = {r["key"]: r for r in m["rows"]}
                    if rows.get("worker", {}).get("alive") == 2:
                        return rows["worker"]
        finally:
            ws.close()
    try:
        worker = asyncio.run(run())
        # only n1's part, with the totals over the front nodes
        assert list(worker["entries"]) == ["n1"] and worker["entries"]["n1"]["wanted"] == 2
        assert (worker["count"], worker["wanted"]) == (1, 2)
    finally:
        ctl(env.ep("n1"), "decr", "worker")
    r = receive_head(send(env.httpd.port, "GET", "/ws/pool", {
        "Connection": "Upgrade", "Upgrade": "websocket", "Sec-WebSocket-Version": "13",
        "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ=="}))
    assert r.status == 401


# -- the pure parts -------------------------------------------------------------------------------

def test_rows_and_their_changes_are_summed_in_natural_order():
    from circus.web.watchers import row_changes, sort_rows, watcher_rows
    rec = {"state": "active", "numprocesses": 2, "processes": [{"pid": 1}, {"pid": None}]}
    records = {"node10": {"Web": rec}, "node2": {"web": {**rec, "trouble": "backoff"}},
               "node1": {"web": {"state": "fatal", "numprocesses": 1, "processes": []}}}
    (row,) = watcher_rows(records, ["node10", "node2", "node1", "down"])
    assert (row["count"], row["alive"], row["wanted"], row["unhealthy"], row["tone"]) == \
        (3, 2, 5, 2, "bad")
    assert [e["node"] for e in row["entries"]] == ["node1", "node2", "node10"]  # worst first
    rows, gone = row_changes(records, ["node10", "node2"], {"web": {"node2", "node1"},
                                                           "old": {"node10"}})
    assert gone == ["old"] and list(rows[0]["entries"]) == ["node2"]
    assert rows[0]["count"] == 2 and [e["node"] for e in rows[0]["troubled"]] == ["node2"]
    many = [{"name": n, "key": n.lower(), "count": c, "alive": 0, "wanted": 0, "unhealthy": u}
            for n, c, u in (("w10", 1, 0), ("w2", 3, 1), ("w1", 3, 0))]
    assert [r["name"] for r in sort_rows(many)] == ["w1", "w2", "w10"]
    assert [r["name"] for r in sort_rows(many, "nodes")] == ["w1", "w2", "w10"]
    assert [r["name"] for r in sort_rows(many, "unhealthy")][0] == "w2"


def test_a_job_s_banner_tells_where_it_stopped():
    from circus.web.jobs import Job
    job = Job("1", "rolling", "restart", "web", "otto", 100.0, {"batch": 2})
    job.plan([("a:web", "a"), ("b:web", "b"), ("c:web", "c"), ("d:web", "d")], 2)
    job.running(["a:web", "b:web"], 1)
    first = job.take_changes()
    assert first["items"]["a:web"]["state"] == "running" and job.take_changes() is None
    job.finished_item("a:web", True)
    job.finished_item("b:web", False, "unresponsive: no answer within 30 s\nmore")
    job.end(112.5)
    assert [i.state for i in job.items.values()] == ["done", "failed", "not_done", "not_done"]
    banner = job.banner
    assert banner["kind"] == "error" and banner["title"] == \
        "rolling restart of web: stopped at step 1 of 2"
    assert banner["reason"] == "b: unresponsive: no answer within 30 s"
    assert banner["resume"]["nodes"] == ["b", "c", "d"]
    assert banner["summary"] == "1 node failed, 1 done, 2 not done"
    done = Job("2", "rolling", "restart", "web", "otto", 0.0, {"batch": 1})
    done.plan([("a:web", "a")], 1)
    done.running(["a:web"], 1)
    done.finished_item("a:web", True)
    done.end(1.0)
    assert done.banner["kind"] == "ok" and done.state == "done"


def test_requests_are_checked_before_anything_runs():
    from circus.web.poolactions import BadRequest, add_request, rolling_request
    from circusmeta.pool import MetaOptions, NodeSpec, PoolConfig
    config = PoolConfig(MetaOptions(), {"a": NodeSpec("a", "ipc:///x", tags=("t",))}, file="p")
    req = rolling_request({"watcher": "web", "batch": "3", "nodes": "a"}.get, config)
    assert (req.batch, req.nodes, req.action) == (3, ("a",), "restart")
    with pytest.raises(BadRequest, match="step_timeout is seconds"):
        rolling_request({"watcher": "web", "step_timeout": "soon"}.get, config)
    add = add_request({"name": "x", "cmd": "sleep 1", "start": "0"}.get, config)
    assert add.start is False and add.spread == 1
    with pytest.raises(BadRequest, match="spread must be a whole number from 1 to 1"):
        add_request({"name": "x", "cmd": "sleep 1", "spread": 2}.get, config)
