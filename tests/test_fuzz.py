"""Fuzzed frames of every protocol into a live stack while transfers run
(netstack.testing.fuzz): no exception escapes, every frame is delivered to a
protocol or counted as a drop by reason, every transfer arrives intact.
scripts/fuzz.py runs the same with 1,000,000 frames and prints the report."""
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scapy.all import ICMP, IP, TCP, UDP, Ether, fuzz as scapy_fuzz, raw

from netstack.config import InterfaceConfig
from netstack.interface import Interface
from netstack.testing.fuzz import fuzz


def test_100k_fuzzed_frames_during_transfers():
    r = fuzz(frames=100_000, seed=7, transfer_bytes=200_000)
    assert r.frames == 100_000
    assert r.internal_errors == 0
    assert r.unaccounted == 0 and r.accounted == r.frames
    assert r.transfers_intact and r.bytes_transferred == 4 * 200_000
    assert len(r.drops) > 20                    # many different reasons, each counted


def _stack():
    i = Interface(InterfaceConfig(mac=b"\x02\x00\x00\x00\x00\x02", ip="192.0.2.2", seed=1))
    i.tcp_listen(80)
    i.udp_bind(53)
    return i


def test_scapy_fuzzed_protocol_frames_are_counted():
    """scapy's fuzz(): every field of the layers random, checksums computed."""
    i = _stack()
    n = 0
    for layer in (TCP(dport=80), UDP(dport=53), ICMP(), TCP(dport=80, flags="S", options=[("MSS", 1460)])):
        for _ in range(500):
            f = raw(Ether(dst="02:00:00:00:00:02") / IP(dst="192.0.2.2", src="192.0.2.1") / scapy_fuzz(layer))
            before = sum(i.counters.values())
            i.receive_frame(f, 0.0)
            n += 1
            assert sum(i.counters.values()) > before        # something counted it
    i.frames_to_send(0.0)
    assert "drop_internal_error" not in i.stats() and n == 2000


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(min_size=0, max_size=200), st.integers(0, 3))
def test_hypothesis_frames_never_raise(data, kind):
    """Arbitrary bytes behind valid Ethernet/IPv4 headers of each protocol."""
    i = _stack()
    head = raw(Ether(dst="02:00:00:00:00:02") / IP(dst="192.0.2.2", src="192.0.2.1",
                                                      proto=(6, 17, 1, 47)[kind]))[:34]
    i.receive_frame(head + data, 0.0)
    i.receive_frame(data, 0.0)
    i.frames_to_send(0.0)
    assert "drop_internal_error" not in i.stats()
