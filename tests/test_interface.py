"""Interface: ARP, IPv4, ICMP, UDP and demultiplexing, with counted drops."""
import pytest
from scapy.all import ARP, ICMP, IP, TCP, UDP, Ether, fragment, raw

from netstack.config import InterfaceConfig
from netstack.interface import Interface
from netstack.tcp import TCB, State
from netstack.testing import LinkPair
from netstack.wire import ip_to_bytes

US_MAC = "02:00:00:00:00:01"
PEER_MAC = "02:00:00:00:00:02"
US, PEER = "192.0.2.1", "192.0.2.2"


def make(**kw):
    kw.setdefault("gratuitous_arp", False)
    return Interface(InterfaceConfig(mac=US_MAC, ip=US, seed=1, **kw))


def eth(payload, src=PEER_MAC, dst=US_MAC):
    return Ether(src=src, dst=dst) / payload


def learn_peer(iface, now=0.0):
    iface.receive_frame(raw(eth(ARP(op=1, hwsrc=PEER_MAC, psrc=PEER, pdst=US), dst="ff:ff:ff:ff:ff:ff")), now)
    return iface.frames_to_send(now)


def test_gratuitous_arp_on_start():
    i = Interface(InterfaceConfig(mac=US_MAC, ip=US, seed=1))
    (f,) = i.frames_to_send(0.0)
    a = Ether(f)
    assert a.dst == "ff:ff:ff:ff:ff:ff" and a[ARP].op == 1 and a[ARP].psrc == US and a[ARP].pdst == US


def test_arp_reply_for_our_address_only():
    i = make()
    (reply,) = learn_peer(i)
    r = Ether(reply)
    assert r.dst == PEER_MAC and r[ARP].op == 2 and r[ARP].psrc == US and r[ARP].hwsrc == US_MAC
    assert r[ARP].pdst == PEER and r[ARP].hwdst == PEER_MAC
    i.receive_frame(raw(eth(ARP(op=1, hwsrc=PEER_MAC, psrc=PEER, pdst="192.0.2.99"), dst="ff:ff:ff:ff:ff:ff")), 0)
    assert i.frames_to_send(0) == []
    assert i.stats()["drop_arp_not_for_us"] == 1


def test_arp_resolution_queue_retry_and_failure():
    i = make(arp_retry=1.0, arp_retries=3, arp_queue_limit=2)
    ep = i.udp_bind(5000)
    for n in range(3):
        ep.send(ip_to_bytes(PEER), 9, b"x%d" % n, 0.0)
    (req,) = i.frames_to_send(0.0)
    assert Ether(req)[ARP].pdst == PEER and Ether(req).dst == "ff:ff:ff:ff:ff:ff"
    assert i.stats()["drop_arp_queue_full"] == 1
    assert i.frames_to_send(0.5) == []          # rate limited
    assert len(i.frames_to_send(1.0)) == 1     # retried
    assert len(i.frames_to_send(2.0)) == 1
    assert i.frames_to_send(3.0) == []         # gave up
    assert i.stats()["drop_arp_unresolved"] == 2


def test_arp_reply_releases_waiting_packets():
    i = make()
    ep = i.udp_bind(5000)
    ep.send(ip_to_bytes(PEER), 9, b"hello", 0.0)
    i.frames_to_send(0.0)
    i.receive_frame(raw(eth(ARP(op=2, hwsrc=PEER_MAC, psrc=PEER, hwdst=US_MAC, pdst=US))), 0.1)
    (f,) = i.frames_to_send(0.1)
    p = Ether(f)
    assert p.dst == PEER_MAC and p[UDP].dport == 9 and bytes(p[UDP].payload) == b"hello"


def test_unsolicited_arp_reply_is_not_learned():
    i = make()
    i.receive_frame(raw(eth(ARP(op=2, hwsrc=PEER_MAC, psrc="192.0.2.50", hwdst=US_MAC, pdst=US))), 0)
    assert ip_to_bytes("192.0.2.50") not in i.neighbours.entries


def test_arp_entry_expires():
    i = make(arp_timeout=10.0)
    learn_peer(i, 0.0)
    assert i.neighbours.lookup(ip_to_bytes(PEER), 5.0) is not None
    assert i.neighbours.lookup(ip_to_bytes(PEER), 10.0) is None


def test_ping_reply_and_large_ping_reassembly():
    i = make()
    learn_peer(i)
    i.receive_frame(raw(eth(IP(src=PEER, dst=US) / ICMP(id=7, seq=1) / b"abc")), 0)
    (f,) = i.frames_to_send(0)
    r = Ether(f)
    assert r[ICMP].type == 0 and r[ICMP].id == 7 and r[ICMP].seq == 1 and bytes(r[ICMP].payload) == b"abc"
    big = IP(src=PEER, dst=US, id=99) / ICMP(id=8, seq=2) / (b"z" * 4000)
    frags = fragment(big, fragsize=1480)
    assert len(frags) == 3
    for fr in reversed(frags):  # out of order
        i.receive_frame(raw(eth(fr)), 0.1)
    out = i.frames_to_send(0.1)
    assert len(out) == 3  # the reply is fragmented too
    payload = b"".join(bytes(Ether(f)[IP].payload) for f in sorted(out, key=lambda f: Ether(f)[IP].frag))
    reply = ICMP(payload)
    assert reply.type == 0 and reply.id == 8 and bytes(reply.payload) == b"z" * 4000
    assert i.stats()["ipv4_reassembled"] == 1


def test_overlapping_fragments_drop_the_datagram():
    i = make()
    learn_peer(i)
    a = IP(src=PEER, dst=US, id=5, flags="MF", frag=0, proto=17) / (b"a" * 16)
    b = IP(src=PEER, dst=US, id=5, frag=1, proto=17) / (b"b" * 16)   # overlaps bytes 8..16
    i.receive_frame(raw(eth(a)), 0)
    i.receive_frame(raw(eth(b)), 0)
    assert i.stats()["drop_ipv4_fragment_overlap"] == 1
    assert i.reassembler.held == 0


def test_reassembly_timeout_and_memory_cap():
    i = make(reassembly_limit=2 * (1480 + 64) + 100)     # room for two fragments (payload + overhead)
    learn_peer(i)
    first = IP(src=PEER, dst=US, id=1, flags="MF", proto=17) / (b"x" * 1480)
    i.receive_frame(raw(eth(first)), 0)
    i.receive_frame(raw(eth(IP(src=PEER, dst=US, id=2, flags="MF", proto=17) / (b"y" * 1480))), 0)
    i.receive_frame(raw(eth(IP(src=PEER, dst=US, id=3, flags="MF", proto=17) / (b"z" * 1480))), 0)
    assert i.stats()["drop_ipv4_reassembly_memory"] == 1
    i.frames_to_send(31.0)
    assert i.stats()["drop_ipv4_reassembly_timeout"] == 2 and i.reassembler.held == 0


def test_udp_delivery_and_port_unreachable():
    i = make()
    learn_peer(i)
    ep = i.udp_bind(5353)
    i.receive_frame(raw(eth(IP(src=PEER, dst=US) / UDP(sport=1111, dport=5353) / b"hi")), 0)
    assert ep.recv() == (ip_to_bytes(PEER), 1111, ip_to_bytes(US), b"hi")
    i.receive_frame(raw(eth(IP(src=PEER, dst=US) / UDP(sport=1111, dport=9) / b"nobody")), 0)
    (f,) = i.frames_to_send(0)
    r = Ether(f)
    assert r[ICMP].type == 3 and r[ICMP].code == 3
    quoted = bytes(r[ICMP].payload)
    assert quoted[9] == 17 and int.from_bytes(quoted[22:24], "big") == 9 and quoted[28:] == b"nobody"[:0]
    assert i.stats()["drop_udp_no_listener"] == 1
    with pytest.raises(OSError):
        i.udp_bind(5353)


def test_udp_queue_is_bounded():
    i = make(udp_queue_limit=2)
    learn_peer(i)
    ep = i.udp_bind(7)
    for n in range(5):
        i.receive_frame(raw(eth(IP(src=PEER, dst=US) / UDP(sport=1, dport=7) / bytes([n]))), 0)
    assert [ep.recv()[3] for _ in range(2)] == [b"\0", b"\1"] and ep.recv() is None
    assert i.stats()["drop_udp_queue_full"] == 3


def test_protocol_unreachable():
    i = make()
    learn_peer(i)
    i.receive_frame(raw(eth(IP(src=PEER, dst=US, proto=132) / b"sctp?")), 0)
    (f,) = i.frames_to_send(0)
    assert Ether(f)[ICMP].type == 3 and Ether(f)[ICMP].code == 2


def test_wrong_destination_and_mac_are_counted():
    i = make()
    i.receive_frame(raw(eth(IP(src=PEER, dst="192.0.2.77") / UDP())), 0)
    i.receive_frame(raw(eth(IP(src=PEER, dst=US) / UDP(), dst="02:00:00:00:00:99")), 0)
    s = i.stats()
    assert s["drop_ipv4_wrong_destination"] == 1 and s["drop_ethernet_not_for_us"] == 1


def test_tcp_to_closed_port_gets_rst():
    i = make()
    learn_peer(i)
    i.receive_frame(raw(eth(IP(src=PEER, dst=US) / TCP(sport=4444, dport=81, flags="S", seq=100))), 0)
    (f,) = i.frames_to_send(0)
    t = Ether(f)[TCP]
    assert t.flags == "RA" and t.ack == 101 and t.seq == 0
    i.receive_frame(raw(eth(IP(src=PEER, dst=US) / TCP(sport=4444, dport=81, flags="A", seq=5, ack=777))), 0)
    (f,) = i.frames_to_send(0)
    t = Ether(f)[TCP]
    assert t.flags == "R" and t.seq == 777
    i.receive_frame(raw(eth(IP(src=PEER, dst=US) / TCP(sport=4444, dport=81, flags="R"))), 0)
    assert i.frames_to_send(0) == []  # never answer a RST


def test_via_gateway_and_no_route():
    i = make(gateway="192.0.2.254")
    ep = i.udp_bind(1)
    ep.send(ip_to_bytes("198.51.100.7"), 9, b"x", 0)
    (req,) = i.frames_to_send(0)
    assert Ether(req)[ARP].pdst == "192.0.2.254"
    j = make()
    j.udp_bind(1).send(ip_to_bytes("198.51.100.7"), 9, b"x", 0)
    assert j.frames_to_send(0) == [] and j.stats()["drop_tx_no_route"] == 1


def test_icmp_frag_needed_lowers_tcp_mss():
    lp = LinkPair.make()
    lst = lp.b.tcp_listen(80)
    c = lp.a.tcp_connect(ip_to_bytes("192.0.2.2"), 80, lp.now)
    lp.run_until(lambda: lst.accept_queue)
    c.send(b"x" * 3000)
    lp.a.frames_to_send(lp.now)          # in flight, not yet acknowledged
    quoted = raw(IP(src="192.0.2.1", dst="192.0.2.2") / TCP(sport=c.local_port, dport=80, seq=c.snd_una))[:28]
    icmp = IP(src="192.0.2.2", dst="192.0.2.1") / ICMP(type=3, code=4, nexthopmtu=1000) / quoted
    lp.a.receive_frame(raw(Ether(src="02:00:00:00:00:02", dst="02:00:00:00:00:01") / icmp), lp.now)
    assert c.mss == 1000 - 40 - 12            # the path MTU less IP, TCP and the timestamp option
    assert lp.a.path_mtu_to(ip_to_bytes("192.0.2.2"), lp.now) == 1000


def test_garbage_frames_never_raise():
    import random
    i = make()
    learn_peer(i)
    rng = random.Random(5)
    base = raw(eth(IP(src=PEER, dst=US) / TCP(sport=1, dport=2, flags="S") / (b"x" * 20)))
    for _ in range(3000):
        f = bytearray(base)
        for _ in range(rng.randint(1, 6)):
            f[rng.randrange(len(f))] = rng.randrange(256)
        i.receive_frame(bytes(f[:rng.randint(0, len(f))]), 0.0)
    i.frames_to_send(0.0)
    assert "drop_internal_error" not in i.stats()


@pytest.mark.parametrize("ts", [None, (123, 456)])
@pytest.mark.parametrize("offload", [False, True])
@pytest.mark.parametrize("options", ["none", "syn-ack", "sack"])
def test_tcp_frame_builder_equals_the_wire_reprs(ts, offload, options):
    """The one TCP frame builder (per-connection template, checksums by constant
    parts) gives the frame that the wire Reprs build field by field (Ethernet,
    Ipv4Repr, TcpRepr.emit with its own checksum code)."""
    from netstack.wire import Ipv4Repr, TcpRepr, parse_mac
    extra = {"none": (None, None, False, ()),
             "syn-ack": (1460, 7, True, ()),
             "sack": (None, None, False, ((1000, 2000), (3000, 4000)))}[options]
    i = make(tx_checksum_offload=offload)
    learn_peer(i)
    i.ip_ident = 41
    seg = TcpRepr(80, 4000, 0xFFFFFF00, 77, 0x18, 512, 0, *extra, ts)
    i._send_tcp(ip_to_bytes(PEER), seg, b"payload bytes", 0.0)
    (f,) = i.frames_to_send(0.0)
    l4 = seg.emit(b"payload bytes", i.ip, ip_to_bytes(PEER), checksum=True)
    ip = Ipv4Repr(i.ip, ip_to_bytes(PEER), 6, len(l4), 64, 42, True).emit()
    want = parse_mac(PEER_MAC) + i.mac + b"\x08\x00" + ip + l4
    assert f == want
    frames = [f]
    if not offload:
        p = Ether(frames[0])
        assert p[TCP].sport == 80 and bytes(p[TCP].payload) == b"payload bytes"
        opts = dict(p[TCP].options)
        if options == "syn-ack":
            assert opts["MSS"] == 1460 and opts["WScale"] == 7 and "SAckOK" in opts
        elif options == "sack":
            assert opts["SAck"] == (1000, 2000, 3000, 4000)
        if ts is not None:
            assert opts["Timestamp"] == ts
        del p[IP].chksum, p[TCP].chksum
        assert raw(Ether(raw(p))) == frames[0]   # scapy agrees on both checksums


def test_syn_with_linux_option_layout_parses_as_the_general_loop():
    """Linux's SYN options (MSS, SACK permitted, TS, NOP, WS) take a shortcut in
    TcpRepr.parse; it must agree with the option loop (the same options in
    another order), and a SYN so built is answered by a SYN-ACK with them."""
    from netstack.wire import TcpRepr
    linux = TCP(sport=5555, dport=80, flags="S", seq=1000, window=64240,
                options=[("MSS", 1460), ("SAckOK", b""), ("Timestamp", (77, 0)), ("NOP", None), ("WScale", 10)])
    other = TCP(sport=5555, dport=80, flags="S", seq=1000, window=64240,
                options=[("WScale", 10), ("NOP", None), ("Timestamp", (77, 0)), ("MSS", 1460), ("SAckOK", b"")])
    src, dst = ip_to_bytes(PEER), ip_to_bytes(US)
    a = TcpRepr.parse(raw(IP(src=PEER, dst=US) / linux)[20:], src, dst)[0]
    b = TcpRepr.parse(raw(IP(src=PEER, dst=US) / other)[20:], src, dst)[0]
    assert len(raw(linux)) == 40 and a == b
    assert (a.mss, a.wscale, a.sack_permitted, a.timestamp) == (1460, 10, True, (77, 0))
    i = make()
    learn_peer(i)
    i.tcp_listen(80)
    i.receive_frame(raw(eth(IP(src=PEER, dst=US) / linux)), 0.0)
    (f,) = i.frames_to_send(0.0)
    p = Ether(f if isinstance(f, bytes) else f.frame())
    assert p[TCP].flags == "SA" and p[TCP].ack == 1001
    opts = dict(p[TCP].options)
    assert opts["MSS"] == 1460 and "SAckOK" in opts and opts["Timestamp"][1] == 77 and "WScale" in opts
    # a SYN with a bad TCP checksum is a counted drop, not a SYN-ACK
    bad = bytearray(raw(eth(IP(src=PEER, dst=US) / TCP(sport=5556, dport=80, flags="S", seq=5,
                                                         options=linux.options))))
    bad[-1] ^= 0xFF
    i.receive_frame(bytes(bad), 0.0)
    assert i.frames_to_send(0.0) == [] and i.stats()["drop_tcp_bad_checksum"] == 1


def _quiet_connection(**server_tcp):
    """A LinkPair with one established connection and nothing in flight:
    (link, client TCB, server TCB); `server_tcp`: TcpConfig fields of the
    server's side, set before it listens."""
    lp = LinkPair.make()
    for k, v in server_tcp.items():
        setattr(lp.b.cfg.tcp, k, v)
    lst = lp.b.tcp_listen(80)
    c = lp.a.tcp_connect(ip_to_bytes("192.0.2.2"), 80, lp.now)
    lp.run_until(lambda: lst.accept_queue)
    s = lst.accept()
    lp.run_until(lambda: not lp.in_flight and lp.a.poll_at() is None)
    return lp, c, s


def _client_frame(lp, c, s, seq, ack, body=b"", blocks=(), ident=0, flags=0x10):
    """A frame the client's address sends the server, built by hand: TCP with
    the timestamp option (and SACK blocks after it, as Linux lays them out)."""
    from netstack.wire import Ipv4Repr, TcpRepr
    seg = TcpRepr(c.local_port, 80, seq & 0xFFFFFFFF, ack & 0xFFFFFFFF, flags, 4000, 0, None, None, False, blocks,
                  (s.ts_recent + 1, c.ts_recent))
    l4 = seg.emit(body, lp.a.ip, lp.b.ip)
    return (lp.b.mac + lp.a.mac + b"\x08\x00" + Ipv4Repr(lp.a.ip, lp.b.ip, 6, len(l4), 64, ident, True).emit() + l4,
            False)


def test_receive_batch_merges_in_order_segments_of_one_connection():
    """Software GRO: a run of in-order segments becomes one TCP event and one ACK;
    a segment that does not fit the run (a gap) starts a run of its own, which
    the TCB's full rules take as one out-of-order segment (one queue entry, one
    SACK block), as Linux's GRO hands TCP one skb."""
    lp, c, s = _quiet_connection()
    now = lp.now
    frames = []
    seq = c.snd_nxt
    for k in range(6):
        if k == 4:
            seq = (seq + 100) & 0xFFFFFFFF        # a hole before the last two
        frames.append(_client_frame(lp, c, s, seq, c.rcv_nxt, bytes([65 + k]) * 1000, (), k, 0x18))
        seq = (seq + 1000) & 0xFFFFFFFF
    lp.b.receive_batch(frames, now)
    assert lp.b.stats()["rx_gro_merged"] == 6            # the first four, merged; the last two, merged
    got = b""
    while (d := s.recv()):
        got += bytes(d)
    assert got == b"A" * 1000 + b"B" * 1000 + b"C" * 1000 + b"D" * 1000
    out = [Ether(f) for f in lp.b.frames_to_send(now)]
    acks = [p[TCP].ack for p in out if TCP in p]
    assert acks and all(a == (c.snd_nxt + 4000) & 0xFFFFFFFF for a in acks)   # the hole is not acked past
    assert len(s.ooo) == 1 and bytes(s.ooo[0][1]) == b"E" * 1000 + b"F" * 1000   # the two after the hole
    hole_end = (c.snd_nxt + 4100) & 0xFFFFFFFF
    assert [(b[0], b[1]) for b in s.ooo_blocks] == [(hole_end, (hole_end + 2000) & 0xFFFFFFFF)]
    sacks = [o[1] for p in out if TCP in p for o in p[TCP].options if o[0] == "SAck"]
    assert sacks and all(sk[:2] == (hole_end, (hole_end + 2000) & 0xFFFFFFFF) for sk in sacks)


def test_segments_with_sack_blocks_take_the_fast_parse_and_merge():
    """Data segments carrying SACK blocks after the timestamp (Linux's layout: a
    peer whose data from us was lost) are parsed by _fast_tcp, with the blocks;
    a run of them with the same options merges (one TCP event), its data
    arrives intact and its SACK blocks reach the sender's scoreboard."""
    lp, c, s = _quiet_connection()
    s.send(b"s" * 3 * s.mss)
    lp.b.frames_to_send(lp.now)                  # the server's three segments: never delivered
    una, mss = s.snd_una, s.mss
    block = ((una + mss) & 0xFFFFFFFF, (una + 2 * mss) & 0xFFFFFFFF)   # the peer "got" the second one

    def frame(k, blocks):
        return _client_frame(lp, c, s, c.snd_nxt + 1000 * k, una, bytes([97 + k]) * 1000, blocks, k)
    for n_blocks in (1, 2, 3):
        blocks = (block,) + tuple(((una + 10 * mss + i * 100) & 0xFFFFFFFF, (una + 10 * mss + i * 100 + 50)
                                   & 0xFFFFFFFF) for i in range(n_blocks - 1))
        m = lp.b._fast_tcp(frame(0, blocks)[0], False)
        assert m is not None and m[0] is s and m[7] == blocks
    lp.b.receive_batch([frame(k, (block,)) for k in range(3)], lp.now)
    assert lp.b.stats()["rx_gro_merged"] == 3
    got = b""
    while (d := s.recv()):
        got += bytes(d)
    assert got == b"a" * 1000 + b"b" * 1000 + b"c" * 1000
    assert s.sacked == [block]


def test_pure_acks_with_sack_blocks_in_a_row_are_taken_as_one():
    """A batch of pure ACKs from one peer, each with SACK blocks (a receiver
    reporting our losses): TCP takes them as one ACK -- the last cumulative ACK
    and every block reported (rx_ack_coalesced counts them); the scoreboard is
    the same as taking them one by one. An ACK whose first block is a D-SACK is
    never merged: its report of a duplicate is counted."""
    def setup():
        lp, c, s = _quiet_connection()
        s.send(b"s" * 8 * s.mss)
        lp.b.frames_to_send(lp.now)               # eight segments out, none delivered
        u, m = s.snd_una, s.mss
        b = [((u + i * m) & 0xFFFFFFFF, (u + (i + 1) * m) & 0xFFFFFFFF) for i in range(8)]
        b23 = (b[2][0], b[3][1])
        # the receiver got segments 2, 3, 5 and 7 (0, 1, 4 and 6 lost), one report each
        return lp, c, s, u, b, [(b[2],), (b23,), (b[5], b23), (b[7], b[5], b23)]
    lp, c, s, u, b, acks = setup()
    lp.b.receive_batch([_client_frame(lp, c, s, c.snd_nxt, u, b"", blk, k) for k, blk in enumerate(acks)], lp.now)
    merged = list(s.sacked)
    assert lp.b.stats()["rx_ack_coalesced"] == 4
    lp2, c2, s2, u2, _b2, acks2 = setup()
    for k, blk in enumerate(acks2):
        lp2.b.receive_batch([_client_frame(lp2, c2, s2, c2.snd_nxt, u2, b"", blk, k)], lp2.now)   # one by one
    assert "rx_ack_coalesced" not in lp2.b.stats()
    assert [((x - u) & 0xFFFFFFFF, (y - u) & 0xFFFFFFFF) for x, y in merged] == \
        [((x - u2) & 0xFFFFFFFF, (y - u2) & 0xFFFFFFFF) for x, y in s2.sacked] == \
        [(2 * s.mss, 4 * s.mss), (5 * s.mss, 6 * s.mss), (7 * s.mss, 8 * s.mss)]
    # a D-SACK (segment 2 again, inside the second block) stays an ACK of its own
    before = s.stats["dsacks_received"]
    lp.b.receive_batch([_client_frame(lp, c, s, c.snd_nxt, u, b"", acks[3], 5),
                        _client_frame(lp, c, s, c.snd_nxt, u, b"", (b[2], (b[2][0], b[3][1])), 6)], lp.now)
    assert s.stats["dsacks_received"] == before + 1
    # an ACK with another SEQ (out of the window: an off-path forgery) is not merged with
    # the real one after it: its blocks never reach the scoreboard
    lp3, c3, s3, u3, b3, _acks3 = setup()
    lp3.b.receive_batch([_client_frame(lp3, c3, s3, c3.snd_nxt + (1 << 30), u3, b"", (b3[6],), 1),
                         _client_frame(lp3, c3, s3, c3.snd_nxt, u3, b"", (b3[2],), 2)], lp3.now)
    assert "rx_ack_coalesced" not in lp3.b.stats()
    assert [((x - u3) & 0xFFFFFFFF, (y - u3) & 0xFFFFFFFF) for x, y in s3.sacked] == [(2 * s3.mss, 3 * s3.mss)]


def test_an_out_of_order_run_over_queued_data_keeps_only_the_new_bytes():
    """A merged out-of-order run that straddles data already queued: only the
    bytes no queued segment holds are kept (ooo_bytes counts each byte once --
    kept whole, the overlap was counted twice against ooo_limit), the data is
    delivered intact once the hole fills, and our ACK reports the duplicate part
    as a D-SACK block (RFC 2883) ahead of the SACK block."""
    from netstack.tcp.receive import _first_covered, _uncovered
    lp, c, s = _quiet_connection()
    base = c.snd_nxt
    data = bytes(range(256)) * 20            # 5120 bytes: [0, 1000) is the hole

    def frame(off, n, ident):
        return _client_frame(lp, c, s, base + off, c.rcv_nxt, data[off:off + n], (), ident, 0x18)
    lp.b.receive_batch([frame(2000, 1000, 1)], lp.now)          # queued: [2000, 3000)
    lp.b.frames_to_send(lp.now)
    assert s.ooo_bytes == 1000
    lp.b.receive_batch([frame(1000, 1000, 2), frame(2000, 1000, 3), frame(3000, 1000, 4)], lp.now)
    assert s.ooo_bytes == 2000 + 1000                            # [1000, 4000) once, not 4000
    assert [(b[0] - base, b[1] - base) for b in s.ooo_blocks] == [(1000, 4000)]
    out = [Ether(f) for f in lp.b.frames_to_send(lp.now)]
    sacks = [o[1] for p in out if TCP in p for o in p[TCP].options if o[0] == "SAck"]
    assert sacks[-1][:4] == ((base + 2000) & 0xFFFFFFFF, (base + 3000) & 0xFFFFFFFF,
                             (base + 1000) & 0xFFFFFFFF, (base + 4000) & 0xFFFFFFFF)   # D-SACK, then the block
    lp.b.receive_batch([frame(0, 1000, 5), frame(4000, 1120, 6)], lp.now)
    got = b""
    while (d := s.recv()):
        got += bytes(d)
    assert got == data and not s.ooo and s.ooo_bytes == 0
    # the two helpers on their own: offsets into the segment, and the first covered range
    blocks = [[1000, 2000, 0], [3000, 3500, 0]]
    assert _uncovered(blocks, 500, 3500, 0) == [(0, 500), (1500, 1000), (3000, 500)]
    assert _uncovered(blocks, 1200, 300, 0) == []
    assert _first_covered(500, 3500, [(0, 500), (1500, 1000), (3000, 500)]) == (1000, 2000)


class _GeneralPathOnly(TCB):
    """A TCB whose fast output path always declines: poll() builds every segment."""
    __slots__ = ()

    def fast_output(self, now):
        return None


def _established(**cfg):
    lp = LinkPair.make()
    for k, v in cfg.items():
        setattr(lp.b.cfg.tcp, k, v)
    lst = lp.b.tcp_listen(80)
    c = lp.a.tcp_connect(ip_to_bytes("192.0.2.2"), 80, lp.now)
    lp.run_until(lambda: lst.accept_queue)
    s = lst.accept()
    lp.run_until(lambda: not lp.in_flight and lp.a.poll_at() is None)
    return lp, c, s


def _data_frames(lp, c, s, n, size=1000, ts=True):
    from netstack.wire import Ipv4Repr, TcpRepr
    out, seq = [], c.snd_nxt
    for k in range(n):
        seg = TcpRepr(c.local_port, 80, seq, c.rcv_nxt, 0x18, s.snd_wnd >> s.snd_wscale, 0, None, None, False,
                      (), (s.ts_recent + 1, c.ts_recent) if ts else None)
        l4 = seg.emit(bytes([65 + k % 26]) * size, lp.a.ip, lp.b.ip)
        ip = Ipv4Repr(lp.a.ip, lp.b.ip, 6, len(l4), 64, 1000 + k, True).emit()
        out.append(lp.b.mac + lp.a.mac + b"\x08\x00" + ip + l4)
        seq = (seq + size) & 0xFFFFFFFF
    return out


@pytest.mark.parametrize("offload", [False, True])
def test_pure_ack_fast_path_equals_the_general_path(offload):
    """Two full segments make an ACK due: the constant-folded pure ACK is the
    same frame, checksums included, as the general path builds for that state."""
    frames = []
    for fast in (True, False):
        lp, c, s = _established()
        lp.b.cfg.tx_checksum_offload = offload
        if not fast:
            s.__class__ = _GeneralPathOnly
        lp.b.ip_ident = 0xFFFE                    # the ident wraps in between
        for f in _data_frames(lp, c, s, 2, size=1448):
            lp.b.receive_frame(f, lp.now, False)
        out = lp.b.frames_to_send(lp.now)
        assert len(out) == 1
        frames.append(out[0].data if hasattr(out[0], "data") else out[0])
        assert s.unacked_segments == 0 and not s.ack_now and s.delack_at is None
        assert s.last_ack_sent == s.rcv_nxt
        assert s.tx_cache is not None               # both paths build from the template
    assert frames[0] == frames[1]
    p = Ether(frames[0])
    assert p[TCP].flags == "A" and p[TCP].ack == (c.snd_nxt + 2 * 1448) & 0xFFFFFFFF and p[IP].id == 0xFFFF
    assert dict(p[TCP].options)["Timestamp"][1] == s.ts_recent
    del p[IP].chksum, p[TCP].chksum
    assert raw(Ether(raw(p))) == frames[0]        # scapy agrees on both checksums


def test_pure_ack_without_timestamps_and_after_a_neighbour_change():
    lp, c, s = _established()
    s.ts_ok = c.ts_ok = False
    for f in _data_frames(lp, c, s, 2, ts=False):
        lp.b.receive_frame(f, lp.now, False)
    (a1,) = lp.b.frames_to_send(lp.now)
    p = Ether(a1)
    assert p[TCP].dataofs == 5 and p.dst == "02:00:00:00:00:01"
    del p[IP].chksum, p[TCP].chksum
    assert raw(Ether(raw(p))) == a1
    # the peer's MAC changes (a gratuitous ARP reply): the next ACK goes to the new one
    assert s.tx_cache is not None               # the fast path built that one
    lp.b.neighbours.learn(lp.a.ip, b"\x02\x00\x00\x00\x00\x99", lp.now)
    s.ack_now = True
    lp.b._touch(s)
    (a2,) = lp.b.frames_to_send(lp.now)
    assert Ether(a2).dst == "02:00:00:00:00:99"


def test_pure_ack_near_neighbour_expiry_refreshes_it():
    """Close to the entry's expiry the fast path steps aside: the general path
    sends the ACK and a unicast ARP request to refresh the neighbour."""
    lp, c, s = _established()
    entry = lp.b.neighbours.entries[lp.a.ip]
    now = entry[1] - lp.b.neighbours.retry      # within the refresh margin
    s.ack_now = True
    lp.b._touch(s)
    out = [Ether(f if isinstance(f, bytes) else f.frame()) for f in lp.b.frames_to_send(now)]
    assert [TCP in p for p in out].count(True) == 1
    arp = [p for p in out if ARP in p]
    assert len(arp) == 1 and arp[0][ARP].pdst == "192.0.2.1" and arp[0].dst == "02:00:00:00:00:01"


@pytest.mark.parametrize("offload", [False, True])
@pytest.mark.parametrize("size", [1, 64, 255, 257, 1001, 1448])
@pytest.mark.parametrize("ts", [True, False])
def test_fast_data_segment_equals_the_general_path(offload, size, ts):
    """One small write in ESTABLISHED leaves by TCB.fast_output + the frame builder:
    the same frame as poll() + _send_tcp build (odd and even sizes; above 256
    bytes an offloading device gets the pseudo-header sum and the payload apart)."""
    frames = []
    for fast in (True, False):
        lp, c, s = _established()
        lp.b.cfg.tx_checksum_offload = offload
        if not ts:
            s.ts_ok = c.ts_ok = False
        s.set_nodelay(True)
        if not fast:
            s.__class__ = _GeneralPathOnly
        lp.b.ip_ident = 7
        payload = bytes(range(256)) * 6
        assert s.send(payload[:size]) == size
        out = lp.b.frames_to_send(lp.now)
        assert len(out) == 1
        f = out[0]
        frames.append((f.data, f.csum_start, f.csum_offset, bytes(f.payload)) if hasattr(f, "data") else f)
        assert s.tx_cache is not None               # both paths build from the template
        assert s.snd_nxt == s.snd_max == (s.snd_una + size) & 0xFFFFFFFF and s.rto_at is not None
    assert frames[0] == frames[1]
    f = frames[0]
    wire = f[0] + f[3] if isinstance(f, tuple) else f
    p = Ether(wire)
    assert bytes(p[TCP].payload) == (bytes(range(256)) * 6)[:size] and p[TCP].flags == "PA"
    if not isinstance(f, tuple):
        del p[IP].chksum, p[TCP].chksum
        assert raw(Ether(raw(p))) == wire       # scapy agrees on both checksums
    # the bytes arrive: feed the frame to the peer
    lp.a.receive_frame(wire, lp.now, isinstance(f, tuple))
    assert bytes(c.recv()) == (bytes(range(256)) * 6)[:size]


def test_fast_path_respects_nagle_and_the_windows():
    lp, c, s = _established()
    s.send(b"a" * 10)
    assert len(lp.b.frames_to_send(lp.now)) == 1        # first small segment goes
    s.send(b"b" * 10)
    assert lp.b.frames_to_send(lp.now) == []            # Nagle: held while the first is unacked
    assert s.fast_output(lp.now) is None
    s.set_nodelay(True)
    assert len(lp.b.frames_to_send(lp.now)) == 1
    s.snd_wnd = 0                                        # the peer's window closes
    nxt = s.snd_nxt
    s.send(b"c" * 10)
    assert s.fast_output(lp.now) is None
    out = lp.b.frames_to_send(lp.now)
    assert all(len(bytes(Ether(f)[TCP].payload)) == 0 for f in out)   # nothing sent into a zero window
    assert s.snd_nxt == nxt and s.sbuf.size == 30


def test_icmp_port_unreachable_is_delivered_to_the_udp_endpoint():
    from netstack.tcp import Event
    i = make()
    learn_peer(i)
    ep = i.udp_bind(5000)
    ep.send(ip_to_bytes(PEER), 9, b"anyone?", 0.0)
    (sent,) = i.frames_to_send(0.0)
    quoted = raw(Ether(sent)[IP])[:28]                   # IP header + 8 bytes, as routers quote it
    i.pop_events()
    i.receive_frame(raw(eth(IP(src=PEER, dst=US) / ICMP(type=3, code=3) / quoted)), 0.1)
    assert (ep, Event.ERROR) in i.pop_events()
    ((rip, rport, e),) = ep.take_errors()
    assert (rip, rport) == (ip_to_bytes(PEER), 9) and isinstance(e, ConnectionRefusedError) and e.errno == 111
    assert ep.take_errors() == []
    # an error about a port we no longer use is a counted drop, never a crash
    ep.close()
    i.receive_frame(raw(eth(IP(src=PEER, dst=US) / ICMP(type=3, code=1) / quoted)), 0.2)
    assert i.stats()["drop_icmp_error_no_endpoint"] == 1


def test_tso_frames_from_the_fast_path_equal_the_general_path():
    """With TSO, a 100 KB write leaves as frames of up to tso_max bytes that the
    device cuts into MSS segments: the fast path builds the same TxFrames
    (headers, partial checksum, segment size, payload) as poll() + _send_tcp, and
    hands payloads spanning two send-buffer chunks over as a Gather (no copy)."""
    from frames import Gather
    frames = []
    kinds = []
    for fast in (True, False):
        lp, c, s = _established()
        # the device offloads from here on (LinkPair itself delivers only complete frames)
        lp.b.cfg.tx_checksum_offload = True
        lp.b.cfg.tso_max = s.tso_max = 64000
        s.snd_wnd = s.cc.cwnd = 1 << 20                 # both windows open: TSO-sized frames
        if not fast:
            s.__class__ = _GeneralPathOnly
        lp.b.ip_ident = 100
        data = bytes(range(256)) * 400                  # 102,400 bytes in two writes (two chunks)
        s.send(data[:65536])
        s.send(memoryview(data)[65536:])
        out = lp.b.frames_to_send(lp.now)
        frames.append([(f.data, f.csum_start, f.csum_offset, f.gso_size, bytes(f.payload)) for f in out])
        kinds.append([type(f.payload) for f in out])
        assert b"".join(bytes(f.payload) for f in out) == data
        assert s.snd_nxt == (s.snd_una + len(data)) & 0xFFFFFFFF
    assert frames[0] == frames[1]
    assert [len(f[4]) for f in frames[0]] == [64000, 38400]
    assert all(f[3] == s.mss and f[1:3] == (34, 16) for f in frames[0])
    assert kinds[0][1] is Gather and kinds[0][0] is not Gather   # the second frame spans both chunks


def test_a_finished_connection_is_freed_without_the_cyclic_gc():
    """Once both sides have closed and the interface forgot the TCB, dropping the
    last reference frees it at once: no reference cycle (hook -> TCB) is left for
    the cyclic GC, which a connection-heavy server paid ~9% of its CPU for."""
    import gc
    import weakref
    gc.collect()
    gc.disable()
    try:
        lp = LinkPair.make()
        lst = lp.b.tcp_listen(80)
        c = lp.a.tcp_connect(ip_to_bytes("192.0.2.2"), 80, lp.now)
        lp.run_until(lambda: lst.accept_queue)
        s = lst.accept()
        c.send(b"hello")
        lp.run_until(lambda: s.recv_available() == 5)
        assert s.recv() == b"hello"
        c.close()
        lp.run_until(lambda: s.at_eof())
        s.close()
        lp.run_until(lambda: not lp.b.tcbs and not lp.a.tcbs)
        lp.b.pop_events()
        ref = weakref.ref(s)
        del s, c, lst, lp       # the interfaces too (their timer heaps may still name it)
        assert ref() is None, gc.get_referrers(ref())
    finally:
        gc.enable()


def test_forgotten_connections_do_not_stay_in_the_timer_heap():
    """A closed connection's timer entry (a keepalive: hours ahead) must not keep
    the TCB alive until then. Its entry turns stale when the interface forgets it,
    and stale entries behind a live one are compacted away."""
    import weakref
    i = make()
    live = i._new_tcb((i.ip, 80, ip_to_bytes(PEER), 1), 1, 0.0)
    i._push_timer(live, 10.0)                       # a live entry heads the heap
    refs = []
    for port in range(2, 302):
        t = i._new_tcb((i.ip, 80, ip_to_bytes(PEER), port), 1, 0.0)
        i._push_timer(t, 7200.0 + port)             # its keepalive
        t.state = State.CLOSED                      # the connection ended ...
        i._collect(t)                               # ... and the interface forgets it
        refs.append(weakref.ref(t))
        del t
    assert len(i._timers) <= 2 * 64 + 2
    assert sum(r() is not None for r in refs) <= 2 * 64 + 1    # the others are freed
    assert i.poll_at() == 10.0 and live.sched_at == 10.0


def test_out_of_order_data_within_a_large_window_is_kept():
    """A 4 MiB receive buffer (what the native stack gives a connection with
    the default memory) offers a 4 MiB window; 2 MiB sent beyond a one-segment
    hole lies inside it and is queued, not dropped (the out-of-order queue was
    capped at 1 MiB whatever the window: a Linux BBR client at 5% loss had
    1,800 in-window segments dropped and sent again). Filling the hole
    delivers all of it."""
    lp, c, s = _quiet_connection(recv_buffer=4 << 20)
    data = bytes(range(256)) * (((2 << 20) + 1448 + 255) // 256)
    data = data[:(2 << 20) + 1448]
    drops_before = {k: v for k, v in lp.b.stats().items() if k.startswith("drop_")}
    base = c.snd_nxt
    for off in range(1448, len(data), 1448):          # everything after the first segment
        lp.b.receive_batch([_client_frame(lp, c, s, base + off, c.rcv_nxt, data[off:off + 1448], (), off // 1448)],
                           lp.now)
        for f in lp.b.frames_to_send(lp.now):         # the ACKs with SACK blocks: within the MTU, none past the hole
            f = f if f.__class__ is bytes else f.frame()
            assert len(f) - 14 <= lp.b.cfg.mtu and Ether(f)[TCP].ack == base & 0xFFFFFFFF
    assert s.stats["ooo_dropped"] == 0 and s.ooo_bytes == len(data) - 1448
    drops = {k: v for k, v in lp.b.stats().items() if k.startswith("drop_")}
    assert drops == drops_before                      # no frame of the transfer dropped, by any reason
    lp.b.receive_batch([_client_frame(lp, c, s, base, c.rcv_nxt, data[:1448], (), 0)], lp.now)
    got = b""
    while (d := s.recv()):
        got += bytes(d)
    assert got == data and not s.ooo and s.ooo_bytes == 0


def test_an_explicit_out_of_order_limit_is_kept_and_counted():
    """A limit set below the window (to bound memory) holds: what passes it is
    dropped and counted, never queued."""
    lp, c, s = _quiet_connection(ooo_limit=10 * 1448)
    base = c.snd_nxt
    for k in range(1, 21):
        lp.b.receive_batch([_client_frame(lp, c, s, base + 1448 * k, c.rcv_nxt, b"x" * 1448, (), k)], lp.now)
    assert s.ooo_bytes == 10 * 1448 and s.stats["ooo_dropped"] == 10
    got = b""
    lp.b.receive_batch([_client_frame(lp, c, s, base, c.rcv_nxt, b"h" * 1448, (), 0)], lp.now)    # the hole
    while (d := s.recv()):
        got += bytes(d)
    assert got == b"h" * 1448 + b"x" * 1448 * 10       # what was kept arrives; the dropped part is the peer's to resend
