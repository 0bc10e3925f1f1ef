"""TCP headers and options (RFC 9293, RFC 7323, RFC 2018)."""

from __future__ import annotations

import enum
import struct
from typing import NamedTuple

from .checksum import MalformedPacket, internet_checksum, l4_checksum_ok, pseudo_header_sum

HEADER_LEN = 20
_HDR = struct.Struct("!HHIIBBHHH")
_TS_FAST = b"\x01\x01\x08\x0a"
_TS = struct.Struct("!II")
_HDR_TS = struct.Struct("!HHIIBBHHHIII")
_CSUM = struct.Struct("!H")
_MSS_OPT = struct.Struct("!BBH")
_WS_OPT = struct.Struct("!BBBB")
# NOP NOP SACK(len) and n blocks, one pack per option (an out-of-order ACK's
# options: built once per ACK sent under loss)
_SACK_OPT = [struct.Struct("!BBBB" + "II" * n) for n in range(5)]
# NOP NOP TS, then NOP NOP SACK and n blocks: every ACK of a connection under loss
_TS_SACK_OPT = [struct.Struct("!BBBBII" + "BBBB" + "II" * n) for n in range(4)]
_LAST_TS_SACK = [None, None, b""]     # (blocks object, timestamp, option bytes): the last packed
_PROTO = 6

OPT_EOL, OPT_NOP, OPT_MSS, OPT_WSCALE, OPT_SACK_PERMITTED, OPT_SACK, OPT_TIMESTAMP = 0, 1, 2, 3, 4, 5, 8


class TcpFlags(enum.IntFlag):
    FIN = 0x01
    SYN = 0x02
    RST = 0x04
    PSH = 0x08
    ACK = 0x10
    URG = 0x20
    ECE = 0x40
    CWR = 0x80


FIN, SYN, RST, PSH, ACK, URG = 0x01, 0x02, 0x04, 0x08, 0x10, 0x20


class TcpRepr(NamedTuple):
    src_port: int
    dst_port: int
    seq: int
    ack: int
    flags: int
    window: int                     # the raw 16-bit field (unscaled)
    urgent: int = 0
    mss: int | None = None
    wscale: int | None = None
    sack_permitted: bool = False
    sack_blocks: tuple = ()          # ((left, right), ...)
    timestamp: tuple | None = None   # (ts_val, ts_ecr)

    @staticmethod
    def parse(buf, src: bytes, dst: bytes, verify_checksum: bool = True) -> tuple["TcpRepr", memoryview]:
        n = len(buf)
        if n < HEADER_LEN:
            raise MalformedPacket("tcp_truncated")
        sport, dport, seq, ack, off, flags, window, _csum, urgent = _HDR.unpack_from(buf, 0)
        hlen = (off >> 4) * 4
        if hlen < HEADER_LEN or hlen > n:
            raise MalformedPacket("tcp_bad_header_length")
        mv = memoryview(buf)
        if verify_checksum and not l4_checksum_ok(mv, src, dst, _PROTO):
            raise MalformedPacket("tcp_bad_checksum")
        if hlen == HEADER_LEN:
            return TcpRepr(sport, dport, seq, ack, flags, window, urgent), mv[HEADER_LEN:]
        if hlen == 32 and mv[20:24] == _TS_FAST:
            return (TcpRepr(sport, dport, seq, ack, flags, window, urgent, None, None, False, (),
                            _TS.unpack_from(buf, 24)), mv[32:])
        if hlen == 40 and mv[20:22] == b"\x02\x04" and mv[24:28] == b"\x04\x02\x08\x0a" \
                and mv[36:39] == b"\x01\x03\x03":
            # the options of Linux's SYN and SYN-ACK, in its order: MSS, SACK
            # permitted, timestamps, NOP, window scale
            return (TcpRepr(sport, dport, seq, ack, flags, window, urgent, (mv[22] << 8) | mv[23], mv[39], True,
                            (), _TS.unpack_from(buf, 28)), mv[40:])
        mss = wscale = ts = None
        sackp = False
        blocks = ()
        i = HEADER_LEN
        while i < hlen:
            kind = mv[i]
            if kind == OPT_EOL:
                break
            if kind == OPT_NOP:
                i += 1
                continue
            if i + 1 >= hlen:
                raise MalformedPacket("tcp_bad_option")
            olen = mv[i + 1]
            if olen < 2 or i + olen > hlen:
                raise MalformedPacket("tcp_bad_option")
            if kind == OPT_MSS and olen == 4:
                mss = (mv[i + 2] << 8) | mv[i + 3]
            elif kind == OPT_WSCALE and olen == 3:
                wscale = mv[i + 2]
            elif kind == OPT_SACK_PERMITTED and olen == 2:
                sackp = True
            elif kind == OPT_SACK and (olen - 2) % 8 == 0:
                blocks = tuple(struct.unpack_from("!II", buf, j) for j in range(i + 2, i + olen, 8))
            elif kind == OPT_TIMESTAMP and olen == 10:
                ts = _TS.unpack_from(buf, i + 2)
            # unknown options (or known ones with a wrong length) are skipped by length
            i += olen
        return TcpRepr(sport, dport, seq, ack, flags, window, urgent, mss, wscale, sackp, blocks, ts), mv[hlen:]

    def options_bytes(self) -> bytes:
        blocks = self.sack_blocks
        if blocks and self.timestamp is not None and self.mss is None and self.wscale is None \
                and not self.sack_permitted and len(blocks) < 4:
            # the segment of a connection under loss, in one pack (the general layout below,
            # same bytes); a burst's segments carry the same blocks and timestamps: packed once
            last = _LAST_TS_SACK
            ts = self.timestamp
            if blocks is last[0] and ts == last[1]:
                return last[2]
            n = len(blocks)
            o = _TS_SACK_OPT[n].pack(OPT_NOP, OPT_NOP, OPT_TIMESTAMP, 10, *ts,
                                     OPT_NOP, OPT_NOP, OPT_SACK, 2 + 8 * n, *[x for b in blocks for x in b])
            last[:] = blocks, ts, o
            return o
        o = b""
        if self.mss is not None:
            o += _MSS_OPT.pack(OPT_MSS, 4, self.mss)
        if self.wscale is not None:
            o += _WS_OPT.pack(OPT_NOP, OPT_WSCALE, 3, self.wscale)
        if self.sack_permitted:
            o += b"\x01\x01\x04\x02"
        if self.timestamp is not None:
            o += _TS_FAST + _TS.pack(*self.timestamp)
        blocks = self.sack_blocks
        if blocks:
            n = len(blocks)
            if n >= len(_SACK_OPT):     # 5 blocks are 44 bytes
                raise ValueError("TCP options longer than 40 bytes")
            o += _SACK_OPT[n].pack(OPT_NOP, OPT_NOP, OPT_SACK, 2 + 8 * n, *[x for b in blocks for x in b])
        if len(o) % 4:
            o += b"\x00" * (4 - len(o) % 4)
        if len(o) > 40:
            raise ValueError("TCP options longer than 40 bytes")
        return o

    def header_len(self) -> int:
        return HEADER_LEN + len(self.options_bytes())

    def emit_header(self, payload_len: int, src: bytes, dst: bytes) -> bytes:
        """Header and options only, with the pseudo-header sum in the checksum field
        (a NEEDS_CSUM segment whose payload the device will checksum): the payload
        itself is never read, so it can travel to the driver without a copy."""
        opts = b"" if self.timestamp is None and self.mss is None and self.wscale is None \
            and not self.sack_permitted and not self.sack_blocks else self.options_bytes()
        hlen = HEADER_LEN + len(opts)
        hdr = bytearray(_HDR.pack(self.src_port, self.dst_port, self.seq, self.ack, (hlen // 4) << 4,
                                  self.flags, self.window, 0, self.urgent) + opts)
        _CSUM.pack_into(hdr, 16, pseudo_header_sum(src, dst, _PROTO, hlen + payload_len))
        return bytes(hdr)

    def emit(self, payload, src: bytes, dst: bytes, checksum: bool = True) -> bytes:
        """Header + options + payload. checksum=False leaves the pseudo-header sum
        in the field, as a NEEDS_CSUM (offloaded) frame wants it."""
        if self.mss is None and self.wscale is None and not self.sack_permitted and not self.sack_blocks:
            # the common segment: no options, or only the timestamp
            ts = self.timestamp
            n = len(payload)
            if ts is None:
                seg = bytearray(20 + n)
                _HDR.pack_into(seg, 0, self.src_port, self.dst_port, self.seq, self.ack, 0x50, self.flags,
                               self.window, 0, self.urgent)
                seg[20:] = payload
            else:
                seg = bytearray(32 + n)
                _HDR_TS.pack_into(seg, 0, self.src_port, self.dst_port, self.seq, self.ack, 0x80, self.flags,
                                  self.window, 0, self.urgent, 0x0101080A, ts[0], ts[1])
                seg[32:] = payload
            ph = pseudo_header_sum(src, dst, _PROTO, len(seg))
            _CSUM.pack_into(seg, 16, internet_checksum(seg, ph) if checksum else ph)
            return bytes(seg)
        opts = self.options_bytes()
        hlen = HEADER_LEN + len(opts)
        hdr = _HDR.pack(self.src_port, self.dst_port, self.seq, self.ack, (hlen // 4) << 4,
                        self.flags, self.window, 0, self.urgent) + opts
        seg = hdr + bytes(payload)
        ph = pseudo_header_sum(src, dst, _PROTO, len(seg))
        if checksum:
            c = internet_checksum(seg, ph)
        else:
            c = ph
        return seg[:16] + c.to_bytes(2, "big") + seg[18:]

    def seg_len(self, payload_len: int) -> int:
        """Sequence space used: payload plus one for SYN and one for FIN."""
        return payload_len + (1 if self.flags & SYN else 0) + (1 if self.flags & FIN else 0)


def reset_for(seg: TcpRepr, payload_len: int) -> TcpRepr | None:
    """The RST that answers a segment for no connection (RFC 9293 3.10.7.1):
    SEQ = SEG.ACK when it carries an ACK, else SEQ 0 and ACK = SEG.SEQ + SEG.LEN;
    None for a RST (never answered)."""
    if seg.flags & RST:
        return None
    if seg.flags & ACK:
        return TcpRepr(seg.dst_port, seg.src_port, seg.ack, 0, RST, 0)
    return TcpRepr(seg.dst_port, seg.src_port, 0, (seg.seq + seg.seg_len(payload_len)) & 0xFFFFFFFF, RST | ACK, 0)


def starts_with_dsack(blocks, ack: int) -> bool:
    """RFC 2883: the first SACK block reports a duplicate segment (a D-SACK) when
    it lies at or below the cumulative ACK, or inside the second block."""
    left, right = blocks[0]
    if ((ack - right) & 0xFFFFFFFF) < 0x80000000:                 # right <= ack
        return True
    if len(blocks) > 1:
        l2, r2 = blocks[1]
        return ((left - l2) & 0xFFFFFFFF) < 0x80000000 and ((r2 - right) & 0xFFFFFFFF) < 0x80000000
    return False
