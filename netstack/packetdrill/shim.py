"""A small BSD socket shim over the sans-IO core, for packetdrill scripts.

File descriptors from 3 up, Linux's blocking and non-blocking semantics and
errnos. A call either completes (`Done(value)` or `Err(errno name)`) or, on a
blocking descriptor, is `Pending`: the runner retries it as time passes and
the stack changes, as a thread blocked in the kernel would wake.
"""

from __future__ import annotations

import errno as E
from dataclasses import dataclass

from ..tcp.state import (CLOSE_WAIT, CLOSED, ESTABLISHED, FIN_WAIT_1, FIN_WAIT_2, LAST_ACK, CLOSING,
                         SYN_RECEIVED, SYN_SENT, TIME_WAIT)
from .parser import BinaryOr, Ellipsis_, Struct, Unsupported

__all__ = ["Shim", "Done", "Err", "Pending", "CONSTANTS"]

CONSTANTS = {
    "AF_INET": 2, "AF_INET6": 10, "PF_INET": 2, "SOCK_STREAM": 1, "SOCK_DGRAM": 2, "IPPROTO_TCP": 6,
    "IPPROTO_UDP": 17, "IPPROTO_IP": 0, "SOL_SOCKET": 1, "SOL_TCP": 6,
    "SO_REUSEADDR": 2, "SO_ERROR": 4, "SO_SNDBUF": 7, "SO_RCVBUF": 8, "SO_KEEPALIVE": 9, "SO_LINGER": 13,
    "SO_REUSEPORT": 15,
    "TCP_NODELAY": 1, "TCP_MAXSEG": 2, "TCP_KEEPIDLE": 4, "TCP_KEEPINTVL": 5, "TCP_KEEPCNT": 6,
    "TCP_USER_TIMEOUT": 18, "TCP_CORK": 3, "TCP_QUICKACK": 12, "TCP_CONGESTION": 13,
    "F_GETFL": 3, "F_SETFL": 4, "O_RDWR": 2, "O_NONBLOCK": 0x800, "O_RDONLY": 0, "O_WRONLY": 1,
    "SHUT_RD": 0, "SHUT_WR": 1, "SHUT_RDWR": 2,
    "POLLIN": 0x1, "POLLPRI": 0x2, "POLLOUT": 0x4, "POLLERR": 0x8, "POLLHUP": 0x10, "POLLRDHUP": 0x2000,
    "POLLRDNORM": 0x40, "POLLWRNORM": 0x100,
    "FIONREAD": 0x541B, "SIOCINQ": 0x541B, "MSG_PEEK": 2, "MSG_DONTWAIT": 0x40, "MSG_NOSIGNAL": 0x4000,
}


@dataclass
class Done:
    value: object
    out: dict | None = None      # values written through pointer arguments: {arg index: value}


@dataclass
class Err:
    errno: str


class _Pending:
    def __repr__(self) -> str:
        return "Pending"


Pending = _Pending()


def const(v):
    """A script argument as a number (names of constants resolved)."""
    if isinstance(v, bool):
        return int(v)
    if isinstance(v, int):
        return v
    if isinstance(v, str):
        if v in CONSTANTS:
            return CONSTANTS[v]
        if v.startswith("E") and isinstance(getattr(E, v, None), int):
            return getattr(E, v)          # an errno name (SO_ERROR values)
        raise Unsupported(f"constant {v}")
    if isinstance(v, BinaryOr):
        r = 0
        for p in v.parts:
            r |= const(p)
        return r
    if isinstance(v, list) and len(v) == 1:
        return const(v[0])
    if isinstance(v, tuple) and v[0] == "htons":
        return const(v[1])
    raise Unsupported(f"argument {v!r}")


class _Sock:
    def __init__(self, kind: int) -> None:
        self.kind = kind
        self.nonblock = False
        self.port = None         # bound port
        self.listener = None
        self.tcb = None
        self.reuse = False
        self.rcvbuf = None
        self.sndbuf = None
        self.nodelay = False
        self.maxseg = None
        self.user_timeout = 0
        self.keepalive = False
        self.keep = [None, None, None]    # idle, interval, count
        self.linger = None       # (onoff, seconds)
        self.error = None        # SO_ERROR pending
        self.shut_rd = False
        self.connecting = False
        self.error_reported = False
        self.write_left = None   # a blocking write's bytes still to queue


class Shim:
    """The socket calls. `iface` is the stack; `net` the runner (addresses, clock)."""

    def __init__(self, iface, net) -> None:
        self.iface = iface
        self.net = net
        self.fds: dict[int, _Sock] = {}

    def _new_fd(self, s: _Sock) -> int:
        fd = 3
        while fd in self.fds:
            fd += 1
        self.fds[fd] = s
        return fd

    def _sock(self, fd) -> _Sock:
        s = self.fds.get(const(fd))
        if s is None:
            raise _Errno("EBADF")
        return s

    def call(self, name: str, args: list):
        fn = getattr(self, "sys_" + name, None)
        if fn is None:
            raise Unsupported(f"system call {name}()")
        try:
            return fn(*args)
        except _Errno as e:
            return Err(e.name)
        except TypeError as e:
            raise Unsupported(f"{name}() with these arguments ({e})") from None

    # ---- sockets --------------------------------------------------------------------------------
    def sys_socket(self, domain, kind, proto):
        if domain is not Ellipsis_ and const(domain) != 2:
            raise Unsupported("sockets other than AF_INET (IPv6)")
        k = const(kind) & 0xF
        if k != 1:
            raise Unsupported("SOCK_DGRAM sockets")
        s = _Sock(k)
        if const(kind) & CONSTANTS["O_NONBLOCK"]:
            s.nonblock = True
        return Done(self._new_fd(s))

    def sys_bind(self, fd, addr, addrlen):
        s = self._sock(fd)
        port = self.net.bind_port
        if isinstance(addr, Struct) and "sin_port" in addr.fields:
            port = const(addr.fields["sin_port"])
        s.port = port
        return Done(0)

    def sys_listen(self, fd, backlog):
        s = self._sock(fd)
        if s.port is None:
            s.port = self.net.bind_port
        if s.listener is None:
            if s.rcvbuf is not None:
                self.iface.cfg.tcp.recv_buffer = s.rcvbuf
            try:
                s.listener = self.iface.tcp_listen(s.port, max(1, const(backlog)))
            except OSError:
                raise _Errno("EADDRINUSE") from None
            self.net.listening(s)
        return Done(0)

    def sys_accept(self, fd, addr=None, addrlen=None):
        s = self._sock(fd)
        if s.listener is None:
            raise _Errno("EINVAL")
        if not s.listener.accept_queue:
            if s.nonblock:
                raise _Errno("EAGAIN")
            return Pending
        tcb = s.listener.accept()
        c = _Sock(1)
        c.tcb = tcb
        c.nodelay = s.nodelay
        if s.nodelay:
            tcb.set_nodelay(True)
        self._apply_options(c)
        return Done(self._new_fd(c))

    sys_accept4 = sys_accept

    def sys_connect(self, fd, addr, addrlen):
        s = self._sock(fd)
        if s.tcb is not None:
            if s.connecting:
                if s.tcb.state is ESTABLISHED or s.tcb.state in (CLOSE_WAIT,):
                    s.connecting = False
                    return Done(0)
                if s.tcb.state is CLOSED:
                    s.connecting = False
                    s.error_reported = True
                    return Err(self._errno_of(s.tcb.error))
                if s.nonblock:
                    raise _Errno("EALREADY")
                return Pending
            raise _Errno("EISCONN")
        port = self.net.connect_port
        if isinstance(addr, Struct) and "sin_port" in addr.fields:
            port = const(addr.fields["sin_port"])
        if s.rcvbuf is not None:
            self.iface.cfg.tcp.recv_buffer = s.rcvbuf
        s.tcb = self.iface.tcp_connect(self.net.remote_ip, port, self.net.now, local_port=s.port)
        self._apply_options(s)
        s.connecting = True
        self.net.flush()
        if s.nonblock:
            raise _Errno("EINPROGRESS")
        return self.sys_connect(fd, addr, addrlen)

    def _apply_options(self, s: _Sock) -> None:
        t = s.tcb
        if s.nodelay:
            t.set_nodelay(True)
        if s.sndbuf is not None:
            t.send_limit = s.sndbuf
        if s.user_timeout:
            t.set_user_timeout(s.user_timeout / 1000.0)
        if s.keepalive or any(x is not None for x in s.keep):
            t.set_keepalive(s.keepalive, *s.keep)

    @staticmethod
    def _errno_of(error) -> str:
        if error is None:
            return "ECONNRESET"
        code = getattr(error, "errno", None)
        return E.errorcode.get(code, "EIO") if code is not None else "EIO"

    def _conn(self, fd) -> _Sock:
        s = self._sock(fd)
        if s.tcb is None:
            raise _Errno("ENOTCONN")
        return s

    # ---- data -----------------------------------------------------------------------------------------
    def sys_write(self, fd, buf, n):
        s = self._conn(fd)
        t = s.tcb
        n = const(n)
        if t.state is CLOSED:
            if t.error is not None and not s.error_reported:
                s.error_reported = True
                raise _Errno(self._errno_of(t.error))
            raise _Errno("EPIPE")
        if t.fin_queued or t.state not in (ESTABLISHED, CLOSE_WAIT, SYN_SENT, SYN_RECEIVED):
            raise _Errno("EPIPE")
        if t.state is SYN_SENT or t.state is SYN_RECEIVED:
            if s.nonblock:
                raise _Errno("EAGAIN")
            return Pending
        room = t.send_space()
        if s.nonblock:
            if room <= 0:
                raise _Errno("EAGAIN")
            take = min(n, room)
            t.send(bytes(take))
            self.net.flush()
            return Done(take)
        # blocking: returns once all n bytes are queued, queueing what fits meanwhile
        if s.write_left is None:
            s.write_left = n
        take = min(s.write_left, room)
        if take > 0:
            t.send(bytes(take))
            s.write_left -= take
            self.net.flush()
        if s.write_left:
            return Pending
        s.write_left = None
        return Done(n)

    sys_send = lambda self, fd, buf, n, flags=0: self.sys_write(fd, buf, n)  # noqa: E731

    def sys_read(self, fd, buf, n):
        s = self._conn(fd)
        t = s.tcb
        n = const(n)
        if t.recv_available():
            got = 0
            while got < n and t.recv_available():     # all that is there, up to n (as read(2))
                got += len(t.recv(n - got))
            self.net.flush()
            return Done(got)
        if t.state is CLOSED and t.error is not None and not s.error_reported:
            s.error_reported = True
            raise _Errno(self._errno_of(t.error))
        if t.fin_received or s.shut_rd or t.state is CLOSED:
            return Done(0)
        if s.nonblock:
            raise _Errno("EAGAIN")
        return Pending

    sys_recv = lambda self, fd, buf, n, flags=0: self.sys_read(fd, buf, n)  # noqa: E731

    def sys_shutdown(self, fd, how):
        s = self._conn(fd)
        how = const(how)
        if how in (0, 2):
            s.shut_rd = True
        if how in (1, 2):
            s.tcb.close()
        self.net.flush()
        return Done(0)

    def sys_close(self, fd):
        fdn = const(fd)
        s = self._sock(fdn)
        del self.fds[fdn]
        if s.listener is not None:
            self.iface.tcp_unlisten(s.listener)
        t = s.tcb
        if t is not None and t.state is not CLOSED:
            if t.recv_available() or (s.linger is not None and s.linger[0] and s.linger[1] == 0):
                t.abort()            # unread data, or SO_LINGER 0: RST (RFC 9293 3.6 note, Linux)
            else:
                t.close()
                t.orphan(self.net.now)     # the descriptor is gone: an orphan (Linux's tcp_fin_timeout)
        self.net.flush()
        return Done(0)

    # ---- options -----------------------------------------------------------------------------------------
    def sys_setsockopt(self, fd, level, name, value, length):
        s = self._sock(fd)
        name = const(name)
        v = value
        if isinstance(v, Struct):               # linger
            s.linger = (const(v.fields.get("onoff", 0)), const(v.fields.get("linger", 0)))
            return Done(0)
        v = const(v)
        t = s.tcb
        level = const(level)
        if level == 6:
            name += 1000         # TCP options live beside the socket ones: keep them apart
        if name == CONSTANTS["SO_REUSEADDR"] or name == CONSTANTS["SO_REUSEPORT"]:
            s.reuse = bool(v)
        elif name == CONSTANTS["SO_RCVBUF"]:
            s.rcvbuf = max(256, v)
        elif name == CONSTANTS["SO_SNDBUF"]:
            s.sndbuf = max(256, v)
            if t is not None:
                t.send_limit = s.sndbuf
        elif name == 1000 + CONSTANTS["TCP_NODELAY"]:
            s.nodelay = bool(v)
            if t is not None:
                t.set_nodelay(bool(v))
        elif name == 1000 + CONSTANTS["TCP_MAXSEG"]:
            s.maxseg = v
            self.iface.cfg.tcp.mss = v
        elif name == 1000 + CONSTANTS["TCP_USER_TIMEOUT"]:
            s.user_timeout = v
            if t is not None:
                t.set_user_timeout(v / 1000.0)
        elif name == CONSTANTS["SO_KEEPALIVE"]:
            s.keepalive = bool(v)
            if t is not None:
                t.set_keepalive(bool(v), *s.keep)
        elif name in (1004, 1005, 1006):         # TCP_KEEPIDLE, TCP_KEEPINTVL, TCP_KEEPCNT
            s.keep[name - 1004] = v
            if t is not None:
                t.set_keepalive(t.keepalive or s.keepalive, *s.keep)
        else:
            raise Unsupported(f"setsockopt option {name % 1000} at level {level}")
        self.net.flush()
        return Done(0)

    def sys_getsockopt(self, fd, level, name, value, length):
        s = self._sock(fd)
        name = const(name)
        if const(level) == 6:
            return self._get_tcp_option(s, name)
        t = s.tcb
        if name == CONSTANTS["SO_ERROR"]:
            err = 0
            if t is not None and t.error is not None and t.state is CLOSED and not s.error_reported:
                err = getattr(E, self._errno_of(t.error))
                s.error_reported = True
            return Done(0, {3: [err]})
        if name == CONSTANTS["SO_RCVBUF"]:
            return Done(0, {3: [s.rcvbuf or self.iface.cfg.tcp.recv_buffer], "relaxed": True})
        if name == CONSTANTS["SO_SNDBUF"]:
            return Done(0, {3: [s.sndbuf or self.iface.cfg.tcp.send_buffer], "relaxed": True})
        if name == CONSTANTS["SO_KEEPALIVE"]:
            return Done(0, {3: [int(s.keepalive)]})
        raise Unsupported(f"getsockopt option {name}")

    def _get_tcp_option(self, s: _Sock, name: int):
        t = s.tcb
        if name == CONSTANTS["TCP_NODELAY"]:
            return Done(0, {3: [int(s.nodelay)]})
        if name == CONSTANTS["TCP_USER_TIMEOUT"]:
            return Done(0, {3: [s.user_timeout]})
        if name == CONSTANTS["TCP_MAXSEG"]:
            return Done(0, {3: [t.mss if t is not None else (s.maxseg or self.iface.cfg.tcp.mss)]})
        raise Unsupported(f"getsockopt TCP option {name}")

    def sys_fcntl(self, fd, cmd, arg=None):
        s = self._sock(fd)
        cmd = const(cmd)
        if cmd == CONSTANTS["F_GETFL"]:
            return Done(CONSTANTS["O_RDWR"] | (CONSTANTS["O_NONBLOCK"] if s.nonblock else 0))
        if cmd == CONSTANTS["F_SETFL"]:
            s.nonblock = bool(const(arg) & CONSTANTS["O_NONBLOCK"])
            return Done(0)
        raise Unsupported(f"fcntl command {cmd}")

    def sys_ioctl(self, fd, req, arg):
        s = self._conn(fd)
        if const(req) == CONSTANTS["FIONREAD"]:
            return Done(0, {2: [s.tcb.recv_available()]})
        raise Unsupported(f"ioctl request {req}")

    def sys_poll(self, fds, nfds, timeout):
        if not isinstance(fds, list):
            raise Unsupported("poll() without a pollfd array")
        ready = 0
        revents = []
        for p in fds:
            if not isinstance(p, Struct):
                raise Unsupported("poll() entries that are not {fd=..., events=...}")
            ev = self._revents(p)
            want = const(p.fields.get("events", 0)) | 0x18
            got = ev & want
            revents.append(got)
            if got:
                ready += 1
        if ready or const(timeout) == 0:
            return Done(ready, {"revents": revents})
        return Pending

    def _revents(self, p: Struct) -> int:
        fd = const(p.fields["fd"])
        s = self.fds.get(fd)
        if s is None:
            return 0x20            # POLLNVAL
        if s.listener is not None:
            return 0x1 if s.listener.accept_queue else 0
        t = s.tcb
        if t is None:
            return 0x4 | 0x10      # an unconnected socket: POLLOUT | POLLHUP (Linux)
        ev = 0
        if t.recv_available() or t.fin_received:
            ev |= 0x1 | 0x40
        if t.fin_received:
            ev |= 0x2000
        if t.state is CLOSED:
            ev |= 0x10 | (0x8 if t.error is not None else 0) | 0x1
        elif t.state in (ESTABLISHED, CLOSE_WAIT) and t.send_space() > 0 and not t.fin_queued:
            ev |= 0x4 | 0x100
        if t.state in (FIN_WAIT_1, FIN_WAIT_2, CLOSING, LAST_ACK, TIME_WAIT) and t.fin_received:
            ev |= 0x10
        return ev


class _Errno(Exception):
    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.name = name
