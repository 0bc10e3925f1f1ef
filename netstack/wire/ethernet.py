"""Ethernet II frames."""

from __future__ import annotations

import struct
from typing import NamedTuple

from .checksum import MalformedPacket

ETHERTYPE_IPV4 = 0x0800
ETHERTYPE_ARP = 0x0806
ETHERTYPE_IPV6 = 0x86DD
BROADCAST_MAC = b"\xff" * 6
HEADER_LEN = 14
_HDR = struct.Struct("!6s6sH")


def parse_mac(text: str) -> bytes:
    parts = text.replace("-", ":").split(":")
    if len(parts) != 6 or not all(1 <= len(p) <= 2 and all(c in "0123456789abcdefABCDEF" for c in p)
                                  for p in parts):
        raise ValueError(f"invalid MAC address {text!r} (want six hex octets, 02:00:00:00:00:01)")
    return bytes(int(p, 16) for p in parts)


def format_mac(mac: bytes) -> str:
    return ":".join(f"{b:02x}" for b in mac)


class EthernetRepr(NamedTuple):
    dst: bytes
    src: bytes
    ethertype: int

    @staticmethod
    def parse(frame) -> tuple["EthernetRepr", memoryview]:
        if len(frame) < HEADER_LEN:
            raise MalformedPacket("ethernet_truncated")
        dst, src, et = _HDR.unpack_from(frame, 0)
        return EthernetRepr(dst, src, et), memoryview(frame)[HEADER_LEN:]

    def emit(self, payload=b"") -> bytes:
        return _HDR.pack(self.dst, self.src, self.ethertype) + bytes(payload)

    def header(self) -> bytes:
        return _HDR.pack(self.dst, self.src, self.ethertype)

    @staticmethod
    def buffer_len() -> int:
        return HEADER_LEN
