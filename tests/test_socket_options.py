"""The connected_socket calls on both stacks, the same test for each: shutdown
of either direction, nodelay, keepalive and its (validated) parameters, close().

posix: kernel sockets on 127.0.0.1. native: two native stacks on an in-memory
wire (LoopbackDevice), one reactor."""
import os
import socket
import sys

import pytest

from drivers.loopback import LoopbackDevice
from netstack.config import InterfaceConfig
from netstack.sockets.api import keepalive_params, listen_options, make_ipv4_address, server_socket
from netstack.sockets.native import NativeStack


class Pair:
    """A listening side and a connecting side of the chosen stack."""

    def __init__(self, reactor, kind):
        self.kind = kind
        if kind == "posix":
            from netstack.sockets.posix import PosixStack
            st = PosixStack(reactor)
            self.srv = server_socket(st.listen(make_ipv4_address(("127.0.0.1", 0)), listen_options(reuse_address=True)))
            port = self.srv.local_address().port
            self.connect = lambda: st.connect(make_ipv4_address(("127.0.0.1", port)), None)
        else:
            a, b = LoopbackDevice.pair()
            A = NativeStack(reactor, a, InterfaceConfig(mac=a.mac, ip="192.0.2.1", seed=1))
            B = NativeStack(reactor, b, InterfaceConfig(mac=b.mac, ip="192.0.2.2", seed=2))
            self.srv = server_socket(B.listen(make_ipv4_address(80), listen_options(reuse_address=True)))
            self.connect = lambda: A.connect(make_ipv4_address(("192.0.2.2", 80)), None)

    async def both(self):
        c = await self.connect()
        ar = await self.srv.accept()
        return c, ar.connection


async def read_all(inp):
    got = b""
    while (data := await inp.read()):
        got += bytes(data)
    return got


@pytest.fixture(params=["posix", "native"])
def pair(request, reactor):
    p = Pair(reactor, request.param)
    yield p
    p.srv.close()


def test_shutdown_output_sends_eof_and_the_other_direction_goes_on(reactor, pair):
    async def main():
        c, s = await pair.both()
        out = c.output()
        await out.write(b"abc")
        await out.flush()
        c.shutdown_output()
        got = await read_all(s.input())            # the data, then end of stream
        so = s.output()
        await so.write(b"reply after your FIN")
        await so.close()
        back = await read_all(c.input())
        return got, back
    assert reactor.run(main) == (b"abc", b"reply after your FIN")


def test_shutdown_input_ends_reads_but_not_writes(reactor, pair):
    async def main():
        c, s = await pair.both()
        c.shutdown_input()
        first = bytes(await c.input().read())      # end of stream at once, whatever the peer sends
        out = c.output()
        await out.write(b"still writing")
        await out.close()
        return first, await read_all(s.input())
    assert reactor.run(main) == (b"", b"still writing")


def test_nodelay_set_and_read_back(reactor, pair):
    async def main():
        c, s = await pair.both()
        seen = []
        for v in (True, False, True):
            c.set_nodelay(v)
            seen.append(c.get_nodelay())
        c.shutdown_output()
        s.shutdown_output()
        return seen
    assert reactor.run(main) == [True, False, True]


def test_keepalive_and_its_parameters(reactor, pair):
    async def main():
        c, s = await pair.both()
        assert c.get_keepalive() is False
        c.set_keepalive(True)
        assert c.get_keepalive() is True
        c.set_keepalive_parameters(keepalive_params(idle=10, interval=2, count=3))
        if pair.kind == "posix":
            sock = c._impl.sock
            got = (sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE),
                   sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL),
                   sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT))
        else:
            t = c._impl.tcb
            got = (t.keepalive_idle, t.keepalive_interval, t.keepalive_count)
        for bad in (keepalive_params(0, 2, 3), keepalive_params(-1, 2, 3), keepalive_params(10, 0, 3),
                    keepalive_params(10, 2, 0), keepalive_params(float("nan"), 2, 3), keepalive_params(10, 2, 1.5),
                    keepalive_params(10, 2, 200), keepalive_params(1e9, 2, 3)):
            with pytest.raises(ValueError, match="keepalive"):
                c.set_keepalive_parameters(bad)
        c.set_keepalive(False)
        off = c.get_keepalive()
        c.shutdown_output()
        s.shutdown_output()
        return got, off
    assert reactor.run(main) == ((10, 2, 3), False)


def test_close_delivers_what_was_flushed_then_eof(reactor, pair):
    """close()'s documented meaning on both stacks: flushed data arrives, then
    the FIN; our own reads are over."""
    async def main():
        c, s = await pair.both()
        out = c.output()
        await out.write(b"x" * 50_000)
        await out.flush()
        c.close()
        got = await read_all(s.input())
        return len(got)
    assert reactor.run(main) == 50_000


def test_native_keepalive_probes_end_a_dead_connection(reactor):
    """The parameters act: with the peer gone silent, count unanswered probes
    (idle, then every interval) end the connection with ETIMEDOUT."""
    from drivers.base import FaultInjecting
    a, b = LoopbackDevice.pair()
    fa = FaultInjecting(a, seed=1)
    A = NativeStack(reactor, fa, InterfaceConfig(mac=a.mac, ip="192.0.2.1", seed=1))
    B = NativeStack(reactor, b, InterfaceConfig(mac=b.mac, ip="192.0.2.2", seed=2))
    srv = server_socket(B.listen(make_ipv4_address(80), listen_options(reuse_address=True)))

    async def main():
        c = await A.connect(make_ipv4_address(("192.0.2.2", 80)), None)
        await srv.accept()
        c.set_keepalive(True)
        c.set_keepalive_parameters(keepalive_params(idle=0.2, interval=0.1, count=2))
        fa.drop = 1.0
        try:
            for _ in range(100):
                if bytes(await c.input().read()) == b"":
                    return "eof"
        except OSError as e:
            return type(e).__name__
        return "still open"
    assert reactor.run(lambda: main()) == "TimeoutError"
    srv.close()


def test_native_closed_connection_in_fin_wait_2_goes_after_fin_timeout(reactor):
    """The server closes (both directions) and the client only ACKs the FIN: the
    server's connection waits fin_timeout in FIN-WAIT-2, then is gone, and the
    client's next write meets a RST. A connection the server only half-closed
    (shutdown_output) stays."""
    from netstack.config import TcpConfig
    from netstack.tcp import State
    from reactor import sleep
    a, b = LoopbackDevice.pair()
    A = NativeStack(reactor, a, InterfaceConfig(mac=a.mac, ip="192.0.2.1", seed=1))
    B = NativeStack(reactor, b, InterfaceConfig(mac=b.mac, ip="192.0.2.2", seed=2, tcp=TcpConfig(fin_timeout=0.3)))
    srv = server_socket(B.listen(make_ipv4_address(80), listen_options(reuse_address=True)))

    async def main():
        c1 = await A.connect(make_ipv4_address(("192.0.2.2", 80)), None)
        s1 = (await srv.accept()).connection
        c2 = await A.connect(make_ipv4_address(("192.0.2.2", 80)), None)
        s2 = (await srv.accept()).connection
        s1.close()                     # the application lets go
        s2.shutdown_output()           # a half-close: it may still read
        await sleep(0.1)
        states = sorted(t.state.value for t in B.iface.tcbs.values())
        await sleep(0.4)
        left = [t.state for t in B.iface.tcbs.values()]
        out = c1.output()
        await out.write(b"hello?")
        await out.flush()
        await sleep(0.1)
        client_left = len(A.iface.tcbs)
        try:
            await out.write(b"anyone?")
            await out.flush()
        except OSError as e:
            err = type(e).__name__
        else:
            err = None
        del s2, c2
        return states, left, client_left, err
    states, left, client_left, err = reactor.run(lambda: main())
    assert states == ["FIN-WAIT-2", "FIN-WAIT-2"]
    assert left == [State.FIN_WAIT_2]          # only the half-closed one
    assert client_left == 1 and err == "ConnectionResetError"     # the RST ended the client's first
    c = B.iface.counters                      # the server counted the stray segment and answered it
    assert c["drop_tcp_no_connection"] >= 1 and c["tx_tcp_rst"] == c["drop_tcp_no_connection"]
    srv.close()


def test_the_default_listen_backlog_is_the_systems_ceiling():
    """listen_options() without a backlog takes net.core.somaxconn (as Go does),
    not Python's 128: a burst of connects waits in the queue; a given backlog
    is kept as given."""
    from netstack.sockets import listen_options
    with open("/proc/sys/net/core/somaxconn") as f:
        ceiling = int(f.read())
    assert listen_options().backlog == max(128, min(ceiling, 65535))
    assert listen_options(backlog=16).backlog == 16


def test_posix_fin_timeout_option_sets_tcp_linger2():
    """--tcp-fin-timeout on the posix stack: TCP_LINGER2 on its sockets (the
    kernel's per-socket tcp_fin_timeout); without it the kernel's default."""
    import types
    from netstack.sockets.posix import TCP_LINGER2, PosixStack
    for cfg, want in (({"tcp_fin_timeout": 7.0}, 7), ({}, None)):
        st = PosixStack(types.SimpleNamespace(config=cfg))
        s = socket.socket()
        try:
            default = s.getsockopt(socket.IPPROTO_TCP, TCP_LINGER2)
            st._options(s)
            assert s.getsockopt(socket.IPPROTO_TCP, TCP_LINGER2) == (default if want is None else want)
        finally:
            s.close()


def _own_objects(root, other, shared):
    """Objects reachable from root and not from other: what one connection holds
    alone (modules, classes, code and the shared stack objects excluded)."""
    import gc
    import types

    stop = (type, types.ModuleType, types.CodeType)
    moddicts = {id(m.__dict__) for m in list(sys.modules.values()) if hasattr(m, "__dict__")}
    skip = {id(o) for o in shared} | moddicts

    def reach(r):
        seen, stack = {}, [r]
        while stack:
            o = stack.pop()
            if id(o) in seen or id(o) in skip or isinstance(o, stop) or (
                    isinstance(o, types.BuiltinFunctionType) and isinstance(o.__self__, types.ModuleType)):
                continue
            seen[id(o)] = o
            stack.extend(gc.get_referents(o))
        return seen
    mine, theirs = reach(root), reach(other)
    return [o for k, o in mine.items() if k not in theirs]


def test_native_idle_echo_connection_holds_no_empty_containers_and_fits_its_budget(reactor):
    """An idle connection of the tutorial's echo server after one round trip:
    no empty list kept (send buffer, out-of-order queue and its blocks, SACK
    scoreboard, the socket layer's waiters and pending writes), no bound method
    stored per connection, and the objects it holds alone (TCB, socket layer,
    the reactor's continuation chain, the app's closures) within a budget --
    issue 15's idle memory, checked without a TAP."""
    import gc
    sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "examples", "tutorial"))
    import echo_server
    from reactor import keep_doing, sleep
    a, b = LoopbackDevice.pair()
    A = NativeStack(reactor, a, InterfaceConfig(mac=a.mac, ip="192.0.2.1", seed=1))
    B = NativeStack(reactor, b, InterfaceConfig(mac=b.mac, ip="192.0.2.2", seed=2))
    srv = server_socket(B.listen(make_ipv4_address(80), listen_options(reuse_address=True)))
    clients = []

    def serve(ar):          # as the tutorial's f(): each connection served beside the next accept()
        echo_server.handle_connection(ar.connection, ar.remote_address).handle_exception(lambda e: None)

    async def main():
        keep_doing(lambda: srv.accept().then(serve)).handle_exception(lambda e: None)
        for _ in range(3):
            c = await A.connect(make_ipv4_address(("192.0.2.2", 80)), None)
            out, inp = c.output(), c.input()
            await out.write(b"x" * 64)
            await out.flush()
            assert bytes(await inp.read()) == b"x" * 64
            clients.append((c, out, inp))
        await sleep(0.2)            # the delayed ACKs go out: nothing owed, nothing in flight
    reactor.run(lambda: main())
    gc.collect()
    tcbs = list(B.iface.tcbs.values())
    assert len(tcbs) == 3
    conns = [B.handlers[t]() for t in tcbs]
    for t, conn in zip(tcbs, conns):
        assert t.sbuf.chunks == () and t.ooo == () and t.ooo_blocks == () and t.sacked == ()
        assert t.xmit is None and not t.stats
        assert conn.waiters == () and conn.pending == () and conn.reader is not None   # a read is pending
        assert t.owner is tcbs[0].owner                   # one bound method for every TCB
    shared = [B, B.iface, A, A.iface, reactor, srv]
    own = _own_objects((tcbs[1], conns[1]), (tcbs[2], conns[2]), shared)
    kinds = {type(o).__name__ for o in own}
    assert "method" not in kinds or all(type(o.__self__).__name__ not in ("_NativeConn",)
                                        for o in own if type(o).__name__ == "method")
    size = sum(sys.getsizeof(o) for o in own)
    assert size <= 4600, sorted(((sys.getsizeof(o), type(o).__name__) for o in own), reverse=True)[:12]
