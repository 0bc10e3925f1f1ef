"""Congestion control: NewReno (RFC 5681, RFC 6582) and CUBIC (RFC 9438).

Both expose the same small interface, in bytes:
  on_ack(acked, now, rtt)      new data acknowledged outside recovery
  on_loss_fast(flight, now)    entering fast recovery (3 dup ACKs / SACK loss)
  on_loss_timeout(flight, now) retransmission timeout
  exit_recovery(flight)        recovery complete
and the attributes cwnd and ssthresh.
"""

from __future__ import annotations


class NewReno:
    name = "newreno"

    def __init__(self, mss: int, initial_segments: int = 10) -> None:
        self.mss = mss
        # RFC 6928 initial window: min(10*MSS, max(2*MSS, 14600))
        self.cwnd = min(initial_segments * mss, max(2 * mss, 14600))
        self.ssthresh = 1 << 30
        self._acc = 0

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

    def exit_recovery(self, flight: int) -> None:
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

    def exit_recovery(self, flight: int) -> None:
        self.cwnd = max(self.ssthresh, 2 * self.mss)


def make(name: str, mss: int, initial_segments: int):
    if name == "newreno":
        return NewReno(mss, initial_segments)
    if name == "cubic":
        return Cubic(mss, initial_segments)
    raise ValueError(f"unknown congestion control {name!r} (newreno or cubic)")
