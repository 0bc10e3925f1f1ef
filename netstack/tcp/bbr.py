"""BBR congestion control (draft-ietf-ccwg-bbr), selectable per connection.

BBR builds a model of the path -- its bottleneck bandwidth (the most the
delivery-rate samples of delivery.py showed over the last two probing cycles)
and its round-trip propagation time (the least RTT in the last 10 s) -- and
sends at the model's rate (pacing) with about two bandwidth-delay products in
flight (cwnd). A loss changes neither estimate: it is repaired, and the
window is held to packet conservation for one round, then grows back. So
random loss on a path is not read as congestion, which is what makes BBR
worth having on a lossy wire.

States (section 4.3), with their pacing and cwnd gains:
  Startup   2.77 / 2     double the rate each round until the bandwidth stops
                         growing by 25% for three rounds (the pipe is full)
  Drain     0.35 / 2     empty the queue Startup built, until inflight <= BDP
  ProbeBW   cycles DOWN (0.9) -> CRUISE (1.0) -> REFILL (1.0, one round) ->
            UP (1.25, cwnd gain 2.25), probing for more bandwidth every 2-3 s
            (or, sooner, after as many rounds as a Reno flow would take to
            grow by the BDP: at most 63)
  ProbeRTT  1.0 / 0.5    every 5 s without a new minimum RTT: hold inflight
                         at half the BDP for 200 ms and a round, to see the
                         path's empty-queue RTT again

What this implementation leaves out of the draft, on purpose: BBRv3's
loss-based bounds (inflight_hi / inflight_lo, the 2% loss threshold) and
its loss-based exit from Startup -- they read random loss as congestion, the
behaviour this option exists to avoid (Linux's mainline tcp_bbr behaves the
same way) -- and ECN. The model, its filters, the gain cycle, ACK aggregation
(extra_acked), ProbeRTT and the recovery rules are as the draft has them.

The TCB side (tcb.cc.paced is True): delivery rate samples for every ACK
(`on_rate_sample`), pacing at `pacing_rate`, and in SACK recovery the window
(cwnd - pipe), not PRR, as the sending limit.
"""

from __future__ import annotations

import random

from .congestion import initial_window

__all__ = ["Bbr"]

STARTUP, DRAIN, PROBE_BW, PROBE_RTT = "startup", "drain", "probe_bw", "probe_rtt"
DOWN, CRUISE, REFILL, UP = "down", "cruise", "refill", "up"

STARTUP_PACING_GAIN = 2.77       # 4 ln 2: the rate doubles each round
STARTUP_CWND_GAIN = 2.0
DRAIN_PACING_GAIN = 0.35
CWND_GAIN = 2.0
PROBE_UP_CWND_GAIN = 2.25
PHASE_PACING_GAIN = {DOWN: 0.9, CRUISE: 1.0, REFILL: 1.0, UP: 1.25}
PACING_MARGIN = 0.01             # pace 1% below the estimate
FULL_BW_THRESH = 1.25
FULL_BW_COUNT = 3
MIN_RTT_FILTER_LEN = 10.0
PROBE_RTT_INTERVAL = 5.0
PROBE_RTT_DURATION = 0.2
PROBE_RTT_CWND_GAIN = 0.5
EXTRA_ACKED_ROUNDS = 5           # each of the two slots of the 10-round extra_acked filter
MAX_RENO_ROUNDS = 63


class Bbr:
    name = "bbr"
    paced = True

    def __init__(self, mss: int, initial_segments: int = 10, seed: int = 0) -> None:
        self.mss = mss
        self.initial_segments = initial_segments
        self.cwnd = initial_window(mss, initial_segments)
        self.ssthresh = 1 << 30          # not BBR's: kept for the common interface (undo)
        self.pacing_rate = 0.0
        self.mode = STARTUP
        self.phase = None
        self.pacing_gain = STARTUP_PACING_GAIN
        self.cwnd_gain = STARTUP_CWND_GAIN
        # the model
        self.max_bw = 0.0
        self._bw_slots = [0.0, 0.0]
        self.cycle_count = 0
        self.min_rtt = None
        self.min_rtt_stamp = 0.0
        self.probe_rtt_min = None
        self.probe_rtt_min_stamp = 0.0
        self._probe_rtt_expired = False
        self.extra_acked = 0.0
        self._extra_slots = [0.0, 0.0]
        self._extra_idx = 0
        self._extra_rounds = 0
        self._ack_epoch_start = None
        self._ack_epoch_acked = 0
        # rounds
        self.round_count = 0
        self.round_start = False
        self._next_round_delivered = 0
        # Startup's end
        self.filled_pipe = False
        self._full_bw = 0.0
        self._full_bw_count = 0
        # ProbeBW
        self._rng = random.Random(seed)
        self._cycle_stamp = 0.0
        self._probe_wait = 2.0
        self._rounds_in_phase = 0
        self._rounds_since_probe = 0
        # ProbeRTT
        self._probe_rtt_done = None
        self._probe_rtt_round_done = False
        # loss recovery
        self.prior_cwnd = 0
        self._conservation = False
        self._entering_recovery = False
        self._in_recovery = False
        self._restore_round = None

    # ---- the calls every congestion control takes (congestion.py) ------------------------
    def start(self, mss: int) -> None:
        self.mss = mss
        self.cwnd = initial_window(mss, self.initial_segments)

    def set_mss(self, mss: int) -> None:
        self.mss = mss

    def on_ack(self, acked: int, now: float, rtt) -> None:
        """BBR takes its input from on_rate_sample, for every ACK."""

    def on_dupack_in_recovery(self) -> None:
        pass

    def on_partial_ack(self, acked: int) -> None:
        pass

    def on_loss_repaired(self, flight: int, now: float) -> None:
        """A tail loss probe repaired a loss: no change to the model."""

    def enter_recovery(self, flight: int, now: float, sack: bool) -> None:
        """Fast recovery: packet conservation for one round (section 4.6.4.4)."""
        self.prior_cwnd = self._save_cwnd()
        self._in_recovery = True
        self._conservation = True
        self._entering_recovery = True      # the next sample starts the round conservation lasts

    def exit_recovery(self, flight: int, sack: bool = False) -> None:
        self._in_recovery = False
        self._conservation = False
        if self.cwnd < self.prior_cwnd:
            self.cwnd = self.prior_cwnd

    def on_loss_timeout(self, flight: int, now: float) -> None:
        """RTO: one segment in flight, the window before it restored a round later."""
        self.prior_cwnd = self._save_cwnd()
        self.cwnd = self.mss
        self._conservation = False
        self._entering_recovery = False
        self._in_recovery = False
        self._restore_round = self.round_count + 1

    def undo(self, cwnd: int, ssthresh: int) -> None:
        self.cwnd = max(self.cwnd, cwnd)
        self._conservation = False

    def adopt(self, other) -> None:
        self.cwnd = other.cwnd

    # ---- the model, on every ACK -----------------------------------------------------------------
    def on_rate_sample(self, rs, now: float, srtt) -> None:
        if not self.pacing_rate:
            self._init_pacing_rate(srtt)
        self._update_round(rs)
        self._update_min_rtt(rs, now)
        self._update_max_bw(rs)
        self._update_ack_aggregation(rs, now)
        self._check_full_pipe(rs)
        self._check_drain(rs, now)
        if self.mode is PROBE_BW:
            self._update_probe_bw(rs, now)
        self._check_probe_rtt(rs, now)
        self._set_pacing_rate()
        self._set_cwnd(rs)

    def bdp(self, gain: float = 1.0) -> float:
        if self.min_rtt is None or not self.max_bw:
            return float(initial_window(self.mss, self.initial_segments))
        return gain * self.max_bw * self.min_rtt

    def _init_pacing_rate(self, srtt) -> None:
        rtt = srtt if srtt else 0.001
        self.pacing_rate = STARTUP_PACING_GAIN * self.cwnd / rtt

    def _update_round(self, rs) -> None:
        self.round_start = False
        if self._entering_recovery:
            self._next_round_delivered = rs.delivered
        if rs.prior_delivered >= self._next_round_delivered:
            self._next_round_delivered = rs.delivered
            self.round_count += 1
            self.round_start = True
            self._rounds_in_phase += 1
            self._rounds_since_probe += 1
            if self._conservation and not self._entering_recovery:
                self._conservation = False          # a round of recovery is over
            if self._restore_round is not None and self.round_count >= self._restore_round:
                self._restore_round = None
                if self.cwnd < self.prior_cwnd:
                    self.cwnd = self.prior_cwnd

    def _update_min_rtt(self, rs, now: float) -> None:
        self._probe_rtt_expired = self.probe_rtt_min is not None and \
            now > self.probe_rtt_min_stamp + PROBE_RTT_INTERVAL
        rtt = rs.rtt
        if rtt is None or rtt < 0:
            return
        if self.probe_rtt_min is None or rtt < self.probe_rtt_min or self._probe_rtt_expired:
            self.probe_rtt_min = rtt
            self.probe_rtt_min_stamp = now
        if self.min_rtt is None or self.probe_rtt_min < self.min_rtt or \
                now > self.min_rtt_stamp + MIN_RTT_FILTER_LEN:
            self.min_rtt = self.probe_rtt_min
            self.min_rtt_stamp = self.probe_rtt_min_stamp

    def _update_max_bw(self, rs) -> None:
        rate = rs.rate
        if rate is None or (rs.app_limited and rate < self.max_bw):
            return
        i = self.cycle_count & 1
        if rate > self._bw_slots[i]:
            self._bw_slots[i] = rate
        self.max_bw = max(self._bw_slots)

    def _advance_bw_filter(self) -> None:
        self.cycle_count += 1
        self._bw_slots[self.cycle_count & 1] = 0.0

    def _update_ack_aggregation(self, rs, now: float) -> None:
        """extra_acked (section 4.6.4.3): how far ACKs ran ahead of the estimated
        rate (receivers and links that batch): added to cwnd so aggregation does
        not starve the pipe."""
        if self.round_start:
            self._extra_rounds += 1
            if self._extra_rounds >= EXTRA_ACKED_ROUNDS:
                self._extra_rounds = 0
                self._extra_idx ^= 1
                self._extra_slots[self._extra_idx] = 0.0
        newly = rs.newly_delivered
        if self._ack_epoch_start is None:
            self._ack_epoch_start = now
        expected = self.max_bw * (now - self._ack_epoch_start)
        if self._ack_epoch_acked <= expected:
            self._ack_epoch_acked = 0
            self._ack_epoch_start = now
            expected = 0.0
        self._ack_epoch_acked += newly
        extra = self._ack_epoch_acked - expected
        if extra > self.cwnd:
            extra = self.cwnd
        if extra > self._extra_slots[self._extra_idx]:
            self._extra_slots[self._extra_idx] = extra
        self.extra_acked = max(self._extra_slots)

    def _check_full_pipe(self, rs) -> None:
        if self.filled_pipe or not self.round_start or rs.app_limited:
            return
        if self.max_bw >= self._full_bw * FULL_BW_THRESH:
            self._full_bw = self.max_bw
            self._full_bw_count = 0
            return
        self._full_bw_count += 1
        if self._full_bw_count >= FULL_BW_COUNT:
            self.filled_pipe = True

    def _check_drain(self, rs, now: float) -> None:
        if self.mode is STARTUP and self.filled_pipe:
            self.mode = DRAIN
            self.pacing_gain = DRAIN_PACING_GAIN
            self.cwnd_gain = STARTUP_CWND_GAIN
        if self.mode is DRAIN and rs.inflight <= self.bdp():
            self._start_probe_bw(DOWN, now)

    # ---- ProbeBW -----------------------------------------------------------------------------
    def _start_probe_bw(self, phase: str, now: float) -> None:
        self.mode = PROBE_BW
        if phase is DOWN:
            self._advance_bw_filter()
            self._cycle_stamp = now
            self._probe_wait = 2.0 + self._rng.random()
            self._rounds_since_probe = 0
        self.phase = phase
        self._rounds_in_phase = 0
        self.pacing_gain = PHASE_PACING_GAIN[phase]
        self.cwnd_gain = PROBE_UP_CWND_GAIN if phase is UP else CWND_GAIN

    def _time_to_probe(self, now: float) -> bool:
        reno_rounds = min(int(self.bdp() / self.mss), MAX_RENO_ROUNDS)
        return now - self._cycle_stamp > self._probe_wait or self._rounds_since_probe >= reno_rounds

    def _update_probe_bw(self, rs, now: float) -> None:
        phase = self.phase
        if phase is DOWN:
            if self._time_to_probe(now):
                self._start_probe_bw(REFILL, now)
            elif rs.inflight <= self.bdp():
                self._start_probe_bw(CRUISE, now)
        elif phase is CRUISE:
            if self._time_to_probe(now):
                self._start_probe_bw(REFILL, now)
        elif phase is REFILL:
            if self.round_start and self._rounds_in_phase >= 1:
                self._start_probe_bw(UP, now)
        elif phase is UP:
            # a round at the higher rate, and the pipe holds more than the BDP: bandwidth found (or not)
            if self._rounds_in_phase >= 1 and (rs.inflight >= self.bdp(PHASE_PACING_GAIN[UP])
                                               or self._rounds_in_phase >= 3):
                self._start_probe_bw(DOWN, now)

    # ---- ProbeRTT ------------------------------------------------------------------------------
    def _probe_rtt_cwnd(self) -> int:
        return max(int(self.bdp(PROBE_RTT_CWND_GAIN)), 4 * self.mss)

    def _check_probe_rtt(self, rs, now: float) -> None:
        if self.mode is not PROBE_RTT and self._probe_rtt_expired:
            self.prior_cwnd = self._save_cwnd()
            self.mode = PROBE_RTT
            self.pacing_gain = 1.0
            self.cwnd_gain = PROBE_RTT_CWND_GAIN
            self._probe_rtt_done = None
        if self.mode is not PROBE_RTT:
            return
        if self._probe_rtt_done is None:
            if rs.inflight <= self._probe_rtt_cwnd():
                self._probe_rtt_done = now + PROBE_RTT_DURATION
                self._probe_rtt_round_done = False
                self._next_round_delivered = rs.delivered
            return
        if self.round_start:
            self._probe_rtt_round_done = True
        if self._probe_rtt_round_done and now >= self._probe_rtt_done:
            self.probe_rtt_min_stamp = now
            if self.cwnd < self.prior_cwnd:
                self.cwnd = self.prior_cwnd
            if self.filled_pipe:
                self._start_probe_bw(DOWN, now)
                self._start_probe_bw(CRUISE, now)
            else:
                self.mode = STARTUP
                self.pacing_gain = STARTUP_PACING_GAIN
                self.cwnd_gain = STARTUP_CWND_GAIN

    # ---- the control parameters ----------------------------------------------------------------
    def _set_pacing_rate(self) -> None:
        if not self.max_bw:
            return
        rate = self.pacing_gain * self.max_bw * (1.0 - PACING_MARGIN)
        if self.filled_pipe or rate > self.pacing_rate:
            self.pacing_rate = rate

    def _set_cwnd(self, rs) -> None:
        mss = self.mss
        newly = rs.newly_delivered
        floor = 4 * mss
        if self._entering_recovery:
            self._entering_recovery = False
            self.cwnd = max(rs.inflight + max(newly, mss), floor)
        elif self._conservation:
            self.cwnd = max(self.cwnd, rs.inflight + newly)
        else:
            target = int(self.bdp(self.cwnd_gain) + self.extra_acked) + 2 * mss
            if self.filled_pipe:
                c = self.cwnd + newly
                self.cwnd = c if c < target else target
            elif self.cwnd < target or rs.delivered < initial_window(mss, self.initial_segments):
                self.cwnd += newly
        if self.cwnd < floor:
            self.cwnd = floor
        if self.mode is PROBE_RTT:
            self.cwnd = min(self.cwnd, self._probe_rtt_cwnd())

    def _save_cwnd(self) -> int:
        if not self._in_recovery and self.mode is not PROBE_RTT:
            return self.cwnd
        return max(self.prior_cwnd, self.cwnd)
