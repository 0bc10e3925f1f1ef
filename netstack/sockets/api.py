"""The socket API shared by both stacks (posix and native).

An application calls `listen`, `connect` and `make_udp_channel`; which stack
serves them is chosen once per shard by ``--network-stack posix|native``
(`engine().config["network_stack"]`). Streams are Seastar's: an
`input_stream` over a *data source* (`get()` -> future of a
`temporary_buffer`, empty at end of stream) and an `output_stream` over a
*data sink* (`put(buf)` -> future resolved when the sink has room again,
`flush()`, `close()`).

The output stream batches small writes: they collect in the stream's buffer
and go to the sink when the buffer reaches its size (8 KiB by default), on
`flush()`/`close()`, or at the latest when the reactor next drains its run
queue (an automatic flush, Seastar's "batch flushes"), so an echo loop that
never calls flush() still answers promptly. A sink that batches by itself
until the reactor's next poll (the native stack's: a TCP send buffer that
becomes segments only when the stack next runs) says so with
`coalescing = True`; the stream then hands every write straight over, since
the sink does that batching anyway.
"""

from __future__ import annotations

import errno
import ipaddress
from typing import Any, NamedTuple

from reactor import engine
from reactor import future as _fut
from reactor.future import Future, _failed, make_ready_future

__all__ = [
    "temporary_buffer", "socket_address", "make_ipv4_address", "ipv4_addr", "listen_options",
    "accept_result", "connected_socket", "server_socket", "input_stream", "output_stream",
    "listen", "connect", "make_udp_channel", "udp_channel", "datagram", "network_stack",
    "keepalive_params", "network_stats",
]


CONGESTION_CONTROLS = ("newreno", "cubic", "bbr")


class temporary_buffer:  # noqa: N801 - Seastar's name
    """A zero-copy view of bytes: slicing shares the memory, never copies.

    `len(buf)`, `bool(buf)` (False when empty: end of stream), `bytes(buf)`,
    indexing and comparison with bytes work; `.view` is the memoryview to hand
    to anything that wants a buffer.
    """

    __slots__ = ("view",)

    def __init__(self, data: Any = b"") -> None:
        self.view = data if isinstance(data, memoryview) else memoryview(data)

    @classmethod
    def copy_of(cls, data: Any) -> "temporary_buffer":
        return cls(bytes(data))

    def get(self) -> memoryview:
        return self.view

    def size(self) -> int:
        return len(self.view)

    def __len__(self) -> int:
        return len(self.view)

    def __bool__(self) -> bool:
        return len(self.view) != 0

    def empty(self) -> bool:
        return len(self.view) == 0

    def __bytes__(self) -> bytes:
        return self.view.tobytes()

    def __getitem__(self, i):
        r = self.view[i]
        return temporary_buffer(r) if isinstance(i, slice) else r

    def __eq__(self, other) -> bool:
        if isinstance(other, temporary_buffer):
            other = other.view
        try:
            return self.view == other
        except TypeError:
            return NotImplemented

    __hash__ = None  # type: ignore[assignment]  # mutable-view semantics

    def share(self, pos: int = 0, length: int | None = None) -> "temporary_buffer":
        """Another buffer over (part of) the same memory."""
        end = len(self.view) if length is None else pos + length
        if pos < 0 or end > len(self.view) or pos > end:
            raise IndexError("share() range outside the buffer")
        return temporary_buffer(self.view[pos:end])

    def prefix(self, n: int) -> "temporary_buffer":
        return temporary_buffer(self.view[:n])

    def trim(self, n: int) -> None:
        """Keep only the first n bytes."""
        if n > len(self.view):
            raise IndexError("trim() beyond the buffer")
        self.view = self.view[:n]

    def trim_front(self, n: int) -> None:
        """Drop the first n bytes."""
        if n > len(self.view):
            raise IndexError("trim_front() beyond the buffer")
        self.view = self.view[n:]

    def clone(self) -> "temporary_buffer":
        """A copy with its own memory."""
        return temporary_buffer(self.view.tobytes())

    def __repr__(self) -> str:
        data = self.view[:32].tobytes()
        more = "..." if len(self.view) > 32 else ""
        return f"temporary_buffer({data!r}{more}, len={len(self.view)})"


def _as_view(data) -> memoryview:
    if isinstance(data, temporary_buffer):
        return data.view
    if isinstance(data, str):
        return memoryview(data.encode())
    return data if isinstance(data, memoryview) else memoryview(data)


class socket_address(NamedTuple):  # noqa: N801
    """An IPv4 address and port; prints as IP:PORT."""

    ip: str
    port: int

    def __str__(self) -> str:
        return f"{self.ip}:{self.port}"

    def as_tuple(self) -> tuple[str, int]:
        return (self.ip, self.port)

    def is_unspecified(self) -> bool:
        return self.ip == "0.0.0.0"


ipv4_addr = socket_address


def make_ipv4_address(a: Any, port: int | None = None) -> socket_address:
    """make_ipv4_address(1234) (any address), make_ipv4_address('192.0.2.1', 80),
    make_ipv4_address(('192.0.2.1', 80)), or '192.0.2.1:80'."""
    if isinstance(a, socket_address):
        return a
    if isinstance(a, int) and port is None:
        ip, p = "0.0.0.0", a
    elif isinstance(a, (tuple, list)) and port is None:
        if len(a) == 1:
            ip, p = "0.0.0.0", a[0]
        else:
            ip, p = a[0], a[1]
    elif isinstance(a, (set, frozenset)) and len(a) == 1 and port is None:
        ip, p = "0.0.0.0", next(iter(a))  # the tutorial's make_ipv4_address({1234})
    elif isinstance(a, str) and port is None and ":" in a:
        ip, _, ps = a.rpartition(":")
        p = int(ps)
    else:
        ip, p = a, port  # type: ignore[assignment]
    ip = str(ipaddress.IPv4Address(ip))
    if not isinstance(p, int) or not 0 <= p <= 65535:
        raise ValueError(f"invalid port {p!r}")
    return socket_address(ip, p)


_DEFAULT_BACKLOG: list = []


def default_backlog() -> int:
    """The listen backlog when none is given: the system's ceiling
    (net.core.somaxconn, 4096 on current Linux), as Go takes it -- a burst of
    connects then waits in the queue instead of overflowing it (128, Python's
    default, overflowed on a burst of 3,000 that asyncio absorbed: each dropped
    SYN cost its client a second). Bounded all the same: the native stack holds
    at most this many accepted-but-not-taken connections per listener."""
    if not _DEFAULT_BACKLOG:
        try:
            with open("/proc/sys/net/core/somaxconn") as f:
                n = int(f.read())
        except (OSError, ValueError):
            n = 4096
        _DEFAULT_BACKLOG.append(max(128, min(n, 65535)))
    return _DEFAULT_BACKLOG[0]


class listen_options:  # noqa: N801
    def __init__(self, reuse_address: bool = False, backlog: int | None = None, **extra) -> None:
        self.reuse_address = reuse_address
        self.backlog = default_backlog() if backlog is None else backlog
        for k in extra:
            raise TypeError(f"listen_options has no option {k!r}")


class keepalive_params(NamedTuple):  # noqa: N801
    idle: float = 7200.0
    interval: float = 75.0
    count: int = 9  # type: ignore[assignment]  # (shadows tuple.count, as the tutorial names it)


class accept_result(NamedTuple):  # noqa: N801
    connection: "connected_socket"
    remote_address: socket_address


class input_stream:  # noqa: N801
    """Reads from a data source. read() -> temporary_buffer (empty at EOF)."""

    def __init__(self, source: Any) -> None:
        self._source = source
        self._buf: temporary_buffer | None = None
        self._eof = False
        # Our stacks' sources remember that they delivered EOF (`eof_delivered`),
        # so read() can hand out their future as is instead of adding a hop that
        # only watches for the empty buffer.
        self._source_marks_eof = hasattr(source, "eof_delivered")

    def read(self) -> Future:
        b = self._buf
        if b is not None:
            self._buf = None
            return make_ready_future(b)
        if self._eof:
            return make_ready_future(temporary_buffer())
        f = self._source.get()
        if f._state == 1:           # ready: no continuation needed
            if not f._result:
                self._eof = True
            return f
        if self._source_marks_eof:
            return f
        return f.then(self._got)

    def _got(self, b: temporary_buffer) -> temporary_buffer:
        if not b:
            self._eof = True
        return b

    def read_up_to(self, n: int) -> Future:
        """At most n bytes (as soon as any are available); empty at EOF."""
        if n <= 0:
            raise ValueError("read_up_to(n) needs n > 0")
        return self.read().then(lambda b: self._split(b, n))

    def _split(self, b: temporary_buffer, n: int) -> temporary_buffer:
        if len(b) > n:
            self._buf = temporary_buffer(b.view[n:])
            return temporary_buffer(b.view[:n])
        return b

    def read_exactly(self, n: int) -> Future:
        """Exactly n bytes, or fewer if the stream ends first."""
        if n == 0:
            return make_ready_future(temporary_buffer())
        parts: list = []
        got = [0]

        def step():
            return self.read_up_to(n - got[0]).then(more)

        def more(b):
            if not b:
                return finish()
            parts.append(b.view)
            got[0] += len(b)
            if got[0] >= n:
                return finish()
            return step()

        def finish():
            if len(parts) == 1:
                return temporary_buffer(parts[0])
            return temporary_buffer(b"".join(parts))
        return step()

    def consume_all(self) -> Future:
        """All bytes until EOF, as one temporary_buffer."""
        parts: list = []

        def more(b):
            if not b:
                return temporary_buffer(b"".join(parts))
            parts.append(b.view)
            return self.read().then(more)
        return self.read().then(more)

    def eof(self) -> bool:
        """True once a read has returned the end of the stream."""
        if not self._eof and self._source_marks_eof and self._source.eof_delivered and self._buf is None:
            self._eof = True
        return self._eof

    def close(self) -> Future:
        self._eof = True
        self._buf = None
        close = getattr(self._source, "close", None)
        if close is not None:
            r = close()
            if isinstance(r, Future):
                return r
        return make_ready_future()


class output_stream:  # noqa: N801
    """Writes to a data sink, batching small writes (see module doc)."""

    def __init__(self, sink: Any, buffer_size: int = 8192) -> None:
        self._sink = sink
        self._size = buffer_size
        self._parts: list = []
        self._pending = 0
        self._auto_flush = False
        self._closed = False
        self._error: BaseException | None = None
        self._direct = getattr(sink, "coalescing", False)

    def write(self, data: Any) -> Future:
        """Queue data; the future resolves when it is fine to write again."""
        if self._closed:
            return _failed(OSError(errno.EPIPE, "write to a closed output_stream"))
        if self._error is not None:
            return _failed(self._error)
        v = data.view if data.__class__ is temporary_buffer else _as_view(data)
        if not len(v):
            return make_ready_future()
        if self._direct:            # (then _parts stays empty)
            f = self._sink.put(v)
            state = f._state
            if state == 1:
                return f
            if state == 2:
                self._error = f._result
                return f
            return f.handle_exception(self._fail)
        self._parts.append(v)
        self._pending += len(v)
        if self._pending >= self._size:
            return self._put()
        if not self._auto_flush:
            self._auto_flush = True
            _fut._schedule((output_stream._flush_soon, self))
        return make_ready_future()

    def _put(self) -> Future:
        parts = self._parts
        self._parts = []
        self._pending = 0
        data = parts[0] if len(parts) == 1 else memoryview(b"".join(parts))
        f = self._sink.put(data)
        state = f._state
        if state == 1:
            return f   # accepted at once: the common case, no continuation needed
        if state == 2:
            self._error = f._result
            return f
        return f.handle_exception(self._fail)

    def _fail(self, e: BaseException):
        self._error = e
        raise e

    def _flush_soon(self) -> None:
        self._auto_flush = False
        if self._parts and not self._closed and self._error is None:
            f = self._put()
            if f._state:
                f.ignore_ready_future()   # a failure was recorded by _put
            else:
                # The writer learns of a failure from its next write()/flush().
                f.handle_exception(_ignore)

    def flush(self) -> Future:
        """Resolves when everything written so far has been handed to the transport."""
        if self._error is not None:
            return _failed(self._error)
        if self._parts:
            f = self._put()
        else:
            f = make_ready_future()
        return f.then(self._sink.flush).handle_exception(self._fail)

    def close(self) -> Future:
        """Flush everything, then close the sink (for TCP: send FIN)."""
        if self._closed:
            return make_ready_future()
        f = self.flush()

        def done():
            self._closed = True
            return self._sink.close()

        def on_error(fut: Future):
            exc = fut.get_exception()
            self._closed = True
            if exc is not None:
                r = self._sink.close()
                if isinstance(r, Future):
                    r.ignore_ready_future() if r.available() else r.handle_exception(lambda e: None)
                raise exc
            return done()
        return f.then_wrapped(on_error)


def _ignore(_e) -> None:
    return None


class connected_socket:  # noqa: N801
    """A TCP connection (either stack)."""

    def __init__(self, impl: Any) -> None:
        self._impl = impl

    def input(self) -> input_stream:
        return input_stream(self._impl.source())

    def output(self, buffer_size: int = 8192) -> output_stream:
        return output_stream(self._impl.sink(), buffer_size)

    def shutdown_input(self) -> None:
        self._impl.shutdown_input()

    def shutdown_output(self) -> None:
        self._impl.shutdown_output()

    def set_nodelay(self, nodelay: bool = True) -> None:
        self._impl.set_nodelay(nodelay)

    def get_nodelay(self) -> bool:
        return self._impl.get_nodelay()

    def set_keepalive(self, keepalive: bool = True) -> None:
        self._impl.set_keepalive(keepalive)

    def get_keepalive(self) -> bool:
        return self._impl.get_keepalive()

    def set_keepalive_parameters(self, params: keepalive_params) -> None:
        """Idle seconds before the first probe, seconds between probes, probes
        unanswered before the connection is dropped (TCP_KEEPIDLE, TCP_KEEPINTVL,
        TCP_KEEPCNT on the posix stack, whole seconds there). A value out of range
        is a ValueError on both stacks."""
        idle, interval, count = params
        for name, v in (("idle", idle), ("interval", interval)):
            if not (isinstance(v, (int, float)) and 0 < v < 32768 * 1.0):
                raise ValueError(f"keepalive {name} must be seconds in (0, 32767], not {v!r}")
        if not (isinstance(count, int) and 1 <= count <= 127):
            raise ValueError(f"keepalive count must be a whole number in 1..127, not {count!r}")
        self._impl.set_keepalive_parameters(keepalive_params(float(idle), float(interval), count))

    def set_user_timeout(self, seconds: float) -> None:
        """RFC 5482 (Linux's TCP_USER_TIMEOUT): drop the connection with ETIMEDOUT
        when sent data stays unacknowledged this long; 0 turns it off. The same
        on both stacks (posix rounds to milliseconds)."""
        if not (isinstance(seconds, (int, float)) and seconds >= 0):
            raise ValueError(f"user timeout must be a number of seconds >= 0, not {seconds!r}")
        self._impl.set_user_timeout(float(seconds))

    def get_user_timeout(self) -> float:
        return self._impl.get_user_timeout()

    def set_congestion(self, name: str) -> None:
        """This connection's congestion control: "newreno", "cubic" or "bbr" (on
        the posix stack the kernel's reno, cubic or bbr: TCP_CONGESTION). An
        unknown name is a ValueError; one the kernel lacks, its OSError."""
        if name not in CONGESTION_CONTROLS:
            raise ValueError(f"unknown congestion control {name!r} (one of {', '.join(CONGESTION_CONTROLS)})")
        self._impl.set_congestion(name)

    def get_congestion(self) -> str:
        return self._impl.get_congestion()

    def local_address(self) -> socket_address:
        return self._impl.local_address()

    def remote_address(self) -> socket_address:
        return self._impl.remote_address()

    def close(self) -> None:
        """Release the connection, both directions, as the kernel's close(): what
        was handed to the stack (flushed) is still delivered, then a FIN; nothing
        more is read (a read returns end of stream). Unflushed output_stream data
        is not sent: close the output_stream first for that. On the posix stack a
        connection closed with received data left unread is reset, as Linux does."""
        self._impl.close()

    def wait_input_shutdown(self) -> Future:
        return self._impl.wait_input_shutdown()


class server_socket:  # noqa: N801
    def __init__(self, impl: Any) -> None:
        self._impl = impl

    def accept(self) -> Future:
        """A future of accept_result(connection, remote_address)."""
        return self._impl.accept()

    def abort_accept(self) -> None:
        self._impl.abort_accept()

    def local_address(self) -> socket_address:
        return self._impl.local_address()

    def close(self) -> None:
        self._impl.abort_accept()


class datagram(NamedTuple):  # noqa: N801
    src: socket_address
    dst: socket_address
    data: temporary_buffer

    def get_src(self) -> socket_address:
        return self.src

    def get_dst(self) -> socket_address:
        return self.dst

    def get_data(self) -> temporary_buffer:
        return self.data


class udp_channel:  # noqa: N801
    def __init__(self, impl: Any) -> None:
        self._impl = impl

    def local_address(self) -> socket_address:
        return self._impl.local_address()

    def send(self, dst: Any, data: Any) -> Future:
        return self._impl.send(make_ipv4_address(dst), _as_view(data))

    def receive(self) -> Future:
        """A future of the next datagram."""
        return self._impl.receive()

    def errors(self) -> list:
        """[(socket_address, OSError)]: the ICMP errors (port unreachable ->
        ConnectionRefusedError, ...) that datagrams sent from this channel brought
        back since the last call, oldest first (at most 64 are kept). receive()
        never fails for them: like an unconnected Linux socket with IP_RECVERR."""
        return self._impl.errors()

    def shutdown_input(self) -> None:
        self._impl.shutdown_input()

    def shutdown_output(self) -> None:
        self._impl.shutdown_output()

    def close(self) -> None:
        self._impl.close()

    def is_closed(self) -> bool:
        return self._impl.is_closed()


def network_stack() -> Any:
    """This shard's network stack, chosen by --network-stack (posix by default)."""
    r = engine()
    stack = getattr(r, "network_stack", None)
    if stack is None:
        kind = r.config.get("network_stack", "posix") if r.config else "posix"
        if kind == "posix":
            from .posix import PosixStack
            stack = PosixStack(r)
        elif kind == "native":
            from .native import create_native_stack
            stack = create_native_stack(r)
        else:
            raise ValueError(f"unknown --network-stack {kind!r} (posix or native)")
        r.network_stack = stack
    return stack


def _local_stats() -> dict:
    stack = network_stack()
    f = getattr(stack, "stats", None)
    return f() if f is not None else {}


def network_stats() -> Future:
    """A future of {"shards": [this stack's counters on each shard], "total": sums}."""
    from reactor import smp, when_all_succeed

    def combine(per_shard):
        total: dict = {}
        for st in per_shard:
            for k, v in st.items():
                if isinstance(v, (int, float)) and not isinstance(v, bool):
                    total[k] = total.get(k, 0) + v
        return {"shards": per_shard, "total": total}
    return when_all_succeed([smp.submit_to(s, _local_stats) for s in range(smp.count)]).then(combine)


def listen(addr: Any, opts: listen_options | None = None) -> server_socket:
    """Listen for TCP connections on addr (a socket_address or a port)."""
    return server_socket(network_stack().listen(make_ipv4_address(addr), opts or listen_options()))


def connect(addr: Any, local: Any = None) -> Future:
    """A future of a connected_socket to addr."""
    try:
        stack = network_stack()
        a = make_ipv4_address(addr)
        loc = make_ipv4_address(local) if local is not None else None
    except Exception as e:  # noqa: BLE001
        return _failed(e)
    return stack.connect(a, loc)


def make_udp_channel(addr: Any = None) -> udp_channel:
    """A UDP channel bound to addr (a port, an address, or None for any)."""
    a = make_ipv4_address(addr) if addr is not None else socket_address("0.0.0.0", 0)
    return udp_channel(network_stack().make_udp_channel(a))


