"""The kernel steering programs (drivers/steering.py) compute exactly the shard
that netstack.rss names: checked here by running them in small interpreters of
classic BPF and eBPF over crafted frames; the sharding tests in test_native.py
check them on the kernel (no frame forwarded)."""
import random
import struct

import pytest
from scapy.all import ARP, ICMP, IP, TCP, UDP, Ether, fragment, raw

from drivers import steering as st
from netstack.rss import DEFAULT_KEY, FlowSteering, RedirectionTable


def run_cbpf(prog, frame: bytes) -> int:
    """Classic BPF as a fanout program sees a received frame: SKF_NET_OFF loads
    are relative to the IP header; skb->protocol is the ethertype."""
    net = frame[14:]
    proto = struct.unpack("!H", frame[12:14])[0]
    a = x = 0
    mem = [0] * 16
    pc = 0

    def load(k, size):
        if k == st.SKF_AD_OFF + st.SKF_AD_PROTOCOL:
            return proto
        assert k >= st.SKF_NET_OFF and k - st.SKF_NET_OFF + size <= 0x100000
        off = k - st.SKF_NET_OFF
        if off + size > len(net):
            raise IndexError
        return int.from_bytes(net[off:off + size], "big")
    while True:
        code, jt, jf, k = prog[pc]
        pc += 1
        try:
            if code == st.LD_W_ABS:
                a = load(k, 4)
            elif code == st.LD_H_ABS:
                a = load(k, 2)
            elif code == st.LD_B_ABS:
                a = load(k, 1)
        except IndexError:
            return 0                     # an out-of-bounds load ends the program with 0
        if code in (st.LD_W_ABS, st.LD_H_ABS, st.LD_B_ABS):
            continue
        if code == st.LD_IMM:
            a = k
        elif code == st.LD_MEM:
            a = mem[k]
        elif code == st.ST_MEM:
            mem[k] = a
        elif code == st.TAX:
            x = a
        elif code == st.TXA:
            a = x
        elif code == st.ALU_XOR_K:
            a = (a ^ k) & 0xFFFFFFFF
        elif code == st.ALU_AND_K:
            a &= k
        elif code == st.ALU_MOD_K:
            a %= k
        elif code == st.JA:
            pc += k
        elif code == st.JEQ_K:
            pc += jt if a == k else jf
        elif code == st.JSET_K:
            pc += jt if a & k else jf
        elif code == st.RET_K:
            return k
        elif code == st.RET_A:
            return a
        else:
            raise AssertionError(f"unexpected opcode {code:#x}")


def run_ebpf(prog, frame: bytes) -> int:
    r = [0] * 11
    pc = 0
    m64 = (1 << 64) - 1
    while True:
        code, dst, src, off, imm = prog[pc]
        pc += 1
        if code in (st.E_LD_ABS_B, st.E_LD_ABS_H):
            size = 1 if code == st.E_LD_ABS_B else 2
            if imm + size > len(frame):
                return 0
            r[0] = int.from_bytes(frame[imm:imm + size], "big")
            for i in range(1, 6):
                r[i] = 0xDEAD            # clobbered
        elif code == st.E_MOV64_REG:
            r[dst] = r[src]
        elif code == st.E_MOV32_IMM:
            r[dst] = imm & 0xFFFFFFFF
        elif code == st.E_RSH64_IMM:
            r[dst] = (r[dst] & m64) >> imm
        elif code == st.E_AND64_IMM:
            r[dst] = r[dst] & (imm & m64)
        elif code == st.E_MUL32_IMM:
            r[dst] = ((r[dst] & 0xFFFFFFFF) * (imm & 0xFFFFFFFF)) & 0xFFFFFFFF
        elif code == st.E_XOR32_REG:
            r[dst] = (r[dst] ^ r[src]) & 0xFFFFFFFF
        elif code == st.E_AND32_IMM:
            r[dst] = r[dst] & imm & 0xFFFFFFFF
        elif code == st.E_MOD32_IMM:
            r[dst] = (r[dst] & 0xFFFFFFFF) % imm
        elif code == st.E_JEQ_IMM:
            pc += off if r[dst] == imm else 0
        elif code == st.E_JNE_IMM:
            pc += off if r[dst] != imm else 0
        elif code == st.E_JSET_IMM:
            pc += off if r[dst] & imm else 0
        elif code == st.E_EXIT:
            return r[0]
        else:
            raise AssertionError(f"unexpected opcode {code:#x}")


def frames(seed=1, n=80):
    rng = random.Random(seed)
    for _ in range(n):
        src = ".".join(str(rng.randrange(1, 255)) for _ in range(4))
        dst = ".".join(str(rng.randrange(1, 255)) for _ in range(4))
        sport, dport = rng.randrange(1, 65536), rng.randrange(1, 65536)
        if dport == 68:
            dport = 69
        l4 = TCP(sport=sport, dport=dport) if rng.random() < 0.6 else UDP(sport=sport, dport=dport)
        yield raw(Ether() / IP(src=src, dst=dst) / l4 / b"x"), (src, dst, sport, dport)


@pytest.mark.parametrize("shards", [2, 3, 4])
def test_programs_name_the_shard_of_the_rss_hash(shards):
    from netstack.rss import ip
    steer = FlowSteering(shards)
    cprog, eprog = st.toeplitz_cbpf(DEFAULT_KEY, RedirectionTable(shards).entries), st.toeplitz_ebpf(DEFAULT_KEY, RedirectionTable(shards).entries)
    assert len(cprog) < 4096                      # BPF_MAXINSNS
    seen = set()
    for f, (src, dst, sport, dport) in frames(shards):
        want = steer.shard_of(ip(src), ip(dst), sport, dport)
        assert run_cbpf(cprog, f) == want
        assert run_ebpf(eprog, f) == want
        seen.add(want)
    assert seen == set(range(shards))


@pytest.mark.parametrize("frame", [
    raw(Ether() / ARP(op=1, psrc="192.0.2.1", pdst="192.0.2.2")),
    raw(Ether() / IP(src="192.0.2.1", dst="192.0.2.2") / ICMP()),
    raw(Ether() / IP(src="192.0.2.1", dst="192.0.2.2", options=b"\x01\x01\x01\x00") / TCP(sport=5, dport=6)),
    raw(Ether() / IP(src="192.0.2.1", dst="192.0.2.2") / UDP(sport=67, dport=68) / b"dhcp"),
    raw(fragment(Ether() / IP(src="192.0.2.9", dst="192.0.2.2") / UDP(sport=7, dport=9) / (b"z" * 3000))[0]),
    raw(fragment(Ether() / IP(src="192.0.2.9", dst="192.0.2.2") / UDP(sport=7, dport=9) / (b"z" * 3000))[1]),
    raw(Ether() / IP(src="192.0.2.1", dst="192.0.2.2", proto=6))[:30],       # truncated
], ids=["arp", "icmp", "ip-options", "dhcp-reply", "first-fragment", "later-fragment", "truncated"])
def test_everything_but_plain_tcp_udp_goes_to_shard_0(frame):
    for shards in (2, 3):
        assert run_cbpf(st.toeplitz_cbpf(DEFAULT_KEY, RedirectionTable(shards).entries), frame) == 0
        assert run_ebpf(st.toeplitz_ebpf(DEFAULT_KEY, RedirectionTable(shards).entries), frame) == 0


def test_programs_encode_to_the_kernel_layouts():
    c = st.cbpf_bytes(st.toeplitz_cbpf(DEFAULT_KEY, RedirectionTable(2).entries))
    assert len(c) == 8 * len(st.toeplitz_cbpf(DEFAULT_KEY, RedirectionTable(2).entries))
    e = st.ebpf_bytes(st.toeplitz_ebpf(DEFAULT_KEY, RedirectionTable(2).entries))
    assert e[:8] == bytes([0xBF, 0x16, 0, 0, 0, 0, 0, 0])       # r6 = r1
    assert e[-8:] == bytes([0x95, 0, 0, 0, 0, 0, 0, 0])          # exit
