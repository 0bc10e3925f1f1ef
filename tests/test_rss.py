"""RSS: Microsoft's published Toeplitz verification values, and flow steering."""
import random

import pytest

from netstack.rss import FlowSteering, RedirectionTable, Toeplitz, ip

# From Microsoft's "Verifying the RSS Hash Calculation" (IPv4 table): destination,
# source, then the expected hash with ports and without.
VECTORS = [
    ("161.142.100.80", 1766, "66.9.149.187", 2794, 0x51CCC178, 0x323E8FC2),
    ("65.69.140.83", 4739, "199.92.111.2", 14230, 0xC626B0EA, 0xD718262A),
    ("12.22.207.184", 38024, "24.19.198.95", 12898, 0x5C2B394A, 0xD2D0A5DE),
    ("209.142.163.6", 2217, "38.27.205.30", 48228, 0xAFC7327F, 0x82989176),
    ("202.188.127.2", 1303, "153.39.163.191", 44251, 0x10E828A2, 0x5D1809C5),
]


@pytest.mark.parametrize("dst,dport,src,sport,h4,h2", VECTORS)
def test_microsoft_verification_values(dst, dport, src, sport, h4, h2):
    t = Toeplitz()
    assert t.hash_ipv4(ip(src), ip(dst), sport, dport) == h4
    assert t.hash_ipv4(ip(src), ip(dst)) == h2


def test_redirection_table_spreads_flows():
    fs = FlowSteering(2)
    rng = random.Random(1)
    counts = [0, 0]
    for _ in range(2000):
        counts[fs.shard_of(ip("192.0.2.1"), ip("192.0.2.2"), rng.randint(1024, 65535), 80)] += 1
    assert min(counts) > 800
    assert RedirectionTable(3).shard(5) == 5 % 128 % 3


def test_even_kernel_ports_still_spread():
    """Linux's connect() picks even source ports: a shard rule must not rest on parity."""
    fs = FlowSteering(2)
    shards = {fs.shard_of(ip("192.0.2.1"), ip("192.0.2.2"), p, 1234) for p in range(40000, 40400, 2)}
    assert shards == {0, 1}


def test_connect_port_hashes_back_to_its_shard():
    fs = FlowSteering(2)
    for shard in (0, 1):
        p = fs.port_for_shard(shard, ip("192.0.2.2"), ip("192.0.2.1"), 80, range(32768, 61000))
        assert fs.shard_of(ip("192.0.2.1"), ip("192.0.2.2"), 80, p) == shard
