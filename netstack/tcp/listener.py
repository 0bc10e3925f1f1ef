"""Listening sockets and initial sequence numbers."""

from __future__ import annotations

import hashlib
from collections import deque

from ..wire.seq import MASK
from ..events import EV_ACCEPTABLE


class IsnGenerator:
    """RFC 6528: ISN = M + F(local ip, local port, remote ip, remote port, secret),
    M a 4-microsecond clock, F a keyed hash (BLAKE2b)."""

    def __init__(self, secret: bytes) -> None:
        self.secret = secret

    def isn(self, four_tuple, now: float) -> int:
        lip, lport, rip, rport = four_tuple
        h = hashlib.blake2b(lip + lport.to_bytes(2, "big") + rip + rport.to_bytes(2, "big"),
                            key=self.secret, digest_size=4).digest()
        return (int(now * 250_000) + int.from_bytes(h, "big")) & MASK


class SynCookies:
    """Stateless SYN-ACKs for when the SYN queue is full (RFC 4987 section 3.6).

    The ISN of the SYN-ACK encodes a 5-bit 64-second counter, a 2-bit index into an
    MSS table and 25 bits of a keyed hash over the 4-tuple, the counter and the
    peer's ISN. The final ACK (ack - 1) is checked against the last two counter
    periods. Like Linux without timestamps, a cookie connection has no window
    scaling, SACK or timestamps: only the MSS survives the trip."""

    MSS_TABLE = (536, 1220, 1440, 1460)

    def __init__(self, secret: bytes) -> None:
        self.secret = secret

    def _hash(self, four_tuple, counter: int, peer_isn: int) -> int:
        lip, lport, rip, rport = four_tuple
        h = hashlib.blake2b(lip + lport.to_bytes(2, "big") + rip + rport.to_bytes(2, "big")
                            + counter.to_bytes(1, "big") + peer_isn.to_bytes(4, "big"),
                            key=self.secret, digest_size=4).digest()
        return int.from_bytes(h, "big") & 0x1FFFFFF

    def make(self, four_tuple, peer_isn: int, peer_mss: int | None, now: float) -> tuple[int, int]:
        """(cookie ISN, the MSS it encodes)."""
        mss = peer_mss or 536
        idx = max(i for i, m in enumerate(self.MSS_TABLE) if m <= mss) if mss >= 536 else 0
        counter = int(now // 64) & 0x1F
        return (counter << 27) | (idx << 25) | self._hash(four_tuple, counter, peer_isn), self.MSS_TABLE[idx]

    def check(self, four_tuple, ack: int, peer_isn: int, now: float):
        """The MSS of a valid cookie acknowledged by `ack`, else None."""
        c = (ack - 1) & MASK
        counter = c >> 27
        now_counter = int(now // 64) & 0x1F
        if (now_counter - counter) & 0x1F > 1:
            return None
        if self._hash(four_tuple, counter, peer_isn) != c & 0x1FFFFFF:
            return None
        return self.MSS_TABLE[(c >> 25) & 3]


class Listener:
    """A port in LISTEN with a bounded SYN queue (half-open connections) and a
    bounded accept queue (established, not yet accepted). Beyond either bound,
    new SYNs / completed handshakes are dropped and counted."""

    def __init__(self, port: int, backlog: int, syn_backlog: int) -> None:
        self.port = port
        self.backlog = max(1, backlog)
        self.syn_backlog = max(1, syn_backlog)
        self.half_open: set = set()
        self.accept_queue: deque = deque()
        self.events: list = []
        self.closed = False
        self.stats = {"syn_queue_overflow": 0, "accept_queue_overflow": 0, "accepted": 0,
                      "syn_cookies_sent": 0, "syn_cookies_accepted": 0, "syn_cookies_rejected": 0}

    def can_take_syn(self) -> bool:
        if len(self.half_open) >= self.syn_backlog:
            self.stats["syn_queue_overflow"] += 1
            return False
        if len(self.accept_queue) >= self.backlog:
            self.stats["accept_queue_overflow"] += 1
            return False
        return True

    def syn_queue_full(self) -> bool:
        return len(self.half_open) >= self.syn_backlog

    def accept_queue_full(self) -> bool:
        return len(self.accept_queue) >= self.backlog

    def add_half_open(self, tcb) -> None:
        self.half_open.add(tcb)
        tcb.listener = self

    def established(self, tcb) -> None:
        self.half_open.discard(tcb)
        tcb.listener = None
        self.accept_queue.append(tcb)
        self.events.append(EV_ACCEPTABLE)

    def forget(self, tcb) -> None:
        self.half_open.discard(tcb)

    def accept(self):
        """The oldest established connection, or None."""
        if self.accept_queue:
            self.stats["accepted"] += 1
            return self.accept_queue.popleft()
        return None
