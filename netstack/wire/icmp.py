"""ICMPv4 messages (RFC 792)."""

from __future__ import annotations

import struct
from typing import NamedTuple

from .checksum import MalformedPacket, internet_checksum, ones_sum

ECHO_REPLY = 0
DEST_UNREACHABLE = 3
ECHO_REQUEST = 8
TIME_EXCEEDED = 11
# destination unreachable codes
UNREACH_NET = 0
UNREACH_HOST = 1
UNREACH_PROTOCOL = 2
UNREACH_PORT = 3
UNREACH_FRAG_NEEDED = 4
HEADER_LEN = 8
_HDR = struct.Struct("!BBHHH")


class IcmpRepr(NamedTuple):
    """type, code, the two 16-bit halves of the 'rest of header' word (identifier
    and sequence for echo; unused and next-hop MTU for fragmentation needed), data."""

    type: int
    code: int
    rest_hi: int
    rest_lo: int
    data: bytes = b""

    @staticmethod
    def parse(buf, verify_checksum: bool = True) -> "IcmpRepr":
        if len(buf) < HEADER_LEN:
            raise MalformedPacket("icmp_truncated")
        if verify_checksum and ones_sum(buf) != 0xFFFF:
            raise MalformedPacket("icmp_bad_checksum")
        t, c, _csum, hi, lo = _HDR.unpack_from(buf, 0)
        return IcmpRepr(t, c, hi, lo, memoryview(buf)[HEADER_LEN:])

    def emit(self) -> bytes:
        body = _HDR.pack(self.type, self.code, 0, self.rest_hi, self.rest_lo) + bytes(self.data)
        c = internet_checksum(body)
        return body[:2] + c.to_bytes(2, "big") + body[4:]
