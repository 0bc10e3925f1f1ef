"""IPv4 rules: routing (on-link or via the gateway), fragmentation and reassembly.

Reassembly (RFC 791, RFC 815 hole tracking simplified to sorted ranges) keeps
partial datagrams for `reassembly_timeout` seconds, bounded three ways against
a flood of fragments: `reassembly_limit` bytes in all, each fragment charged
its payload plus REASSEMBLY_OVERHEAD (so empty or tiny fragments are not
free); at most `max_datagrams` partial datagrams (the oldest is evicted); at
most `max_fragments` fragments per datagram. A datagram whose fragments
overlap is dropped whole (RFC 5722's rule for IPv6, applied here as the safe
choice against overlap attacks), as is one that would exceed 65,535 bytes; a
fragment with MF set must carry a positive multiple of 8 bytes. Every drop is
counted by reason.
"""

from __future__ import annotations

from .wire.ipv4 import HEADER_LEN

REASSEMBLY_OVERHEAD = 64     # bytes charged per fragment held, on top of its payload


class Reassembly:
    __slots__ = ("parts", "total", "deadline", "size", "first_header", "charged")

    def __init__(self, deadline: float) -> None:
        self.parts: list = []    # [(offset, bytes)]
        self.total = -1          # known once the last fragment arrives
        self.deadline = deadline
        self.size = 0
        self.first_header = None
        self.charged = 0         # what this datagram counts against the memory limit


class Reassembler:
    def __init__(self, timeout: float, limit: int, max_datagrams: int = 256, max_fragments: int = 64) -> None:
        self.timeout = timeout
        self.limit = limit
        self.max_datagrams = max_datagrams
        self.max_fragments = max_fragments
        self.pending: dict[tuple, Reassembly] = {}
        self.held = 0            # bytes charged: payloads + REASSEMBLY_OVERHEAD per fragment
        self.last_held = False

    def add(self, ip, payload, now: float, drop) -> bytes | None:
        """Add one fragment; the whole payload when complete, else None.
        drop(reason) counts a dropped fragment/datagram; `last_held` says whether
        this fragment was kept (waiting for the others)."""
        self.last_held = False
        if ip.more_frags and (not len(payload) or len(payload) % 8):
            drop("ipv4_fragment_bad_length")      # RFC 791: all but the last carry 8n bytes, n > 0
            return None
        key = (ip.src, ip.dst, ip.protocol, ip.ident)
        r = self.pending.get(key)
        if r is None:
            if len(self.pending) >= self.max_datagrams:
                old = next(iter(self.pending))    # the oldest partial datagram makes room
                self._discard(old, self.pending[old])
                drop("ipv4_reassembly_evicted")
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
        elif r.total >= 0 and end > r.total:
            self._discard(key, r)
            drop("ipv4_reassembly_inconsistent")
            return None
        if len(r.parts) >= self.max_fragments:
            self._discard(key, r)
            drop("ipv4_reassembly_too_many_fragments")
            return None
        for o, data in r.parts:
            if off < o + len(data) and o < end:
                if o == off and len(data) == len(payload):
                    drop("ipv4_fragment_duplicate")     # an exact duplicate: harmless, counted
                    return None
                self._discard(key, r)
                drop("ipv4_fragment_overlap")
                return None
        cost = len(payload) + REASSEMBLY_OVERHEAD
        if self.held + cost > self.limit:
            self._discard(key, r)
            drop("ipv4_reassembly_memory")
            return None
        r.parts.append((off, bytes(payload)))
        r.size += len(payload)
        r.charged += cost
        self.held += cost
        self.last_held = True
        if r.total >= 0 and r.size == r.total:
            r.parts.sort()
            data = b"".join(d for _o, d in r.parts)
            self._discard(key, r)
            self.last_held = False
            return data
        return None

    def _discard(self, key, r: Reassembly) -> None:
        self.held -= r.charged
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
