"""The keeper: a small process circusd forks at start, which outlives it if it dies.

circusd tells it, over a ``SOCK_SEQPACKET`` socket pair, about every process it starts (pid, and
with a state file the read ends of the process's stdout/stderr pipes) and every socket it binds.
What the keeper does when circusd disappears without saying goodbye (SIGKILL, OOM killer, a
crash) depends on the mode:

* ``warden`` (no ``state_file``): it ends what circusd was supervising: SIGTERM to each process
  group and to every process marked with circusd's lineage (grandchildren that left the group
  too), SIGKILL after a grace period, then it exits. Nothing keeps running unsupervised.
* ``keeper`` (``state_file`` set): it keeps the processes alive by holding their pipes open (a
  child writing to stdout does not get EPIPE) and the listening sockets; it listens on a unix
  socket next to the state file and hands everything over to the next circusd, which re-adopts
  the processes and reattaches their output, then exits.

A clean stop of circusd says ``bye``: the keeper closes what it holds and exits.
"""
from __future__ import annotations

import array
import json
import logging
import os
import signal
import socket
import stat
import struct
import time
from dataclasses import dataclass, field

from circus.core.lineage import Lineage, read_marker, running, same_pid_namespace, start_ticks

__all__ = ["KeeperLink", "start_keeper", "Handover", "collect_handover", "handover_path"]

log = logging.getLogger("circus")

MAX_MESSAGE = 65536
#: seconds the warden gives the processes between SIGTERM and SIGKILL
WARDEN_GRACE = 2.0
#: while waiting for the next circusd, how often the keeper checks that something still runs
HANDOVER_CHECK = 2.0


def handover_path(state_file: str) -> str:
    return state_file + ".keeper"


# -- the circusd side ---------------------------------------------------------------------------

class KeeperLink:
    """circusd's end of the link to its keeper. Sending never raises: a dead keeper is logged."""

    def __init__(self, sock: socket.socket | None, mode: str, pid: int = 0) -> None:
        self.sock, self.mode, self.pid = sock, mode, pid

    @property
    def holds_pipes(self) -> bool:
        return self.mode == "keeper"

    def _send(self, message: dict, fds: list[int] = ()) -> None:
        if self.sock is None:
            return
        data = json.dumps(message, separators=(",", ":")).encode()
        try:
            if fds:
                self.sock.sendmsg([data], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", fds))])
            else:
                self.sock.send(data)
        except TimeoutError:        # the keeper is slow (stopped?): this message is lost, not it
            log.warning("the keeper process did not take a message within 2 s: %s lost",
                        message.get("op"))
        except OSError as exc:
            log.error("the keeper process is gone (%s): a SIGKILL of circusd would now leave its "
                      "processes running unsupervised until the next start", exc)
            self.sock.close()
            self.sock = None

    @property
    def alive(self) -> bool:
        return self.sock is not None

    def hold(self, pid: int, pipes: dict[str, int]) -> None:
        """A new process (and, in keeper mode, its pipes' read ends, which circusd keeps too)."""
        if not self.holds_pipes:
            pipes = {}
        self._send({"op": "hold", "pid": pid, "names": list(pipes)}, list(pipes.values()))

    def drop(self, pid: int) -> None:
        self._send({"op": "drop", "pid": pid})

    def hold_socket(self, name: str, fd: int | None) -> None:
        """A socket bound (``fd``) or closed (None) under ``name``."""
        if self.holds_pipes:
            self._send({"op": "socket", "name": name}, [fd] if fd is not None else [])

    def leave(self) -> None:
        """circusd exits on purpose leaving its processes running: the keeper keeps them."""
        if self.sock is not None:
            self.sock.close()
            self.sock = None

    def bye(self) -> None:
        """circusd stops cleanly: the keeper lets go of everything and exits."""
        self._send({"op": "bye"})
        if self.sock is not None:
            self.sock.close()
            self.sock = None


def start_keeper(mode: str, lineage: Lineage, path: str | None) -> KeeperLink:
    """Fork the keeper (call before any thread or event loop exists, and before circusd becomes
    a subreaper). It is forked twice, so that it is not circusd's child: circusd's children are
    its processes only, and the keeper is not in any of circusd's process trees."""
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    middle = os.fork()
    if middle == 0:                                # pragma: no cover - runs in the child
        code = 1
        try:
            ours.close()
            if os.fork() > 0:
                code = 0
            else:
                _become_keeper(theirs)
                theirs.send(str(os.getpid()).encode())
                code = Keeper(theirs, mode, lineage, path).run()
        finally:
            os._exit(code)
    os.waitpid(middle, 0)
    theirs.close()
    ours.settimeout(5.0)
    try:
        pid = int(ours.recv(32))
    except (OSError, ValueError) as exc:
        log.error("the keeper process did not start (%s): a SIGKILL of circusd would leave its "
                  "processes running unsupervised until the next start", exc)
        ours.close()
        return KeeperLink(None, mode)
    ours.settimeout(2.0)
    log.info("keeper process %d (%s)", pid, "holds pipes and sockets for the next circusd"
             if mode == "keeper" else "ends the processes if circusd is killed")
    return KeeperLink(ours, mode, pid)


def _become_keeper(sock: socket.socket) -> None:   # pragma: no cover - runs in the child
    os.setsid()                       # not in circusd's process group: a ^C to it spares us
    for sig in (signal.SIGINT, signal.SIGHUP, signal.SIGQUIT, signal.SIGUSR1, signal.SIGUSR2):
        signal.signal(sig, signal.SIG_IGN)
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    devnull = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(devnull, fd)
    keep = sock.fileno()
    os.closerange(3, keep)           # circusd's log, pidfile lock...: not ours to hold
    os.closerange(keep + 1, 65536)
    logging.disable(logging.CRITICAL)


# -- the keeper process -------------------------------------------------------------------------

@dataclass
class Keeper:                                      # pragma: no cover - runs in the child
    sock: socket.socket
    mode: str
    lineage: Lineage
    path: str | None
    pipes: dict[int, dict[str, int]] = field(default_factory=dict)
    ticks: dict[int, int | None] = field(default_factory=dict)   # pid -> start ticks (identity)
    sockets: dict[str, int] = field(default_factory=dict)

    def ours(self, pid: int) -> bool:
        """Is ``pid`` still the process circusd told us about (not a reused pid)?"""
        return running(pid) and start_ticks(pid) == self.ticks.get(pid)

    def run(self) -> int:
        while True:
            try:
                data, fds = _receive(self.sock)
            except OSError:
                data, fds = b"", []
            if not data:
                break
            message = json.loads(data)
            op = message.get("op")
            if op == "bye":
                return 0
            if op == "hold":
                pid = message["pid"]
                self.pipes[pid] = dict(zip(message["names"], fds))
                self.ticks[pid] = start_ticks(pid)
            elif op == "drop":
                self.ticks.pop(message["pid"], None)
                for fd in self.pipes.pop(message["pid"], {}).values():
                    os.close(fd)
            elif op == "socket":
                old = self.sockets.pop(message["name"], None)
                if old is not None:
                    os.close(old)
                if fds:
                    self.sockets[message["name"]] = fds[0]
            else:
                for fd in fds:
                    os.close(fd)
        self.sock.close()
        if self.mode == "keeper" and self.path:
            return self.hand_over()
        self.end_everything()
        return 0

    def end_everything(self) -> None:
        """circusd died without a state file: stop what it supervised, by group and by lineage."""
        def victims() -> list[int]:
            found = [pid for pid in self.pipes if self.ours(pid)]
            for entry in os.listdir("/proc"):
                if entry.isdigit() and read_marker(int(entry)) == self.lineage.value \
                        and same_pid_namespace(int(entry)):
                    found.append(int(entry))
            return found

        for sig in (signal.SIGTERM, signal.SIGKILL):
            for pid in self.pipes:
                if self.ours(pid):             # its group leader is still the one: the group too
                    _signal_group(pid, sig)
            for pid in victims():
                _signal(pid, sig)
            deadline = time.monotonic() + (WARDEN_GRACE if sig == signal.SIGTERM else 1.0)
            while victims() and time.monotonic() < deadline:
                time.sleep(0.02)

    def hand_over(self) -> int:
        """Wait for the next circusd and give it everything we hold."""
        try:
            os.unlink(self.path)
        except OSError:
            pass
        server = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        old_umask = os.umask(0o077)
        try:
            server.bind(self.path)
        except OSError:               # cannot offer them: at least keep the pipes open meanwhile
            server.close()
            while any(self.ours(pid) for pid in self.pipes):
                time.sleep(HANDOVER_CHECK)
            return 1
        finally:
            os.umask(old_umask)
        server.listen(1)
        server.settimeout(HANDOVER_CHECK)
        while True:
            try:
                conn, _ = server.accept()
            except TimeoutError:
                if any(self.ours(pid) for pid in self.pipes):
                    continue
                break                    # everything it kept for has ended: nothing to hand over
            conn.setblocking(True)
            if not _trusted_peer(conn):
                conn.close()
                continue
            try:
                conn.settimeout(10.0)
                inventory = {"lineage": self.lineage.value,
                             "processes": {str(pid): list(p) for pid, p in self.pipes.items()},
                             "sockets": list(self.sockets)}
                conn.sendmsg([json.dumps(inventory).encode()])
                for pid, pipes in self.pipes.items():
                    _send_fds(conn, {"pid": pid, "names": list(pipes)}, list(pipes.values()))
                for name, fd in self.sockets.items():
                    _send_fds(conn, {"socket": name}, [fd])
                conn.sendmsg([b'{"end": true}'])
                if conn.recv(16) == b"ok":
                    break
            except OSError:
                continue
            finally:
                conn.close()
        server.close()
        try:
            os.unlink(self.path)
        except OSError:
            pass
        return 0


def _receive(sock: socket.socket) -> tuple[bytes, list[int]]:
    fds = array.array("i")
    data, ancdata, _flags, _addr = sock.recvmsg(MAX_MESSAGE, socket.CMSG_LEN(64 * fds.itemsize))
    for level, kind, payload in ancdata:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            fds.frombytes(payload[:len(payload) - (len(payload) % fds.itemsize)])
    return data, list(fds)


def _send_fds(conn: socket.socket, message: dict, fds: list[int]) -> None:
    data = json.dumps(message).encode()
    if fds:
        conn.sendmsg([data], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", fds))])
    else:
        conn.sendmsg([data])


def _trusted_peer(conn: socket.socket) -> bool:
    """Only root or our own user may take (or give) the pipes and sockets."""
    try:
        _pid, uid, _gid = struct.unpack("3i", conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED,
                                                              struct.calcsize("3i")))
    except OSError:
        return False
    return uid in (0, os.geteuid())


def _signal(pid: int, sig: int) -> None:
    try:
        os.kill(pid, sig)
    except OSError:
        pass


def _signal_group(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except OSError:
        pass


# -- the next circusd's side --------------------------------------------------------------------

@dataclass
class Handover:
    """What an earlier keeper handed over: pipes by pid, sockets by name."""

    lineage: str = ""
    pipes: dict[int, dict[str, int]] = field(default_factory=dict)
    sockets: dict[str, socket.socket] = field(default_factory=dict)

    def take_sockets(self) -> dict[str, socket.socket]:
        """The sockets, now owned by the caller."""
        taken, self.sockets = self.sockets, {}
        return taken

    def close(self) -> None:
        for pipes in self.pipes.values():
            for fd in pipes.values():
                os.close(fd)
        for sock in self.sockets.values():
            sock.close()
        self.pipes.clear()
        self.sockets.clear()


def collect_handover(path: str, timeout: float = 5.0) -> Handover:
    """Take what the keeper of an earlier circusd holds (an empty Handover when there is none)."""
    found = Handover()
    if not os.path.exists(path):
        return found
    try:
        if not stat.S_ISSOCK(os.lstat(path).st_mode):
            log.error("%s is not a socket: no handover from a keeper (left as it is)", path)
            return found
    except OSError:
        return found
    conn = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    conn.settimeout(timeout)
    try:
        conn.connect(path)
    except OSError as exc:
        log.info("no keeper answers on %s (%s): removing the stale socket", path, exc)
        conn.close()
        try:
            os.unlink(path)
        except OSError:
            pass
        return found
    stray: list[int] = []
    try:
        if not _trusted_peer(conn):
            raise OSError("the socket is not held by root or circusd's user")
        data, stray = _receive(conn)
        found.lineage = str(json.loads(data).get("lineage", ""))
        while True:
            data, fds = _receive(conn)
            stray = list(fds)
            if not data:
                raise OSError("the keeper hung up during the handover")
            message = json.loads(data)
            if message.get("end"):
                break
            if "pid" in message:
                names = [str(n) for n in message["names"]][:len(fds)]
                found.pipes[int(message["pid"])] = dict(zip(names, fds))
                stray = fds[len(names):]
            elif "socket" in message and fds:
                stray = fds[1:]
                found.sockets[str(message["socket"])] = socket.socket(fileno=fds[0])
            for fd in stray:
                os.close(fd)
            stray = []
        conn.send(b"ok")
    except Exception as exc:  # whatever the peer sent: no handover, nothing leaked, no crash
        log.error("the handover from the keeper on %s failed: %s", path, exc)
        for fd in stray:
            try:
                os.close(fd)
            except OSError:
                pass
        found.close()
        found = Handover()
    finally:
        conn.close()
    return found


