"""Delivery rate estimation and pacing, for a model-based congestion control (BBR).

Delivery rate (draft-cheng-iccrg-delivery-rate-estimation). The connection
counts the bytes delivered to the peer (`delivered`: cumulatively ACKed or
SACKed, each byte once) and when the count last moved (`delivered_time`).
Every transmission of a segment takes a snapshot of those counters with it (the
RACK entry's sixth field, `_SNAP`); when an ACK delivers the segment, the rate
over the interval since that snapshot is

    (delivered now - delivered at send) / max(send interval, ACK interval)

taken from the most recently sent segment the ACK delivered. An interval
shorter than min_rtt is discarded (ACK compression would inflate it). A sample
taken while the application had nothing to send is marked app-limited: it
says how much the application offered, not what the path carries.

Pacing. The congestion control sets `rate` (bytes/s); segments leave while the
bucket holds a token, and the bucket holds at most about a millisecond of
sending (two segments at least, as Linux sizes its bursts): the reactor's
sleeps have millisecond resolution, so a finer quantum would only make the
connection miss its own deadlines. Sans-IO: the bucket is refilled from the
`now` it is given, and `ready_at()` tells poll_at() when the next token comes.
"""

from __future__ import annotations

__all__ = ["Delivery", "Pacer", "RateSample"]

_SNAP = 5           # the RACK entry field holding the delivery snapshot (rack.py: fields 0..4)


class RateSample:
    """What one ACK delivered, for the congestion control."""

    __slots__ = ("delivered", "prior_delivered", "newly_delivered", "interval", "rate", "rtt",
                 "app_limited", "inflight")

    def __init__(self) -> None:
        self.delivered = 0           # the connection's total after this ACK
        self.prior_delivered = -1    # the total when the newest delivered segment was sent (-1: none)
        self.newly_delivered = 0     # bytes this ACK delivered
        self.interval = 0.0
        self.rate = None             # bytes/s, None: no valid sample
        self.rtt = None              # the least RTT of the segments delivered (never retransmitted ones)
        self.app_limited = False
        self.inflight = 0            # bytes still in flight after the ACK


class Delivery:
    """The connection's delivery counters and the sample being built for one ACK."""

    __slots__ = ("delivered", "delivered_time", "first_sent_time", "app_limited", "rs",
                 "_send_elapsed", "_ack_elapsed", "_prior_time", "_at_ack_start")

    def __init__(self, now: float) -> None:
        self.delivered = 0
        self.delivered_time = now
        self.first_sent_time = now
        self.app_limited = 0         # delivered count at which the app-limited phase ends (0: none)
        self.rs = RateSample()
        self._send_elapsed = self._ack_elapsed = self._prior_time = 0.0
        self._at_ack_start = 0

    def on_send(self, entry: list, now: float, alone: bool) -> None:
        """A transmission of `entry` (first or again) leaves now; `alone`: nothing
        else is in flight, so the intervals start here."""
        if alone:
            self.first_sent_time = self.delivered_time = now
        snap = (self.delivered, self.delivered_time, self.first_sent_time, self.app_limited != 0)
        if len(entry) > _SNAP:
            entry[_SNAP] = snap
        else:
            entry.append(snap)

    def on_delivered(self, entry: list, nbytes: int, now: float) -> None:
        """`nbytes` of `entry` reached the peer (ACKed or SACKed for the first time)."""
        self.delivered += nbytes
        self.delivered_time = now
        if len(entry) <= _SNAP:
            return                  # sent before the rate was tracked
        p_delivered, p_time, p_first, p_app = entry[_SNAP]
        rs = self.rs
        if not entry[3]:            # Karn: the RTT of an original transmission only
            rtt = now - entry[2]
            if rs.rtt is None or rtt < rs.rtt:
                rs.rtt = rtt
        if p_delivered >= rs.prior_delivered:       # the most recently sent one wins
            rs.prior_delivered = p_delivered
            rs.app_limited = p_app
            self._prior_time = p_time
            self._send_elapsed = entry[2] - p_first
            self._ack_elapsed = now - p_time
            self.first_sent_time = entry[2]

    def sample(self, min_rtt, inflight: int) -> RateSample:
        """Close the ACK's sample: the rate, if the interval is long enough."""
        rs = self.rs
        rs.delivered = self.delivered
        rs.newly_delivered = self.delivered - self._at_ack_start
        rs.inflight = inflight
        rs.rate = None
        if self.app_limited and self.delivered > self.app_limited:
            self.app_limited = 0
        if rs.prior_delivered >= 0:
            interval = self._send_elapsed if self._send_elapsed > self._ack_elapsed else self._ack_elapsed
            rs.interval = interval
            if interval > 0 and (min_rtt is None or interval >= min_rtt):
                rs.rate = (self.delivered - rs.prior_delivered) / interval
        return rs

    def next_ack(self) -> None:
        """Start the next ACK's sample."""
        rs = self.rs
        rs.prior_delivered = -1
        rs.rtt = None
        rs.app_limited = False
        self._at_ack_start = self.delivered

    def mark_app_limited(self, inflight: int) -> None:
        """The sender has nothing more to send and room to send it: samples up to
        what is in flight now say how much the application offered."""
        self.app_limited = max(self.delivered + inflight, 1)


class Pacer:
    """A token bucket of bytes at `rate` bytes/s (0: no pacing)."""

    __slots__ = ("rate", "tokens", "at")

    QUANTUM_TIME = 0.001

    def __init__(self, now: float) -> None:
        self.rate = 0.0
        self.tokens = 0.0
        self.at = now

    def allows(self, now: float, mss: int) -> bool:
        rate = self.rate
        if rate <= 0:
            return True
        if now > self.at:
            cap = 2 * mss + rate * self.QUANTUM_TIME
            t = self.tokens + (now - self.at) * rate
            self.tokens = t if t < cap else cap
            self.at = now
        return self.tokens > 0

    def spend(self, nbytes: int) -> None:
        if self.rate > 0:
            self.tokens -= nbytes

    def ready_at(self):
        """None: a token is there now; else when the next one comes."""
        if self.rate <= 0 or self.tokens > 0:
            return None
        return self.at + (-self.tokens + 1) / self.rate


class RateAndPacing:
    """The TCB's side of it (a mixin, as rack.py and undo.py): `delivery` and
    `pacer` are None unless the congestion control is paced (cc.paced)."""

    __slots__ = ()

    def _use_cc(self, cc, now: float) -> None:
        """Every congestion control is installed here (the TCB's __init__,
        set_congestion): a paced one gets rate samples and a pacer."""
        self.cc = cc
        if cc.paced:
            if self.delivery is None:
                self.delivery = Delivery(now)
                self.pacer = Pacer(now)
        else:
            self.delivery = self.pacer = None

    def _rate_on_ack(self, now: float) -> None:
        """The ACK's processing is over: its rate sample to the congestion
        control, and the pacing rate it sets to the pacer."""
        d = self.delivery
        sacked = self._sacked_bytes() if self.sacked else 0
        rs = d.sample(self.min_rtt, ((self.snd_max - self.snd_una) & 0xFFFFFFFF) - sacked)
        self.cc.on_rate_sample(rs, now, self.srtt)
        self.pacer.rate = self.cc.pacing_rate
        d.next_ack()

    def _rate_on_send(self, entry: list, n: int, now: float, alone: bool) -> None:
        self.delivery.on_send(entry, now, alone)
        self.pacer.spend(n)

    def _pace_allows(self, now: float) -> bool:
        p = self.pacer
        return p is None or p.allows(now, self.mss)

    def _paced_poll_at(self):
        """poll_at() of a paced connection: data to send waits for the pacer's
        next token; the rest is as for any connection."""
        t = self._next_deadline()
        if self._can_send_data() or (self._sack_send and self.in_recovery):
            r = self.pacer.ready_at()
            if r is None:
                return 0.0
            if t is None or r < t:
                t = r
        return t

    def _check_app_limited(self) -> None:
        """After sending: everything queued is out and the window had room for
        more: the application, not the path, limits the rate."""
        flight = (self.snd_max - self.snd_una) & 0xFFFFFFFF
        if self.snd_nxt == ((self.snd_una + len(self.sbuf)) & 0xFFFFFFFF) and flight < self.cc.cwnd:
            self.delivery.mark_app_limited(flight)
