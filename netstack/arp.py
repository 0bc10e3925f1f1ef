"""The neighbour cache (RFC 826, RFC 1122 2.3.2).

Entries expire after `arp_timeout`; an entry still in use is refreshed by a
unicast request shortly before it expires. A packet for an unresolved
address waits in a bounded per-address queue while requests go out every
`arp_retry` seconds (rate limited: never more often); after `arp_retries`
unanswered requests the waiting packets fail with EHOSTUNREACH.

Both tables are bounded against a peer that makes us resolve many addresses
(SYNs from spoofed on-link sources): at most `max_entries` neighbours (the
least recently used is evicted) and `max_pending` addresses being resolved
(a packet for one more is refused: the caller counts the drop).
"""

from __future__ import annotations

import logging
import socket
from collections import deque

_log = logging.getLogger("arp")


class Pending:
    __slots__ = ("packets", "requests_sent", "next_request")

    def __init__(self) -> None:
        self.packets: deque = deque()
        self.requests_sent = 0
        self.next_request = 0.0


class NeighbourCache:
    def __init__(self, timeout: float, retry: float, retries: int, queue_limit: int,
                 max_entries: int = 1024, max_pending: int = 256) -> None:
        self.timeout = timeout
        self.retry = retry
        self.retries = retries
        self.queue_limit = queue_limit
        self.max_entries = max_entries
        self.max_pending = max_pending
        self.evicted = 0
        self.entries: dict[bytes, list] = {}   # ip -> [mac, expires, refresh_sent]
        self.pending: dict[bytes, Pending] = {}

    def lookup(self, ip: bytes, now: float):
        e = self.entries.get(ip)
        if e is None:
            return None
        if e[1] <= now:
            del self.entries[ip]
            return None
        entries = self.entries
        if next(reversed(entries)) != ip:      # least recently used last: move it to the end
            entries[ip] = entries.pop(ip)
        return e[0]

    def needs_refresh(self, ip: bytes, now: float) -> bool:
        """True once per entry lifetime, when it is about to expire while used."""
        e = self.entries.get(ip)
        if e is not None and not e[2] and e[1] - now < self.retry * 2:
            e[2] = True
            return True
        return False

    def learn(self, ip: bytes, mac: bytes, now: float) -> list:
        """Record ip -> mac; returns the packets that were waiting for it."""
        entries = self.entries
        if ip in entries:
            del entries[ip]
        elif len(entries) >= self.max_entries:
            del entries[next(iter(entries))]    # the least recently used
            self.evicted += 1
        entries[ip] = [mac, now + self.timeout, False]
        p = self.pending.pop(ip, None)
        return list(p.packets) if p is not None else []

    def enqueue(self, ip: bytes, packet, now: float) -> tuple[bool, bool]:
        """Queue a packet for an unresolved ip. Returns (queued, send_request_now)."""
        p = self.pending.get(ip)
        if p is None:
            if len(self.pending) >= self.max_pending:
                return False, False
            p = self.pending[ip] = Pending()
        if len(p.packets) >= self.queue_limit:
            return False, False
        p.packets.append(packet)
        if p.requests_sent == 0:
            p.requests_sent = 1
            p.next_request = now + self.retry
            return True, True
        return True, False

    def poll(self, now: float) -> tuple[list, list]:
        """(ips to send a request for, [(ip, packets) that failed])."""
        again, failed = [], []
        for ip, p in list(self.pending.items()):
            if p.next_request <= now:
                if p.requests_sent >= self.retries:
                    del self.pending[ip]
                    failed.append((ip, list(p.packets)))
                    _log.info("%s did not answer %d ARP requests: %d packets fail", socket.inet_ntoa(ip),
                              p.requests_sent, len(p.packets))
                else:
                    p.requests_sent += 1
                    p.next_request = now + self.retry
                    again.append(ip)
        return again, failed

    def poll_at(self):
        if not self.pending:
            return None
        return min(p.next_request for p in self.pending.values())
