"""Fuzzing a live stack: mutated frames of every protocol thrown at an
Interface while real transfers run through it.

    report = fuzz(frames=100_000, seed=1)

Frames are built from templates (ARP, ICMP echo and errors, UDP, DHCP, TCP
SYNs, segments of the live connections with every option, IP fragments and
IP options), then mutated: bytes flipped, fields set to extremes, truncated
at any length, trailing bytes added; half of them get their checksums fixed
afterwards, so they pass the checks and reach the deep rules. Every frame
must end as a delivery to a protocol or as a drop counted by reason, no
exception may escape (`drop_internal_error` stays 0), and the transfers must
arrive intact.
"""

from __future__ import annotations

import hashlib
import random
import struct
from dataclasses import dataclass, field

from ..config import InterfaceConfig, TcpConfig
from ..interface import Interface
from ..tcp.state import ESTABLISHED
from ..wire import ArpRepr, IcmpRepr, Ipv4Repr, TcpRepr, UdpRepr, ip_to_bytes
from ..wire.checksum import internet_checksum, pseudo_header_sum
from . import LinkPair

__all__ = ["fuzz", "FuzzReport"]

HANDLED = ("rx_arp", "rx_icmp", "rx_udp", "rx_tcp", "rx_tcp_fast", "ipv4_fragments_held")


@dataclass
class FuzzReport:
    frames: int = 0
    accounted: int = 0
    unaccounted: int = 0
    internal_errors: int = 0
    drops: dict = field(default_factory=dict)
    delivered: dict = field(default_factory=dict)
    transfers_intact: bool = False
    bytes_transferred: int = 0
    samples: list = field(default_factory=list)      # a few unaccounted frames, to look at

    def lines(self) -> list[str]:
        out = [f"{self.frames} fuzzed frames: {self.accounted} accounted for (delivered or a counted drop), "
               f"{self.unaccounted} not; {self.internal_errors} internal errors; transfers intact: "
               f"{self.transfers_intact} ({self.bytes_transferred} bytes)",
               "delivered to: " + ", ".join(f"{k} {v}" for k, v in sorted(self.delivered.items())),
               "drops by reason:"]
        out += [f"  {k[5:]:40} {v}" for k, v in sorted(self.drops.items(), key=lambda kv: -kv[1])]
        return out


def _eth(dst: bytes, src: bytes, et: int, payload: bytes) -> bytes:
    return dst + src + struct.pack("!H", et) + payload


class _Templates:
    def __init__(self, lp: LinkPair, conns, rng: random.Random) -> None:
        self.lp, self.conns, self.rng = lp, conns, rng
        self.us, self.them = lp.b, lp.a
        self.attacker = ip_to_bytes("192.0.2.99")

    def ip(self, proto: int, l4: bytes, src=None, frag=(False, 0), ident=None, options=b"") -> bytes:
        src = src or self.them.ip
        hdr = Ipv4Repr(src, self.us.ip, proto, len(l4), 64, ident if ident is not None else self.rng.getrandbits(16),
                       False, frag[0], frag[1]).emit()
        if options:
            hl = 20 + len(options)
            hdr = bytearray(hdr + options)
            hdr[0] = 0x40 | (hl // 4)
            struct.pack_into("!H", hdr, 2, hl + len(l4))
            struct.pack_into("!H", hdr, 10, 0)
            struct.pack_into("!H", hdr, 10, internet_checksum(bytes(hdr)))
            hdr = bytes(hdr)
        return _eth(self.us.mac, self.them.mac, 0x0800, hdr + l4)

    def tcp(self, seg: TcpRepr, payload: bytes = b"", src=None) -> bytes:
        return self.ip(6, seg.emit(payload, src or self.them.ip, self.us.ip), src)

    def any(self) -> bytes:
        r = self.rng
        k = r.randrange(12)
        c, s = r.choice(self.conns)
        if k == 0:
            return _eth(b"\xff" * 6, self.them.mac, 0x0806,
                        ArpRepr(r.choice((1, 2, 3)), self.them.mac, self.them.ip, b"\x00" * 6, self.us.ip).emit())
        if k == 1:
            return self.ip(1, IcmpRepr(8, 0, r.getrandbits(16), r.getrandbits(16), r.randbytes(r.randrange(64))).emit())
        if k == 2:      # an ICMP error quoting a live connection, with any sequence number
            quoted = Ipv4Repr(self.us.ip, self.them.ip, 6, 20).emit() + struct.pack(
                "!HHI", s.local_port, s.remote_port, r.choice((s.snd_una, r.getrandbits(32))))
            return self.ip(1, IcmpRepr(3, r.choice((1, 3, 4)), 0, r.choice((0, 68, 500, 1400)), quoted).emit(),
                           src=self.attacker)
        if k == 3:
            dport = r.choice((53, 68, 7, 9999))
            return self.ip(17, UdpRepr(r.getrandbits(16), dport).emit(r.randbytes(r.randrange(300)), self.them.ip,
                                                                      self.us.ip))
        if k == 4:      # a SYN with every option
            return self.tcp(TcpRepr(r.getrandbits(16), 80, r.getrandbits(32), 0, 0x02, r.getrandbits(16), 0,
                                    r.choice((None, 0, 536, 1460, 65535)), r.choice((None, 0, 7, 14, 200 % 256)),
                                    r.random() < 0.5, (), (r.getrandbits(32), 0) if r.random() < 0.5 else None))
        if k in (5, 6, 7):
            # A segment of a live connection as an off-path attacker makes it: the
            # 4-tuple is known, the sequence numbers are not (random, or just outside
            # the window on either side). RFC 5961 must keep the connection whole.
            wnd = s.recv_buffer
            seq = r.choice((r.getrandbits(32), (s.rcv_nxt + wnd + r.randrange(1, 1 << 20)) & 0xFFFFFFFF,
                            (s.rcv_nxt - r.randrange(1 << 20, 1 << 30)) & 0xFFFFFFFF))
            ack = r.choice((r.getrandbits(32), (s.snd_una - s.max_snd_wnd - r.randrange(1, 1 << 20)) & 0xFFFFFFFF,
                            (s.snd_max + r.randrange(1, 1 << 20)) & 0xFFFFFFFF))
            flags = r.choice((0x10, 0x18, 0x11, 0x04, 0x14, 0x02, 0x12, 0x01, r.getrandbits(8)))
            sack = tuple((x & 0xFFFFFFFF, (x + r.randrange(1, 5000)) & 0xFFFFFFFF)
                         for x in (r.getrandbits(32) for _ in range(r.randrange(4))))
            ts = (r.getrandbits(32), r.getrandbits(32)) if r.random() < 0.6 else None
            seg = TcpRepr(s.remote_port, s.local_port, seq, ack, flags, r.getrandbits(16), 0, None, None, False,
                          sack[:3 if ts else 4], ts)
            return self.tcp(seg, r.randbytes(r.randrange(0, 1400)))
        if k == 8:      # IP fragments, overlapping or not
            off = r.randrange(0, 8192) * 8 if r.random() < 0.5 else 0
            return self.ip(r.choice((6, 17, 1)), r.randbytes(r.choice((0, 8, 16, 1480))),
                           frag=(r.random() < 0.7, off), ident=r.randrange(16))
        if k == 9:      # IP options
            return self.ip(6, r.randbytes(40), options=r.randbytes(r.choice((4, 8, 40))))
        if k == 10:
            return _eth(self.us.mac, self.them.mac, r.getrandbits(16), r.randbytes(r.randrange(100)))
        return r.randbytes(r.randrange(0, 120))

    def mutate(self, f: bytes) -> bytes:
        r = self.rng
        b = bytearray(f)
        for _ in range(r.choice((0, 1, 1, 2, 4, 8))):
            if b:
                i = r.randrange(len(b))
                b[i] = r.choice((0, 0xFF, r.getrandbits(8), b[i] ^ (1 << r.randrange(8))))
        k = r.random()
        if k < 0.15:
            b = b[:r.randrange(len(b) + 1)]
        elif k < 0.25:
            b += r.randbytes(r.randrange(1, 64))
        if r.random() < 0.5:
            _fix_checksums(b)
        return bytes(b)


def _fix_checksums(b: bytearray) -> None:
    """Make a mutated IPv4/TCP/UDP frame's checksums right again (so it passes them)."""
    if len(b) < 34 or b[12:14] != b"\x08\x00" or b[14] >> 4 != 4:
        return
    ihl = (b[14] & 0x0F) * 4
    if ihl < 20 or len(b) < 14 + ihl:
        return
    struct.pack_into("!H", b, 24, 0)
    struct.pack_into("!H", b, 24, internet_checksum(bytes(b[14:14 + ihl])))
    total = struct.unpack_from("!H", b, 16)[0]
    l4 = bytes(b[14 + ihl:14 + total]) if 14 + ihl <= 14 + total <= len(b) else b""
    proto = b[23]
    src, dst = bytes(b[26:30]), bytes(b[30:34])
    if proto == 6 and len(l4) >= 20:
        seg = bytearray(l4)
        struct.pack_into("!H", seg, 16, 0)
        struct.pack_into("!H", seg, 16, internet_checksum(bytes(seg), pseudo_header_sum(src, dst, 6, len(seg))))
        b[14 + ihl:14 + ihl + len(seg)] = seg
    elif proto == 17 and len(l4) >= 8:
        seg = bytearray(l4)
        struct.pack_into("!H", seg, 6, 0)
        struct.pack_into("!H", seg, 6, internet_checksum(bytes(seg), pseudo_header_sum(src, dst, 17, len(seg)))
                         or 0xFFFF)
        b[14 + ihl:14 + ihl + len(seg)] = seg


def fuzz(frames: int = 100_000, seed: int = 1, transfer_bytes: int = 300_000, every: int = 3) -> FuzzReport:
    """Throw `frames` mutated frames at stack B, one burst every `every` link
    steps, while A and B move `transfer_bytes` each way on two connections."""
    rng = random.Random(seed)

    def iface(n, ip):
        return Interface(InterfaceConfig(mac=bytes([2, 0, 0, 0, 0, n]), ip=ip, seed=seed * 10 + n,
                                         tcp=TcpConfig(max_retries=30)))
    lp = LinkPair(iface(1, "192.0.2.1"), iface(2, "192.0.2.2"), seed=seed)
    lst = lp.b.tcp_listen(80, backlog=64)
    conns = []
    for _ in range(2):
        c = lp.a.tcp_connect(lp.b.ip, 80, lp.now)
        lp.run_until(lambda: lst.accept_queue)
        conns.append((c, lst.accept()))
    lp.run_until(lambda: all(c.state is ESTABLISHED for c, _ in conns))
    data = [(rng.randbytes(transfer_bytes), rng.randbytes(transfer_bytes)) for _ in conns]
    sent = [[0, 0] for _ in conns]
    got = [[bytearray(), bytearray()] for _ in conns]
    tpl = _Templates(lp, conns, rng)
    rep = FuzzReport()
    b = lp.b
    counters = b.counters
    thrown = 0
    steps = 0
    done = False
    while thrown < frames or not done:
        for i, (c, s) in enumerate(conns):
            up, down = data[i]
            if c.state is ESTABLISHED and sent[i][0] < len(up):
                sent[i][0] += c.send(memoryview(up)[sent[i][0]:sent[i][0] + 65536])
            if s.state is ESTABLISHED and sent[i][1] < len(down):
                sent[i][1] += s.send(memoryview(down)[sent[i][1]:sent[i][1] + 65536])
            while (x := s.recv()):
                got[i][0].extend(x)
            while (x := c.recv()):
                got[i][1].extend(x)
        done = all(len(got[i][0]) == len(data[i][0]) and len(got[i][1]) == len(data[i][1])
                   for i in range(len(conns)))
        if thrown < frames and steps % every == 0:
            for _ in range(min(64, frames - thrown)):
                f = tpl.mutate(tpl.any())
                before_drop = sum(v for k, v in counters.items() if k.startswith("drop_"))
                before_rx = sum(counters.get(k, 0) for k in HANDLED)
                b.receive_frame(f, lp.now, False)
                after_drop = sum(v for k, v in counters.items() if k.startswith("drop_"))
                after_rx = sum(counters.get(k, 0) for k in HANDLED)
                thrown += 1
                if after_drop > before_drop or after_rx > before_rx:
                    rep.accounted += 1
                else:
                    rep.unaccounted += 1
                    if len(rep.samples) < 20:
                        rep.samples.append(f)
        lp.step()
        steps += 1
        if steps > 20_000_000 or lp.now > 100_000:
            break
    rep.frames = thrown
    st = b.stats()
    rep.internal_errors = st.get("drop_internal_error", 0)
    rep.drops = {k: v for k, v in st.items() if k.startswith("drop_")}
    rep.delivered = {k: st.get(k, 0) for k in HANDLED}
    rep.transfers_intact = all(hashlib.sha256(got[i][0]).digest() == hashlib.sha256(data[i][0]).digest() and
                               hashlib.sha256(got[i][1]).digest() == hashlib.sha256(data[i][1]).digest()
                               for i in range(len(conns)))
    rep.bytes_transferred = sum(len(g[0]) + len(g[1]) for g in got)
    return rep
