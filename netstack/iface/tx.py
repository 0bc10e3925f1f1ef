"""Output: the one place where frames are built.

Every TCP segment -- the fast path's (`TCB.fast_output`), the general path's
(`TCB.poll`), and the segments of no connection (RST, SYN-cookie SYN-ACK) --
leaves through `_emit_tcp`, which packs Ethernet, IPv4 and TCP headers with
one struct call from a per-connection `TcpTemplate`: the constant parts of the
headers and of both checksums, with named fields. Checksums are the constant
part plus the fields that change; sums of 32-bit fields are taken whole, since
2**16 == 1 modulo 0xFFFF.

Other IP traffic (ICMP, UDP) goes through `send_ip` (fragmenting above the
MTU). Both end in `_link_out`: to the wire if the next hop's MAC is known,
else into the ARP queue with a placeholder MAC that `_emit_queued` fills in
once the neighbour answers.

The MTU rule lives here: a frame larger than the MTU leaves only as a TSO
frame on a device that segments (tso_max and checksum offload); anything else
over the MTU is a bug upstream and a counted drop, `tx_too_big_for_mtu`.
"""

from __future__ import annotations

import struct
from typing import NamedTuple

from frames import Gather, TxFrame

from ..ipv4 import fragment
from ..wire import ARP_REQUEST, BROADCAST_MAC, ETHERTYPE_ARP, ETHERTYPE_IPV4, ArpRepr, Ipv4Repr
from ..wire.checksum import internet_checksum, ones_sum

__all__ = ["TcpTemplate", "Output", "NO_MAC"]

_ETH = struct.Struct("!6s6sH")
_IP_HDR = struct.Struct("!BBHHHBBH4s4s")
_CSUM = struct.Struct("!H")
_FRAME_TCP = struct.Struct("!6s6sHBBHHHBBH4s4sHHIIBBHHH")
_FRAME_TCP_TS = struct.Struct("!6s6sHBBHHHBBH4s4sHHIIBBHHHIII")
NO_MAC = b"\x00" * 6
_ZERO_IP = b"\x00\x00\x00\x00"
_TS_WORDS = 0x0101 + 0x080A      # NOP NOP TS(10): the option's constant words
SOFTWARE_CSUM_MAX = 256          # up to this payload size the checksum is computed here even with offload


class TcpTemplate(NamedTuple):
    """One connection's constant header parts (cached on the TCB as tx_cache)."""

    neighbour: list | None      # the ARP entry [mac, expires, refreshed] it was made from (None: unresolved)
    next_hop: bytes
    mac: bytes                  # the next hop's MAC (NO_MAC while unresolved)
    src_ip: bytes
    dst_ip: bytes
    src_port: int
    dst_port: int
    ip_sum: int                 # IPv4 header sum without total length and ident
    pseudo_sum: int             # addresses + protocol: the pseudo-header without the TCP length
    ports_sum: int              # source port + destination port
    fresh_until: float          # past this the neighbour entry nears its refresh: make the template anew


class Output:
    """The output half of Interface (a mixin: its state lives in Interface)."""

    # ---- TCP ------------------------------------------------------------------------
    def _tcp_template(self, src_port: int, dst_port: int, dst: bytes, now: float) -> TcpTemplate | None:
        """A template for segments to (dst, dst_port); None when there is no route."""
        try:
            hop = self._next_hop(dst)
        except OSError:
            return None
        nb = self.neighbours
        mac = nb.lookup(hop, now)
        entry = None
        fresh_until = 0.0
        if mac is not None:
            entry = nb.entries[hop]
            if nb.needs_refresh(hop, now):
                self._send_arp(ARP_REQUEST, mac, NO_MAC, hop)
            else:
                fresh_until = entry[1] - nb.retry * 2
        src = self.ip
        addr = int.from_bytes(src, "big") + int.from_bytes(dst, "big")
        return TcpTemplate(entry, hop, mac if mac is not None else NO_MAC, src, dst, src_port, dst_port,
                           0x4500 + 0x4000 + 0x4006 + addr, addr + 6, src_port + dst_port, fresh_until)

    def _template_for(self, tcb, now: float) -> TcpTemplate | None:
        """The TCB's cached template while its neighbour entry is current and not
        near its refresh (then it is made anew: that path sends the refresh), and
        our address is the one it was made with. Every TCP output path asks here."""
        t = tcb.tx_cache
        if t is None or now >= t.fresh_until or self.neighbours.entries.get(t.next_hop) is not t.neighbour \
                or t.src_ip is not self.ip:
            t = self._tcp_template(tcb.local_port, tcb.remote_port, tcb.remote_ip, now)
            tcb.tx_cache = t if t is not None and t.neighbour is not None else None
        return t

    def _send_segment(self, tcb, seg, payload, now: float) -> None:
        """A TCB's segment from the general path (TcpRepr)."""
        t = self._template_for(tcb, now)
        if t is None:
            self.drop("tx_no_route")
            return
        opts = None if seg.mss is None and seg.wscale is None and not seg.sack_permitted \
            and not seg.sack_blocks else seg.options_bytes()
        self._emit_tcp(t, seg.seq, seg.ack, seg.flags, seg.window, seg.timestamp, opts, payload, tcb.mss, now)

    def _send_tcp(self, dst: bytes, seg, payload, now: float, mss: int = 0) -> None:
        """A segment of no connection (a RST, a SYN-cookie SYN-ACK)."""
        t = self._tcp_template(seg.src_port, seg.dst_port, dst, now)
        if t is None:
            self.drop("tx_no_route")
            return
        opts = None if seg.mss is None and seg.wscale is None and not seg.sack_permitted \
            and not seg.sack_blocks else seg.options_bytes()
        self._emit_tcp(t, seg.seq, seg.ack, seg.flags, seg.window, seg.timestamp, opts, payload, mss, now)

    def _emit_tcp(self, t: TcpTemplate, seq: int, ack: int, flags: int, window: int, ts, opts, payload,
                  mss: int, now: float) -> None:
        """THE frame builder of TCP. `opts`: the option bytes (timestamp included)
        when there are others than the timestamp, else None and `ts` is the
        timestamp option or None. Payloads above SOFTWARE_CSUM_MAX on an
        offloading device leave the TCP checksum to it (NEEDS_CSUM) and travel
        uncopied (a Gather stays in pieces); otherwise the frame carries complete
        checksums."""
        cfg = self.cfg
        n = len(payload)
        if opts is None:
            hl = 20 if ts is None else 32
        else:
            hl = 20 + len(opts)
        total = 20 + hl + n
        offload = cfg.tx_checksum_offload
        gso = 0
        if total > cfg.mtu:
            room = cfg.mtu - 20 - hl
            if not (cfg.tso_max and offload) or room <= 0:
                self.drop("tx_too_big_for_mtu")
                return
            gso = mss if 0 < mss < room else room      # TSO: the device cuts it into segments
        self.ip_ident = ident = (self.ip_ident + 1) & 0xFFFF
        ipsum = ~((t.ip_sum + total + ident) % 0xFFFF or 0xFFFF) & 0xFFFF
        partial = offload and n > SOFTWARE_CSUM_MAX
        if partial:
            tsum = (t.pseudo_sum + hl + n) % 0xFFFF or 0xFFFF     # the pseudo-header sum, as NEEDS_CSUM wants
        else:
            if payload.__class__ is Gather:
                payload = bytes(payload)
            s = t.pseudo_sum + t.ports_sum + hl + n + ((hl << 10) | flags) + seq + ack + window
            if n:
                s += ones_sum(payload)     # an odd last byte is padded, as the checksum wants
            if opts is not None:
                s += int.from_bytes(opts, "big")
            elif ts is not None:
                s += _TS_WORDS + ts[0] + ts[1]
            tsum = ~(s % 0xFFFF or 0xFFFF) & 0xFFFF
        if opts is None and ts is not None:
            hdr = _FRAME_TCP_TS.pack(t.mac, self.mac, 0x0800, 0x45, 0, total, ident, 0x4000, 64, 6, ipsum,
                                     t.src_ip, t.dst_ip, t.src_port, t.dst_port, seq, ack, 0x80, flags, window,
                                     tsum, 0, 0x0101080A, ts[0], ts[1])
        else:
            hdr = _FRAME_TCP.pack(t.mac, self.mac, 0x0800, 0x45, 0, total, ident, 0x4000, 64, 6, ipsum,
                                  t.src_ip, t.dst_ip, t.src_port, t.dst_port, seq, ack, hl << 2, flags, window,
                                  tsum, 0)
            if opts is not None:
                hdr += opts
        if partial:
            frame = TxFrame(hdr, 34, 16, gso, payload)
        else:
            frame = hdr + payload if n else hdr
        if t.neighbour is not None:
            self.tx.append(frame)
            self.counters["tx_frames"] += 1
        else:
            self._queue_for_neighbour(t.next_hop, frame, now)

    # ---- IP -------------------------------------------------------------------------
    def _next_hop(self, dst: bytes) -> bytes:
        if (int.from_bytes(dst, "big") & self._mask_int) == self._net or dst == b"\xff\xff\xff\xff":
            return dst
        if self.cfg.gateway is None:
            raise OSError(101, "Network is unreachable")
        return self.cfg.gateway

    def send_ip(self, dst: bytes, protocol: int, l4: bytes, now: float, dont_frag: bool = False) -> None:
        """Send one IP datagram of another protocol than TCP (fragmenting above the MTU)."""
        self.ip_ident = (self.ip_ident + 1) & 0xFFFF
        mtu = self.cfg.mtu
        size = len(l4)
        if size + 20 <= mtu:
            pkt = bytearray(20)
            _IP_HDR.pack_into(pkt, 0, 0x45, 0, 20 + size, self.ip_ident, 0x4000 if dont_frag else 0, 64,
                              protocol, 0, self.ip, dst)
            _CSUM.pack_into(pkt, 10, internet_checksum(pkt))
            pkt += l4
            self._to_link(dst, pkt, now)
            return
        if dont_frag:
            self.drop("tx_too_big_for_mtu")
            return
        for off, more, chunk in fragment(l4, mtu):
            hdr = Ipv4Repr(self.ip, dst, protocol, len(chunk), 64, self.ip_ident, False, more, off).emit()
            self._to_link(dst, hdr + chunk, now)
        self.counters["tx_fragmented"] += 1

    def _to_link(self, dst: bytes, packet, now: float) -> None:
        """An IPv4 packet to its next hop's MAC (or the ARP queue)."""
        try:
            hop = self._next_hop(dst)
        except OSError:
            self.drop("tx_no_route")
            return
        if hop == b"\xff\xff\xff\xff" or hop == self._broadcast():
            self._link_out(_ETH.pack(BROADCAST_MAC, self.mac, ETHERTYPE_IPV4) + packet)
            return
        mac = self.neighbours.lookup(hop, now)
        if mac is not None:
            self._link_out(_ETH.pack(mac, self.mac, ETHERTYPE_IPV4) + packet)
            if self.neighbours.needs_refresh(hop, now):
                self._send_arp(ARP_REQUEST, mac, NO_MAC, hop)
            return
        self._queue_for_neighbour(hop, _ETH.pack(NO_MAC, self.mac, ETHERTYPE_IPV4) + packet, now)

    # ---- link ---------------------------------------------------------------------------
    def _link_out(self, frame) -> None:
        self.tx.append(frame)
        self.counters["tx_frames"] += 1

    def _queue_for_neighbour(self, hop: bytes, frame, now: float) -> None:
        """A frame whose next hop is not resolved yet waits in the ARP queue
        (bounded: a full queue is a counted drop)."""
        queued, request = self.neighbours.enqueue(hop, frame, now)
        if not queued:
            self.drop("arp_queue_full" if hop in self.neighbours.pending else "arp_pending_full")
        if request:
            self._send_arp(ARP_REQUEST, BROADCAST_MAC, NO_MAC, hop)

    def _emit_queued(self, mac: bytes, frame) -> None:
        """A frame that waited for ARP: its destination MAC filled in."""
        if frame.__class__ is TxFrame:
            frame = frame._replace(data=mac + frame.data[6:])
        else:
            frame = mac + frame[6:]
        self._link_out(frame)

    def _send_arp(self, op: int, dst_mac: bytes, target_hw: bytes, target_ip: bytes) -> None:
        arp = ArpRepr(op, self.mac, self.ip, target_hw, target_ip).emit()
        self.tx.append(_ETH.pack(dst_mac, self.mac, ETHERTYPE_ARP) + arp)
        self.counters["tx_arp"] += 1
