"""The TCP control block: one connection's state machine (RFC 9293).

Theory of operation
-------------------
Everything that changes `self.state` lives in this file, through `_set_state`.
The TCB is sans-IO: `on_segment(seg, payload, now)` takes a parsed segment,
`poll(now)` runs due timers and returns the segments to send as
``(TcpRepr, payload)`` pairs, `poll_at()` says when `poll` must next run, and
the user calls `send`, `recv`, `close`, `abort`. What happened is reported as
`Event`s appended to `self.events` (the Interface collects them).

Sequence numbers are ints in 0..2**32-1 compared only with `seq_*` helpers.
The send buffer holds the bytes from SND.UNA on; the receive queue holds
in-order bytes not yet read by the user; out-of-order segments wait in
`ooo` (bounded by `ooo_limit` bytes) and are advertised with SACK blocks.

Timers (absolute times, None when stopped): retransmission (`rto_at`),
delayed ACK (`delack_at`), persist (`persist_at`), keepalive
(`keepalive_at`), TIME-WAIT / SYN timeouts (`timewait_at`).
"""

from __future__ import annotations

from collections import deque
from functools import partial

from frames import Gather
from ..wire.seq import HALF, MASK, seq_add, seq_ge, seq_gt, seq_le, seq_lt, seq_sub
from ..wire.tcp import ACK, FIN, PSH, RST, SYN, TcpRepr
from . import congestion
from .state import (CAN_RECEIVE, CAN_SEND, CLOSE_WAIT, CLOSED, CLOSING, ESTABLISHED, EV_CLOSED, EV_CONNECTED,
                    EV_ERROR, EV_PEER_CLOSED, EV_READABLE, EV_WRITABLE, FIN_WAIT_1, FIN_WAIT_2, LAST_ACK, LISTEN,
                    SYN_RECEIVED, SYN_SENT, SYNCHRONIZED, TIME_WAIT, State)

__all__ = ["TCB", "SendBuffer", "TcpError"]

MAX_WINDOW_SHIFT = 14          # RFC 7323 2.3
_SENDING_STATES = frozenset({ESTABLISHED, CLOSE_WAIT, FIN_WAIT_1, CLOSING, LAST_ACK})
DUPACK_THRESHOLD = 3           # RFC 5681 3.2
PAWS_IDLE = 24 * 24 * 3600     # RFC 7323 5.5: ts_recent is invalid after 24 days idle
IDLE = ()                      # TCB.fast_output: nothing to send


class TcpError(Exception):
    pass


class SendBuffer:
    """Bytes from SND.UNA on, as a deque of chunks (no big memmove on each ACK)."""

    __slots__ = ("chunks", "head", "size")

    def __init__(self) -> None:
        self.chunks: deque = deque()
        self.head = 0   # offset into chunks[0]
        self.size = 0

    def __len__(self) -> int:
        return self.size

    def append(self, data) -> None:
        n = len(data)
        if n:
            # keep a view of immutable bytes as it is (a 64 KiB write costs no copy);
            # anything the writer could change later (bytearray...) is copied
            if data.__class__ is not bytes and not (data.__class__ is memoryview and data.obj.__class__ is bytes
                                                    and data.itemsize == 1 and data.contiguous):
                data = bytes(data)
            self.chunks.append(data)
            self.size += n

    def peek(self, offset: int, n: int, gather: bool = False):
        """Up to n bytes starting offset bytes after SND.UNA: one buffer, or with
        gather=True a Gather of the chunks' pieces when they span chunks (no copy)."""
        n = min(n, self.size - offset)
        if n <= 0:
            return b""
        pos = offset + self.head
        out = []
        need = n
        for c in self.chunks:
            lc = len(c)
            if pos >= lc:
                pos -= lc
                continue
            take = min(lc - pos, need)
            if pos == 0 and take == lc and need == n and take == n:
                return c
            out.append(memoryview(c)[pos:pos + take])
            need -= take
            pos = 0
            if not need:
                break
        if len(out) == 1:
            return out[0]
        return Gather(out) if gather else b"".join(out)

    def consume(self, n: int) -> None:
        n = min(n, self.size)
        self.size -= n
        n += self.head
        chunks = self.chunks
        while chunks and n >= len(chunks[0]):
            n -= len(chunks.popleft())
        self.head = n if chunks else 0


class TCB:
    # Slots: about 80 attributes are more than CPython shares dict keys for (30),
    # so without them every TCB carries a full dict built key by key, and
    # attribute reads on the per-segment paths go through a dict lookup.
    __slots__ = ('_last_ooo', '_retransmit_one', '_sack_send', '_was_writable', 'ack_now', 'cc', 'cfg',
                 'delack_at', 'dupacks', 'error', 'events', 'fin_queued', 'fin_received', 'in_recovery', 'irs',
                 'iss', 'keepalive', 'keepalive_at', 'keepalive_count', 'keepalive_idle', 'keepalive_interval',
                 'keepalive_probes', 'last_ack_sent', 'last_recv', 'last_wnd_sent', 'listener', 'local_ip',
                 'local_port', 'max_snd_wnd', 'mss', 'nodelay', 'notify_readable', 'ooo', 'ooo_bytes',
                 'our_mss', 'owner', 'persist_at', 'persist_backoff', 'rcv_nxt', 'rcv_wscale', 'recover',
                 'recv_buffer', 'remote_ip', 'remote_port', 'rescue_rxt', 'retries', 'rexmit_next', 'rq',
                 'rq_bytes', 'rst_pending', 'rto', 'rto_at', 'rtt_seq', 'rtt_time', 'rttvar', 'sack_ok',
                 'sacked', 'sbuf', 'sched_at', 'send_limit', 'snd_max', 'snd_nxt', 'snd_sml', 'snd_una',
                 'snd_wl1', 'snd_wl2', 'snd_wnd', 'snd_wscale', 'srtt', 'state', 'stats', 'syn_acked',
                 'timewait_at', 'ts_ok', 'ts_recent', 'ts_recent_age', 'tso_max', 'tx_cache',
                 'unacked_segments', 'ws_ok', "__weakref__")

    def __init__(self, cfg, local_ip: bytes, local_port: int, remote_ip: bytes, remote_port: int,
                 iss: int, now: float, mss_limit: int | None = None, tso_max: int = 0) -> None:
        self.cfg = cfg
        self.local_ip, self.local_port = local_ip, local_port
        self.remote_ip, self.remote_port = remote_ip, remote_port
        self.tx_cache = None    # the interface's per-connection frame constants (Interface._send_fast)
        self.state = CLOSED
        self.events: list = []
        # the fast path's one event, as a C-level call (the Interface rebinds it)
        self.notify_readable = partial(self.events.append, EV_READABLE)
        self.error: BaseException | None = None
        self.listener = None
        # send side
        self.iss = iss
        self.snd_una = iss
        self.snd_nxt = iss
        self.snd_max = iss           # highest sequence number sent + 1
        self.snd_wnd = 0
        self.snd_wl1 = 0
        self.snd_wl2 = 0
        self.max_snd_wnd = 0
        self.sbuf = SendBuffer()
        self.fin_queued = False      # user closed the sending side
        self.syn_acked = False
        self.snd_sml = iss           # end of the last small segment sent (Nagle)
        # receive side
        self.irs = 0
        self.rcv_nxt = 0
        self.rq: deque = deque()     # in-order data not yet read
        self.rq_bytes = 0
        self.ooo: list = []          # sorted [(seq, bytes)]
        self.ooo_bytes = 0
        self.fin_received = False
        self.last_ack_sent = 0
        self.last_wnd_sent = 0
        # options
        self.our_mss = cfg.mss if mss_limit is None else min(cfg.mss, mss_limit)
        self.mss = 536               # RFC 9293 3.7.1 default until the peer says
        self.tso_max = tso_max
        self.rcv_wscale = 0
        self.snd_wscale = 0
        self.ws_ok = False
        self.ts_ok = False
        self.ts_recent = 0
        self.ts_recent_age = now
        self.sack_ok = False
        self.sacked: list = []       # peer's SACK scoreboard: merged [(left, right)]
        # timers and RTT (RFC 6298)
        self.srtt: float | None = None
        self.rttvar = 0.0
        self.rto = cfg.rto_initial
        self.rto_at: float | None = None
        self.retries = 0
        self.rtt_seq: int | None = None
        self.rtt_time = 0.0
        self.delack_at: float | None = None
        self.ack_now = False
        self.unacked_segments = 0
        self.persist_at: float | None = None
        self.persist_backoff = 0
        self.keepalive = False
        self.keepalive_idle = cfg.keepalive_idle
        self.keepalive_interval = cfg.keepalive_interval
        self.keepalive_count = cfg.keepalive_count
        self.keepalive_at: float | None = None
        self.keepalive_probes = 0
        self.timewait_at: float | None = None
        self.last_recv = now
        self.nodelay = False
        # loss recovery
        self.dupacks = 0
        self.in_recovery = False
        self.recover = iss
        self.rexmit_next = iss
        self.rescue_rxt = None      # RFC 6675 RescueRxt
        self._retransmit_one = False  # poll(): resend one segment (fast retransmit, partial ACK)
        self._sack_send = False       # poll(): send what the pipe allows (RFC 6675)
        self._last_ooo = None         # start of the latest out-of-order segment (first SACK block)
        self.cc = congestion.make(cfg.congestion, 536, cfg.initial_cwnd_segments)
        self.rst_pending: TcpRepr | None = None
        self.recv_buffer = cfg.recv_buffer
        self.send_limit = cfg.send_buffer
        self.stats = {"retransmits": 0, "timeouts": 0, "fast_retransmits": 0, "rescue_retransmits": 0,
                      "challenge_acks": 0, "dup_acks": 0, "ooo_dropped": 0, "paws_dropped": 0, "bad_segments": 0}
        self._was_writable = True
        self.sched_at: float | None = None   # the Interface's timer-heap bookkeeping
        self.owner = None                     # called with self after a user call changes what to send

    # ---- state -------------------------------------------------------------
    def _set_state(self, new: State) -> None:
        self.state = new

    def __repr__(self) -> str:
        return (f"<TCB {self.local_port}->{self.remote_port} {self.state.value} una={self.snd_una} "
                f"nxt={self.snd_nxt} rcv_nxt={self.rcv_nxt}>")

    @property
    def four_tuple(self):
        return (self.local_ip, self.local_port, self.remote_ip, self.remote_port)

    # ---- opening -------------------------------------------------------------
    def open_active(self, now: float) -> None:
        """connect(): send a SYN."""
        if self.state is not CLOSED:
            raise TcpError(f"connect in state {self.state.value}")
        self._choose_wscale()
        self._set_state(SYN_SENT)
        self.snd_nxt = self.iss
        self.ack_now = False
        self._arm_rto(now)

    def open_passive(self, syn: TcpRepr, now: float) -> None:
        """A listener accepted a SYN: answer with SYN-ACK (state SYN-RECEIVED)."""
        self._choose_wscale()
        self.irs = syn.seq
        self.rcv_nxt = seq_add(syn.seq, 1)
        self._take_syn_options(syn)
        self.snd_wnd = syn.window  # never scaled in a SYN (RFC 7323 2.2)
        self.snd_wl1 = syn.seq
        self.max_snd_wnd = self.snd_wnd
        self._set_state(SYN_RECEIVED)
        if syn.timestamp is not None and self.ts_ok:
            self.ts_recent = syn.timestamp[0]
            self.ts_recent_age = now
        self._arm_rto(now)

    def open_from_cookie(self, ack_seg: TcpRepr, mss: int, now: float) -> None:
        """The final ACK of a SYN-cookie handshake: straight to ESTABLISHED with the
        MSS the cookie carried and no other option (the listener kept no state)."""
        self.irs = (ack_seg.seq - 1) & MASK
        self.rcv_nxt = ack_seg.seq
        self.snd_una = self.snd_nxt = self.snd_max = self.snd_sml = ack_seg.ack
        self.mss = max(64, min(self.our_mss, mss))
        self.cc.mss = self.mss
        self.cc.cwnd = min(self.cfg.initial_cwnd_segments * self.mss, max(2 * self.mss, 14600))
        self.ws_ok = self.ts_ok = self.sack_ok = False
        self.rcv_wscale = self.snd_wscale = 0
        self.snd_wnd = self.max_snd_wnd = ack_seg.window
        self.snd_wl1, self.snd_wl2 = ack_seg.seq, ack_seg.ack
        self.syn_acked = True
        self._set_state(ESTABLISHED)
        self.events.append(EV_CONNECTED)

    def _choose_wscale(self) -> None:
        s = 0
        if self.cfg.window_scale:
            while (self.recv_buffer >> s) > 65535 and s < MAX_WINDOW_SHIFT:
                s += 1
        self.rcv_wscale = s

    def _take_syn_options(self, syn: TcpRepr) -> None:
        peer_mss = syn.mss if syn.mss is not None else 536
        self.mss = max(64, min(self.our_mss, peer_mss))
        self.cc.mss = self.mss
        self.cc.cwnd = min(self.cfg.initial_cwnd_segments * self.mss, max(2 * self.mss, 14600))
        if self.cfg.window_scale and syn.wscale is not None:
            self.ws_ok = True
            self.snd_wscale = min(syn.wscale, MAX_WINDOW_SHIFT)
        else:
            self.ws_ok = False
            self.snd_wscale = 0
            self.rcv_wscale = 0
        self.ts_ok = self.cfg.timestamps and syn.timestamp is not None
        self.sack_ok = self.cfg.sack and syn.sack_permitted
        if self.ts_ok:
            # The MSS counts no options: leave room for the timestamp option on
            # every segment (RFC 6691).
            self.mss -= 12
            self.cc.mss = self.mss

    # ---- user calls ------------------------------------------------------------
    def send_space(self) -> int:
        return max(0, self.send_limit - len(self.sbuf))

    def send(self, data) -> int:
        """Queue data; returns how many bytes were accepted (0 when full)."""
        if self.error is not None:
            raise self.error
        st = self.state
        if self.fin_queued or st is not ESTABLISHED and st not in CAN_SEND \
                and st is not SYN_SENT and st is not SYN_RECEIVED:
            raise BrokenPipeError(32, "send on a closed connection")
        space = self.send_limit - self.sbuf.size
        n = len(data)
        if n >= space:
            n = space if space > 0 else 0
            self._was_writable = False
        if n:
            self.sbuf.append(memoryview(data)[:n] if n < len(data) else data)
            if self.owner is not None:
                self.owner(self)
        return n

    def _changed(self) -> None:
        if self.owner is not None:
            self.owner(self)

    def recv_available(self) -> int:
        return self.rq_bytes

    def recv(self, max_bytes: int = 1 << 30):
        """Up to max_bytes of in-order data (b"" if none). Opens the window."""
        rq = self.rq
        if not rq:
            return b""
        out = rq[0]
        n = len(out)
        if n <= max_bytes:
            rq.popleft()
        else:
            rq[0] = out[max_bytes:]
            out = out[:max_bytes]
            n = max_bytes
        self.rq_bytes -= n
        # window update if the window grew by 2 MSS or half the buffer (RFC 9293 3.8.6.2.2)
        st = self.state
        if st is ESTABLISHED or st in CAN_RECEIVE:
            grown = self.recv_buffer - self.rq_bytes - self.ooo_bytes - self.last_wnd_sent
            if grown >= 2 * self.mss or grown >= self.recv_buffer >> 1:
                self.ack_now = True
                self._changed()
        return out

    def at_eof(self) -> bool:
        return self.fin_received and not self.rq

    def close(self) -> None:
        """Shut down the sending side: FIN after all queued data."""
        st = self.state
        if st is CLOSED:
            return
        if st is SYN_SENT or st is LISTEN:
            self._finish(None)
        elif not self.fin_queued:
            self.fin_queued = True
        else:
            return
        self._changed()

    def set_congestion(self, name: str) -> None:
        """Choose this connection's congestion control: "newreno" or "cubic"."""
        cc = congestion.make(name, self.mss, self.cfg.initial_cwnd_segments)
        cc.cwnd, cc.ssthresh = self.cc.cwnd, self.cc.ssthresh
        self.cc = cc

    def set_nodelay(self, nodelay: bool) -> None:
        self.nodelay = nodelay
        self._changed()

    def abort(self) -> None:
        """Reset the connection now (RFC 9293 ABORT)."""
        if self.state in SYNCHRONIZED or self.state is SYN_RECEIVED:
            self.rst_pending = self._seg(self.snd_max, 0, RST)
        self._finish(ConnectionAbortedError(103, "connection aborted"))
        self._changed()

    def set_keepalive(self, on: bool, idle=None, interval=None, count=None) -> None:
        self.keepalive = on
        if idle is not None:
            self.keepalive_idle = idle
        if interval is not None:
            self.keepalive_interval = interval
        if count is not None:
            self.keepalive_count = count
        self.keepalive_at = None
        self.keepalive_probes = 0
        self._changed()

    def icmp_mtu(self, mtu: int) -> None:
        """Fragmentation needed: lower the MSS (RFC 1191)."""
        new = max(68 - 40, mtu - 40)
        if new < self.mss:
            self.mss = new
            self.cc.mss = new
            self.snd_nxt = self.snd_una  # resend with the smaller size
            self.ack_now = True

    def fail(self, error: BaseException) -> None:
        """The connection cannot go on (its neighbour never answered ARP...):
        CLOSED with `error` for the user."""
        self._finish(error)

    def icmp_unreachable(self, code: int) -> None:
        if self.state is SYN_SENT and code in (2, 3):
            self._finish(ConnectionRefusedError(111, "Connection refused"))

    # ---- input -----------------------------------------------------------------
    def on_segment_fast(self, seq: int, ack: int, flags: int, window: int, ts, payload, now: float) -> bool:
        """Header prediction (Van Jacobson): the two segments of a bulk transfer
        -- in-order data that acks nothing new, or a pure ACK of new data -- in
        ESTABLISHED with nothing unusual going on, handled without building a
        TcpRepr. Returns False when the segment needs the full path
        (`on_segment`), having changed nothing."""
        if self.state is not ESTABLISHED or (flags != ACK and flags != ACK | PSH) \
                or seq != self.rcv_nxt or self.ooo or self.in_recovery or self.sacked or self.fin_queued:
            return False
        if ts is not None:
            if not self.ts_ok or ((ts[0] - self.ts_recent) & MASK) >= 0x80000000:
                return False  # PAWS or options mismatch: the full path decides
        elif self.ts_ok:
            return False
        if (window << self.snd_wscale) != self.snd_wnd:
            return False
        plen = len(payload)
        una = self.snd_una
        acked = (ack - una) & MASK
        if acked:
            if acked >= 0x80000000 or ((self.snd_max - ack) & MASK) >= 0x80000000:
                return False          # old, or acks what was never sent: the full path decides
        elif not plen:
            return False              # a duplicate ACK: loss recovery lives in the full path
        if plen and plen > self.recv_buffer - self.rq_bytes:
            return False
        # --- accepted: from here on the segment is applied ---
        self.last_recv = now
        if ts is not None and seq == self.last_ack_sent:
            self.ts_recent = ts[0]
            self.ts_recent_age = now
        if acked:
            # new data acknowledged (the request of a request/response also acks the last response)
            self.sbuf.consume(acked)
            self.snd_una = ack
            if ((self.snd_nxt - ack) & MASK) >= 0x80000000:
                self.snd_nxt = ack
            self.retries = 0
            self.dupacks = 0
            self.snd_wl1, self.snd_wl2 = seq, ack
            self._rtt_sample(ack, ts[1] if ts is not None else 0, now)
            self.cc.on_ack(acked, now, self.srtt)
            if ack == self.snd_max:
                self.rto_at = None
            else:
                self.rto_at = now + self.rto
            if not self._was_writable and self.send_limit > self.sbuf.size:
                self._was_writable = True
                self.events.append(EV_WRITABLE)
        if plen:
            self.rq.append(payload)
            self.rq_bytes += plen
            self.rcv_nxt = (seq + plen) & MASK
            self.notify_readable()
            self.snd_wl1 = seq
            self.unacked_segments += 1
            if self.unacked_segments >= 2 or plen > self.mss:
                self.ack_now = True   # every second full-sized segment (RFC 5681 4.2)
            elif self.delack_at is None:
                self.delack_at = now + self.cfg.delayed_ack
        return True

    def on_segment(self, seg: TcpRepr, payload, now: float) -> None:
        st = self.state
        flags = seg.flags
        self.last_recv = now
        if st is SYN_SENT:
            self._on_syn_sent(seg, payload, now)
            return
        if st is CLOSED:
            return
        plen = len(payload)
        seglen = plen + (1 if flags & SYN else 0) + (1 if flags & FIN else 0)
        # PAWS (RFC 7323 5.3)
        if self.ts_ok and seg.timestamp is not None and not flags & RST:
            if seq_lt(seg.timestamp[0], self.ts_recent) and now - self.ts_recent_age < PAWS_IDLE:
                self.stats["paws_dropped"] += 1
                self.ack_now = True
                return
        # 1. sequence number acceptability (RFC 9293 3.10.7.4)
        wnd = self._rcv_window()
        if not self._acceptable(seg.seq, seglen, wnd):
            if flags & RST:
                return
            if st is TIME_WAIT and flags & FIN:
                self.timewait_at = now + self.cfg.time_wait
            self.ack_now = True
            return
        # 2. RST (RFC 5961 3.2)
        if flags & RST:
            if seg.seq == self.rcv_nxt:
                if st is SYN_RECEIVED and self.listener is not None:
                    self._finish(None)  # back to LISTEN: just drop this half-open TCB
                else:
                    self._finish(ConnectionResetError(104, "Connection reset by peer"))
            else:
                self.stats["challenge_acks"] += 1
                self.ack_now = True
            return
        # 4. SYN in a synchronized state: challenge ACK (RFC 5961 4.2)
        if flags & SYN:
            if st is SYN_RECEIVED and seg.seq == self.irs:
                self.ack_now = True  # a retransmitted SYN: repeat our SYN-ACK
                self.snd_nxt = self.snd_una
                return
            self.stats["challenge_acks"] += 1
            self.ack_now = True
            return
        # 5. ACK
        if not flags & ACK:
            return
        if st is SYN_RECEIVED:
            if seq_lt(self.snd_una, seg.ack) and seq_le(seg.ack, self.snd_max):
                self._set_state(ESTABLISHED)
                self.syn_acked = True
                self.snd_una = seq_add(self.snd_una, 1)
                self.snd_wnd = seg.window << self.snd_wscale
                self.snd_wl1, self.snd_wl2 = seg.seq, seg.ack
                self.max_snd_wnd = max(self.max_snd_wnd, self.snd_wnd)
                self.retries = 0
                self.rto_at = None
                self._rtt_sample_ack(seg, now)
                self.events.append(EV_CONNECTED)
                if self.listener is not None:
                    self.listener.established(self)
            else:
                self.rst_pending = self._seg(seg.ack, 0, RST)
                return
        if not self._process_ack(seg, plen, now):
            return
        st = self.state
        # timestamps: remember the peer's clock (RFC 7323 4.3)
        if self.ts_ok and seg.timestamp is not None and seq_le(seg.seq, self.last_ack_sent):
            self.ts_recent = seg.timestamp[0]
            self.ts_recent_age = now
        # 7. data
        if plen and st in CAN_RECEIVE:
            self._receive_data(seg.seq, payload, now, bool(flags & PSH))
        elif plen:
            self.ack_now = True
        # 8. FIN
        if flags & FIN and seq_add(seg.seq, plen) == self.rcv_nxt and not self.fin_received:
            self.fin_received = True
            self.rcv_nxt = seq_add(self.rcv_nxt, 1)
            self.events.append(EV_PEER_CLOSED)
            self.events.append(EV_READABLE)
            if st is ESTABLISHED:
                # The ACK of the peer's FIN waits for the delayed-ACK timer (Linux
                # does the same: a FIN puts it in pingpong mode), so the
                # application's close() -- its usual answer to EOF -- sends one
                # FIN|ACK instead of an ACK and then a FIN.
                if self.delack_at is None:
                    self.delack_at = now + self.cfg.delayed_ack
                self._set_state(CLOSE_WAIT)
            else:
                self.ack_now = True
                if st is FIN_WAIT_1:
                    self._set_state(CLOSING)
                elif st is FIN_WAIT_2:
                    self._enter_time_wait(now)
        elif flags & FIN and seq_gt(seq_add(seg.seq, plen), self.rcv_nxt):
            pass  # a FIN beyond a hole: wait for the hole to fill (the peer retransmits)
        elif st is TIME_WAIT and flags & FIN:
            self.ack_now = True
            self.timewait_at = now + self.cfg.time_wait

    def _acceptable(self, seq: int, seglen: int, wnd: int) -> bool:
        # RFC 9293 3.10.7.4's table; "rn <= x < rn + wnd" is (x - rn) mod 2**32 < wnd
        rn = self.rcv_nxt
        if seglen == 0:
            if wnd == 0:
                return seq == rn
            return ((seq - rn) & MASK) < wnd
        if wnd == 0:
            return False
        return ((seq - rn) & MASK) < wnd or ((seq + seglen - 1 - rn) & MASK) < wnd

    def _on_syn_sent(self, seg: TcpRepr, payload, now: float) -> None:
        flags = seg.flags
        if flags & ACK:
            # RFC 9293 3.10.7.3: unacceptable ACK -> RST (unless RST)
            if seq_le(seg.ack, self.iss) or seq_gt(seg.ack, self.snd_max):
                if not flags & RST:
                    self.rst_pending = self._seg(seg.ack, 0, RST)
                return
        if flags & RST:
            if flags & ACK:
                self._finish(ConnectionRefusedError(111, "Connection refused"))
            return
        if not flags & SYN:
            return
        self.irs = seg.seq
        self.rcv_nxt = seq_add(seg.seq, 1)
        self._take_syn_options(seg)
        if seg.timestamp is not None and self.ts_ok:
            self.ts_recent = seg.timestamp[0]
            self.ts_recent_age = now
        if flags & ACK:
            self.snd_una = seg.ack
            self.syn_acked = True
            self.snd_wnd = seg.window  # the window in a SYN is never scaled (RFC 7323 2.2)
            self.snd_wl1, self.snd_wl2 = seg.seq, seg.ack
            self.max_snd_wnd = self.snd_wnd
            self._rtt_sample_ack(seg, now)
            self.rto_at = None
            self.retries = 0
            self._set_state(ESTABLISHED)
            self.ack_now = True
            self.events.append(EV_CONNECTED)
            if self.send_space():
                self.events.append(EV_WRITABLE)
        else:
            # simultaneous open (RFC 9293 3.5, figure 8)
            self.snd_wnd = seg.window
            self.snd_wl1 = seg.seq
            self._set_state(SYN_RECEIVED)
            self.snd_nxt = self.iss  # resend our SYN, now with ACK
            self._arm_rto(now)

    def _process_ack(self, seg: TcpRepr, plen: int, now: float) -> bool:
        """RFC 9293 3.10.7.4 fifth check. Returns False if the segment is to be dropped."""
        ack = seg.ack
        st = self.state
        una = self.snd_una
        # (the wire.seq comparisons written out: this runs for every segment the
        # header prediction declines)
        if ((self.snd_max - ack) & MASK) >= HALF:       # ack > snd_max
            self.ack_now = True  # acks something not yet sent
            return False
        # RFC 5961 5.2: too old an ACK
        if ((ack - una + self.max_snd_wnd) & MASK) >= HALF:     # ack < una - max_snd_wnd
            self.stats["challenge_acks"] += 1
            self.ack_now = True
            return False
        wnd = seg.window << self.snd_wscale
        if self.sack_ok and seg.sack_blocks:
            self._update_scoreboard(seg.sack_blocks)
        acked = (ack - una) & MASK
        if acked and acked < HALF:                      # ack > una
            # our FIN is acked when ack covers it
            fin_acked = self.fin_queued and acked > self.sbuf.size
            data_acked = acked - 1 if fin_acked else acked
            self.sbuf.consume(data_acked)
            self.snd_una = ack
            if ((self.snd_nxt - ack) & MASK) >= HALF:   # snd_nxt < ack
                self.snd_nxt = ack
            self.retries = 0
            self._rtt_sample(ack, seg.timestamp[1] if seg.timestamp is not None else 0, now)
            flight = (self.snd_max - ack) & MASK
            if self.in_recovery:
                if seq_ge(ack, self.recover):
                    self.in_recovery = False
                    self.cc.exit_recovery(flight)
                    self.sacked = []
                elif self.sack_ok:
                    # RFC 6675: no window arithmetic here; the pipe estimate decides
                    if seq_lt(self.rexmit_next, ack):
                        self.rexmit_next = ack
                    self._sack_send = True
                else:
                    # partial ACK (RFC 6582 3.2 step 5): retransmit the next hole
                    self.cc.cwnd = max(self.mss, self.cc.cwnd - data_acked + self.mss)
                    self.rexmit_next = ack
                    self._retransmit_one = True
            else:
                self.cc.on_ack(data_acked, now, self.srtt)
            self.dupacks = 0
            self._trim_scoreboard()
            if self.snd_una == self.snd_max:
                self.rto_at = None
            else:
                self._arm_rto(now, restart=True)
            if not self._was_writable and self.send_limit > self.sbuf.size:
                self._was_writable = True
                self.events.append(EV_WRITABLE)
            if fin_acked:
                if st is FIN_WAIT_1:
                    self._set_state(FIN_WAIT_2)
                elif st is CLOSING:
                    self._enter_time_wait(now)
                    return True
                elif st is LAST_ACK:
                    self._finish(None)
                    return False
        elif ack == una and seq_sub(self.snd_max, una) > 0 and not plen \
                and not seg.flags & (SYN | FIN) and wnd == self.snd_wnd:
            # duplicate ACK (RFC 5681 2)
            self.dupacks += 1
            self.stats["dup_acks"] += 1
            if self.dupacks == DUPACK_THRESHOLD and not self.in_recovery and seq_ge(una, self.recover):
                self._enter_fast_recovery(now)
            elif self.in_recovery:
                if self.sack_ok:
                    self._sack_send = True     # RFC 6675 5 (C): send what the pipe allows
                else:
                    self.cc.cwnd += self.mss  # inflate (RFC 5681 3.2 step 4)
        # window update (RFC 9293 3.10.7.4): wl1 < seq, or wl1 == seq and wl2 <= ack
        wl1 = self.snd_wl1
        if ((wl1 - seg.seq) & MASK) >= HALF or (wl1 == seg.seq and (self.snd_wl2 == ack
                                                                   or ((self.snd_wl2 - ack) & MASK) >= HALF)):
            self.snd_wnd = wnd
            self.snd_wl1, self.snd_wl2 = seg.seq, ack
            if wnd > self.max_snd_wnd:
                self.max_snd_wnd = wnd
            if wnd:
                self.persist_at = None
                self.persist_backoff = 0
        return True

    def _enter_fast_recovery(self, now: float) -> None:
        flight = seq_sub(self.snd_max, self.snd_una)
        self.cc.on_loss_fast(flight, now)
        self.recover = self.snd_max
        self.in_recovery = True
        self.rexmit_next = self.snd_una
        self._retransmit_one = True          # the first lost segment, at once (RFC 6675 5 (4.3))
        if self.sack_ok:
            self.cc.cwnd = self.cc.ssthresh  # RFC 6675 5 (4.2): pipe, not inflation, paces recovery
            self._sack_send = True
        else:
            self.cc.cwnd = self.cc.ssthresh + DUPACK_THRESHOLD * self.mss
        self.stats["fast_retransmits"] += 1

    # ---- RFC 6675 loss recovery ----------------------------------------------------
    def _holes(self) -> list:
        """[(left, right, lost)] for the un-SACKed ranges below the highest SACKed
        byte. A hole is lost (RFC 6675 IsLost) when more than (DupThresh - 1) * SMSS
        bytes, or DupThresh blocks, are SACKed above it."""
        holes = []
        start = self.snd_una
        for left, right in self.sacked:
            if seq_lt(start, left):
                holes.append([start, left, False])
            start = right
        above_bytes = 0
        above_blocks = 0
        i = len(self.sacked) - 1
        for h in reversed(holes):
            while i >= 0 and seq_ge(self.sacked[i][0], h[1]):
                above_bytes += seq_sub(self.sacked[i][1], self.sacked[i][0])
                above_blocks += 1
                i -= 1
            h[2] = above_bytes > (DUPACK_THRESHOLD - 1) * self.mss or above_blocks >= DUPACK_THRESHOLD
        return holes

    def _pipe(self, holes) -> int:
        """RFC 6675 SetPipe: bytes believed in the network."""
        top = self.sacked[-1][1] if self.sacked else self.snd_una
        pipe = max(0, seq_sub(self.snd_max, top))          # above every SACK: in flight
        rx = self.rexmit_next
        for left, right, lost in holes:
            if not lost:
                pipe += seq_sub(right, left)
            if seq_gt(rx, left):                          # retransmitted part of the hole
                pipe += seq_sub(seq_min_(rx, right), left)
        return pipe

    def _sack_recovery_send(self, out: list, now: float) -> None:
        """Send while cwnd - pipe >= SMSS, choosing each segment by RFC 6675 NextSeg:
        (1) a lost hole above HighRxt (rexmit_next); (2) new data; (3) a hole not yet
        deemed lost; (4) once per recovery, a rescue retransmission of the highest
        outstanding unSACKed segment (a lost tail has no SACKs above it to mark it)."""
        holes = self._holes()
        pipe = self._pipe(holes)
        while self.cc.cwnd - pipe >= self.mss:
            seq = None
            rx = self.rexmit_next
            for left, right, lost in holes:
                if lost and seq_lt(rx, right):
                    seq = left if seq_lt(rx, left) else rx
                    break
            if seq is None:
                n = self._emit_new_in_recovery(out, now)
                if n > 0:
                    pipe += n
                    continue
                for left, right, _lost in holes:
                    if seq_lt(rx, right):
                        seq = left if seq_lt(rx, left) else rx
                        break
            if seq is not None:
                n = self._emit_data(seq, out, now, retransmit=True)
                if n <= 0:
                    break
                self.rexmit_next = seq_add(seq, n)
                pipe += n
                continue
            # (4) rescue: HighACK > RescueRxt (or none yet this recovery)
            if self.rescue_rxt is not None and not seq_gt(self.snd_una, self.rescue_rxt):
                break
            top = self.sacked[-1][1] if self.sacked else self.snd_una
            if seq_lt(top, self.snd_max):
                lo, hi = top, self.snd_max                 # the unSACKed tail
            elif holes:
                lo, hi = holes[-1][0], holes[-1][1]
            else:
                break
            if not seq_lt(rx, hi):
                break       # that data was retransmitted already (HighRxt is past it)
            start = hi - self.mss if seq_sub(hi, lo) > self.mss else lo
            n = self._emit_data(start & MASK, out, now, retransmit=True)
            if n <= 0:
                break
            self.rescue_rxt = self.recover
            self.stats["rescue_retransmits"] += 1
            pipe += n

    def _update_scoreboard(self, blocks) -> None:
        sb = self.sacked
        for left, right in blocks:
            if seq_le(right, self.snd_una) or seq_gt(right, self.snd_max) or not seq_lt(left, right):
                continue  # stale or bogus block
            sb.append((left, right))
        sb.sort(key=lambda b: seq_sub(b[0], self.snd_una))
        merged = []
        for left, right in sb:
            if merged and seq_le(left, merged[-1][1]):
                if seq_gt(right, merged[-1][1]):
                    merged[-1] = (merged[-1][0], right)
            else:
                merged.append((left, right))
        self.sacked = merged
        if not self.in_recovery and self.sack_ok and merged:
            sacked_bytes = sum(seq_sub(r, lft) for lft, r in merged)
            # RFC 6675 IsLost: more than DupThresh*SMSS sacked above snd_una
            if sacked_bytes > DUPACK_THRESHOLD * self.mss and seq_ge(self.snd_una, self.recover):
                self._enter_fast_recovery(0.0)

    def _trim_scoreboard(self) -> None:
        una = self.snd_una
        self.sacked = [(max_seq(left, una), r) for left, r in self.sacked if seq_gt(r, una)]

    def _receive_data(self, seq: int, payload, now: float, push: bool) -> None:
        rn = self.rcv_nxt
        off = seq_sub(rn, seq)
        if off > 0:
            payload = payload[off:]   # part already received
            seq = rn
        wnd = self._rcv_window()
        if len(payload) > wnd:
            payload = payload[:wnd]   # beyond the window
        if not payload:
            self.ack_now = True
            return
        if seq == rn:
            self.rq.append(payload)
            self.rq_bytes += len(payload)
            self.rcv_nxt = seq_add(rn, len(payload))
            had_ooo = bool(self.ooo)
            if had_ooo:
                self._drain_ooo()
                self.ack_now = True  # filling a hole: ACK at once (RFC 5681 4.2)
            self.events.append(EV_READABLE)
            self.unacked_segments += 1
            if self.unacked_segments >= 2 or len(payload) > self.mss:
                self.ack_now = True  # every second full segment (RFC 5681 4.2)
            elif self.delack_at is None:
                self.delack_at = now + self.cfg.delayed_ack
        else:
            # out of order: keep (bounded), ACK at once with SACK blocks
            self.ack_now = True
            if self.ooo_bytes + len(payload) > self.cfg.ooo_limit:
                self.stats["ooo_dropped"] += 1
                return
            for s, d in self.ooo:
                if s == seq and len(d) >= len(payload):
                    return
            self.ooo.append((seq, bytes(payload)))
            self.ooo.sort(key=lambda x: seq_sub(x[0], self.rcv_nxt))
            self.ooo_bytes += len(payload)
            self._last_ooo = seq

    def _drain_ooo(self) -> None:
        keep = []
        for seq, data in self.ooo:
            rn = self.rcv_nxt
            end = seq_add(seq, len(data))
            if seq_le(end, rn):
                self.ooo_bytes -= len(data)
                continue
            if seq_le(seq, rn):
                part = memoryview(data)[seq_sub(rn, seq):]
                self.rq.append(part)
                self.rq_bytes += len(part)
                self.rcv_nxt = end
                self.ooo_bytes -= len(data)
            else:
                keep.append((seq, data))
        self.ooo = keep

    def _sack_blocks(self) -> tuple:
        if not self.sack_ok or not self.ooo:
            return ()
        blocks = []
        for seq, data in self.ooo:
            end = seq_add(seq, len(data))
            if blocks and seq_le(seq, blocks[-1][1]):
                if seq_gt(end, blocks[-1][1]):
                    blocks[-1] = (blocks[-1][0], end)
            else:
                blocks.append((seq, end))
        # RFC 2018 4: the block with the most recent segment first
        if self._last_ooo is not None:
            for i, (left, right) in enumerate(blocks):
                if seq_le(left, self._last_ooo) and seq_lt(self._last_ooo, right):
                    blocks.insert(0, blocks.pop(i))
                    break
        return tuple(blocks[:3 if self.ts_ok else 4])

    def _rcv_window(self) -> int:
        # Out-of-order data sits inside this window (beyond the hole), so it is not
        # subtracted: counted twice, the window shrank as segments after a loss
        # arrived, the retransmission that fills the hole no longer fit (and was
        # trimmed away), and both peers dropped each other's ACKs as outside the
        # shrunken window -- an ACK war until both timed out (found by a soak of
        # random lossy links with small buffers). rq + ooo stays <= recv_buffer.
        return max(0, self.recv_buffer - self.rq_bytes)

    # ---- RTT / RTO (RFC 6298) ------------------------------------------------------
    def _rtt_sample_ack(self, seg: TcpRepr, now: float) -> None:
        self._rtt_sample(seg.ack, seg.timestamp[1] if seg.timestamp is not None else 0, now)

    def _rtt_sample(self, ack: int, tsecr: int, now: float) -> None:
        if self.ts_ok and tsecr:
            sample = ((int(now * 1000) - tsecr) & MASK) / 1000.0
            self.rtt_seq = None
            if sample > 3600:
                return
        elif self.rtt_seq is not None and ((self.rtt_seq - ack) & MASK) >= HALF:    # ack > rtt_seq
            sample = now - self.rtt_time
            self.rtt_seq = None
            if sample < 0.0:
                sample = 0.0
        else:
            return
        srtt = self.srtt
        if srtt is None:
            srtt = sample
            var = sample / 2
        else:
            d = srtt - sample
            var = 0.75 * self.rttvar + 0.25 * (d if d >= 0.0 else -d)
            srtt = 0.875 * srtt + 0.125 * sample
        self.srtt = srtt
        self.rttvar = var
        var *= 4
        rto = srtt + (var if var > 0.001 else 0.001)
        cfg = self.cfg
        self.rto = cfg.rto_min if rto < cfg.rto_min else (cfg.rto_max if rto > cfg.rto_max else rto)

    def _arm_rto(self, now: float, restart: bool = False) -> None:
        if self.rto_at is None or restart:
            self.rto_at = now + self.rto

    @staticmethod
    def _ts_now(now: float) -> int:
        return int(now * 1000) & MASK

    def _enter_time_wait(self, now: float) -> None:
        self._set_state(TIME_WAIT)
        self.timewait_at = now + self.cfg.time_wait
        self.rto_at = None
        self.persist_at = None
        self.keepalive_at = None

    def _finish(self, error: BaseException | None) -> None:
        """The connection is gone: CLOSED, timers off, events out."""
        if self.state is CLOSED and self.error is not None:
            return
        self._set_state(CLOSED)
        self.rto_at = self.delack_at = self.persist_at = self.keepalive_at = self.timewait_at = None
        if error is not None:
            self.error = error
            self.events.append(EV_ERROR)
            self.events.append(EV_READABLE)
            self.events.append(EV_WRITABLE)
        self.events.append(EV_CLOSED)

    def _fin_seq(self):
        """The sequence number of our FIN (once all data is queued behind it)."""
        if not self.fin_queued:
            return None
        return seq_add(self.snd_una, len(self.sbuf))

    # ---- output ---------------------------------------------------------------------
    def poll_at(self):
        if self.ack_now or self.rst_pending is not None:
            return 0.0
        t = None
        for x in (self.rto_at, self.delack_at, self.persist_at, self.keepalive_at, self.timewait_at):
            if x is not None and (t is None or x < t):
                t = x
        if self._can_send_data() or self._fin_to_send():
            return 0.0
        if self.keepalive and self.state is ESTABLISHED and self.keepalive_at is None:
            return self.last_recv + self.keepalive_idle
        return t

    def _seg(self, seq: int, ack: int, flags: int) -> TcpRepr:
        return TcpRepr(self.local_port, self.remote_port, seq, ack, flags, 0)

    def _fin_to_send(self) -> bool:
        """All data is sent and the FIN is due (first time, or again after an RTO)."""
        if not self.fin_queued or self.state not in (ESTABLISHED, CLOSE_WAIT, FIN_WAIT_1,
                                                      CLOSING, LAST_ACK):
            return False
        return self.snd_nxt == self._fin_seq()

    def _can_send_data(self) -> bool:
        offset = (self.snd_nxt - self.snd_una) & MASK
        avail = self.sbuf.size - offset
        if avail <= 0:
            return False
        if self.state not in _SENDING_STATES:
            return False
        wnd = min(self.snd_wnd, self.cc.cwnd) - offset
        if wnd <= 0:
            return False
        n = min(avail, wnd, self.max_segment())
        # RFC 9293 3.8.6.2.1: a full segment, or at least half the largest
        # window the peer ever offered (a peer whose buffer is below one MSS)
        if n >= self.mss or (n < avail and n >= self.max_snd_wnd // 2):
            return True
        # Nagle (RFC 896) in Minshall's variant: a segment smaller than the MSS
        # goes out only when no other small segment is unacknowledged, so a
        # request's tail is not held for a delayed ACK.
        return n == avail and (self.nodelay or self.fin_queued or seq_le(self.snd_sml, self.snd_una)
                               or seq_lt(self.snd_nxt, self.snd_max))  # resending after an RTO

    def max_segment(self) -> int:
        return max(self.mss, self.tso_max) if self.tso_max else self.mss

    def poll(self, now: float) -> list:
        """Run due timers; return [(TcpRepr, payload)] to send now."""
        out: list = []
        if self.rst_pending is not None:
            out.append((self.rst_pending, b""))
            self.rst_pending = None
        st = self.state
        if st is CLOSED:
            return out
        # timers
        if self.timewait_at is not None and now >= self.timewait_at:
            self._finish(None)
            return out
        if self.rto_at is not None and now >= self.rto_at:
            self._on_rto(now)
            if self.state is CLOSED:
                return out
        if self.delack_at is not None and now >= self.delack_at:
            self.ack_now = True
        if self.persist_at is not None and now >= self.persist_at:
            self._on_persist(now, out)
        if self.keepalive and self.state is ESTABLISHED:
            self._keepalive(now, out)
            if self.state is CLOSED:
                return out
        st = self.state
        if st is SYN_SENT:
            if self.snd_nxt == self.iss:
                out.append((self._syn(False, now), b""))
                # time the SYN for the first RTT sample, unless it is a retransmission (Karn)
                self.rtt_seq, self.rtt_time = (self.iss, now) if self.retries == 0 else (None, 0.0)
                self._sent(self.iss, 1, now)
            return out
        if st is SYN_RECEIVED:
            if self.snd_nxt == self.iss or self.ack_now:
                out.append((self._syn(True, now), b""))
                self._sent(self.iss, 1, now)
                self.ack_now = False
            return out
        if st is TIME_WAIT:
            if self.ack_now:
                out.append((self._ack_seg(self.snd_max, ACK, now), b""))
            return out
        # retransmission of one segment (fast retransmit / partial ack / SACK hole)
        if self._retransmit_one:
            self._retransmit_one = False
            seq = self._next_hole(self.rexmit_next)
            if seq is not None:
                n = self._emit_data(seq, out, now, retransmit=True)
                self.rexmit_next = seq_add(seq, n)
        if self._sack_send:
            self._sack_send = False
            if self.in_recovery:
                self._sack_recovery_send(out, now)
        # new data (and retransmissions after an RTO, which rewinds snd_nxt)
        while self._can_send_data():
            self._emit_data(self.snd_nxt, out, now)
        if self._fin_to_send():
            fin = self._fin_seq()
            out.append((self._ack_seg(fin, FIN | ACK, now), b""))
            self._sent(fin, 1, now)
            if self.state is ESTABLISHED:
                self._set_state(FIN_WAIT_1)
            elif self.state is CLOSE_WAIT:
                self._set_state(LAST_ACK)
        # zero window with nothing in flight (none sent yet, or an RTO rewound
        # snd_nxt and the window lets nothing go again): the persist timer probes
        # (RFC 9293 3.8.6.1). The RTO stands down: it has nothing to time, and its
        # retries would end a connection whose peer only has a full buffer.
        if self.snd_wnd == 0 and len(self.sbuf) > seq_sub(self.snd_nxt, self.snd_una) and \
                self.snd_nxt == self.snd_una and self.persist_at is None:
            self.rto_at = None
            self.persist_at = now + max(self.rto, self.cfg.rto_min)
        if self.ack_now:
            out.append((self._ack_seg(self._ack_seq(), ACK, now), b""))
        return out

    def _ack_seq(self) -> int:
        """The sequence number of a pure ACK: the highest sent (after an RTO
        snd_nxt is rewound, and an ACK numbered below what the peer already has
        would be dropped as old: both sides retransmitting at once would never
        hear each other's acknowledgements) -- except when the peer's window is
        zero: then it accepts only SEQ = RCV.NXT (RFC 9293 3.10.7.4), so an ACK
        numbered past data it dropped is dropped unread. Seen as a deadlock: data
        sent into a window that then closed, the ACKs of the other direction all
        dropped. SND.UNA is what the peer has acknowledged: at most its RCV.NXT,
        and if it is below, the peer's duplicate ACK tells us so. (Capping at
        SND.UNA + SND.WND whatever the window, as Linux does, fell below the
        peer's RCV.NXT when our ACKs had been lost: both peers then dropped each
        other's ACKs as old until both timed out.)"""
        return self.snd_una if self.snd_wnd == 0 else self.snd_max

    def _next_hole(self, start: int):
        """The first unacked, un-SACKed sequence number at or after start that
        is worth retransmitting, or None."""
        if seq_lt(start, self.snd_una):
            start = self.snd_una
        if not seq_lt(start, self.snd_max) or seq_ge(start, seq_add(self.snd_una, len(self.sbuf))):
            return None
        if not (self.sack_ok and self.sacked):
            return start
        for left, right in self.sacked:
            if seq_lt(start, left):
                return start
            if seq_lt(start, right):
                start = right
        return None  # beyond the highest SACKed byte: not known lost yet

    def _emit_data(self, seq: int, out: list, now: float, retransmit: bool = False) -> int:
        offset = seq_sub(seq, self.snd_una)
        room = min(self.snd_wnd, self.cc.cwnd) - seq_sub(self.snd_nxt, self.snd_una) if not retransmit else self.mss
        limit = self.max_segment() if not retransmit else self.mss
        if self.ooo and self.sack_ok:
            limit -= 4 + 8 * min(len(self.ooo), 3)  # room for the SACK option
        n = min(len(self.sbuf) - offset, limit, max(room, 0) if not retransmit else limit)
        if self.sack_ok and self.sacked and retransmit:
            for left, _right in self.sacked:
                if seq_lt(seq, left):
                    n = min(n, seq_sub(left, seq))  # stop at the next SACKed block
                    break
        if n <= 0:
            return 0
        data = self.sbuf.peek(offset, n, self.tso_max > 0)   # TSO: the device takes the pieces as they are
        flags = ACK | (PSH if offset + n == len(self.sbuf) else 0)
        out.append((self._ack_seg(seq, flags, now), data))
        end = seq_add(seq, n)
        if retransmit or seq_lt(seq, self.snd_max):
            self.stats["retransmits"] += 1
            if self.rtt_seq is not None and seq_le(seq, self.rtt_seq):
                self.rtt_seq = None  # Karn: no sample from retransmitted data
        elif self.rtt_seq is None and not self.ts_ok:
            self.rtt_seq = seq
            self.rtt_time = now
        if not retransmit:
            self.snd_nxt = end
        if n < self.mss:
            self.snd_sml = end
        if seq_gt(end, self.snd_max):
            self.snd_max = end
        self._arm_rto(now)
        return n

    def _emit_new_in_recovery(self, out: list, now: float) -> int:
        """New data during SACK recovery: bounded by the peer's window, not by cwnd
        (the caller's pipe check is the congestion control here)."""
        offset = seq_sub(self.snd_nxt, self.snd_una)
        avail = len(self.sbuf) - offset
        room = self.snd_wnd - offset
        n = min(avail, room, self.mss)
        if n <= 0:
            return 0
        data = self.sbuf.peek(offset, n)
        seq = self.snd_nxt
        out.append((self._ack_seg(seq, ACK | (PSH if offset + n == len(self.sbuf) else 0), now), data))
        self.snd_nxt = end = seq_add(seq, n)
        if seq_gt(end, self.snd_max):
            self.snd_max = end
        self._arm_rto(now)
        return n

    def _sent(self, seq: int, length: int, now: float) -> None:
        end = seq_add(seq, length)
        if seq_gt(end, self.snd_nxt):
            self.snd_nxt = end
        if seq_gt(end, self.snd_max):
            self.snd_max = end
        self._arm_rto(now)

    def _syn(self, with_ack: bool, now: float) -> TcpRepr:
        ts = (self._ts_now(now), self.ts_recent if with_ack else 0) if (self.cfg.timestamps and (
            not with_ack or self.ts_ok)) else None
        return TcpRepr(self.local_port, self.remote_port, self.iss, self.rcv_nxt if with_ack else 0,
                       SYN | (ACK if with_ack else 0), min(self._rcv_window(), 65535), 0, self.our_mss,
                       self.rcv_wscale if (self.cfg.window_scale and (not with_ack or self.ws_ok)) else None,
                       self.cfg.sack and (not with_ack or self.sack_ok), (), ts)

    def fast_output(self, now: float):
        """The fast path of poll() for its two most common outcomes, in ESTABLISHED
        (or CLOSE_WAIT) with no timer due, no FIN, no loss recovery and no SACK block to report:
        one pure ACK, or one segment of new data: all of it when it fits one MSS
        and both windows and Nagle lets it go, or with TSO a frame of up to
        tso_max bytes (at least one MSS) that the device cuts into segments.
        Returns (seq, ack, window field, timestamp option or None, payload, flags)
        with the bookkeeping of sending it done; IDLE (an empty tuple) when there
        is nothing to send and no timer but the RTO and the delayed ACK to keep;
        or None having changed nothing (then poll() decides). Call again while
        data is waiting."""
        st = self.state
        if (st is not ESTABLISHED and st is not CLOSE_WAIT) or self.rst_pending is not None \
                or self.ooo or self.fin_queued \
                or self.in_recovery or self._retransmit_one or self._sack_send or self.persist_at is not None \
                or (self.rto_at is not None and now >= self.rto_at):
            return None
        keepalive = self.keepalive and st is ESTABLISHED     # as in poll(): probes only there
        if keepalive and now >= self.last_recv + self.keepalive_idle:     # as _keepalive() decides
            return None
        seq = self.snd_nxt
        offset = (seq - self.snd_una) & MASK
        n = self.sbuf.size - offset
        if n > 0:
            if seq != self.snd_max:
                return None
            room = (self.snd_wnd if self.snd_wnd < self.cc.cwnd else self.cc.cwnd) - offset
            flags = ACK | PSH
            if n > self.mss:
                if not self.tso_max:
                    return None
                if n > room or n > self.tso_max:
                    n = room if room < self.tso_max else self.tso_max
                    if n < self.mss:
                        return None     # window-limited below one MSS: the SWS rules of poll()
                    flags = ACK         # more follows
            elif n > room:
                return None
            elif n < self.mss and not self.nodelay and ((self.snd_una - self.snd_sml) & MASK) >= 0x80000000:
                return None     # Nagle: a small segment is still unacknowledged
            payload = self.sbuf.peek(offset, n, n > 256 and self.tso_max > 0)
            end = (seq + n) & MASK
            self.snd_nxt = self.snd_max = end
            if n < self.mss:
                self.snd_sml = end
            if self.rtt_seq is None and not self.ts_ok:
                self.rtt_seq = seq
                self.rtt_time = now
            if self.rto_at is None:
                self.rto_at = now + self.rto
        elif self.ack_now or (self.delack_at is not None and now >= self.delack_at):
            seq = self.snd_max if self.snd_wnd else self.snd_una     # see _ack_seq
            payload = b""
            flags = ACK
        else:
            return None if keepalive else IDLE
        if keepalive:
            self.keepalive_probes = 0       # what _keepalive() does for a live connection
            self.keepalive_at = None
        raw = (self.recv_buffer - self.rq_bytes) >> self.rcv_wscale
        if raw > 65535:
            raw = 65535
        elif raw < 0:
            raw = 0
        self.last_ack_sent = self.rcv_nxt
        self.last_wnd_sent = raw << self.rcv_wscale
        self.ack_now = False
        self.delack_at = None
        self.unacked_segments = 0
        return (seq, self.rcv_nxt, raw, (int(now * 1000) & MASK, self.ts_recent) if self.ts_ok else None, payload,
                flags)

    def _ack_seg(self, seq: int, flags: int, now: float) -> TcpRepr:
        wnd = self._rcv_window()
        # never shrink the window we already offered (RFC 9293 3.8.6.2.2)
        raw = min(wnd >> self.rcv_wscale, 65535)
        self.last_ack_sent = self.rcv_nxt
        self.last_wnd_sent = raw << self.rcv_wscale
        # every segment we send acknowledges everything received so far
        self.ack_now = False
        self.delack_at = None
        self.unacked_segments = 0
        ts = (self._ts_now(now), self.ts_recent) if self.ts_ok else None
        sack = self._sack_blocks() if self.ooo else ()
        return TcpRepr(self.local_port, self.remote_port, seq, self.rcv_nxt, flags, raw, 0, None, None,
                       False, sack, ts)

    def _on_rto(self, now: float) -> None:
        st = self.state
        limit = self.cfg.syn_retries if st in (SYN_SENT, SYN_RECEIVED) else self.cfg.max_retries
        self.retries += 1
        self.stats["timeouts"] += 1
        if self.retries > limit:
            if st is SYN_RECEIVED and self.listener is not None:
                self._finish(None)
            else:
                self._finish(TimeoutError(110, "Connection timed out"))
            return
        self.rto = min(self.cfg.rto_max, self.rto * 2)   # back off (RFC 6298 5.5)
        self.rto_at = now + self.rto
        if st in (SYN_SENT, SYN_RECEIVED):
            self.snd_nxt = self.iss
            return
        flight = seq_sub(self.snd_max, self.snd_una)
        self.cc.on_loss_timeout(flight, now)
        self.in_recovery = False
        self.recover = self.snd_max
        self.dupacks = 0
        self.sacked = []  # RFC 6675 5.1: the scoreboard may be stale after an RTO
        self.rtt_seq = None
        self.snd_nxt = self.snd_una      # go back and resend from the first unacked byte (or the FIN)

    def _on_persist(self, now: float, out: list) -> None:
        self.persist_at = None
        if self.snd_wnd != 0:
            return
        offset = seq_sub(self.snd_nxt, self.snd_una)
        if len(self.sbuf) > offset:
            # zero-window probe: one byte beyond the window (RFC 9293 3.8.6.1)
            data = self.sbuf.peek(offset, 1)
            out.append((self._ack_seg(self.snd_nxt, ACK, now), data))
            self.snd_nxt = seq_add(self.snd_nxt, 1)
            if seq_gt(self.snd_nxt, self.snd_max):
                self.snd_max = self.snd_nxt
        self.persist_backoff += 1
        self.persist_at = now + min(self.cfg.rto_max, max(self.rto, self.cfg.rto_min) * (2 ** self.persist_backoff))

    def _keepalive(self, now: float, out: list) -> None:
        # `now < last_recv + idle`, the very sum poll_at() reports: written as
        # `now - last_recv < idle` it can differ in the last bit, and a timer due
        # by one test and not by the other fires again and again without a probe
        active = now < self.last_recv + self.keepalive_idle
        if self.keepalive_probes and active:
            self.keepalive_probes = 0
            self.keepalive_at = None
        if active:
            self.keepalive_at = None
            return
        if self.keepalive_at is None or now >= self.keepalive_at:
            if self.keepalive_probes >= self.keepalive_count:
                self._finish(TimeoutError(110, "Connection timed out (keepalive)"))
                return
            # RFC 1122 4.2.3.6: SEG.SEQ = SND.NXT-1, no data
            out.append((self._ack_seg(seq_add(self.snd_max, -1), ACK, now), b""))
            self.keepalive_probes += 1
            self.keepalive_at = now + self.keepalive_interval


def max_seq(a: int, b: int) -> int:
    return b if seq_lt(a, b) else a


def seq_min_(a: int, b: int) -> int:
    return a if seq_lt(a, b) else b
