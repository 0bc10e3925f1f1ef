"""The receive side of a TCB (RFC 9293 3.10.7): header prediction, the
segment checks in the RFC's order, in-order and out-of-order data, the window
we offer and the SACK blocks we report."""
from __future__ import annotations

import itertools
from bisect import bisect_left, bisect_right, insort
from itertools import islice
from operator import itemgetter

from ..wire.seq import HALF, MASK, seq_add, seq_gt, seq_le, seq_lt, seq_min, seq_sub
from ..wire.tcp import ACK, FIN, PSH, RST, SYN, TcpRepr
from .state import (CAN_RECEIVE, CLOSE_WAIT, CLOSED, CLOSING, ESTABLISHED, EV_CONNECTED,
                    EV_PEER_CLOSED, EV_READABLE, EV_WRITABLE, FIN_WAIT_1, FIN_WAIT_2, SYN_RECEIVED, SYN_SENT, TIME_WAIT)

from .rules import PAWS_IDLE


_STAMP = itertools.count()
_STAMP_OF = itemgetter(2)


def _merge_block(blocks: list, left: int, right: int, base: int) -> None:
    """Add [left, right) to the sorted, disjoint [left, right, stamp] blocks of
    the out-of-order queue (offsets from `base`, RCV.NXT), merging what it
    touches; the block it lands in gets a new stamp (the SACK blocks we report
    are ordered by it: the most recently changed first, RFC 2018 4)."""
    lo = (left - base) & MASK
    hi = (right - base) & MASK
    i = bisect_left(blocks, lo, key=lambda b: (b[1] - base) & MASK)    # the first that ends at or after it
    n = len(blocks)
    j = i
    while j < n and ((blocks[j][0] - base) & MASK) <= hi:
        b = blocks[j]
        if ((b[0] - base) & MASK) < lo:
            lo, left = (b[0] - base) & MASK, b[0]
        if ((b[1] - base) & MASK) > hi:
            hi, right = (b[1] - base) & MASK, b[1]
        j += 1
    blocks[i:j] = [[left, right, next(_STAMP)]]


def _uncovered(blocks: list, seq: int, n: int, base: int) -> list:
    """The parts of [seq, seq + n) that the sorted, disjoint out-of-order blocks
    do not cover, as [(offset into the segment, length)]; `base` is RCV.NXT."""
    lo = (seq - base) & MASK
    hi = lo + n
    out = []
    cur = lo
    i = bisect_right(blocks, lo, key=lambda b: (b[1] - base) & MASK)   # the first that ends after it
    for b in islice(blocks, i, None):
        bl = (b[0] - base) & MASK
        if bl >= hi:
            break
        br = (b[1] - base) & MASK
        if br <= cur:
            continue
        if bl > cur:
            out.append((cur - lo, bl - cur))
        cur = br
        if cur >= hi:
            break
    if cur < hi:
        out.append((cur - lo, hi - cur))
    return out


def _first_covered(seq: int, n: int, pieces: list) -> tuple:
    """The first range of [seq, seq + n) outside `pieces` (its new parts): the
    D-SACK block for the duplicate part of a segment."""
    start = 0
    for o, k in pieces:
        if o > start:
            break
        start = o + k
    end = n
    for o, _k in pieces:
        if o > start:
            end = o
            break
    return ((seq + start) & MASK, (seq + end) & MASK)


class ReceiveSide:
    __slots__ = ()

    def on_segment_fast(self, seq: int, ack: int, flags: int, window: int, ts, payload, now: float) -> bool:
        """Header prediction (Van Jacobson): the two segments of a bulk transfer
        -- in-order data that acks nothing new, or a pure ACK of new data -- in
        ESTABLISHED with nothing unusual going on, handled without building a
        TcpRepr. Returns False when the segment needs the full path
        (`on_segment`), having changed nothing."""
        if self.state is not ESTABLISHED or (flags != ACK and flags != ACK | PSH) \
                or seq != self.rcv_nxt or self.ooo or self.in_recovery or self.sacked or self.fin_queued \
                or self.frto:
            return False
        if ts is not None:
            if not self.ts_ok or ((ts[0] - self.ts_recent) & MASK) >= 0x80000000:
                return False  # PAWS or options mismatch: the full path decides
        elif self.ts_ok:
            return False
        if (window << self.snd_wscale) != self.snd_wnd:
            return False
        plen = len(payload)
        una = self.snd_una
        acked = (ack - una) & MASK
        if acked:
            if acked >= 0x80000000 or ((self.snd_max - ack) & MASK) >= 0x80000000:
                return False          # old, or acks what was never sent: the full path decides
        elif not plen:
            return False              # a duplicate ACK: loss recovery lives in the full path
        if plen and plen > self._rcv_window():
            return False              # (partly) beyond the window we offered: the full path trims it
        # --- accepted: from here on the segment is applied ---
        self.last_recv = now
        if ts is not None and seq == self.last_ack_sent:
            self.ts_recent = ts[0]
            self.ts_recent_age = now
        if acked:
            # new data acknowledged (the request of a request/response also acks the last response)
            self._new_ack(ack, acked, ts[1] if ts is not None else 0, now)
            self.snd_wl1, self.snd_wl2 = seq, ack      # the window is unchanged (checked above)
            self.cc.on_ack(acked, now, self.srtt)
            if self.delivery is not None:
                self._rate_on_ack(now)
        if plen:
            self.rq.append(payload)
            self.rq_bytes += plen
            self.rcv_nxt = (seq + plen) & MASK
            self.ev_append(self.ev_readable)
            self.snd_wl1 = seq
            self._schedule_ack(plen, now)
        return True

    def _schedule_ack(self, plen: int, now: float) -> None:
        """In-order data arrived: ACK every second full-sized segment at once (or
        one larger than the MSS: a merged GRO run), else within the delayed-ACK
        time (RFC 5681 4.2). Both input paths call this."""
        self.unacked_segments += 1
        if self.unacked_segments >= 2 or plen > self.mss:
            self.ack_now = True
        elif self.delack_at is None:
            self.delack_at = now + self.cfg.delayed_ack
        if now >= self.rcv_space_at:
            self._rcv_space_adjust(now)

    def _rcv_space_adjust(self, now: float) -> None:
        """Receive-buffer auto-tuning (dynamic right-sizing, as Linux's
        tcp_rcv_space_adjust): once per RTT, if the application read more than in
        the RTT before, the budget becomes twice that plus 16 segments, plus twice
        the growth again, so that a sender in slow start is never held by our
        window; never less than it was, never more than cfg.recv_buffer. A slow
        reader keeps the budget small, so a fast peer cannot run far ahead of it."""
        read_to = (self.rcv_nxt - self.rq_bytes) & MASK      # the first byte the application has not read
        space = self.rcv_space
        if space:
            copied = (read_to - self.rcv_space_seq) & MASK
            if copied > space:
                win = 2 * copied + 16 * self.mss
                win += 2 * win * (copied - space) // space
                ceiling = self.cfg.recv_buffer
                if win > self.recv_buffer:
                    self.recv_buffer = win if win < ceiling else ceiling
                self.rcv_space = copied
        else:
            self.rcv_space = self.cfg.initial_cwnd_segments * self.mss     # Linux: TCP_INIT_CWND * advmss
        if self.recv_buffer >= self.cfg.recv_buffer:
            self.rcv_space_at = float("inf")                 # at the ceiling: nothing left to tune
            return
        self.rcv_space_seq = read_to
        self.rcv_space_at = now + (self.srtt if self.srtt is not None else self.cfg.delayed_ack)

    def on_segment(self, seg: TcpRepr, payload, now: float) -> None:
        """The full rules for one segment, in RFC 9293 3.10.7.4's order."""
        st = self.state
        flags = seg.flags
        self.last_recv = now
        if st is SYN_SENT:
            self._on_syn_sent(seg, payload, now)
            return
        if st is CLOSED:
            return
        plen = len(payload)
        if st is SYN_RECEIVED and flags & SYN and flags & ACK and seg.seq == self.irs \
                and self.listener is None and seg.ack == self.snd_max:
            # simultaneous open (RFC 9293 figure 8): the peer's SYN-ACK acknowledges our
            # SYN -- the handshake's ACK; its SYN is the one we have (Linux does so too)
            flags &= ~SYN
            seg = seg._replace(seq=self.rcv_nxt, flags=flags)
        if not self._segment_acceptable(seg, plen, now):
            if not (plen and flags & ACK and not flags & RST and seg.seq == self.rcv_nxt
                    and self._rcv_window() == 0):
                return
            # A zero window accepts no data, "but special allowance should be made to
            # accept valid ACKs" (RFC 9293 3.10.7.4): the peer's zero-window probe
            # (SEQ = RCV.NXT) carries its ACK, and a peer that only probes may have
            # nothing else to tell us with. Dropping it whole deadlocked an echo
            # whose both windows were full (seen at 1% loss against Linux: each side
            # retransmitting what the other had, neither ACK taken). The data goes;
            # the ACK, window and timestamp are taken; our ACK answers the probe.
            payload = payload[:0]
            plen = 0
            flags &= ~FIN
            seg = seg._replace(flags=flags)
        # 2. RST (RFC 5961 3.2)
        if flags & RST:
            self._on_rst(seg, now)
            return
        # 4. SYN in a synchronized state: challenge ACK (RFC 5961 4.2)
        if flags & SYN:
            if st is not SYN_RECEIVED or seg.seq != self.irs:
                self._challenge_ack(now)
                return
            self.ack_now = True  # a retransmitted SYN: repeat our SYN-ACK
            self.snd_nxt = self.snd_una
            return
        # 5. ACK
        if not flags & ACK:
            return
        if st is SYN_RECEIVED and not self._on_handshake_ack(seg, now):
            return
        if not self._process_ack(seg, plen, now):
            return
        st = self.state
        # timestamps: remember the peer's clock (RFC 7323 4.3)
        if self.ts_ok and seg.timestamp is not None and seq_le(seg.seq, self.last_ack_sent):
            self.ts_recent = seg.timestamp[0]
            self.ts_recent_age = now
        # 7. data
        if plen and st in CAN_RECEIVE:
            self._receive_data(seg.seq, payload, now, bool(flags & PSH))
        elif plen:
            self.ack_now = True
        # 8. FIN
        if flags & FIN:
            self._on_fin(seg.seq, plen, st, now)

    def _segment_acceptable(self, seg: TcpRepr, plen: int, now: float) -> bool:
        """PAWS (RFC 7323 5.3) and the first check, sequence number acceptability
        (RFC 9293 3.10.7.4). An unacceptable segment is answered by an ACK (not a
        RST) and dropped."""
        flags = seg.flags
        if self.ts_ok and seg.timestamp is not None and not flags & RST:
            if seq_lt(seg.timestamp[0], self.ts_recent) and now - self.ts_recent_age < PAWS_IDLE:
                self.stats["paws_dropped"] += 1
                self.ack_now = True
                if plen and seq_lt(seg.seq, self.rcv_nxt):
                    # an old duplicate -- typically an original that arrived after its
                    # retransmission, whose newer timestamp ts_recent holds: reported as
                    # a D-SACK, as Linux's tcp_send_dupack does. Dropped silently, 119 of
                    # 134 duplicates of a reordering-only transfer went unreported, so
                    # the sender never learnt its retransmissions were spurious: no
                    # undo, and no widening of RACK's reordering window.
                    self._report_duplicate(seg.seq, plen)
                return False
        seglen = plen + (1 if flags & SYN else 0) + (1 if flags & FIN else 0)
        if self._acceptable(seg.seq, seglen, self._rcv_window()):
            return True
        self.stats["unacceptable_dropped"] += 1      # outside the window (RFC 9293 3.10.7.4)
        if not flags & RST:
            if self.state is TIME_WAIT and flags & FIN:
                self.timewait_at = now + self.cfg.time_wait
            self.ack_now = True
            if plen and ((self.rcv_nxt - seg.seq - plen) & MASK) < HALF:
                self._report_duplicate(seg.seq, plen)     # all of it was here already
        return False

    def _report_duplicate(self, seq: int, plen: int) -> None:
        """A dropped segment starting below RCV.NXT: its part already received is
        the next ACK's D-SACK block (RFC 2883)."""
        if self.sack_ok:
            self.dsack = (seq, seq_min(seq_add(seq, plen), self.rcv_nxt))

    def _on_rst(self, seg: TcpRepr, now: float) -> None:
        """RFC 5961 3.2: a RST exactly at RCV.NXT resets; one elsewhere in the
        window draws a challenge ACK."""
        if seg.seq == self.rcv_nxt:
            if self.state is SYN_RECEIVED and self.listener is not None:
                self._finish(None)  # back to LISTEN: just drop this half-open TCB
            else:
                self._finish(ConnectionResetError(104, "Connection reset by peer"))
        else:
            self._challenge_ack(now)

    def _on_handshake_ack(self, seg: TcpRepr, now: float) -> bool:
        """SYN-RECEIVED: an ACK of our SYN completes the handshake; any other ACK
        draws a RST (RFC 9293 3.10.7.4 fifth check). False: drop the segment."""
        if not (seq_lt(self.snd_una, seg.ack) and seq_le(seg.ack, self.snd_max)):
            self._queue_rst(seg.ack)
            return False
        self._set_state(ESTABLISHED)
        self.syn_acked = True
        self.snd_una = seq_add(self.snd_una, 1)
        self.snd_wnd = seg.window << self.snd_wscale
        self.snd_wl1, self.snd_wl2 = seg.seq, seg.ack
        self.max_snd_wnd = max(self.max_snd_wnd, self.snd_wnd)
        self.retries = 0
        self.rto_at = None
        self.stalled_since = None
        self._rtt_sample_ack(seg, now)
        self.events.append(EV_CONNECTED)
        if self.listener is not None:
            self.listener.established(self)
        return True

    def _on_fin(self, seq: int, plen: int, st, now: float) -> None:
        """The eighth check: the peer's FIN, once every byte before it is in."""
        if seq_add(seq, plen) == self.rcv_nxt and not self.fin_received:
            self.fin_received = True
            self.rcv_nxt = seq_add(self.rcv_nxt, 1)
            self.events.append(EV_PEER_CLOSED)
            self.events.append(EV_READABLE)
            if st is ESTABLISHED:
                # The ACK of the peer's FIN waits for the delayed-ACK timer (Linux
                # does the same: a FIN puts it in pingpong mode), so the
                # application's close() -- its usual answer to EOF -- sends one
                # FIN|ACK instead of an ACK and then a FIN.
                if self.delack_at is None:
                    self.delack_at = now + self.cfg.delayed_ack
                self._set_state(CLOSE_WAIT)
            else:
                self.ack_now = True
                if st is FIN_WAIT_1:
                    self._set_state(CLOSING)
                elif st is FIN_WAIT_2:
                    self._enter_time_wait(now)
        elif seq_gt(seq_add(seq, plen), self.rcv_nxt):
            pass  # a FIN beyond a hole: wait for the hole to fill (the peer retransmits)
        elif st is TIME_WAIT:
            self.ack_now = True     # a retransmitted FIN: ACK it again, restart 2MSL
            self.timewait_at = now + self.cfg.time_wait

    def _acceptable(self, seq: int, seglen: int, wnd: int) -> bool:
        # RFC 9293 3.10.7.4's table; "rn <= x < rn + wnd" is (x - rn) mod 2**32 < wnd.
        # One deviation, Linux's (tcp_sequence): a zero-length segment exactly at
        # the right edge (rn + wnd) is taken. A sender whose SND.NXT lies past our
        # window numbers its ACKs at that edge (Linux's tcp_acceptable_seq, and
        # our own _ack_seq): refused by the letter of the table, every such ACK
        # and its SACK blocks were lost (172 in a 3 MB lossy echo, each one a
        # spurious retransmission later).
        rn = self.rcv_nxt
        if seglen == 0:
            if wnd == 0:
                return seq == rn
            return ((seq - rn) & MASK) <= wnd
        if wnd == 0:
            return False
        return ((seq - rn) & MASK) < wnd or ((seq + seglen - 1 - rn) & MASK) < wnd

    def _on_syn_sent(self, seg: TcpRepr, payload, now: float) -> None:
        flags = seg.flags
        if flags & ACK:
            # RFC 9293 3.10.7.3: unacceptable ACK -> RST (unless RST)
            if seq_le(seg.ack, self.iss) or seq_gt(seg.ack, self.snd_max):
                if not flags & RST:
                    self._queue_rst(seg.ack)
                return
        if flags & RST:
            if flags & ACK:
                self._finish(ConnectionRefusedError(111, "Connection refused"))
            return
        if not flags & SYN:
            return
        self.irs = seg.seq
        self.rcv_nxt = seq_add(seg.seq, 1)
        self.last_ack_sent = self.rcv_nxt     # the window our SYN offered counts from the peer's first byte
        self._take_syn_options(seg)
        if seg.timestamp is not None and self.ts_ok:
            self.ts_recent = seg.timestamp[0]
            self.ts_recent_age = now
        if flags & ACK:
            self.snd_una = seg.ack
            self.syn_acked = True
            self.snd_wnd = seg.window  # the window in a SYN is never scaled (RFC 7323 2.2)
            self.snd_wl1, self.snd_wl2 = seg.seq, seg.ack
            self.max_snd_wnd = self.snd_wnd
            self._rtt_sample_ack(seg, now)
            self.rto_at = None
            self.stalled_since = None
            self.retries = 0
            self._set_state(ESTABLISHED)
            self.ack_now = True
            self.events.append(EV_CONNECTED)
            if self.send_space():
                self.events.append(EV_WRITABLE)
        else:
            # simultaneous open (RFC 9293 3.5, figure 8)
            self.snd_wnd = seg.window
            self.snd_wl1 = seg.seq
            self._set_state(SYN_RECEIVED)
            self.snd_nxt = self.iss  # resend our SYN, now with ACK
            self._arm_rto(now)

    def _receive_data(self, seq: int, payload, now: float, push: bool) -> None:
        rn = self.rcv_nxt
        off = seq_sub(rn, seq)
        if off > 0:
            if self.sack_ok:
                self.dsack = (seq, rn)    # the part already received, reported (RFC 2883)
            payload = payload[off:]
            seq = rn
        room = seq_sub(seq_add(rn, self._rcv_window()), seq)
        if len(payload) > room:
            payload = payload[:max(room, 0)]   # the part beyond the window's right edge
        if not payload:
            self.ack_now = True
            return
        if seq == rn:
            self.rq.append(payload)
            self.rq_bytes += len(payload)
            self.rcv_nxt = seq_add(rn, len(payload))
            had_ooo = bool(self.ooo)
            if had_ooo:
                self._drain_ooo()
                self.ack_now = True  # filling a hole: ACK at once (RFC 5681 4.2)
            self.events.append(EV_READABLE)
            self._schedule_ack(len(payload), now)
        else:
            # out of order: keep (bounded), ACK at once with SACK blocks -- one ACK per
            # segment, as Linux: the ACK still owed for an earlier segment of the same
            # batch leaves now with its blocks (coalesced into one ACK at the end of a
            # batch, more new blocks than fit went unreported, and the sender's RACK
            # resent them as lost)
            if self.ack_now and self.sack_ok and (self.ooo or self.dsack is not None):
                q = self.early_acks
                if q is None:
                    q = self.early_acks = []
                q.append(self._ack_seg(self._ack_seq(), ACK, now))
            self.ack_now = True
            pieces = _uncovered(self.ooo_blocks, seq, len(payload), rn)
            new = sum(n for _o, n in pieces)
            if new < len(payload) and self.sack_ok:
                # (part of) a duplicate of queued data (RFC 2883): the first such range
                self.dsack = _first_covered(seq, len(payload), pieces)
            if not new:
                return
            limit = self.cfg.ooo_limit
            if self.ooo_bytes + new > (self.recv_buffer if limit is None else limit):
                self.stats["ooo_dropped"] += 1
                return
            # Only what no queued segment holds is kept: a run merged by the
            # interface (receive_batch) may straddle queued data, and kept whole it
            # was counted twice against ooo_limit and the queue refused new data
            if not self.ooo:
                self.ooo, self.ooo_blocks = [], []
            self.sack_memo = None       # the blocks change
            for o, n in pieces:
                left = (seq + o) & MASK
                insort(self.ooo, (left, bytes(payload[o:o + n])), key=lambda x: (x[0] - rn) & MASK)
                _merge_block(self.ooo_blocks, left, (left + n) & MASK, rn)
            self.ooo_bytes += new
            self._last_ooo = seq

    def _drain_ooo(self) -> None:
        """In-order data reached the out-of-order queue: move what now follows
        RCV.NXT to the receive queue (the queue is sorted: stop at the first gap)."""
        ooo = self.ooo
        i = 0
        for seq, data in ooo:
            rn = self.rcv_nxt
            if seq_gt(seq, rn):
                break
            i += 1
            end = seq_add(seq, len(data))
            self.ooo_bytes -= len(data)
            if seq_le(end, rn):
                continue
            part = memoryview(data)[seq_sub(rn, seq):]
            self.rq.append(part)
            self.rq_bytes += len(part)
            self.rcv_nxt = end
        del ooo[:i]
        self.sack_memo = None           # the blocks change
        if not ooo:
            self.ooo = self.ooo_blocks = ()
            return
        rn = self.rcv_nxt
        blocks = self.ooo_blocks
        while blocks and not seq_gt(blocks[0][1], rn):
            del blocks[0]

    def _sack_room(self) -> int:
        """How many SACK blocks fit in an ACK: three beside timestamps, else four."""
        return 3 if self.ts_ok else 4

    def _sack_block_count(self) -> int:
        """len(self._sack_blocks()), without building them (the size of a data
        segment's option, asked for every segment sent)."""
        if not self.sack_ok or (not self.ooo and self.dsack is None):
            return 0
        n = len(self.ooo_blocks)
        k = self._sack_room()
        if self.dsack is not None:
            return 1 + (n if n < k - 1 else k - 1)
        return n if n < k else k

    def _sack_blocks(self) -> tuple:
        """The SACK blocks of our next ACK (RFC 2018): a D-SACK block first when a
        duplicate arrived (RFC 2883), then the out-of-order data, the block with
        the most recent segment first; three blocks at most beside timestamps."""
        if not self.sack_ok or (not self.ooo and self.dsack is None):
            return ()
        memo = self.sack_memo
        if memo is not None and memo[0] is self.dsack:
            return memo[1]      # the same as for the last segment: every segment of a burst carries them
        # RFC 2018 4: the block with the most recent segment first, then the most
        # recently reported ones. In ascending order instead, a sender with more
        # holes than fit in three blocks never heard of the newest ones: RACK called
        # them lost and resent them (a Linux BBR client at 5% loss resent a quarter
        # of its bytes to us, 270 D-SACKs).
        obs = self.ooo_blocks
        k = self._sack_room()
        if len(obs) > 1:
            obs = sorted(obs, key=_STAMP_OF, reverse=True)     # a C key: no Python call per block
        if self.dsack is not None:
            blocks = (self.dsack, *[(b[0], b[1]) for b in obs[:k - 1]])
        else:
            blocks = tuple([(b[0], b[1]) for b in obs[:k]])     # only those that fit: ~17 blocks at 5% loss
        self.sack_memo = (self.dsack, blocks)
        return blocks

    def _rcv_window(self) -> int:
        # Out-of-order data sits inside this window (beyond the hole), so it is not
        # subtracted: counted twice, the window shrank as segments after a loss
        # arrived, the retransmission that fills the hole no longer fit (and was
        # trimmed away), and both peers dropped each other's ACKs as outside the
        # shrunken window -- an ACK war until both timed out (found by a soak of
        # random lossy links with small buffers). rq + ooo stays <= recv_buffer.
        #
        # RCV.WND is what we offered: the right edge of our last advertisement
        # (last_ack_sent + last_wnd_sent) less RCV.NXT, and never more than the
        # buffer has room for. Data beyond that edge is not acceptable (RFC 9293
        # 3.10.7.4): measuring the window by the buffer alone let a peer without
        # window scaling (offered at most 65535) park bytes far past the offer in
        # the out-of-order queue, delivered once the hole before them filled.
        edge = (self.last_ack_sent + self.last_wnd_sent - self.rcv_nxt) & MASK
        if edge >= HALF:
            return 0
        room = self.recv_buffer - self.rq_bytes
        return edge if edge < room else (room if room > 0 else 0)
