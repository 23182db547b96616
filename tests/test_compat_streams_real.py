"""Stream classes written the 0.19 way: a plain class (like the syslog and journald streams people
publish), a subclass of ``circus.stream.FileStream``, one that uses ``circus.util.to_str`` and
``from circus import logger``. Loaded by dotted path in a real circusd, they get 0.19's call:
one dict per line with ``data`` (bytes), ``pid`` (int) and ``name`` ("stdout"/"stderr"), and
their options as strings; ``close()`` is called when the watcher stops."""
from __future__ import annotations

import json
import sys
import time

import pytest

STREAMS = '''
import json, os
from circus import logger
from circus.stream import FileStream
from circus.util import to_str


class JournalLike(object):
    """No base class: what third-party streams look like (syslog, journald...)."""

    def __init__(self, path, identifier=None, **kwargs):
        self.path, self.identifier, self.extra = path, identifier, kwargs
        self.fh = open(path, "a")

    def __call__(self, data):
        self.fh.write(json.dumps({
            "type": type(data["data"]).__name__, "pid": data["pid"],
            "pid_type": type(data["pid"]).__name__, "name": data["name"],
            "keys": sorted(data), "text": to_str(data["data"]), "identifier": self.identifier,
            "extra": self.extra}) + "\\n")
        self.fh.flush()

    def close(self):
        self.fh.write(json.dumps({"closed": True}) + "\\n")
        self.fh.close()
        logger.info("JournalLike closed")


class Shouting(FileStream):
    """A subclass of 0.19's FileStream that changes what is written."""

    def __call__(self, data):
        data = dict(data, data=data["data"].upper())
        super().__call__(data)
'''


@pytest.mark.real
def test_0_19_stream_classes_load_by_dotted_path_and_get_each_line(control_node, tmp_path):
    (tmp_path / "mystreams.py").write_text(STREAMS)
    journal, shout = tmp_path / "journal.jsonl", tmp_path / "shout.log"
    d, c = control_node(f"""
        [watcher:talker]
        cmd = {sys.executable} -u -c "import os, sys, time; print('out one'); print('out two'); sys.stderr.write('err one\\\\n'); sys.stderr.flush(); time.sleep(3600)"
        stdout_stream.class = mystreams.JournalLike
        stdout_stream.path = {journal}
        stdout_stream.identifier = web
        stdout_stream.refresh_time = 0.3
        stderr_stream.class = mystreams:Shouting
        stderr_stream.filename = {shout}
        stderr_stream.max_bytes = 100000
    """)
    d.wait(lambda: journal.exists() and len(journal.read_text().splitlines()) >= 2, what="lines")
    d.wait(lambda: shout.exists() and shout.read_text(), what="stderr line")
    pid = d.children(sys.executable)[0]
    rows = [json.loads(line) for line in journal.read_text().splitlines()]
    assert [r["text"] for r in rows] == ["out one\n", "out two\n"]
    for r in rows:
        assert (r["type"], r["pid"], r["pid_type"], r["name"]) == ("bytes", pid, "int", "stdout")
        assert r["keys"] == ["data", "name", "pid"]
        assert r["identifier"] == "web" and r["extra"] == {"refresh_time": "0.3"}
    assert shout.read_text() == "ERR ONE\n"
    assert c.call("stop", name="talker", waiting=True)["status"] == "ok"
    d.wait(lambda: journal.read_text().splitlines()[-1] == '{"closed": true}', what="close()")
    d.wait_log("JournalLike closed")
    d.stop()


@pytest.mark.real
def test_a_stream_class_that_cannot_be_loaded_fails_its_watcher_only(control_node, tmp_path):
    # in a file it is a configuration error (test_config_compat_real.py); added at run time it
    # fails its watcher only
    d, c = control_node("""
        [watcher:fine]
        cmd = sleep 3683
    """)
    d.wait(lambda: d.children("sleep 3683"), what="the other watcher")
    c.call("add", name="broken", cmd="sleep 3682", start=True,
           options={"stdout_stream": {"class": "nosuchmodule.Stream"}})
    d.wait(lambda: c.call("status", name="broken")["status"] in ("fatal", "stopped"), what="fatal")
    assert "nosuchmodule" in c.call("status", name="broken")["reason"]
    assert not d.children("sleep 3682")
    d.stop()


def test_file_stream_with_0_19s_call_contract(tmp_path):
    from circus.stream import FileStream, get_stream
    path = tmp_path / "f.log"
    stream = FileStream(str(path), max_bytes="40", backup_count="1", time_format="%Y")
    for i in range(6):
        stream({"data": f"line {i}\n".encode(), "pid": 7, "name": "stdout"})
    stream({"data": b"two\nin one\n", "pid": 7, "name": "stdout"})
    stream.close()
    prefix = f"{time.strftime('%Y')} [7] | "
    assert path.read_text() == f"{prefix}two\n{prefix}in one\n"       # each line prefixed
    assert (tmp_path / "f.log.1").read_text() == f"{prefix}line 4\n{prefix}line 5\n"
    same = get_stream({"class": "FileStream", "filename": str(tmp_path / "g.log")})
    same({"data": b"x\n", "pid": 1})
    same.close()
    assert (tmp_path / "g.log").read_text() == "x\n"


def test_get_stream_forms():
    from circus.stream import FileStream, QueueStream, get_stream
    q = get_stream({"class": "QueueStream", "anything": "ignored"})
    assert isinstance(q, QueueStream)
    q({"data": b"a", "pid": 1, "name": "stdout"})
    assert q.get_nowait()["data"] == b"a"
    obj = object()
    assert get_stream({"stream": obj}) is obj
    assert isinstance(get_stream({"filename": "/dev/null"}), FileStream)
    assert get_stream({}) is None and get_stream(None) is None
    assert isinstance(get_stream({"class": "circus.stream.QueueStream"}), QueueStream)
    with pytest.raises(ValueError, match="needs 'class'"):
        get_stream({"nothing": 1})


def test_timed_rotating_stream_checks_rotate_when():
    from circus.stream import TimedRotatingFileStream
    with pytest.raises(ValueError, match="rotate_when"):
        TimedRotatingFileStream("/dev/null", rotate_when="fortnightly")
    TimedRotatingFileStream("/dev/null", rotate_when="midnight", utc="false").close()
