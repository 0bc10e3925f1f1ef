"""The send side of a TCB: what to send and when (Nagle, the windows, SWS
avoidance), the fast path of output, segments built as TcpRepr, the persist
and keepalive timers, and poll_at."""
from __future__ import annotations


from ..wire.seq import MASK, seq_add, seq_gt, seq_le, seq_lt, seq_sub
from ..wire.tcp import ACK, FIN, PSH, SYN, TcpRepr
from .state import (CLOSE_WAIT, CLOSED, CLOSING, ESTABLISHED, FIN_WAIT_1, LAST_ACK, SYN_RECEIVED, SYN_SENT, TIME_WAIT)

from .rules import _SENDING_STATES, ts_clock


class SendSide:
    __slots__ = ()

    def poll_at(self):
        """When poll() must next run: 0.0 (now), the earliest armed timer, or None.
        An idle keepalive connection's next probe is due at last_recv + idle (the
        very sum _keepalive() tests) -- but never later than an armed timer."""
        if self.ack_now or self.rst_pending is not None:
            return 0.0
        if self.pacer is None:
            if self._can_send_data() or self._fin_to_send():
                return 0.0
            t = self._next_deadline()
        else:
            if self._fin_to_send():
                return 0.0
            t = self._paced_poll_at()
            if t == 0.0:
                return t
        if self.keepalive and self.state is ESTABLISHED and self.keepalive_at is None:
            k = self.last_recv + self.keepalive_idle
            if t is None or k < t:
                t = k
        return t

    def _seg(self, seq: int, ack: int, flags: int) -> TcpRepr:
        return TcpRepr(self.local_port, self.remote_port, seq, ack, flags, 0)

    def _fin_to_send(self) -> bool:
        """All data is sent and the FIN is due (first time, or again after an RTO)."""
        if not self.fin_queued or self.state not in (ESTABLISHED, CLOSE_WAIT, FIN_WAIT_1,
                                                      CLOSING, LAST_ACK):
            return False
        return self.snd_nxt == self._fin_seq()

    def _can_send_data(self) -> bool:
        offset = (self.snd_nxt - self.snd_una) & MASK
        avail = self.sbuf.size - offset
        if avail <= 0:
            return False
        if self.state not in _SENDING_STATES:
            return False
        wnd = min(self.snd_wnd, self.cc.cwnd) - offset
        if wnd <= 0:
            return False
        n = min(avail, wnd, self.max_segment())
        # RFC 9293 3.8.6.2.1: a full segment, or at least half the largest
        # window the peer ever offered (a peer whose buffer is below one MSS)
        if n >= self.mss or (n < avail and n >= self.max_snd_wnd // 2):
            return True
        # Nagle (RFC 896) in Minshall's variant: a segment smaller than the MSS
        # goes out only when no other small segment is unacknowledged, so a
        # request's tail is not held for a delayed ACK.
        return n == avail and (self.nodelay or self.fin_queued or seq_le(self.snd_sml, self.snd_una)
                               or seq_lt(self.snd_nxt, self.snd_max))  # resending after an RTO

    def max_segment(self) -> int:
        return max(self.mss, self.tso_max) if self.tso_max else self.mss

    def _run_timers(self, now: float, out: list) -> bool:
        """The due timers of the timer model, in order; False when the connection
        ended (TIME-WAIT over, out of retries, keepalive or user timeout)."""
        if self.timewait_at is not None and now >= self.timewait_at:
            self._finish(None)
            return False
        if self.rto_at is not None and now >= self.rto_at and self.tlp_at != self.rto_at:
            # (a probe clamped to the RTO's deadline goes instead: poll() sends it and
            # restarts the RTO, RFC 8985 7.2-7.3; an earlier probe still overdue yields)
            self._on_rto(now)
            if self.state is CLOSED:
                return False
        if self.delack_at is not None and now >= self.delack_at:
            self.ack_now = True
        if self.persist_at is not None and now >= self.persist_at:
            self._on_persist(now, out)
        if self.keepalive and self.state is ESTABLISHED:
            self._keepalive(now, out)
        return self.state is not CLOSED

    def poll(self, now: float) -> list:
        """Run due timers; return [(TcpRepr, payload)] to send now."""
        out: list = []
        if self.rst_pending is not None:
            out.append((self.rst_pending, b""))
            self.rst_pending = None
        if self.early_acks is not None:         # ACKs owed to out-of-order segments (receive.py)
            out.extend((a, b"") for a in self.early_acks)
            self.early_acks = None
        if self.state is CLOSED or not self._run_timers(now, out):
            return out
        st = self.state
        if st is SYN_SENT:
            if self.snd_nxt == self.iss:
                out.append((self._syn(False, now), b""))
                # time the SYN for the first RTT sample, unless it is a retransmission (Karn)
                self.rtt_seq, self.rtt_time = (self.iss, now) if self.retries == 0 else (None, 0.0)
                self._sent(self.iss, 1, now)
            return out
        if st is SYN_RECEIVED:
            if self.snd_nxt == self.iss or self.ack_now:
                out.append((self._syn(True, now), b""))
                # time the SYN-ACK for the first RTT sample, unless it is a retransmission (Karn)
                self.rtt_seq, self.rtt_time = (self.iss, now) if self.retries == 0 else (None, 0.0)
                self._sent(self.iss, 1, now)
                self.ack_now = False
            return out
        if st is TIME_WAIT:
            if self.ack_now:
                out.append((self._ack_seg(self.snd_max, ACK, now), b""))
            return out
        if self.rack_at is not None and now >= self.rack_at:
            self._on_rack_timer(now)
        if self.tlp_at is not None and now >= self.tlp_at:
            self._on_tlp(now, out)
        if self.frto_quota:
            # F-RTO step 2b: up to two new segments, whatever cwnd says (RFC 5682 3)
            while self.frto_quota and self._emit_new_in_recovery(out, now) > 0:
                self.frto_quota -= 1
            self.frto_quota = 0
        # retransmission of one segment (fast retransmit / partial ack / SACK hole)
        if self._retransmit_one:
            self._retransmit_one = False
            seq = self._next_hole(self.rexmit_next)
            if seq is not None:
                n = self._emit_data(seq, out, now, retransmit=True)
                self.rexmit_next = seq_add(seq, n)
                self.prr_out += n
        if self._sack_send:
            self._sack_send = False
            if self.in_recovery:
                self._sack_recovery_send(out, now)
        # new data (and retransmissions after an RTO, which rewinds snd_nxt), paced if the cc paces
        pacer = self.pacer
        while self._can_send_data() and (pacer is None or pacer.allows(now, self.mss)):
            self._emit_data(self.snd_nxt, out, now)
        if self.delivery is not None:
            self._check_app_limited()
        if self._fin_to_send():
            fin = self._fin_seq()
            out.append((self._ack_seg(fin, FIN | ACK, now), b""))
            self._sent(fin, 1, now)
            if self.state is ESTABLISHED:
                self._set_state(FIN_WAIT_1)
            elif self.state is CLOSE_WAIT:
                self._set_state(LAST_ACK)
        # data waits and nothing is in flight (none sent yet, or an RTO rewound
        # snd_nxt), and the window lets nothing go: zero, or too small for SWS
        # avoidance to send into. The persist timer probes (RFC 9293 3.8.6.1) or,
        # for a small window, is the override timeout of 3.8.6.2.1 (as Linux's
        # probe timer sends what fits, tcp_write_wakeup): without it a window
        # below one MSS and half the largest offered, with nothing in flight,
        # armed no timer at all. The RTO stands down: it has nothing to time,
        # and its retries would end a connection whose peer only has a full buffer.
        if self.snd_nxt == self.snd_una and self.persist_at is None and len(self.sbuf) and \
                (self.snd_wnd == 0 or (self.state in _SENDING_STATES and not self._can_send_data())):
            self._arm_persist(now, now + max(self.rto, self.cfg.rto_min))
        if self.ack_now:
            out.append((self._ack_seg(self._ack_seq(), ACK, now), b""))
        return out

    def _ack_seq(self) -> int:
        """The sequence number of a pure ACK: the highest sent (after an RTO
        snd_nxt is rewound, and an ACK numbered below what the peer already has
        would be dropped as old: both sides retransmitting at once would never
        hear each other's acknowledgements) -- except when the peer's window is
        zero: then it accepts only SEQ = RCV.NXT (RFC 9293 3.10.7.4), so an ACK
        numbered past data it dropped is dropped unread. Seen as a deadlock: data
        sent into a window that then closed, the ACKs of the other direction all
        dropped. SND.UNA is what the peer has acknowledged: at most its RCV.NXT,
        and if it is below, the peer's duplicate ACK tells us so. (Capping at
        SND.UNA + SND.WND whatever the window, as Linux does, fell below the
        peer's RCV.NXT when our ACKs had been lost: both peers then dropped each
        other's ACKs as old until both timed out.) But never past the right edge
        of the window the peer offered (SND.UNA + SND.WND), as Linux's
        tcp_acceptable_seq: seen as a deadlock over the ring -- an RTO rewound
        snd_nxt, the peer's buffer was full and its window down to one segment,
        and ACKs numbered at snd_max, far past that edge, were all refused, so
        neither side's retransmissions were ever acknowledged."""
        wnd = self.snd_wnd
        if wnd == 0:
            return self.snd_una
        if ((self.snd_max - self.snd_una) & MASK) > wnd:
            return (self.snd_una + wnd) & MASK
        return self.snd_max

    def _payload_limit(self, tso: bool) -> int:
        """The most payload the next segment may carry: the MSS (with `tso`, a TSO
        frame's size when the device segments) less the SACK option it will carry.
        The MSS already leaves room for the timestamp option (RFC 6691). Every
        path that sizes a data segment asks this, so every frame fits the MTU
        (a SACK option sized by a guess made segments up to 36 bytes too big
        under bidirectional loss: each one a drop and an RTO)."""
        limit = self.max_segment() if tso else self.mss
        if (self.ooo or self.dsack is not None) and self.sack_ok:
            limit -= 4 + 8 * self._sack_block_count()     # NOP NOP SACK(2 + 8n)
        return limit

    def _emit_data(self, seq: int, out: list, now: float, retransmit: bool = False) -> int:
        offset = seq_sub(seq, self.snd_una)
        limit = self._payload_limit(not retransmit)
        if retransmit:
            n = min(len(self.sbuf) - offset, limit)
        else:
            room = min(self.snd_wnd, self.cc.cwnd) - seq_sub(self.snd_nxt, self.snd_una)
            n = min(len(self.sbuf) - offset, limit, max(room, 0))
        if self.sack_ok and self.sacked and retransmit:
            for left, _right in self.sacked:
                if seq_lt(seq, left):
                    n = min(n, seq_sub(left, seq))  # stop at the next SACKed block
                    break
        if n <= 0:
            return 0
        data = self.sbuf.peek(offset, n, self.tso_max > 0)   # TSO: the device takes the pieces as they are
        flags = ACK | (PSH if offset + n == len(self.sbuf) else 0)
        out.append((self._ack_seg(seq, flags, now), data))
        end = seq_add(seq, n)
        resent = retransmit or seq_lt(seq, self.snd_max)
        if resent:
            self.stats["retransmits"] += 1
            una = self.snd_una
            high = (self.rtx_high - una) & MASK
            if high < ((end - una) & MASK) or high > ((self.snd_max - una) & MASK):   # below, or stale
                self.rtx_high = end
            if self.undo_retrans >= 0:
                self._note_retransmitted(seq, now)   # for a D-SACK or Eifel undo (undo.py)
            if self.rtt_seq is not None and seq_le(seq, self.rtt_seq):
                self.rtt_seq = None  # Karn: no sample from retransmitted data
        elif self.rtt_seq is None and not self.ts_ok:
            self.rtt_seq = seq
            self.rtt_time = now
        if not retransmit:
            self.snd_nxt = end
        if n < self.mss:
            self.snd_sml = end
        if seq_gt(end, self.snd_max):
            self.snd_max = end
        # resending the head restarts the RTO (as Linux's tcp_xmit_retransmit_queue): in
        # recovery SND.UNA stands still until the head is repaired, and an RTO counted from
        # the last cumulative ACK fired while RACK was still repairing it
        self._arm_rto(now, restart=retransmit and seq == self.snd_una)
        if self.sack_ok or self.delivery is not None:
            self._record_xmit(seq, n, now, resent)
            if not retransmit:
                self._schedule_tlp(now)      # new data (re)starts the probe timeout
        return n

    def _emit_new_in_recovery(self, out: list, now: float) -> int:
        """New data during SACK recovery: bounded by the peer's window, not by cwnd
        (the caller's pipe check is the congestion control here)."""
        offset = seq_sub(self.snd_nxt, self.snd_una)
        avail = len(self.sbuf) - offset
        room = self.snd_wnd - offset
        n = min(avail, room, self._payload_limit(False))
        if n <= 0:
            return 0
        data = self.sbuf.peek(offset, n)
        seq = self.snd_nxt
        out.append((self._ack_seg(seq, ACK | (PSH if offset + n == len(self.sbuf) else 0), now), data))
        resent = seq_lt(seq, self.snd_max)
        self.snd_nxt = end = seq_add(seq, n)
        if seq_gt(end, self.snd_max):
            self.snd_max = end
        self._arm_rto(now)
        if self.sack_ok or self.delivery is not None:
            self._record_xmit(seq, n, now, resent)
        return n

    def _sent(self, seq: int, length: int, now: float) -> None:
        end = seq_add(seq, length)
        if seq_gt(end, self.snd_nxt):
            self.snd_nxt = end
        if seq_gt(end, self.snd_max):
            self.snd_max = end
        self._arm_rto(now)

    def _syn(self, with_ack: bool, now: float) -> TcpRepr:
        ts = (self._ts_now(now), self.ts_recent if with_ack else 0) if (self.cfg.timestamps and (
            not with_ack or self.ts_ok)) else None
        window = min(self.recv_buffer - self.rq_bytes, 65535)     # never scaled in a SYN (RFC 7323 2.2)
        self.last_ack_sent = self.rcv_nxt
        self.last_wnd_sent = window
        return TcpRepr(self.local_port, self.remote_port, self.iss, self.rcv_nxt if with_ack else 0,
                       SYN | (ACK if with_ack else 0), window, 0, self.our_mss,
                       self.rcv_wscale if (self.cfg.window_scale and (not with_ack or self.ws_ok)) else None,
                       self.cfg.sack and (not with_ack or self.sack_ok), (), ts)

    def fast_output(self, now: float, chain: bool = True):
        """The fast path of poll() for its most common outcomes, in ESTABLISHED (or
        CLOSE_WAIT) with no timer due, no FIN, no loss recovery and no SACK block
        to report. Returns, like poll(), the segments to send now, with the
        bookkeeping of sending them done (a paced connection never takes it) -- as (seq, ack, window field, timestamp
        option or None, payload, flags) tuples: one pure ACK, or new data (all of
        it when it fits one MSS and both windows and Nagle let it go; with TSO,
        frames of up to tso_max bytes that the device cuts into segments). An
        empty list: nothing to send, no timer but the RTO and the delayed ACK to
        keep. None: the fast path does not apply, nothing changed, poll() decides.
        (chain=False: at most one segment -- the TSO continuation's own calls.)"""
        st = self.state
        if (st is not ESTABLISHED and st is not CLOSE_WAIT) or self.rst_pending is not None \
                or self.ooo or self.fin_queued or self.dsack is not None or self.frto or self.early_acks is not None \
                or self.in_recovery or self._retransmit_one or self._sack_send or self.persist_at is not None \
                or (self.rto_at is not None and now >= self.rto_at) or (self.tlp_at is not None and now >= self.tlp_at) \
                or (self.rack_at is not None and now >= self.rack_at) or self.pacer is not None:
            return None
        keepalive = self.keepalive and st is ESTABLISHED     # as in poll(): probes only there
        if keepalive and now >= self.last_recv + self.keepalive_idle:     # as _keepalive() decides
            return None
        seq = self.snd_nxt
        offset = (seq - self.snd_una) & MASK
        n = self.sbuf.size - offset
        if n > 0:
            if seq != self.snd_max:
                return None
            room = (self.snd_wnd if self.snd_wnd < self.cc.cwnd else self.cc.cwnd) - offset
            flags = ACK | PSH
            if n > self.mss:
                if not self.tso_max:
                    return None
                if n > room or n > self.tso_max:
                    n = room if room < self.tso_max else self.tso_max
                    if n < self.mss:
                        return None     # window-limited below one MSS: the SWS rules of poll()
                    flags = ACK         # more follows
            elif n > room:
                return None
            elif n < self.mss and not self.nodelay and ((self.snd_una - self.snd_sml) & MASK) >= 0x80000000:
                return None     # Nagle: a small segment is still unacknowledged
            payload = self.sbuf.peek(offset, n, n > 256 and self.tso_max > 0)
            end = (seq + n) & MASK
            self.snd_nxt = self.snd_max = end
            if n < self.mss:
                self.snd_sml = end
            if self.rtt_seq is None and not self.ts_ok:
                self.rtt_seq = seq
                self.rtt_time = now
            if self.rto_at is None:
                self.rto_at = now + self.rto
                if self.stalled_since is None:
                    self.stalled_since = now     # as _arm_rto: outstanding from now on
            if self.sack_ok:
                self._append_xmit(seq, end, now)     # new data: RACK's entry, then the probe timeout
                self._schedule_tlp(now)
        elif self.ack_now or (self.delack_at is not None and now >= self.delack_at):
            seq = self._ack_seq()
            payload = b""
            flags = ACK
        else:
            return None if keepalive else []
        if keepalive:
            self.keepalive_probes = 0       # what _keepalive() does for a live connection
            self.keepalive_at = None
        out = [(seq, self.rcv_nxt, self._ack_sent(), (ts_clock(now), self.ts_recent) if self.ts_ok else None,
                payload, flags)]
        if chain and payload and flags == ACK:      # a TSO frame with more data behind it
            while self.sbuf.size > ((self.snd_nxt - self.snd_una) & MASK):
                more = self.fast_output(now, False)
                if not more:
                    break
                out.append(more[0])
        return out

    def _ack_sent(self) -> int:
        """A segment that acknowledges everything received so far is being sent
        (fast path or general): the ACK is no longer owed, and it offers our
        receive window. Returns the window field: RCV.WND >> our scale, clamped
        to 16 bits. The right edge rcv_nxt + window never moves left: in-order
        data raises rcv_nxt and rq_bytes together (RFC 9293 3.8.6.2.2)."""
        raw = (self.recv_buffer - self.rq_bytes) >> self.rcv_wscale
        if raw > 65535:
            raw = 65535
        elif raw < 0:
            raw = 0
        self.last_ack_sent = self.rcv_nxt
        self.last_wnd_sent = raw << self.rcv_wscale
        self.ack_now = False
        self.delack_at = None
        self.unacked_segments = 0
        return raw

    def _ack_seg(self, seq: int, flags: int, now: float) -> TcpRepr:
        raw = self._ack_sent()
        ts = (self._ts_now(now), self.ts_recent) if self.ts_ok else None
        if self.ooo or self.dsack is not None:
            sack = self._sack_blocks()
            self.dsack = None           # reported once
        else:
            sack = ()
        return TcpRepr(self.local_port, self.remote_port, seq, self.rcv_nxt, flags, raw, 0, None, None,
                       False, sack, ts)

    def _on_persist(self, now: float, out: list) -> None:
        self.persist_at = None
        if self.snd_wnd != 0:
            if self.snd_nxt == self.snd_una and len(self.sbuf) and self.state in _SENDING_STATES \
                    and not self._user_timed_out(now):
                # SWS override: what the small window takes goes now, and the RTO times it
                self._emit_data(self.snd_nxt, out, now)
            return
        if self._user_timed_out(now):
            return
        if len(self.sbuf):
            # Zero-window probe (RFC 9293 3.8.6.1): the first unacknowledged byte,
            # SEQ = SND.UNA, every time. A probe that took the next byte each time
            # pushed more than one byte into a window the peer holds at zero.
            out.append((self._ack_seg(self.snd_una, ACK, now), self.sbuf.peek(0, 1)))
            end = seq_add(self.snd_una, 1)
            if seq_gt(end, self.snd_nxt):
                self.snd_nxt = end
            if seq_gt(end, self.snd_max):
                self.snd_max = end
        self.persist_backoff += 1
        self.persist_at = self._clamp_to_user_timeout(
            now + min(self.cfg.rto_max, max(self.rto, self.cfg.rto_min) * (2 ** self.persist_backoff)))

    def _keepalive(self, now: float, out: list) -> None:
        # `now < last_recv + idle`, the very sum poll_at() reports: written as
        # `now - last_recv < idle` it can differ in the last bit, and a timer due
        # by one test and not by the other fires again and again without a probe
        active = now < self.last_recv + self.keepalive_idle
        if self.keepalive_probes and active:
            self.keepalive_probes = 0
            self.keepalive_at = None
        if active:
            self.keepalive_at = None
            return
        if self.keepalive_at is None or now >= self.keepalive_at:
            if self.keepalive_probes >= self.keepalive_count:
                self._finish(TimeoutError(110, "Connection timed out (keepalive)"))
                return
            # RFC 1122 4.2.3.6: SEG.SEQ = SND.NXT-1, no data
            out.append((self._ack_seg(seq_add(self.snd_max, -1), ACK, now), b""))
            self.keepalive_probes += 1
            self.keepalive_at = now + self.keepalive_interval

    _ts_now = staticmethod(ts_clock)

    def _fin_seq(self):
        """The sequence number of our FIN (once all data is queued behind it)."""
        if not self.fin_queued:
            return None
        return seq_add(self.snd_una, len(self.sbuf))
