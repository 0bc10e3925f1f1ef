"""When the interface must run: the deadline heap of TCBs, the due set, and
`frames_to_send` / `poll_at`, the two calls that follow from them.

A TCB is *due* (in `dirty`) when it has something to do now (a user call, a
segment that needs an answer) and sits in the heap at its `poll_at()`
otherwise. Heap entries are (time, n, tcb) with lazy deletion: an entry is
live while it equals the TCB's `sched_at`.
"""

from __future__ import annotations

import heapq

from ..tcp.state import CLOSED

__all__ = ["Timers"]


class Timers:
    def frames_to_send(self, now: float) -> list:
        """Run timers and collect every frame that is due. Returns bytes or TxFrame."""
        if self.dhcp is not None and self.dhcp.poll_at() <= now:
            self._poll_dhcp(now)
        if self.neighbours.pending:
            self._poll_arp(now)
        if self.reassembler.pending:
            self.reassembler.expire(now, self.drop)
        if self.path_mtu:
            self._expire_path_mtu(now)
        due = self.dirty
        heap = self._timers
        while heap and heap[0][0] <= now:
            t, _n, tcb = heapq.heappop(heap)
            if tcb.sched_at == t:     # else a stale entry, superseded by a later push
                tcb.sched_at = None
                due.add(tcb)
        if due:
            # The set object stays (TCBs hold its bound add() as their owner hook):
            # take its content; what the loop below touches is due next time.
            due = list(due)
            self.dirty.clear()
            for tcb in due:
                segments = tcb.fast_output(now)
                if segments is not None:
                    if segments:
                        template = self._template_for(tcb, now)
                        if template is None:
                            self.counters["drop_tx_no_route"] += len(segments)
                        else:
                            for seq, ack, window, ts, payload, flags in segments:
                                self._emit_tcp(template, seq, ack, flags, window, ts, None, payload, tcb.mss, now)
                    # ESTABLISHED with nothing else to send: only its timers are left
                    # (the RTO, a delayed ACK, a tail loss probe, RACK's; or keepalive)
                    if tcb.keepalive:
                        self._schedule(tcb)
                    else:
                        t = tcb._next_deadline()     # the RTO, a delayed ACK, a probe or RACK timer
                        if t is not None and (tcb.sched_at is None or t < tcb.sched_at):
                            self._push_timer(tcb, t)
                    continue
                for seg, payload in tcb.poll(now):
                    self._send_segment(tcb, seg, payload, now)
                if tcb.state is CLOSED:
                    self._collect(tcb)
                self._schedule(tcb)
        out = self.tx
        self.tx = []
        return out

    def _schedule(self, tcb) -> None:
        """Keep the TCB in the timer heap at its poll_at() (lazy deletion)."""
        if tcb.state is CLOSED:
            return
        t = tcb.poll_at()
        if t is not None and (tcb.sched_at is None or t < tcb.sched_at):
            self._push_timer(tcb, t)

    def _push_timer(self, tcb, t: float) -> None:
        tcb.sched_at = t
        self._timer_n += 1
        heapq.heappush(self._timers, (t, self._timer_n, tcb))

    def _forget_timer(self, tcb) -> None:
        """A forgotten TCB's heap entry is stale, but it holds the TCB until its
        time comes, which for a keepalive timer is hours: compact the heap once
        such entries are half of it."""
        if tcb.sched_at is None:
            return
        tcb.sched_at = None
        self._stale_timers += 1
        if self._stale_timers > 64 and self._stale_timers * 2 > len(self._timers):
            self._timers = [e for e in self._timers if e[2].sched_at == e[0]]
            heapq.heapify(self._timers)
            self._stale_timers = 0

    def poll_at(self):
        """The earliest time frames_to_send must run (0.0: now), or None."""
        if self.tx or self.dirty:
            return 0.0
        heap = self._timers
        while heap and heap[0][2].sched_at != heap[0][0]:
            heapq.heappop(heap)
        t = heap[0][0] if heap else None
        if self.neighbours.pending or self.reassembler.pending or self.dhcp is not None or self.path_mtu:
            for x in (self.neighbours.poll_at(), self.reassembler.poll_at(),
                      self.dhcp.poll_at() if self.dhcp is not None else None, self.path_mtu_poll_at()):
                if x is not None and (t is None or x < t):
                    t = x
        return t
