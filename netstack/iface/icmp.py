"""ICMP's rules: echo, and errors delivered to the TCP connection or UDP
endpoint they quote (RFC 1122 3.2.2, RFC 5927 for TCP)."""

from __future__ import annotations

import logging

import struct

from ..tcp.state import EV_ERROR
from ..wire import IP_PROTO_ICMP, IP_PROTO_TCP, IP_PROTO_UDP, IcmpRepr, Ipv4Repr, MalformedPacket
from ..wire import icmp as icmpw

from ..wire import ip_to_str  # noqa: E402

_log = logging.getLogger("icmp")

__all__ = ["IcmpInput"]

_PORTS = struct.Struct("!HH")
_SEQ = struct.Struct("!I")


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
            self._icmp_error_tcp(ip, l4, sport, dport, msg, now)
        elif ip.protocol == IP_PROTO_UDP:
            ep = self.udp.get(sport)
            if ep is None:
                self.drop("icmp_error_no_endpoint")
                return
            ep.icmp_error(ip.dst, dport, msg.code)
            self.events.append((ep, EV_ERROR))

    def _icmp_error_tcp(self, ip: Ipv4Repr, l4, sport: int, dport: int, msg: IcmpRepr, now: float) -> None:
        """An ICMP error about one of our TCP segments: acted on only when the
        quoted sequence number is in flight (RFC 5927 4.1), so an off-path
        attacker who does not know it changes nothing."""
        tcb = self.tcbs.get((self.ip, sport, ip.dst, dport))
        if tcb is None:
            self.drop("icmp_error_no_connection")
            return
        if len(l4) < 8:
            raise MalformedPacket("icmp_error_truncated")
        if not tcb.icmp_quote_ok(_SEQ.unpack_from(l4, 4)[0]):
            self.drop("icmp_error_bad_seq")
            return
        if msg.code == icmpw.UNREACH_FRAG_NEEDED:
            mtu = self._learn_path_mtu(ip.dst, msg.rest_lo, now)
            if mtu is None:
                return
            for t in self.tcbs.values():      # every connection to that destination follows
                if t.remote_ip == ip.dst:
                    t.set_path_mtu(mtu)
                    self._touch(t)
        else:
            tcb.icmp_unreachable(msg.code)
            self._touch(tcb)

    def _learn_path_mtu(self, dst: bytes, next_hop_mtu: int, now: float):
        """RFC 1191: the path MTU to `dst` from a "fragmentation needed" error, never
        below cfg.pmtu_min (Linux's 552: a forged 68 would cut segments to 28 bytes)
        and never up (only expiry raises it again). None: nothing to change."""
        cfg = self.cfg
        current = self.path_mtu_to(dst, now)
        mtu = next_hop_mtu or 576             # RFC 1191 5: old routers say 0
        if mtu < cfg.pmtu_min:
            mtu = cfg.pmtu_min
            self.counters["icmp_pmtu_clamped"] += 1
        if mtu >= current:
            self.drop("icmp_pmtu_not_lower")
            return None
        self.path_mtu[dst] = (mtu, now + cfg.pmtu_expiry)
        self.counters["pmtu_learned"] += 1
        _log.info("path MTU to %s lowered to %d (ICMP fragmentation needed)", ip_to_str(dst), mtu)
        return mtu

    def path_mtu_to(self, dst: bytes, now: float) -> int:
        """The path MTU to dst: learned and not expired, else the link's."""
        e = self.path_mtu.get(dst)
        return e[0] if e is not None and e[1] > now else self.cfg.mtu

    def _expire_path_mtu(self, now: float) -> None:
        """Forget learned path MTUs past their time (RFC 1191 6.3): connections to
        those destinations try the link MTU again."""
        for dst, (_mtu, expires) in list(self.path_mtu.items()):
            if expires <= now:
                del self.path_mtu[dst]
                self.counters["pmtu_expired"] += 1
                for t in self.tcbs.values():
                    if t.remote_ip == dst:
                        t.set_path_mtu(self.cfg.mtu)
                        self._touch(t)

    def path_mtu_poll_at(self):
        return min(e[1] for e in self.path_mtu.values()) if self.path_mtu else None

    def _send_unreachable(self, ip: Ipv4Repr, code: int, now: float, l4) -> None:
        # RFC 1812 4.3.2.3: the original IP header + at least 8 bytes of its data
        hdr = Ipv4Repr(ip.src, ip.dst, ip.protocol, ip.payload_len, ip.ttl, ip.ident, ip.dont_frag,
                       ip.more_frags, ip.frag_offset, ip.tos).emit()
        body = hdr + bytes(l4[:8])
        self.send_ip(ip.src, IP_PROTO_ICMP, IcmpRepr(icmpw.DEST_UNREACHABLE, code, 0, 0, body).emit(), now)

    def ping(self, dst_ip: bytes, ident: int, seq: int, data: bytes, now: float) -> None:
        self.send_ip(dst_ip, IP_PROTO_ICMP, IcmpRepr(icmpw.ECHO_REQUEST, 0, ident, seq, data).emit(), now)
