"""The native stack: the only place where the sans-IO Interface, a Device and
the reactor meet.

A reactor poller reads batches of frames from the device (only while its fd
polls readable: edge-triggered, read until EAGAIN), feeds them to
`Interface.receive_frame`, turns the Interface's events into resolved
futures, sends what `frames_to_send` returns, and arms one reactor timer at
`Interface.poll_at()`.

Lifetime: a connection stays referenced by the stack while someone waits on
it; once the application drops every handle to it (connected_socket and its
streams) it is closed gracefully (FIN), as a kernel socket is when its last
fd closes.
"""

from __future__ import annotations

import errno
import logging
import os
import weakref

from reactor import Timer
from reactor.future import Future, _failed, make_ready_future

from ..config import InterfaceConfig, TcpConfig
from .. import sharding
from ..sharding import ShardDevice, open_wire, ring_to
from ..interface import Interface
from ..tcp.state import (EV_ACCEPTABLE, EV_DHCP_BOUND, EV_DHCP_LOST, EV_DHCP_RENEWED, CLOSED, EV_CLOSED, EV_CONNECTED, EV_ERROR, EV_PEER_CLOSED, EV_READABLE, EV_WRITABLE,
                         TIME_WAIT)
from ..wire import ip_to_bytes, ip_to_str, parse_mac
from .api import accept_result, connected_socket, datagram, socket_address, temporary_buffer

__all__ = ["NativeStack", "create_native_stack"]

log = logging.getLogger("native")

RECV_BATCH = 64
TSO_MAX = 64000
TUNED_FROM = 256 << 10     # where auto-tuned per-connection buffers start (see create_native_stack)


def create_native_stack(reactor) -> "NativeStack":
    cfg = reactor.config or {}
    from reactor import smp, this_shard_id
    shard, nshards = this_shard_id(), smp.count
    if nshards > 1 and len(sharding.links) != nshards * (nshards - 1) // 2:
        raise RuntimeError("native stack on several shards: app_template did not prepare the shard links")
    # DHCP unless the address is given; --dhcp/--no-dhcp as asked (check_network_options
    # refused the contradictions)
    use_dhcp = cfg.get("dhcp") if cfg.get("dhcp") is not None else not cfg.get("host_ipv4_addr")
    if cfg.get("tap_bridge") and (nshards > 1 or cfg.get("dev")):
        raise RuntimeError("--tap-bridge works with one shard on a TAP device")
    if nshards == 1 and cfg.get("tap_bridge"):
        from drivers.bridge import TapBridge
        mac = parse_mac(cfg["hw_address"]) if cfg.get("hw_address") else None
        cpus = sorted(os.sched_getaffinity(0))
        others = [c for c in range(os.cpu_count() or 1) if c not in cpus]
        dev = TapBridge(cfg.get("tap_device") or "tap0", mac, csum_offload=cfg.get("csum_offload", True),
                        tso=cfg.get("tso", True), lro=cfg.get("lro", True), cpu=others[0] if others else None)
        steering = None
    elif nshards == 1:
        mac = parse_mac(cfg["hw_address"]) if cfg.get("hw_address") else None
        try:
            dev = open_wire(cfg, mac, False)
        except OSError as e:
            if e.errno != errno.EINVAL or cfg.get("dev"):
                raise
            dev = open_wire(cfg, mac, True)     # a multi-queue TAP: attach one queue
        steering = None
    else:
        from ..rss import FlowSteering
        mac = sharding.shared_mac
        steering = FlowSteering(nshards)
        peers = {p: ring_to(shard, p, mac) for p in range(nshards) if p != shard}
        if sharding.wires:
            own = sharding.wires[shard]
            for k, w in enumerate(sharding.wires):      # the other shards' queues are theirs alone
                if k != shard:
                    w.close()
            if cfg.get("dev"):
                mac = own.mac
                peers = {p: ring_to(shard, p, mac) for p in range(nshards) if p != shard}
            dev = ShardDevice(shard, own, peers, steering, mode=sharding.steering_mode)
        elif shard == 0:
            dev = ShardDevice(0, open_wire(cfg, mac, False), peers, steering, relay=True, mode=sharding.steering_mode)
        else:
            dev = ShardDevice(shard, None, peers, steering, tx_via=peers[0], mode=sharding.steering_mode)
    from .extension import fault_wrapper
    dev = fault_wrapper(cfg, dev)
    if cfg.get("pcap_out"):
        from drivers.base import Recording
        path = cfg["pcap_out"] if nshards == 1 else f"{cfg['pcap_out']}.shard{shard}"
        dev = Recording(dev, path)
    # The buffers start at TUNED_FROM and grow with the connection (receive: twice
    # what the application reads per RTT; send: twice cwnd) up to `buf`. Fixed 4 MiB
    # buffers let a client run 8 MiB ahead of a lossy path: the echo's tail then
    # drained one way (5% loss: -9% goodput); fixed 256 KiB ones cost a clean link 25%.
    per_shard = cfg.get("memory_per_shard") or (1 << 30)
    buf = int(min(4 << 20, max(64 << 10, per_shard // 1024)))  # per-connection buffers scale with -m
    icfg = InterfaceConfig(
        # with shards, shard 0 runs the DHCP client and hands the lease to the others
        mac=dev.mac, ip=cfg.get("host_ipv4_addr") or "0.0.0.0", dhcp=use_dhcp and shard == 0,
        netmask=cfg.get("netmask_ipv4_addr") or "255.255.255.0",
        gateway=cfg.get("gw_ipv4_addr"), mtu=dev.mtu, seed=cfg.get("stack_seed"),
        tx_checksum_offload=dev.tx_checksum, tso_max=TSO_MAX if dev.tso else 0,
        tcp=TcpConfig(recv_buffer=buf, send_buffer=buf, recv_buffer_initial=TUNED_FROM, send_buffer_initial=TUNED_FROM,
                      congestion=cfg.get("tcp_congestion") or "newreno",
                      **({} if cfg.get("tcp_fin_timeout") is None else {"fin_timeout": cfg["tcp_fin_timeout"]})),
        answer_arp=(shard == 0))
    if steering is not None:
        # icfg.ip is read at each connect(): a DHCP lease may change it
        icfg.port_filter = lambda p, rip, rport: steering.shard_of(rip, icfg.ip, rport, p) == shard
    return NativeStack(reactor, dev, icfg)


class NativeStack:
    def __init__(self, reactor, device, config: InterfaceConfig) -> None:
        self.reactor = reactor
        self.dev = device
        self.iface = Interface(config, reactor.now())
        fd = device.fileno()
        self.pfd = reactor.register_fd(fd) if fd is not None else None
        self.extra = [reactor.register_fd(x) for x in getattr(device, "extra_fds", lambda: [])()]
        # protocol object (TCB, listener, UDP endpoint) -> weakref to its handler; a
        # plain dict of weakrefs: WeakValueDictionary.get is Python code, this is C
        self.handlers: dict = {}
        self._handler_gone = self._handler_gone     # bound once: the callback of every handler's ref
        self.busy: set = set()          # handlers someone is waiting on: kept alive
        self.timer = Timer(self.poll, reactor)
        self.armed_at = None
        self._ready: Future | None = None
        self._ready_waiters: list = []
        self.lease = None
        reactor.add_poller(self)
        reactor.at_exit(self.close)
        self.poll()

    def close(self) -> None:
        if (self.reactor.config or {}).get("print_net_stats"):
            import json
            import sys
            from reactor import this_shard_id
            print("net-stats " + json.dumps(dict(self.stats(), shard=this_shard_id()), sort_keys=True),
                  file=sys.stderr, flush=True)
        self.reactor.remove_poller(self)
        self.timer.cancel()
        for x in self.extra:
            x.close()
        if self.pfd is not None:
            self.pfd.close()
            self.pfd = None
        self.dev.close()

    # ---- the poller ---------------------------------------------------------------------
    def poll(self) -> bool:
        iface = self.iface
        now = self.reactor.now()
        work = False
        pfd = self.pfd
        if pfd is None or pfd._rready or getattr(self.dev, "recheck", False) or \
                any(x._rready for x in self.extra):
            for x in self.extra:
                x.clear_readable()     # the rings are read on every call below
            frames = self.dev.recv_batch(RECV_BATCH)
            if frames:
                iface.receive_batch(frames, now)
                work = True
            if pfd is not None and getattr(self.dev, "drained", len(frames) < RECV_BATCH):
                pfd.clear_readable()   # recv_batch stopped at EAGAIN
        if iface.events:
            self._dispatch()
        due = iface.poll_at()
        if due is not None and due <= now:
            try:
                out = iface.frames_to_send(now)
            except Exception:  # noqa: BLE001 - a stack bug must not take the server down
                log.exception("native stack: frames_to_send failed")
                iface.counters["internal_errors"] += 1
                out = []
            if out:
                self.dev.send_batch(out)
                work = True
            if iface.events:
                self._dispatch()
            due = iface.poll_at()
        if due != self.armed_at:
            self.timer.cancel()
            self.armed_at = due
            if due is not None:
                self.timer.arm(at=due)
        return work

    def idle_timeout(self):
        """How long the reactor may sleep before this device needs a look (or None)."""
        f = getattr(self.dev, "idle_timeout", None)
        return f() if f is not None else None

    def _dispatch(self) -> None:
        handlers = self.handlers
        for obj, ev in self.iface.pop_events():
            r = handlers.get(obj)
            if r is not None:
                h = r()
                if h is not None:
                    try:
                        h.on_event(ev)
                    except Exception:  # noqa: BLE001 - one connection's bug must not stop the others
                        log.exception("native stack: event handler failed")
                        self.iface.counters["internal_errors"] += 1
            elif obj is self.iface.dhcp:
                self._on_dhcp(ev)

    def adopt(self, obj, handler) -> None:
        """Events of obj go to handler while the handler lives."""
        self.handlers[obj] = weakref.KeyedRef(handler, self._handler_gone, obj)

    def _handler_gone(self, ref) -> None:
        # one bound method shared by every connection's ref (a closure each was
        # ~200 bytes per connection); `ref.key` says whose handler went
        if self.handlers.get(ref.key) is ref:
            del self.handlers[ref.key]

    def _on_dhcp(self, ev) -> None:
        if ev in (EV_DHCP_BOUND, EV_DHCP_RENEWED, EV_DHCP_LOST):
            from reactor import smp
            i = self.iface
            if smp.count > 1:      # the other shards use the same address
                smp.invoke_on_others(_apply_address, i.ip, i.cfg.netmask, i.cfg.gateway).handle_exception(
                    lambda e: log.error("could not share the DHCP lease: %r", e))
        if ev is EV_DHCP_BOUND or ev is EV_DHCP_RENEWED:
            self.lease = self.iface.dhcp.lease
            w, self._ready_waiters = self._ready_waiters, []
            for f in w:
                f._set_value(None)

    def ready(self) -> Future:
        """Resolves once the stack has an address (at once unless DHCP is still running)."""
        if self.iface.dhcp is None or self.iface.dhcp.lease is not None:
            return make_ready_future()
        f = Future()
        self._ready_waiters.append(f)
        return f

    def stats(self) -> dict:
        s = self.iface.stats()
        for k, v in self.dev.stats().items():
            s["device_" + k] = v
        for k, v in self.reactor._stats.items():      # how the shard's loop spent its turns
            s["reactor_" + k] = v
        return s

    # ---- the socket API ----------------------------------------------------------------
    def listen(self, addr: socket_address, opts):
        self._check_local(addr)
        port = addr.port
        if not opts.reuse_address and any(k[1] == port for k in self.iface.tcbs):
            # lingering connections (TIME-WAIT) on the port, as the kernel refuses too
            raise OSError(errno.EADDRINUSE, "bind: Address already in use")
        try:
            lst = self.iface.tcp_listen(port, opts.backlog)
        except OSError as e:
            raise OSError(errno.EADDRINUSE, "bind: Address already in use") from e
        srv = _NativeServer(self, lst)
        self.adopt(lst, srv)
        return srv

    def connect(self, addr: socket_address, local) -> Future:
        try:
            tcb = self.iface.tcp_connect(ip_to_bytes(addr.ip), addr.port, self.reactor.now(),
                                         local.port if local is not None and local.port else None)
        except OSError as e:
            return _failed(e)
        conn = _NativeConn(self, tcb)
        f = conn._wait("connect")
        return f.then(lambda: connected_socket(conn))

    def make_udp_channel(self, addr: socket_address):
        self._check_local(addr)
        try:
            ep = self.iface.udp_bind(addr.port)
        except OSError as e:
            raise OSError(errno.EADDRINUSE, "bind: Address already in use") from e
        ch = _NativeUdp(self, ep)
        self.adopt(ep, ch)
        return ch

    def _check_local(self, addr: socket_address) -> None:
        if addr.ip not in ("0.0.0.0", ip_to_str(self.iface.ip)):
            raise OSError(errno.EADDRNOTAVAIL, "bind: Cannot assign requested address")


def _apply_address(ip: bytes, netmask: bytes, gateway) -> None:
    """On a shard other than 0: take the address shard 0's DHCP client obtained."""
    from .api import network_stack
    network_stack().iface.set_address(ip, netmask, gateway)


class _Waits:
    """Futures waiting on one connection / listener / channel."""

    __slots__ = ()
    reader = None       # a pending read resolved with its data (connections only)

    def _wait(self, kind: str) -> Future:
        f = Future()
        if self.waiters:
            self.waiters.append((kind, f))
        else:
            self.waiters = [(kind, f)]
        self.stack.busy.add(self)
        return f

    def _wake(self, kind: str | None, exc: BaseException | None = None) -> None:
        keep = []
        for k, f in self.waiters:
            if kind is None or k == kind:
                if not f._state:
                    if exc is not None:
                        f._set_exception(exc)
                    else:
                        f._set_value(None)
            else:
                keep.append((k, f))
        self.waiters = keep or ()     # () when none wait: an idle connection holds no list
        if not keep and self.reader is None:
            self.stack.busy.discard(self)


class _NativeServer(_Waits):
    def __init__(self, stack: NativeStack, lst) -> None:
        self.stack = stack
        self.lst = lst
        self.waiters: list = []
        self.aborted = False

    def on_event(self, ev) -> None:
        if ev is EV_ACCEPTABLE:
            self._wake("accept")

    def accept(self) -> Future:
        if self.aborted:
            return _failed(ConnectionAbortedError(errno.ECONNABORTED, "accept aborted"))
        tcb = self.lst.accept()
        if tcb is None:
            return self._wait("accept").then(self.accept)
        conn = _NativeConn(self.stack, tcb)
        addr = socket_address(ip_to_str(tcb.remote_ip), tcb.remote_port)
        return make_ready_future(accept_result(connected_socket(conn), addr))

    def abort_accept(self) -> None:
        if not self.aborted:
            self.aborted = True
            self.stack.iface.tcp_unlisten(self.lst)
            self._wake(None, ConnectionAbortedError(errno.ECONNABORTED, "accept aborted"))

    def local_address(self) -> socket_address:
        return socket_address(ip_to_str(self.stack.iface.ip), self.lst.port)

    def __del__(self) -> None:
        try:
            if not self.aborted:
                self.stack.iface.tcp_unlisten(self.lst)
        except Exception:  # noqa: BLE001
            pass


class _NativeConn(_Waits):
    # slots: one of these per connection (its dict was a third of an idle
    # connection's socket-layer memory)
    __slots__ = ("stack", "tcb", "waiters", "pending", "pending_bytes", "input_shut", "output_closed", "reader",
                 "eof_delivered", "__weakref__")

    def __init__(self, stack: NativeStack, tcb) -> None:
        self.stack = stack
        self.tcb = tcb
        self.waiters: list | tuple = ()     # [(kind, future)]; () while none (an idle connection's)
        self.pending: list | tuple = ()     # bytes not yet taken by the TCB's send buffer; () while none
        self.pending_bytes = 0
        self.input_shut = False
        self.output_closed = False
        self.reader: Future | None = None    # the pending get(), resolved with the data itself
        self.eof_delivered = False           # see input_stream
        stack.adopt(tcb, self)

    # events from the TCB
    def on_event(self, ev) -> None:
        tcb = self.tcb
        if ev is EV_READABLE or ev is EV_PEER_CLOSED:
            if self.reader is not None:
                self._deliver()
            if self.waiters:
                self._wake("read")
        elif ev is EV_WRITABLE:
            self._pump()
        elif ev is EV_CONNECTED:
            self._wake("connect")
        elif ev is EV_ERROR:
            if self.reader is not None:
                self._deliver()
            self._wake(None, tcb.error)
        elif ev is EV_CLOSED:
            if self.reader is not None:
                self._deliver()
            self._wake(None, tcb.error) if tcb.error is not None else self._wake("read")

    # connected_socket impl
    def source(self):
        return _NativeSource(self)

    def sink(self):
        return _NativeSink(self)

    def shutdown_input(self) -> None:
        self.input_shut = True
        if self.reader is not None:
            self._deliver()
        self._wake("read")
        self._orphan_if_closed()

    def shutdown_output(self) -> None:
        if not self.output_closed:
            self.output_closed = True
            self.tcb.close()
            self._orphan_if_closed()

    def _orphan_if_closed(self) -> None:
        """Both directions shut: the application holds the connection no more
        (TCB.orphan: an orphaned FIN-WAIT-2 times out)."""
        if self.input_shut and self.output_closed:
            self.tcb.orphan(self.stack.reactor.now())

    def set_nodelay(self, v: bool) -> None:
        self.tcb.set_nodelay(v)

    def get_nodelay(self) -> bool:
        return self.tcb.nodelay

    def set_keepalive(self, v: bool) -> None:
        self.tcb.set_keepalive(v)

    def get_keepalive(self) -> bool:
        return self.tcb.keepalive

    def set_user_timeout(self, seconds: float) -> None:
        self.tcb.set_user_timeout(seconds)

    def get_user_timeout(self) -> float:
        return self.tcb.user_timeout

    def set_congestion(self, name: str) -> None:
        self.tcb.set_congestion(name)

    def get_congestion(self) -> str:
        return self.tcb.cc.name

    def set_keepalive_parameters(self, p) -> None:
        self.tcb.set_keepalive(self.tcb.keepalive, p.idle, p.interval, p.count)

    def local_address(self) -> socket_address:
        return socket_address(ip_to_str(self.tcb.local_ip), self.tcb.local_port)

    def remote_address(self) -> socket_address:
        return socket_address(ip_to_str(self.tcb.remote_ip), self.tcb.remote_port)

    def wait_input_shutdown(self) -> Future:
        if self.tcb.at_eof() or self.tcb.state is CLOSED:
            return make_ready_future()
        return self._wait("read").then(self.wait_input_shutdown)

    def close(self) -> None:
        self.shutdown_input()
        self.shutdown_output()

    def __del__(self) -> None:
        try:
            if self.tcb.state is not CLOSED:
                if not self.output_closed:
                    self.tcb.close()
                self.tcb.orphan(self.stack.reactor.now())
        except Exception:  # noqa: BLE001
            pass

    # reading
    def _read_now(self):
        """What a read gets now: a temporary_buffer (empty at EOF), the connection's
        exception, or None when it must wait."""
        tcb = self.tcb
        if tcb.rq_bytes and not self.input_shut:
            return temporary_buffer(tcb.recv())
        if self.input_shut:
            self.eof_delivered = True
            return temporary_buffer()
        if tcb.error is not None:
            return tcb.error
        if (tcb.fin_received and not tcb.rq) or tcb.state is CLOSED or tcb.state is TIME_WAIT:
            self.eof_delivered = True
            return temporary_buffer()
        return None

    def get(self) -> Future:
        r = self._read_now()
        if r is None:
            if self.reader is not None:         # a second reader queues behind the first
                return self._wait("read").then(self.get)
            f = self.reader = Future()
            self.stack.busy.add(self)
            return f
        if isinstance(r, BaseException):
            return _failed(r)
        return make_ready_future(r)

    def _deliver(self) -> None:
        """Resolve the pending get() with the data (no second hop through get())."""
        r = self._read_now()
        if r is None:
            return
        f = self.reader
        self.reader = None
        if not self.waiters:
            self.stack.busy.discard(self)
        if isinstance(r, BaseException):
            f._set_exception(r)
        else:
            f._set_value(r)

    # writing
    def put(self, data) -> Future:
        tcb = self.tcb
        if tcb.error is not None:
            return _failed(tcb.error)
        if self.output_closed:
            return _failed(OSError(errno.EPIPE, "write after close"))
        if not self.pending:
            n = tcb.send(data)
            if n == len(data):
                return make_ready_future()
            data = memoryview(data)[n:]
            self.pending = [data]
        else:
            self.pending.append(data)
        self.pending_bytes += len(data)
        return self._wait("space")

    def _pump(self) -> None:
        tcb = self.tcb
        if tcb.error is not None:
            # reset / timed out with writes still queued: they fail, nothing is sent
            self.pending = ()
            self.pending_bytes = 0
            self._wake("space", tcb.error)
            return
        while self.pending:
            d = self.pending[0]
            n = tcb.send(d)
            self.pending_bytes -= n
            if n < len(d):
                self.pending[0] = memoryview(d)[n:]
                return
            self.pending.pop(0)
        self.pending = ()
        self._wake("space")

    def flush(self) -> Future:
        if self.tcb.error is not None:
            return _failed(self.tcb.error)
        if not self.pending:
            return make_ready_future()
        return self._wait("space")


class _NativeSource:
    # the connection's reads; no bound methods stored (64 bytes each per connection)
    __slots__ = ("conn",)

    def __init__(self, conn: _NativeConn) -> None:
        self.conn = conn

    def get(self) -> Future:
        return self.conn.get()

    @property
    def eof_delivered(self) -> bool:
        return self.conn.eof_delivered

    def close(self) -> None:
        self.conn.shutdown_input()


class _NativeSink:
    __slots__ = ("conn",)
    # put() queues in the TCB's send buffer, which becomes segments only at the
    # stack's next poll: writes of one round of tasks leave together anyway
    coalescing = True

    def __init__(self, conn: _NativeConn) -> None:
        self.conn = conn

    def put(self, data) -> Future:
        return self.conn.put(data)

    def flush(self) -> Future:
        return self.conn.flush()

    def close(self) -> Future:
        return self.conn.flush().then(self.conn.shutdown_output)


class _NativeUdp(_Waits):
    def __init__(self, stack: NativeStack, ep) -> None:
        self.stack = stack
        self.ep = ep
        self.waiters: list = []

    def on_event(self, ev) -> None:
        if ev is EV_READABLE:
            self._wake("read")

    def local_address(self) -> socket_address:
        return socket_address(ip_to_str(self.stack.iface.ip), self.ep.port)

    def send(self, dst: socket_address, data) -> Future:
        try:
            self.ep.send(ip_to_bytes(dst.ip), dst.port, bytes(data), self.stack.reactor.now())
        except OSError as e:
            return _failed(e)
        return make_ready_future()

    def errors(self) -> list:
        return [(socket_address(ip_to_str(ip), port), e) for ip, port, e in self.ep.take_errors()]

    def receive(self) -> Future:
        if self.ep.closed:
            return _failed(OSError(errno.EBADF, "udp channel closed"))
        d = self.ep.recv()
        if d is None:
            return self._wait("read").then(self.receive)
        src_ip, src_port, dst_ip, payload = d
        return make_ready_future(datagram(socket_address(ip_to_str(src_ip), src_port),
                                          socket_address(ip_to_str(dst_ip), self.ep.port),
                                          temporary_buffer(payload)))

    def shutdown_input(self) -> None:
        self.close()

    def shutdown_output(self) -> None:
        pass

    def close(self) -> None:
        if not self.ep.closed:
            self.ep.close()
            self._wake(None, OSError(errno.EBADF, "udp channel closed"))

    def is_closed(self) -> bool:
        return self.ep.closed


