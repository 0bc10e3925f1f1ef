"""Listening sockets and initial sequence numbers."""

from __future__ import annotations

import hashlib
from collections import deque

from ..wire.seq import MASK


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
        self.stats = {"syn_queue_overflow": 0, "accept_queue_overflow": 0, "accepted": 0}

    def can_take_syn(self) -> bool:
        if len(self.half_open) >= self.syn_backlog:
            self.stats["syn_queue_overflow"] += 1
            return False
        if len(self.accept_queue) >= self.backlog:
            self.stats["accept_queue_overflow"] += 1
            return False
        return True

    def add_half_open(self, tcb) -> None:
        self.half_open.add(tcb)
        tcb.listener = self

    def established(self, tcb) -> None:
        self.half_open.discard(tcb)
        tcb.listener = None
        self.accept_queue.append(tcb)
        self.events.append("acceptable")

    def forget(self, tcb) -> None:
        self.half_open.discard(tcb)

    def accept(self):
        """The oldest established connection, or None."""
        if self.accept_queue:
            self.stats["accepted"] += 1
            return self.accept_queue.popleft()
        return None
