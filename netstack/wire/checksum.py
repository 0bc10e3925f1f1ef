"""The Internet checksum (RFC 1071) and the error type of every parser.

Summing 16-bit words one by one is ~100x slower in Python than reading the
whole buffer as one big integer: since 2**16 == 1 (mod 0xFFFF), the
one's-complement sum of the words is that integer modulo 0xFFFF. Folding the
integer in halves (at multiples of 16 bits) before the final modulo keeps the
big-number division small: ~2 us for 1448 bytes on these machines (0.9 us to
read the integer, 1.1 us to fold and reduce it; the modulo alone took 1.9).
"""

from __future__ import annotations

import os


class MalformedPacket(ValueError):
    """Remote garbage: the interface turns it into a counted drop by `reason`."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


_MASKS: dict[int, int] = {}
_MASK_CACHE_BITS = 16384    # masks cached: at most _MASK_CACHE_LEN of at most 2 KB (hostile lengths can't grow it)
_MASK_CACHE_LEN = 256
_FOLD_BITS = 2048           # sums longer than this are folded before the modulo
_SMALL = 1 << _FOLD_BITS


def residue(s: int) -> int:
    """s modulo 0xFFFF for a non-negative s of any size: the one's-complement
    sum of s's 16-bit words, up to the end-around carry. Folded in halves at
    multiples of 16 bits first: a big-number modulo costs a division per 30-bit
    digit, the folds only additions (1448 bytes: 1.1 us against 1.9)."""
    b = s.bit_length()
    while b > _FOLD_BITS:
        half = ((b >> 1) + 15) & ~15
        mask = _MASKS.get(half)
        if mask is None:
            mask = (1 << half) - 1
            if half <= _MASK_CACHE_BITS and len(_MASKS) < _MASK_CACHE_LEN:
                _MASKS[half] = mask
        s = (s >> half) + (s & mask)
        b = s.bit_length()
    return s % 0xFFFF


def _py_ones_sum(data) -> int:
    """The one's-complement sum of data as 16-bit big-endian words, in 0..0xFFFF
    (0xFFFF rather than 0 for non-zero data that sums to 'negative zero')."""
    if len(data) & 1:
        data = bytes(data) + b"\0"
    s = int.from_bytes(data, "big")
    if not s:
        return 0
    return (s % 0xFFFF if s < _SMALL else residue(s)) or 0xFFFF     # (a header, an ACK: no fold to do)


# The same function in C (netstack/wire/_csum.c, built by setup.py when a compiler
# is there): ~0.2 us for 1448 bytes against ~2 us, the difference that matters
# when offloads are off and every segment is summed twice. PYSEASTAR_PURE_PYTHON=1
# keeps the Python one (CI runs the wire and TCP tests both ways).
try:
    from ._csum import ones_sum as _c_ones_sum
except ImportError:         # no compiler at install time: the Python function
    _c_ones_sum = None
ones_sum = _py_ones_sum if _c_ones_sum is None or os.environ.get("PYSEASTAR_PURE_PYTHON") else _c_ones_sum


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
    return _l4_ok(ones_sum(segment) + pseudo_header_sum(src, dst, protocol, len(segment)))


def l4_checksum_ok_in_place(addressed, protocol: int) -> bool:
    """The same check on a segment read where it lies in the IPv4 packet:
    `addressed` is the header's source and destination addresses and the
    segment after them (they are contiguous when the header has no options),
    so one sum covers both: the pseudo-header's addresses are the first four
    words."""
    return _l4_ok(ones_sum(addressed) + protocol + len(addressed) - 8)


def _l4_ok(s: int) -> bool:
    s = (s & 0xFFFF) + (s >> 16)
    s = (s & 0xFFFF) + (s >> 16)
    return s == 0xFFFF
