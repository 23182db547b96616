"""CURVE turned on and off by reloadconfig, on the same endpoints: circusd closes its sockets and
binds them again with the new keys; clients of the old regime stop being answered."""
from __future__ import annotations

import os

import pytest
import zmq

from circus.client import CircusClient
from circus.client.errors import CallTimeout
from circus.security.keys import ClientKeys, write_keypair

WATCHER = """
[watcher:sleeper]
cmd = sleep 120
"""


def _config(tmp_path, curve: bool) -> str:
    text = (f"[circus]\nendpoint = ipc://{tmp_path}/control.sock\n"
            f"pubsub_endpoint = ipc://{tmp_path}/events.sock\n")
    if curve:
        text += "curve_secret_key = keys/node.key_secret\ncurve_clients = clients\n"
    return text + WATCHER


@pytest.fixture
def keys(tmp_path):
    write_keypair(str(tmp_path / "keys"), "node")
    write_keypair(str(tmp_path / "keys"), "alice")
    os.makedirs(tmp_path / "clients" / "admin")
    os.rename(tmp_path / "keys" / "alice.key", tmp_path / "clients" / "admin" / "alice.key")
    return ClientKeys.load(str(tmp_path / "keys" / "alice.key_secret"),
                           str(tmp_path / "keys" / "node.key"))


def _answers(endpoint: str, curve, timeout: float = 1.0) -> bool:
    client = CircusClient(zmq.Context.instance(), endpoint=endpoint, timeout=timeout, curve=curve)
    try:
        return client.send_message("numwatchers")["status"] == "ok"
    except CallTimeout:
        return False
    finally:
        client.stop()


def _call(endpoint: str, curve, command: str, **props) -> dict:
    client = CircusClient(zmq.Context.instance(), endpoint=endpoint, timeout=10, curve=curve)
    try:
        return client.send_message(command, **props)
    finally:
        client.stop()


def _wait_answers(d, endpoint: str, curve, what: str) -> None:
    d.wait(lambda: _answers(endpoint, curve, 0.5), 10.0, what)


def test_reloadconfig_turns_curve_on_then_off(circusd, tmp_path, keys):
    endpoint = f"ipc://{tmp_path}/control.sock"
    d = circusd(_config(tmp_path, curve=False))
    _wait_answers(d, endpoint, None, "the plain node to answer")

    d.write(_config(tmp_path, curve=True))
    assert _call(endpoint, None, "reloadconfig", waiting=True)["status"] == "ok"
    d.wait_log("CURVE on: clients from")
    _wait_answers(d, endpoint, keys, "the keyed client to be answered after CURVE went on")
    assert not _answers(endpoint, None), "a client without keys is still answered"
    assert oct(os.stat(tmp_path / "control.sock").st_mode & 0o777) == "0o600"

    d.write(_config(tmp_path, curve=False))
    assert _call(endpoint, keys, "reloadconfig", waiting=True)["status"] == "ok"
    _wait_answers(d, endpoint, None, "the plain client to be answered after CURVE went off")
    assert d.children("sleep"), "the watcher's process did not survive the rebinds"


def test_reloadconfig_with_a_broken_key_keeps_the_sockets(circusd, tmp_path, keys):
    endpoint = f"ipc://{tmp_path}/control.sock"
    d = circusd(_config(tmp_path, curve=True))
    _wait_answers(d, endpoint, keys, "the keyed node to answer")
    (tmp_path / "keys" / "node.key_secret").write_text("not a key\n")
    client = CircusClient(zmq.Context.instance(), endpoint=endpoint, timeout=10, curve=keys)
    try:
        reply = client.send_message("reloadconfig", waiting=True)
        assert reply["status"] == "error" and reply["code"] == "config_error", reply
        assert "node.key_secret" in reply["reason"]
        assert client.send_message("numwatchers")["status"] == "ok"
    finally:
        client.stop()
