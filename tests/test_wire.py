"""Wire formats: golden bytes both ways, scapy as the independent reference,
every truncation, trailing bytes."""
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scapy.all import ARP, ICMP, IP, TCP, UDP, Ether, raw

from netstack.wire import (ArpRepr, EthernetRepr, IcmpRepr, Ipv4Repr, MalformedPacket, Seq, TcpRepr,
                           UdpRepr, internet_checksum, ip_to_bytes, ones_sum, seq_add, seq_ge, seq_gt,
                           seq_le, seq_lt, seq_sub)
from netstack.wire.checksum import pseudo_header_sum, verify

A = ip_to_bytes("192.0.2.1")
B = ip_to_bytes("192.0.2.2")
MAC_A = b"\x02\x00\x00\x00\x00\x01"
MAC_B = b"\x02\x00\x00\x00\x00\x02"


def naive_checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    s = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


@given(st.binary(max_size=3000))
@settings(max_examples=300)
def test_checksum_matches_naive(data):
    assert internet_checksum(data) == naive_checksum(data)


@given(st.binary(max_size=3000), st.sampled_from(["bytes", "bytearray", "memoryview", "slice"]))
@settings(max_examples=400)
def test_c_and_python_sums_agree(data, kind):
    """The C speedup is the Python function bit for bit: odd lengths, zero
    data ('positive zero': 0), data summing to 'negative zero' (0xFFFF), and
    every buffer type the stack hands it."""
    from netstack.wire.checksum import _c_ones_sum, _py_ones_sum
    buf = {"bytes": data, "bytearray": bytearray(data), "memoryview": memoryview(data),
           "slice": memoryview(b"\x55" + data)[1:]}[kind]
    assert _c_ones_sum(buf) == _py_ones_sum(data)


def test_c_sum_edge_values():
    from netstack.wire.checksum import _c_ones_sum, _py_ones_sum
    for data in (b"", b"\0" * 9, b"\xff", b"\xff\xff", b"\xff" * 65535, b"\x80\x00" * 40000,
                 bytes(range(256)) * 300):
        assert _c_ones_sum(data) == _py_ones_sum(data), len(data)
    with pytest.raises(TypeError):
        _c_ones_sum("not a buffer")


def test_the_stack_uses_the_c_sum_unless_told_not_to():
    """setup.py builds the extension wherever a compiler is (CI's machines have
    one); PYSEASTAR_PURE_PYTHON=1 keeps the Python function (scripts/test.sh
    runs the wire and TCP tests that way too)."""
    import os
    from netstack.wire import checksum
    assert checksum._c_ones_sum is not None, "the C speedup was not built (is gcc installed?)"
    want = checksum._py_ones_sum if os.environ.get("PYSEASTAR_PURE_PYTHON") else checksum._c_ones_sum
    assert checksum.ones_sum is want


def test_checksum_rfc1071_example():
    # RFC 1071 section 3 example bytes: 00 01 f2 03 f4 f5 f6 f7 -> sum ddf2
    data = bytes.fromhex("0001f203f4f5f6f7")
    assert ones_sum(data) == 0xDDF2
    assert internet_checksum(data) == 0x220D
    assert verify(data + (0x220D).to_bytes(2, "big"))


def test_big_buffer_checksum_folding():
    data = bytes(range(256)) * 256  # 64 KiB, exercises the folding loop
    assert internet_checksum(data) == naive_checksum(data)


@given(st.binary(max_size=9000))
@settings(max_examples=200)
def test_residue_is_the_modulo(data):
    from netstack.wire.checksum import residue
    x = int.from_bytes(data, "big")
    assert residue(x) == x % 0xFFFF


@given(st.binary(min_size=8, max_size=8), st.binary(min_size=20, max_size=1600), st.integers(0, 0xFFFF))
@settings(max_examples=300)
def test_in_place_l4_check_agrees_with_the_pseudo_header_one(addrs, segment, fix):
    """Right and wrong checksums alike: the sum over the addresses as they lie
    in the packet decides as the pseudo-header sum does."""
    from netstack.wire.checksum import l4_checksum_ok, l4_checksum_ok_in_place
    src, dst = addrs[:4], addrs[4:]
    for seg in (segment, segment[:16] + fix.to_bytes(2, "big") + segment[18:],
                segment[:16] + internet_checksum(segment[:16] + b"\0\0" + segment[18:],
                                                 pseudo_header_sum(src, dst, 6, len(segment))).to_bytes(2, "big")
                + segment[18:]):
        assert l4_checksum_ok_in_place(addrs + seg, 6) == l4_checksum_ok(seg, src, dst, 6)
    assert l4_checksum_ok(seg, src, dst, 6)         # the last one carries its right checksum


def test_checksum_mask_cache_stays_bounded():
    """Every length a peer can send (reassembled datagrams up to 64 KiB) leaves
    at most 256 cached masks of at most 2 KB: lengths are remote input."""
    from netstack.wire import checksum
    for n in range(2, 65536, 98):
        assert checksum.ones_sum(b"\xff" * n) == 0xFFFF
    assert len(checksum._MASKS) <= checksum._MASK_CACHE_LEN
    assert max(checksum._MASKS) <= checksum._MASK_CACHE_BITS


def test_seq_arithmetic_wraps():
    top = 0xFFFFFFF0
    assert seq_add(top, 0x20) == 0x10
    assert seq_lt(top, 0x10) and seq_gt(0x10, top)
    assert seq_le(5, 5) and seq_ge(5, 5)
    assert seq_sub(0x10, top) == 0x20 and seq_sub(top, 0x10) == -0x20
    assert Seq(top) + 0x20 == Seq(0x10)
    assert Seq(0x10) - Seq(top) == 0x20
    assert Seq(top) < Seq(0x10)
    with pytest.raises(TypeError):
        Seq(1) + Seq(2)


def tcp_frame(**kw):
    opts = kw.pop("options", [("MSS", 1460), ("SAckOK", b""), ("Timestamp", (11, 22)), ("NOP", None),
                              ("WScale", 7)])
    payload = kw.pop("payload", b"hello")
    return raw(Ether(dst="02:00:00:00:00:02", src="02:00:00:00:00:01") / IP(src="192.0.2.1", dst="192.0.2.2", id=7)
               / TCP(sport=1234, dport=80, seq=1000, ack=5, flags=kw.pop("flags", "SA"), window=4096,
                     options=opts, **kw) / payload)


def parse_tcp(frame, verify=True):
    eth, rest = EthernetRepr.parse(frame)
    ip, l4 = Ipv4Repr.parse(rest, verify)
    tcp, payload = TcpRepr.parse(l4, ip.src, ip.dst, verify)
    return eth, ip, tcp, payload


def test_tcp_parse_matches_scapy():
    eth, ip, tcp, payload = parse_tcp(tcp_frame())
    assert eth == EthernetRepr(MAC_B, MAC_A, 0x0800)
    assert (ip.src, ip.dst, ip.protocol, ip.ident, ip.ttl, ip.payload_len) == (A, B, 6, 7, 64, 20 + 20 + 5)
    assert tcp == TcpRepr(1234, 80, 1000, 5, 0x12, 4096, 0, 1460, 7, True, (), (11, 22))
    assert bytes(payload) == b"hello"


def test_tcp_sack_blocks_and_unknown_options():
    f = tcp_frame(flags="A", options=[("NOP", None), ("NOP", None), ("SAck", (100, 200, 300, 400)),
                                      (99, b"\x01\x02")])
    _e, _i, tcp, _p = parse_tcp(f)
    assert tcp.sack_blocks == ((100, 200), (300, 400))


@pytest.mark.parametrize("n", [1, 2, 3])
def test_timestamp_and_sack_options_are_linux_layout(n):
    """The ACK of a connection under loss: NOP NOP TS, NOP NOP SACK(n) -- the
    same bytes as scapy builds, and they parse back."""
    blocks = tuple((1000 * i, 1000 * i + 500) for i in range(1, n + 1))
    seg = TcpRepr(4000, 80, 1, 2, 0x10, 512, 0, None, None, False, blocks, (0xDEADBEEF, 7))
    want = raw(TCP(options=[("NOP", None), ("NOP", None), ("Timestamp", (0xDEADBEEF, 7)), ("NOP", None),
                            ("NOP", None), ("SAck", tuple(x for b in blocks for x in b))]))[20:]
    assert seg.options_bytes() == want
    with pytest.raises(ValueError):         # four blocks beside timestamps do not fit in 40 bytes
        seg._replace(sack_blocks=blocks + ((1, 2),) * (4 - n)).options_bytes()


def test_tcp_emit_parses_in_scapy():
    seg = TcpRepr(4000, 80, 0xFFFFFFF0, 77, 0x18, 512, 0, None, None, False, ((1, 2),), (5, 6))
    data = seg.emit(b"payload", A, B)
    pkt = TCP(data)
    assert (pkt.sport, pkt.dport, pkt.seq, pkt.ack, int(pkt.flags), pkt.window) == (4000, 80, 0xFFFFFFF0, 77, 0x18, 512)
    opts = dict((k, v) for k, v in pkt.options if k != "NOP")
    assert opts["Timestamp"] == (5, 6) and opts["SAck"] == (1, 2)
    assert bytes(pkt.payload) == b"payload"
    # scapy recomputes the checksum: ours must equal it
    ip = IP(src="192.0.2.1", dst="192.0.2.2") / TCP(data)
    del ip[TCP].chksum
    assert TCP(raw(ip)[20:]).chksum == struct.unpack("!H", data[16:18])[0]
    # our own parser round-trips
    back, payload = TcpRepr.parse(data, A, B)
    assert back == seg and bytes(payload) == b"payload"


def test_tcp_partial_checksum_for_offload():
    seg = TcpRepr(1, 2, 3, 4, 0x10, 5)
    data = seg.emit(b"x" * 100, A, B, checksum=False)
    from netstack.wire.checksum import pseudo_header_sum
    assert struct.unpack("!H", data[16:18])[0] == pseudo_header_sum(A, B, 6, len(data))


def test_bad_checksums_are_detected():
    f = bytearray(tcp_frame())
    f[-1] ^= 0xFF
    with pytest.raises(MalformedPacket) as e:
        parse_tcp(bytes(f))
    assert e.value.reason == "tcp_bad_checksum"
    parse_tcp(bytes(f), verify=False)  # trusted device: no verification
    f = bytearray(tcp_frame())
    f[14 + 8] ^= 1  # TTL: breaks the IP header checksum
    with pytest.raises(MalformedPacket, match="ipv4_bad_checksum"):
        parse_tcp(bytes(f))


@pytest.mark.parametrize("maker", ["tcp", "udp", "icmp", "arp"])
def test_every_truncation_is_malformed_never_a_crash(maker):
    frame = {
        "tcp": tcp_frame(),
        "udp": raw(Ether(dst='02:00:00:00:00:02', src='02:00:00:00:00:01') / IP(src="192.0.2.1", dst="192.0.2.2") / UDP(sport=1, dport=2) / b"data"),
        "icmp": raw(Ether(dst='02:00:00:00:00:02', src='02:00:00:00:00:01') / IP(src="192.0.2.1", dst="192.0.2.2") / ICMP(id=1, seq=2) / b"ping"),
        "arp": raw(Ether(dst='ff:ff:ff:ff:ff:ff', src='02:00:00:00:00:01') / ARP(psrc="192.0.2.1", pdst="192.0.2.2")),
    }[maker]
    full = parse_any(frame)
    for n in range(len(frame)):
        try:
            parse_any(frame[:n])
        except MalformedPacket:
            continue
        # a shorter frame may only parse if what is cut was padding
        pytest.fail(f"{maker} truncated to {n} of {len(frame)} parsed")
    # trailing bytes (Ethernet padding) are ignored
    assert parse_any(frame + b"\0" * 10) == full


def parse_any(frame):
    eth, rest = EthernetRepr.parse(frame)
    if eth.ethertype == 0x0806:
        return ArpRepr.parse(rest)
    ip, l4 = Ipv4Repr.parse(rest)
    if ip.protocol == 6:
        t, p = TcpRepr.parse(l4, ip.src, ip.dst)
        return t, bytes(p)
    if ip.protocol == 17:
        u, p = UdpRepr.parse(l4, ip.src, ip.dst)
        return u, bytes(p)
    i = IcmpRepr.parse(l4)
    return i._replace(data=bytes(i.data))


def test_udp_zero_checksum_and_zero_source_port_are_legal():
    pkt = raw(IP(src="192.0.2.1", dst="192.0.2.2") / UDP(sport=0, dport=53, chksum=0) / b"q")
    ip, l4 = Ipv4Repr.parse(pkt)
    u, p = UdpRepr.parse(l4, ip.src, ip.dst)
    assert u == UdpRepr(0, 53) and bytes(p) == b"q"


def test_udp_emit_matches_scapy():
    ours = UdpRepr(1000, 53).emit(b"hello", A, B)
    theirs = raw(IP(src="192.0.2.1", dst="192.0.2.2") / UDP(sport=1000, dport=53) / b"hello")[20:]
    assert ours == theirs


def test_icmp_echo_matches_scapy():
    ours = IcmpRepr(8, 0, 0x1234, 7, b"abc").emit()
    assert ours == raw(ICMP(type=8, id=0x1234, seq=7) / b"abc")


def test_arp_both_ways():
    pkt = raw(ARP(op=1, hwsrc="02:00:00:00:00:01", psrc="192.0.2.1", pdst="192.0.2.2"))
    a = ArpRepr.parse(pkt)
    assert a == ArpRepr(1, MAC_A, A, b"\0" * 6, B)
    assert a.emit() == pkt[:28]
    with pytest.raises(MalformedPacket, match="arp_unsupported_format"):
        ArpRepr.parse(b"\x00\x06" + pkt[2:])


def test_ipv4_header_emit_matches_scapy_and_options_are_skipped():
    hdr = Ipv4Repr(A, B, 17, 8, 64, 99, True).emit()
    assert hdr == raw(IP(src="192.0.2.1", dst="192.0.2.2", proto=17, id=99, flags="DF", len=28))[:20]
    with_opts = raw(IP(src="192.0.2.1", dst="192.0.2.2", options=[b"\x94\x04\x00\x00"]) / UDP(sport=1, dport=2))
    ip, l4 = Ipv4Repr.parse(with_opts)
    assert ip.header_len == 24 and len(l4) == 8


def test_ipv4_bad_version_and_lengths():
    good = raw(IP(src="192.0.2.1", dst="192.0.2.2") / UDP())
    with pytest.raises(MalformedPacket, match="ipv4_bad_version"):
        Ipv4Repr.parse(b"\x65" + good[1:], verify_checksum=False)
    with pytest.raises(MalformedPacket, match="ipv4_bad_header_length"):
        Ipv4Repr.parse(b"\x44" + good[1:], verify_checksum=False)


@given(st.binary(max_size=200))
@settings(max_examples=500)
def test_random_bytes_never_crash_parsers(data):
    for fn in (lambda d: EthernetRepr.parse(d), lambda d: Ipv4Repr.parse(d), lambda d: ArpRepr.parse(d),
               lambda d: IcmpRepr.parse(d), lambda d: TcpRepr.parse(d, A, B), lambda d: UdpRepr.parse(d, A, B),
               lambda d: TcpRepr.parse(d, A, B, False)):
        try:
            fn(data)
        except MalformedPacket:
            pass
