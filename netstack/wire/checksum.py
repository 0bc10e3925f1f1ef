"""The Internet checksum (RFC 1071) and the error type of every parser.

Summing 16-bit words one by one is ~100x slower in Python than reading the
whole buffer as one big integer: since 2**16 == 1 (mod 0xFFFF), the
one's-complement sum of the words is that integer modulo 0xFFFF. Folding the
integer in halves (at multiples of 16 bits) before the final modulo keeps the
big-number division small: ~3.6 us for 1460 bytes on these machines.
"""

from __future__ import annotations


class MalformedPacket(ValueError):
    """Remote garbage: the interface turns it into a counted drop by `reason`."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


_MASKS: dict[int, int] = {}


def ones_sum(data) -> int:
    """The one's-complement sum of data as 16-bit big-endian words, in 0..0xFFFF
    (0xFFFF rather than 0 for non-zero data that sums to 'negative zero')."""
    n = len(data)
    if n & 1:
        data = bytes(data) + b"\0"
    s = int.from_bytes(data, "big")
    if not s:
        return 0
    b = s.bit_length()
    while b > 2048:
        half = ((b >> 1) + 15) & ~15
        mask = _MASKS.get(half)
        if mask is None:
            mask = _MASKS[half] = (1 << half) - 1
        s = (s >> half) + (s & mask)
        b = s.bit_length()
    r = s % 0xFFFF
    return r if r else 0xFFFF


def internet_checksum(data, initial: int = 0) -> int:
    """The checksum to put in a header: ~(initial + sum(data)) as 16 bits.
    `initial` is a partial sum (e.g. the pseudo-header's)."""
    s = ones_sum(data) + initial
    s = (s & 0xFFFF) + (s >> 16)
    s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


def pseudo_header_sum(src: bytes, dst: bytes, protocol: int, length: int) -> int:
    """The one's-complement sum of the IPv4 pseudo-header (RFC 793 / RFC 768)."""
    s = (int.from_bytes(src, "big") + int.from_bytes(dst, "big")) 
    s = (s >> 16) + (s & 0xFFFF) + protocol + length
    s = (s & 0xFFFF) + (s >> 16)
    s = (s & 0xFFFF) + (s >> 16)
    return s


def verify(data, initial: int = 0) -> bool:
    """True when data (checksum field included) plus initial sums to all ones."""
    s = ones_sum(data) + initial
    s = (s & 0xFFFF) + (s >> 16)
    s = (s & 0xFFFF) + (s >> 16)
    return s == 0xFFFF


def l4_checksum_ok(segment, src: bytes, dst: bytes, protocol: int) -> bool:
    """A received TCP/UDP segment's checksum (with its pseudo-header) is right:
    the one check every input path calls."""
    s = ones_sum(segment) + pseudo_header_sum(src, dst, protocol, len(segment))
    s = (s & 0xFFFF) + (s >> 16)
    return s == 0xFFFF
