"""Acknowledgements and loss recovery of a TCB: the ACK checks, duplicate
ACKs and fast recovery (RFC 5681, RFC 6582), SACK recovery (RFC 6675), RTT
estimation and the retransmission timeout (RFC 6298)."""
from __future__ import annotations

from bisect import bisect_left, bisect_right

from ..wire.seq import HALF, MASK, seq_add, seq_ge, seq_gt, seq_lt, seq_sub
from ..wire.tcp import FIN, SYN, TcpRepr, starts_with_dsack
from .state import (CLOSING, EV_WRITABLE, FIN_WAIT_1, FIN_WAIT_2, LAST_ACK, SYN_RECEIVED, SYN_SENT)

from .rack import XMIT_RETRANS, _END, _SACKED, _START
from .rules import DUPACK_THRESHOLD, TS_HZ, ts_clock
from .undo import UNDONE


class AckAndRecovery:
    __slots__ = ()

    def _process_ack(self, seg: TcpRepr, plen: int, now: float) -> bool:
        """RFC 9293 3.10.7.4 fifth check. Returns False if the segment is to be dropped."""
        ack = seg.ack
        una = self.snd_una
        # (the wire.seq comparisons written out: this runs for every segment the
        # header prediction declines)
        if ((self.snd_max - ack) & MASK) >= HALF:       # ack > snd_max
            self.ack_now = True  # acks something not yet sent
            return False
        # RFC 5961 5.2: too old an ACK
        if ((ack - una + self.max_snd_wnd) & MASK) >= HALF:     # ack < una - max_snd_wnd
            self._challenge_ack(now)
            return False
        wnd = seg.window << self.snd_wscale
        prr = self.in_recovery and self.sack_ok
        if prr:
            sacked_before = self._sacked_bytes()
        fresh = ()
        if self.sack_ok and seg.sack_blocks:
            self._note_dsack(seg.sack_blocks, ack)
            before = self.sacked[:]          # (_update_scoreboard extends the list in place)
            self._update_scoreboard(seg.sack_blocks, now)
            if self.xmit:
                fresh = _newly_covered(seg.sack_blocks, before, una)
        acked = (ack - una) & MASK
        if acked and acked < HALF:                      # ack > una
            if not self._on_new_ack_general(seg, ack, acked, now):
                return False
        elif ack == una and seq_sub(self.snd_max, una) > 0 and not plen \
                and not seg.flags & (SYN | FIN) and wnd == self.snd_wnd:
            self._on_duplicate_ack(now)
        if prr and self.in_recovery:
            # RFC 6937: what this ACK delivered, cumulatively or by SACK
            self.prr_last_delivered = max(0, ((self.snd_una - una) & MASK) + self._sacked_bytes() - sacked_before)
            self.prr_delivered += self.prr_last_delivered
            self.prr_fresh = True
            if self.prr_last_delivered:
                # every ACK that delivers data runs the recovery send loop (RFC 6937, RFC 6675
                # 5 (C)) -- not only duplicate ACKs: with data flowing both ways the peer's ACKs
                # carry data and are never duplicates, and recovery sat still until the RTO
                self._sack_send = True
        if self.xmit and (self.sacked or self.rack_lost or self.rack_at is not None):
            self._rack_on_ack(now, fresh)
        self._update_window(seg.seq, ack, wnd)
        if self.delivery is not None:
            self._rate_on_ack(now)
        return True

    def _sacked_bytes(self) -> int:
        return self.sacked_total        # kept by _update_scoreboard and _trim_scoreboard

    def _prr_budget(self, pipe: int) -> int:
        """RFC 6937 (PRR-SSRB): how many bytes recovery may send now. Above
        ssthresh, in proportion to what was delivered (ssthresh / RecoverFS of
        it); below, slow start towards ssthresh, at most one MSS more than was
        delivered. The window comes down smoothly instead of in one step."""
        if self.cc.paced:
            room = self.cc.cwnd - pipe          # BBR: its window bounds recovery, PRR does not apply
            return room if room > 0 else 0
        ssthresh = self.cc.ssthresh
        if pipe > ssthresh:
            sndcnt = -(-self.prr_delivered * ssthresh // self.prr_recover_fs) - self.prr_out
        else:
            limit = max(self.prr_delivered - self.prr_out, self.prr_last_delivered) + self.mss
            sndcnt = min(ssthresh - pipe, limit)
        return sndcnt if sndcnt > 0 else 0

    def _note_dsack(self, blocks, ack: int) -> None:
        """RFC 2883: a first SACK block below the cumulative ACK, or inside the
        second block, reports a duplicate segment (D-SACK)."""
        if starts_with_dsack(blocks, ack):
            left = blocks[0][0]
            self.stats["dsacks_received"] += 1
            self._rack_dsack()
            self._dsack_undo(left)
            if self.tlp_end is not None:
                self.tlp_dsack = True

    def _new_ack(self, ack: int, data_acked: int, tsecr: int, now: float) -> None:
        """New data acknowledged (SND.UNA < ack): the bookkeeping every path does,
        the header prediction included. `data_acked` excludes our FIN's octet."""
        flight_before = (self.snd_max - self.snd_una) & MASK
        if self.xmit:
            self._rack_acked(ack, now, tsecr)
        self.sbuf.consume(data_acked)
        self.snd_una = ack
        if ((self.snd_nxt - ack) & MASK) >= HALF:   # snd_nxt < ack
            self.snd_nxt = ack
        self.retries = 0
        self.dupacks = 0
        self._rtt_sample(ack, tsecr, now)
        if self.tlp_end is not None:
            self._tlp_on_ack(ack, flight_before, now)
        if ack == self.snd_max:
            self.rto_at = self.tlp_at = None         # nothing in flight: no timer (and no probe) to run
            self.stalled_since = None
        else:
            self.rto_at = now + self.rto             # restart (RFC 6298 5.3)
            self.stalled_since = now                 # progress: the user timeout counts from here
            if self.sack_ok:
                self._schedule_tlp(now)
        if self.snd_grow:
            self._grow_send_limit()
        if not self._was_writable and self.send_limit > self.sbuf.size:
            self._was_writable = True
            self.events.append(EV_WRITABLE)

    def _grow_send_limit(self) -> None:
        """Send-buffer auto-tuning (as Linux's tcp_sndbuf_expand): the send limit
        (unsent and unacknowledged bytes the application may queue) is at least
        twice the congestion window, so a window that opens finds data to send,
        and a window that stays small keeps the application from running far
        ahead of the wire. Never shrinks, never passes cfg.send_buffer."""
        want = 2 * int(self.cc.cwnd)
        if want > self.send_limit:
            ceiling = self.cfg.send_buffer
            if want >= ceiling:
                want = ceiling
                self.snd_grow = False
            self.send_limit = want

    def _on_new_ack_general(self, seg: TcpRepr, ack: int, acked: int, now: float) -> bool:
        """The general path's new ACK: recovery, then our FIN. False: the TCB is gone."""
        st = self.state
        fin_acked = self.fin_queued and acked > self.sbuf.size      # ack covers our FIN
        data_acked = acked - 1 if fin_acked else acked
        tsecr = seg.timestamp[1] if seg.timestamp is not None else 0
        self._new_ack(ack, data_acked, tsecr, now)
        if self.undo_first is not None:
            self._eifel_undo(ack, tsecr)
        if self.frto:
            self._frto_on_new_ack(ack, bool(seg.sack_blocks))
        if self.in_recovery:
            if seq_ge(ack, self.recover):
                self.in_recovery = False
                if self.undo_retrans != UNDONE:      # an undone reduction stays undone
                    self.cc.exit_recovery((self.snd_max - ack) & MASK, self.sack_ok)
                self._rack_forget()
                if self.sack_ok:
                    self._schedule_tlp(now)     # what is still in flight gets its probe (none ran in recovery)
            elif self.sack_ok:
                # RFC 6675: no window arithmetic here; the pipe estimate decides
                if seq_lt(self.rexmit_next, ack):
                    self.rexmit_next = ack
                self._sack_send = True
            else:
                # partial ACK (RFC 6582 3.2 step 5): retransmit the next hole
                self.cc.on_partial_ack(data_acked)
                self.rexmit_next = ack
                self._retransmit_one = True
        else:
            self.cc.on_ack(data_acked, now, self.srtt)
        self._trim_scoreboard()
        if fin_acked:
            if st is FIN_WAIT_1:
                self._set_state(FIN_WAIT_2)
                self._fin_wait_2_timer(now)
            elif st is CLOSING:
                self._enter_time_wait(now)
            elif st is LAST_ACK:
                self._finish(None)
                return False
        return True

    def _on_duplicate_ack(self, now: float) -> None:
        """RFC 5681 2: a duplicate ACK; the third starts fast recovery."""
        if self.frto:
            self._frto_on_dupack()
        self.dupacks += 1
        self.stats["dup_acks"] += 1
        if self.dupacks == DUPACK_THRESHOLD and not self.in_recovery and seq_ge(self.snd_una, self.recover):
            self._enter_fast_recovery(now)
        elif self.in_recovery:
            if self.sack_ok:
                self._sack_send = True     # RFC 6675 5 (C): send what the pipe allows
            else:
                self.cc.on_dupack_in_recovery()

    def _update_window(self, seq: int, ack: int, wnd: int) -> None:
        """RFC 9293 3.10.7.4: take the window if wl1 < seq, or wl1 == seq and wl2 <= ack."""
        wl1 = self.snd_wl1
        if ((wl1 - seq) & MASK) >= HALF or (wl1 == seq and (self.snd_wl2 == ack
                                                           or ((self.snd_wl2 - ack) & MASK) >= HALF)):
            self.snd_wnd = wnd
            self.snd_wl1, self.snd_wl2 = seq, ack
            if wnd > self.max_snd_wnd:
                self.max_snd_wnd = wnd
            if wnd:
                self.persist_at = None
                self.persist_backoff = 0

    def _enter_fast_recovery(self, now: float) -> None:
        flight = seq_sub(self.snd_max, self.snd_una)
        self._save_for_undo()
        self.cc.enter_recovery(flight, now, self.sack_ok)
        self.tlp_at = self.tlp_end = None       # loss recovery takes over from the probe
        self.prr_delivered = self.prr_out = self.prr_last_delivered = 0
        self.prr_recover_fs = flight if flight > 0 else 1
        self.prr_fresh = True
        self.prr_window = 0
        self.recover = self.snd_max
        self.in_recovery = True
        self.rexmit_next = self.snd_una
        # the first lost segment goes at once (RFC 6675 5 (4.3)) -- unless the head was
        # retransmitted in the last recovery and is not known lost again: then it is in
        # flight, as _in_flight_again sees it (Linux skips an skb marked SACKED_RETRANS)
        head_resent = False
        if self.sack_ok:
            self._sack_send = True
            x = self.xmit
            head_resent = bool(x) and x[0][XMIT_RETRANS]
            if not head_resent:
                self._rack_mark_head_lost()
        self._retransmit_one = not head_resent
        self.stats["fast_retransmits"] += 1

    def _holes(self) -> list:
        """[(left, right, lost)] for the un-SACKed ranges below the highest SACKed
        byte. A hole is lost (RFC 6675 IsLost) when more than (DupThresh - 1) * SMSS
        bytes, or DupThresh blocks, are SACKed above it -- or when RACK marked a
        segment in it lost (rack.py)."""
        # The scoreboard is merged: a hole lies below each block (the first one's
        # from SND.UNA), and what is SACKed above a hole is the blocks from there
        # up -- one pass from the top counts it.
        sb = self.sacked
        una = self.snd_una
        holes = []
        above_bytes = 0
        limit = (DUPACK_THRESHOLD - 1) * self.mss
        rack = self.rack_lost
        k = len(sb)
        while k:
            k -= 1
            left, right = sb[k]
            above_bytes += (right - left) & MASK
            start = sb[k - 1][1] if k else una
            if start != left:
                holes.append([start, left, above_bytes > limit or len(sb) - k >= DUPACK_THRESHOLD
                              or (rack is not None and self._rack_is_lost(start, left))])
        holes.reverse()
        if rack:
            holes += self._rack_lost_above(sb[-1][1] if sb else una)
        high = (self.rtx_high - una) & MASK
        if high and high <= ((self.snd_max - una) & MASK) and self.xmit:
            rx = (self.rexmit_next - una) & MASK
            if rx < high:
                holes = self._in_flight_again(holes, rx, high)
        return holes

    def _in_flight_again(self, holes: list, rx: int, high: int) -> list:
        """The lost holes between HighRxt (`rx`, an offset from SND.UNA) and the
        highest retransmission (`high`) may hold segments already retransmitted
        and not since found lost (RACK clears the mark of a lost retransmission):
        those parts become holes marked None -- in flight, never chosen again --
        as Linux skips an skb marked SACKED_RETRANS. HighRxt goes back to SND.UNA
        when a recovery starts and below a lost retransmission when RACK finds
        one; with the holes' IsLost alone, every retransmission still in flight
        above it was sent a second time (at 5% loss, about 300 of 1,250
        retransmissions of a 20 MiB transfer, each reported back as a D-SACK)."""
        una = self.snd_una
        x = self.xmit
        n = len(x)
        out = []
        for h in holes:
            left, right, lost = h
            lo = (left - una) & MASK
            if lost is not True or lo < rx or lo >= high:
                out.append(h)
                continue
            i = self._xmit_index(left)
            pieces = []
            cur = left
            while i < n:
                e = x[i]
                s0 = e[_START]
                if not seq_lt(s0, right):
                    break
                state = None if e[XMIT_RETRANS] and not e[_SACKED] else True
                end = e[_END] if seq_lt(e[_END], right) else right
                if pieces and pieces[-1][2] is state:
                    pieces[-1][1] = end
                else:
                    pieces.append([cur, end, state])
                cur = end
                i += 1
            if seq_lt(cur, right):
                pieces.append([cur, right, True])
            out.extend(pieces)
        return out

    def _pipe(self, holes) -> int:
        """RFC 6675 SetPipe: bytes believed in the network."""
        top = self.sacked[-1][1] if self.sacked else self.snd_una
        pipe = max(0, seq_sub(self.snd_max, top))          # above every SACK: in flight
        rx = self.rexmit_next
        for left, right, lost in holes:
            if lost is None:                              # its retransmission is in flight
                if seq_lt(left, top):
                    pipe += seq_sub(right, left)          # (above every SACK: counted already)
                continue
            if not lost:
                pipe += seq_sub(right, left)
            elif not seq_lt(left, top):
                pipe -= seq_sub(right, left)              # above every SACK, but RACK says lost
            if seq_gt(rx, left):                          # retransmitted part of the hole
                pipe += seq_sub(seq_min_(rx, right), left)
        return pipe

    def _recovery_budget(self, pipe: int):
        """What the recovery send loop may send now, and whether only lost
        segments may go. After an ACK (or under BBR's pacing): PRR's budget, and
        the window it makes (pipe + budget) is remembered. With no ACK since,
        the RACK timer found segments lost: they left the pipe, and that window
        has room for their retransmission (as Linux's cwnd, set by PRR at each
        ACK, lets its retransmit queue send when a loss frees room). PRR's
        formula alone moves only with delivered data: with the peer silent,
        nothing went until the RTO. New data still waits for an ACK."""
        if self.prr_fresh or self.cc.paced:
            budget = self._prr_budget(pipe)
            self.prr_fresh = False
            self.prr_window = pipe + budget
            return budget, False
        return self.prr_window - pipe, True

    def _sack_recovery_send(self, out: list, now: float) -> None:
        """Send while cwnd - pipe >= SMSS, choosing each segment by RFC 6675 NextSeg:
        (1) a lost hole above HighRxt (rexmit_next); (2) new data; (3) a hole not yet
        deemed lost; (4) once per recovery, a rescue retransmission of the highest
        outstanding unSACKed segment (a lost tail has no SACKs above it to mark it)."""
        holes = self._holes()
        pipe = self._pipe(holes)
        budget, lost_only = self._recovery_budget(pipe)
        sent = 0
        # rexmit_next only moves up in this loop: the holes it has passed stay
        # passed, so each search resumes where the last one stopped (from the
        # start each time, a large window's dozens of holes were walked per segment)
        i_lost = i_any = 0
        nh = len(holes)
        while sent < budget:
            if not self._pace_allows(now):
                self._sack_send = True          # the rest when the pacer has tokens again
                break
            seq = None
            rx = self.rexmit_next
            while i_lost < nh and not (holes[i_lost][2] and seq_lt(rx, holes[i_lost][1])):
                i_lost += 1
            if i_lost < nh:
                left = holes[i_lost][0]
                seq = left if seq_lt(rx, left) else rx
            if seq is None:
                if lost_only:
                    break
                n = self._emit_new_in_recovery(out, now)
                if n > 0:
                    pipe += n
                    sent += n
                    continue
                while i_any < nh and (not seq_lt(rx, holes[i_any][1]) or holes[i_any][2] is None):
                    i_any += 1
                if i_any < nh:
                    left = holes[i_any][0]
                    seq = left if seq_lt(rx, left) else rx
            if seq is not None:
                n = self._emit_data(seq, out, now, retransmit=True)
                if n <= 0:
                    break
                self.rexmit_next = seq_add(seq, n)
                pipe += n
                sent += n
                continue
            # (4) rescue: HighACK > RescueRxt (or none yet this recovery)
            if self.rescue_rxt is not None and not seq_gt(self.snd_una, self.rescue_rxt):
                break
            top = self.sacked[-1][1] if self.sacked else self.snd_una
            if seq_lt(top, self.snd_max):
                lo, hi = top, self.snd_max                 # the unSACKed tail
            elif holes:
                lo, hi = holes[-1][0], holes[-1][1]
            else:
                break
            if not seq_lt(rx, hi):
                break       # that data was retransmitted already (HighRxt is past it)
            start = hi - self.mss if seq_sub(hi, lo) > self.mss else lo
            n = self._emit_data(start & MASK, out, now, retransmit=True)
            if n <= 0:
                break
            self.rescue_rxt = self.recover
            self.stats["rescue_retransmits"] += 1
            pipe += n
            sent += n
        self.prr_out += sent

    def _update_scoreboard(self, blocks, now: float) -> None:
        """The peer's SACK blocks into the scoreboard: each one merged into the
        sorted, disjoint blocks where it lands (found by binary search), and the
        SACKed byte count kept with them (asked two or three times per ACK)."""
        sb = self.sacked if self.sacked else []
        una = self.snd_una
        base = (una - HALF) & MASK      # signed offsets from SND.UNA, as (x - base) & MASK
        top = (self.snd_max - base) & MASK
        floor = HALF                    # SND.UNA's offset
        total = self.sacked_total
        for left, right in blocks:
            lo = (left - base) & MASK
            hi = (right - base) & MASK
            if hi <= floor or hi > top or lo >= hi:
                continue  # stale or bogus block
            i = bisect_left(sb, lo, key=lambda b: (b[1] - base) & MASK)   # the first block that ends at or after it
            j = i
            n = len(sb)
            while j < n:
                bl, br = sb[j]
                blo = (bl - base) & MASK
                if blo > hi:
                    break
                bhi = (br - base) & MASK
                total -= bhi - blo
                if blo < lo:
                    lo, left = blo, bl
                if bhi > hi:
                    hi, right = bhi, br
                j += 1
            sb[i:j] = [(left, right)]
            total += hi - lo
        self.sacked = sb or ()
        self.sacked_total = total
        if not self.in_recovery and self.sack_ok and sb:
            # RFC 6675 IsLost(HighACK + 1): more than (DupThresh - 1) * SMSS bytes, or
            # DupThresh discontiguous blocks, SACKed above it. (With data flowing
            # both ways the peer's ACKs carry data and never count as duplicate
            # ACKs: this is then the only way into recovery; DupThresh * SMSS here
            # left a one-segment hole under three SACKed segments to the RTO.)
            if (total > (DUPACK_THRESHOLD - 1) * self.mss or len(sb) >= DUPACK_THRESHOLD) \
                    and seq_ge(self.snd_una, self.recover):
                self._enter_fast_recovery(now)

    def _trim_scoreboard(self) -> None:
        """SND.UNA moved: the blocks at or below it go, one straddling it is cut."""
        sb = self.sacked
        if not sb:
            return
        una = self.snd_una
        if ((sb[0][0] - una) & MASK) < HALF:
            return                      # every block lies above SND.UNA
        sb = [(max_seq(left, una), r) for left, r in sb if seq_gt(r, una)]
        self.sacked = sb or ()
        self.sacked_total = sum([(r - lft) & MASK for lft, r in sb])

    def _clear_scoreboard(self) -> None:
        self.sacked = ()
        self.sacked_total = 0

    def _rtt_sample_ack(self, seg: TcpRepr, now: float) -> None:
        self._rtt_sample(seg.ack, seg.timestamp[1] if seg.timestamp is not None else 0, now)

    def _rtt_sample(self, ack: int, tsecr: int, now: float) -> None:
        if self.ts_ok and tsecr:
            sample = ((ts_clock(now) - tsecr) & MASK) / TS_HZ
            self.rtt_seq = None
            if sample > 3600:
                return
        elif self.rtt_seq is not None and ((self.rtt_seq - ack) & MASK) >= HALF:    # ack > rtt_seq
            sample = now - self.rtt_time
            self.rtt_seq = None
            if sample < 0.0:
                sample = 0.0
        else:
            return
        if self.min_rtt is None or sample < self.min_rtt:
            self.min_rtt = sample
        srtt = self.srtt
        if srtt is None:
            srtt = sample
            var = sample / 2
        else:
            d = srtt - sample
            var = 0.75 * self.rttvar + 0.25 * (d if d >= 0.0 else -d)
            srtt = 0.875 * srtt + 0.125 * sample
        self.srtt = srtt
        self.rttvar = var
        var *= 4
        rto = srtt + (var if var > 0.001 else 0.001)
        cfg = self.cfg
        self.rto = cfg.rto_min if rto < cfg.rto_min else (cfg.rto_max if rto > cfg.rto_max else rto)

    def _arm_rto(self, now: float, restart: bool = False) -> None:
        if self.rto_at is None:
            if self.stalled_since is None:
                self.stalled_since = now     # something is outstanding from now on (user timeout)
            self.rto_at = now + self.rto
        elif restart:
            self.rto_at = now + self.rto

    def _user_timed_out(self, now: float) -> bool:
        """RFC 5482 / TCP_USER_TIMEOUT: data (or a SYN, or a zero-window probe) has
        stayed unacknowledged for user_timeout seconds: the connection ends with
        ETIMEDOUT, whatever retries are left. True when it did."""
        if self.user_timeout and self.stalled_since is not None and now - self.stalled_since >= self.user_timeout:
            self._finish(TimeoutError(110, "Connection timed out (user timeout)"))
            return True
        return False

    def _clamp_to_user_timeout(self, t: float) -> float:
        """A backed-off timer never fires later than the user timeout (as Linux's
        tcp_clamp_rto_to_user_timeout)."""
        if self.user_timeout and self.stalled_since is not None:
            end = self.stalled_since + self.user_timeout
            if end < t:
                return end
        return t

    def _on_rto(self, now: float) -> None:
        st = self.state
        if self._user_timed_out(now):
            return
        limit = self.cfg.syn_retries if st in (SYN_SENT, SYN_RECEIVED) else self.cfg.max_retries
        self.retries += 1
        stats = self.stats
        stats["timeouts"] += 1
        if self.in_recovery:
            stats["timeouts_in_recovery"] += 1
        elif self.retries > 1 or seq_lt(self.snd_una, self.recover):
            stats["timeouts_after_timeout"] += 1
        if self.xmit and self.xmit[0][XMIT_RETRANS]:
            stats["timeouts_retransmission_lost"] += 1     # the head was sent again and is still missing
        if self.retries > limit:
            if st is SYN_RECEIVED and self.listener is not None:
                self._finish(None)
            else:
                self._finish(TimeoutError(110, "Connection timed out"))
            return
        self.rto = min(self.cfg.rto_max, self.rto * 2)   # back off (RFC 6298 5.5)
        self.rto_at = self._clamp_to_user_timeout(now + self.rto)
        if st in (SYN_SENT, SYN_RECEIVED):
            self.snd_nxt = self.iss
            return
        flight = seq_sub(self.snd_max, self.snd_una)
        if self.retries == 1:
            self._save_for_undo()        # the first timeout of the episode: F-RTO may undo it
            self._frto_start()
        else:
            self.frto = 0
        self.cc.on_loss_timeout(flight, now)
        self.in_recovery = False
        self.recover = self.snd_max
        self.dupacks = 0
        self._clear_scoreboard()    # RFC 6675 5.1: the scoreboard may be stale after an RTO
        self.tlp_at = self.tlp_end = None
        self._rack_forget()
        if self.xmit:
            for e in self.xmit:
                e[4] = False      # RFC 6675 5.1 / RFC 8985 6.3: after an RTO everything is resent
        self.rtt_seq = None
        self.snd_nxt = self.snd_una      # go back and resend from the first unacked byte (or the FIN)

    def _next_hole(self, start: int):
        """The first unacked, un-SACKed sequence number at or after start that
        is worth retransmitting, or None."""
        if seq_lt(start, self.snd_una):
            start = self.snd_una
        if not seq_lt(start, self.snd_max) or seq_ge(start, seq_add(self.snd_una, len(self.sbuf))):
            return None
        if not (self.sack_ok and self.sacked):
            return start
        for left, right in self.sacked:
            if seq_lt(start, left):
                return start
            if seq_lt(start, right):
                start = right
        return None  # beyond the highest SACKed byte: not known lost yet


def _newly_covered(blocks, before, una: int) -> list:
    """The parts of this ACK's SACK blocks that the scoreboard did not hold
    before it: the only ranges whose segments can have become SACKed. `before`
    is sorted and disjoint above `una` (SND.UNA before the ACK): each block is
    swept once across the scoreboard blocks it overlaps, the first found by
    binary search, in signed offsets from SND.UNA (a walk of the whole
    scoreboard per block was a top line of a sender's profile at 5% loss,
    where the scoreboard holds dozens of blocks)."""
    out = []
    base = (una - HALF) & MASK
    n = len(before)
    for left, right in blocks:
        lo = (left - base) & MASK
        hi = (right - base) & MASK
        # the first scoreboard block that ends after `left`
        i = bisect_right(before, lo, key=lambda b: (b[1] - base) & MASK)
        cur = lo
        while i < n:
            bl, br = before[i]
            blo = (bl - base) & MASK
            if blo >= hi:
                break                               # this and the rest start at or past the block
            if blo > cur:
                out.append(((cur + base) & MASK, bl))
            bhi = (br - base) & MASK
            if bhi > cur:
                cur = bhi
                if cur >= hi:
                    break
            i += 1
        if cur < hi:
            out.append(((cur + base) & MASK, right))
    return out


def max_seq(a: int, b: int) -> int:
    return b if seq_lt(a, b) else a


def seq_min_(a: int, b: int) -> int:
    return a if seq_lt(a, b) else b
