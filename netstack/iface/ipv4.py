"""IPv4's receive rules: destination check, reassembly, protocol demux."""

from __future__ import annotations

from ..wire import IP_PROTO_ICMP, IP_PROTO_TCP, IP_PROTO_UDP, Ipv4Repr
from ..wire import icmp as icmpw

__all__ = ["Ipv4Input"]


class Ipv4Input:
    def _receive_ipv4(self, src_mac: bytes, payload, now: float, csum_ok: bool) -> None:
        ip, data = Ipv4Repr.parse(payload)
        if ip.dst != self.ip:
            if ip.dst == b"\xff\xff\xff\xff" or ip.dst == self._broadcast():
                if ip.protocol != IP_PROTO_UDP:
                    self.drop("ipv4_broadcast_ignored")
                    return
            else:
                self.drop("ipv4_wrong_destination")
                return
        self.counters["rx_ipv4"] += 1
        if ip.more_frags or ip.frag_offset:
            whole = self.reassembler.add(ip, data, now, self.drop)
            if whole is None:
                if self.reassembler.last_held:
                    self.counters["ipv4_fragments_held"] += 1     # kept until the rest comes (or a counted drop)
                return
            self.counters["ipv4_reassembled"] += 1
            data = memoryview(whole)
            csum_ok = False
        proto = ip.protocol
        if proto == IP_PROTO_TCP:
            self._receive_tcp(ip.src, data, now, csum_ok)
        elif proto == IP_PROTO_UDP:
            self._receive_udp(ip, data, now, csum_ok)
        elif proto == IP_PROTO_ICMP:
            self._receive_icmp(ip, data, now)
        else:
            self.drop("ipv4_unknown_protocol")
            self._send_unreachable(ip, icmpw.UNREACH_PROTOCOL, now, data)

    def _broadcast(self) -> bytes:
        return ((self._net | (~self._mask_int & 0xFFFFFFFF)) & 0xFFFFFFFF).to_bytes(4, "big")
