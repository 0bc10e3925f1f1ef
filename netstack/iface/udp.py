"""UDP's rules, its API, and the DHCP client riding on it."""

from __future__ import annotations

from ..tcp.state import EV_DHCP_BOUND, EV_DHCP_LOST, EV_DHCP_RENEWED, EV_READABLE
from ..udp import UdpEndpoint
from ..wire import IP_PROTO_UDP, Ipv4Repr, UdpRepr
from ..wire import icmp as icmpw

__all__ = ["UdpLayer"]


class UdpLayer:
    def _receive_udp(self, ip: Ipv4Repr, data, now: float, csum_ok: bool) -> None:
        udp, payload = UdpRepr.parse(data, ip.src, ip.dst, not csum_ok)
        self.counters["rx_udp"] += 1
        if udp.dst_port == 68 and self.dhcp is not None:
            self.dhcp.receive(payload, now)
            self._dhcp_events()
            return
        ep = self.udp.get(udp.dst_port)
        if ep is None:
            self.drop("udp_no_listener")
            if ip.dst == self.ip:
                self._send_unreachable(ip, icmpw.UNREACH_PORT, now, data)
            return
        if ep.deliver(ip.src, udp.src_port, ip.dst, payload):
            self.events.append((ep, EV_READABLE))
        else:
            self.drop("udp_queue_full")

    def udp_bind(self, port: int = 0) -> UdpEndpoint:
        if port == 0:
            lo, hi = self.cfg.ephemeral_ports
            for _ in range(1000):
                port = self.rng.randint(lo, hi)
                if port not in self.udp:
                    break
        if port in self.udp:
            raise OSError(98, "bind: Address already in use")
        ep = UdpEndpoint(self, port, self.cfg.udp_queue_limit)
        self.udp[port] = ep
        return ep

    def udp_unbind(self, port: int) -> None:
        self.udp.pop(port, None)

    def udp_send(self, src_port: int, dst_ip: bytes, dst_port: int, payload, now: float) -> None:
        if len(payload) > 65507:
            raise OSError(90, "Message too long")
        seg = UdpRepr(src_port, dst_port).emit(payload, self.ip, dst_ip, checksum=True)
        self.send_ip(dst_ip, IP_PROTO_UDP, seg, now)

    # ---- DHCP ------------------------------------------------------------------------
    def _poll_dhcp(self, now: float) -> None:
        for payload in self.dhcp.poll(now):
            self.udp_send(68, b"\xff\xff\xff\xff", 67, payload, now)
        self._dhcp_events()

    def _dhcp_events(self) -> None:
        d = self.dhcp
        for ev in d.events:
            if ev is EV_DHCP_BOUND or ev is EV_DHCP_RENEWED:
                lease = d.lease
                if lease.ip != self.ip:
                    self.set_address(lease.ip, lease.netmask, lease.router)
            elif ev is EV_DHCP_LOST:
                self.set_address(b"\x00\x00\x00\x00", b"\x00\x00\x00\x00", None)
            self.events.append((d, ev))
        d.events.clear()
