"""Tier 2: an arbiter embedded in a Python program, through Circus 0.19's library API — as 0.19's
docs show it (``get_arbiter([...]).start()``, blocking until stopped), as AiiDA uses it (the
returned future, ``_restarting``), as BentoML uses it (``Arbiter(watchers, endpoint, ...)``
with ``Watcher`` and ``CircusSocket`` objects, a subclass, ``start(cb)`` and ``stop()``), and
in a thread of its own (``background=True``). Real processes, real sockets, real signals."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import zmq

from conftest import proc_alive, proc_children

pytestmark = pytest.mark.real


_STARTED: list[subprocess.Popen] = []


@pytest.fixture(autouse=True)
def _end_the_programs():
    """A program a failed test left running is killed (with its pipes closed), so that it
    neither outlives the test nor fails the next one with a ResourceWarning."""
    yield
    while _STARTED:
        proc = _STARTED.pop()
        if proc.poll() is None:
            children = proc_children(proc.pid)
            proc.terminate()                     # the arbiter stops its watchers
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)
            for pid in children:                 # what it could not stop (by pid)
                if proc_alive(pid):
                    os.kill(pid, signal.SIGKILL)
        for pipe in (proc.stdout, proc.stderr):
            if pipe is not None and not pipe.closed:
                pipe.close()


def run_script(tmp_path: Path, code: str) -> subprocess.Popen:
    script = tmp_path / "prog.py"
    script.write_text(textwrap.dedent(code))
    proc = subprocess.Popen([sys.executable, str(script)], cwd=tmp_path, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    _STARTED.append(proc)
    return proc


def read_json(path: Path):
    """The JSON document at ``path``, or None while it is missing or still being written."""
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def wait_for(predicate, proc: subprocess.Popen | None = None, timeout: float = 15.0,
             what: str = "condition"):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if proc is not None and proc.poll() is not None:
            pytest.fail(f"the program exited ({proc.returncode}) while waiting for {what}\n"
                        f"{proc.stdout.read()}\n{proc.stderr.read()}")
        if time.monotonic() > deadline:
            if proc is not None:
                proc.kill()
            pytest.fail(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.02)


def finish(proc: subprocess.Popen, timeout: float = 15.0) -> tuple[int, str, str]:
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        pytest.fail(f"the program did not end within {timeout} s\n{out}\n{err}")
    return proc.returncode, out, err


def test_the_0_19_docs_example_runs_until_sigterm(tmp_path):
    """get_arbiter([{"cmd": ..., "numprocesses": 3}]).start() blocks; SIGTERM stops the
    watchers and start() returns 0.19's done future; the program's own handler comes back."""
    proc = run_script(tmp_path, f"""
        import json, signal, sys
        from circus import get_arbiter
        from circus.util import check_future_exception_and_log

        mine = lambda signum, frame: None
        signal.signal(signal.SIGTERM, mine)
        arbiter = get_arbiter([{{"cmd": "sleep 3691", "numprocesses": 3}}],
                              controller="ipc://{tmp_path}/c.sock",
                              pubsub_endpoint="ipc://{tmp_path}/p.sock")

        def started(future):
            w = arbiter.get_watcher("sleep")
            with open("started.json", "w") as fh:
                json.dump({{"pids": sorted(w.processes), "wids": sorted(p.wid for p in
                           w.processes.values()), "names": [x.name for x in arbiter.watchers],
                           "running": arbiter.running}}, fh)

        future = arbiter.start(cb=started)
        print(json.dumps({{"result": future.result(), "logged": check_future_exception_and_log(future),
                           "restarting": arbiter._restarting, "running": arbiter.running,
                           "handler_back": signal.getsignal(signal.SIGTERM) is mine,
                           "left": len(arbiter.get_watcher("sleep").processes)}}))
    """)
    started = tmp_path / "started.json"
    info = wait_for(lambda: read_json(started), proc, what="the start callback")
    assert info["wids"] == [1, 2, 3] and info["names"] == ["sleep"] and info["running"]
    assert sorted(proc_children(proc.pid)) == info["pids"]
    assert all(proc_alive(pid) for pid in info["pids"])

    from circus.client import CircusClient
    client = CircusClient(endpoint=f"ipc://{tmp_path}/c.sock", timeout=5)
    try:
        assert client.send_message("list")["watchers"] == ["sleep"]
        assert client.send_message("status", name="sleep")["status"] == "active"
    finally:
        client.stop()

    proc.send_signal(signal.SIGTERM)
    code, out, err = finish(proc)
    assert code == 0, err
    assert json.loads(out) == {"result": False, "logged": None, "restarting": False,
                               "running": False, "handler_back": True, "left": 0}
    assert not any(proc_alive(pid) for pid in info["pids"])


def test_a_0_19_arbiter_subclass_with_watcher_and_socket_objects(tmp_path):
    """BentoML's way: Arbiter(watchers=[Watcher(...)], endpoint, pubsub_endpoint,
    sockets=[CircusSocket(...)]) in a subclass; the process serves on $(circus.sockets.NAME);
    stop() from the start callback's thread ends start()."""
    server = tmp_path / "server.py"
    server.write_text(textwrap.dedent("""
        import socket, sys
        listener = socket.socket(fileno=int(sys.argv[1]))
        listener.setblocking(True)
        while True:
            conn, _ = listener.accept()
            conn.sendall(b"hello from the watcher")
            conn.close()
    """))
    proc = run_script(tmp_path, f"""
        import contextlib, json, socket, sys, threading
        from circus.arbiter import Arbiter as _Arbiter
        from circus.sockets import CircusSocket
        from circus.watcher import Watcher

        class Arbiter(_Arbiter):
            def __init__(self, *args, **kwargs):
                super().__init__(*args, **kwargs)
                self.exit_stack = contextlib.ExitStack()

            def start(self, cb=None):
                self.exit_stack.__enter__()
                fut = super().start(cb)
                if exc := fut.exception():
                    raise exc

            def stop(self):
                self.exit_stack.__exit__(None, None, None)
                return super().stop()

        watcher = Watcher(name="web", cmd={sys.executable!r}, args=["{server}",
                          "$(circus.sockets.web)"], copy_env=True, stop_children=True,
                          use_sockets=True, graceful_timeout=86400, respawn=False)
        sock = CircusSocket(name="web", host="127.0.0.1", port=0)
        arbiter = Arbiter([watcher], endpoint="ipc://{tmp_path}/c.sock",
                          pubsub_endpoint="ipc://{tmp_path}/p.sock", sockets=[sock],
                          check_delay=10)
        result = {{}}

        def check():
            with socket.create_connection(("127.0.0.1", sock.port), timeout=10) as conn:
                result["reply"] = conn.recv(100).decode()
            result["port"] = sock.port
            result["fd"] = sock.fileno()
            result["pids"] = watcher.get_active_pids()
            result["in_arbiter"] = sorted(arbiter.sockets)
            arbiter.stop()

        arbiter.start(lambda future: threading.Thread(target=check).start())
        result["after"] = watcher.status()
        print(json.dumps(result))
    """)
    code, out, err = finish(proc, timeout=30)
    assert code == 0, err
    result = json.loads(out)
    assert result["reply"] == "hello from the watcher"
    assert result["port"] > 0 and result["fd"] > 2 and len(result["pids"]) == 1
    assert result["in_arbiter"] == ["web"] and result["after"] == "stopped"
    assert not proc_alive(result["pids"][0])


def test_background_arbiter_with_python_hooks_and_a_queue_stream(tmp_path):
    """get_arbiter(..., background=True): start() returns once the processes run; hooks given as
    functions are called; a QueueStream object gets the lines; the program's own children keep
    their exit status (the arbiter reaps only its own); stop() waits for the end."""
    from circus import get_arbiter
    from circus.stream import QueueStream

    spawned: list[tuple[str, int, int]] = []

    def after_spawn(watcher, arbiter, hook_name, pid, **kwargs):
        spawned.append((hook_name, pid, watcher.processes[pid].wid))
        return True

    queue = QueueStream()
    arbiter = get_arbiter(
        [{"name": "talk", "numprocesses": 2, "cmd": sys.executable,
          "args": ["-u", "-c", "import os, time; print('hi from', os.getpid()); time.sleep(3600)"],
          "hooks": {"after_spawn": after_spawn}, "stdout_stream": {"stream": queue}}],
        controller=f"ipc://{tmp_path}/c.sock", pubsub_endpoint=f"ipc://{tmp_path}/p.sock",
        statsd=True, stats_endpoint=f"ipc://{tmp_path}/s.sock", background=True)
    arbiter.start()
    try:
        watcher = arbiter.get_watcher("talk")
        pids = sorted(watcher.processes)
        assert len(pids) == 2 and watcher.status() == "active" and arbiter.running
        assert sorted(w.name for w in arbiter.watchers) == ["circusd-stats", "talk"]
        assert sorted(p for _, p, _ in spawned) == pids
        assert sorted(wid for _, _, wid in spawned) == [1, 2]
        lines = {}
        deadline = time.monotonic() + 10
        while len(lines) < 2 and time.monotonic() < deadline:
            try:
                item = queue.get(timeout=0.5)
            except Exception:
                continue
            lines[item["pid"]] = item
        assert sorted(lines) == pids
        for pid, item in lines.items():
            assert item["data"] == f"hi from {pid}\n".encode() and item["name"] == "stdout"
        # the embedding program's own children are not reaped by the arbiter
        for _ in range(5):
            assert subprocess.run(["sh", "-c", "exit 3"]).returncode == 3
        assert arbiter.get_watcher("talk").processes.keys() == set(pids)
    finally:
        arbiter.stop()
    assert not arbiter.running and not arbiter.is_alive()
    assert not any(proc_alive(pid) for pid in pids)
    assert arbiter.get_watcher("talk").status() == "stopped"


def test_an_endpoint_in_use_is_raised_by_start(tmp_path):
    from circus import get_arbiter
    from circus.core.controller import BindError

    ctx = zmq.Context()
    taken = ctx.socket(zmq.ROUTER)
    port = taken.bind_to_random_port("tcp://127.0.0.1")
    try:
        arbiter = get_arbiter([{"cmd": "sleep 3692"}], controller=f"tcp://127.0.0.1:{port}",
                              pubsub_endpoint=f"ipc://{tmp_path}/p.sock", background=True)
        with pytest.raises(BindError, match=str(port)):
            arbiter.start()
        assert not arbiter.running and not arbiter.is_alive()
    finally:
        taken.close()
        ctx.term()


def test_wrong_options_are_refused_when_the_arbiter_is_made(tmp_path):
    from circus import get_arbiter
    with pytest.raises(ValueError, match="numprocesess: unknown option"):
        get_arbiter([{"cmd": "sleep 1", "numprocesess": 2}])
    with pytest.raises(ValueError, match="needs 'cmd'"):
        get_arbiter([{"name": "x"}])
    with pytest.raises(ValueError, match="insecure|reachable"):
        get_arbiter([{"cmd": "sleep 1"}], controller="tcp://0.0.0.0:25999")
    with pytest.raises(ValueError, match="loop is not supported"):
        get_arbiter([{"cmd": "sleep 1"}], loop=object())


def test_start_refuses_to_run_inside_a_running_event_loop(tmp_path):
    import asyncio
    from circus import get_arbiter
    arbiter = get_arbiter([{"cmd": "sleep 1"}], controller=f"ipc://{tmp_path}/c.sock",
                          pubsub_endpoint=f"ipc://{tmp_path}/p.sock")

    async def main():
        with pytest.raises(RuntimeError, match="background=True"):
            arbiter.start()
    asyncio.run(main())
    assert not os.path.exists(tmp_path / "c.sock")
