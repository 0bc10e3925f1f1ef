"""Congestion control: NewReno (RFC 5681, RFC 6582) and CUBIC (RFC 9438); BBR in bbr.py.

The congestion-control object owns cwnd and ssthresh: the TCB reads them and
tells it what happened, in bytes, through these calls only:
  start(mss)                   the handshake fixed the MSS: the initial window (RFC 6928)
  set_mss(mss)                 the segment size changed (timestamps, PMTU)
  on_ack(acked, now, rtt)      new data acknowledged outside recovery
  enter_recovery(flight, now, sack)  fast retransmit (3 dup ACKs / SACK loss)
  on_dupack_in_recovery()      NewReno without SACK: inflate by one MSS
  on_partial_ack(acked)        NewReno without SACK: deflate (RFC 6582 3.2 step 5)
  on_loss_repaired(flight, now)  a tail loss probe repaired a loss (RFC 8985 7.4.2)
  exit_recovery(flight, sack)  recovery complete (sack: it was RFC 6675 recovery paced by PRR)
  on_loss_timeout(flight, now) retransmission timeout
  undo(cwnd, ssthresh)         a reduction was spurious (F-RTO, D-SACK): restore the window
  adopt(other)                 take over another algorithm's window (set_congestion)
Each algorithm supplies on_ack, on_loss_fast (its ssthresh at a loss),
on_loss_timeout and exit_recovery.
"""

from __future__ import annotations


DUPACK_THRESHOLD = 3           # RFC 5681 3.2


def initial_window(mss: int, segments: int = 10) -> int:
    """RFC 6928: min(10*MSS, max(2*MSS, 14600)), with `segments` for 10."""
    return min(segments * mss, max(2 * mss, 14600))


class NewReno:
    name = "newreno"
    paced = False      # BBR (bbr.py): rate samples, pacing and cwnd - pipe in recovery

    def __init__(self, mss: int, initial_segments: int = 10) -> None:
        self.mss = mss
        self.initial_segments = initial_segments
        self.cwnd = initial_window(mss, initial_segments)
        self.ssthresh = 1 << 30
        self._acc = 0

    # ---- the calls the TCB makes (common to every algorithm) ----------------------
    def start(self, mss: int) -> None:
        self.mss = mss
        self.cwnd = initial_window(mss, self.initial_segments)

    def set_mss(self, mss: int) -> None:
        self.mss = mss

    def enter_recovery(self, flight: int, now: float, sack: bool) -> None:
        self.on_loss_fast(flight, now)
        if sack:
            self.cwnd = self.ssthresh          # RFC 6675 5 (4.2): pipe, not inflation, paces recovery
        else:
            self.cwnd = self.ssthresh + DUPACK_THRESHOLD * self.mss    # RFC 5681 3.2 step 2

    def on_loss_repaired(self, flight: int, now: float) -> None:
        """A loss repaired without fast recovery (a tail loss probe's retransmission,
        RFC 8985 7.4.2): the same one reduction fast recovery would make."""
        self.on_loss_fast(flight, now)
        self.cwnd = max(self.ssthresh, 2 * self.mss)

    def on_dupack_in_recovery(self) -> None:
        self.cwnd += self.mss                  # inflate (RFC 5681 3.2 step 4)

    def on_partial_ack(self, acked: int) -> None:
        self.cwnd = max(self.mss, self.cwnd - acked + self.mss)     # RFC 6582 3.2 step 5

    def undo(self, cwnd: int, ssthresh: int) -> None:
        """A reduction proved spurious (F-RTO, D-SACK): back to the window before it."""
        self.cwnd = max(self.cwnd, cwnd)
        self.ssthresh = max(self.ssthresh, ssthresh)

    def adopt(self, other) -> None:
        self.cwnd, self.ssthresh = other.cwnd, other.ssthresh

    # ---- the algorithm ---------------------------------------------------------------

    def on_ack(self, acked: int, now: float, rtt: float | None) -> None:
        if self.cwnd < self.ssthresh:
            # Slow start by bytes acked (RFC 3465 without its L=2*SMSS cap, as
            # Linux does): receivers that batch (GRO, LRO, one ACK per poll)
            # send stretch ACKs, and the cap would slow start to a crawl.
            self.cwnd += acked
        else:
            # Congestion avoidance: about one MSS per RTT (RFC 5681 3.1, eq. 3 variant)
            self._acc += acked
            if self._acc >= self.cwnd:
                self._acc -= self.cwnd
                self.cwnd += self.mss

    def on_loss_fast(self, flight: int, now: float) -> None:
        # RFC 5681 eq. (4)
        self.ssthresh = max(flight // 2, 2 * self.mss)

    def on_loss_timeout(self, flight: int, now: float) -> None:
        self.ssthresh = max(flight // 2, 2 * self.mss)
        self.cwnd = self.mss  # loss window (RFC 5681 3.1)
        self._acc = 0

    def exit_recovery(self, flight: int, sack: bool = False) -> None:
        if sack:
            # RFC 6937: PRR brought the window down to ssthresh on the way; recovery
            # ends there. (RFC 6582's min(ssthresh, FlightSize + SMSS), taken after a
            # cumulative ACK that left next to nothing in flight, restarted slow start
            # from one or two segments after every recovery: at 5% loss that was
            # half the goodput Linux's reno gets on the same path.)
            self.cwnd = max(self.ssthresh, 2 * self.mss)
        else:
            # RFC 6582 3.2 step 3 (full acknowledgement)
            self.cwnd = min(self.ssthresh, max(flight, self.mss) + self.mss)


class Cubic(NewReno):
    """CUBIC (RFC 9438): window growth as a cubic function of time since the
    last congestion event, with the Reno-friendly region (4.3)."""

    name = "cubic"
    C = 0.4
    BETA = 0.7

    def __init__(self, mss: int, initial_segments: int = 10) -> None:
        super().__init__(mss, initial_segments)
        self.w_max = 0.0
        self.k = 0.0
        self.epoch = None
        self.w_est = 0.0

    def on_ack(self, acked: int, now: float, rtt: float | None) -> None:
        if self.cwnd < self.ssthresh:
            self.cwnd += acked
            return
        mss = self.mss
        if self.epoch is None:
            self.epoch = now
            cw = self.cwnd / mss
            if cw < self.w_max:
                self.k = ((self.w_max - cw) / self.C) ** (1 / 3)
            else:
                self.k = 0.0
                self.w_max = cw
            self.w_est = cw
        t = now - self.epoch + (rtt or 0.0)
        target = self.C * (t - self.k) ** 3 + self.w_max  # eq. (1), in segments
        cw = self.cwnd / mss
        # Reno-friendly estimate, eq. (4): alpha = 3*(1-beta)/(1+beta)
        alpha = 3 * (1 - self.BETA) / (1 + self.BETA)
        self.w_est += alpha * (acked / mss) / max(cw, 1.0)
        if target < self.w_est:
            target = self.w_est
        if target > cw:
            # grow by (target - cwnd)/cwnd per acked segment, capped at 1.5x (4.4)
            inc = min((target - cw) / cw, 0.5) * (acked / mss)
            self.cwnd = int((cw + inc) * mss)
        else:
            self.cwnd += int(mss * (acked / mss) / (100 * cw))

    def on_loss_fast(self, flight: int, now: float) -> None:
        cw = self.cwnd / self.mss
        # fast convergence (4.7)
        self.w_max = cw * (1 + self.BETA) / 2 if cw < self.w_max else cw
        self.ssthresh = max(int(self.cwnd * self.BETA), 2 * self.mss)
        self.epoch = None

    def on_loss_timeout(self, flight: int, now: float) -> None:
        self.on_loss_fast(flight, now)
        self.cwnd = self.mss

    def exit_recovery(self, flight: int, sack: bool = False) -> None:
        self.cwnd = max(self.ssthresh, 2 * self.mss)


def make(name: str, mss: int, initial_segments: int):
    if name == "newreno":
        return NewReno(mss, initial_segments)
    if name == "cubic":
        return Cubic(mss, initial_segments)
    if name == "bbr":
        from .bbr import Bbr
        return Bbr(mss, initial_segments)
    raise ValueError(f"unknown congestion control {name!r} (newreno, cubic or bbr)")
