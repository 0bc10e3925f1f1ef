"""Off-path and hostile peers (issue 11): each attack with its exact counters.

An off-path attacker sees none of our segments: it can forge ICMP errors,
RSTs, SYNs and fragments from anywhere, but has to guess sequence numbers.
None of it may cripple a connection or grow a table without bound."""
import pytest
from scapy.all import ARP, ICMP, IP, TCP, UDP, Ether, raw

from netstack.config import InterfaceConfig
from netstack.dhcp import DhcpClient, parse
from netstack.interface import Interface
from netstack.tcp import State
from netstack.testing import LinkPair
from netstack.wire import MalformedPacket, ip_to_bytes

A_MAC, B_MAC = "02:00:00:00:00:01", "02:00:00:00:00:02"
A, B = "192.0.2.1", "192.0.2.2"


def established(**tcp):
    lp = LinkPair.make()
    for side in (lp.a, lp.b):
        for k, v in tcp.items():
            setattr(side.cfg.tcp, k, v)
    lst = lp.b.tcp_listen(80)
    c = lp.a.tcp_connect(ip_to_bytes(B), 80, lp.now)
    lp.run_until(lambda: lst.accept_queue)
    s = lst.accept()
    lp.run_until(lambda: not lp.in_flight and lp.a.poll_at() is None or lp.now > 1)
    return lp, c, s


def to_a(pkt):
    return raw(Ether(src=B_MAC, dst=A_MAC) / pkt)


def frag_needed(c, seq, mtu, src="192.0.2.99"):
    """A forged "fragmentation needed" quoting connection c with sequence number seq."""
    quoted = raw(IP(src=A, dst=B) / TCP(sport=c.local_port, dport=80, seq=seq))[:28]
    return to_a(IP(src=src, dst=A) / ICMP(type=3, code=4, nexthopmtu=mtu) / quoted)


# ---- ICMP (RFC 5927, RFC 1191) ------------------------------------------------------------

def test_forged_frag_needed_with_a_guessed_sequence_number_changes_nothing():
    lp, c, s = established()
    c.send(b"x" * 3000)
    lp.a.frames_to_send(lp.now)
    mss = c.mss
    for guess in (0, c.snd_una - 1, c.snd_max, (c.snd_max + 100_000) & 0xFFFFFFFF):
        lp.a.receive_frame(frag_needed(c, guess, 68), lp.now)
    assert c.mss == mss == 1448
    assert lp.a.stats()["drop_icmp_error_bad_seq"] == 4
    assert lp.a.path_mtu == {}


def test_frag_needed_in_window_is_floored_at_552_and_expires():
    lp, c, s = established()
    c.send(b"x" * 3000)
    lp.a.frames_to_send(lp.now)
    lp.a.receive_frame(frag_needed(c, c.snd_una, 68), lp.now)       # 68: the IPv4 minimum
    st = lp.a.stats()
    assert st["icmp_pmtu_clamped"] == 1 and st["pmtu_learned"] == 1
    assert c.mss == 552 - 40 - 12
    # the data arrives in segments that fit the 552-byte path, not 28-byte ones
    got = bytearray()
    lp.run_until(lambda: got.extend(s.recv()) or len(got) == 3000, max_time=lp.now + 10)
    assert bytes(got) == b"x" * 3000
    # a later "higher" ICMP is ignored; expiry raises the MSS again (RFC 1191 6.3)
    lp.a.receive_frame(frag_needed(c, c.snd_una, 1400), lp.now)
    c.send(b"y")
    lp.a.frames_to_send(lp.now)
    lp.a.receive_frame(frag_needed(c, c.snd_una, 1400), lp.now)
    assert lp.a.stats()["drop_icmp_pmtu_not_lower"] >= 1 and c.mss == 500
    lp.a.frames_to_send(lp.now + lp.a.cfg.pmtu_expiry + 1)
    assert c.mss == 1448 and lp.a.stats()["pmtu_expired"] == 1


def test_new_connections_to_a_known_small_path_start_with_its_mss():
    lp, c, s = established()
    c.send(b"x" * 100)
    lp.a.frames_to_send(lp.now)
    lp.a.receive_frame(frag_needed(c, c.snd_una, 1000), lp.now)
    c2 = lp.a.tcp_connect(ip_to_bytes(B), 80, lp.now)
    lp.run_until(lambda: c2.state is State.ESTABLISHED)
    assert c2.mss == 1000 - 40 - 12


# ---- RST / SYN floods (RFC 5961) -------------------------------------------------------------

def test_in_window_rsts_draw_rate_limited_challenge_acks():
    lp, c, s = established()
    limit = lp.a.cfg.tcp.challenge_ack_limit
    for k in range(1000):       # in window, not exact: each one is "answered" by a challenge ACK
        lp.a.receive_frame(to_a(IP(src=B, dst=A) / TCP(sport=80, dport=c.local_port, flags="R",
                                                           seq=(c.rcv_nxt + 1 + k) & 0xFFFFFFFF)), lp.now)
    acks = lp.a.frames_to_send(lp.now)
    assert c.state is State.ESTABLISHED
    assert c.stats["challenge_acks"] == limit and c.stats["challenge_acks_suppressed"] == 1000 - limit
    assert len(acks) <= 1                      # one due ACK carries them all
    # a second later the bucket has refilled
    lp.a.receive_frame(to_a(IP(src=B, dst=A) / TCP(sport=80, dport=c.local_port, flags="R",
                                                       seq=(c.rcv_nxt + 5) & 0xFFFFFFFF)), lp.now + 1.0)
    assert c.stats["challenge_acks"] == limit + 1


# ---- fragments ------------------------------------------------------------------------------------

def test_empty_fragments_are_counted_drops_and_hold_nothing():
    i = Interface(InterfaceConfig(mac=A_MAC, ip=A, seed=1))
    for k in range(20_000):
        i.receive_frame(to_a(IP(src=B, dst=A, id=k & 0xFFFF, flags="MF", proto=17)), 0.0)
    st = i.stats()
    assert st["drop_ipv4_fragment_bad_length"] == 20_000
    assert not i.reassembler.pending and i.reassembler.held == 0


def test_partial_datagrams_are_bounded_in_number_and_fragments():
    cfg = InterfaceConfig(mac=A_MAC, ip=A, seed=1)
    i = Interface(cfg)
    n = 2000
    for k in range(n):      # one 8-byte first fragment each, never completed
        i.receive_frame(to_a(IP(src=B, dst=A, id=k, flags="MF", proto=17) / (b"x" * 8)), 0.0)
    assert len(i.reassembler.pending) == cfg.reassembly_max_datagrams
    assert i.stats()["drop_ipv4_reassembly_evicted"] == n - cfg.reassembly_max_datagrams
    # one datagram in many tiny fragments
    for k in range(cfg.reassembly_max_fragments + 5):
        i.receive_frame(to_a(IP(src=B, dst=A, id=60000, flags="MF", frag=k, proto=17) / (b"y" * 8)), 0.0)
    assert i.stats()["drop_ipv4_reassembly_too_many_fragments"] >= 1
    assert i.reassembler.held <= cfg.reassembly_limit


# ---- ARP ----------------------------------------------------------------------------------------

def test_pending_resolutions_and_the_neighbour_table_are_bounded():
    cfg = InterfaceConfig(mac=A_MAC, ip=A, seed=1, netmask="255.255.0.0")
    i = Interface(cfg)
    lst = i.tcp_listen(80)
    lst.syn_backlog = lst.backlog = 100_000
    for k in range(2000):   # SYNs from on-link addresses nobody has resolved: each SYN-ACK needs ARP
        src = f"192.0.{2 + k // 250}.{1 + k % 250}"
        i.receive_frame(raw(Ether(src="02:00:00:00:99:99", dst=A_MAC) /
                            IP(src=src, dst=A) / TCP(sport=1000 + k, dport=80, flags="S")), 0.0)
    i.frames_to_send(0.0)
    assert len(i.neighbours.pending) == cfg.arp_max_pending
    assert i.stats()["drop_arp_pending_full"] == 2000 - cfg.arp_max_pending
    # replies for many addresses: the table keeps at most arp_max_entries
    i2 = Interface(InterfaceConfig(mac=A_MAC, ip=A, seed=1, netmask="255.255.0.0", arp_max_entries=50))
    for k in range(200):
        i2.receive_frame(raw(Ether(src="02:00:00:00:00:%02x" % (k % 256), dst=A_MAC) /
                             ARP(op=1, hwsrc="02:00:00:00:00:%02x" % (k % 256), psrc=f"192.0.3.{k + 1}",
                                 pdst=A)), 0.0)
    assert len(i2.neighbours.entries) == 50 and i2.stats()["arp_evicted"] == 150


# ---- secrets, DHCP ------------------------------------------------------------------------------

def test_isn_and_cookie_secrets_come_from_the_os_unless_seeded():
    a = InterfaceConfig(mac=A_MAC, ip=A)
    b = InterfaceConfig(mac=A_MAC, ip=A)
    assert a.secrets != b.secrets and len(a.secrets) == 32
    assert InterfaceConfig(mac=A_MAC, ip=A, seed=7).secrets == InterfaceConfig(mac=A_MAC, ip=A, seed=7).secrets


@pytest.mark.parametrize("option, value", [(53, b""), (54, b"\x01\x02"), (1, b"\xff\xff\xff"), (51, b"\x00"),
                                           (3, b"\x01\x02\x03")])
def test_dhcp_options_of_the_wrong_length_are_counted_drops(option, value):
    from netstack.dhcp import ACK, build
    msg = bytearray(build(ACK, 0x1234, bytes.fromhex("020000000001")))
    msg[0] = 2                                            # BOOTREPLY
    end = msg.rindex(255)
    msg[end:end] = bytes([option, len(value)]) + value
    with pytest.raises(MalformedPacket, match="dhcp_bad_option_length"):
        parse(bytes(msg))
    i = Interface(InterfaceConfig(mac=A_MAC, ip="0.0.0.0", seed=1, dhcp=True))
    i.frames_to_send(0.0)
    i.receive_frame(raw(Ether(src=B_MAC, dst=A_MAC) / IP(src=B, dst="255.255.255.255") /
                        UDP(sport=67, dport=68) / bytes(msg)), 0.0)
    st = i.stats()
    assert st["drop_dhcp_bad_option_length"] == 1 and "drop_internal_error" not in st
    assert isinstance(i.dhcp, DhcpClient)


# ---- user timeout (RFC 5482) --------------------------------------------------------------------

def test_user_timeout_ends_a_connection_whose_data_is_never_acknowledged():
    lp, c, s = established()
    c.set_user_timeout(5.0)
    lp.loss = 1.0                           # the peer is gone
    c.send(b"x" * 1000)
    t0 = lp.now
    lp.run_until(lambda: c.state is State.CLOSED, max_time=t0 + 60)
    assert isinstance(c.error, TimeoutError) and "user timeout" in str(c.error)
    assert 5.0 <= lp.now - t0 < 5.5         # at the user timeout, not at the next backed-off RTO
    with pytest.raises(ValueError):
        c.set_user_timeout(-1)


def test_user_timeout_is_reset_by_progress():
    lp, c, s = established()
    c.set_user_timeout(1.0)
    t0 = lp.now
    for k in range(5):                      # a steady trickle, each piece acknowledged in time
        c.send(b"y" * 100)
        lp.run_until(lambda: c.snd_una == c.snd_max, max_time=lp.now + 1)
        lp.now = max(lp.now, t0 + 0.6 * (k + 1))       # the application pauses
    assert lp.now - t0 > 2.9 and c.state is State.ESTABLISHED


def test_resets_sent_are_counted_by_the_stack_and_by_the_connection():
    """A segment for no connection is answered with a RST (tx_tcp_rst), and an
    aborted connection's RST is counted in its stats (tcp_resets_sent once it is
    gone): the counters the resets metric reads."""
    from netstack.testing import LinkPair
    lp = LinkPair.make(seed=4)
    lst = lp.b.tcp_listen(80)
    c = lp.a.tcp_connect(lp.b.ip, 80, lp.now)
    lp.run_until(lambda: lst.accept_queue)
    lst.accept()
    stray = lp.a.tcp_connect(lp.b.ip, 81, lp.now)          # nothing listens on 81
    lp.run_until(lambda: stray.state.name == "CLOSED")
    assert lp.b.stats()["tx_tcp_rst"] == 1
    c.abort()
    lp.run_until(lambda: c.state.name == "CLOSED")
    lp.step()
    assert lp.a.stats()["tcp_resets_sent"] == 1
