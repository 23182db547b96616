"""Files circusd opens or creates as root (circus.security.safepath), file work done as another
user (circus.security.asuser) and ipc:// socket files (circus.security.ipcbind): real files,
real links, real forks. The tests that switch users need root (CI runs as root)."""
from __future__ import annotations

import errno
import os
import pwd
import stat
import time

import pytest
import zmq

from asnobody import scratch
from circus.security.asuser import Creds, run_as, user_creds
from circus.security.ipcbind import bind_private
from circus.security.safepath import (UnsafePath, open_append, open_private, read_private,
                                      replace_private, walk)

root_only = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (CI runs as root)")


def nobody() -> pwd.struct_passwd:
    return pwd.getpwnam("nobody")


def append(path, data: bytes = b"x\n", **kw) -> bool:
    fd, created = open_append(str(path), **kw)
    try:
        os.write(fd, data)
    finally:
        os.close(fd)
    return created


# -- the walk and the last component -------------------------------------------------------------

def test_a_new_file_is_created_with_the_mode_and_an_existing_one_appended(tmp_path):
    old = os.umask(0)
    try:
        assert append(tmp_path / "a.log", b"one\n") is True
        assert append(tmp_path / "a.log", b"two\n") is False
    finally:
        os.umask(old)
    assert (tmp_path / "a.log").read_bytes() == b"one\ntwo\n"
    assert stat.S_IMODE((tmp_path / "a.log").stat().st_mode) == 0o640


def test_a_link_in_a_directory_others_can_write_is_not_followed(tmp_path):
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o1777)
    victim = tmp_path / "victim"
    victim.write_bytes(b"precious\n")
    (shared / "out.log").symlink_to(victim)
    os.lchown(shared / "out.log", 65534, 65534)           # planted by another user
    with pytest.raises(UnsafePath, match="symbolic link in a directory that other users"):
        append(shared / "out.log")
    (tmp_path / "ww").mkdir()
    (tmp_path / "ww").chmod(0o777)                          # not sticky: nobody's link or ours
    (tmp_path / "ww" / "sub").symlink_to(tmp_path)
    with pytest.raises(UnsafePath):
        append(tmp_path / "ww" / "sub" / "victim")
    assert victim.read_bytes() == b"precious\n"


def test_links_only_root_could_place_are_followed(tmp_path):
    real = tmp_path / "real"
    real.mkdir()
    (tmp_path / "alias").symlink_to("real")                 # our own directory: trusted
    (tmp_path / "f.log").symlink_to(real / "f.log")
    append(tmp_path / "alias" / "x.log", b"via a link\n")
    append(tmp_path / "f.log", b"last component\n")
    assert (real / "x.log").read_bytes() == b"via a link\n"
    assert (real / "f.log").read_bytes() == b"last component\n"
    fd, created = open_append("/dev/null")                  # a character device
    os.close(fd)
    read, write = os.pipe()
    try:                                                     # a kernel link under /proc
        fd, _ = open_append(f"/proc/self/fd/{write}")
        os.write(fd, b"through /proc\n")
        os.close(fd)
        assert os.read(read, 100) == b"through /proc\n"
    finally:
        os.close(read)
        os.close(write)


def test_refusals_say_why(tmp_path):
    (tmp_path / "dir").mkdir()
    with pytest.raises(OSError) as info:
        append(tmp_path / "missing" / "x.log")
    assert info.value.errno == errno.ENOENT
    with pytest.raises(OSError):
        append(tmp_path / "dir")
    with pytest.raises(IsADirectoryError):
        walk(str(tmp_path) + "/..", follow_last=True)
    target = tmp_path / "target"
    target.write_bytes(b"t\n")
    os.link(target, tmp_path / "hard")                      # a hard link: maybe another's file
    with pytest.raises(UnsafePath, match="2 hard links"):
        append(tmp_path / "hard")
    os.mkfifo(tmp_path / "fifo")
    t0 = time.monotonic()
    with pytest.raises(OSError, match="FIFO nobody reads"):  # never blocks
        append(tmp_path / "fifo")
    assert time.monotonic() - t0 < 1
    assert target.read_bytes() == b"t\n"


@root_only
def test_a_file_of_another_user_is_refused_unless_it_is_the_watchers(tmp_path):
    theirs = tmp_path / "theirs.log"
    theirs.write_bytes(b"")
    os.chown(theirs, nobody().pw_uid, nobody().pw_gid)
    with pytest.raises(UnsafePath, match="belongs to uid"):
        append(theirs)
    append(theirs, owners=(nobody().pw_uid,))
    created = tmp_path / "new.log"
    append(created, owner=(nobody().pw_uid, -1))
    assert created.stat().st_uid == nobody().pw_uid


def test_private_files_never_through_a_link_and_only_ours(tmp_path):
    victim = tmp_path / "victim"
    victim.write_bytes(b"precious\n")
    (tmp_path / "pid").symlink_to(victim)                   # even a link of our own
    with pytest.raises(UnsafePath, match="symbolic link"):
        open_private(str(tmp_path / "pid"), os.O_RDWR | os.O_CREAT, 0o644)
    loose = tmp_path / "loose"
    loose.write_bytes(b"{}")
    loose.chmod(0o666)
    with pytest.raises(UnsafePath, match="writable by others"):
        read_private(str(loose), 100)
    with pytest.raises(OSError, match="larger than"):
        loose.chmod(0o600)
        read_private(str(loose), 1)
    replace_private(str(tmp_path / "pid"), b"42\n", prefix=".t.")
    assert (tmp_path / "pid").read_bytes() == b"42\n" and not (tmp_path / "pid").is_symlink()
    assert stat.S_IMODE((tmp_path / "pid").stat().st_mode) == 0o600
    assert victim.read_bytes() == b"precious\n"
    assert not list(tmp_path.glob(".t.*"))


# -- as another user ---------------------------------------------------------------------------

def _open_job(path: str):
    return "opened", [os.open(path, os.O_RDONLY | os.O_CLOEXEC)]


def _who_job():
    return [os.getuid(), os.geteuid(), os.getgid(), sorted(os.getgroups())], []


def _slow_job():
    time.sleep(30)
    return None, []


@root_only
def test_a_job_runs_with_the_users_credentials_and_hands_back_descriptors(tmp_path):
    creds = user_creds("nobody")
    ids, _ = run_as(creds, _who_job)
    assert ids == [creds.uid, creds.uid, creds.gid, sorted(set(creds.groups))]
    secret = tmp_path / "secret"                              # root's, 0600
    secret.write_bytes(b"root only\n")
    secret.chmod(0o600)
    with pytest.raises(PermissionError):
        run_as(creds, _open_job, str(secret))
    with scratch() as shared:
        public = shared / "public"
        public.write_bytes(b"for everyone\n")
        os.chown(public, creds.uid, creds.gid)
        public.chmod(0o600)
        result, fds = run_as(creds, _open_job, str(public))
        assert result == "opened" and len(fds) == 1
        assert os.read(fds[0], 100) == b"for everyone\n"
        os.close(fds[0])


@root_only
def test_a_job_that_does_not_answer_is_killed_at_the_deadline():
    creds = user_creds("nobody")
    t0 = time.monotonic()
    with pytest.raises(OSError) as info:
        run_as(creds, _slow_job, timeout=0.3)
    assert info.value.errno == errno.ETIMEDOUT and "nobody" in str(info.value)
    assert time.monotonic() - t0 < 5


def test_without_a_switch_a_job_runs_in_place():
    me = Creds(os.geteuid(), os.getegid(), (os.getegid(),), "me")
    assert run_as(me, _who_job)[0][:2] == [os.getuid(), os.geteuid()]


# -- ipc:// socket files -----------------------------------------------------------------------

def test_an_ipc_socket_file_is_0600_whatever_the_umask(tmp_path):
    ctx = zmq.Context()
    sock = ctx.socket(zmq.PUB)
    sock.linger = 0
    old = os.umask(0)
    try:
        bind_private(sock, f"ipc://{tmp_path}/s.sock")
        st = os.lstat(tmp_path / "s.sock")
        assert stat.S_ISSOCK(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o600
    finally:
        os.umask(old)
        sock.close()
        ctx.term()
