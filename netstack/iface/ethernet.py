"""Input: the Ethernet demux and the TCP fast path in front of it.

`receive_frame` first asks `_fast_tcp` whether the frame is the common case
-- unfragmented IPv4/TCP without IP options, for us, with no TCP option but
the timestamp -- parsed with one struct call. Such a frame of an existing
connection goes to the TCB's header prediction (`on_segment_fast`) and, if it
declines, to the TCB's full rules without a second parse; a frame of no
connection goes straight to the TCP demux. Everything else takes the layered
path: Ethernet -> ARP | IPv4 -> ICMP | UDP | TCP.

`receive_frame` never raises for remote input: a malformed or unwanted frame
is a drop counted under its reason.
"""

from __future__ import annotations

import struct

from ..wire import BROADCAST_MAC, ETHERTYPE_ARP, ETHERTYPE_IPV4, ArpRepr, MalformedPacket, TcpRepr
from ..wire.checksum import l4_checksum_ok_in_place
from ..wire.tcp import starts_with_dsack

__all__ = ["EthernetInput"]

_ETH = struct.Struct("!6s6sH")
# Ethernet + IPv4 + TCP headers, only the fields the fast path reads (x: skipped):
# dst MAC, ethertype, version/IHL, total length, fragment field, protocol, source
# and destination address, ports, seq, ack, data offset, flags, window -- and,
# in _FAST_TS, the first option word and the timestamp values behind it.
_FAST = struct.Struct("!6s6xHBxH2xHxB2x4s4sHHIIBBH4x")
_FAST_TS = struct.Struct("!6s6xHBxH2xHxB2x4s4sHHIIBBH4xIII")
# NOP NOP TS(10) then NOP NOP SACK with 1-3 blocks: header length -> the 4 bytes at
# offset 66 (NOP NOP kind length) and the block words after them
_SACK_LAYOUTS = {32 + 4 + 8 * k: bytes((1, 1, 5, 2 + 8 * k)) for k in (1, 2, 3)}
_SACK_WORDS = {32 + 4 + 8 * k: struct.Struct(f"!{2 * k}I") for k in (1, 2, 3)}
_PURE_ACK, _DATA_PSH = 0x10, 0x18


def _tcp_segment(frame, sip: bytes, total: int):
    """_fast_tcp's answer for a TCP frame it leaves to TCP's own parse: (None,
    source address, TCP segment) once the IP header checks out, else None."""
    if int.from_bytes(frame[14:34], "big") % 0xFFFF:
        return None
    return None, sip, memoryview(frame)[34:14 + total]


class EthernetInput:
    """The input half's entry points (a mixin of Interface)."""

    def receive_frame(self, frame, now: float, checksum_verified: bool = False) -> None:
        self._receive_parsed(self._fast_tcp(frame, checksum_verified), frame, now, checksum_verified)

    def _receive_parsed(self, m, frame, now: float, checksum_verified: bool) -> None:
        """receive_frame once _fast_tcp has looked at the frame (m: its answer;
        _fast_tcp never raises, it only declines)."""
        c = self.counters
        c["rx_frames"] += 1
        try:
            if m is not None:
                if m[0] is None:        # no connection, or options: (None, source address, TCP segment)
                    _, source, segment = m
                    c["rx_ipv4"] += 1
                    self._receive_tcp(source, segment, now, checksum_verified)
                    return
                tcb, seq, ack, flags, window, ts, payload, sack = m
                if not sack and tcb.on_segment_fast(seq, ack, flags, window, ts, payload, now):
                    c["rx_tcp_fast"] += 1
                    self._after_fast(tcb)
                    return
                self._general_tcp(tcb, seq, ack, flags, window, ts, payload, sack, now, 1)
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
        if len(frames) == 1:        # nothing to merge (a request, an ACK): straight in
            f, ok = frames[0]
            self._receive_parsed(self._fast_tcp(f, ok), f, now, ok)
            return
        head = None         # the first data segment of a run: its _fast_tcp answer
        head_frame = head_ok = head_tcb = head_ack = head_flags = head_window = head_ts = head_sack = None
        run = None          # once a second segment joins: ([payloads], [(frame, ok)])
        nxt = 0             # the sequence number that continues the run
        acks = None         # pure ACKs with SACK blocks of one connection, in a row: [_fast_tcp answers]
        for f, ok in frames:
            m = self._fast_tcp(f, ok)
            tcb = None if m is None else m[0]
            if tcb is not None:
                _, seq, ack, flags, window, ts, payload, sack = m
                if head is not None and tcb is head_tcb and seq == nxt and ack == head_ack \
                        and flags == head_flags and window == head_window and ts == head_ts and payload \
                        and sack == head_sack:
                    if run is None:
                        run = ([head[6]], [(head_frame, head_ok)])
                    run[0].append(payload)
                    run[1].append((f, ok))
                    nxt = (nxt + len(payload)) & 0xFFFFFFFF
                    continue
                if sack and not payload and flags == _PURE_ACK and not starts_with_dsack(sack, ack):
                    # the same sender's next report (the same SEQ: only the last ACK's
                    # fields pass TCP's acceptability checks, so an ACK forged with
                    # another SEQ must not slip its blocks in with the real ones)
                    if acks is not None and acks[0][0] is tcb and acks[0][4] == window and acks[0][1] == seq \
                            and ((ack - acks[-1][2]) & 0xFFFFFFFF) < 0x80000000:
                        acks.append(m)
                        continue
                    if head is not None or acks is not None:
                        self._flush_batch(head, head_frame, head_ok, run, acks, now)
                        head = run = None
                    acks = [m]
                    continue
            if acks is not None:
                self._flush_acks(acks, now)
                acks = None
            if head is not None:
                if run is None:
                    self._receive_parsed(head, head_frame, now, head_ok)     # a run of one: the common case
                else:
                    self._flush_run(head, run, now)
                    run = None
                head = None
            if tcb is not None and payload and (flags == _PURE_ACK or flags == _DATA_PSH):
                head, head_frame, head_ok = m, f, ok
                head_tcb, head_ack, head_flags, head_window, head_ts, head_sack = tcb, ack, flags, window, ts, sack
                nxt = (seq + len(payload)) & 0xFFFFFFFF
            else:
                self._receive_parsed(m, f, now, ok)
        self._flush_batch(head, head_frame, head_ok, run, acks, now)

    def _flush_batch(self, head, head_frame, head_ok, run, acks, now: float) -> None:
        """What receive_batch holds back goes to TCP: the data run (a run of one
        as it came), then the pure ACKs in a row."""
        if head is not None:
            if run is None:
                self._receive_parsed(head, head_frame, now, head_ok)
            else:
                self._flush_run(head, run, now)
        if acks is not None:
            self._flush_acks(acks, now)

    def _flush_acks(self, acks: list, now: float) -> None:
        """Pure ACKs of one connection that arrived in a row, each with SACK
        blocks (a receiver reporting our losses, about one per segment we send),
        taken as one: the last one's cumulative ACK, window and timestamps, and
        every block reported, the newest first (a block an earlier ACK reported
        and a later one covers is left out; D-SACKs are never merged). A sender in
        recovery runs its scoreboard, RACK, PRR and rate sample once per batch
        instead of once per ACK, as a receiver's GRO takes a run of segments."""
        kept: list = []
        for m in reversed(acks):
            for left, right in m[7]:
                for kl, kr in kept:
                    if ((left - kl) & 0xFFFFFFFF) < 0x80000000 and ((kr - right) & 0xFFFFFFFF) < 0x80000000:
                        break           # inside a block already kept
                else:
                    kept.append((left, right))
        tcb, seq, ack, flags, window, ts, payload, _sack = acks[-1]
        if len(acks) == 1 or starts_with_dsack(kept, ack):     # (the latter: a block that shrank)
            for m in acks:
                self._receive_parsed(m, None, now, True)
            return
        c = self.counters
        c["rx_frames"] += len(acks)
        c["rx_ack_coalesced"] += len(acks)
        self._general_tcp(tcb, seq, ack, flags, window, ts, payload, tuple(kept), now, len(acks))

    def _flush_run(self, head, run, now: float) -> None:
        tcb, seq, ack, flags, window, ts, _first, sack = head
        payloads, frames = run
        n = len(frames)
        payload = memoryview(b"".join(payloads))
        if not sack and tcb.on_segment_fast(seq, ack, flags, window, ts, payload, now):
            c = self.counters
            c["rx_frames"] += n
            c["rx_tcp_fast"] += n
            c["rx_gro_merged"] += n
            self._after_fast(tcb)
        else:
            # The TCB's full rules for the run as one segment, as Linux's GRO hands
            # TCP one skb: out-of-order data after a loss is the common case, and
            # there one insertion, one scoreboard update and one ACK (whose first
            # SACK block reports the whole run) serve the run instead of one each
            # per segment -- the receiver at 5% loss spent its core on them.
            c = self.counters
            c["rx_frames"] += n
            c["rx_gro_merged"] += n
            self._general_tcp(tcb, seq, ack, flags, window, ts, payload, sack, now, n)

    def _general_tcp(self, tcb, seq: int, ack: int, flags: int, window: int, ts, payload, sack,
                     now: float, frames: int) -> None:
        """A segment _fast_tcp parsed (or `frames` of them merged) whose TCB's
        header prediction declined it or that carries SACK blocks: the TCB's full
        rules (handshake, FIN, loss, ...), without a second parse (the caller
        counts the frames as received; here, as IPv4 and TCP). Remote input never
        crashes us: a bug is counted and kept, as in _receive_parsed."""
        c = self.counters
        c["rx_ipv4"] += frames
        c["rx_tcp"] += frames
        try:
            tcb.on_segment(TcpRepr(tcb.remote_port, tcb.local_port, seq, ack, flags, window, 0, None, None,
                                   False, sack, ts), payload, now)
        except MalformedPacket as e:
            self.drop(e.reason)
            return
        except Exception as e:  # noqa: BLE001
            self.drop("internal_error")
            self.last_internal_error = e
            return
        self._touch(tcb)

    def _after_fast(self, tcb) -> None:
        """After the header prediction took a segment: due now, or at the delayed ACK."""
        if tcb.ack_now or tcb.sbuf.size > ((tcb.snd_nxt - tcb.snd_una) & 0xFFFFFFFF):
            self.dirty.add(tcb)     # something to send now
        elif tcb.delack_at is not None and (tcb.sched_at is None or tcb.delack_at < tcb.sched_at):
            self._push_timer(tcb, tcb.delack_at)

    def _fast_tcp(self, frame, csum_ok: bool):
        """(tcb, seq, ack, flags, window, ts, payload, sack blocks) for an
        unfragmented IPv4/TCP frame without IP options, for us, of an existing
        connection, with valid checksums and no TCP option but the timestamp (and
        SACK blocks after it, as Linux lays them out; () when none) -- parsed with
        one struct call that skips the fields it does not need; (None, source
        address, TCP segment) for such a frame of no connection (a SYN, a stray
        segment) or with other TCP options: TCP checks it, without parsing
        Ethernet and IPv4 again; else None."""
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
            return _tcp_segment(frame, sip, total)
        sack = ()
        if hlen == 20:
            ts = None
        elif hlen == 32 and opt == 0x0101080A:      # NOP NOP TS(10)
            ts = (tsval, tsecr)
        elif opt == 0x0101080A and hlen in _SACK_LAYOUTS and frame[66:70] == _SACK_LAYOUTS[hlen]:
            # NOP NOP TS(10) NOP NOP SACK(n blocks), Linux's layout: the segments of
            # a peer whose data we lost (its data and its ACKs) -- parsed here, so
            # its runs merge and TCP takes them without a second parse
            ts = (tsval, tsecr)
            w = _SACK_WORDS[hlen].unpack_from(frame, 70)
            if hlen == 44:
                sack = ((w[0], w[1]),)
            elif hlen == 52:
                sack = ((w[0], w[1]), (w[2], w[3]))
            else:
                sack = ((w[0], w[1]), (w[2], w[3]), (w[4], w[5]))
        else:
            return _tcp_segment(frame, sip, total)     # other options: TCP parses them
        mv = memoryview(frame)
        # a correct IP header sums to 0xFFFF, i.e. 0 modulo 0xFFFF (2**16 == 1)
        if int.from_bytes(mv[14:34], "big") % 0xFFFF or not (csum_ok or l4_checksum_ok_in_place(mv[26:14 + total], 6)):
            return None
        return tcb, seq, ack, flags, window, ts, mv[34 + hlen:14 + total], sack

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
