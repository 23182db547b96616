"""The clients directory is trusted only when nobody but root (or circusd's user) can change it:
a clients directory, role directory or key file others can write, or another user's, is refused
at start (exit 2), by --check-config and reloadconfig, and keeps the keys in force on reload."""
from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys

import pytest
import zmq

from circus.client import CircusClient
from circus.security.keyring import Keyring
from circus.security.keys import ClientKeys, KeyFileError, write_keypair


def _mode(path) -> int:
    return stat.S_IMODE(os.lstat(path).st_mode)


def _clients(tmp_path):
    write_keypair(str(tmp_path / "keys"), "node")
    write_keypair(str(tmp_path / "keys"), "alice")
    os.makedirs(tmp_path / "clients" / "admin")
    os.rename(tmp_path / "keys" / "alice.key", tmp_path / "clients" / "admin" / "alice.key")
    return tmp_path / "clients"


def test_a_clients_directory_others_can_write_is_refused(tmp_path):
    clients = _clients(tmp_path)
    key = clients / "admin" / "alice.key"
    assert len(Keyring.load(str(clients)).keys) == 1
    for path, mode, why in ((clients, 0o777, "writable by every user"),
                            (clients / "admin", 0o770, "writable by group"),
                            (key, 0o666, "writable by every user")):
        before = _mode(path)
        if mode == 0o770:
            os.chown(path, -1, 1)               # a group other than root
        path.chmod(mode)
        with pytest.raises(KeyFileError, match=why) as info:
            Keyring.load(str(clients))
        assert str(path) in str(info.value)
        path.chmod(before)
    if os.geteuid() == 0:
        os.chown(key, 65534, 65534)
        with pytest.raises(KeyFileError, match="belongs to uid 65534"):
            Keyring.load(str(clients))
        os.chown(key, 0, 0)
        tmp_path.chmod(0o777)                   # a directory above it: it could be swapped
        with pytest.raises(KeyFileError, match="above it"):
            Keyring.load(str(clients))
        tmp_path.chmod(0o1777)                  # sticky, like /tmp: accepted
        assert len(Keyring.load(str(clients)).keys) == 1
        tmp_path.chmod(0o700)


def _curve_config(tmp_path) -> str:
    return (f"[circus]\nendpoint = ipc://{tmp_path}/control.sock\n"
            f"pubsub_endpoint = ipc://{tmp_path}/events.sock\n"
            "curve_secret_key = keys/node.key_secret\ncurve_clients = clients\n"
            "[watcher:sleeper]\ncmd = sleep 120\n")


def test_circusd_refuses_a_world_writable_clients_directory(tmp_path):
    clients = _clients(tmp_path)
    (clients / "admin").chmod(0o777)
    conf = tmp_path / "c.ini"
    conf.write_text(_curve_config(tmp_path))
    # the configuration is checked the same way at start, by --check-config and reloadconfig
    r = subprocess.run([sys.executable, "-m", "circus.cli.circusd", "--check-config", str(conf)],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 2, (r.stdout, r.stderr)
    assert "curve_clients" in r.stderr and "writable by every user" in r.stderr


def test_reload_keeps_the_keys_when_the_directory_becomes_writable(circusd, tmp_path):
    clients = _clients(tmp_path)
    alice = ClientKeys.load(str(tmp_path / "keys" / "alice.key_secret"),
                            str(tmp_path / "keys" / "node.key"))
    d = circusd(_curve_config(tmp_path))
    d.wait_log("CURVE on: clients from")
    (clients / "admin").chmod(0o777)
    client = CircusClient(zmq.Context.instance(), endpoint=f"ipc://{tmp_path}/control.sock",
                          timeout=10, curve=alice)
    try:
        reply = client.send_message("reloadconfig", waiting=True)
        assert reply["status"] == "error" and reply["code"] == "config_error", reply
        assert "writable by every user" in reply["reason"]
        d.signal(signal.SIGHUP)                   # reload: re-reads the directory alone
        d.wait_log("curve_clients not re-read, the keys in force are kept")
        assert "writable by every user" in d.log_text()
        assert client.send_message("numwatchers")["status"] == "ok"
    finally:
        client.stop()
    assert d.stop() == 0
