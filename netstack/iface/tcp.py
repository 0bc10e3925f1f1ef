"""TCP's demux: segments to their TCB, SYNs to listeners (with SYN cookies
under a flood), RSTs for segments of no connection (RFC 9293 3.10.7.1); the
TCP API (listen, connect); and a TCB's life in the interface (adopt, collect)."""

from __future__ import annotations

import logging

from ..tcp import TCB, Listener
from ..tcp.state import CLOSED, EV_READABLE
from ..wire import TcpRepr, ip_to_str
from ..wire.tcp import ACK, FIN, RST, SYN, reset_for

__all__ = ["TcpLayer", "EventSink"]

_MASK = 0xFFFFFFFF


class EventSink:
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


_log = logging.getLogger("tcp")


def _log_state(tcb, old, new) -> None:
    """The trace hook the tcp logger installs at debug level: every state change."""
    _log.debug("%s:%d <-> %s:%d %s -> %s", ip_to_str(tcb.local_ip), tcb.local_port, ip_to_str(tcb.remote_ip),
               tcb.remote_port, old.value, new.value)


def _ignore_event(_ev) -> None:
    return None


class TcpLayer:
    # ---- input ------------------------------------------------------------------------
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
            self._listener_syn(lst, key, src, seg, now)
            return
        if lst is not None and flags & ACK and not flags & (SYN | RST) and self.cfg.tcp.syn_cookies:
            if self._listener_cookie_ack(lst, key, src, seg, payload, now):
                return
        self._reset_stray(src, seg, payload, now)

    def _listener_syn(self, lst: Listener, key, src: bytes, seg: TcpRepr, now: float) -> None:
        cookies = self.cfg.tcp.syn_cookies
        if cookies and seg.src_port and not lst.accept_queue_full() and (cookies == "always" or lst.syn_queue_full()):
            # SYN flood (or just many clients): answer without keeping state
            cookie, _mss = self.cookies.make(key, seg.seq, seg.mss, now)
            synack = TcpRepr(seg.dst_port, seg.src_port, cookie, (seg.seq + 1) & _MASK, SYN | ACK,
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
        tcb = self._new_tcb(key, self.isn.isn(key, now), now)
        lst.add_half_open(tcb)
        tcb.open_passive(seg, now)
        self._touch(tcb)

    def _listener_cookie_ack(self, lst: Listener, key, src: bytes, seg: TcpRepr, payload, now: float) -> bool:
        """The ACK that ends a SYN-cookie handshake: True when it was handled."""
        mss = self.cookies.check(key, seg.ack, (seg.seq - 1) & _MASK, now)
        if mss is not None and not lst.accept_queue_full():
            tcb = self._new_tcb(key, (seg.ack - 1) & _MASK, now)
            tcb.open_from_cookie(seg, mss, now)
            lst.stats["syn_cookies_accepted"] += 1
            lst.established(tcb)
            if len(payload) or seg.flags & FIN:
                tcb.on_segment(seg, payload, now)
            self._touch(tcb)
            return True
        if mss is not None:
            # a good cookie but no room to accept: drop the ACK, as Linux does;
            # the client's next transmission tries again
            lst.stats["accept_queue_overflow"] += 1
            self.drop("tcp_listen_queue_full")
            return True
        lst.stats["syn_cookies_rejected"] += 1
        return False

    def _reset_stray(self, src: bytes, seg: TcpRepr, payload, now: float) -> None:
        """No connection: answer with RST (RFC 9293 3.10.7.1), never to a RST."""
        self.drop("tcp_no_connection")
        rst = reset_for(seg, len(payload))
        if rst is None:
            return
        self.counters["tx_tcp_rst"] += 1
        self._send_tcp(src, rst, b"", now)

    # ---- API ----------------------------------------------------------------------------
    def tcp_listen(self, port: int, backlog: int = 128, syn_backlog: int | None = None) -> Listener:
        if port in self.listeners:
            raise OSError(98, "bind: Address already in use")
        lst = Listener(port, backlog, syn_backlog or self.cfg.tcp.syn_backlog)
        lst.events = EventSink(lst, self.events)
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
        tcb = self._new_tcb(key, self.isn.isn(key, now), now)
        if congestion is not None:
            tcb.set_congestion(congestion)
        tcb.open_active(now)
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

    # ---- a TCB's life in the interface ----------------------------------------------------
    def _new_tcb(self, key, iss: int, now: float) -> TCB:
        """A TCB for `key`, wired to this interface: its events and user calls come here."""
        local_ip, local_port, remote_ip, remote_port = key
        tcb = TCB(self.cfg.tcp, local_ip, local_port, remote_ip, remote_port, iss, now,
                  self._route_mss(remote_ip), self.cfg.tso_max)
        tcb.owner = self._dirty_add     # a C call: user calls on the TCB mark it due
        tcb.challenge_limit = self.challenge_acks      # one rate limit for the whole stack
        if remote_ip in self.path_mtu:
            mtu = self.path_mtu_to(remote_ip, now)
            if mtu < self.cfg.mtu:
                tcb.path_mtu = mtu
        if _log.isEnabledFor(logging.DEBUG):      # per connection, never per segment
            tcb.trace = _log_state
        tcb.events = EventSink(tcb, self.events)
        tcb.ev_append = self._events_append     # one bound method for all TCBs
        tcb.ev_readable = (tcb, EV_READABLE)
        self.tcbs[key] = tcb
        return tcb

    def _touch(self, tcb: TCB) -> None:
        self.dirty.add(tcb)

    def _collect(self, tcb: TCB) -> None:
        if tcb.state is not CLOSED:
            return
        k = tcb.four_tuple
        if self.tcbs.get(k) is tcb:
            del self.tcbs[k]
            c = self.counters
            for name, v in tcb.stats.items():   # the connection's counters live on in the stack's totals
                if v:
                    c["tcp_" + name] += v
        if tcb.listener is not None:
            tcb.listener.forget(tcb)
            tcb.listener = None
        if tcb.rst_pending is not None:
            self._send_tcp(tcb.remote_ip, tcb.rst_pending, b"", 0.0)
            tcb.rst_pending = None
        # _new_tcb's hooks refer to the TCB itself: cut those reference cycles, so
        # a finished connection is freed when its last user lets go of it
        # instead of waiting for (and paying for) the cyclic GC
        tcb.events = []
        tcb.ev_append = _ignore_event
        tcb.ev_readable = None
        self._forget_timer(tcb)

    def pop_events(self) -> list:
        """[(tcb | listener | udp endpoint | dhcp client, Event)] since the last call."""
        for tcb in self.dirty:
            if tcb.state is CLOSED:     # a connection ended: forget the closed ones
                for t in [t for t in self.dirty if t.state is CLOSED]:
                    self._collect(t)
                break
        out = self.events[:]
        self.events.clear()
        return out
