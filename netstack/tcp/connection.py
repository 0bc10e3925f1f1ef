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
(`keepalive_at`), TIME-WAIT / SYN timeouts and an orphaned FIN-WAIT-2's
(`timewait_at`).
"""

from __future__ import annotations


from bisect import bisect_right

from frames import Gather
from ..wire.seq import HALF, MASK, seq_add
from ..wire.tcp import RST, TcpRepr
from . import congestion
from .rate import RateLimit
from .receive import ReceiveSide
from .recovery import AckAndRecovery
from .send import SendSide
from .rack import RackTlp
from .undo import Undo
from .delivery import RateAndPacing
from .rules import MAX_WINDOW_SHIFT
from .state import (TRANSITIONS, CAN_RECEIVE, CAN_SEND, CLOSED, ESTABLISHED, EV_CLOSED, EV_CONNECTED,
                    EV_ERROR, EV_READABLE, EV_WRITABLE, FIN_WAIT_2, LISTEN,
                    SYN_RECEIVED, SYN_SENT, SYNCHRONIZED, TIME_WAIT, State)

__all__ = ["TCB", "SendBuffer", "TcpError"]

_NEVER = float("inf")



class TcpError(Exception):
    pass


COUNTERS = frozenset((
    "retransmits", "timeouts", "fast_retransmits", "rescue_retransmits", "challenge_acks",
    "challenge_acks_suppressed", "dup_acks", "tlp_probes", "tlp_recoveries", "lost_retransmits",
    "dsacks_received", "rack_losses", "spurious_rtos", "undo_frto", "undo_dsack", "resets_sent",
    "ooo_dropped", "paws_dropped", "unacceptable_dropped", "bad_segments",
    # what an RTO interrupted, as Linux splits its TCPTimeouts: SACK recovery (TCPSackFailures),
    # an earlier timeout's go-back-N (TCPLossFailures), a lost retransmission at the head
    "timeouts_in_recovery", "timeouts_after_timeout", "timeouts_retransmission_lost", "undo_eifel"))


class TcbStats(dict):
    """A connection's counters, sparse: a counter never incremented is not
    stored (an idle connection's 19 zeros were a 464-byte dict) and reads as 0;
    a name outside COUNTERS is an error, as a misspelt counter should be."""

    __slots__ = ()

    def __missing__(self, name: str) -> int:
        if name in COUNTERS:
            return 0
        raise KeyError(name)


class SendBuffer:
    """Bytes from SND.UNA on, as a list of chunks and the stream offset at which
    each starts: peek() finds its chunk by binary search (a walk from the first
    chunk cost O(window) per segment: under loss, with a BBR window of hundreds
    of chunks, it was 9% of a server's CPU), and an ACK drops the chunks it
    covers with one slice deletion. Lists, not deques (an empty deque holds a
    760-byte block); none at all while the buffer is empty, as an idle
    connection's is."""

    __slots__ = ("chunks", "starts", "base", "size")

    def __init__(self) -> None:
        self.chunks: list | tuple = ()     # () while empty
        self.starts: list | tuple = ()     # stream offset of each chunk's first byte
        self.base = 0   # stream offset of the byte at SND.UNA
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
            if self.size:
                self.chunks.append(data)
                self.starts.append(self.base + self.size)
            else:
                self.chunks = [data]
                self.starts = [self.base]
            self.size += n

    def peek(self, offset: int, n: int, gather: bool = False):
        """Up to n bytes starting offset bytes after SND.UNA: one buffer, or with
        gather=True a Gather of the chunks' pieces when they span chunks (no copy)."""
        n = min(n, self.size - offset)
        if n <= 0:
            return b""
        chunks = self.chunks
        starts = self.starts
        pos = self.base + offset
        i = bisect_right(starts, pos) - 1 if len(chunks) > 1 else 0
        c = chunks[i]
        pos -= starts[i]
        lc = len(c)
        if pos + n <= lc:       # within one chunk: the common case
            return c if pos == 0 and n == lc else memoryview(c)[pos:pos + n]
        out = [memoryview(c)[pos:]]
        need = n - (lc - pos)
        while need:
            i += 1
            c = chunks[i]
            lc = len(c)
            if lc >= need:
                out.append(memoryview(c)[:need])
                break
            out.append(memoryview(c))
            need -= lc
        return Gather(out) if gather else b"".join(out)

    def consume(self, n: int) -> None:
        n = min(n, self.size)
        if n <= 0:
            return
        self.size -= n
        self.base += n
        if not self.size:
            self.chunks = self.starts = ()
            return
        k = bisect_right(self.starts, self.base) - 1    # the chunk that now holds SND.UNA
        if k:
            del self.chunks[:k]
            del self.starts[:k]


class TCB(ReceiveSide, AckAndRecovery, SendSide, RackTlp, Undo, RateAndPacing):
    # Slots: about 80 attributes are more than CPython shares dict keys for (30),
    # so without them every TCB carries a full dict built key by key, and
    # attribute reads on the per-segment paths go through a dict lookup.
    __slots__ = ('_last_ooo', '_retransmit_one', '_sack_send', '_was_writable', 'ack_now', 'cc', 'cfg',
                 'delack_at', 'dupacks', 'error', 'events', 'fin_queued', 'fin_received', 'in_recovery', 'irs',
                 'iss', 'keepalive', 'keepalive_at', 'keepalive_count', 'keepalive_idle', 'keepalive_interval',
                 'keepalive_probes', 'last_ack_sent', 'last_recv', 'last_wnd_sent', 'listener', 'local_ip',
                 'local_port', 'max_snd_wnd', 'mss', 'nodelay', 'ev_append', 'ev_readable', 'ooo', 'ooo_blocks', 'ooo_bytes', 'sack_memo',
                 'our_mss', 'owner', 'persist_at', 'persist_backoff', 'rcv_nxt', 'rcv_wscale', 'recover',
                 'recv_buffer', 'remote_ip', 'remote_port', 'rescue_rxt', 'retries', 'rexmit_next', 'rtx_high', 'rq',
                 'rq_bytes', 'rst_pending', 'rto', 'rto_at', 'rtt_seq', 'rtt_time', 'rttvar', 'sack_ok',
                 'sacked', 'sacked_total', 'sbuf', 'sched_at', 'send_limit', 'snd_max', 'snd_nxt', 'snd_sml', 'snd_una',
                 'snd_wl1', 'snd_wl2', 'snd_wnd', 'snd_wscale', 'srtt', 'state', 'stats', 'syn_acked',
                 'timewait_at', 'ts_ok', 'ts_recent', 'ts_recent_age', 'tso_max', 'tx_cache',
                 'trace', 'orphaned', 'unacked_segments', 'ws_ok', 'challenge_limit', 'user_timeout', 'stalled_since',
                 'mss_agreed', 'path_mtu', 'tlp_at', 'tlp_end', 'tlp_retrans', 'tlp_dsack', 'xmit', 'xmit_order',
                 'rack_xmit_ts', 'rack_end', 'rack_rtt', 'rack_at', 'rack_lost', 'reo_wnd_mult', 'reo_wnd_persist', 'dsack_round',
                 'min_rtt', 'dsack', 'undo_cwnd', 'undo_ssthresh', 'undo_retrans', 'undo_seqs', 'undo_first', 'frto', 'frto_quota', 'prr_delivered', 'prr_out', 'prr_recover_fs', 'prr_last_delivered', 'prr_fresh', 'prr_window',
                 'delivery', 'pacer', 'early_acks', 'rcv_space', 'rcv_space_seq', 'rcv_space_at', 'snd_grow',
                 "__weakref__")

    # The timer model: each timer is one of these attributes, a deadline or None
    # (stopped). poll_at() follows from them (_next_deadline); _stop_timers and
    # _arm_persist keep the exclusive ones exclusive.
    TIMERS = ("rto_at", "tlp_at", "rack_at", "delack_at", "persist_at", "keepalive_at", "timewait_at")

    def __init__(self, cfg, local_ip: bytes, local_port: int, remote_ip: bytes, remote_port: int,
                 iss: int, now: float, mss_limit: int | None = None, tso_max: int = 0) -> None:
        self.cfg = cfg
        self.trace = None       # called with (tcb, old state, new state) on every state change
        self.challenge_limit = None   # the stack's RateLimit of challenge ACKs (the Interface sets it)
        self.user_timeout = cfg.user_timeout     # RFC 5482: 0 = off
        self.stalled_since = None     # when data last went out with nothing acknowledged since (user timeout)
        self.local_ip, self.local_port = local_ip, local_port
        self.remote_ip, self.remote_port = remote_ip, remote_port
        self.tx_cache = None    # the interface's per-connection header template (iface.tx.TcpTemplate)
        self.state = CLOSED
        self.events: list = []
        # the fast path's one event as a C-level call, ev_append(ev_readable): the
        # Interface rebinds both (its event list's shared append, (tcb, READABLE))
        self.ev_append = self.events.append
        self.ev_readable = EV_READABLE
        self.error: BaseException | None = None
        self.listener = None
        self._init_send(iss)
        self._init_receive(cfg, mss_limit, tso_max, now)
        self._init_timers(cfg, iss, now)
        self.delivery = self.pacer = None     # delivery rate samples and pacing (paced cc only)
        self._use_cc(congestion.make(cfg.congestion, 536, cfg.initial_cwnd_segments), now)
        self.rst_pending: TcpRepr | None = None
        self._init_buffers(cfg)
        self.stats = TcbStats()
        self._was_writable = True
        self.sched_at: float | None = None   # the Interface's timer-heap bookkeeping
        self.owner = None                     # called with self after a user call changes what to send

    def _init_buffers(self, cfg) -> None:
        """The receive budget (what the window offers) and the send limit, fixed at
        cfg.recv_buffer / cfg.send_buffer, or auto-tuned from the *_initial sizes
        up to them (receive: _rcv_space_adjust; send: _grow_send_limit)."""
        self.recv_buffer = cfg.recv_buffer
        self.send_limit = cfg.send_buffer
        self.rcv_space = 0           # bytes the application read in the last measured RTT (0: not yet measured)
        self.rcv_space_seq = 0       # where that measurement started: the first byte not yet read then
        self.rcv_space_at = _NEVER   # when the next measurement is due (never: the budget is fixed)
        self.snd_grow = False        # the send limit still grows with cwnd
        first = cfg.recv_buffer_initial
        if first is not None and first < cfg.recv_buffer:
            # at least what the SYN (and a cookie SYN-ACK) may offer, so the right edge never moves left
            self.recv_buffer = max(first, min(cfg.recv_buffer, 65535))
            self.rcv_space_at = -_NEVER
        first = cfg.send_buffer_initial
        if first is not None and first < cfg.send_buffer:
            self.send_limit = first
            self.snd_grow = True

    def _init_send(self, iss: int) -> None:
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

    def _init_receive(self, cfg, mss_limit, tso_max: int, now: float) -> None:
        self.irs = 0
        self.rcv_nxt = 0
        self.rq: list = []           # in-order data not yet read (a list: an empty deque holds 760 bytes)
        self.rq_bytes = 0
        self.ooo: list | tuple = ()  # sorted [(seq, bytes)]; () while empty (an idle connection holds no list)
        self.ooo_blocks: list | tuple = ()   # what ooo covers: sorted, merged [left, right] (the SACK blocks)
        self.ooo_bytes = 0
        self.sack_memo = None        # (dsack, blocks): the SACK blocks last built, until the out-of-order queue changes
        self.fin_received = False
        self.last_ack_sent = 0
        self.last_wnd_sent = 0
        # options
        self.our_mss = cfg.mss if mss_limit is None else min(cfg.mss, mss_limit)
        self.mss = self.mss_agreed = 536     # RFC 9293 3.7.1 default until the peer says
        self.path_mtu = None         # a path MTU below the link's, learned from ICMP (the Interface sets it)
        self.tso_max = tso_max
        self.rcv_wscale = 0
        self.snd_wscale = 0
        self.ws_ok = False
        self.ts_ok = False
        self.ts_recent = 0
        self.ts_recent_age = now
        self.sack_ok = False
        self.sacked: list | tuple = ()   # peer's SACK scoreboard: merged [(left, right)]; () while empty
        self.sacked_total = 0            # the bytes it covers

    def _init_timers(self, cfg, iss: int, now: float) -> None:
        """Timers, RTT (RFC 6298) and loss recovery state."""
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
        self.orphaned = False       # the application has let go of it (orphan())
        self.last_recv = now
        self.nodelay = False
        # loss recovery
        self.dupacks = 0
        self.in_recovery = False
        self.recover = iss
        self.rexmit_next = iss
        self.rtx_high = iss         # the end of the highest retransmission sent (recovery.py _in_flight_again)
        self.rescue_rxt = None      # RFC 6675 RescueRxt
        self._retransmit_one = False  # poll(): resend one segment (fast retransmit, partial ACK)
        self._sack_send = False       # poll(): send what the pipe allows (RFC 6675)
        self._last_ooo = None         # start of the latest out-of-order segment (first SACK block)
        self.tlp_at = None            # the probe timeout (RFC 8985 7)
        self.tlp_end = None           # SND.MAX after the outstanding probe, None: no probe out
        self.tlp_retrans = False      # the probe was a retransmission
        self.tlp_dsack = False        # a D-SACK arrived during the probe's episode
        self.xmit_order = None        # RACK: the same entries less the SACKed ones, by send time {id: entry}
        self.xmit = None              # RACK: [start, end, sent at, retransmitted, sacked] per segment in flight
        self.rack_xmit_ts = None      # RACK.xmit_ts: the latest send time among delivered segments
        self.rack_end = 0             # RACK.end_seq
        self.rack_rtt = 0.0           # RACK.rtt
        self.rack_at = None           # the reordering timer (RFC 8985 6.3)
        self.rack_lost = None         # starts of the segments RACK marked lost
        self.reo_wnd_mult = 1
        self.reo_wnd_persist = 0
        self.dsack_round = None       # RACK.dsack_round: SND.NXT when reo_wnd last widened
        self.min_rtt = None
        self.dsack = None             # a duplicate segment to report in the next ACK's first SACK block (RFC 2883)
        self.early_acks = None        # ACKs of earlier out-of-order segments of this batch, sent first by poll()
        self.undo_cwnd = self.undo_ssthresh = 0   # the window before a reduction (undo.py)
        self.undo_retrans = -1        # retransmissions of the episode not yet D-SACKed; -1: nothing to undo
        self.undo_seqs = None         # their sequence numbers
        self.undo_first = None        # (TSval, seq) of the episode's first retransmission (Eifel, undo.py)
        self.frto = 0                 # F-RTO step after a timeout (0: off)
        self.frto_quota = 0           # new segments F-RTO may still send
        self.prr_delivered = 0        # proportional rate reduction (RFC 6937): bytes delivered in recovery,
        self.prr_out = 0              # ... bytes sent in recovery,
        self.prr_recover_fs = 1       # ... the flight when recovery began,
        self.prr_last_delivered = 0   # ... and what the latest ACK delivered
        self.prr_fresh = False        # an ACK came since the recovery's send loop last ran
        self.prr_window = 0           # pipe + what PRR allowed then: room a loss found later frees

    # ---- state -------------------------------------------------------------
    def _set_state(self, new: State) -> None:
        """Every state change goes through here: checked against TRANSITIONS (an
        illegal one raises, naming both states) and handed to the trace hook."""
        old = self.state
        if new not in TRANSITIONS[old]:
            raise TcpError(f"illegal TCP state change {old.value} -> {new.value}")
        self.state = new
        if self.trace is not None:
            self.trace(self, old, new)

    def _queue_rst(self, seq: int) -> None:
        """A RST for poll() (or the Interface, if the TCB is gone first) to send, counted."""
        self.rst_pending = self._seg(seq, 0, RST)
        self.stats["resets_sent"] += 1

    def _challenge_ack(self, now: float) -> None:
        """RFC 5961: answer a suspicious segment (an in-window RST or SYN, too old
        an ACK) with an ACK -- within the stack's rate limit (section 7), so a
        flood of forged segments does not become a flood of our ACKs."""
        limit = self.challenge_limit
        if limit is None:
            limit = self.challenge_limit = RateLimit(self.cfg.challenge_ack_limit)
        if limit.allow(now):
            self.stats["challenge_acks"] += 1
            self.ack_now = True
        else:
            self.stats["challenge_acks_suppressed"] += 1

    # ---- timers ----------------------------------------------------------------
    def timers(self) -> dict:
        """{timer: deadline} of the armed timers (the model poll_at follows)."""
        return {name: getattr(self, name) for name in self.TIMERS if getattr(self, name) is not None}

    def _next_deadline(self):
        """The earliest armed timer of TIMERS (written out: no tuple per call, it
        runs after every fast-path output)."""
        t = self.rto_at
        x = self.tlp_at
        if x is not None and (t is None or x < t):
            t = x
        x = self.rack_at
        if x is not None and (t is None or x < t):
            t = x
        x = self.delack_at
        if x is not None and (t is None or x < t):
            t = x
        x = self.persist_at
        if x is not None and (t is None or x < t):
            t = x
        x = self.keepalive_at
        if x is not None and (t is None or x < t):
            t = x
        x = self.timewait_at
        if x is not None and (t is None or x < t):
            t = x
        return t

    def _stop_timers(self) -> None:
        self.rto_at = self.tlp_at = self.rack_at = self.delack_at = self.persist_at = self.keepalive_at = None
        self.timewait_at = None

    def _arm_persist(self, now: float, t: float) -> None:
        """The persist timer replaces the RTO: with nothing in flight it has
        nothing to time, and its retries would end a connection whose peer only
        has a full buffer (RFC 9293 3.8.6.1). Zero-window probing counts for the
        user timeout (as on Linux) from when it starts."""
        self.rto_at = None
        if self.stalled_since is None:
            self.stalled_since = now
        self.persist_at = self._clamp_to_user_timeout(t)

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
        self.mss = self.mss_agreed = max(64, min(self.our_mss, mss))
        self.cc.start(self.mss)
        self.ws_ok = self.ts_ok = self.sack_ok = False
        self._apply_path_mtu()
        self.rcv_wscale = self.snd_wscale = 0
        self.snd_wnd = self.max_snd_wnd = ack_seg.window
        self.snd_wl1, self.snd_wl2 = ack_seg.seq, ack_seg.ack
        # the listener's cookie SYN-ACK offered min(recv_buffer, 65535), unscaled
        self.last_ack_sent = self.rcv_nxt
        self.last_wnd_sent = min(self.recv_buffer, 65535)
        self.syn_acked = True
        self._set_state(ESTABLISHED)
        self.events.append(EV_CONNECTED)

    def _choose_wscale(self) -> None:
        s = 0
        if self.cfg.window_scale:
            if self.cfg.wscale is not None:
                s = min(self.cfg.wscale, MAX_WINDOW_SHIFT)
            else:
                while (self.cfg.recv_buffer >> s) > 65535 and s < MAX_WINDOW_SHIFT:    # the budget's ceiling
                    s += 1
        self.rcv_wscale = s

    def _take_syn_options(self, syn: TcpRepr) -> None:
        peer_mss = syn.mss if syn.mss is not None else 536
        self.mss = max(64, min(self.our_mss, peer_mss))
        self.cc.start(self.mss)      # the initial window counts the MSS without options, as before
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
            self.cc.set_mss(self.mss)
        self.mss_agreed = self.mss
        self._apply_path_mtu()

    def _path_mss(self, mtu: int) -> int:
        return max(64, mtu - 40 - (12 if self.ts_ok else 0))

    def _apply_path_mtu(self) -> None:
        """At the handshake: a path MTU already known to the peer caps the MSS."""
        if self.path_mtu is not None and self._path_mss(self.path_mtu) < self.mss:
            self.mss = self._path_mss(self.path_mtu)
            self.cc.set_mss(self.mss)

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
            del rq[0]
        else:
            rq[0] = out[max_bytes:]
            out = out[:max_bytes]
            n = max_bytes
        self.rq_bytes -= n
        # window update if the window grew by 2 MSS or half the buffer (RFC 9293 3.8.6.2.2)
        st = self.state
        if st is ESTABLISHED or st in CAN_RECEIVE:
            # by how much the right edge we could offer now passes the one we offered
            # (never more than the window field can say: without window scaling
            # 65535, so a big buffer does not make every read send an update)
            offer = self.recv_buffer - self.rq_bytes
            cap = 65535 << self.rcv_wscale
            if offer > cap:
                offer = cap
            grown = ((self.rcv_nxt + offer - self.last_ack_sent - self.last_wnd_sent) & MASK)
            if grown >= HALF:
                grown = 0
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
        """Choose this connection's congestion control: "newreno", "cubic" or "bbr"."""
        cc = congestion.make(name, self.mss, self.cfg.initial_cwnd_segments)
        cc.adopt(self.cc)
        self._use_cc(cc, self.last_recv)

    def set_user_timeout(self, seconds: float) -> None:
        """RFC 5482 / Linux TCP_USER_TIMEOUT: how long sent data may stay
        unacknowledged (or the peer's window closed under our probes) before the
        connection is dropped with ETIMEDOUT. 0 turns it off."""
        if not seconds >= 0:
            raise ValueError(f"user timeout must be >= 0 seconds, not {seconds!r}")
        self.user_timeout = seconds
        if self.rto_at is not None:
            self.rto_at = self._clamp_to_user_timeout(self.rto_at)
        self._changed()

    def set_nodelay(self, nodelay: bool) -> None:
        self.nodelay = nodelay
        self._changed()

    def orphan(self, now: float) -> None:
        """The application has closed both directions and holds the connection no
        more: once our FIN is ACKed, FIN-WAIT-2 waits at most cfg.fin_timeout for
        the peer's FIN (Linux's tcp_fin_timeout); a peer that never sends one --
        or an off-path host that ACKed our FIN -- cannot hold it for ever."""
        self.orphaned = True
        if self.state is FIN_WAIT_2:
            self._fin_wait_2_timer(now)

    def _fin_wait_2_timer(self, now: float) -> None:
        if self.orphaned and self.cfg.fin_timeout > 0 and self.timewait_at is None:
            self.timewait_at = now + self.cfg.fin_timeout
            self._changed()

    def abort(self) -> None:
        """Reset the connection now (RFC 9293 ABORT)."""
        if self.state in SYNCHRONIZED or self.state is SYN_RECEIVED:
            self._queue_rst(self.snd_max)
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

    def icmp_quote_ok(self, seq: int) -> bool:
        """RFC 5927 4.1: an ICMP error is acted on only if the sequence number of
        the segment it quotes was sent and not yet acknowledged
        (SND.UNA <= SEG.SEQ < SND.NXT); an off-path attacker has to guess it."""
        return ((seq - self.snd_una) & MASK) < ((self.snd_max - self.snd_una) & MASK)

    def set_path_mtu(self, mtu: int) -> None:
        """The path MTU to the peer changed (RFC 1191): the MSS follows it, never
        above what the handshake agreed. Lower: resend what is in flight in the
        smaller size. Higher (a learned PMTU expired): larger segments from now on."""
        self.path_mtu = mtu
        new = min(self.mss_agreed, self._path_mss(mtu))
        if new < self.mss:
            self.mss = new
            self.cc.set_mss(new)
            self.snd_nxt = self.snd_una  # resend with the smaller size
            self.ack_now = True
        elif new > self.mss:
            self.mss = new
            self.cc.set_mss(new)

    def fail(self, error: BaseException) -> None:
        """The connection cannot go on (its neighbour never answered ARP...):
        CLOSED with `error` for the user."""
        self._finish(error)

    def icmp_unreachable(self, code: int) -> None:
        if self.state is SYN_SENT and code in (2, 3):
            self._finish(ConnectionRefusedError(111, "Connection refused"))

    # ---- input -----------------------------------------------------------------
    def _enter_time_wait(self, now: float) -> None:
        self._set_state(TIME_WAIT)
        self._stop_timers()         # TIME-WAIT's own timer is the only one left (its ACKs go at once)
        self.timewait_at = now + self.cfg.time_wait

    def _finish(self, error: BaseException | None) -> None:
        """The connection is gone: CLOSED, timers off, events out."""
        if self.state is CLOSED:
            if self.error is not None:
                return
        else:
            self._set_state(CLOSED)
        self._stop_timers()
        if error is not None:
            self.error = error
            self.events.append(EV_ERROR)
            self.events.append(EV_READABLE)
            self.events.append(EV_WRITABLE)
        self.events.append(EV_CLOSED)
