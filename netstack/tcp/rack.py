"""RACK-TLP (RFC 8985): time-based loss detection and tail loss probes.

RACK. Every data segment in flight is remembered with the time it was last
sent (`xmit`: [start, end, time, retransmitted, sacked] in sequence order;
a paced connection adds a sixth field, delivery.py's snapshot).
When an ACK delivers segments (cumulatively or by SACK), RACK.xmit_ts becomes
the latest send time among them and RACK.rtt the time that one took. A
segment still missing that was sent *before* it is lost once it has been
waiting RACK.rtt + reo_wnd: reordering by less than reo_wnd is tolerated
(reo_wnd = min_rtt / 4, times a multiplier that D-SACKs -- evidence of
spurious retransmissions -- raise, capped at SRTT). A segment that may still
turn out lost arms the reordering timer (`rack_at`). Time order catches what
RFC 6675's byte counting cannot: a lost retransmission (it was sent after
what the peer delivered since), and a lost segment with too few segments
behind it to count (a small window).

TLP. A tail loss -- the last segments of a flight -- leaves nothing behind it
to be delivered: the probe timeout (PTO, about two RTTs, before the RTO)
sends one new segment if the peer's window allows, else the last one again;
its ACK lets RACK see the loss (section 7). A probe that retransmitted the
tail and was not reported back as a duplicate (D-SACK) repaired a loss: one
congestion response (7.4.2).

Losses RACK marks become lost holes for RFC 6675's NextSeg (recovery.py).
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections import deque
from itertools import islice

from ..wire.seq import HALF, MASK, seq_add, seq_ge, seq_gt, seq_lt, seq_sub
from .rules import _SENDING_STATES, ts_clock

__all__ = ["RackTlp", "XMIT_RETRANS"]

WORST_CASE_DELAYED_ACK = 0.2   # RFC 8985 7.2 WCDelAckT: a one-segment flight waits for the peer's delayed ACK
MIN_PTO = 0.010                # Linux's floor on the probe timeout
REO_WND_MULT_MAX = 255         # D-SACK rounds widen reo_wnd by a quarter of min_rtt each, up to SRTT (RFC 8985
                               # 6.2 step 4; Linux's reo_wnd_steps is a byte, hence this bound)
REO_WND_PERSIST = 16           # recoveries a widened reo_wnd lasts (RFC 8985 6.2 step 4)

# xmit entry fields
_START, _END, _TIME, _RETRANS, _SACKED = range(5)
XMIT_RETRANS = _RETRANS


class RackTlp:
    __slots__ = ()

    # ---- what was sent, when -----------------------------------------------------------------
    def _record_xmit(self, seq: int, n: int, now: float, retransmit: bool) -> None:
        """A data segment [seq, seq + n) left now."""
        x = self.xmit
        end = (seq + n) & MASK
        if not retransmit and (not x or seq_ge(seq, x[-1][_END])):
            e = self._append_xmit(seq, end, now)
            x = self.xmit
        else:
            # a retransmission: the entry holding seq is sent anew
            if x is None:
                x = self.xmit = deque()
                self.xmit_order = {}
            i = self._xmit_index(seq)
            if i < len(x) and not seq_lt(seq, x[i][_START]):
                if seq != x[i][_START]:
                    self._xmit_split(i, seq, True)
                    i += 1
                e = x[i]
                first = None
                # every entry [seq, end) covers is sent anew, the last one cut at end
                while True:
                    if seq_lt(end, e[_END]):
                        e = self._xmit_split(i, end, False)
                    if first is None:
                        first = e
                    e[_TIME] = now
                    e[_RETRANS] = True
                    if not e[_SACKED]:
                        order = self.xmit_order
                        order.pop(id(e), None)
                        order[id(e)] = e            # now the most recently sent
                    i += 1
                    if i >= len(x) or not seq_lt(x[i][_START], end):
                        break
                    e = x[i]
                e = first
            else:
                e = [seq, end, now, True, False]    # (sent again after an RTO rewound past its entry)
                x.insert(i, e)                      # the entries stay in sequence order
                self.xmit_order[id(e)] = e
        if self.delivery is not None:
            self._rate_on_send(e, n, now, len(x) == 1)

    def _append_xmit(self, seq: int, end: int, now: float) -> list:
        """New data [seq, end) left now: its entry, last in sequence and in send
        time (fast_output calls this directly: never paced, no rate to record)."""
        x = self.xmit
        if x is None:
            x = self.xmit = deque()
            self.xmit_order = {}
        e = [seq, end, now, False, False]
        x.append(e)
        self.xmit_order[id(e)] = e
        return e

    def _xmit_split(self, i: int, at: int, keep_first: bool) -> list:
        """Cut entry i at `at` (segments shrink when our ACKs carry more SACK
        blocks, so a resend can end inside an entry, and start inside one after
        an RTO rewound): both parts keep its send time, flags and loss mark, as
        Linux cuts an skb (tcp_fragment). The part the resend does not cover
        stays the same object, so it keeps its place in send order; the new
        object is the other part, which the caller marks as sent now. Kept
        whole, the part not resent counted as retransmitted and waited for the
        RTO. Returns the new part."""
        x = self.xmit
        e = x[i]
        part = list(e)
        if keep_first:                  # e stays [start, at); the new part is [at, end)
            part[_START] = e[_END] = at
            x.insert(i + 1, part)
            moved = at
        else:                           # e stays [at, end); the new part is [start, at)
            part[_END] = at
            x.insert(i, part)
            moved = e[_START]
            e[_START] = at
        lost = self.rack_lost
        if lost is not None and moved in lost:
            lost.add(at)                # a lost segment's parts are lost
        if not e[_SACKED]:
            self.xmit_order[id(part)] = part
        return part

    def _rack_acked(self, ack: int, now: float, tsecr: int = 0) -> None:
        """Entries up to `ack` are delivered: forget them, advancing RACK's time by
        the newest original transmission among them (and every retransmitted one,
        which _rack_delivered judges) -- one call per ACK in the common case."""
        x = self.xmit
        newest = None
        d = self.delivery
        order = self.xmit_order
        while x and ((ack - x[0][_END]) & MASK) < 0x80000000:     # entry end <= ack (seq_le, written out)
            e = x.popleft()
            order.pop(id(e), None)
            if d is not None and not e[_SACKED]:
                d.on_delivered(e, (e[_END] - e[_START]) & MASK, now)
            if e[_RETRANS]:
                self._rack_delivered(e, now, tsecr)
            elif newest is None or e[_TIME] >= newest[_TIME]:
                newest = e
        if newest is not None:
            self._rack_delivered(newest, now, tsecr)
        if not x:
            self.xmit = self.xmit_order = None      # nothing in flight: an idle connection holds no deque
        elif seq_lt(x[0][_START], ack):
            if d is not None and not x[0][_SACKED]:
                d.on_delivered(x[0], (ack - x[0][_START]) & MASK, now)
            lost = self.rack_lost
            if lost and x[0][_START] in lost:
                lost.add(ack)           # the rest of a lost segment is still lost
            x[0][_START] = ack          # partly acknowledged

    def _rack_delivered(self, e, now: float, tsecr: int = 0) -> None:
        """RFC 8985 6.2 steps 1-2: the newest delivered send time and its RTT. A
        retransmitted segment was delivered by its original, and its time says
        nothing, when it comes sooner than min_rtt after it or -- for a cumulative
        ACK, `tsecr` given -- the ACK echoes a timestamp older than the
        retransmission's. (Only there: a SACK echoes the timestamp of the last
        in-order segment, older than any retransmission it reports, and taken as
        proof it hid every lost retransmission that a later one's SACK reveals;
        an RTO in 1 of 10 simulated seeds.) (With the min_rtt test alone, a
        spurious retransmission acknowledged by its original over a path whose
        queueing delay varies passed as a fresh delivery: RACK.xmit_ts jumped to
        its send time and everything sent more than reo_wnd before it was marked
        lost, whose retransmissions did the same. On a bridge that only reorders,
        5% of frames by one place, that avalanche resent 17,000 segments of
        30 MiB, all spurious, at 3 MB/s where Linux went 108.)"""
        rtt = now - e[_TIME]
        if e[_RETRANS]:
            if self.min_rtt is not None and rtt < self.min_rtt:
                return
            if tsecr and ((tsecr - ts_clock(e[_TIME])) & MASK) >= HALF:
                return                  # the ACK echoes a timestamp from before the retransmission
        elif self.min_rtt is None or rtt < self.min_rtt:
            self.min_rtt = rtt          # our own send times: finer than the timestamp clock's 1 ms
        if self.rack_xmit_ts is None or e[_TIME] > self.rack_xmit_ts or \
                (e[_TIME] == self.rack_xmit_ts and seq_gt(e[_END], self.rack_end)):
            self.rack_xmit_ts = e[_TIME]
            self.rack_end = e[_END]
            self.rack_rtt = rtt

    def _xmit_index(self, seq: int) -> int:
        """The index of the first entry that ends after `seq` (the entries are in
        sequence order, all above SND.UNA): a binary search, not a walk."""
        una = self.snd_una
        return bisect_right(self.xmit, (seq - una) & MASK, key=lambda e: (e[_END] - una) & MASK)

    def _rack_sacked(self, now: float, blocks) -> None:
        """Entries the scoreboard now covers are delivered. Only the entries under
        `blocks` -- what this ACK added to the scoreboard (recovery.py's
        _newly_covered) -- can have changed: each range is found by binary
        search and its entries checked against the merged scoreboard block that
        holds it. Per ACK, the work of the segments it reports, not of the whole
        flight (a walk of every entry against every block was most of the CPU
        of a large window under loss)."""
        x = self.xmit
        if not x or not blocks:
            return
        una = self.snd_una
        d = self.delivery
        for left, right in blocks:
            lo = (left - una) & MASK
            hi = (right - una) & MASK
            if lo >= HALF or hi >= HALF or hi <= lo:
                continue                # at or below SND.UNA (a D-SACK), or bogus
            # the merged scoreboard block that holds it: the first that ends at or after it
            sb = self.sacked
            k = bisect_left(sb, hi, key=lambda b: (b[1] - una) & MASK)
            if k == len(sb):
                continue                # the scoreboard refused it (beyond SND.MAX)
            ml, mr = sb[k]
            mlo = (ml - una) & MASK
            if mlo >= HALF:
                mlo = 0
            if mlo > lo:
                continue                # (not held whole)
            mhi = (mr - una) & MASK
            for e in islice(x, self._xmit_index(left), None):
                s0 = (e[_START] - una) & MASK
                if s0 >= hi:
                    break
                if not e[_SACKED] and s0 >= mlo and ((e[_END] - una) & MASK) <= mhi:
                    e[_SACKED] = True
                    self.xmit_order.pop(id(e), None)
                    if d is not None:
                        d.on_delivered(e, (e[_END] - e[_START]) & MASK, now)
                    self._rack_delivered(e, now)

    def _reo_wnd(self) -> float:
        if self.min_rtt is None:
            return 0.0
        w = self.reo_wnd_mult * self.min_rtt / 4
        return w if self.srtt is None or w < self.srtt else self.srtt

    def _rack_detect(self, now: float) -> bool:
        """RFC 8985 6.2 step 5: mark the segments sent before RACK.xmit_ts that
        waited RACK.rtt + reo_wnd lost; arm the reordering timer for the others.
        True when something new was marked lost."""
        self.rack_at = None
        ts = self.rack_xmit_ts
        x = self.xmit
        if ts is None or not x:
            return False
        limit = self.rack_rtt + self._reo_wnd()
        marked = False
        nearest = None
        # in send-time order (xmit_order: the entries neither delivered nor
        # SACKed), up to the first sent after the newest delivered one, as Linux
        # walks its tsorted list: the holes and what waits out the reordering
        # window, not the whole flight (a walk of every entry was the top of a
        # sender's profile at 5% loss)
        rack_end = self.rack_end
        for e in self.xmit_order.values():
            t = e[_TIME]
            if t > ts or (t == ts and not seq_lt(e[_END], rack_end)):
                break                   # sent after the newest delivered one: so is everything after it
            remaining = t + limit - now
            if remaining <= 0:
                if self._rack_mark_lost(e):
                    marked = True
            elif nearest is None or remaining < nearest:
                nearest = remaining
        if nearest is not None:
            self.rack_at = now + nearest
        return marked

    def _rack_mark_lost(self, e) -> bool:
        """A lost segment: a lost hole for NextSeg. Retransmitted already: it was
        lost again, so NextSeg goes back to it."""
        lost = self.rack_lost
        if lost is None:
            lost = self.rack_lost = set()
        if e[_START] in lost and not e[_RETRANS]:
            return False
        lost.add(e[_START])
        if e[_RETRANS]:
            e[_RETRANS] = False         # counted once; a new retransmission sets it again
            if seq_lt(e[_START], self.rexmit_next):
                self.rexmit_next = e[_START]
            self.stats["lost_retransmits"] += 1
        self.stats["rack_losses"] += 1
        return True

    def _rack_mark_head_lost(self) -> None:
        """Recovery begins: the head segment, which the fast retransmission
        resends, is lost (Linux's tcp_mark_head_lost), so the pipe counts it once,
        as a retransmission. Counted also as still in flight (RFC 6675's IsLost
        needs DupThresh SACKed segments above it; duplicate ACKs can start
        recovery with one), a 2-segment window was full: nothing went out behind
        the retransmission that could let RACK see it lost again, and its loss
        waited for the RTO."""
        lost = self.rack_lost
        if lost is None:
            lost = self.rack_lost = set()
        lost.add(self.snd_una)

    def _rack_on_ack(self, now: float, blocks=()) -> None:
        """After the scoreboard took an ACK (and its SACK `blocks`): delivered
        entries, loss marks, and -- outside recovery -- recovery when RACK sees a loss."""
        self._rack_sacked(now, blocks)
        if self._rack_detect(now):
            if self.in_recovery:
                self._sack_send = True
            elif seq_ge(self.snd_una, self.recover):
                self._enter_fast_recovery(now)
            else:
                # after an RTO (go-back-N from SND.UNA): a retransmission RACK saw lost
                # again goes at once, as Linux's loss state does, not at the next RTO
                una = self.snd_una
                first = min((s for s in self.rack_lost if ((s - una) & MASK) < HALF),
                            key=lambda s: (s - una) & MASK, default=None)
                if first is not None:
                    self.rexmit_next = first
                    self._retransmit_one = True

    def _on_rack_timer(self, now: float) -> None:
        """The reordering window of a segment ran out: lost (RFC 8985 6.3)."""
        self.rack_at = None
        self._rack_on_ack(now)

    def _rack_is_lost(self, left: int, right: int) -> bool:
        lost = self.rack_lost
        if not lost:
            return False
        for s in lost:
            if not seq_lt(s, left) and seq_lt(s, right):
                return True
        return False

    def _rack_lost_above(self, top: int) -> list:
        """[(left, right, True)] for the segments RACK marked lost above `top`, the
        highest SACKed byte (SND.UNA when nothing is SACKed), in sequence order:
        lost holes for NextSeg and the pipe beside those below it. RACK marks
        by time, not by what is SACKed above: a segment sent before one the
        peer delivered cumulatively (or that PAWS made it drop) is lost with no
        SACK above it. Left out, such segments counted as in flight, filled a
        small window and were never resent: an RTO in recovery each time (at 5%
        loss against Linux, most of our RTOs; Linux takes none there)."""
        x = self.xmit
        if not x:
            return []
        una = self.snd_una
        base = (top - una) & MASK
        limit = (self.snd_max - una) & MASK
        out = []
        for off in sorted(o for o in ((s - una) & MASK for s in self.rack_lost) if base <= o < limit):
            i = self._xmit_index((una + off) & MASK)
            if i < len(x):
                e = x[i]
                if ((e[_START] - una) & MASK) == off and not e[_SACKED]:
                    out.append([e[_START], e[_END], True])
        return out

    def _rack_forget(self) -> None:
        """Recovery is over (or an RTO rewound everything): start the marks afresh."""
        self.rack_lost = None
        self.rack_at = None
        if self.reo_wnd_persist > 0:
            self.reo_wnd_persist -= 1
            if not self.reo_wnd_persist:
                self.reo_wnd_mult = 1

    def _rack_dsack(self) -> None:
        """A D-SACK: a retransmission was spurious, reordering is larger than
        thought: widen reo_wnd by a quarter of min_rtt, once per round trip, and
        keep it so for REO_WND_PERSIST recoveries (RFC 8985 6.2 step 4). A cap of
        4 quarters held reo_wnd at min_rtt on a path whose queues vary by
        several ms (SRTT 4-7 ms, min_rtt 2): in the 5% BBR echo RACK marked
        4,500 segments lost in 2 s, 424 with this rule."""
        r = self.dsack_round
        if r is not None and ((self.snd_una - r) & MASK) < HALF:
            r = self.dsack_round = None          # that round is over
        if r is None:
            self.dsack_round = self.snd_nxt
            if self.reo_wnd_mult < REO_WND_MULT_MAX:
                self.reo_wnd_mult += 1
        self.reo_wnd_persist = REO_WND_PERSIST

    # ---- tail loss probes ------------------------------------------------------------------------
    def _schedule_tlp(self, now: float) -> None:
        """RFC 8985 7.2: (re)arm the probe timeout while data is outstanding,
        outside loss recovery, with SACK, one probe per episode, before the RTO."""
        if not self.sack_ok or self.in_recovery or self.tlp_end is not None or self.srtt is None:
            self.tlp_at = None
            return
        flight = (self.snd_max - self.snd_una) & MASK
        if not flight:
            self.tlp_at = None
            return
        pto = 2 * self.srtt
        if pto < MIN_PTO:
            pto = MIN_PTO
        if flight <= self.mss:
            pto += WORST_CASE_DELAYED_ACK
        t = now + pto
        # never after the RTO (RFC 8985 7.2: PTO = min(PTO, RTO expiry - now), as Linux
        # clamps it): a lone small segment's PTO (2 SRTT + 200 ms) passes a 200 ms RTO,
        # and the RTO then collapsed the window where a probe keeps it
        self.tlp_at = t if self.rto_at is None or t < self.rto_at else self.rto_at

    def _on_tlp(self, now: float, out: list) -> None:
        """The probe timeout fired: one new segment if the peer's window allows,
        else the last segment again; then the RTO is restarted (RFC 8985 7.3)."""
        self.tlp_at = None
        if self.state not in _SENDING_STATES or self.in_recovery or self.snd_una == self.snd_max:
            return
        data_end = seq_add(self.snd_una, len(self.sbuf))
        retrans = True
        if seq_lt(self.snd_nxt, data_end) and self.snd_nxt == self.snd_max:
            retrans = self._emit_new_in_recovery(out, now) <= 0   # the peer's window, not cwnd, bounds it
        if retrans:
            top = data_end if seq_gt(self.snd_max, data_end) else self.snd_max     # our FIN is not data
            inflight = seq_sub(top, self.snd_una)
            if inflight <= 0:
                return              # only a FIN is out: the RTO resends it
            size = self._payload_limit(False)
            start = (top - size) & MASK if inflight > size else self.snd_una
            if self._emit_data(start, out, now, retransmit=True) <= 0:
                return
        self.tlp_end = self.snd_max
        self.tlp_retrans = retrans
        self.tlp_dsack = False
        self.stats["tlp_probes"] += 1
        self.rto_at = self._clamp_to_user_timeout(now + self.rto)

    def _tlp_on_ack(self, ack: int, flight_before: int, now: float) -> None:
        """RFC 8985 7.4: the episode ends when the probe is acknowledged. A probe
        that retransmitted the tail and was not reported as a duplicate (D-SACK)
        repaired a real loss: one congestion response, as fast recovery would."""
        end = self.tlp_end
        if end is None or seq_lt(ack, end):
            return
        self.tlp_end = None
        if self.tlp_retrans and not self.tlp_dsack and not self.in_recovery:
            self.cc.on_loss_repaired(flight_before, now)
            self.stats["tlp_recoveries"] += 1
        self.tlp_dsack = False
