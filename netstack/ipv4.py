"""IPv4 rules: routing (on-link or via the gateway), fragmentation and reassembly.

Reassembly (RFC 791, RFC 815 hole tracking simplified to sorted ranges) keeps
partial datagrams for `reassembly_timeout` seconds and at most
`reassembly_limit` bytes in all; a datagram whose fragments overlap is
dropped whole (RFC 5722's rule for IPv6, applied here as the safe choice
against overlap attacks), as is one that would exceed 65,535 bytes.
"""

from __future__ import annotations

from .wire.ipv4 import HEADER_LEN


class Reassembly:
    __slots__ = ("parts", "total", "deadline", "size", "first_header")

    def __init__(self, deadline: float) -> None:
        self.parts: list = []    # [(offset, bytes)]
        self.total = -1          # known once the last fragment arrives
        self.deadline = deadline
        self.size = 0
        self.first_header = None


class Reassembler:
    def __init__(self, timeout: float, limit: int) -> None:
        self.timeout = timeout
        self.limit = limit
        self.pending: dict[tuple, Reassembly] = {}
        self.held = 0

    def add(self, ip, payload, now: float, drop) -> bytes | None:
        """Add one fragment; the whole payload when complete, else None.
        drop(reason) counts a dropped fragment/datagram."""
        key = (ip.src, ip.dst, ip.protocol, ip.ident)
        r = self.pending.get(key)
        if r is None:
            r = self.pending[key] = Reassembly(now + self.timeout)
        off = ip.frag_offset
        end = off + len(payload)
        if end > 65535 - HEADER_LEN:
            self._discard(key, r)
            drop("ipv4_reassembly_too_big")
            return None
        if not ip.more_frags:
            if r.total not in (-1, end):
                self._discard(key, r)
                drop("ipv4_reassembly_inconsistent")
                return None
            r.total = end
        elif len(payload) % 8:
            self._discard(key, r)
            drop("ipv4_fragment_bad_length")
            return None
        for o, data in r.parts:
            if off < o + len(data) and o < end:
                if o == off and len(data) == len(payload):
                    return None  # an exact duplicate: harmless
                self._discard(key, r)
                drop("ipv4_fragment_overlap")
                return None
        if self.held + len(payload) > self.limit:
            self._discard(key, r)
            drop("ipv4_reassembly_memory")
            return None
        r.parts.append((off, bytes(payload)))
        r.size += len(payload)
        self.held += len(payload)
        if r.total >= 0 and r.size == r.total:
            r.parts.sort()
            data = b"".join(d for _o, d in r.parts)
            self._discard(key, r)
            return data
        return None

    def _discard(self, key, r: Reassembly) -> None:
        self.held -= r.size
        self.pending.pop(key, None)

    def expire(self, now: float, drop) -> list:
        """Drop timed-out datagrams; returns their keys."""
        gone = [k for k, r in self.pending.items() if r.deadline <= now]
        for k in gone:
            self._discard(k, self.pending[k])
            drop("ipv4_reassembly_timeout")
        return gone

    def poll_at(self):
        if not self.pending:
            return None
        return min(r.deadline for r in self.pending.values())


def fragment(payload: bytes, mtu: int) -> list[tuple[int, bool, bytes]]:
    """Split an IP payload for an MTU: [(offset, more_fragments, chunk)]."""
    step = ((mtu - HEADER_LEN) // 8) * 8
    out = []
    for off in range(0, len(payload), step):
        chunk = payload[off:off + step]
        out.append((off, off + step < len(payload), chunk))
    return out
