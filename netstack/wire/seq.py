"""TCP sequence numbers: modulo 2**32, compared by signed difference (RFC 9293 3.4).

`Seq` is the value type for code that wants one. The TCB keeps sequence numbers
as plain ints in 0..2**32-1 for speed and only ever compares them through the
functions below (never `<` on raw values), which is the same arithmetic.
"""

from __future__ import annotations

MOD = 1 << 32
MASK = MOD - 1
HALF = 1 << 31


def seq_add(a: int, n: int) -> int:
    return (a + n) & MASK


def seq_sub(a: int, b: int) -> int:
    """a - b as a signed distance in -2**31 .. 2**31-1."""
    d = (a - b) & MASK
    return d - MOD if d >= HALF else d


def seq_lt(a: int, b: int) -> bool:
    return ((a - b) & MASK) >= HALF


def seq_le(a: int, b: int) -> bool:
    return a == b or ((a - b) & MASK) >= HALF


def seq_gt(a: int, b: int) -> bool:
    return ((b - a) & MASK) >= HALF


def seq_ge(a: int, b: int) -> bool:
    return a == b or ((b - a) & MASK) >= HALF


def seq_max(a: int, b: int) -> int:
    return b if seq_lt(a, b) else a


def seq_min(a: int, b: int) -> int:
    return a if seq_lt(a, b) else b


class Seq:
    """A sequence number value: Seq + int, Seq - Seq (signed distance), comparisons."""

    __slots__ = ("value",)

    def __init__(self, value: int) -> None:
        self.value = value & MASK

    def __add__(self, n: int) -> "Seq":
        if isinstance(n, Seq):
            raise TypeError("cannot add two sequence numbers")
        return Seq(self.value + n)

    def __sub__(self, other):
        if isinstance(other, Seq):
            return seq_sub(self.value, other.value)
        return Seq(self.value - other)

    def __lt__(self, other: "Seq") -> bool:
        return seq_lt(self.value, other.value)

    def __le__(self, other: "Seq") -> bool:
        return seq_le(self.value, other.value)

    def __gt__(self, other: "Seq") -> bool:
        return seq_gt(self.value, other.value)

    def __ge__(self, other: "Seq") -> bool:
        return seq_ge(self.value, other.value)

    def __eq__(self, other) -> bool:
        return isinstance(other, Seq) and other.value == self.value

    def __hash__(self) -> int:
        return hash(self.value)

    def __int__(self) -> int:
        return self.value

    def __repr__(self) -> str:
        return f"Seq({self.value})"
