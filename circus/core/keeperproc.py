"""The keeper process itself (what it does is in :mod:`circus.core.keeper`).

circusd starts it as a fresh interpreter, ``python -I -S``, so that it holds none of circusd's
memory (a forked copy of circusd would keep circusd's whole Python heap, ~20 MB, for a loop that
reads a socket). It imports only what it uses: modules the interpreter has loaded anyway (``os``,
``time``), the C modules ``_socket`` and ``_signal`` rather than their Python wrappers (which
pull in ``enum`` and more), and :mod:`circus.core.procfs`, found as ``procfs`` on ``sys.path``
(the ``circus`` package, whose ``__init__`` loads ``logging``, is not imported).

From circusd it receives one ``SOCK_SEQPACKET`` datagram per message, fields separated by NUL
bytes, the fds as ``SCM_RIGHTS``: ``hold PID NAME...`` (a new process, with the read ends of its
pipes in keeper mode), ``drop PID``, ``socket NAME`` (a bound socket's fd, or none: closed) and
``bye``. What it hands to the next circusd is JSON (that circusd may be a newer version), written
here by :func:`_json`: only strings, integers, ``true``, lists and objects occur.
"""
import os
import sys
import time

import _signal
import _socket

if __package__:                 # imported as circus.core.keeperproc (fork without exec)
    from .procfs import read_marker, running, same_pid_namespace, start_ticks
else:                           # the keeper process: this directory is on sys.path
    from procfs import read_marker, running, same_pid_namespace, start_ticks

__all__ = ["main", "Keeper"]

MAX_MESSAGE = 65536
#: seconds the warden gives the processes between SIGTERM and SIGKILL
WARDEN_GRACE = 2.0
#: while waiting for the next circusd, how often the keeper checks that something still runs
HANDOVER_CHECK = 2.0
#: bytes of a C int (an fd in SCM_RIGHTS, a field of SO_PEERCRED's struct ucred)
_INT = 4
_IGNORED = (_signal.SIGINT, _signal.SIGHUP, _signal.SIGQUIT, _signal.SIGUSR1, _signal.SIGUSR2)


def main(argv):
    """``FD MODE LINEAGE PATH``: the socket pair's fd, ``warden`` or ``keeper``, circusd's
    lineage marker, the handover socket's path (empty: none). Returns the exit code."""
    fd, mode, lineage, path = int(argv[0]), argv[1], argv[2], argv[3] or None
    for signum in _IGNORED:          # circusd's session may get these: not meant for us
        _signal.signal(signum, _signal.SIG_IGN)
    _signal.signal(_signal.SIGCHLD, _signal.SIG_DFL)
    return Keeper(_socket.socket(fileno=fd), mode, lineage, path).run()


class Keeper:
    def __init__(self, sock, mode, lineage, path):
        self.sock, self.mode, self.lineage, self.path = sock, mode, lineage, path
        self.pipes = {}         # pid -> {name: fd}
        self.ticks = {}         # pid -> start ticks (its identity)
        self.sockets = {}       # name -> fd

    def ours(self, pid):
        """Is ``pid`` still the process circusd told us about (not a reused pid)?"""
        return running(pid) and start_ticks(pid) == self.ticks.get(pid)

    def run(self):
        while True:
            try:
                data, fds = _receive(self.sock)
            except OSError:
                data, fds = b"", []
            if not data:
                break
            if data == b"bye":
                return 0
            if not self._take(data.split(b"\0"), fds):
                _close(fds)
        self.sock.close()
        if self.mode == "keeper" and self.path:
            return self.hand_over()
        self.end_everything()
        return 0

    def _take(self, fields, fds):
        """Apply one message; False when its fds are not ours to keep (unknown or malformed)."""
        op, args = fields[0], [f.decode("utf-8", "surrogatepass") for f in fields[1:]]
        try:
            if op == b"hold":
                pid, names = int(args[0]), args[1:]
                _close(self.pipes.pop(pid, {}).values())
                self.pipes[pid] = dict(zip(names, fds))
                self.ticks[pid] = start_ticks(pid)
                _close(fds[len(names):])
            elif op == b"drop":
                pid = int(args[0])
                self.ticks.pop(pid, None)
                _close(self.pipes.pop(pid, {}).values())
                _close(fds)
            elif op == b"socket":
                old = self.sockets.pop(args[0], None)
                if old is not None:
                    os.close(old)
                if fds:
                    self.sockets[args[0]] = fds[0]
                _close(fds[1:])
            else:
                return False
        except (IndexError, ValueError):
            return False
        return True

    def end_everything(self):
        """circusd died without a state file: stop what it supervised, by group and by lineage."""
        def victims():
            found = [pid for pid in self.pipes if self.ours(pid)]
            for entry in os.listdir("/proc"):
                if entry.isdigit() and read_marker(int(entry)) == self.lineage \
                        and same_pid_namespace(int(entry)):
                    found.append(int(entry))
            return found

        for sig in (_signal.SIGTERM, _signal.SIGKILL):
            for pid in self.pipes:
                if self.ours(pid):             # its group leader is still the one: the group too
                    _signal_group(pid, sig)
            for pid in victims():
                _signal_pid(pid, sig)
            deadline = time.monotonic() + (WARDEN_GRACE if sig == _signal.SIGTERM else 1.0)
            while victims() and time.monotonic() < deadline:
                time.sleep(0.02)

    def hand_over(self):
        """Wait for the next circusd and give it everything we hold."""
        try:
            os.unlink(self.path)
        except OSError:
            pass
        server = _socket.socket(_socket.AF_UNIX, _socket.SOCK_SEQPACKET)
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
                fd, _ = server._accept()
            except TimeoutError:
                if any(self.ours(pid) for pid in self.pipes):
                    continue
                break                    # everything it kept for has ended: nothing to hand over
            except OSError:              # out of fds, an aborted connection...: try again
                time.sleep(0.1)
                continue
            conn = _socket.socket(fileno=fd)
            conn.setblocking(True)
            if not _trusted_peer(conn):
                conn.close()
                continue
            try:
                conn.settimeout(10.0)
                inventory = {"lineage": self.lineage,
                             "processes": {str(pid): list(p) for pid, p in self.pipes.items()},
                             "sockets": list(self.sockets)}
                conn.sendmsg([_json(inventory).encode()])
                for pid, pipes in self.pipes.items():
                    _send_fds(conn, {"pid": pid, "names": list(pipes)}, list(pipes.values()))
                for name, sock_fd in self.sockets.items():
                    _send_fds(conn, {"socket": name}, [sock_fd])
                conn.sendmsg([b'{"end":true}'])
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


def _receive(sock):
    data, ancdata, _flags, _addr = sock.recvmsg(MAX_MESSAGE, _socket.CMSG_LEN(64 * _INT))
    fds = []
    for level, kind, payload in ancdata:
        if level == _socket.SOL_SOCKET and kind == _socket.SCM_RIGHTS:
            fds += [int.from_bytes(payload[i:i + _INT], sys.byteorder, signed=True)
                    for i in range(0, len(payload) - _INT + 1, _INT)]
    return data, fds


def _send_fds(conn, message, fds):
    data = _json(message).encode()
    if fds:
        payload = b"".join(fd.to_bytes(_INT, sys.byteorder, signed=True) for fd in fds)
        conn.sendmsg([data], [(_socket.SOL_SOCKET, _socket.SCM_RIGHTS, payload)])
    else:
        conn.sendmsg([data])


def _trusted_peer(conn):
    """Only root or our own user may take (or give) the pipes and sockets."""
    try:
        creds = conn.getsockopt(_socket.SOL_SOCKET, _socket.SO_PEERCRED, 3 * _INT)
    except OSError:
        return False
    uid = int.from_bytes(creds[_INT:2 * _INT], sys.byteorder)      # struct ucred: pid, uid, gid
    return uid in (0, os.geteuid())


def _json(value):
    """JSON of the handover's values: str, int, True, lists and dicts of them."""
    if value is True:
        return "true"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        return _json_str(value)
    if isinstance(value, dict):
        return "{" + ",".join(f"{_json_str(str(k))}:{_json(v)}" for k, v in value.items()) + "}"
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(_json(v) for v in value) + "]"
    raise TypeError(f"not in a handover: {type(value).__name__}")


def _json_str(text):
    """A JSON string, ASCII only (every other character as ``\\uXXXX``, as json.dumps does)."""
    out = ['"']
    for ch in text:
        code = ord(ch)
        if 0x20 <= code < 0x7F and ch != '"' and ch != "\\":
            out.append(ch)
        elif code > 0xFFFF:
            code -= 0x10000
            out.append("\\u%04x\\u%04x" % (0xD800 + (code >> 10), 0xDC00 + (code & 0x3FF)))
        else:
            out.append("\\u%04x" % code)
    out.append('"')
    return "".join(out)


def _close(fds):
    for fd in list(fds):
        try:
            os.close(fd)
        except OSError:
            pass


def _signal_pid(pid, sig):
    try:
        os.kill(pid, sig)
    except OSError:
        pass


def _signal_group(pgid, sig):
    try:
        os.killpg(pgid, sig)
    except OSError:
        pass
