"""The socket API on the posix stack, in process, on loopback."""
import errno
import socket

import pytest

from netstack.sockets import (connect, listen, listen_options, make_ipv4_address, make_udp_channel,
                              socket_address, temporary_buffer)
from reactor import sleep, when_all_succeed


def test_temporary_buffer_is_a_zero_copy_view():
    raw = bytearray(b"hello world")
    b = temporary_buffer(raw)
    s = b.share(6, 5)
    raw[6:11] = b"WORLD"
    assert bytes(s) == b"WORLD"  # shares memory
    p = b.prefix(5)
    assert p == b"hello" and len(p) == 5
    b.trim_front(6)
    assert b == b"WORLD"
    b.trim(3)
    assert bytes(b) == b"WOR"
    assert not temporary_buffer() and temporary_buffer(b"x")
    with pytest.raises(IndexError):
        b.trim(10)
    c = b.clone()
    raw[6] = ord("w")
    assert c == b"WOR" and b == b"wOR"


def test_make_ipv4_address_forms():
    assert make_ipv4_address(1234) == socket_address("0.0.0.0", 1234)
    assert make_ipv4_address({1234}) == socket_address("0.0.0.0", 1234)
    assert str(make_ipv4_address("192.0.2.1", 80)) == "192.0.2.1:80"
    assert make_ipv4_address("192.0.2.1:80") == make_ipv4_address(("192.0.2.1", 80))
    with pytest.raises(ValueError):
        make_ipv4_address(70000)
    with pytest.raises(ValueError):
        make_ipv4_address("999.0.0.1", 1)


def test_listen_options_rejects_unknown():
    with pytest.raises(TypeError):
        listen_options(reuse_adress=True)


def test_connect_accept_read_exactly_and_close(reactor):
    srv = listen(make_ipv4_address(("127.0.0.1", 0)), listen_options(reuse_address=True))
    port = srv.local_address().port

    def server_side():
        def got(ar):
            s = ar.connection
            inp, out = s.input(), s.output()
            return inp.read_exactly(5).then(lambda b: out.write(b"<" + bytes(b) + b">")).then(
                lambda: inp.read_up_to(3)).then(lambda b: out.write(bytes(b))).then(out.close).then(
                lambda: str(ar.remote_address))
        return srv.accept().then(got)

    def client_side():
        def conn(s):
            inp, out = s.input(), s.output()
            return out.write(b"hel").then(lambda: out.write(b"lo")).then(lambda: out.write(b"abcdef")).then(
                out.flush).then(lambda: inp.consume_all()).then(lambda b: (bytes(b), str(s.local_address())))
        return connect(make_ipv4_address(("127.0.0.1", port))).then(conn)
    remote, (data, local) = reactor.run(lambda: when_all_succeed(server_side(), client_side()))
    assert data == b"<hello>abc"
    assert remote == local
    srv.close()


def test_connect_refused(reactor):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    with pytest.raises(ConnectionRefusedError):
        reactor.run(lambda: connect(make_ipv4_address(("127.0.0.1", port))))


def test_listen_twice_is_address_in_use(reactor):
    srv = listen(make_ipv4_address(("127.0.0.1", 0)))
    with pytest.raises(OSError) as ei:
        listen(srv.local_address())
    assert ei.value.errno == errno.EADDRINUSE
    assert ei.value.strerror == "bind: Address already in use"
    srv.close()


def test_write_future_applies_backpressure(reactor):
    """A peer that never reads: writes stop resolving once the buffers are full."""
    srv = listen(make_ipv4_address(("127.0.0.1", 0)))
    port = srv.local_address().port
    written = [0]

    def client(s):
        out = s.output()
        chunk = b"x" * 65536

        def loop():
            written[0] += len(chunk)
            return out.write(chunk).then(loop)
        loop()  # runs until the future stops resolving
        return sleep(0.3)
    accepted = []
    srv.accept().then(accepted.append)
    reactor.run(lambda: connect(make_ipv4_address(("127.0.0.1", port))).then(client))
    # Kernel buffers plus our 256 KiB high-water mark: bounded, far below "infinite".
    assert 256 << 10 < written[0] < 64 << 20
    srv.close()


def test_writes_of_one_round_share_a_system_call(reactor):
    """Writes of one round of tasks go out together at its end (one sendmsg for a
    bulk writer's three 64 KiB chunks, one for 500 small writes); every byte
    arrives, in order."""
    srv = listen(make_ipv4_address(("127.0.0.1", 0)))
    port = srv.local_address().port
    chunks = [bytes([i]) * 65536 for i in range(3)]
    got = bytearray()

    def serve(ar):
        inp = ar.connection.input()

        def more(b):
            if not b:
                return None
            got.extend(bytes(b))
            return inp.read().then(more)
        return inp.read().then(more)

    async def client(s):
        s._impl.sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 << 20)   # room for all three
        out = s.output(65536)
        sink = out._sink
        fs = [out.write(c) for c in chunks]
        assert sink.sends == 0 and all(f.available() for f in fs)     # queued, nothing sent yet
        await out.flush()
        big = sink.sends
        fs = [out.write(b"%03d" % i) for i in range(500)]       # many small pieces
        assert sink.sends == big and all(f.available() for f in fs)
        await out.flush()
        small = sink.sends - big
        await out.close()
        return big, small
    done = srv.accept().then(serve)
    sends = reactor.run(lambda: connect(make_ipv4_address(("127.0.0.1", port))).then(client))
    reactor.run(done)
    assert bytes(got) == b"".join(chunks) + b"".join(b"%03d" % i for i in range(500))
    assert sends == (1, 1)
    srv.close()


def test_reset_by_peer_is_connection_reset(reactor):
    srv = listen(make_ipv4_address(("127.0.0.1", 0)))
    port = srv.local_address().port
    c = socket.create_connection(("127.0.0.1", port))

    def got(ar):
        c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        c.close()  # RST
        return sleep(0.05).then(lambda: ar.connection.input().read())
    with pytest.raises(ConnectionResetError):
        reactor.run(lambda: srv.accept().then(got))
    srv.close()


def test_udp_channel_send_receive(reactor):
    a = make_udp_channel(make_ipv4_address(("127.0.0.1", 0)))
    b = make_udp_channel(make_ipv4_address(("127.0.0.1", 0)))

    def go():
        return a.send(b.local_address(), b"ping").then(b.receive)
    dg = reactor.run(go)
    assert bytes(dg.get_data()) == b"ping"
    assert dg.get_src() == a.local_address()
    a.close()
    b.close()


def test_unknown_network_stack_is_a_clear_error(reactor):
    reactor.config = {"network_stack": "dpdk"}
    with pytest.raises(ValueError, match="unknown --network-stack 'dpdk'"):
        listen(make_ipv4_address(1234))
    reactor.config = {}


def test_data_and_fin_arriving_together_reach_eof(reactor):
    """A short read must not park the stream when the peer's FIN is already queued
    behind the data (regression: the FIN's epoll edge was consumed with the data's)."""
    from reactor import with_timeout
    srv = listen(make_ipv4_address(("127.0.0.1", 0)))
    port = srv.local_address().port

    def server_side(ar):
        inp = ar.connection.input()
        got = []

        def read_all():
            return inp.read().then(lambda b: got.append(bytes(b)) or (read_all() if b else None))
        return sleep(0.05).then(read_all).then(lambda: got)
    for _ in range(5):
        c = socket.create_connection(("127.0.0.1", port))
        c.sendall(b"abc")
        c.shutdown(socket.SHUT_WR)
        got = reactor.run(lambda: with_timeout(2.0, srv.accept().then(server_side)))
        assert got == [b"abc", b""]
        c.close()
    srv.close()


def test_input_stream_eof_after_a_read_that_had_to_wait(reactor):
    """eof() turns true once a read returns the end, also when that read waited
    for the peer (the source resolves the waiting read with the data itself)."""
    srv = listen(make_ipv4_address(("127.0.0.1", 0)), listen_options(reuse_address=True))
    port = srv.local_address().port
    seen = []

    def server_side():
        def got(ar):
            inp = ar.connection.input()

            def first(b):
                seen.append((bytes(b), inp.eof()))
                return inp.read().then(second)        # waits: the peer closes later

            def second(b):
                seen.append((bytes(b), inp.eof()))
                return inp.read().then(lambda b: seen.append((bytes(b), inp.eof())))
            return inp.read().then(first)
        return srv.accept().then(got)

    def client_side():
        def conn(s):
            out = s.output()
            return out.write(b"hi").then(out.flush).then(lambda: sleep(0.05)).then(out.close)
        return connect(make_ipv4_address(("127.0.0.1", port))).then(conn)
    reactor.run(lambda: when_all_succeed(server_side(), client_side()))
    assert seen == [(b"hi", False), (b"", True), (b"", True)]
    srv.close()


def test_a_connection_the_application_drops_closes_without_the_cyclic_gc(reactor):
    """Its socket is closed when the last reference goes (the fd is not held until
    the cyclic GC runs, which under load meant thousands of open fds)."""
    import gc
    import weakref
    srv = listen(make_ipv4_address(("127.0.0.1", 0)))
    port = srv.local_address().port
    refs = []

    def serve(ar):
        s = ar.connection
        refs.append(weakref.ref(s._impl))
        inp, out = s.input(), s.output()
        return inp.read().then(lambda b: out.write(bytes(b))).then(out.close)

    def client(s):
        out, inp = s.output(), s.input()
        return out.write(b"ping").then(out.flush).then(inp.read).then(lambda b: bytes(b))
    gc.collect()
    gc.disable()
    try:
        done = srv.accept().then(serve)
        assert reactor.run(lambda: connect(make_ipv4_address(("127.0.0.1", port))).then(client)) == b"ping"
        reactor.run(done)
        del done
        assert refs and refs[0]() is None
    finally:
        gc.enable()
    srv.close()


def test_user_timeout_on_the_posix_stack(reactor):
    """set_user_timeout reaches the kernel as TCP_USER_TIMEOUT (milliseconds) and
    reads back; a negative or non-numeric value is a ValueError."""
    srv = listen(make_ipv4_address(("127.0.0.1", 0)), listen_options(reuse_address=True))
    port = srv.local_address().port

    async def both():
        s = await connect(make_ipv4_address(("127.0.0.1", port)))
        ar = await srv.accept()
        s.set_user_timeout(2.5)
        with pytest.raises(ValueError):
            s.set_user_timeout(-1)
        with pytest.raises(ValueError):
            s.set_user_timeout("soon")
        got = s.get_user_timeout()
        ar.connection.shutdown_output()
        return got
    assert reactor.run(both) == 2.5
    srv.close()


def test_congestion_control_per_socket_on_the_posix_stack(reactor):
    """set_congestion reaches the kernel as TCP_CONGESTION (our "newreno" is
    Linux's "reno") and reads back; an unknown name is a ValueError."""
    srv = listen(make_ipv4_address(("127.0.0.1", 0)), listen_options(reuse_address=True))
    port = srv.local_address().port

    async def both():
        s = await connect(make_ipv4_address(("127.0.0.1", port)))
        ar = await srv.accept()
        got = []
        for name in ("cubic", "newreno", "bbr"):
            s.set_congestion(name)
            got.append(s.get_congestion())
        with pytest.raises(ValueError, match="unknown congestion control"):
            s.set_congestion("vegas2")
        ar.connection.shutdown_output()
        return got
    assert reactor.run(both) == ["cubic", "newreno", "bbr"]
    srv.close()


def test_tcp_congestion_option_applies_to_every_posix_socket(reactor):
    from netstack.sockets.posix import PosixStack
    reactor.config = {"tcp_congestion": "bbr"}
    try:
        stack = PosixStack(reactor)
    finally:
        reactor.config = None
    srv = stack.listen(make_ipv4_address(("127.0.0.1", 0)), listen_options(reuse_address=True))
    port = srv.local_address().port

    async def both():
        c = await stack.connect(make_ipv4_address(("127.0.0.1", port)), None)
        ar = await srv.accept()
        names = (c.get_congestion(), ar.connection.get_congestion())
        ar.connection.shutdown_output()
        return names
    assert reactor.run(both) == ("bbr", "bbr")
    srv.abort_accept()
