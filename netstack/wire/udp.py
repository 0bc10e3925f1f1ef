"""UDP headers (RFC 768)."""

from __future__ import annotations

import struct
from typing import NamedTuple

from .checksum import MalformedPacket, internet_checksum, ones_sum, pseudo_header_sum

HEADER_LEN = 8
_HDR = struct.Struct("!HHHH")
_PROTO = 17


class UdpRepr(NamedTuple):
    src_port: int
    dst_port: int

    @staticmethod
    def parse(buf, src: bytes, dst: bytes, verify_checksum: bool = True) -> tuple["UdpRepr", memoryview]:
        n = len(buf)
        if n < HEADER_LEN:
            raise MalformedPacket("udp_truncated")
        sport, dport, length, csum = _HDR.unpack_from(buf, 0)
        if length < HEADER_LEN or length > n:
            raise MalformedPacket("udp_bad_length")
        mv = memoryview(buf)[:length]
        # A zero checksum means the sender computed none (RFC 768); a source port
        # of 0 is legal too.
        if verify_checksum and csum != 0:
            s = ones_sum(mv) + pseudo_header_sum(src, dst, _PROTO, length)
            s = (s & 0xFFFF) + (s >> 16)
            if s != 0xFFFF:
                raise MalformedPacket("udp_bad_checksum")
        return UdpRepr(sport, dport), mv[HEADER_LEN:]

    def emit(self, payload, src: bytes, dst: bytes, checksum: bool = True) -> bytes:
        length = HEADER_LEN + len(payload)
        seg = _HDR.pack(self.src_port, self.dst_port, length, 0) + bytes(payload)
        if not checksum:
            return seg
        c = internet_checksum(seg, pseudo_header_sum(src, dst, _PROTO, length))
        if c == 0:
            c = 0xFFFF  # 0 would mean "no checksum"
        return seg[:6] + c.to_bytes(2, "big") + seg[8:]
