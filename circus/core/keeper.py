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

The keeper is a fresh interpreter (``python -I -S``, :mod:`circus.core.keeperproc`), not a fork of
circusd: it holds none of circusd's modules and heap.
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
import sys

from circus.core.lineage import Lineage
from circus.records import Factory, Record, record

__all__ = ["KeeperLink", "KeeperStart", "start_keeper", "Handover", "collect_handover", "handover_path"]

log = logging.getLogger("circus")

MAX_MESSAGE = 65536


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

    def _send(self, fields: list[str], fds: list[int] = ()) -> None:
        """One message: its fields NUL-separated (a name holding a NUL is not sent)."""
        if self.sock is None:
            return
        if any("\0" in f for f in fields):
            log.error("not told to the keeper process: a name holding a NUL byte (%r)", fields)
            return
        data = "\0".join(fields).encode("utf-8", "surrogatepass")
        try:
            if fds:
                self.sock.sendmsg([data], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", fds))])
            else:
                self.sock.send(data)
        except TimeoutError:        # the keeper is slow (stopped?): this message is lost, not it
            log.warning("the keeper process did not take a message within 2 s: %s lost", fields[0])
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
        self._send(["hold", str(pid), *pipes], list(pipes.values()))

    def drop(self, pid: int) -> None:
        self._send(["drop", str(pid)])

    def hold_socket(self, name: str, fd: int | None) -> None:
        """A socket bound (``fd``) or closed (None) under ``name``."""
        if self.holds_pipes:
            self._send(["socket", name], [fd] if fd is not None else [])

    def leave(self) -> None:
        """circusd exits on purpose leaving its processes running: the keeper keeps them."""
        if self.sock is not None:
            self.sock.close()
            self.sock = None

    def bye(self) -> None:
        """circusd stops cleanly: the keeper lets go of everything and exits."""
        self._send(["bye"])
        if self.sock is not None:
            self.sock.close()
            self.sock = None


#: the keeper's interpreter: its directory on sys.path, then :func:`keeperproc.main`
_BOOT = ("import sys; sys.path.append(sys.argv[2]); import keeperproc; "
         "sys.exit(keeperproc.main(sys.argv[3:]))")
#: the fd of the keeper's end of the socket pair, in the keeper
KEEPER_FD = 3


def keeper_argv(mode: str, lineage: str, path: str | None) -> list[str]:
    """The command line of the keeper (``circus-keeper`` is only a label for ``ps``)."""
    here = os.path.dirname(os.path.abspath(__file__))
    return [sys.executable, "-I", "-S", "-c", _BOOT, "circus-keeper", here, str(KEEPER_FD), mode,
            lineage, path or ""]


def start_keeper(mode: str, lineage: Lineage, path: str | None) -> KeeperLink:
    """Start the keeper and wait until it exists (:class:`KeeperStart`, then ``finish()``)."""
    return KeeperStart(mode, lineage, path).finish()


class KeeperStart:
    """Starting the keeper (before any thread or event loop exists, and before circusd becomes
    a subreaper). It is forked twice, so that it is not circusd's child: circusd's children are
    its processes only, and the keeper is not in any of circusd's process trees; the grandchild
    then execs a fresh interpreter. circusd does not wait for that interpreter: what it sends
    meanwhile waits in the socket pair (and a circusd killed meanwhile leaves the keeper its
    messages and then the end of the stream, as always).

    The fork happens at construction; :meth:`finish` reaps the middle process and reads the
    keeper's pid, so circusd can do something else meanwhile (import the rest of itself). It
    must not become a subreaper before :meth:`finish`: the keeper would be re-parented to it."""

    def __init__(self, mode: str, lineage: Lineage, path: str | None) -> None:
        self.mode = mode
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        argv = keeper_argv(mode, lineage.value, path) if sys.executable else None
        middle = os.fork()
        if middle == 0:                                # pragma: no cover - runs in the child
            code = 1
            try:
                ours.close()
                keeper = os.fork()
                if keeper > 0:
                    theirs.send(str(keeper).encode())
                    code = 0
                else:
                    _become_keeper(theirs)
                    if argv is not None:
                        try:
                            os.execv(argv[0], argv)
                        except OSError:
                            pass                       # no interpreter to exec: keep in this copy
                    from circus.core import keeperproc
                    code = keeperproc.main([str(KEEPER_FD), mode, lineage.value, path or ""])
            finally:
                os._exit(code)
        theirs.close()
        self._middle, self._sock = middle, ours

    def finish(self) -> KeeperLink:
        """The link to the keeper, once the middle process is gone (a dead link if the keeper
        could not start)."""
        os.waitpid(self._middle, 0)
        ours, mode = self._sock, self.mode
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
    """The keeper's process before its exec: its own session, the signals meant for circusd's
    session ignored, /dev/null for 0-2, the socket pair at KEEPER_FD and no other fd."""
    os.setsid()                       # not in circusd's process group: a ^C to it spares us
    for sig in (signal.SIGINT, signal.SIGHUP, signal.SIGQUIT, signal.SIGUSR1, signal.SIGUSR2):
        signal.signal(sig, signal.SIG_IGN)
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    devnull = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(devnull, fd)
    if sock.fileno() != KEEPER_FD:
        os.dup2(sock.fileno(), KEEPER_FD)
    os.set_inheritable(KEEPER_FD, True)
    os.closerange(KEEPER_FD + 1, 65536)   # circusd's log, pidfile lock...: not ours to hold
    logging.disable(logging.CRITICAL)


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


# -- the next circusd's side --------------------------------------------------------------------

@record(frozen=False)
class Handover(Record):
    """What an earlier keeper handed over: pipes by pid, sockets by name."""

    lineage: str = ""
    pipes: dict[int, dict[str, int]] = Factory(dict)
    sockets: dict[str, socket.socket] = Factory(dict)

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


