"""IPv4 headers (RFC 791). Options are skipped (kept as raw bytes), not rejected."""

from __future__ import annotations

import socket
import struct
from typing import NamedTuple

from .checksum import MalformedPacket, internet_checksum, ones_sum

IP_PROTO_ICMP = 1
IP_PROTO_TCP = 6
IP_PROTO_UDP = 17
HEADER_LEN = 20
FLAG_DF = 0x4000
FLAG_MF = 0x2000
_HDR = struct.Struct("!BBHHHBBH4s4s")


def ip_to_bytes(ip) -> bytes:
    """'192.0.2.1' -> 4 bytes; only the dotted quad (inet_aton's short forms
    made '10' into 0.0.0.10). A bad address is a ValueError."""
    if isinstance(ip, bytes):
        if len(ip) != 4:
            raise ValueError(f"an IPv4 address is 4 bytes, not {len(ip)}")
        return ip
    try:
        return socket.inet_pton(socket.AF_INET, str(ip))
    except OSError:
        raise ValueError(f"invalid IPv4 address {ip!r} (want a dotted quad such as 192.0.2.1)") from None


def ip_to_str(ip: bytes) -> str:
    return socket.inet_ntoa(ip)


class Ipv4Repr(NamedTuple):
    src: bytes
    dst: bytes
    protocol: int
    payload_len: int
    ttl: int = 64
    ident: int = 0
    dont_frag: bool = False
    more_frags: bool = False
    frag_offset: int = 0   # in bytes
    tos: int = 0
    header_len: int = HEADER_LEN

    @staticmethod
    def parse(buf, verify_checksum: bool = True) -> tuple["Ipv4Repr", memoryview]:
        n = len(buf)
        if n < HEADER_LEN:
            raise MalformedPacket("ipv4_truncated")
        vihl, tos, total, ident, frag, ttl, proto, _csum, src, dst = _HDR.unpack_from(buf, 0)
        if vihl >> 4 != 4:
            raise MalformedPacket("ipv4_bad_version")
        hlen = (vihl & 0x0F) * 4
        if hlen < HEADER_LEN:
            raise MalformedPacket("ipv4_bad_header_length")
        if hlen > n or total < hlen:
            raise MalformedPacket("ipv4_truncated")
        if total > n:
            raise MalformedPacket("ipv4_truncated")
        mv = memoryview(buf)
        if verify_checksum and ones_sum(mv[:hlen]) != 0xFFFF:
            raise MalformedPacket("ipv4_bad_checksum")
        r = Ipv4Repr(src, dst, proto, total - hlen, ttl, ident, bool(frag & FLAG_DF),
                     bool(frag & FLAG_MF), (frag & 0x1FFF) * 8, tos, hlen)
        return r, mv[hlen:total]

    def emit(self) -> bytes:
        """The 20-byte header (no options), checksum filled in."""
        frag = (FLAG_DF if self.dont_frag else 0) | (FLAG_MF if self.more_frags else 0) | (self.frag_offset >> 3)
        hdr = _HDR.pack(0x45, self.tos, HEADER_LEN + self.payload_len, self.ident, frag, self.ttl,
                        self.protocol, 0, self.src, self.dst)
        c = internet_checksum(hdr)
        return hdr[:10] + c.to_bytes(2, "big") + hdr[12:]

    @staticmethod
    def buffer_len() -> int:
        return HEADER_LEN

    def is_fragment(self) -> bool:
        return self.more_frags or self.frag_offset != 0
