"""ICMP's rules: echo, and errors delivered to the TCP connection or UDP
endpoint they quote (RFC 1122 3.2.2, RFC 5927 for TCP)."""

from __future__ import annotations

import struct

from ..tcp.state import EV_ERROR
from ..wire import IP_PROTO_ICMP, IP_PROTO_TCP, IP_PROTO_UDP, IcmpRepr, Ipv4Repr, MalformedPacket
from ..wire import icmp as icmpw

__all__ = ["IcmpInput"]

_PORTS = struct.Struct("!HH")


def parse_quoted_ipv4(inner):
    """The IP header quoted in an ICMP error, whose datagram is cut after 8 bytes
    of its payload (so total length is not checked against what is there)."""
    if len(inner) < 20:
        raise MalformedPacket("icmp_error_truncated")
    hlen = (inner[0] & 0x0F) * 4
    if inner[0] >> 4 != 4 or hlen < 20 or len(inner) < hlen:
        raise MalformedPacket("icmp_error_bad_quote")
    proto = inner[9]
    src, dst = bytes(inner[12:16]), bytes(inner[16:20])
    return Ipv4Repr(src, dst, proto, len(inner) - hlen), inner[hlen:]


class IcmpInput:
    def _receive_icmp(self, ip: Ipv4Repr, data, now: float) -> None:
        msg = IcmpRepr.parse(data)
        self.counters["rx_icmp"] += 1
        if msg.type == icmpw.ECHO_REQUEST:
            reply = IcmpRepr(icmpw.ECHO_REPLY, 0, msg.rest_hi, msg.rest_lo, msg.data)
            self.send_ip(ip.src, IP_PROTO_ICMP, reply.emit(), now)
        elif msg.type == icmpw.ECHO_REPLY:
            self.ping_replies.append((ip.src, msg.rest_hi, msg.rest_lo, bytes(msg.data)))
        elif msg.type == icmpw.DEST_UNREACHABLE:
            self._icmp_error(msg, now)
        else:
            self.drop("icmp_unhandled_type")

    def _icmp_error(self, msg: IcmpRepr, now: float) -> None:
        """Deliver an ICMP error to the TCP connection / UDP endpoint it concerns."""
        inner = msg.data
        if len(inner) < 28:
            raise MalformedPacket("icmp_error_truncated")
        ip, l4 = parse_quoted_ipv4(inner)
        if ip.src != self.ip or len(l4) < 4:
            self.drop("icmp_error_not_ours")
            return
        sport, dport = _PORTS.unpack_from(l4, 0)
        self.unreachable_errors.append((ip.dst, ip.protocol, sport, dport, msg.code))
        if ip.protocol == IP_PROTO_TCP:
            tcb = self.tcbs.get((self.ip, sport, ip.dst, dport))
            if tcb is None:
                self.drop("icmp_error_no_connection")
                return
            if msg.code == icmpw.UNREACH_FRAG_NEEDED:
                tcb.icmp_mtu(msg.rest_lo or 576)
            else:
                tcb.icmp_unreachable(msg.code)
            self._touch(tcb)
        elif ip.protocol == IP_PROTO_UDP:
            ep = self.udp.get(sport)
            if ep is None:
                self.drop("icmp_error_no_endpoint")
                return
            ep.icmp_error(ip.dst, dport, msg.code)
            self.events.append((ep, EV_ERROR))

    def _send_unreachable(self, ip: Ipv4Repr, code: int, now: float, l4) -> None:
        # RFC 1812 4.3.2.3: the original IP header + at least 8 bytes of its data
        hdr = Ipv4Repr(ip.src, ip.dst, ip.protocol, ip.payload_len, ip.ttl, ip.ident, ip.dont_frag,
                       ip.more_frags, ip.frag_offset, ip.tos).emit()
        body = hdr + bytes(l4[:8])
        self.send_ip(ip.src, IP_PROTO_ICMP, IcmpRepr(icmpw.DEST_UNREACHABLE, code, 0, 0, body).emit(), now)

    def ping(self, dst_ip: bytes, ident: int, seq: int, data: bytes, now: float) -> None:
        self.send_ip(dst_ip, IP_PROTO_ICMP, IcmpRepr(icmpw.ECHO_REQUEST, 0, ident, seq, data).emit(), now)
