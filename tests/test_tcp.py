"""TCP as segment tables (in the style of smoltcp's socket/tcp.rs tests): a TCB,
segments in at chosen times, the exact segments out.

Every table runs twice (the autouse `path` fixture): once through the general
path only (`on_segment`, `poll`), once as the Interface drives a TCB -- each
segment offered to the header prediction (`on_segment_fast`) first where it
applies, output taken from `fast_output` first. Both runs must emit exactly
the table's segments, so a rule that differs between the two paths fails."""
import pytest

from netstack.config import TcpConfig
from netstack.tcp import TCB, Event, State
from netstack.wire.tcp import ACK, FIN, PSH, RST, SYN, TcpRepr

LOCAL_IP, REMOTE_IP = b"\xc0\x00\x02\x01", b"\xc0\x00\x02\x02"
LP, RP = 80, 4000
ISS, IRS = 10_000, 90_000


def cfg(**kw):
    base = dict(mss=1460, window_scale=False, timestamps=False, sack=False, recv_buffer=64000,
                send_buffer=64000, rto_initial=1.0, rto_min=0.2, delayed_ack=0.04, time_wait=60.0)
    base.update(kw)
    return TcpConfig(**base)


def seg(seq, ack=0, flags=ACK, window=64000, **kw):
    """A segment from the remote side."""
    return TcpRepr(RP, LP, seq, ack, flags, window, **kw)


PATH = {"fast": False}


@pytest.fixture(autouse=True, params=["general", "fast"])
def path(request):
    PATH["fast"] = request.param == "fast"
    yield request.param
    PATH["fast"] = False


def send(tcb, s, payload=b"", t=0.0):
    """Feed a segment as the Interface does: to the header prediction when it has
    no option but the timestamp (fast run), else -- or when it declines -- to the
    full rules."""
    mv = memoryview(payload)
    if PATH["fast"] and s.mss is None and s.wscale is None and not s.sack_permitted and not s.sack_blocks \
            and not s.urgent and tcb.on_segment_fast(s.seq, s.ack, s.flags, s.window, s.timestamp, mv, t):
        return
    tcb.on_segment(s, mv, t)


def recv(tcb, t=0.0):
    """Take what the TCB sends now, as the Interface does: fast_output first (fast
    run), poll() when it declines."""
    if PATH["fast"]:
        segments = tcb.fast_output(t)
        if segments is not None:
            return [(TcpRepr(LP, RP, seq, ack, flags, window, 0, None, None, False, (), ts), bytes(payload))
                    for seq, ack, window, ts, payload, flags in segments]
    return [(s, bytes(p)) for s, p in tcb.poll(t)]


def recv_one(tcb, t=0.0):
    out = recv(tcb, t)
    assert len(out) == 1, out
    return out[0]


def recv_nothing(tcb, t=0.0):
    assert recv(tcb, t) == []


def ours(seq, ack, flags=ACK, window=64000, **kw):
    """A segment we expect to send."""
    return TcpRepr(LP, RP, seq, ack, flags, window, **kw)


def syn_received(**kw):
    t = TCB(cfg(**kw), LOCAL_IP, LP, REMOTE_IP, RP, ISS, 0.0)
    t.open_passive(seg(IRS, 0, SYN, mss=1460), 0.0)
    return t


def established(**kw):
    t = syn_received(**kw)
    recv(t)
    send(t, seg(IRS + 1, ISS + 1))
    t.events.clear()
    return t


def syn_sent(**kw):
    t = TCB(cfg(**kw), LOCAL_IP, LP, REMOTE_IP, RP, ISS, 0.0)
    t.open_active(0.0)
    return t


# ---- opening ----------------------------------------------------------------------

def test_listen_syn_gets_syn_ack():
    t = syn_received()
    assert t.state is State.SYN_RECEIVED
    assert recv(t) == [(ours(ISS, IRS + 1, SYN | ACK, 64000, mss=1460), b"")]


def test_syn_received_ack_establishes():
    t = syn_received()
    recv(t)
    send(t, seg(IRS + 1, ISS + 1))
    assert t.state is State.ESTABLISHED and Event.CONNECTED in t.events
    assert t.mss == 1460


def test_syn_ack_retransmitted_on_rto_then_given_up():
    t = syn_received(syn_retries=2)
    recv(t, 0.0)
    recv_nothing(t, 0.5)
    assert recv(t, 1.0) == [(ours(ISS, IRS + 1, SYN | ACK, 64000, mss=1460), b"")]
    assert recv(t, 3.0)[0][0].flags == SYN | ACK   # backed off to 2 s
    recv(t, 7.0)
    assert t.state is State.CLOSED and t.error.__class__ is TimeoutError


def test_active_open():
    t = syn_sent(window_scale=True, timestamps=True, sack=True, recv_buffer=1 << 20)
    ((s, _),) = recv(t, 0.0)
    assert (s.seq, s.flags, s.mss, s.sack_permitted, s.wscale) == (ISS, SYN, 1460, True, 5)
    assert s.timestamp == (0, 0)
    send(t, seg(IRS, ISS + 1, SYN | ACK, 30000, mss=1400, wscale=2, sack_permitted=True, timestamp=(500, 0)), b"", 0.05)
    assert t.state is State.ESTABLISHED and Event.CONNECTED in t.events
    assert (t.mss, t.snd_wscale, t.rcv_wscale, t.ts_ok, t.sack_ok, t.snd_wnd) == (1388, 2, 5, True, True, 30000)
    ((a, _),) = recv(t, 0.05)
    assert (a.seq, a.ack, a.flags, a.timestamp) == (ISS + 1, IRS + 1, ACK, (50, 500))
    assert a.window == (1 << 20) >> 5
    assert t.srtt == pytest.approx(0.05)


def test_options_off_when_peer_lacks_them():
    t = syn_sent(window_scale=True, timestamps=True, sack=True, recv_buffer=1 << 20)
    recv(t)
    send(t, seg(IRS, ISS + 1, SYN | ACK, 30000, mss=1400))
    assert (t.ws_ok, t.rcv_wscale, t.ts_ok, t.sack_ok) == (False, 0, False, False)
    ((a, _),) = recv(t)
    assert a.timestamp is None and a.window == 65535


def test_syn_sent_rst_is_refused():
    t = syn_sent()
    recv(t)
    send(t, seg(0, ISS + 1, RST | ACK))
    assert t.state is State.CLOSED and isinstance(t.error, ConnectionRefusedError)


def test_syn_sent_bad_ack_gets_rst():
    t = syn_sent()
    recv(t)
    send(t, seg(IRS, ISS + 77, SYN | ACK))
    assert t.state is State.SYN_SENT
    assert recv(t) == [(TcpRepr(LP, RP, ISS + 77, 0, RST, 0), b"")]


def test_simultaneous_open():
    t = syn_sent()
    recv(t)
    send(t, seg(IRS, 0, SYN, mss=1000))
    assert t.state is State.SYN_RECEIVED
    ((s, _),) = recv(t)
    assert (s.seq, s.ack, s.flags) == (ISS, IRS + 1, SYN | ACK)
    send(t, seg(IRS + 1, ISS + 1))
    assert t.state is State.ESTABLISHED and t.mss == 1000


def test_connect_times_out():
    t = syn_sent(syn_retries=3)
    times = []
    now = 0.0
    while t.state is State.SYN_SENT and now < 100:
        if recv(t, now):
            times.append(now)
        now = round(now + 0.25, 2)
    assert times == [0.0, 1.0, 3.0, 7.0]
    assert isinstance(t.error, TimeoutError)


# ---- receiving ----------------------------------------------------------------------

def test_in_order_data_delayed_ack_then_every_second_segment():
    t = established()
    send(t, seg(IRS + 1, ISS + 1), b"a" * 100, 0.0)
    recv_nothing(t, 0.0)
    assert t.recv() == b"a" * 100
    assert recv(t, 0.04) == [(ours(ISS + 1, IRS + 101, window=64000), b"")]
    send(t, seg(IRS + 101, ISS + 1), b"b" * 1460, 1.0)
    send(t, seg(IRS + 1561, ISS + 1), b"c" * 1460, 1.0)
    ((a, _),) = recv(t, 1.0)
    assert a.ack == IRS + 3021


def test_out_of_order_acked_at_once_with_sack_and_reassembled():
    t = established(sack=True)
    t.sack_ok = True
    send(t, seg(IRS + 1 + 1000, ISS + 1), b"B" * 500)
    ((a, _),) = recv(t)
    assert a.ack == IRS + 1 and a.sack_blocks == ((IRS + 1001, IRS + 1501),)
    send(t, seg(IRS + 1, ISS + 1), b"A" * 1000)
    ((a, _),) = recv(t)
    assert a.ack == IRS + 1501 and a.sack_blocks == ()
    assert bytes(t.recv()) + bytes(t.recv()) == b"A" * 1000 + b"B" * 500


def test_out_of_window_data_is_not_accepted():
    t = established()
    send(t, seg(IRS + 1 + 70000, ISS + 1), b"x" * 10)
    assert t.recv_available() == 0
    assert recv(t) == [(ours(ISS + 1, IRS + 1), b"")]


def test_duplicate_data_is_acked_not_delivered_twice():
    t = established()
    send(t, seg(IRS + 1, ISS + 1), b"hello")
    send(t, seg(IRS + 1, ISS + 1), b"hello")
    assert t.recv() == b"hello" and t.recv() == b""


def test_receive_window_closes_and_reopens():
    t = established(recv_buffer=3000)
    send(t, seg(IRS + 1, ISS + 1), b"x" * 1460)
    send(t, seg(IRS + 1461, ISS + 1), b"y" * 1460)
    ((a, _),) = recv(t)
    assert a.window == 80
    t.recv()
    t.recv()
    ((a, _),) = recv(t)  # window update after reading
    assert a.window == 3000 and a.ack == IRS + 2921


# ---- RST, SYN and ACK validation (RFC 5961) ---------------------------------------------

def test_rst_exact_sequence_resets():
    t = established()
    send(t, seg(IRS + 1, 0, RST))
    assert t.state is State.CLOSED and isinstance(t.error, ConnectionResetError)
    assert Event.ERROR in t.events


def test_rst_in_window_gets_challenge_ack():
    t = established()
    send(t, seg(IRS + 100, 0, RST))
    assert t.state is State.ESTABLISHED
    assert recv(t) == [(ours(ISS + 1, IRS + 1), b"")]


def test_rst_out_of_window_is_ignored():
    t = established()
    send(t, seg(IRS + 1 + 100000, 0, RST))
    assert t.state is State.ESTABLISHED
    recv_nothing(t)


def test_syn_in_established_gets_challenge_ack():
    t = established()
    send(t, seg(IRS + 1, 0, SYN))
    assert t.state is State.ESTABLISHED
    assert recv(t) == [(ours(ISS + 1, IRS + 1), b"")]


def test_ack_of_unsent_data_is_answered_and_dropped():
    t = established()
    send(t, seg(IRS + 1, ISS + 5000), b"data")
    assert t.recv_available() == 0
    assert recv(t) == [(ours(ISS + 1, IRS + 1), b"")]


# ---- sending ------------------------------------------------------------------------------

def test_send_segments_by_mss_and_nagle():
    t = established()
    t.send(b"x" * 3000)
    out = recv(t)
    assert [(s.seq, len(p), s.flags) for s, p in out] == [(ISS + 1, 1460, ACK), (ISS + 1461, 1460, ACK),
                                                          (ISS + 2921, 80, ACK | PSH)]
    t.send(b"y" * 10)
    recv_nothing(t)   # Nagle (Minshall's variant): a small segment waits while a small one is unacked
    send(t, seg(IRS + 1, ISS + 3001))
    ((s, p),) = recv(t)
    assert (s.seq, p) == (ISS + 3001, b"y" * 10)


def test_nodelay_sends_small_segments_at_once():
    t = established()
    t.nodelay = True
    t.send(b"a")
    recv(t)
    t.send(b"b")
    ((s, p),) = recv(t)
    assert p == b"b"


def test_send_window_limits_flight():
    t = established()
    send(t, seg(IRS + 1, ISS + 1, window=2920))
    t.send(b"z" * 5000)
    out = recv(t)
    assert [len(p) for _s, p in out] == [1460, 1460]
    # the rest waits for the window: sending 580 bytes into a tiny window is the
    # silly window syndrome (RFC 9293 3.8.6.2.1)
    send(t, seg(IRS + 1, ISS + 1 + 1460, window=1460 + 580))
    recv_nothing(t)


def test_retransmission_timeout_backoff_and_give_up():
    """The handshake's RTT sample (the SYN-ACK was timed, RFC 6298 2.2) sets the
    RTO to its 200 ms floor; each timeout doubles it; after max_retries the
    connection ends with ETIMEDOUT."""
    t = established(max_retries=3)
    assert t.rto == 0.2
    t.send(b"q" * 100)
    assert recv(t, 0.0)[0][0].seq == ISS + 1
    recv_nothing(t, 0.19)
    assert [len(p) for _s, p in recv(t, 0.2)] == [100]
    recv_nothing(t, 0.59)
    assert len(recv(t, 0.61)) == 1     # 0.4 s later
    assert len(recv(t, 1.42)) == 1     # 0.8 s later
    recv(t, 3.1)                       # 1.6 s later: out of retries
    assert t.state is State.CLOSED and isinstance(t.error, TimeoutError)


def test_rtt_estimation_sets_rto():
    t = established()
    t.srtt, t.rttvar = None, 0.0       # forget the handshake's sample: the first one sets SRTT
    t.send(b"a" * 100)
    recv(t, 0.0)
    send(t, seg(IRS + 1, ISS + 101), b"", 0.1)
    assert t.srtt == pytest.approx(0.1) and t.rto == pytest.approx(0.3)


def test_fast_retransmit_after_three_dup_acks():
    t = established()
    t.send(b"d" * 1460 * 6)
    assert len(recv(t, 0.0)) == 6
    send(t, seg(IRS + 1, ISS + 1 + 1460), b"", 0.01)      # new data acked
    for _ in range(3):
        send(t, seg(IRS + 1, ISS + 1 + 1460), b"", 0.01)  # three duplicates
    assert t.in_recovery
    out = recv(t, 0.01)
    assert out[0][0].seq == ISS + 1 + 1460 and len(out[0][1]) == 1460
    assert t.stats["fast_retransmits"] == 1
    send(t, seg(IRS + 1, ISS + 1 + 1460 * 6), b"", 0.02)  # full ACK ends recovery
    assert not t.in_recovery


def test_zero_window_persist_probe():
    t = established()
    send(t, seg(IRS + 1, ISS + 1, window=0))
    t.send(b"p" * 10)
    recv_nothing(t, 0.0)
    assert t.persist_at is not None
    ((s, p),) = recv(t, t.persist_at)
    assert p == b"p" and s.seq == ISS + 1
    send(t, seg(IRS + 1, ISS + 2, window=1000), b"", 2.0)
    ((s, p),) = recv(t, 2.0)
    assert s.seq == ISS + 2 and p == b"p" * 9


def test_window_closed_under_data_in_flight():
    """Data went out, then the peer's window closed without acknowledging it (its
    buffer filled and it dropped our segments). Our pure ACKs must carry a
    sequence number the peer accepts with a zero window (SEQ = its RCV.NXT =
    our SND.UNA), not SND.MAX, which it drops unread; and once an RTO has rewound
    and the window lets nothing go, the persist timer probes instead of RTOs
    that send nothing. (Both seen together as a two-process deadlock over the ring.)"""
    t = established()
    t.send(b"d" * 3000)
    out = recv(t, 0.0)
    assert sum(len(p) for _s, p in out) == 3000 and t.snd_max == ISS + 1 + 3000
    # the peer has taken nothing of it, and its window is now closed; its data arrives
    send(t, seg(IRS + 1, ISS + 1, ACK | PSH, window=0), b"reply", 0.01)
    t.recv()
    t.ack_now = True
    ((s, p),) = recv(t, 0.01)
    assert s.flags == ACK and p == b"" and s.seq == ISS + 1 and s.ack == IRS + 1 + 5
    # the RTO fires: nothing can go, so the persist timer takes over from it
    rto = t.rto_at
    assert rto is not None
    recv_nothing(t, rto)
    assert t.rto_at is None and t.persist_at is not None
    ((s, p),) = recv(t, t.persist_at)       # a one-byte probe of the window
    assert s.seq == ISS + 1 and p == b"d"
    # the window opens: sending resumes from the first byte the peer lacks
    send(t, seg(IRS + 6, ISS + 2, window=64000), b"", t.persist_at or 30.0)
    out = recv(t, 30.0)
    assert out and out[0][0].seq == ISS + 2


def test_send_buffer_limit_is_backpressure():
    t = established(send_buffer=5000)
    assert t.send(b"x" * 8000) == 5000
    assert t.send_space() == 0 and t.send(b"more") == 0
    recv(t)
    send(t, seg(IRS + 1, ISS + 1 + 2920))
    assert t.send_space() == 2920 and Event.WRITABLE in t.events


# ---- closing ------------------------------------------------------------------------------

def test_passive_close():
    t = established()
    send(t, seg(IRS + 1, ISS + 1, FIN | ACK))
    assert t.state is State.CLOSE_WAIT and Event.PEER_CLOSED in t.events and t.at_eof()
    # the ACK of the FIN waits (delayed ACK) for the application's answer to EOF
    recv_nothing(t)
    t.close()
    # ... so that the FIN carries it: one segment, not an ACK and then a FIN
    assert recv(t, 0.001) == [(ours(ISS + 1, IRS + 2, FIN | ACK), b"")]
    assert t.state is State.LAST_ACK
    send(t, seg(IRS + 2, ISS + 2))
    assert t.state is State.CLOSED and t.error is None and Event.CLOSED in t.events


def test_ack_of_a_fin_is_delayed_at_most_the_delayed_ack_time():
    t = established(delayed_ack=0.04)
    send(t, seg(IRS + 1, ISS + 1, FIN | ACK), b"", 1.0)
    assert t.poll_at() == pytest.approx(1.04)
    recv_nothing(t, 1.03)
    # the application never closes: the FIN is acknowledged at the timer
    assert recv(t, 1.04) == [(ours(ISS + 1, IRS + 2), b"")]
    assert t.state is State.CLOSE_WAIT and t.poll_at() is None


def test_active_close_and_time_wait():
    t = established(time_wait=60.0)
    t.send(b"bye")
    t.close()
    out = recv(t, 0.0)
    assert [(s.seq, s.flags, p) for s, p in out] == [(ISS + 1, ACK | PSH, b"bye"), (ISS + 4, FIN | ACK, b"")]
    assert t.state is State.FIN_WAIT_1
    send(t, seg(IRS + 1, ISS + 5), b"", 0.1)
    assert t.state is State.FIN_WAIT_2
    send(t, seg(IRS + 1, ISS + 5, FIN | ACK), b"", 0.2)
    assert t.state is State.TIME_WAIT
    assert recv(t, 0.2) == [(ours(ISS + 5, IRS + 2), b"")]
    send(t, seg(IRS + 1, ISS + 5, FIN | ACK), b"", 30.0)   # retransmitted FIN: ack again
    assert recv(t, 30.0) == [(ours(ISS + 5, IRS + 2), b"")]
    recv_nothing(t, 89.0)
    assert t.state is State.TIME_WAIT
    recv(t, 90.0)
    assert t.state is State.CLOSED


def _fin_wait_2(**kw):
    t = established(**kw)
    t.close()
    assert recv(t, 0.0) == [(ours(ISS + 1, IRS + 1, FIN | ACK), b"")]
    send(t, seg(IRS + 1, ISS + 2), b"", 0.1)
    assert t.state is State.FIN_WAIT_2
    return t


def test_orphaned_fin_wait_2_ends_after_fin_timeout():
    """The application let go (orphan) and the peer ACKed our FIN but sends none:
    FIN-WAIT-2 ends silently after fin_timeout (Linux's tcp_fin_timeout) --
    whether it was orphaned before the ACK or after; a FIN in time still leads
    to TIME-WAIT."""
    for orphan_at in (0.0, 5.0):
        t = established(fin_timeout=30.0)
        t.close()
        if orphan_at == 0.0:
            t.orphan(0.0)
        recv(t, 0.0)
        send(t, seg(IRS + 1, ISS + 2), b"", 0.1)
        if orphan_at:
            t.orphan(orphan_at)
        start = orphan_at or 0.1
        assert t.timers() == {"timewait_at": pytest.approx(start + 30.0)}
        assert t.poll_at() == pytest.approx(start + 30.0)
        recv_nothing(t, start + 29.9)
        assert t.state is State.FIN_WAIT_2
        assert recv(t, start + 30.0) == []
        assert t.state is State.CLOSED and t.error is None
    t = _fin_wait_2(fin_timeout=30.0, time_wait=60.0)
    t.orphan(0.2)
    send(t, seg(IRS + 1, ISS + 2, FIN | ACK), b"", 10.0)
    assert t.state is State.TIME_WAIT and t.timers() == {"timewait_at": pytest.approx(70.0)}


def test_fin_wait_2_of_a_held_connection_waits_for_the_peer():
    """Not orphaned (a half-close: the application still reads), or fin_timeout 0:
    FIN-WAIT-2 has no timer (RFC 9293) and still takes the peer's data an hour on."""
    for kw, orphan in (({}, False), ({"fin_timeout": 0.0}, True)):
        t = _fin_wait_2(**kw)
        if orphan:
            t.orphan(0.2)
        assert t.timers() == {} and t.poll_at() is None
        send(t, seg(IRS + 1, ISS + 2, ACK | PSH), b"late", 3600.0)
        assert t.state is State.FIN_WAIT_2 and t.recv() == b"late"


def test_simultaneous_close():
    t = established(time_wait=1.0)
    t.close()
    ((s, _),) = recv(t)
    assert s.flags == FIN | ACK and t.state is State.FIN_WAIT_1
    send(t, seg(IRS + 1, ISS + 1, FIN | ACK))
    assert t.state is State.CLOSING
    recv(t)
    send(t, seg(IRS + 2, ISS + 2))
    assert t.state is State.TIME_WAIT


def test_fin_retransmitted_on_rto():
    t = established()
    t.close()
    recv(t, 0.0)
    ((s, _),) = recv(t, 1.0)
    assert s.flags == FIN | ACK and s.seq == ISS + 1


def test_half_close_keeps_receiving():
    t = established()
    t.close()
    recv(t)
    send(t, seg(IRS + 1, ISS + 2), b"still coming")
    assert t.state is State.FIN_WAIT_2 and t.recv() == b"still coming"


def test_abort_sends_rst():
    t = established()
    t.abort()
    assert recv(t) == [(TcpRepr(LP, RP, ISS + 1, 0, RST, 0), b"")]
    assert t.state is State.CLOSED


# ---- options: window scaling, timestamps, PAWS ------------------------------------------

def test_window_scaling_applies_to_later_segments():
    t = TCB(cfg(window_scale=True, recv_buffer=1 << 20), LOCAL_IP, LP, REMOTE_IP, RP, ISS, 0.0)
    t.open_passive(seg(IRS, 0, SYN, 1000, mss=1460, wscale=3), 0.0)
    ((s, _),) = recv(t)
    assert s.wscale == 5 and s.window == 65535
    send(t, seg(IRS + 1, ISS + 1, window=1000))
    assert t.snd_wnd == 8000


def test_paws_drops_old_timestamps():
    t = TCB(cfg(timestamps=True), LOCAL_IP, LP, REMOTE_IP, RP, ISS, 0.0)
    t.open_passive(seg(IRS, 0, SYN, mss=1460, timestamp=(1000, 0)), 0.0)
    recv(t)
    send(t, seg(IRS + 1, ISS + 1, timestamp=(1001, 0)))
    send(t, seg(IRS + 1, ISS + 1, timestamp=(1002, 0)), b"new")
    send(t, seg(IRS + 4, ISS + 1, timestamp=(900, 0)), b"old")
    assert t.stats["paws_dropped"] == 1
    assert t.recv() == b"new" and t.recv() == b""



def test_a_duplicate_dropped_by_paws_is_reported_as_a_dsack():
    """An original that arrives after its retransmission carries an older
    timestamp than the one ts_recent now holds: PAWS drops it (RFC 7323 5.3), and
    the ACK that answers it reports it as a duplicate (RFC 2883), as Linux's
    tcp_send_dupack does -- else the sender never learns its retransmission was
    spurious. A PAWS drop of data at or above RCV.NXT reports nothing."""
    t = TCB(cfg(timestamps=True, sack=True), LOCAL_IP, LP, REMOTE_IP, RP, ISS, 0.0)
    t.open_passive(seg(IRS, 0, SYN, mss=1460, sack_permitted=True, timestamp=(1000, 0)), 0.0)
    recv(t)
    send(t, seg(IRS + 1, ISS + 1, timestamp=(1001, 0)))
    assert t.sack_ok and t.ts_ok
    send(t, seg(IRS + 1, ISS + 1, timestamp=(1010, 0)), b"x" * 100)      # the retransmission, first
    recv(t, 0.5)
    send(t, seg(IRS + 1, ISS + 1, timestamp=(1002, 0)), b"x" * 100, 0.6)  # its original, late
    assert t.stats["paws_dropped"] == 1
    ((a, _),) = recv(t, 0.6)
    assert a.ack == IRS + 101 and a.sack_blocks == ((IRS + 1, IRS + 101),)
    send(t, seg(IRS + 101, ISS + 1, timestamp=(1003, 0)), b"y" * 100, 0.7)  # new data, old stamp
    assert t.stats["paws_dropped"] == 2
    ((a, _),) = recv(t, 0.7)
    assert a.sack_blocks == ()

def test_keepalive_probes_and_timeout():
    t = established()
    t.set_keepalive(True, idle=10, interval=2, count=3)
    recv_nothing(t, 5.0)
    ((s, p),) = recv(t, 10.0)
    assert s.seq == ISS and p == b""   # SND.NXT - 1
    assert len(recv(t, 12.0)) == 1 and len(recv(t, 14.0)) == 1
    recv(t, 16.0)
    assert t.state is State.CLOSED and isinstance(t.error, TimeoutError)


def test_keepalive_probe_goes_at_the_time_poll_at_names():
    """poll_at() says last_recv + idle; at that very time the probe must go, even
    where `now - last_recv` rounds to just below idle (here 99.999999999999):
    a timer due by one test and not by the other fired again and again, sending
    nothing (a livelock on a manual clock, a spin on a real one)."""
    t = established()
    t.set_keepalive(True, idle=100.0, interval=2, count=3)
    t.last_recv = 8100.084000000014
    due = t.poll_at()
    assert due == 8200.084000000013 and due - t.last_recv < 100.0
    ((s, p),) = recv(t, due)
    assert s.seq == ISS and p == b""
    assert t.poll_at() == due + 2      # the next probe, one interval on


def test_keepalive_answer_resets_probing():
    t = established()
    t.set_keepalive(True, idle=10, interval=2, count=3)
    recv(t, 10.0)
    send(t, seg(IRS + 1, ISS + 1), b"", 10.5)
    recv_nothing(t, 12.0)
    assert t.state is State.ESTABLISHED


def test_peer_with_buffer_below_one_mss_still_gets_data():
    t = TCB(cfg(), LOCAL_IP, LP, REMOTE_IP, RP, ISS, 0.0)
    t.open_passive(seg(IRS, 0, SYN, 1000, mss=1460), 0.0)
    recv(t)
    send(t, seg(IRS + 1, ISS + 1, window=1000))
    t.send(b"w" * 5000)
    assert [len(p) for _s, p in recv(t)] == [1000]


# ---- SACK-based recovery and congestion control -------------------------------------------

def test_sack_recovery_retransmits_only_the_hole():
    t = established(sack=True)
    t.sack_ok = True
    t.send(b"s" * 1460 * 6)
    assert len(recv(t, 0.0)) == 6
    base = ISS + 1
    # the first segment is lost; the peer SACKs the other five
    for k in range(3, 7):
        send(t, seg(IRS + 1, base, sack_blocks=((base + 1460, base + 1460 * k),)), b"", 0.01)
    assert t.in_recovery
    out = recv(t, 0.01)
    assert [(s.seq, len(p)) for s, p in out] == [(base, 1460)]
    send(t, seg(IRS + 1, base + 1460 * 6), b"", 0.02)
    assert not t.in_recovery and not t.sacked
    assert t.stats["rescue_retransmits"] == 0 and t.stats["timeouts"] == 0


def test_sack_recovery_rescues_a_lost_tail_once():
    """RFC 6675 NextSeg rule 4: the first and the last of six segments are lost.
    Nothing above the last one can be SACKed to mark it lost, so with the hole
    the sender retransmits the highest unSACKed segment once (rescue) instead of
    waiting for the RTO; a second round of SACKs does not repeat it."""
    t = established(sack=True)
    t.sack_ok = True
    t.send(b"s" * 1460 * 6)
    assert len(recv(t, 0.0)) == 6
    base = ISS + 1
    for k in range(3, 6):
        send(t, seg(IRS + 1, base, sack_blocks=((base + 1460, base + 1460 * k),)), b"", 0.01)
    assert t.in_recovery
    out = recv(t, 0.01)
    assert [(s.seq, len(p)) for s, p in out] == [(base, 1460), (base + 1460 * 5, 1460)]
    assert t.stats["rescue_retransmits"] == 1
    # the retransmitted hole arrives: a partial ACK up to the tail; no second rescue
    send(t, seg(IRS + 1, base + 1460 * 5), b"", 0.02)
    assert [(s.seq, len(p)) for s, p in recv(t, 0.02)] == []
    assert t.stats["rescue_retransmits"] == 1
    # the rescued tail arrives: everything acknowledged, recovery over, no RTO ever
    send(t, seg(IRS + 1, base + 1460 * 6), b"", 0.03)
    assert not t.in_recovery and t.snd_una == base + 1460 * 6 and t.stats["timeouts"] == 0


def test_bogus_sack_blocks_are_ignored():
    t = established(sack=True)
    t.sack_ok = True
    t.send(b"s" * 1460 * 2)
    recv(t)
    send(t, seg(IRS + 1, ISS + 1, sack_blocks=((ISS + 100000, ISS + 200000),)))
    assert not t.sacked


def test_congestion_window_grows_and_halves():
    from netstack.tcp.congestion import Cubic, NewReno
    for cls in (NewReno, Cubic):
        cc = cls(1000, 10)
        assert cc.cwnd == 10000
        cc.on_ack(5000, 0.0, 0.1)
        assert cc.cwnd == 15000          # slow start: +bytes acked
        cc.on_loss_fast(15000, 1.0)
        assert cc.ssthresh == (7500 if cls is NewReno else 10500)
        cc.exit_recovery(0)
        before = cc.cwnd
        for i in range(200):
            cc.on_ack(1000, 1.0 + i * 0.01, 0.1)
        assert cc.cwnd > before          # congestion avoidance grows again
        cc.on_loss_timeout(20000, 5.0)
        assert cc.cwnd == 1000           # loss window after an RTO


def test_cubic_selectable_per_connection():
    from netstack.testing import LinkPair
    from netstack.wire import ip_to_bytes
    lp = LinkPair.make()
    lp.b.tcp_listen(80)
    c = lp.a.tcp_connect(ip_to_bytes("192.0.2.2"), 80, lp.now, congestion="cubic")
    assert c.cc.name == "cubic"
    import pytest as _p
    with _p.raises(ValueError):
        lp.a.tcp_connect(ip_to_bytes("192.0.2.2"), 80, lp.now, congestion="vegas")


def test_pure_ack_after_rto_carries_the_highest_sequence_sent():
    """After an RTO rewinds SND.NXT, ACKs must still be numbered at SND.MAX: a peer
    that already got the data would drop a lower-numbered ACK as old (regression:
    both ends retransmitting at once never heard each other's ACKs)."""
    t = established()
    t.send(b"r" * 3000)
    recv(t, 0.0)
    ((s, p),) = recv(t, 1.0)             # RTO: one segment resent from SND.UNA
    assert s.seq == ISS + 1 and len(p) == 1460
    send(t, seg(IRS + 1, ISS + 1), b"peer data", 1.1)
    t.ack_now = True
    ((a, p),) = recv(t, 1.1)
    assert p == b"" and a.seq == ISS + 3001 and a.ack == IRS + 10


def _sack_established_after_a_sample():
    """An established SACK connection after one RTT sample at 10 ms (SRTT 1.25 ms,
    the handshake at time 0 having measured 0), its min RTT set to 10 ms: RACK's
    reordering window is 2.5 ms. Returns it and the next sequence number it sends.
    (_sack_established_with_rtt below forgets the handshake's sample instead.)"""
    t = established(sack=True)
    t.sack_ok = True
    base = ISS + 1
    t.send(b"r" * 100)
    recv(t, 0.0)
    send(t, seg(IRS + 1, base + 100), b"", 0.01)
    t.min_rtt = 0.01
    return t, base + 100


def test_a_fast_retransmission_counts_once_in_the_pipe_so_a_small_window_sends_behind_it():
    """Entering recovery on duplicate ACKs resends the head: it is lost, not
    both lost-and-in-flight (Linux marks the head lost). With a 2-segment window,
    one segment SACKed and the head counted twice, the pipe was full: nothing
    went out behind the retransmission, and if that was lost again nothing could
    reveal it (RACK needs a later segment delivered) -- an RTO: at 5% loss most
    of our NewReno's RTOs, which Linux does not take. Counted once, a new segment
    follows it; once that one is SACKed, RACK sees the retransmission lost again
    and resends it, with no timeout."""
    t, base = _sack_established_after_a_sample()
    t.cc.cwnd = 2 * 1460                    # a small window, as at 5% loss
    t.send(b"w" * 1460 * 10)
    assert len(recv(t, 1.0)) == 2
    for i in range(3):                      # the head lost, the second segment SACKed, within RACK's window
        send(t, seg(IRS + 1, base, sack_blocks=((base + 1460, base + 2920),)), b"", 1.011 + i * 0.0001)
    assert t.in_recovery and t.stats["rack_losses"] == 0 and t.stats["fast_retransmits"] == 1
    assert [(s.seq, len(p)) for s, p in recv(t, 1.0113)] == [(base, 1460), (base + 2920, 1460)]
    # the retransmission is lost again; the new segment arrives: RACK resends the head
    send(t, seg(IRS + 1, base, sack_blocks=((base + 1460, base + 4380),)), b"", 1.0223)
    resent = [(s.seq, len(p)) for s, p in recv(t, 1.0223 + 0.02)]
    assert (base, 1460) in resent
    assert t.stats["timeouts"] == 0 and t.stats["lost_retransmits"] == 1



def test_rack_takes_no_time_from_a_retransmission_its_ack_predates():
    """RFC 8985 6.2 step 2: an ACK that echoes a timestamp older than a
    retransmission's was sent for the original, so the retransmission's send time
    says nothing. Taken as a delivery (its RTT passed the min_rtt test on a path
    whose delay varies), RACK.xmit_ts jumped to it and the segments sent just
    before it were called lost: an avalanche of spurious retransmissions (17,000
    in 30 MiB through a bridge that only reorders). Here the head was reordered,
    resent, and then acknowledged by its original: nothing else is resent."""
    t, base = _sack_established_after_a_sample()
    t.ts_ok = True
    mss = t.mss
    at = lambda i: base + i * mss      # noqa: E731
    t.cc.cwnd = 40 * mss
    t.min_rtt = 0.0004
    t.send(b"a" * mss * 10)
    recv(t, 1.000)                                      # 0..9, TSval 1000
    t.send(b"b" * mss * 4)
    assert [s.seq for s, p in recv(t, 1.0105)] == [at(10), at(11), at(12), at(13)]
    send(t, seg(IRS + 1, at(0), sack_blocks=((at(1), at(10)),), timestamp=(5000, 1000)), b"", 1.011)
    assert t.in_recovery and at(0) in [s.seq for s, p in recv(t, 1.011)]     # the head resent
    # the original head arrives: the cumulative ACK echoes its TSval (1000), from before the resend
    send(t, seg(IRS + 1, at(10), timestamp=(5001, 1000)), b"", 1.0116)
    assert recv(t, 1.0116) == []
    assert t.stats["rack_losses"] == 0


def test_a_lost_retransmission_is_found_by_the_sack_of_a_later_one():
    """The timestamp test of a retransmission's delivery applies to cumulative
    ACKs only: a SACK echoes the timestamp of the last in-order segment, older
    than any retransmission it reports. Two holes resent in order, the first
    resend lost, the second SACKed: RACK calls the first lost again once the
    reordering window passes, and resends it -- no RTO."""
    t, base = _sack_established_after_a_sample()
    t.ts_ok = True
    mss = t.mss
    at = lambda i: base + i * mss      # noqa: E731
    t.cc.cwnd = 40 * mss
    t.send(b"a" * mss * 10)
    recv(t, 1.000)                                      # TSval 1000
    send(t, seg(IRS + 1, at(0), sack_blocks=((at(6), at(10)), (at(1), at(5))), timestamp=(5000, 1000)), b"", 1.011)
    assert [s.seq for s, p in recv(t, 1.011)] == [at(0), at(5)]      # both holes resent
    # the resend of 5 arrives, that of 0 does not: the SACK still echoes 1000
    send(t, seg(IRS + 1, at(0), sack_blocks=((at(1), at(10)),), timestamp=(5001, 1000)), b"", 1.023)
    assert recv(t, 1.023) == [] and t.rack_at is not None
    assert [s.seq for s, p in recv(t, 1.030)] == [at(0)]
    assert t.stats["lost_retransmits"] == 1 and t.stats["timeouts"] == 0

def test_segments_rack_marks_lost_above_every_sack_are_resent_in_recovery():
    """RACK marks by send time, not by what is SACKed above a segment: here the
    retransmission of the first segment is delivered cumulatively, with the
    segments sent before it (the third and fourth) still missing and nothing
    SACKed any more. They are lost holes for NextSeg and not part of the pipe.
    Counted as in flight (the scoreboard has no hole above SND.UNA), they filled
    the window and waited for the RTO: seen on the 5% echo against Linux, where
    its PAWS check drops reordered originals that arrive after a retransmission."""
    t, base = _sack_established_after_a_sample()
    t.cc.cwnd = 3 * 1460
    t.send(b"w" * 1460 * 10)
    assert [s.seq for s, _p in recv(t, 1.0)] == [base, base + 1460, base + 2920]
    # the first and third are lost; the second is SACKed
    send(t, seg(IRS + 1, base, sack_blocks=((base + 1460, base + 2920),)), b"", 1.011)
    assert [s.seq for s, _p in recv(t, 1.011)] == [base + 4380]
    assert [s.seq for s, _p in recv(t, t.rack_at)] == [base]        # RACK: the first is lost, recovery
    assert t.in_recovery
    # the retransmission arrives: the peer acks up to the third segment, SACKs nothing
    send(t, seg(IRS + 1, base + 2920), b"", 1.0233)
    assert not t.sacked and t.in_recovery
    out = [(s.seq, len(p)) for s, p in recv(t, 1.0233)]
    assert out[:2] == [(base + 2920, 1460), (base + 4380, 1460)]     # both sent before it: lost, resent now
    assert t.stats["timeouts"] == 0


def test_rack_entries_are_the_segments_as_last_sent_when_a_resend_is_shorter():
    """Segments shrink when our ACKs start carrying SACK blocks: the resend of a
    1460-byte segment is 1448 bytes and then 12. RACK's entries follow what was
    sent (as Linux cuts an skb): two entries, each with its own send time and
    flags. One entry for both marked all 1460 bytes retransmitted when only the
    first 1448 were, and a remainder left behind by an exhausted budget waited
    for the RTO."""
    t = established(sack=True)
    t.sack_ok = True
    base = ISS + 1
    t.send(b"w" * 1460 * 4)
    assert len(recv(t, 1.0)) == 4
    send(t, seg(IRS + 1 + 1000, base, ACK), b"x" * 100, 1.005)     # out-of-order data: our ACKs SACK it
    for i in range(3):
        send(t, seg(IRS + 1, base, sack_blocks=((base + 1460, base + 5840),)), b"", 1.011 + i * 0.0001)
    assert t.in_recovery
    assert [(s.seq, len(p)) for s, p in recv(t, 1.0113)] == [(base, 1448), (base + 1448, 12)]
    assert [(e[0], e[1], e[2], e[3]) for e in t.xmit][:2] == [(base, base + 1448, 1.0113, True),
                                                             (base + 1448, base + 1460, 1.0113, True)]
    # the rest of an entry a resend does not cover keeps its time and flags, and its
    # place in send order (the entries above are SACKed: this one is made up for the cut)
    made = [base + 5840, base + 7300, 1.001, False, False]
    t.xmit.append(made)
    t.xmit_order = {id(made): made, **t.xmit_order}          # sent before the resends above
    t._record_xmit(base + 5840, 1000, 1.02, True)
    assert [(e[0], e[1], e[2], e[3]) for e in t.xmit][-2:] == [(base + 5840, base + 6840, 1.02, True),
                                                              (base + 6840, base + 7300, 1.001, False)]
    assert [e[0] for e in t.xmit_order.values()] == [base + 6840, base, base + 1448, base + 5840]


def _ts_sack_established():
    t = TCB(cfg(timestamps=True, sack=True), LOCAL_IP, LP, REMOTE_IP, RP, ISS, 0.0)
    t.open_passive(seg(IRS, 0, SYN, mss=1460, sack_permitted=True, timestamp=(1000, 0)), 0.0)
    recv(t)
    send(t, seg(IRS + 1, ISS + 1, timestamp=(1001, 0)))
    assert t.ts_ok and t.sack_ok
    return t


@pytest.mark.parametrize("reordered", [True, False])
def test_eifel_undoes_a_fast_recovery_the_original_segment_made_needless(reordered):
    """RFC 3522, as Linux's tcp_packet_delayed: the ACK that covers the
    episode's first retransmission echoes the timestamp of the segment that
    filled the hole. Older than the retransmission: the original arrived (it
    was reordered), the loss was none, and the window comes back as it was.
    Echoing the retransmission's own: a real loss, the reduction stays."""
    t = _ts_sack_established()
    base = ISS + 1
    t.send(b"e" * 1448 * 8)
    out = recv(t, 1.0)
    assert len(out) == 8
    sent_ts = out[0][0].timestamp[0]                 # the original's TSval (1000 ms)
    before = t.cc.cwnd
    for i in range(3):                               # the first is missing, the rest SACKed
        send(t, seg(IRS + 1, base, sack_blocks=((base + 1448, base + 1448 * (3 + i)),), timestamp=(1010 + i, sent_ts)),
             b"", 1.010 + i * 0.001)
    assert t.in_recovery
    ((rs, _p), *_rest) = recv(t, 1.013)
    assert rs.seq == base and rs.timestamp[0] > sent_ts and t.cc.cwnd < before
    # the hole fills: with the reordered original (its TSval echoed) or with the retransmission
    echoed = sent_ts if reordered else rs.timestamp[0]
    send(t, seg(IRS + 1, base + 1448 * 8, timestamp=(1020, echoed)), b"", 1.02)
    assert not t.in_recovery
    if reordered:
        assert t.stats["undo_eifel"] == 1 and t.cc.cwnd == before
    else:
        assert t.stats["undo_eifel"] == 0 and t.cc.cwnd < before


def test_sack_recovery_sends_new_data_as_the_pipe_drains():
    """RFC 6675: in recovery, SACKs that shrink the pipe let new segments out
    (where NewReno would wait for window inflation)."""
    t = established(sack=True)
    t.sack_ok = True
    t.send(b"n" * 1460 * 20)
    first = recv(t, 0.0)
    assert len(first) == 10                       # the initial window
    base = ISS + 1
    sent_before = t.snd_max
    new = []
    for k in range(2, 11):                       # segment 1 lost, 2..10 SACKed one by one
        send(t, seg(IRS + 1, base, sack_blocks=((base + 1460, base + 1460 * k),)), b"", 0.01 * k)
        new += [(s.seq, len(p)) for s, p in recv(t, 0.01 * k)]
    assert (base, 1460) in new                   # the hole, retransmitted
    assert any(s >= sent_before for s, _n in new)   # and new data went out
    assert t.in_recovery and t.stats["fast_retransmits"] == 1


def test_state_changes_follow_the_transition_table_and_reach_the_trace_hook():
    """Every state change goes through _set_state: allowed ones reach the trace
    hook in order, an illegal one raises a TcpError naming both states."""
    from netstack.tcp import TcpError
    seen = []
    t = TCB(cfg(), LOCAL_IP, LP, REMOTE_IP, RP, ISS, 0.0)
    t.trace = lambda tcb, old, new: seen.append((old, new))
    t.open_passive(seg(IRS, 0, SYN, mss=1460), 0.0)
    recv(t)
    send(t, seg(IRS + 1, ISS + 1))
    t.close()
    recv(t)
    assert seen == [(State.CLOSED, State.SYN_RECEIVED), (State.SYN_RECEIVED, State.ESTABLISHED),
                    (State.ESTABLISHED, State.FIN_WAIT_1)]
    with pytest.raises(TcpError, match="FIN-WAIT-1 -> SYN-SENT"):
        t._set_state(State.SYN_SENT)
    assert t.state is State.FIN_WAIT_1


def test_the_timer_model_gives_poll_at():
    """timers() lists the armed timers; poll_at is the earliest of them, and an
    idle keepalive never hides an earlier RTO."""
    t = established()
    assert t.timers() == {}
    t.send(b"x" * 100)
    recv(t, 1.0)
    assert set(t.timers()) == {"rto_at"} and t.poll_at() == t.rto_at
    t.set_keepalive(True, idle=7200.0)
    assert t.poll_at() == t.rto_at          # the keepalive deadline is hours away


def test_data_beyond_the_offered_window_is_acked_and_dropped():
    """RFC 9293 3.10.7.4: only data inside the window we offered may enter the
    out-of-order queue. Without window scaling we offer 65535 although the
    buffer holds more: a segment past that edge is answered by an ACK and
    dropped, and one across the edge is cut at it."""
    t = established(recv_buffer=200_000)
    edge = IRS + 1 + 65535
    send(t, seg(edge + 10, ISS + 1), b"x" * 100)
    assert not t.ooo and t.ooo_bytes == 0
    assert recv(t) == [(ours(ISS + 1, IRS + 1, window=65535), b"")]
    send(t, seg(edge - 50, ISS + 1), b"y" * 100)          # across the right edge
    assert t.ooo_bytes == 50
    ((a, _),) = recv(t)
    assert a.ack == IRS + 1
    # the hole fills: only bytes inside the window reach the application
    send(t, seg(IRS + 1, ISS + 1), b"z" * 1000)
    assert t.recv_available() == 1000 and t.rcv_nxt == IRS + 1001


def test_zero_window_probes_resend_the_byte_at_snd_una():
    """A peer that holds its window at zero and does not acknowledge the probe's
    byte gets that same byte again (SEQ = SND.UNA) at every persist expiry --
    never the next one: one byte at most goes into a zero window."""
    t = established()
    send(t, seg(IRS + 1, ISS + 1, window=0))
    t.send(b"abcdef")
    recv_nothing(t, 0.0)
    probes = []
    for _ in range(3):
        at = t.persist_at
        ((s, p),) = recv(t, at)
        probes.append((s.seq, p))
        send(t, seg(IRS + 1, ISS + 1, window=0), b"", at)   # the probe's byte is not taken
    assert probes == [(ISS + 1, b"a")] * 3
    assert t.snd_nxt == ISS + 2 and t.rto_at is None
    send(t, seg(IRS + 1, ISS + 2, window=1000), b"", 100.0)     # the window opens, the byte is taken
    ((s, p),) = recv(t, 100.0)
    assert s.seq == ISS + 2 and p == b"bcdef"


# ---- RACK-TLP (RFC 8985), PRR (RFC 6937), D-SACK (RFC 2883) -----------------------------------

def _sack_established_with_rtt(rtt=0.01):
    """ESTABLISHED with SACK and an RTT measured (10 ms): one segment out and its ACK."""
    t = established(sack=True)
    t.sack_ok = True
    t.srtt, t.rttvar, t.min_rtt = None, 0.0, None     # the handshake's (zero) sample forgotten
    t.send(b"r" * 100)
    recv(t, 0.0)
    send(t, seg(IRS + 1, ISS + 101), b"", rtt)
    assert t.srtt is not None and t.snd_una == t.snd_max
    return t, ISS + 101


def test_a_lone_segment_gets_a_probe_at_the_rto_deadline_not_a_timeout():
    """RFC 8985 7.2: PTO = min(2 SRTT + WCDelAckT, time to the RTO). One small
    segment outstanding: its PTO (2 x 10 ms + 200 ms) passes the 200 ms RTO, so
    the probe goes at the RTO's deadline instead of it -- the segment again,
    the window kept, the RTO restarted without backoff (7.3). Only if the probe
    is not answered either does the RTO fire. (Before, the RTO fired and the
    window collapsed: seen in the 5% simulations as timeouts on idle
    request/response connections.)"""
    t, base = _sack_established_with_rtt()
    t.send(b"q" * 300)
    out = recv(t, 0.02)
    assert [(s.seq, len(p)) for s, p in out] == [(base, 300)]
    cwnd, rto = t.cc.cwnd, t.rto
    deadline = t.rto_at
    assert t.tlp_at == deadline                            # clamped to the RTO's deadline
    out = recv(t, deadline)
    assert [(s.seq, len(p)) for s, p in out] == [(base, 300)]
    assert t.stats["tlp_probes"] == 1 and t.stats["timeouts"] == 0 and t.cc.cwnd == cwnd
    assert t.rto_at == pytest.approx(deadline + rto) and t.rto == rto      # restarted, not backed off
    out = recv(t, t.rto_at)                                # no answer to the probe either: the RTO
    assert [(s.seq, len(p)) for s, p in out] == [(base, 300)]
    assert t.stats["timeouts"] == 1 and t.cc.cwnd < cwnd


def test_tail_loss_probe_retransmits_the_last_segment_before_the_rto():
    """RFC 8985 7: three segments, none acknowledged. At the probe timeout (two
    RTTs, far before the 200 ms+ RTO) the last segment goes again; its SACK
    then starts recovery for the two before it, RACK marks them lost, no RTO."""
    t, base = _sack_established_with_rtt()
    t.send(b"t" * 1460 * 3)
    assert len(recv(t, 0.02)) == 3
    assert t.tlp_at is not None and t.tlp_at < t.rto_at
    assert t.tlp_at == pytest.approx(0.02 + 2 * t.srtt)
    probe_at = t.tlp_at
    out = recv(t, probe_at)
    assert [(s.seq, len(p)) for s, p in out] == [(base + 2920, 1460)]
    assert t.stats["tlp_probes"] == 1
    # the probe's SACK: the last segment arrived, the first two did not
    now = probe_at + 0.011
    send(t, seg(IRS + 1, base, sack_blocks=((base + 2920, base + 4380),)), b"", now)
    assert t.in_recovery and t.stats["rack_losses"] == 2
    out = recv(t, now)
    assert [(s.seq, len(p)) for s, p in out][:1] == [(base, 1460)]
    assert t.stats["timeouts"] == 0


def test_rack_marks_a_loss_that_too_few_sacks_would_not():
    """Two segments in flight, the first lost: one SACK is below RFC 6675's
    threshold, but the SACKed segment was sent after the hole, so once the hole
    has waited RACK.rtt + reo_wnd it is lost and retransmitted (the reordering
    timer says when)."""
    t, base = _sack_established_with_rtt()
    t.set_nodelay(True)
    t.send(b"a" * 1460)
    recv(t, 0.02)
    t.send(b"b" * 1460)
    recv(t, 0.021)
    send(t, seg(IRS + 1, base, sack_blocks=((base + 1460, base + 2920),)), b"", 0.031)
    assert not t.in_recovery
    assert t.rack_at is not None and t.rack_at > 0.031          # within the reordering window: wait
    out = recv(t, t.rack_at)
    assert t.in_recovery and [(s.seq, len(p)) for s, p in out][:1] == [(base, 1460)]


def test_rack_sees_a_lost_retransmission():
    """RFC 6675 cannot tell a retransmission was lost (the hole looks repaired);
    RACK can: segments sent after it are delivered, it is not, past the
    reordering window -- so it goes again, long before the RTO."""
    t, base = _sack_established_with_rtt()
    t.send(b"s" * 1460 * 8)
    recv(t, 0.02)
    for k in range(2, 5):        # the first segment lost
        send(t, seg(IRS + 1, base, sack_blocks=((base + 1460, base + 1460 * k),)), b"", 0.03)
    assert t.in_recovery
    assert [(s.seq, len(p)) for s, p in recv(t, 0.03)][0] == (base, 1460)     # retransmitted at 0.03
    t.send(b"n" * 1460 * 4)      # new data, sent after the retransmission as deliveries allow
    send(t, seg(IRS + 1, base, sack_blocks=((base + 1460, base + 1460 * 8),)), b"", 0.032)
    newer = [(s.seq, len(p)) for s, p in recv(t, 0.032)]
    assert newer and all(seq >= base + 1460 * 8 for seq, _ in newer)
    top = max(seq + n for seq, n in newer)
    # the new segments arrive, the retransmission does not
    send(t, seg(IRS + 1, base, sack_blocks=((base + 1460, top),)), b"", 0.05)
    assert t.rack_at is not None or t.stats["lost_retransmits"] == 1
    out = recv(t, t.rack_at or 0.05)
    assert t.stats["lost_retransmits"] == 1 and t.stats["timeouts"] == 0
    assert (base, 1460) in [(s.seq, len(p)) for s, p in out]


def test_a_duplicate_segment_is_reported_with_a_dsack_block():
    """RFC 2883: data that was already here is acknowledged with a first SACK
    block naming it, once."""
    t = established(sack=True)
    t.sack_ok = True
    send(t, seg(IRS + 1, ISS + 1), b"x" * 100)
    recv(t, 1.0)
    send(t, seg(IRS + 1, ISS + 1), b"x" * 100, 1.1)          # again
    ((a, _),) = recv(t, 1.1)
    assert a.sack_blocks == ((IRS + 1, IRS + 101),) and a.ack == IRS + 101
    t.ack_now = True
    ((a, _),) = recv(t, 1.2)
    assert a.sack_blocks == ()


def test_a_dsack_widens_the_reordering_window():
    t, base = _sack_established_with_rtt()
    before = t._reo_wnd()
    t.send(b"s" * 1460)
    recv(t, 0.02)
    send(t, seg(IRS + 1, base + 1460, sack_blocks=((base, base + 1460),)), b"", 0.03)    # D-SACK
    assert t.stats["dsacks_received"] == 1 and t._reo_wnd() == pytest.approx(2 * before)


def test_dsacks_widen_the_reordering_window_once_per_round_up_to_srtt():
    """RFC 8985 6.2 step 4: D-SACKs widen reo_wnd by min_rtt / 4 once per round
    trip (more D-SACKs of the same round add nothing), past min_rtt when the
    rounds go on (the old cap of 4 quarters held it at min_rtt), never past
    SRTT."""
    t, base = _sack_established_with_rtt()
    now = 0.02
    una = base
    for rnd in range(1, 8):
        t.send(b"s" * 1460)
        recv(t, now)
        for _ in range(3):                  # three D-SACKs in this round: one widening
            send(t, seg(IRS + 1, una, sack_blocks=((una - 1460, una),)), b"", now + 0.001)
        assert t.reo_wnd_mult == 1 + rnd, rnd
        send(t, seg(IRS + 1, una + 1460), b"", now + 0.002)     # the round ends: SND.UNA passes it
        una += 1460
        now += 0.01
    t.srtt = 20 * t.min_rtt                 # a path whose queues vary: SRTT well above min_rtt
    assert t._reo_wnd() == pytest.approx(8 * t.min_rtt / 4)      # past min_rtt
    # off-path forgeries widen nothing: a D-SACK on an ACK of data never sent, or
    # on a segment outside the receive window, is not taken
    t.send(b"s" * 1460)
    recv(t, now)
    for forged in (seg(IRS + 1, una + 10 * 1460, sack_blocks=((una - 1460, una),)),
                   seg(IRS + 1 + (1 << 30), una, sack_blocks=((una - 1460, una),))):
        send(t, forged, b"", now + 0.001)
    assert t.reo_wnd_mult == 8 and t.stats["dsacks_received"] == 7 * 3
    t.srtt = t.min_rtt                      # the cap
    assert t._reo_wnd() == pytest.approx(t.min_rtt)


def test_prr_sends_in_proportion_to_what_was_delivered():
    """RFC 6937: with pipe above ssthresh, each ACK lets out about ssthresh /
    RecoverFS of what it delivered -- not a burst of cwnd - pipe at once."""
    t, base = _sack_established_with_rtt()
    t.cc.cwnd = 20 * 1460
    t.send(b"p" * 1460 * 20)
    assert len(recv(t, 0.02)) == 20
    for k in range(2, 5):        # segment 0 lost, 1..3 SACKed: recovery, ssthresh = 10 segments
        send(t, seg(IRS + 1, base, sack_blocks=((base + 1460, base + 1460 * k),)), b"", 0.03)
    assert t.in_recovery and t.cc.ssthresh == 10 * 1460
    recv(t, 0.03)
    out0 = t.prr_out
    send(t, seg(IRS + 1, base, sack_blocks=((base + 1460, base + 1460 * 6),)), b"", 0.031)   # 2 more delivered
    recv(t, 0.031)
    assert t.prr_delivered == 2 * 1460          # counted from the start of recovery
    assert t.prr_out - out0 <= 1460 * 2       # about half of the 2 segments delivered, rounded up


def test_frto_undoes_a_spurious_timeout():
    """RFC 5682: the RTO fires although nothing was lost (the path slowed down).
    The first segment goes again; the ACK of it lets two new segments out
    instead of a go-back-N; the next ACK covers data never retransmitted: the
    timeout was spurious, the window comes back, nothing else is resent."""
    t, base = _sack_established_with_rtt()
    t.cc.cwnd = 20 * 1460
    t.send(b"f" * 1460 * 8)
    assert len(recv(t, 0.02)) == 8
    cwnd = t.cc.cwnd
    out = recv(t, t.rto_at)                     # the timeout: the first segment again
    assert [(s.seq, len(p)) for s, p in out] == [(base, 1460)] and t.frto == 1
    assert t.cc.cwnd == t.mss
    t.send(b"n" * 1460 * 4)                     # new data waiting
    send(t, seg(IRS + 1, base + 1460), b"", 0.5)          # its ACK: F-RTO step 2b
    out = recv(t, 0.5)
    assert [s.seq for s, _p in out] == [base + 8 * 1460, base + 9 * 1460]   # two NEW segments
    send(t, seg(IRS + 1, base + 4 * 1460), b"", 0.51)     # data sent before the RTO arrived
    assert t.stats["spurious_rtos"] == 1 and t.stats["undo_frto"] == 1
    assert t.cc.cwnd >= cwnd and t.frto == 0
    assert [s.seq for s, _p in recv(t, 0.51)] != [base + 1460]   # no go-back-N retransmission


def test_frto_falls_back_on_a_duplicate_ack():
    """A duplicate ACK after the timeout: the loss was real, go-back-N goes on."""
    t, base = _sack_established_with_rtt()
    t.send(b"g" * 1460 * 4)
    recv(t, 0.02)
    recv(t, t.rto_at)
    assert t.frto == 1
    send(t, seg(IRS + 1, base), b"", 0.5)                  # duplicate ACK
    assert t.frto == 0 and t.snd_nxt == base and t.stats["undo_frto"] == 0


def test_dsack_of_every_retransmission_undoes_the_reduction():
    """All retransmissions of a recovery come back as duplicates (D-SACK): none
    was needed (reordering, not loss), so the window reduction is undone
    (TcpConfig.dsack_undo, off by default: see its note)."""
    t, base = _sack_established_with_rtt()
    t.cfg.dsack_undo = True
    t.cc.cwnd = 20 * 1460
    t.send(b"d" * 1460 * 10)
    recv(t, 0.02)
    for k in range(2, 5):
        send(t, seg(IRS + 1, base, sack_blocks=((base + 1460, base + 1460 * k),)), b"", 0.03)
    assert t.in_recovery
    before = t.undo_cwnd
    retrans = [(s.seq, len(p)) for s, p in recv(t, 0.03)]
    assert (base, 1460) in retrans and t.undo_retrans == len([r for r in retrans if r[0] < base + 4 * 1460])
    # the original first segment was only late: everything arrives, and the
    # retransmission is reported as a duplicate
    send(t, seg(IRS + 1, base + 1460 * 10, sack_blocks=((base, base + 1460),)), b"", 0.04)
    assert t.stats["undo_dsack"] == 1 and t.cc.cwnd >= before


def test_the_ack_of_a_zero_window_probe_is_taken():
    """Our receive window is zero and the peer probes it with data at RCV.NXT:
    the data is not accepted, but the probe's ACK is (RFC 9293 3.10.7.4's
    allowance): our send buffer drains by it. Without that, two peers with
    full windows deadlocked, each retransmitting what the other had."""
    t = established(recv_buffer=3000)
    t.send(b"o" * 2000)
    assert sum(len(p) for _s, p in recv(t, 0.0)) == 2000
    send(t, seg(IRS + 1, ISS + 1), b"i" * 1460, 0.01)
    send(t, seg(IRS + 1461, ISS + 1), b"i" * 1540, 0.01)   # our buffer is full now: window 0
    recv(t, 0.01)
    assert t._rcv_window() == 0
    # the peer probes with one byte at RCV.NXT and acknowledges all our data
    send(t, seg(IRS + 3001, ISS + 2001, window=64000), b"p", 0.5)
    assert t.snd_una == ISS + 2001 and len(t.sbuf) == 0        # the ACK was taken
    assert t.rcv_nxt == IRS + 3001 and t.recv_available() == 3000      # the byte was not
    ((a, p),) = recv(t, 0.5)
    assert a.ack == IRS + 3001 and a.window == 0 and p == b""


def test_next_deadline_is_the_earliest_of_the_timer_model():
    t = established()
    for name in TCB.TIMERS:
        setattr(t, name, None)
    assert t._next_deadline() is None
    for k, name in enumerate(TCB.TIMERS):
        for other in TCB.TIMERS:
            setattr(t, other, 100.0 + TCB.TIMERS.index(other))
        setattr(t, name, 5.0 + k)
        assert t._next_deadline() == 5.0 + k == min(t.timers().values())


def test_a_data_carrying_ack_in_recovery_lets_the_pipe_send():
    """Data both ways: the peer's ACKs carry data, so none is a duplicate ACK.
    In SACK recovery each ACK that delivers data (new SACKed bytes) still runs
    the send loop (RFC 6937 / RFC 6675 5 (C)); waiting for a duplicate ACK left
    a lost hole unsent until the RTO."""
    t, base = _sack_established_with_rtt()
    t.send(b"s" * 1460 * 8)
    assert len(recv(t, 0.02)) == 8
    rn = IRS + 1
    for k in range(2, 5):                        # the first lost; SACKs on pure ACKs start recovery
        send(t, seg(rn, base, sack_blocks=((base + 1460, base + 1460 * k),)), b"", 0.03)
    assert t.in_recovery
    assert [(s.seq, len(p)) for s, p in recv(t, 0.03)][:1] == [(base, 1460)]
    t.send(b"n" * 1460 * 4)
    sent = []
    for k in range(5, 9):                        # now the peer sends data with each ACK
        send(t, seg(rn, base, sack_blocks=((base + 1460, base + 1460 * k),)), b"d" * 100, 0.031 + k / 1000)
        rn += 100
        sent += [(s.seq, len(p)) for s, p in recv(t, 0.031 + k / 1000) if p]
    assert t.dupacks == 3                        # none of the data-carrying ACKs counted as one
    assert any(seq >= base + 1460 * 8 for seq, _n in sent)       # new data went out as the pipe drained


def test_after_an_rto_a_retransmission_rack_sees_lost_goes_at_once():
    """Go-back-N after a timeout: the resent first segment is acknowledged, the
    next two go again together; the first of those is lost, the second arrives
    (SACKed). RACK marks the lost one once the reordering window has passed and
    it is resent then -- not at the next, backed-off RTO."""
    t, base = _sack_established_with_rtt()
    t.frto = 0
    t.cfg.frto = False
    t.send(b"s" * 1460 * 6)
    assert len(recv(t, 0.02)) == 6
    rto = t.rto_at
    assert [(s.seq, len(p)) for s, p in recv(t, rto)] == [(base, 1460)]    # everything lost
    send(t, seg(IRS + 1, base + 1460), b"", rto + 0.005)
    again = [(s.seq, len(p)) for s, p in recv(t, rto + 0.005)]
    assert again == [(base + 1460, 1460), (base + 2920, 1460)]          # slow start: two at once
    # (later than min_rtt after the resend: RACK takes the SACK as the retransmission's, not the original's)
    send(t, seg(IRS + 1, base + 1460, sack_blocks=((base + 2920, base + 4380),)), b"", rto + 0.017)
    assert not t.in_recovery and t.rack_at is not None
    out = [(s.seq, len(p)) for s, p in recv(t, t.rack_at)]
    assert (base + 1460, 1460) in out
    assert t.stats["timeouts"] == 1 and t.stats["lost_retransmits"] == 1


def test_tail_loss_probe_is_armed_again_when_recovery_ends_with_data_in_flight():
    """No probe runs during recovery; when it ends with data still in flight, the
    probe timeout is armed again (else a tail loss after recovery waits for the RTO)."""
    t, base = _sack_established_with_rtt()
    t.send(b"s" * 1460 * 12)
    assert len(recv(t, 0.02)) == 10                  # the initial window
    send(t, seg(IRS + 1, base, sack_blocks=((base + 1460, base + 1460 * 4),)), b"", 0.03)
    assert t.in_recovery and t.tlp_at is None
    recover = t.recover
    assert [(s.seq, len(p)) for s, p in recv(t, 0.03)][:1] == [(base, 1460)]
    send(t, seg(IRS + 1, base, sack_blocks=((base + 1460, base + 1460 * 10),)), b"", 0.032)
    out = [(s.seq, len(p)) for s, p in recv(t, 0.032)]
    # the last of the data, sent in recovery -- and its last segment once more: RFC 6675's
    # rescue, the only cover a lost tail has while no probe runs (measured: without it the
    # tail of a lossy BBR transfer waited for the RTO)
    assert out == [(recover, 1460), (recover + 1460, 1460), (recover + 1460, 1460)]
    send(t, seg(IRS + 1, recover), b"", 0.04)    # the hole repaired: recovery ends, new data in flight
    assert not t.in_recovery and t.snd_max - t.snd_una > t.mss     # (one segment: PTO >= RTO, none armed)
    assert t.tlp_at is not None and t.tlp_at < t.rto_at


def test_a_pure_ack_is_never_numbered_past_the_peers_window():
    """After an RTO rewound snd_nxt, with the peer's window down to one segment
    (its buffer full), our ACK of its data carries SEQ = SND.UNA + SND.WND, not
    snd_max: a sequence number past the right edge is unacceptable (RFC 9293
    3.10.7.4) and the peer would drop every ACK we send (a deadlock seen over the
    shared-memory ring: both sides at retries=6)."""
    t, base = _sack_established_with_rtt()
    t.send(b"s" * 1460 * 8)
    assert len(recv(t, 0.02)) == 8
    rto = t.rto_at
    out = recv(t, rto)                               # everything lost: resend from SND.UNA
    assert out[0][0].seq == base
    send(t, seg(IRS + 1, base, window=1460), b"d" * 100, rto + 0.01)   # peer data; its window one segment
    t.ack_now = True
    acks = [s for s, p in recv(t, rto + 0.011) if not p]
    assert acks and all(a.seq == base + 1460 for a in acks), [a.seq - base for a in acks]
    assert acks[-1].ack == IRS + 101



def test_a_pure_ack_at_the_right_edge_of_our_window_is_taken_and_one_past_it_is_not():
    """A sender whose SND.NXT is past our window numbers its ACKs at the window's
    right edge (Linux's tcp_acceptable_seq, our _ack_seq above). The letter of RFC
    9293's table refuses SEQ = RCV.NXT + RCV.WND; Linux takes it, and so do we:
    refused, each such ACK was dropped with its SACK blocks (172 of them in a 3 MB
    lossy echo, every one a spurious retransmission later). One past the edge is
    still unacceptable: answered by an ACK, its acknowledgement not taken."""
    t = established()
    t.send(b"d" * 1000)
    recv(t)
    edge = IRS + 1 + t._rcv_window()
    send(t, seg(edge + 1, ISS + 1 + 500), b"", 0.01)          # past the edge: dropped
    assert t.snd_una == ISS + 1 and t.stats["unacceptable_dropped"] == 1
    assert recv(t, 0.01) == [(ours(ISS + 1001, IRS + 1), b"")]
    send(t, seg(edge, ISS + 1 + 500), b"", 0.02)              # at the edge: its ACK counts
    assert t.snd_una == ISS + 1 + 500 and t.stats["unacceptable_dropped"] == 1


def test_sack_blocks_above_the_recovery_point_outlive_the_recovery():
    """The scoreboard above the cumulative ACK that ends a recovery stays: those
    bytes are still SACKed. A receiver with more islands than fit in its option
    does not report the older ones again, so a scoreboard cleared at the end of
    recovery believed SACKed data lost and resent it (half of the retransmissions
    of a 5% lossy BBR echo were of data the peer held)."""
    t, base = _sack_established_after_a_sample()
    mss = 1460
    at = lambda i: base + i * mss      # noqa: E731
    t.cc.cwnd = 40 * mss
    t.send(b"w" * mss * 30)
    recv(t, 1.0)
    send(t, seg(IRS + 1, at(0), sack_blocks=((at(1), at(10)),)), b"", 1.011)     # the head lost: recovery
    assert t.in_recovery and t.recover == at(30)
    t.send(b"n" * mss * 12)
    recv(t, 1.0111)
    send(t, seg(IRS + 1, at(11), sack_blocks=((at(12), at(30)),)), b"", 1.012)
    assert max(s.seq for s, p in recv(t, 1.0121)) == at(41)     # new data 30..41 went out in recovery
    send(t, seg(IRS + 1, at(11), sack_blocks=((at(32), at(33)), (at(12), at(30)))), b"", 1.013)
    assert [s.seq for s, p in recv(t, 1.0131)] == [at(30), at(31)]     # NextSeg (3): holes not yet lost
    # the ACK past the recovery point; the island at 32 no longer fits the option
    send(t, seg(IRS + 1, at(31), sack_blocks=((at(38), at(40)), (at(36), at(37)), (at(34), at(35)))), b"", 1.014)
    resent = [s.seq for s, p in recv(t, 1.0141)]
    send(t, seg(IRS + 1, at(31), sack_blocks=((at(38), at(41)), (at(36), at(37)), (at(34), at(35)))), b"", 1.015)
    resent += [s.seq for s, p in recv(t, 1.0151)]
    assert at(32) not in resent
    # (31's retransmission of 1.013 is still in flight: not sent a third time)
    assert sorted(set(resent)) == [at(33), at(35), at(37)]

def _segments_of_40():
    """A SACK connection after one RTT sample (10 ms), cwnd 40 segments, and
    helpers in segment numbers: at(i), ack(i, [(lo, hi)...], when), and the
    data segments sent(when) by number."""
    t, base = _sack_established_after_a_sample()
    mss = 1460
    at = lambda i: base + i * mss      # noqa: E731

    def ack(a, blocks, when):
        send(t, seg(IRS + 1, at(a), sack_blocks=tuple((at(lo), at(hi)) for lo, hi in blocks)), b"", when)

    def sent(when):
        return [(s.seq - base) // mss for s, p in recv(t, when) if p]

    t.cc.cwnd = 40 * mss
    return t, at, ack, sent


def test_a_retransmission_in_flight_is_not_sent_again_when_the_next_recovery_starts():
    """A hole above the recovery point, retransmitted during that recovery, is
    still in flight when the recovery ends; the next recovery starts at once
    (the hole has SACKs above it) and HighRxt goes back to SND.UNA. That
    retransmission is not sent a second time (as Linux skips an skb marked
    SACKED_RETRANS): at 5% loss about 300 of 1,250 retransmissions of a 20 MiB
    transfer were such second copies, each one reported back as a D-SACK. If it
    is lost, RACK finds it (a segment sent after it is delivered) and it goes
    again. RTT 10 ms."""
    t, at, ack, sent = _segments_of_40()
    mss = 1460
    t.send(b"w" * mss * 20)
    assert sent(1.0) == list(range(20))
    ack(5, [(6, 9)], 1.010)                     # 5 lost: the first recovery, up to 20
    assert sent(1.0101) == [5] and t.recover == at(20)
    t.send(b"n" * mss * 40)
    ack(5, [(6, 20)], 1.011)
    assert sent(1.0111) == list(range(20, 29))
    ack(5, [(6, 27)], 1.021)                    # 5's retransmission is lost too
    assert sent(1.0211) == list(range(29, 36))
    assert sent(1.023) == [5]                   # RACK: lost again
    ack(5, [(29, 32), (6, 28)], 1.031)          # 28, above the recovery point, is lost
    assert sent(1.0311)[0] == 28
    ack(28, [(29, 32)], 1.0326)                 # 5 repaired: the first recovery is over
    assert not t.in_recovery
    ack(28, [(29, 33)], 1.0330)                 # the next one starts (28 still has SACKs above)
    assert t.in_recovery and t.recover == at(40)
    assert 28 not in sent(1.0331)               # its retransmission of 1.0311 is in flight
    ack(28, [(36, 40), (29, 33)], 1.042)        # 36-39, sent with it, are delivered; it is not
    assert 28 not in sent(1.0421)               # (RACK's reordering window first)
    assert sent(1.046) == [28]
    assert t.stats["lost_retransmits"] == 2     # 5's, then 28's


def test_a_loss_the_rack_timer_finds_in_recovery_goes_when_the_timer_fires():
    """In recovery PRR spends, at each ACK, what that ACK delivered; a segment
    RACK's reordering timer then marks lost leaves the pipe, and the window PRR
    allowed at that ACK has room for it: it is retransmitted when the timer
    fires (as Linux's retransmit queue runs under the cwnd PRR set at the last
    ACK), not held back until the next ACK -- with a silent peer, not until the
    RTO. New data still waits for an ACK, so PRR's total is unchanged. RTT 10 ms,
    ssthresh 20 of a 40-segment flight."""
    t, at, ack, sent = _segments_of_40()
    mss = 1460
    t.send(b"w" * mss * 12)
    assert sent(1.0) == list(range(12))
    t.send(b"w" * mss * 28)
    assert sent(1.001) == list(range(12, 40))
    t.send(b"n" * mss * 40)
    ack(0, [(1, 4)], 1.010)                     # 0 lost: recovery
    assert sent(1.0101) == [0] and t.cc.ssthresh == 20 * mss
    ack(0, [(1, 8)], 1.0105)
    assert sent(1.0106) == [40]
    ack(0, [(1, 11)], 1.011)
    assert sent(1.0111) == [41, 42]
    ack(0, [(12, 13), (1, 11)], 1.0112)         # 12 SACKed: 11, sent 1 ms before it, waits the reordering window
    assert sent(1.0113) == [] and t.rack_at is not None
    assert t.prr_out == -(-t.prr_delivered * t.cc.ssthresh // t.prr_recover_fs)     # PRR's share is spent
    assert sent(t.rack_at) == [11]              # lost: it goes now
    assert t.stats["rack_losses"] == 1
    ack(0, [(12, 16), (1, 11)], 1.015)          # the next ACK sends new data only
    assert sent(1.0151) == [43]
    assert t.stats["timeouts"] == 0


def test_sack_blocks_newest_first_then_the_most_recently_changed():
    """RFC 2018 4: with more holes than fit in the option, the first block holds
    the latest segment and the others are the most recently changed -- not the
    lowest ones. Reported in ascending order, the newest blocks never reached a
    sender with many holes, and its RACK resent them as lost."""
    t = established(sack=True, timestamps=False)
    t.sack_ok = True
    base = IRS + 1
    blocks_seen = []
    for k in (2, 4, 6, 8, 10):                  # five islands, holes between them
        send(t, seg(base + 100 * k, ISS + 1), b"x" * 100)
        ((a, _),) = recv(t)
        blocks_seen.append(a.sack_blocks)
    island = lambda k: (base + 100 * k, base + 100 * k + 100)      # noqa: E731
    assert blocks_seen[-1] == (island(10), island(8), island(6), island(4))     # four fit without timestamps
    send(t, seg(base + 100 * 3, ISS + 1), b"y" * 100)                  # fills the hole below 4: 2..4 merge
    ((a, _),) = recv(t)
    assert a.sack_blocks == ((base + 200, base + 500), island(10), island(8), island(6))



@pytest.mark.parametrize("timestamps", [False, True])
def test_the_sack_block_count_a_segment_is_sized_by_is_that_of_its_option(timestamps):
    """_payload_limit sizes every data segment by _sack_block_count(), not by
    building the blocks: the count must be what _sack_blocks() then puts in the
    option, with and without a D-SACK and however many islands wait."""
    t = established(sack=True, timestamps=False)
    t.sack_ok, t.ts_ok = True, timestamps
    base = IRS + 1
    counts = [(t._sack_block_count(), len(t._sack_blocks()))]
    for k in range(2, 14, 2):                   # six islands, one at a time
        send(t, seg(base + 100 * k, ISS + 1), b"x" * 100)
        counts.append((t._sack_block_count(), len(t._sack_blocks())))
        t.dsack = (base + 100 * k, base + 100 * k + 50)      # and with a duplicate to report
        counts.append((t._sack_block_count(), len(t._sack_blocks())))
        t.dsack = None
    assert all(a == b for a, b in counts), counts
    assert max(b for a, b in counts) == (3 if timestamps else 4)

def test_each_out_of_order_segment_of_a_batch_gets_its_own_ack():
    """Out-of-order segments that arrive together (one batch, one poll) are each
    acknowledged, as Linux does, so every new SACK block is reported at least once;
    coalesced into one ACK, more new blocks than fit went unreported and the
    sender resent them (a Linux sender resent 18% of its bytes at 5% loss)."""
    t = established(sack=True, timestamps=False)
    t.sack_ok = True
    base = IRS + 1
    for k in (2, 4, 6, 8, 10, 12):                       # six islands in one batch, no poll between
        send(t, seg(base + 100 * k, ISS + 1), b"x" * 100)
    acks = [s for s, p in recv(t)]
    assert len(acks) == 6 and all(a.ack == base for a in acks)
    reported = {b for a in acks for b in a.sack_blocks}
    assert reported == {(base + 100 * k, base + 100 * k + 100) for k in (2, 4, 6, 8, 10, 12)}
    assert acks[-1].sack_blocks[0] == (base + 1200, base + 1300)     # the last one names the newest first
