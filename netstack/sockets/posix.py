"""The posix stack: the kernel's sockets, non-blocking, on the reactor's epoll.

Every operation is tried first and waits for readiness only after EAGAIN
(edge-triggered `PollableFd`). Output goes through a queue drained with
`sendmsg` at the end of the round of tasks that wrote it (one system call
for every buffer written in that round); `put()` resolves once the queue is
below its high-water mark, which is the stream's backpressure.
With more than one shard every listening socket sets SO_REUSEPORT so that
each shard can listen on the same port and the kernel spreads connections.
"""

from __future__ import annotations

import errno
import itertools
import os
import socket
import sys
import weakref
from collections import deque

from reactor import future as _fut
from reactor import shards
from reactor.future import Future, _failed, make_ready_future

from .api import accept_result, connected_socket, datagram, socket_address, temporary_buffer

__all__ = ["PosixStack"]

HIGH_WATER = 256 * 1024
_IOV_MAX = min(1024, os.sysconf("SC_IOV_MAX") if hasattr(os, "sysconf") else 1024)
RECV_SIZE = 128 * 1024
_TCP_KEEPIDLE = getattr(socket, "TCP_KEEPIDLE", 4)
_TCP_USER_TIMEOUT = getattr(socket, "TCP_USER_TIMEOUT", 18)
_TCP_KEEPINTVL = getattr(socket, "TCP_KEEPINTVL", 5)
_TCP_KEEPCNT = getattr(socket, "TCP_KEEPCNT", 6)


def _addr(t) -> socket_address:
    return socket_address(t[0], t[1])


def _bind_error(e: OSError) -> OSError:
    if e.errno == errno.EADDRINUSE:
        return OSError(errno.EADDRINUSE, "bind: Address already in use")
    return OSError(e.errno, f"bind: {e.strerror}")


TCP_LINGER2 = getattr(socket, "TCP_LINGER2", 8)


def _set_congestion(s: socket.socket, name: str) -> None:
    """TCP_CONGESTION by our names (Linux calls NewReno "reno")."""
    kernel = "reno" if name == "newreno" else name
    try:
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_CONGESTION, kernel.encode())
    except OSError as e:
        raise OSError(e.errno, f"congestion control {name!r}: {e.strerror} (is tcp_{kernel} loaded?)") from None


class PosixStack:
    def __init__(self, reactor) -> None:
        self.reactor = reactor
        cfg = reactor.config or {}
        # --tcp-congestion, when given: every socket of this stack (the kernel's default otherwise)
        self.congestion = cfg.get("tcp_congestion")
        # --tcp-fin-timeout, when given: TCP_LINGER2 (an orphaned FIN-WAIT-2's lifetime) on every socket
        self.fin_timeout = cfg.get("tcp_fin_timeout")

    def _options(self, s: socket.socket) -> None:
        if self.congestion:
            _set_congestion(s, self.congestion)
        if self.fin_timeout is not None:
            s.setsockopt(socket.IPPROTO_TCP, TCP_LINGER2, int(self.fin_timeout))

    def ready(self) -> Future:
        return make_ready_future()

    def stats(self) -> dict:
        return {"fds": len(self.reactor._fds)}

    def listen(self, addr: socket_address, opts):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            if opts.reuse_address:
                s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if shards.smp.count > 1:
                s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            try:
                s.bind(addr.as_tuple())
            except OSError as e:
                raise _bind_error(e) from None
            self._options(s)     # accepted sockets inherit them
            s.listen(opts.backlog)
            s.setblocking(False)
        except BaseException:
            s.close()
            raise
        return _PosixServer(self.reactor, s)

    def connect(self, addr: socket_address, local) -> Future:
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setblocking(False)
        try:
            self._options(s)
            if local is not None:
                try:
                    s.bind(local.as_tuple())
                except OSError as e:
                    raise _bind_error(e) from None
            rc = s.connect_ex(addr.as_tuple())
        except BaseException as e:  # noqa: BLE001
            s.close()
            return _failed(e)
        if rc not in (0, errno.EINPROGRESS):
            s.close()
            return _failed(OSError(rc, os.strerror(rc)))
        conn = _PosixConn(self.reactor, s)

        def check():
            err = s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            if err:
                conn.close()
                raise OSError(err, os.strerror(err))
            return connected_socket(conn)
        if rc == 0:
            return make_ready_future(connected_socket(conn))
        conn.pfd.clear_writable()
        return conn.pfd.writable().then(check)

    def make_udp_channel(self, addr: socket_address):
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            s.bind(addr.as_tuple())
        except OSError as e:
            s.close()
            raise _bind_error(e) from None
        s.setblocking(False)
        return _PosixUdp(self.reactor, s)


class _PosixServer:
    def __init__(self, reactor, s: socket.socket) -> None:
        self.sock = s
        self.pfd = reactor.register_fd(s.fileno())
        self.reactor = reactor
        self.aborted = False

    def accept(self) -> Future:
        if self.aborted:
            return _failed(ConnectionAbortedError(errno.ECONNABORTED, "accept aborted"))
        try:
            c, a = self.sock.accept()
        except BlockingIOError:
            self.pfd.clear_readable()
            return self.pfd.readable().then(self.accept)
        except OSError as e:
            return _failed(e)
        c.setblocking(False)
        return make_ready_future(accept_result(connected_socket(_PosixConn(self.reactor, c)), _addr(a)))

    def abort_accept(self) -> None:
        if not self.aborted:
            self.aborted = True
            self.pfd.close()
            self.sock.close()

    def local_address(self) -> socket_address:
        return _addr(self.sock.getsockname())

    def __del__(self) -> None:
        try:
            self.abort_accept()
        except Exception:  # noqa: BLE001
            pass


class _PosixConn:
    """One kernel TCP socket shared by its source and sink."""

    def __init__(self, reactor, s: socket.socket) -> None:
        self.sock = s
        self.pfd = reactor.register_fd(s.fileno())
        self.closed = False
        self.nodelay = False
        self.keepalive = False
        self._sink = None       # weakref to the one sink (a strong one would be a cycle:
                                # the socket would close only when the cyclic GC ran)

    def source(self):
        return _PosixSource(self)

    def sink(self):
        sink = self._sink() if self._sink is not None else None
        if sink is None:
            sink = _PosixSink(self)
            self._sink = weakref.ref(sink)
        return sink

    def shutdown_input(self) -> None:
        try:
            self.sock.shutdown(socket.SHUT_RD)
        except OSError:
            pass

    def shutdown_output(self) -> None:
        try:
            self.sock.shutdown(socket.SHUT_WR)
        except OSError:
            pass

    def set_nodelay(self, v: bool) -> None:
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, int(v))
        self.nodelay = v

    def get_nodelay(self) -> bool:
        return bool(self.sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))

    def set_keepalive(self, v: bool) -> None:
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, int(v))

    def get_keepalive(self) -> bool:
        return bool(self.sock.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE))

    def set_user_timeout(self, seconds: float) -> None:
        self.sock.setsockopt(socket.IPPROTO_TCP, _TCP_USER_TIMEOUT, int(round(seconds * 1000)))

    def get_user_timeout(self) -> float:
        return self.sock.getsockopt(socket.IPPROTO_TCP, _TCP_USER_TIMEOUT) / 1000.0

    def set_congestion(self, name: str) -> None:
        _set_congestion(self.sock, name)

    def get_congestion(self) -> str:
        raw = self.sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_CONGESTION, 16).rstrip(b"\0").decode()
        return "newreno" if raw == "reno" else raw

    def set_keepalive_parameters(self, p) -> None:
        self.sock.setsockopt(socket.IPPROTO_TCP, _TCP_KEEPIDLE, max(1, int(p.idle)))
        self.sock.setsockopt(socket.IPPROTO_TCP, _TCP_KEEPINTVL, max(1, int(p.interval)))
        self.sock.setsockopt(socket.IPPROTO_TCP, _TCP_KEEPCNT, int(p.count))

    def local_address(self) -> socket_address:
        return _addr(self.sock.getsockname())

    def remote_address(self) -> socket_address:
        return _addr(self.sock.getpeername())

    def wait_input_shutdown(self) -> Future:
        raise NotImplementedError("wait_input_shutdown on the posix stack")

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.pfd.close()
            self.sock.close()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:  # noqa: BLE001
            pass


class _PosixSource:
    __slots__ = ("conn", "_reader", "eof_delivered")

    def __init__(self, conn: _PosixConn) -> None:
        self.conn = conn
        self._reader: Future | None = None
        self.eof_delivered = False      # see input_stream

    def get(self) -> Future:
        c = self.conn
        if c.closed:
            self.eof_delivered = True
            return make_ready_future(temporary_buffer())
        pfd = c.pfd
        if pfd._rready:
            try:
                data = c.sock.recv(RECV_SIZE)
            except BlockingIOError:
                pfd.clear_readable()
            except OSError as e:
                return _failed(OSError(e.errno, e.strerror))
            else:
                if 0 < len(data) < RECV_SIZE:
                    # A short read drained the socket: wait for the next epoll edge
                    # instead of paying for a recv that would fail with EAGAIN (edges
                    # that come after this read are still delivered by the next
                    # epoll_wait). (PollableFd.clear_readable, written out.)
                    if not pfd._hup:
                        pfd._rready = False
                elif not data:
                    self.eof_delivered = True
                return make_ready_future(temporary_buffer(data))
        # Wait: the reactor calls _readable when the edge comes, which reads and
        # resolves this future with the data (no second trip through get()).
        f = self._reader = Future()
        if pfd._rwait is not None:      # PollableFd.on_readable, written out
            raise RuntimeError("already waiting for readability on this fd")
        pfd._rwait = self._readable
        return f

    def _readable(self, exc) -> None:
        f = self._reader
        self._reader = None
        c = self.conn
        if exc is not None:
            f._set_exception(exc)
            return
        if c.closed:
            self.eof_delivered = True
            f._set_value(temporary_buffer())
            return
        try:
            data = c.sock.recv(RECV_SIZE)
        except BlockingIOError:
            c.pfd.clear_readable()
            self._reader = f
            c.pfd.on_readable(self._readable)
            return
        except OSError as e:
            f._set_exception(OSError(e.errno, e.strerror))
            return
        if 0 < len(data) < RECV_SIZE:
            pfd = c.pfd
            if not pfd._hup:            # PollableFd.clear_readable, written out
                pfd._rready = False
        elif not data:
            self.eof_delivered = True
        f._set_value(temporary_buffer(data))

    def close(self) -> None:
        self.conn.shutdown_input()


class _PosixSink:
    # puts collect until the end of the round of tasks (see put): output_stream
    # hands writes straight over instead of batching them itself
    coalescing = True

    def __init__(self, conn: _PosixConn) -> None:
        self.conn = conn
        self.queue: deque = deque()
        self.queued = 0
        self.writing = False
        self.error: BaseException | None = None
        self.space_waiters: list = []
        self.flush_waiters: list = []
        self.sends = 0              # system calls made

    def put(self, data) -> Future:
        if self.error is not None:
            return _failed(self.error)
        if self.conn.closed:
            return _failed(OSError(errno.EPIPE, "connection closed"))
        self.queue.append(data)
        self.queued += len(data)
        if not self.writing:
            if self.queued >= HIGH_WATER:
                self._drain()
            else:
                # Send at the end of this round of tasks, with whatever else is
                # written meanwhile: one system call for all of it (a bulk sender's
                # chunks, a response written in pieces).
                self.writing = True
                _fut._schedule((self._drain, None))
        if self.error is not None:
            return _failed(self.error)
        if self.queued <= HIGH_WATER:
            return make_ready_future()
        f = Future()
        self.space_waiters.append(f)
        return f

    def _drain(self, _=None) -> None:
        q = self.queue
        sock = self.conn.sock
        self.writing = True
        pfd = self.conn.pfd
        while q:
            if not pfd._wready:
                pfd.writable().then_wrapped(self._drain)
                return
            self.sends += 1
            try:
                if len(q) > 1:
                    bufs = list(itertools.islice(q, _IOV_MAX))     # every piece written this round
                    want = sum(map(len, bufs))
                    n = sock.sendmsg(bufs)
                else:
                    want = len(q[0])
                    n = sock.send(q[0])
            except BlockingIOError:
                pfd.clear_writable()
                continue
            except OSError as e:
                self._fail(OSError(e.errno, e.strerror))
                return
            if n < want:
                # A short write filled the socket buffer: wait for the epoll edge
                # that says there is room again instead of paying for a send that
                # would fail with EAGAIN.
                pfd.clear_writable()
            self.queued -= n
            while n:
                first = q[0]
                if n >= len(first):
                    n -= len(first)
                    q.popleft()
                else:
                    q[0] = memoryview(first)[n:]
                    n = 0
        self.writing = False
        if self.queued <= HIGH_WATER and self.space_waiters:
            w, self.space_waiters = self.space_waiters, []
            for f in w:
                f._set_value(None)
        if not q and self.flush_waiters:
            w, self.flush_waiters = self.flush_waiters, []
            for f in w:
                f._set_value(None)

    def _fail(self, e: BaseException) -> None:
        self.error = e
        self.writing = False
        self.queue.clear()
        self.queued = 0
        for lst in (self.space_waiters, self.flush_waiters):
            w = lst[:]
            lst.clear()
            for f in w:
                f._set_exception(e)

    def flush(self) -> Future:
        if self.error is not None:
            return _failed(self.error)
        if not self.queue:
            return make_ready_future()
        f = Future()
        self.flush_waiters.append(f)
        return f

    def close(self) -> Future:
        return self.flush().then(self.conn.shutdown_output)


_IP_RECVERR = getattr(socket, "IP_RECVERR", 11)
_ICMP_ERRNOS = (errno.ECONNREFUSED, errno.EHOSTUNREACH, errno.ENETUNREACH, errno.EMSGSIZE, errno.ENOPROTOOPT)


class _PosixUdp:
    def __init__(self, reactor, s: socket.socket) -> None:
        self.sock = s
        self.pfd = reactor.register_fd(s.fileno())
        self.closed = False
        self._errors: deque = deque(maxlen=64)
        try:
            s.setsockopt(socket.IPPROTO_IP, _IP_RECVERR, 1)   # ICMP errors for errors()
        except OSError:
            pass

    def local_address(self) -> socket_address:
        return _addr(self.sock.getsockname())

    def send(self, dst: socket_address, data) -> Future:
        try:
            self.sock.sendto(data, dst.as_tuple())
        except BlockingIOError:
            self.pfd.clear_writable()
            return self.pfd.writable().then(lambda: self.send(dst, data))
        except OSError as e:
            return _failed(OSError(e.errno, e.strerror))
        return make_ready_future()

    def receive(self) -> Future:
        if self.closed:
            return _failed(OSError(errno.EBADF, "udp channel closed"))
        while True:
            try:
                data, src = self.sock.recvfrom(65536)
                break
            except BlockingIOError:
                self.pfd.clear_readable()
                return self.pfd.readable().then(self.receive)
            except OSError as e:
                if e.errno not in _ICMP_ERRNOS:
                    return _failed(OSError(e.errno, e.strerror))
                self._drain_errors()      # an ICMP error: recorded for errors(), keep receiving
        return make_ready_future(datagram(_addr(src), self.local_address(), temporary_buffer(data)))

    def _drain_errors(self) -> None:
        """Move the socket's error queue (IP_RECVERR) into self._errors."""
        while True:
            try:
                _data, anc, _flags, addr = self.sock.recvmsg(1, 512, socket.MSG_ERRQUEUE)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                return
            for level, kind, blob in anc:
                if level == socket.IPPROTO_IP and kind == _IP_RECVERR and len(blob) >= 4:
                    no = int.from_bytes(blob[:4], sys.byteorder)
                    exc = ConnectionRefusedError(no, os.strerror(no)) if no == errno.ECONNREFUSED \
                        else OSError(no, os.strerror(no))
                    self._errors.append((_addr(addr), exc))

    def errors(self) -> list:
        self._drain_errors()
        out = list(self._errors)
        self._errors.clear()
        return out

    def shutdown_input(self) -> None:
        self.close()

    def shutdown_output(self) -> None:
        pass

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.pfd.close()
            self.sock.close()

    def is_closed(self) -> bool:
        return self.closed

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:  # noqa: BLE001
            pass
