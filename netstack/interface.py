"""Interface: one network interface's protocol stack, sans-IO.

    iface = Interface(InterfaceConfig(mac=..., ip=..., seed=1))
    iface.receive_frame(frame, now)        # bytes in
    for frame in iface.frames_to_send(now): ...   # bytes out
    iface.poll_at()                         # when to call frames_to_send again
    iface.pop_events()                      # [(object, Event)] for the socket layer

`receive_frame` never raises for remote input: a malformed or unwanted frame
is a drop counted under its reason in `stats()`. Local misuse (binding a port
twice, sending on a closed endpoint) raises.

Checksums: `receive_frame(..., checksum_verified=True)` says the device has
already validated the L4 checksum (virtio DATA_VALID or NEEDS_CSUM frames),
so it is not recomputed. With `tx_checksum_offload`, outgoing TCP/UDP
segments carry only the pseudo-header sum and `frames_to_send` returns
`TxFrame`s that tell the driver where the checksum goes.
"""

from __future__ import annotations

import heapq
from functools import partial
import struct
from collections import defaultdict
from typing import NamedTuple

from .arp import NeighbourCache
from .buffers import Gather
from .config import InterfaceConfig
from .ipv4 import Reassembler, fragment
from .tcp import TCB, IsnGenerator, Listener, SynCookies
from .tcp.state import CLOSED, EV_ERROR, EV_READABLE, SYN_SENT
from .udp import UdpEndpoint
from .wire import (ARP_REPLY, ARP_REQUEST, BROADCAST_MAC, ETHERTYPE_ARP, ETHERTYPE_IPV4,
                   IP_PROTO_ICMP, IP_PROTO_TCP, IP_PROTO_UDP, ArpRepr, IcmpRepr,
                   Ipv4Repr, MalformedPacket, TcpRepr, UdpRepr)
from .wire import icmp as icmpw
from .wire.checksum import internet_checksum, ones_sum, pseudo_header_sum
from .wire.tcp import ACK, RST, SYN

__all__ = ["Interface", "TxFrame"]

_ETH = struct.Struct("!6s6sH")
# Ethernet + IPv4 + TCP headers, only the fields the fast path reads (x: skipped):
# dst MAC, ethertype, version/IHL, total length, fragment field, protocol, source
# and destination address, ports, seq, ack, data offset, flags, window -- and,
# in _FAST_TS, the first option word and the timestamp values behind it.
_FAST = struct.Struct("!6s6xHBxH2xHxB2x4s4sHHIIBBH4x")
_FAST_TS = struct.Struct("!6s6xHBxH2xHxB2x4s4sHHIIBBH4xIII")
_IP_HDR = struct.Struct("!BBHHHBBH4s4s")
_CSUM = struct.Struct("!H")
_FRAME_TCP = struct.Struct("!6s6sHBBHHHBBH4s4sHHIIBBHHH")
_FRAME_TCP_TS = struct.Struct("!6s6sHBBHHHBBH4s4sHHIIBBHHHIII")


def _tcp_checksum_ok(segment, src: bytes, dst: bytes) -> bool:
    s = ones_sum(segment) + pseudo_header_sum(src, dst, 6, len(segment))
    s = (s & 0xFFFF) + (s >> 16)
    return s == 0xFFFF


class TxFrame(NamedTuple):
    """A frame plus what an offloading driver needs: where the L4 checksum
    starts and where it is stored (0, 0: complete), and the TSO segment size
    (0: no segmentation). The frame is `data` followed by `payload`: headers and
    a payload kept apart so a gathering write (writev) sends the payload
    without Python ever copying it."""

    data: bytes
    csum_start: int = 0
    csum_offset: int = 0
    gso_size: int = 0
    payload: bytes = b""

    def frame(self) -> bytes:
        return self.data + bytes(self.payload) if self.payload else self.data


class _EventSink:
    """Stands in for a TCB's or listener's event list: appends (owner, event)
    straight to the Interface's event list."""

    __slots__ = ("owner", "sink")

    def __init__(self, owner, sink) -> None:
        self.owner = owner
        self.sink = sink

    def append(self, ev) -> None:
        self.sink.append((self.owner, ev))

    def __contains__(self, ev) -> bool:
        return any(o is self.owner and e == ev for o, e in self.sink)

    def clear(self) -> None:
        pass

    def __bool__(self) -> bool:
        return False


def _ignore_event() -> None:
    return None


def _parse_quoted_ipv4(inner):
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


class Interface:
    def __init__(self, config: InterfaceConfig, now: float = 0.0) -> None:
        self.cfg = config
        self.mac = config.mac
        self.ip = config.ip
        self.rng = config.rng
        self._mask_int = int.from_bytes(config.netmask, "big")
        self._net = int.from_bytes(config.ip, "big") & self._mask_int
        self.neighbours = NeighbourCache(config.arp_timeout, config.arp_retry, config.arp_retries,
                                         config.arp_queue_limit)
        self.reassembler = Reassembler(config.reassembly_timeout, config.reassembly_limit)
        self.tx: list = []
        self.counters: dict[str, int] = defaultdict(int)
        self.tcbs: dict[tuple, TCB] = {}
        self._timers: list = []           # heap of (time, n, tcb): when a TCB wants poll()
        self._timer_n = 0
        self._stale_timers = 0            # entries of forgotten TCBs still in the heap (roughly)
        self.listeners: dict[int, Listener] = {}
        self.udp: dict[int, UdpEndpoint] = {}
        self.events: list = []
        self.dirty: set = set()
        self.isn = IsnGenerator(self.rng.getrandbits(128).to_bytes(16, "big"))
        self.cookies = SynCookies(self.rng.getrandbits(128).to_bytes(16, "big"))
        self.ip_ident = self.rng.getrandbits(16)
        self.ping_replies: list = []      # echo replies received: (src, ident, seq, data)
        self.unreachable_errors: list = []
        self.dhcp = None
        if config.dhcp:
            from .dhcp import DhcpClient
            self.dhcp = DhcpClient(self.mac, self.rng)
            self.set_address(b"\x00\x00\x00\x00", b"\x00\x00\x00\x00", None)
        elif config.gratuitous_arp and config.answer_arp:
            self._send_arp(ARP_REQUEST, BROADCAST_MAC, b"\x00" * 6, self.ip)

    def set_address(self, ip: bytes, netmask: bytes, gateway: bytes | None) -> None:
        """(Re)configure our address, e.g. from a DHCP lease."""
        self.ip = self.cfg.ip = ip
        self.cfg.netmask = netmask
        self.cfg.gateway = gateway
        self._mask_int = int.from_bytes(netmask, "big")
        self._net = int.from_bytes(ip, "big") & self._mask_int
        if ip != b"\x00\x00\x00\x00" and self.cfg.gratuitous_arp:
            self._send_arp(ARP_REQUEST, BROADCAST_MAC, b"\x00" * 6, ip)

    # ---- stats ----------------------------------------------------------------------
    def drop(self, reason: str) -> None:
        self.counters["drop_" + reason] += 1

    def stats(self) -> dict:
        s = dict(self.counters)
        s["rx_tcp"] = s.get("rx_tcp", 0) + s.get("rx_tcp_fast", 0)   # the fast path counts only its own
        s["tcp_connections"] = len(self.tcbs)
        s["arp_entries"] = len(self.neighbours.entries)
        return s

    # ---- input ------------------------------------------------------------------------
    def receive_frame(self, frame, now: float, checksum_verified: bool = False) -> None:
        self._receive_parsed(self._fast_tcp(frame, checksum_verified), frame, now, checksum_verified)

    def _receive_parsed(self, m, frame, now: float, checksum_verified: bool) -> None:
        """receive_frame once _fast_tcp has looked at the frame (m: its answer;
        _fast_tcp never raises, it only declines)."""
        c = self.counters
        c["rx_frames"] += 1
        try:
            # Fast path: see _fast_tcp; anything else, or anything the TCB's header
            # prediction declines, takes the full path (_receive).
            if m is not None:
                if m[0] is None:        # no connection: (None, source address, TCP segment, ...)
                    c["rx_ipv4"] += 1
                    self._receive_tcp(m[1], m[2], now, checksum_verified)
                    return
                tcb, seq, ack, flags, window, ts, payload = m
                if tcb.on_segment_fast(seq, ack, flags, window, ts, payload, now):
                    c["rx_tcp_fast"] += 1
                    self._after_fast(tcb)
                    return
                # The TCB's full rules (handshake, FIN, ...), without parsing the frame
                # again: _fast_tcp checked it and read every field they use.
                c["rx_ipv4"] += 1
                c["rx_tcp"] += 1
                tcb.on_segment(TcpRepr(tcb.remote_port, tcb.local_port, seq, ack, flags, window, 0, None, None,
                                       False, (), ts), payload, now)
                self._touch(tcb)
                return
            self._receive(frame, now, checksum_verified)
        except MalformedPacket as e:
            self.drop(e.reason)
        except Exception as e:  # noqa: BLE001 - a bug, but never let remote input crash us
            self.drop("internal_error")
            self.last_internal_error = e

    def receive_batch(self, frames, now: float) -> None:
        """Receive [(frame, checksum_verified)]. Runs of in-order data segments of one
        connection whose headers agree but for the sequence number (same ACK, window,
        flags and timestamp) are merged before TCP sees them -- software GRO, as the
        kernel does -- so TCP state, the ACK decision and the application's wake-up
        happen once per run instead of once per segment."""
        head = None     # the first data segment of a run (a _fast_tcp answer), its frame
        run = None      # once a second segment joins: [tcb, seq, ack, flags, window, ts, payloads, frames]
        hf = hok = None
        nxt = 0         # the sequence number that continues the run
        for f, ok in frames:
            m = self._fast_tcp(f, ok)
            if head is not None:
                if m is not None and m[0] is head[0] and m[1] == nxt and m[2] == head[2] and m[3] == head[3] \
                        and m[4] == head[4] and m[5] == head[5] and m[6]:
                    if run is None:
                        run = [head[0], head[1], head[2], head[3], head[4], head[5], [head[6]], [(hf, hok)]]
                    run[6].append(m[6])
                    run[7].append((f, ok))
                    nxt = (nxt + len(m[6])) & 0xFFFFFFFF
                    continue
                if run is None:
                    self._receive_parsed(head, hf, now, hok)     # a run of one: the common case
                else:
                    self._flush_run(run, now)
                    run = None
                head = None
            if m is not None and m[6] and (m[3] == 0x10 or m[3] == 0x18):
                head, hf, hok = m, f, ok
                nxt = (m[1] + len(m[6])) & 0xFFFFFFFF
            else:
                self._receive_parsed(m, f, now, ok)
        if head is not None:
            if run is None:
                self._receive_parsed(head, hf, now, hok)
            else:
                self._flush_run(run, now)

    def _flush_run(self, run, now: float) -> None:
        tcb, seq, ack, flags, window, ts, payloads, frames = run
        n = len(frames)
        payload = payloads[0] if n == 1 else memoryview(b"".join(payloads))
        if tcb.on_segment_fast(seq, ack, flags, window, ts, payload, now):
            c = self.counters
            c["rx_frames"] += n
            c["rx_tcp_fast"] += n
            if n > 1:
                c["rx_gro_merged"] += n
            self._after_fast(tcb)
        else:
            for f, _ok in frames:      # the full path; _fast_tcp verified the checksums
                self._receive_parsed(None, f, now, True)

    def _after_fast(self, tcb) -> None:
        """After the header prediction took a segment: due now, or at the delayed ACK."""
        if tcb.ack_now or tcb.sbuf.size > ((tcb.snd_nxt - tcb.snd_una) & 0xFFFFFFFF):
            self.dirty.add(tcb)     # something to send now
        elif tcb.delack_at is not None and (tcb.sched_at is None or tcb.delack_at < tcb.sched_at):
            self._push_timer(tcb, tcb.delack_at)

    def _fast_tcp(self, frame, csum_ok: bool):
        """(tcb, seq, ack, flags, window, ts, payload) for an unfragmented IPv4/TCP
        frame without IP options, for us, of an existing connection, with valid
        checksums and no TCP option but the timestamp -- parsed with one struct
        call that skips the fields it does not need; (None, source address, TCP
        segment, 0, 0, None, b"") for such a frame of no connection (a SYN, a
        stray segment: TCP checks it, without parsing Ethernet and IPv4 again);
        else None."""
        n = len(frame)
        if n >= 66:     # room for the timestamp option: read its bytes too (payload if hlen is 20)
            (dst, et, vihl, total, frag, proto, sip, dip, sport, dport, seq, ack, off, flags, window,
             opt, tsval, tsecr) = _FAST_TS.unpack_from(frame, 0)
        elif n >= 54:
            (dst, et, vihl, total, frag, proto, sip, dip, sport, dport, seq, ack, off, flags,
             window) = _FAST.unpack_from(frame, 0)
            opt = 0
        else:
            return None
        hlen = (off >> 4) << 2
        if et != 0x0800 or vihl != 0x45 or proto != 6 or dst != self.mac or dip != self.ip or frag & 0x3FFF \
                or total + 14 > n or not 40 <= 20 + hlen <= total:
            return None
        tcb = self.tcbs.get((dip, dport, sip, sport))
        if tcb is None:
            # No connection (a SYN, or a segment to answer with RST): the IP
            # header is checked here, TCP's own rules take the segment from there
            # without a second parse of the layers below.
            if int.from_bytes(frame[14:34], "big") % 0xFFFF:
                return None
            return None, sip, memoryview(frame)[34:14 + total], 0, 0, None, b""
        if hlen == 20:
            ts = None
        elif hlen == 32 and opt == 0x0101080A:      # NOP NOP TS(10)
            ts = (tsval, tsecr)
        else:
            return None
        mv = memoryview(frame)
        # a correct IP header sums to 0xFFFF, i.e. 0 modulo 0xFFFF (2**16 == 1)
        if int.from_bytes(mv[14:34], "big") % 0xFFFF or not (csum_ok or _tcp_checksum_ok(mv[34:14 + total], sip, dip)):
            return None
        return tcb, seq, ack, flags, window, ts, mv[34 + hlen:14 + total]

    def _receive(self, frame, now: float, csum_ok: bool) -> None:
        if len(frame) < 14:
            raise MalformedPacket("ethernet_truncated")
        dst, src, ethertype = _ETH.unpack_from(frame, 0)
        if dst != self.mac and dst != BROADCAST_MAC:
            self.drop("ethernet_not_for_us")
            return
        payload = memoryview(frame)[14:]
        if ethertype == ETHERTYPE_IPV4:
            self._receive_ipv4(src, payload, now, csum_ok)
        elif ethertype == ETHERTYPE_ARP:
            self._receive_arp(ArpRepr.parse(payload), now)
        else:
            self.drop("ethertype_unsupported")

    def _receive_arp(self, arp: ArpRepr, now: float) -> None:
        self.counters["rx_arp"] += 1
        if arp.source_ip == b"\x00\x00\x00\x00" or arp.source_hw in (BROADCAST_MAC, b"\x00" * 6):
            if arp.operation != ARP_REQUEST:
                self.drop("arp_bad_source")
                return
        # RFC 826: update an existing entry; add one if the request is for us.
        # RFC 826 merges the sender into the cache; like Linux (arp_accept=0) we
        # create entries only from requests for our address or answers we wait
        # for, and otherwise only refresh entries we already have.
        for_us = arp.target_ip == self.ip
        known = arp.source_ip in self.neighbours.entries or arp.source_ip in self.neighbours.pending
        if arp.source_ip != b"\x00\x00\x00\x00" and (known or (for_us and arp.operation == ARP_REQUEST)):
            for pkt in self.neighbours.learn(arp.source_ip, arp.source_hw, now):
                self._emit_frame(arp.source_hw, pkt)
        if arp.operation == ARP_REQUEST:
            if for_us and self.cfg.answer_arp:
                self._send_arp(ARP_REPLY, arp.source_hw, arp.source_hw, arp.source_ip)
            elif for_us:
                pass  # another shard answers; this one only learns the sender
            else:
                self.drop("arp_not_for_us")
        elif arp.operation != ARP_REPLY:
            self.drop("arp_bad_operation")

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
        ip, l4 = _parse_quoted_ipv4(inner)
        if ip.src != self.ip or len(l4) < 4:
            self.drop("icmp_error_not_ours")
            return
        sport, dport = struct.unpack_from("!HH", l4, 0)
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

    def _receive_udp(self, ip: Ipv4Repr, data, now: float, csum_ok: bool) -> None:
        udp, payload = UdpRepr.parse(data, ip.src, ip.dst, not csum_ok)
        self.counters["rx_udp"] += 1
        if udp.dst_port == 68 and self.dhcp is not None:
            self._dhcp_receive(payload, now)
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

    def _send_unreachable(self, ip: Ipv4Repr, code: int, now: float, l4) -> None:
        # RFC 1812 4.3.2.3: the original IP header + at least 8 bytes of its data
        hdr = Ipv4Repr(ip.src, ip.dst, ip.protocol, ip.payload_len, ip.ttl, ip.ident, ip.dont_frag,
                       ip.more_frags, ip.frag_offset, ip.tos).emit()
        body = hdr + bytes(l4[:8])
        self.send_ip(ip.src, IP_PROTO_ICMP, IcmpRepr(icmpw.DEST_UNREACHABLE, code, 0, 0, body).emit(), now)

    def _receive_tcp(self, src: bytes, data, now: float, csum_ok: bool) -> None:
        seg, payload = TcpRepr.parse(data, src, self.ip, not csum_ok)
        self.counters["rx_tcp"] += 1
        key = (self.ip, seg.dst_port, src, seg.src_port)
        tcb = self.tcbs.get(key)
        if tcb is not None:
            tcb.on_segment(seg, payload, now)
            self._touch(tcb)
            return
        lst = self.listeners.get(seg.dst_port)
        flags = seg.flags
        if lst is not None and flags & SYN and not flags & (ACK | RST):
            if lst.syn_queue_full() and not lst.accept_queue_full() and self.cfg.tcp.syn_cookies \
                    and seg.src_port:
                # SYN flood (or just many clients): answer without keeping state
                cookie, _mss = self.cookies.make(key, seg.seq, seg.mss, now)
                synack = TcpRepr(seg.dst_port, seg.src_port, cookie, (seg.seq + 1) & 0xFFFFFFFF, SYN | ACK,
                                 min(self.cfg.tcp.recv_buffer, 65535), 0, self._route_mss(src))
                self._send_tcp(src, synack, b"", now)
                lst.stats["syn_cookies_sent"] += 1
                self.counters["tcp_syn_cookies_sent"] += 1
                return
            if not lst.can_take_syn():
                self.drop("tcp_listen_queue_full")
                return
            if seg.src_port == 0:
                self.drop("tcp_bad_port")
                return
            tcb = TCB(self.cfg.tcp, self.ip, seg.dst_port, src, seg.src_port,
                      self.isn.isn(key, now), now, self._route_mss(src), self.cfg.tso_max)
            lst.add_half_open(tcb)
            self._adopt(tcb)
            tcb.open_passive(seg, now)
            self.tcbs[key] = tcb
            self._touch(tcb)
            return
        if lst is not None and flags & ACK and not flags & (SYN | RST) and self.cfg.tcp.syn_cookies:
            mss = self.cookies.check(key, seg.ack, (seg.seq - 1) & 0xFFFFFFFF, now)
            if mss is not None and not lst.accept_queue_full():
                tcb = TCB(self.cfg.tcp, self.ip, seg.dst_port, src, seg.src_port,
                          (seg.ack - 1) & 0xFFFFFFFF, now, self._route_mss(src), self.cfg.tso_max)
                self._adopt(tcb)
                tcb.open_from_cookie(seg, mss, now)
                self.tcbs[key] = tcb
                lst.stats["syn_cookies_accepted"] += 1
                lst.established(tcb)
                if len(payload) or flags & 0x01:
                    tcb.on_segment(seg, payload, now)
                self._touch(tcb)
                return
            if mss is not None:
                # a good cookie but no room to accept: drop the ACK, as Linux does;
                # the client's next transmission tries again
                lst.stats["accept_queue_overflow"] += 1
                self.drop("tcp_listen_queue_full")
                return
            lst.stats["syn_cookies_rejected"] += 1
        # No connection: answer with RST (RFC 9293 3.10.7.1), never to a RST.
        self.drop("tcp_no_connection")
        if flags & RST:
            return
        if flags & ACK:
            rst = TcpRepr(seg.dst_port, seg.src_port, seg.ack, 0, RST, 0)
        else:
            seglen = len(payload) + (1 if flags & SYN else 0) + (1 if flags & 0x01 else 0)
            rst = TcpRepr(seg.dst_port, seg.src_port, 0, (seg.seq + seglen) & 0xFFFFFFFF, RST | ACK, 0)
        self._send_tcp(src, rst, b"", now)

    # ---- TCP API --------------------------------------------------------------------------
    def tcp_listen(self, port: int, backlog: int = 128, syn_backlog: int | None = None) -> Listener:
        if port in self.listeners:
            raise OSError(98, "bind: Address already in use")
        lst = Listener(port, backlog, syn_backlog or self.cfg.tcp.syn_backlog)
        lst.events = _EventSink(lst, self.events)
        self.listeners[port] = lst
        return lst

    def tcp_unlisten(self, lst: Listener) -> None:
        if self.listeners.get(lst.port) is lst:
            del self.listeners[lst.port]
        lst.closed = True
        for tcb in list(lst.half_open):
            tcb.abort()
            self._touch(tcb)
        while lst.accept_queue:
            tcb = lst.accept_queue.popleft()
            tcb.abort()
            self._touch(tcb)

    def port_in_use(self, port: int) -> bool:
        return port in self.listeners or any(k[1] == port for k in self.tcbs)

    def tcp_connect(self, remote_ip: bytes, remote_port: int, now: float, local_port: int | None = None,
                    congestion: str | None = None) -> TCB:
        if local_port is None:
            pf = self.cfg.port_filter
            local_port = self.ephemeral_port(
                remote_ip, remote_port, None if pf is None else (lambda p: pf(p, remote_ip, remote_port)))
        key = (self.ip, local_port, remote_ip, remote_port)
        if key in self.tcbs:
            raise OSError(98, "connect: Address already in use")
        tcb = TCB(self.cfg.tcp, self.ip, local_port, remote_ip, remote_port, self.isn.isn(key, now), now,
                  self._route_mss(remote_ip), self.cfg.tso_max)
        if congestion is not None:
            tcb.set_congestion(congestion)
        self._adopt(tcb)
        tcb.open_active(now)
        self.tcbs[key] = tcb
        self._touch(tcb)
        return tcb

    def ephemeral_port(self, remote_ip: bytes, remote_port: int, accept=None) -> int:
        lo, hi = self.cfg.ephemeral_ports
        for _ in range(hi - lo + 1):
            p = self.rng.randint(lo, hi)
            if (self.ip, p, remote_ip, remote_port) not in self.tcbs and p not in self.listeners \
                    and (accept is None or accept(p)):
                return p
        raise OSError(99, "connect: Cannot assign requested address")

    def _route_mss(self, dst: bytes) -> int:
        return self.cfg.mtu - 40

    def _touch(self, tcb: TCB) -> None:
        self.dirty.add(tcb)

    # ---- UDP API ----------------------------------------------------------------------------
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

    def ping(self, dst_ip: bytes, ident: int, seq: int, data: bytes, now: float) -> None:
        self.send_ip(dst_ip, IP_PROTO_ICMP, IcmpRepr(icmpw.ECHO_REQUEST, 0, ident, seq, data).emit(), now)

    # ---- output ------------------------------------------------------------------------------
    def _next_hop(self, dst: bytes) -> bytes:
        if (int.from_bytes(dst, "big") & self._mask_int) == self._net or dst == b"\xff\xff\xff\xff":
            return dst
        if self.cfg.gateway is None:
            raise OSError(101, "Network is unreachable")
        return self.cfg.gateway

    def send_ip(self, dst: bytes, protocol: int, l4: bytes, now: float, dont_frag: bool = False,
                offload: tuple = (0, 0, 0), payload=b"") -> None:
        """Send one IP datagram (fragmenting above the MTU). `payload`, if given,
        follows `l4` on the wire but travels separately (offloaded segments)."""
        self.ip_ident = (self.ip_ident + 1) & 0xFFFF
        mtu = self.cfg.mtu
        size = len(l4) + len(payload)
        if size + 20 <= mtu or offload[2]:
            pkt = bytearray(20)
            _IP_HDR.pack_into(pkt, 0, 0x45, 0, 20 + size, self.ip_ident, 0x4000 if dont_frag else 0, 64,
                              protocol, 0, self.ip, dst)
            _CSUM.pack_into(pkt, 10, internet_checksum(pkt))
            pkt += l4
            self._to_link(dst, (pkt, offload, payload), now)
            return
        if payload:
            l4 = bytes(l4) + bytes(payload)
        if dont_frag:
            # never raise out of frames_to_send: a bug upstream (a segment
            # sized past the MTU) must cost one counted drop, not the stack
            self.drop("tx_too_big_for_mtu")
            return
        for off, more, chunk in fragment(l4, mtu):
            hdr = Ipv4Repr(self.ip, dst, protocol, len(chunk), 64, self.ip_ident, False, more, off).emit()
            self._to_link(dst, (hdr + chunk, (0, 0, 0), b""), now)
        self.counters["tx_fragmented"] += 1

    def _to_link(self, dst: bytes, packet, now: float) -> None:
        try:
            hop = self._next_hop(dst)
        except OSError:
            self.drop("tx_no_route")
            return
        if hop == b"\xff\xff\xff\xff" or hop == self._broadcast():
            self._emit_frame(BROADCAST_MAC, packet)
            return
        mac = self.neighbours.lookup(hop, now)
        if mac is not None:
            self._emit_frame(mac, packet)
            if self.neighbours.needs_refresh(hop, now):
                self._send_arp(ARP_REQUEST, mac, b"\x00" * 6, hop)
            return
        queued, request = self.neighbours.enqueue(hop, packet, now)
        if not queued:
            self.drop("arp_queue_full")
        if request:
            self._send_arp(ARP_REQUEST, BROADCAST_MAC, b"\x00" * 6, hop)

    def _emit_frame(self, dst_mac: bytes, packet) -> None:
        data, (csum_start, csum_offset, gso), payload = packet
        frame = _ETH.pack(dst_mac, self.mac, ETHERTYPE_IPV4) + bytes(data)
        if csum_start or gso or payload:
            self.tx.append(TxFrame(frame, csum_start, csum_offset, gso, payload))
        else:
            self.tx.append(frame)
        self.counters["tx_frames"] += 1

    def _send_arp(self, op: int, dst_mac: bytes, target_hw: bytes, target_ip: bytes) -> None:
        arp = ArpRepr(op, self.mac, self.ip, target_hw, target_ip).emit()
        self.tx.append(_ETH.pack(dst_mac, self.mac, ETHERTYPE_ARP) + arp)
        self.counters["tx_arp"] += 1

    def _send_tcp(self, dst: bytes, seg: TcpRepr, payload, now: float, mss: int = 0) -> None:
        offload = self.cfg.tx_checksum_offload
        n = len(payload)
        if payload.__class__ is Gather and not (offload and n > 256):
            payload = bytes(payload)      # only the offloaded path passes the pieces through
        if n <= self.cfg.mtu - 60 and (not offload or n <= 256) and self._send_tcp_fast(dst, seg, payload, n, now):
            return
        if offload and n > 256:
            # headers built here, payload handed through untouched (see TxFrame)
            hdr = seg.emit_header(n, self.ip, dst)
            room = self.cfg.mtu - 20 - len(hdr)
            gso = min(mss or room, room) if n > room and self.cfg.tso_max else 0
            self.send_ip(dst, IP_PROTO_TCP, hdr, now, dont_frag=True, offload=(34, 16, gso), payload=payload)
            return
        data = seg.emit(payload, self.ip, dst, checksum=not offload)
        gso = 0
        n = len(payload)
        room = self.cfg.mtu - 20 - (len(data) - n)   # payload that fits one wire segment with these options
        if n > room and self.cfg.tso_max:
            # the device cuts the payload into segments that each carry this header
            gso = min(mss or room, room)
        meta = (34, 16, gso) if offload else (0, 0, gso)
        if gso and not offload:
            raise RuntimeError("TSO needs tx_checksum_offload")
        self.send_ip(dst, IP_PROTO_TCP, data, now, dont_frag=True, offload=meta)

    def _send_tcp_fast(self, dst: bytes, seg: TcpRepr, payload, n: int, now: float) -> bool:
        """A segment that fits one wire frame, to a known neighbour: Ethernet,
        IPv4 and TCP headers packed by one struct call into the frame's buffer
        (the options, when there are others than the timestamp, written behind).
        False when the general path must take it."""
        try:
            hop = self._next_hop(dst)
        except OSError:
            return False
        mac = self.neighbours.lookup(hop, now)
        if mac is None:
            return False
        ts = seg.timestamp
        if seg.mss is not None or seg.wscale is not None or seg.sack_permitted or seg.sack_blocks:
            opts = seg.options_bytes()      # SYN, SYN-ACK, SACK blocks
            hl = 20 + len(opts)
            if 20 + hl + n > self.cfg.mtu:
                return False
            ts = None
        else:
            opts = None
            hl = 20 if ts is None else 32
        end = 34 + hl
        buf = bytearray(end + n)
        self.ip_ident = ident = (self.ip_ident + 1) & 0xFFFF
        if opts is not None:
            _FRAME_TCP.pack_into(buf, 0, mac, self.mac, 0x0800, 0x45, 0, 20 + hl + n, ident, 0x4000, 64, 6, 0,
                                 self.ip, dst, seg.src_port, seg.dst_port, seg.seq, seg.ack, hl << 2, seg.flags,
                                 seg.window, 0, seg.urgent)
            buf[54:end] = opts
        elif ts is None:
            _FRAME_TCP.pack_into(buf, 0, mac, self.mac, 0x0800, 0x45, 0, 20 + hl + n, ident, 0x4000, 64, 6, 0,
                                 self.ip, dst, seg.src_port, seg.dst_port, seg.seq, seg.ack, 0x50, seg.flags,
                                 seg.window, 0, seg.urgent)
        else:
            _FRAME_TCP_TS.pack_into(buf, 0, mac, self.mac, 0x0800, 0x45, 0, 20 + hl + n, ident, 0x4000, 64, 6, 0,
                                    self.ip, dst, seg.src_port, seg.dst_port, seg.seq, seg.ack, 0x80, seg.flags,
                                    seg.window, 0, seg.urgent, 0x0101080A, ts[0], ts[1])
        if n:
            buf[end:] = payload
        mv = memoryview(buf)
        _CSUM.pack_into(buf, 24, internet_checksum(mv[14:34]))
        ph = pseudo_header_sum(self.ip, dst, 6, hl + n)
        if self.cfg.tx_checksum_offload:
            _CSUM.pack_into(buf, 50, ph)
            self.tx.append(TxFrame(bytes(buf), 34, 16, 0))
        else:
            _CSUM.pack_into(buf, 50, internet_checksum(mv[34:], ph))
            self.tx.append(bytes(buf))
        self.counters["tx_frames"] += 1
        if self.neighbours.needs_refresh(hop, now):
            self._send_arp(ARP_REQUEST, mac, b"\x00" * 6, hop)
        return True

    def _dhcp_receive(self, payload, now: float) -> None:
        d = self.dhcp
        d.receive(payload, now)
        self._dhcp_events()

    def _dhcp_events(self) -> None:
        d = self.dhcp
        for ev in d.events:
            if ev in ("bound", "renewed"):
                lease = d.lease
                if lease.ip != self.ip:
                    self.set_address(lease.ip, lease.netmask, lease.router)
            elif ev == "lost":
                self.set_address(b"\x00\x00\x00\x00", b"\x00\x00\x00\x00", None)
            self.events.append((d, ev))
        d.events.clear()

    def frames_to_send(self, now: float) -> list:
        """Run timers and collect every frame that is due. Returns bytes or TxFrame."""
        if self.dhcp is not None and self.dhcp.poll_at() <= now:
            for payload in self.dhcp.poll(now):
                self.udp_send(68, b"\xff\xff\xff\xff", 67, payload, now)
            self._dhcp_events()
        if self.neighbours.pending:
            again, failed = self.neighbours.poll(now)
            for ip in again:
                self._send_arp(ARP_REQUEST, BROADCAST_MAC, b"\x00" * 6, ip)
            for ip, packets in failed:
                self.counters["drop_arp_unresolved"] += len(packets)
                for tcb in self.tcbs.values():
                    if tcb.remote_ip == ip and tcb.state is SYN_SENT:
                        tcb._finish(OSError(113, "No route to host"))
                        self._touch(tcb)
        if self.reassembler.pending:
            self.reassembler.expire(now, self.drop)
        due = self.dirty
        heap = self._timers
        while heap and heap[0][0] <= now:
            t, _n, tcb = heapq.heappop(heap)
            if tcb.sched_at == t:     # else a stale entry, superseded by a later push
                tcb.sched_at = None
                due.add(tcb)
        if not due:
            out = self.tx
            self.tx = []
            return out
        # The set object stays (TCBs hold its bound add() as their owner hook):
        # take its content; what the loop below touches is due next time.
        due = list(due)
        self.dirty.clear()
        for tcb in due:
            a = tcb.fast_output(now)
            if a is not None:
                while a:
                    self._send_fast(tcb, a, now)
                    # more data waiting (TSO frames, one per call): keep going
                    a = tcb.fast_output(now) if tcb.sbuf.size > ((tcb.snd_nxt - tcb.snd_una) & 0xFFFFFFFF) \
                        else None
                # ESTABLISHED with nothing else to send: only the RTO, a pending
                # delayed ACK (or keepalive) is left
                t = tcb.rto_at
                d = tcb.delack_at
                if d is not None and (t is None or d < t):
                    t = d
                if tcb.keepalive:
                    self._schedule(tcb)
                elif t is not None and (tcb.sched_at is None or t < tcb.sched_at):
                    self._push_timer(tcb, t)
                continue
            for seg, payload in tcb.poll(now):
                self._send_tcp(tcb.remote_ip, seg, payload, now, tcb.mss)
            if tcb.state is CLOSED:
                self._collect(tcb)
            self._schedule(tcb)
        out = self.tx
        self.tx = []
        return out

    def _send_fast(self, tcb: TCB, a: tuple, now: float) -> None:
        """A pure ACK or one small data segment (TCB.fast_output's answer) built
        from per-connection constants: both checksums are a constant part plus the
        fields that change (sums of 32-bit fields taken whole: 2**16 == 1 modulo
        0xFFFF), so the headers are one struct call. Payloads above 256 bytes on an
        offloading device leave the TCP checksum to it (NEEDS_CSUM) and travel
        uncopied; otherwise the frame carries complete checksums. The neighbour's
        entry is cached on the TCB while it is current and not near its refresh."""
        seq, ack, window, ts, payload, flags = a
        c = tcb.tx_cache
        if c is None or self.neighbours.entries.get(c[1]) is not c[0] \
                or c[0][1] - now < self.neighbours.retry * 2 or c[2] != self.ip:
            c = self._fast_cache(tcb, now)
            if c is None:       # no route or unresolved: the general path queues or drops it
                self._send_tcp(tcb.remote_ip, TcpRepr(tcb.local_port, tcb.remote_port, seq, ack, flags, window,
                                                      0, None, None, False, (), ts), payload, now, tcb.mss)
                return
        self.ip_ident = ident = (self.ip_ident + 1) & 0xFFFF
        n = len(payload)
        hl = 20 if ts is None else 32
        ipsum = ~((c[4] + 20 + hl + n + ident) % 0xFFFF or 0xFFFF) & 0xFFFF
        partial = n > 256 and self.cfg.tx_checksum_offload
        room = self.cfg.mtu - 20 - hl
        gso = (tcb.mss if tcb.mss < room else room) if n > room else 0     # TSO: the device cuts it
        if gso and not partial:
            raise RuntimeError("TSO needs tx_checksum_offload")
        if partial:
            tsum = (c[7] + hl + n) % 0xFFFF or 0xFFFF      # the pseudo-header sum, as NEEDS_CSUM wants
        else:
            s = seq + ack + window + flags - ACK + n
            if n:
                s += int.from_bytes(payload, "big") << 8 if n & 1 else int.from_bytes(payload, "big")
            if ts is None:
                tsum = ~((c[5] + s) % 0xFFFF or 0xFFFF) & 0xFFFF
            else:
                tsum = ~((c[6] + s + ts[0] + ts[1]) % 0xFFFF or 0xFFFF) & 0xFFFF
        if ts is None:
            hdr = _FRAME_TCP.pack(c[0][0], self.mac, 0x0800, 0x45, 0, 40 + n, ident, 0x4000, 64, 6, ipsum,
                                  c[2], c[3], tcb.local_port, tcb.remote_port, seq, ack, 0x50, flags, window, tsum, 0)
        else:
            hdr = _FRAME_TCP_TS.pack(c[0][0], self.mac, 0x0800, 0x45, 0, 52 + n, ident, 0x4000, 64, 6, ipsum,
                                     c[2], c[3], tcb.local_port, tcb.remote_port, seq, ack, 0x80, flags, window,
                                     tsum, 0, 0x0101080A, ts[0], ts[1])
        if partial:
            self.tx.append(TxFrame(hdr, 34, 16, gso, payload))
        else:
            self.tx.append(hdr + payload if n else hdr)
        self.counters["tx_frames"] += 1

    def _fast_cache(self, tcb: TCB, now: float):
        """(neighbour entry, next hop, our ip, peer ip, IP header sum without the
        ident, TCP sum without seq/ack/window for 20 and for 32-byte headers).
        Sums of 32-bit fields are taken whole: 2**16 == 1 (mod 0xFFFF)."""
        try:
            hop = self._next_hop(tcb.remote_ip)
        except OSError:
            return None
        if self.neighbours.lookup(hop, now) is None or self.neighbours.entries[hop][1] - now < self.neighbours.retry * 2:
            return None
        src, dst = self.ip, tcb.remote_ip
        addr = int.from_bytes(src, "big") + int.from_bytes(dst, "big")
        ip_base = 0x4500 + 0x4000 + 0x4006 + addr       # + total length + ident
        ports = tcb.local_port + tcb.remote_port
        tcp20 = addr + 6 + 20 + ports + 0x5010
        tcp32 = addr + 6 + 32 + ports + 0x8010 + 0x0101 + 0x080A
        pseudo = addr + 6                               # + TCP length
        c = tcb.tx_cache = (self.neighbours.entries[hop], hop, src, dst, ip_base, tcp20, tcp32, pseudo)
        return c

    def _schedule(self, tcb: TCB) -> None:
        """Keep the TCB in the timer heap at its poll_at() (lazy deletion)."""
        if tcb.state is CLOSED:
            return
        t = tcb.poll_at()
        if t is not None and (tcb.sched_at is None or t < tcb.sched_at):
            self._push_timer(tcb, t)

    def _push_timer(self, tcb: TCB, t: float) -> None:
        tcb.sched_at = t
        self._timer_n += 1
        heapq.heappush(self._timers, (t, self._timer_n, tcb))

    def _adopt(self, tcb: TCB) -> None:
        """Wire a new TCB to this interface: its events and user calls come here."""
        tcb.owner = self.dirty.add      # a C call: user calls on the TCB mark it due
        tcb.events = _EventSink(tcb, self.events)
        tcb.notify_readable = partial(self.events.append, (tcb, EV_READABLE))

    def _collect(self, tcb: TCB) -> None:
        if tcb.state is CLOSED:
            k = tcb.four_tuple
            if self.tcbs.get(k) is tcb:
                del self.tcbs[k]
            if tcb.listener is not None:
                tcb.listener.forget(tcb)
                tcb.listener = None
            if tcb.rst_pending is not None:
                self._send_tcp(tcb.remote_ip, tcb.rst_pending, b"", 0.0)
                tcb.rst_pending = None
            # _adopt's hooks refer to the TCB itself: cut those reference cycles, so
            # a finished connection is freed when its last user lets go of it
            # instead of waiting for (and paying for) the cyclic GC
            tcb.events = []
            tcb.notify_readable = _ignore_event
            # Its timer-heap entry is stale now, but it holds the TCB until its time
            # comes, which for a keepalive timer is hours: compact the heap once
            # such entries are half of it.
            if tcb.sched_at is not None:
                tcb.sched_at = None
                self._stale_timers += 1
                if self._stale_timers > 64 and self._stale_timers * 2 > len(self._timers):
                    self._timers = [e for e in self._timers if e[2].sched_at == e[0]]
                    heapq.heapify(self._timers)
                    self._stale_timers = 0

    def pop_events(self) -> list:
        """[(tcb | listener | udp endpoint, Event | "acceptable")] since the last call."""
        for tcb in self.dirty:
            if tcb.state is CLOSED:     # a connection ended: forget the closed ones
                for t in [t for t in self.dirty if t.state is CLOSED]:
                    self._collect(t)
                break
        out = self.events[:]
        self.events.clear()
        return out

    def poll_at(self):
        """The earliest time frames_to_send must run (0.0: now), or None."""
        if self.tx or self.dirty:
            return 0.0
        heap = self._timers
        while heap and heap[0][2].sched_at != heap[0][0]:
            heapq.heappop(heap)
        t = heap[0][0] if heap else None
        if self.neighbours.pending or self.reassembler.pending or self.dhcp is not None:
            for x in (self.neighbours.poll_at(), self.reassembler.poll_at(),
                      self.dhcp.poll_at() if self.dhcp is not None else None):
                if x is not None and (t is None or x < t):
                    t = x
        return t
