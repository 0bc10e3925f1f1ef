"""Device wrappers and the in-memory devices, under the native glue."""
import os

import dpkt
import pytest

from drivers.base import FaultInjecting, Recording
from drivers.loopback import LoopbackDevice
from drivers.pcap import PcapReplayDevice
from drivers.tap import GSO_TCPV4, NEEDS_CSUM, VNET_HDR, vnet_header
from netstack.config import InterfaceConfig
from netstack.interface import TxFrame
from netstack.sockets.api import listen_options, make_ipv4_address, server_socket
from netstack.sockets.native import NativeStack
from echo_helpers import echo_exchange, serve_one_echo
from reactor import when_all_succeed


def echo_over(reactor, dev_a, dev_b, size=300_000):
    A = NativeStack(reactor, dev_a, InterfaceConfig(mac=dev_a.mac, ip="192.0.2.1", seed=1))
    B = NativeStack(reactor, dev_b, InterfaceConfig(mac=dev_b.mac, ip="192.0.2.2", seed=2))
    srv = server_socket(B.listen(make_ipv4_address(80), listen_options(reuse_address=True)))
    data = os.urandom(size)

    async def client():
        s = await A.connect(make_ipv4_address(("192.0.2.2", 80)), None)
        return await echo_exchange(s, data, 50000)
    _, got = reactor.run(lambda: when_all_succeed(serve_one_echo(srv), client()))
    assert got == data
    return A, B


def test_native_echo_over_loopback(reactor):
    a, b = LoopbackDevice.pair()
    echo_over(reactor, a, b)


def test_fault_injection_is_survived_and_counted(reactor):
    a, b = LoopbackDevice.pair()
    fa = FaultInjecting(a, seed=1, drop=0.05, duplicate=0.05, reorder=0.2, corrupt=0.02)
    fb = FaultInjecting(b, seed=2, drop=0.05, duplicate=0.05, reorder=0.2, corrupt=0.02)
    A, B = echo_over(reactor, fa, fb, size=200_000)
    counts = {k: fa.counts[k] + fb.counts[k] for k in fa.counts}
    assert counts["dropped"] > 0 and counts["duplicated"] > 0 and counts["corrupted"] > 0
    # corrupted frames are counted drops (bad checksums), never crashes
    drops = {k: v for k, v in list(A.stats().items()) + list(B.stats().items()) if k.startswith("drop_")}
    assert any("checksum" in k or "truncated" in k or "not_for_us" in k or "wrong" in k for k in drops), drops
    assert "drop_internal_error" not in drops


def test_recording_writes_a_pcap_dpkt_reads(reactor, tmp_path):
    a, b = LoopbackDevice.pair()
    path = str(tmp_path / "rec.pcap")
    rec = Recording(a, path)
    echo_over(reactor, rec, b, size=20_000)
    rec.close()
    with open(path, "rb") as f:
        frames = [buf for _ts, buf in dpkt.pcap.Reader(f)]
    assert len(frames) == rec.recorded > 10
    tcp = [dpkt.ethernet.Ethernet(f).data.data for f in frames
           if isinstance(dpkt.ethernet.Ethernet(f).data, dpkt.ip.IP)]
    assert sum(len(t.data) for t in tcp) >= 2 * 20_000


def test_pcap_replay_device_delivers_frames_at_capture_times(tmp_path):
    path = str(tmp_path / "r.pcap")
    with open(path, "wb") as f:
        w = dpkt.pcap.Writer(f)
        for i, t in enumerate((10.0, 10.5, 11.0)):
            w.writepkt(bytes([i]) * 60, t)
    now = [100.0]
    dev = PcapReplayDevice(path, mac=b"\x02" * 6, clock=lambda: now[0])
    assert [bytes(f)[:1] for f, _ in dev.recv_batch()] == [b"\x00"]
    assert dev.recv_batch() == []
    now[0] = 100.5
    assert [bytes(f)[:1] for f, _ in dev.recv_batch()] == [b"\x01"]
    now[0] = 200
    assert [bytes(f)[:1] for f, _ in dev.recv_batch()] == [b"\x02"] and dev.done()
    fast = PcapReplayDevice(path, mac=b"\x02" * 6, realtime=False)
    assert len(fast.recv_batch()) == 3


def test_vnet_header_for_offloaded_frames():
    frame = bytes(14) + bytes([0x45]) + bytes(19) + bytes(12) + bytes([0x80]) + bytes(7) + bytes(3000)
    hdr = VNET_HDR.unpack(vnet_header(TxFrame(frame, 34, 16, 1448)))
    assert hdr == (NEEDS_CSUM, GSO_TCPV4, 14 + 20 + 32, 1448, 34, 16)
    assert VNET_HDR.unpack(vnet_header(TxFrame(frame, 34, 16, 0))) == (NEEDS_CSUM, 0, 0, 0, 34, 16)
    assert vnet_header(TxFrame(frame)) == bytes(10)


def test_user_timeout_on_the_native_stack_ends_a_dead_connection(reactor):
    """The socket API's set_user_timeout on the native stack: once the peer goes
    silent (every frame dropped), the writer sees ETIMEDOUT after about the user
    timeout, not after the ~15 minutes of retries."""
    import time as _time
    from reactor import sleep
    a, b = LoopbackDevice.pair()
    fa = FaultInjecting(a, seed=1)
    A = NativeStack(reactor, fa, InterfaceConfig(mac=a.mac, ip="192.0.2.1", seed=1))
    B = NativeStack(reactor, b, InterfaceConfig(mac=b.mac, ip="192.0.2.2", seed=2))
    srv = server_socket(B.listen(make_ipv4_address(80), listen_options(reuse_address=True)))

    async def client():
        s = await A.connect(make_ipv4_address(("192.0.2.2", 80)), None)
        await srv.accept()
        s.set_user_timeout(0.5)
        assert s.get_user_timeout() == 0.5
        fa.drop = 1.0                      # the peer's answers never arrive again
        out = s.output()
        t0 = _time.monotonic()
        try:
            for _ in range(200):
                await out.write(b"x" * 1000)
                await out.flush()
                await sleep(0.05)
        except OSError as e:
            return e, _time.monotonic() - t0
        return None, _time.monotonic() - t0
    err, took = reactor.run(client)
    assert isinstance(err, TimeoutError), err
    assert 0.4 < took < 3.0


def test_congestion_control_per_socket_on_the_native_stack(reactor):
    """connected_socket.set_congestion on the native stack switches the TCB's
    algorithm (BBR brings its pacer); the bytes still arrive."""
    a, b = LoopbackDevice.pair()
    A = NativeStack(reactor, a, InterfaceConfig(mac=a.mac, ip="192.0.2.1", seed=1))
    B = NativeStack(reactor, b, InterfaceConfig(mac=b.mac, ip="192.0.2.2", seed=2))
    srv = server_socket(B.listen(make_ipv4_address(80), listen_options(reuse_address=True)))

    async def client():
        s = await A.connect(make_ipv4_address(("192.0.2.2", 80)), None)
        ar = await srv.accept()
        assert s.get_congestion() == "newreno"
        s.set_congestion("bbr")
        with pytest.raises(ValueError):
            s.set_congestion("reno")            # our name for it is newreno
        out, inp = s.output(), ar.connection.input()
        data = bytes(range(256)) * 400
        await out.write(data)
        await out.flush()
        got = bytearray()
        while len(got) < len(data):
            got += bytes(await inp.read())
        return s.get_congestion(), bytes(got) == data
    assert reactor.run(client) == ("bbr", True)


def test_mmsg_sends_and_receives_batches_of_messages():
    """drivers/_mmsg.c on a datagram socket pair (no root): one message per
    frame, the prefix before each frame given whole, a tuple's pieces gathered
    into one message; recv_many takes what waits, cut at `size`; a tuple
    subclass (a TxFrame) is not taken for pieces."""
    import socket
    from drivers import afpacket
    mm = afpacket._mmsg
    if mm is None:
        assert os.environ.get("PYSEASTAR_PURE_PYTHON"), "the C extension was not built"
        pytest.skip("pure-Python run: the per-frame loops are tested by test_native")
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    try:
        a.setblocking(False)
        b.setblocking(False)
        assert mm.send_many(a.fileno(), [b"one", (b"tw", memoryview(b"o")), bytearray(b"three")], b"P:") == \
            (3, len(b"P:one") + len(b"two") + len(b"P:three"), 0)
        assert mm.recv_many(b.fileno(), 64, 4) == [b"P:on", b"two", b"P:th"]
        assert mm.recv_many(b.fileno(), 64, 4) == []
        with pytest.raises(TypeError):
            mm.send_many(a.fileno(), [TxFrame(b"x")], None)
        assert mm.send_many(a.fileno(), [], None) == (0, 0, 0)
    finally:
        a.close()
        b.close()
