"""circus-top over many nodes, in a terminal emulator (tests/vtscreen.py) and with ``--once``:
nodes in natural order (node2 before node10), the pool-wide view (``p``: the pool's busiest
watchers first, whatever their node), the node filter (``f``), a scrolled screen that keeps the
header of the node its rows belong to, Page Down by a screenful. The stream comes from a small
publisher of stats-shaped payloads (tests/topfeed.py): 30 nodes on one endpoint, inserted out of
order, each with a watcher ``app`` of one process (pid 1000 + its number) and two busier ones.

Every wait has a deadline and fails as soon as the child died; what is started is stopped.
"""
from __future__ import annotations

import re

import pytest

from tests.test_top_real import TOP, Term, top
from tests.topfeed import Feed

pytestmark = pytest.mark.real

ORDER = [7, 23, 1, 30, 2, 10, 19, 3, 11, 29, 4, 12, 20, 5, 13, 21, 6, 14, 22, 8, 15, 24, 9, 16,
         25, 17, 26, 18, 27, 28]
NODES = {f"node{k}": {"app": [1000 + k]} for k in ORDER}
NODES["node7"]["hog"] = [2007]
NODES["node23"]["busy"] = [2023]
STATES = {f"node{k}": {"app": {"cpu": 1.0 + k / 100}} for k in ORDER}
STATES["node7"]["hog"] = {"cpu": 90.0}
STATES["node23"]["busy"] = {"cpu": 50.0}
HEADER = re.compile(r"^(node\d+)  load ")


@pytest.fixture
def fleet(tmp_path):
    endpoint = f"ipc://{tmp_path}/fleet.sock"
    feed = Feed(endpoint, NODES, interval=0.2, states=STATES)
    yield endpoint
    feed.stop()


@pytest.fixture
def term():
    started: list[Term] = []

    def make(*args: str, rows: int = 30, cols: int = 120) -> Term:
        t = Term([*TOP, *args], rows, cols)
        started.append(t)
        return t
    yield make
    for t in started:
        t.close()


def headers(text: str) -> list[str]:
    return [m.group(1) for line in text.splitlines() if (m := HEADER.match(line))]


def all_nodes(text: str) -> bool:
    return "circus-top  nodes 30" in text


def test_once_lists_the_nodes_in_natural_order(fleet):
    res = top("--once", "--endpoint", fleet, "--wait", "15")
    assert res.returncode == 0, res.stderr
    assert headers(res.stdout) == [f"node{k}" for k in range(1, 31)], res.stdout


def pool_rows(text: str) -> list[str]:
    return [line.split()[0] for line in text.splitlines() if re.match(r"^node\d+/", line)]


def test_pool_wide_view_node_filter_and_natural_order_on_screen(fleet, term):
    # (a repaint may be read half-way: each check waits for a whole screen that passes it)
    t = term("--endpoint", fleet)
    t.wait_for(all_nodes, what="all 30 nodes")
    t.wait_for(lambda s: headers(s)[:2] == ["node1", "node2"], what="node1, node2 (not node10)")

    t.key(b"p")                                 # the pool's busiest watchers, any node
    # then circusd and circusd-stats of each node (1.5 % each), then the apps, busiest first
    t.wait_for(lambda s: "sort cpu desc pool-wide" in s and "NODE/WATCHER" in s and
               pool_rows(s)[:4] == ["node7/hog", "node23/busy", "node1/circus", "node2/circus"]
               and not headers(s), what="the pool-wide list, busiest first")
    t.key(b"n")                                 # by name: each watcher's nodes together
    by_name = ([f"node{k}/app" for k in range(1, 31)] + ["node23/busy"]
               + [f"node{k}/circus" for k in range(1, 31)] + ["node7/hog"])

    def a_slice(rows: list[str]) -> bool:       # the screen follows the selection (hog): the end
        return bool(rows) and rows == by_name[by_name.index(rows[0]):][:len(rows)]
    t.wait_for(lambda s: "sort name asc pool-wide" in s and a_slice(pool_rows(s))
               and pool_rows(s)[-1] == "node7/hog", what="the pool-wide list by name")

    t.key(b"fnode2")                            # the node filter, typed
    t.has("node filter (Enter applies, Esc clears): node2_")
    t.key(b"\r")
    t.wait_for(lambda s: "nodes 11 of 30" in s and "nodes 'node2'" in s and pool_rows(s) ==
               ["node2/app"] + [f"node{k}/app" for k in range(20, 30)] + ["node23/busy"]
               + ["node2/circus"] + [f"node{k}/circus" for k in range(20, 30)],
               what="the filtered pool-wide list")
    t.key(b"p")                                 # back to the node blocks, still filtered
    t.wait_for(lambda s: "pool-wide" not in s.splitlines()[0] and "nodes 'node2'" in s and
               headers(s)[:2] == ["node2", "node20"] and "node1  load" not in s and
               "node3  load" not in s, what="node2's and node2x's blocks")
    t.key(b"\x1b")                              # Esc clears both filters
    t.has("circus-top  nodes 30  ", "node1  load", absent=("nodes '",))
    t.key(b"q")
    assert t.exit_code() == 0


def test_a_scrolled_screen_keeps_its_node_header(fleet, term):
    t = term("--endpoint", fleet, "--sort", "name", rows=24)
    t.wait_for(all_nodes, what="all 30 nodes")
    t.has("node1  load")
    seen_sticky = pages = 0
    while "node30  load" not in t.screen.text():
        pages += 1
        assert pages <= 20, t.screen.text()     # a page is a screenful, not ten watchers
        t.key(b"\x1b[6~")                       # Page Down
        t.watch(0.3)
        lines = t.screen.lines()
        body = lines[1:-1]
        if not body[0]:                         # the end: the blank line before the last block
            body = body[1:]
        first = HEADER.match(body[0])
        assert first, "\n".join(lines)          # the first row always names its node
        number = int(first.group(1)[4:])
        nxt = next((i for i, line in enumerate(body) if i and HEADER.match(line)), len(body))
        if nxt < len(body):                     # the next block on screen is the next node
            assert HEADER.match(body[nxt]).group(1) == f"node{number + 1}", "\n".join(lines)
        if not body[1].startswith("WATCHER / PID"):
            seen_sticky += 1                    # a header kept above rows of its block
            pids = [int(line.split()[0]) for line in body[1:nxt]
                    if re.match(r"^  10\d\d ", line)]
            assert pids in ([], [1000 + number]), "\n".join(lines)
    assert seen_sticky >= 3 and pages >= 10
    t.key(b"\x1b[6~")
    t.wait_for(lambda s: "node30  load" in s and "[more below]" not in s.splitlines()[-1],
               what="the end of the list")
    t.key(b"q")
    assert t.exit_code() == 0
