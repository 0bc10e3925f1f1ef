"""Two Interfaces over an in-memory link with a manual clock: handshake, bulk
both ways and close, through loss, duplication and reordering chosen by
hypothesis. The bytes that come out equal the bytes that went in."""
import hashlib
import random
import statistics

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from netstack.config import InterfaceConfig, TcpConfig
from netstack.interface import Interface
from netstack.tcp import Event, State
from netstack.testing import LinkPair, mathis_bound
from netstack.wire import ip_to_bytes

B_IP = ip_to_bytes("192.0.2.2")


def pair(seed, congestion="newreno", sack=True, timestamps=True, **link):
    def iface(n, ip):
        return Interface(InterfaceConfig(mac=bytes([2, 0, 0, 0, 0, n]), ip=ip, seed=seed * 10 + n, arp_retries=20,
                                         tcp=TcpConfig(congestion=congestion, sack=sack, timestamps=timestamps,
                                                       syn_retries=30, max_retries=30)))
    return LinkPair(iface(1, "192.0.2.1"), iface(2, "192.0.2.2"), seed=seed, **link)


def transfer(lp, up: bytes, down: bytes):
    lst = lp.b.tcp_listen(80)
    c = lp.a.tcp_connect(B_IP, 80, lp.now)
    lp.run_until(lambda: lst.accept_queue or c.state is State.CLOSED, max_time=3000)
    assert c.state is State.ESTABLISHED
    s = lst.accept()
    sent = [0, 0]
    got_up, got_down = bytearray(), bytearray()

    def cond():
        if sent[0] < len(up):
            sent[0] += c.send(memoryview(up)[sent[0]:sent[0] + 65536])
        elif not c.fin_queued:
            c.close()
        if sent[1] < len(down):
            sent[1] += s.send(memoryview(down)[sent[1]:sent[1] + 65536])
        elif not s.fin_queued:
            s.close()
        while (x := s.recv()):
            got_up.extend(x)
        while (x := c.recv()):
            got_down.extend(x)
        return s.at_eof() and c.at_eof()
    lp.run_until(cond, max_time=lp.now + 2000)
    lp.run_until(lambda: s.state is State.CLOSED and c.state in (State.TIME_WAIT, State.CLOSED),
                 max_time=lp.now + 300)
    return bytes(got_up), bytes(got_down), c, s


def digest(b):
    return hashlib.sha256(b).hexdigest()


def test_clean_link_bulk_both_ways():
    lp = pair(1)
    up, down = random.Random(1).randbytes(500_000), random.Random(2).randbytes(200_000)
    got_up, got_down, c, s = transfer(lp, up, down)
    assert digest(got_up) == digest(up) and digest(got_down) == digest(down)
    assert c.stats["retransmits"] == 0 and s.stats["retransmits"] == 0
    lp.run_until(lambda: not lp.a.tcbs and not lp.b.tcbs, max_time=lp.now + 200)  # TIME-WAIT expires


@settings(max_examples=20, deadline=None)
@given(seed=st.integers(0, 10_000), loss=st.floats(0, 0.15), dup=st.floats(0, 0.1),
       reorder=st.floats(0, 0.3), size=st.integers(0, 120_000), cc=st.sampled_from(["newreno", "cubic", "bbr"]),
       sack=st.booleans(), ts=st.booleans(), rbuf=st.sampled_from([None, None, 3000, 12000]))
def test_lossy_link_delivers_bytes_intact(seed, loss, dup, reorder, size, cc, sack, ts, rbuf):
    lp = pair(seed, congestion=cc, sack=sack, timestamps=ts, loss=loss, duplicate=dup, reorder=reorder)
    if rbuf is not None:      # small receive buffers: windows that fill with out-of-order data
        lp.a.cfg.tcp.recv_buffer = lp.b.cfg.tcp.recv_buffer = rbuf
    rng = random.Random(seed)
    up, down = rng.randbytes(size), rng.randbytes(size // 3)
    got_up, got_down, _c, _s = transfer(lp, up, down)
    assert got_up == up and got_down == down


def test_small_windows_under_loss_do_not_start_an_ack_war():
    """Found by a soak of random links (seed 930542 there): 12000-byte buffers,
    7.5% loss, SACK, no timestamps. Out-of-order data counted against the window
    shrank it; the hole's retransmission was trimmed away and both peers dropped
    each other's ACKs outside the shrunken window until both timed out."""
    lp = pair(930542, congestion="newreno", sack=True, timestamps=False, loss=0.07563482770545339,
              duplicate=0.04561685918130683, reorder=0.14287808673902985)
    lp.a.cfg.tcp.recv_buffer = lp.b.cfg.tcp.recv_buffer = 12000
    r = random.Random(930542)
    up, down = r.randbytes(31931), r.randbytes(31931 // 3)
    got_up, got_down, c, s = transfer(lp, up, down)
    assert got_up == up and got_down == down
    assert c.stats["timeouts"] < 10 and s.stats["timeouts"] < 10


def test_many_connections_at_once():
    lp = pair(7, loss=0.01)
    lst = lp.b.tcp_listen(7, backlog=64)
    conns = [lp.a.tcp_connect(B_IP, 7, lp.now) for _ in range(30)]
    lp.run_until(lambda: all(c.state is State.ESTABLISHED for c in conns) and len(lst.accept_queue) == 30,
                 max_time=60)
    servers = [lst.accept() for _ in range(30)]
    payloads = [bytes([i]) * (1000 + i * 100) for i in range(30)]
    for c, p in zip(conns, payloads):
        assert c.send(p) == len(p)
    got = {id(s): bytearray() for s in servers}

    def done():
        for s in servers:
            while (x := s.recv()):
                got[id(s)].extend(x)
        return sum(len(v) for v in got.values()) == sum(len(p) for p in payloads)
    lp.run_until(done, max_time=120)
    assert sorted(bytes(v) for v in got.values()) == sorted(payloads)


def test_syn_queue_overflow_is_counted_and_dropped():
    lp = pair(3)
    lp.b.cfg.tcp.syn_cookies = False
    lst = lp.b.tcp_listen(9, backlog=2, syn_backlog=2)
    conns = [lp.a.tcp_connect(B_IP, 9, lp.now) for _ in range(5)]
    lp.run_until(lambda: len(lst.accept_queue) == 2, max_time=5)
    lp.run_until(lambda: lp.now > 2.0, max_time=10)
    assert len(lst.accept_queue) == 2
    assert lp.b.stats()["drop_tcp_listen_queue_full"] >= 3
    assert lst.stats["syn_queue_overflow"] + lst.stats["accept_queue_overflow"] >= 3
    # accepting makes room: the clients' SYN retransmissions get through
    lst.accept()
    lst.accept()
    lp.run_until(lambda: len(lst.accept_queue) >= 1, max_time=30)
    assert sum(c.state is State.ESTABLISHED for c in conns) >= 3


def test_connect_refused_over_the_link():
    lp = pair(4)
    c = lp.a.tcp_connect(B_IP, 1, lp.now)
    lp.run_until(lambda: c.state is State.CLOSED, max_time=5)
    assert isinstance(c.error, ConnectionRefusedError)
    events = [e for _o, e in lp.a.pop_events()]
    assert Event.ERROR in events


def test_reset_mid_transfer_only_hits_that_connection():
    lp = pair(5)
    lst = lp.b.tcp_listen(80)
    c1 = lp.a.tcp_connect(B_IP, 80, lp.now)
    c2 = lp.a.tcp_connect(B_IP, 80, lp.now)
    lp.run_until(lambda: len(lst.accept_queue) == 2, max_time=5)
    peers = {t.remote_port: t for t in (lst.accept(), lst.accept())}
    s1, s2 = peers[c1.local_port], peers[c2.local_port]
    s1.abort()
    c2.send(b"survivor")
    lp.run_until(lambda: c1.state is State.CLOSED and s2.recv_available() == 8, max_time=5)
    assert isinstance(c1.error, ConnectionResetError)
    assert s2.recv() == b"survivor"


def test_syn_cookies_take_over_when_the_syn_queue_is_full():
    lp = pair(6)
    lst = lp.b.tcp_listen(9, backlog=10, syn_backlog=2)
    conns = [lp.a.tcp_connect(B_IP, 9, lp.now) for _ in range(6)]
    lp.run_until(lambda: len(lst.accept_queue) == 6, max_time=10)
    assert lst.stats["syn_cookies_sent"] >= 4 and lst.stats["syn_cookies_accepted"] >= 4
    servers = [lst.accept() for _ in range(6)]
    cookie_side = [t for t in servers if not t.ts_ok]       # a cookie keeps only the MSS
    assert len(cookie_side) >= 4 and all(t.mss == 1460 for t in cookie_side)
    # data flows both ways over a cookie connection
    t = cookie_side[0]
    c = next(c for c in conns if c.local_port == t.remote_port)
    c.send(b"over a cookie" * 1000)
    lp.run_until(lambda: t.recv_available() == 13000, max_time=20)
    t.send(b"back")
    lp.run_until(lambda: c.recv_available() == 4, max_time=20)
    assert bytes(c.recv()) == b"back"


def test_forged_cookie_ack_gets_a_reset():
    from netstack.wire import Ipv4Repr, TcpRepr
    lp = pair(7)
    lst = lp.b.tcp_listen(9, backlog=10, syn_backlog=1)
    seg = TcpRepr(5555, 9, 1000, 123456, 0x10, 100)
    l4 = seg.emit(b"", lp.a.ip, lp.b.ip)
    ip = Ipv4Repr(lp.a.ip, lp.b.ip, 6, len(l4), 64, 1).emit()
    lp.b.receive_frame(lp.b.mac + lp.a.mac + b"\x08\x00" + ip + l4, 0.0)
    assert lst.stats["syn_cookies_rejected"] == 1 and not lst.accept_queue


@pytest.mark.parametrize("cc", ["newreno", "cubic"])
def test_lossy_link_goodput_is_near_the_mathis_bound(cc):
    """5% loss, 1% duplication, 5% reordering each way, 1 MB each way at a 1 ms
    RTT, seeds 1-6: the bytes arrive intact, every frame fits the MTU (LinkPair
    raises on one that does not), and the transfers take a time near what TCP
    theory allows -- in simulated time, a median of at least a quarter of the
    Mathis bound and no seed below a tenth (measured: medians 0.37-0.39, the
    worst seed 0.15-0.23; 1/25 before RACK-TLP, PRR and D-SACK, when
    retransmission timeouts were most of the time). One seed alone is luck:
    an RTO or two, 200 RTTs each, halve it, and any change to the stack moves
    which seeds draw them, so the median of several is what is asserted."""
    ratios = []
    for seed in range(1, 7):
        goodput, bound = lossy_goodput(seed, cc)
        ratios.append(goodput / bound)
    assert statistics.median(ratios) >= 0.25 and min(ratios) >= 0.1, [round(r, 2) for r in ratios]


def lossy_goodput(seed, cc, loss=0.05):
    """1 MB each way over `loss` loss, 1% duplication, 5% reordering each way:
    asserts the bytes intact and no frame past the MTU (LinkPair raises) or
    internal error; returns (goodput, Mathis bound) in bytes per second."""
    lp = pair(seed, congestion=cc, loss=loss, duplicate=0.01, reorder=0.05)
    lst = lp.b.tcp_listen(80)
    c = lp.a.tcp_connect(B_IP, 80, lp.now)
    lp.run_until(lambda: lst.accept_queue, max_time=60)
    s = lst.accept()
    r = random.Random(seed)
    up, down = r.randbytes(1_000_000), r.randbytes(1_000_000)
    got_up, got_down, elapsed = lp.exchange(c, s, up, down)
    assert got_up == up and got_down == down
    st = {**lp.a.stats(), **lp.b.stats()}
    assert "drop_tx_too_big_for_mtu" not in st and "drop_internal_error" not in st
    return len(up) / elapsed, mathis_bound(1448, 2 * lp.latency, loss)


def _tuned_pair(seed, initial=128 << 10, ceiling=4 << 20, **link):
    lp = pair(seed, **link)
    for side in (lp.a, lp.b):
        t = side.cfg.tcp
        t.recv_buffer = t.send_buffer = ceiling
        t.recv_buffer_initial = t.send_buffer_initial = initial
    return lp


def test_auto_tuned_buffers_grow_with_a_prompt_reader_up_to_their_ceiling():
    """Receive: twice what the application read per RTT (and never less than
    before); send: twice cwnd. Both start at the initial size and stop at the
    configured one; the window scale is chosen for the ceiling."""
    lp = _tuned_pair(5, ceiling=1 << 20)
    up = random.Random(5).randbytes(6_000_000)
    lst = lp.b.tcp_listen(80)
    c = lp.a.tcp_connect(B_IP, 80, lp.now)
    lp.run_until(lambda: lst.accept_queue, max_time=10)
    s = lst.accept()
    assert s.recv_buffer == c.send_limit == 128 << 10 and s.rcv_wscale == 5     # 1 MiB >> 5 fits 16 bits
    budgets, got, sent = [s.recv_buffer], bytearray(), [0]

    def cond():
        sent[0] += c.send(memoryview(up)[sent[0]:sent[0] + 65536])
        while (x := s.recv()):
            got.extend(x)
        if s.recv_buffer != budgets[-1]:
            budgets.append(s.recv_buffer)
        return len(got) == len(up)
    lp.run_until(cond, max_time=60)
    assert bytes(got) == up
    assert budgets == sorted(budgets) and len(budgets) > 2          # grew, in steps, never shrank
    assert budgets[-1] == 1 << 20 and s.rcv_space_at == float("inf")  # at the ceiling: no more measuring
    assert c.send_limit >= min(1 << 20, 2 * int(c.cc.cwnd)) and c.send_limit > 128 << 10


def test_an_application_that_does_not_read_keeps_the_tuned_window_at_its_start():
    """Nothing read, nothing grows: the peer may put no more than the initial
    budget in flight, and what it sent arrives once the application reads."""
    lp = _tuned_pair(6)
    up = random.Random(6).randbytes(1_000_000)
    lst = lp.b.tcp_listen(80)
    c = lp.a.tcp_connect(B_IP, 80, lp.now)
    lp.run_until(lambda: lst.accept_queue, max_time=10)
    s = lst.accept()
    sent = [0]

    def fill():         # until the window is shut to less than a segment and all is acknowledged
        sent[0] += c.send(memoryview(up)[sent[0]:sent[0] + 65536])
        return s.rq_bytes > (128 << 10) - c.mss and not lp.in_flight and c.snd_una == c.snd_max
    lp.run_until(fill, max_time=lp.now + 2.0)
    assert s.recv_buffer == 128 << 10
    assert s.rq_bytes <= 128 << 10                       # the window filled to the budget and no further
    assert (c.snd_max - c.snd_una) & 0xFFFFFFFF <= 128 << 10
    got = bytearray()

    def drain():
        sent[0] += c.send(memoryview(up)[sent[0]:sent[0] + 65536])
        while (x := s.recv()):
            got.extend(x)
        return len(got) == len(up)
    lp.run_until(drain, max_time=lp.now + 60)
    assert bytes(got) == up


def test_a_window_below_one_segment_with_nothing_in_flight_is_filled_when_the_persist_timer_fires():
    """A receiver that does not read leaves the sender a window smaller than an
    MSS and than half the largest it offered: SWS avoidance holds the data and
    nothing is in flight. The persist timer is armed (RFC 9293 3.8.6.2.1's
    override timeout; Linux's probe timer) and, when it fires, exactly what the
    window takes goes; then the window is zero and zero-window probes follow.
    Before, no timer was armed at all: the sender sat until the reader moved."""
    lp = pair(7)
    for side in (lp.a, lp.b):
        side.cfg.tcp.recv_buffer = side.cfg.tcp.send_buffer = 128 << 10
    up = random.Random(7).randbytes(400_000)
    lst = lp.b.tcp_listen(80)
    c = lp.a.tcp_connect(B_IP, 80, lp.now)
    lp.run_until(lambda: lst.accept_queue, max_time=10)
    s = lst.accept()
    sent = [0]

    def small_window():
        sent[0] += c.send(memoryview(up)[sent[0]:sent[0] + 65536])
        return 0 < c.snd_wnd < c.mss and c.snd_una == c.snd_max and not lp.in_flight
    lp.run_until(small_window, max_time=lp.now + 5.0)
    lp.step()                                                   # the sender's output after that ACK
    wnd, queued = c.snd_wnd, s.rq_bytes
    assert wnd < c.max_snd_wnd // 2 and len(c.sbuf) > wnd      # SWS avoidance holds it back
    assert c.persist_at is not None and c.poll_at() is not None and c.rto_at is None
    lp.run_until(lambda: s.rq_bytes > queued, max_time=lp.now + 5.0)
    assert s.rq_bytes == queued + wnd == 128 << 10               # exactly what the window took
    lp.run_until(lambda: c.snd_wnd == 0 and c.persist_at is not None and c.snd_una == c.snd_max,
                 max_time=lp.now + 5.0)
    got = bytearray()

    def drain():
        sent[0] += c.send(memoryview(up)[sent[0]:sent[0] + 65536])
        while (x := s.recv()):
            got.extend(x)
        return len(got) == len(up)
    lp.run_until(drain, max_time=lp.now + 60)
    assert bytes(got) == up


@settings(max_examples=10, deadline=None)
@given(seed=st.integers(0, 10_000), loss=st.floats(0, 0.1), reorder=st.floats(0, 0.2),
       cc=st.sampled_from(["newreno", "cubic", "bbr"]))
def test_lossy_link_with_auto_tuned_buffers_delivers_bytes_intact(seed, loss, reorder, cc):
    lp = _tuned_pair(seed, initial=70_000, ceiling=1 << 20, congestion=cc, loss=loss, reorder=reorder)
    rng = random.Random(seed)
    up, down = rng.randbytes(300_000), rng.randbytes(100_000)
    got_up, got_down, _c, _s = transfer(lp, up, down)
    assert got_up == up and got_down == down
