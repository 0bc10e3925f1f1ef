"""Undoing a window reduction that was not needed: F-RTO (RFC 5682) for
spurious retransmission timeouts, and D-SACK (RFC 2883, as Linux's
tcp_try_undo_dsack) for spurious fast retransmissions.

F-RTO (the SACK variant, RFC 5682 3): after a timeout the first unacknowledged
segment goes again, as always. If the next ACK acknowledges new data (but not
all), the sender does not retransmit the rest: it sends up to two new
segments. If the ACK after those acknowledges data that was sent before the
timeout and never retransmitted, the timeout was spurious (the path was only
slow): the window comes back as it was. A duplicate ACK at either step means
the loss was real: conventional go-back-N recovery goes on.

D-SACK: every retransmission of a recovery episode is counted; each D-SACK
(a duplicate reported) takes one off. When all of them came back as
duplicates, none was needed: the window comes back as it was.

Eifel (RFC 3522, as Linux's tcp_packet_delayed): with timestamps, the ACK that
covers the episode's first retransmission echoes the timestamp of the segment
that filled the hole. One older than that retransmission means the original
arrived (it was only reordered or delayed): the window comes back as it was.
"""

from __future__ import annotations

from ..wire.seq import HALF, MASK, seq_lt

__all__ = ["Undo", "UNDONE"]

UNDONE = -2          # undo_retrans once this episode's reduction was undone


class Undo:
    __slots__ = ()

    def _save_for_undo(self) -> None:
        """Before a window reduction: what to restore if it proves spurious."""
        cc = self.cc
        self.undo_cwnd, self.undo_ssthresh = cc.cwnd, cc.ssthresh
        self.undo_retrans = 0
        self.undo_seqs = set()
        self.undo_first = None

    def _note_retransmitted(self, seq: int, now: float) -> None:
        """A retransmission of the episode (a D-SACK for it, or the timestamp its
        ACK echoes, may show it unneeded)."""
        if self.undo_retrans >= 0:
            if self.undo_first is None and self.ts_ok:
                self.undo_first = (self._ts_now(now), seq)     # the TSval it carries
            self.undo_retrans += 1
            self.undo_seqs.add(seq)

    def _eifel_undo(self, ack: int, tsecr: int) -> None:
        """A new ACK: if it covers the episode's first retransmission and echoes a
        timestamp from before it, the original got there -- no loss, undo."""
        first = self.undo_first
        if first is None or self.undo_retrans <= 0 or not tsecr or not seq_lt(first[1], ack):
            return
        self.undo_first = None          # decided, one way or the other
        if ((tsecr - first[0]) & MASK) >= HALF:     # tsecr < its TSval
            self._undo("eifel")

    def _undo(self, reason: str) -> None:
        if self.undo_retrans < 0:
            return      # nothing saved, or undone already
        self.cc.undo(self.undo_cwnd, self.undo_ssthresh)
        self.undo_retrans = UNDONE       # recovery goes on (other holes may be real), but its end
        self.stats["undo_" + reason] += 1    # does not reduce the restored window again

    def _dsack_undo(self, left: int) -> None:
        """A D-SACK arrived. Only one for a segment we retransmitted in this episode
        counts (a duplicate the network made proves nothing): when every
        retransmission came back so, none was needed."""
        if self.undo_retrans > 0 and left in self.undo_seqs and self.cfg.dsack_undo:
            self.undo_seqs.discard(left)
            self.undo_retrans -= 1
            if self.undo_retrans == 0:
                self._undo("dsack")

    # ---- F-RTO ---------------------------------------------------------------------------
    def _frto_start(self) -> None:
        """The first RTO of an episode: F-RTO watches the next two ACKs."""
        self.frto = 1 if self.sack_ok and self.cfg.frto else 0

    def _frto_on_new_ack(self, ack: int, sacks: bool) -> None:
        """An ACK of new data after the timeout (step 2b, then 3). One that still
        reports holes (SACK blocks) proves nothing spurious: conventional recovery."""
        if sacks:
            self._frto_on_dupack()
            return
        if self.frto == 1:
            if seq_lt(ack, self.recover):
                # part acknowledged: the rest stays in flight; two new segments probe
                self.frto = 2
                self.snd_nxt = self.snd_max
                self.frto_quota = 2
            else:
                self.frto = 0           # everything acknowledged: nothing to decide
        elif self.frto == 2:
            # data sent before the timeout, never retransmitted, arrived: spurious
            self.frto = 0
            self.stats["spurious_rtos"] += 1
            self._undo("frto")

    def _frto_on_dupack(self) -> None:
        """A duplicate ACK after the timeout: the loss was real (conventional recovery)."""
        if self.frto:
            self.frto = 0
            self.frto_quota = 0
            self.snd_nxt = self.snd_una   # go back N, as the RTO would have
