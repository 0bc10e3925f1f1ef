"""ARP's receive rules (RFC 826) and its timers: the neighbour cache itself
is netstack.arp.NeighbourCache."""

from __future__ import annotations

from ..tcp.state import SYN_SENT
from ..wire import ARP_REPLY, ARP_REQUEST, BROADCAST_MAC, ArpRepr
from .tx import NO_MAC

__all__ = ["ArpInput"]

_ZERO_IP = b"\x00\x00\x00\x00"


class ArpInput:
    def _receive_arp(self, arp: ArpRepr, now: float) -> None:
        self.counters["rx_arp"] += 1
        if arp.source_ip == _ZERO_IP or arp.source_hw in (BROADCAST_MAC, NO_MAC):
            if arp.operation != ARP_REQUEST:
                self.drop("arp_bad_source")
                return
        # RFC 826 merges the sender into the cache; like Linux (arp_accept=0) we
        # create entries only from requests for our address or answers we wait
        # for, and otherwise only refresh entries we already have.
        for_us = arp.target_ip == self.ip
        known = arp.source_ip in self.neighbours.entries or arp.source_ip in self.neighbours.pending
        if arp.source_ip != _ZERO_IP and (known or (for_us and arp.operation == ARP_REQUEST)):
            for frame in self.neighbours.learn(arp.source_ip, arp.source_hw, now):
                self._emit_queued(arp.source_hw, frame)
        if arp.operation == ARP_REQUEST:
            if for_us and self.cfg.answer_arp:
                self._send_arp(ARP_REPLY, arp.source_hw, arp.source_hw, arp.source_ip)
            elif not for_us:
                self.drop("arp_not_for_us")
            # else: another shard answers; this one only learns the sender
        elif arp.operation != ARP_REPLY:
            self.drop("arp_bad_operation")

    def _poll_arp(self, now: float) -> None:
        """Retry pending resolutions; give up on the ones out of retries (their
        frames are counted drops, connections still opening to them fail)."""
        again, failed = self.neighbours.poll(now)
        for ip in again:
            self._send_arp(ARP_REQUEST, BROADCAST_MAC, NO_MAC, ip)
        for ip, frames in failed:
            self.counters["drop_arp_unresolved"] += len(frames)
            for tcb in self.tcbs.values():
                if tcb.remote_ip == ip and tcb.state is SYN_SENT:
                    tcb.fail(OSError(113, "No route to host"))
                    self._touch(tcb)
