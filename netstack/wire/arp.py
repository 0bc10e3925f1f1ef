"""ARP for Ethernet/IPv4 (RFC 826)."""

from __future__ import annotations

import struct
from typing import NamedTuple

from .checksum import MalformedPacket

ARP_REQUEST = 1
ARP_REPLY = 2
HEADER_LEN = 28
_ARP = struct.Struct("!HHBBH6s4s6s4s")
_HTYPE_ETHERNET = 1
_PTYPE_IPV4 = 0x0800


class ArpRepr(NamedTuple):
    operation: int
    source_hw: bytes
    source_ip: bytes
    target_hw: bytes
    target_ip: bytes

    @staticmethod
    def parse(buf) -> "ArpRepr":
        if len(buf) < HEADER_LEN:
            raise MalformedPacket("arp_truncated")
        htype, ptype, hlen, plen, op, sha, spa, tha, tpa = _ARP.unpack_from(buf, 0)
        if htype != _HTYPE_ETHERNET or ptype != _PTYPE_IPV4 or hlen != 6 or plen != 4:
            raise MalformedPacket("arp_unsupported_format")
        return ArpRepr(op, sha, spa, tha, tpa)

    def emit(self) -> bytes:
        return _ARP.pack(_HTYPE_ETHERNET, _PTYPE_IPV4, 6, 4, self.operation, self.source_hw,
                         self.source_ip, self.target_hw, self.target_ip)

    @staticmethod
    def buffer_len() -> int:
        return HEADER_LEN
