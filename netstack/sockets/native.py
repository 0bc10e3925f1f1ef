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
from ..interface import Interface
from ..tcp import Event, State
from ..wire import ip_to_bytes, ip_to_str, parse_mac
from .api import accept_result, connected_socket, datagram, socket_address, temporary_buffer

__all__ = ["NativeStack", "create_native_stack"]

log = logging.getLogger("seastar")

RECV_BATCH = 64
TSO_MAX = 64000


# ---- shards ----------------------------------------------------------------------------
# With -c N the device (a single-queue TAP) is read by shard 0, which keeps the
# frames whose RSS hash maps to it and passes every other one to its owner over
# a shared-memory ring made before the shards fork; frames the other shards send
# come back over their ring and shard 0 writes them to the device. ARP frames go
# to every shard (all learn neighbours; shard 0 alone answers); ICMP, IP fragments
# and non-TCP/UDP traffic stay on shard 0. connect() on shard k picks a source
# port whose replies hash back to shard k, so nothing it opens is forwarded.
_links: list = []
_shared_mac: bytes | None = None


def prepare_shards(n: int, cfg) -> None:
    """Called by app_template before it forks shards (native stack, -c > 1)."""
    global _links, _shared_mac
    from drivers.ring import RingLink
    _links = [None] + [RingLink(slots=512) for _ in range(1, n)]
    _shared_mac = parse_mac(cfg["hw_address"]) if cfg.get("hw_address") else b"\x02" + os.urandom(5)


class ShardForwarder:
    """Shard 0's device when the native stack runs on several shards."""

    def __init__(self, dev, rings, steering) -> None:
        self.dev = dev
        self.rings = rings                  # index k-1: the ring to shard k
        self.steering = steering
        self.mac, self.mtu = dev.mac, dev.mtu
        self.rx_checksum, self.tx_checksum, self.tso, self.lro = dev.rx_checksum, dev.tx_checksum, dev.tso, dev.lro
        self.drained = True
        self.counters = {"kept": 0, "forwarded": 0, "arp_copies": 0, "from_shards": 0}

    def fileno(self):
        return self.dev.fileno()

    def extra_fds(self) -> list:
        return [r.fileno() for r in self.rings]

    @property
    def recheck(self) -> bool:
        return any(r.recheck for r in self.rings)

    def idle_timeout(self):
        return 0.001 if self.recheck else None

    def owner(self, f) -> int:
        """The shard a received frame belongs to (-1: every shard)."""
        et = f[12:14]
        if et == b"\x08\x06":
            return -1
        if et != b"\x08\x00" or len(f) < 38:
            return 0
        ihl = (f[14] & 0x0F) * 4
        proto = f[23]
        if proto not in (6, 17) or (f[20] & 0x3F) or f[21] or len(f) < 14 + ihl + 4:
            return 0
        sport = (f[14 + ihl] << 8) | f[15 + ihl]
        dport = (f[16 + ihl] << 8) | f[17 + ihl]
        return self.steering.shard_of(bytes(f[26:30]), bytes(f[30:34]), sport, dport)

    def recv_batch(self, n: int = 64) -> list:
        from drivers.tap import DATA_VALID, _ZERO_HDR, VNET_HDR_LEN
        valid = bytes([DATA_VALID]) + bytes(VNET_HDR_LEN - 1)
        frames = self.dev.recv_batch(n)
        self.drained = len(frames) < n
        out = []
        fwd = [[] for _ in self.rings]
        c = self.counters
        for f, ok in frames:
            k = self.owner(f)
            if k == 0:
                out.append((f, ok))
                c["kept"] += 1
            elif k < 0:
                out.append((f, ok))
                for lst in fwd:
                    lst.append((_ZERO_HDR, bytes(f), b""))
                c["arp_copies"] += len(fwd)
            else:
                fwd[k - 1].append((valid if ok else _ZERO_HDR, f, b""))
                c["forwarded"] += 1
        for ring, lst in zip(self.rings, fwd):
            if lst:
                ring.send_with_headers(lst)
        for ring in self.rings:               # what the other shards put on the wire
            for hdr, frame in ring.recv_raw(n):
                self.dev.write_raw(hdr, frame)
                c["from_shards"] += 1
        return out

    def send_batch(self, frames) -> int:
        return self.dev.send_batch(frames)

    def close(self) -> None:
        self.dev.close()

    def stats(self) -> dict:
        return dict(self.dev.stats(), **self.counters)


def create_native_stack(reactor) -> "NativeStack":
    cfg = reactor.config or {}
    from reactor import smp, this_shard_id
    shard, nshards = this_shard_id(), smp.count
    if nshards > 1 and len(_links) != nshards:
        raise RuntimeError("native stack on several shards: app_template did not prepare the shard links")
    # As in Seastar: DHCP unless the address is given (which turns DHCP off).
    use_dhcp = not cfg.get("host_ipv4_addr")
    if use_dhcp and nshards > 1:
        raise NotImplementedError("DHCP with several shards is not supported yet: give --host-ipv4-addr")
    mac = _shared_mac if nshards > 1 else (parse_mac(cfg["hw_address"]) if cfg.get("hw_address") else None)
    csum, tso, lro = cfg.get("csum_offload", True), cfg.get("tso", True), cfg.get("lro", True)
    steering = None
    if nshards > 1:
        from ..rss import FlowSteering
        steering = FlowSteering(nshards)
    if nshards > 1 and shard > 0:
        dev = _links[shard].device(1, mac)    # this shard's frames travel through shard 0
    elif cfg.get("dev"):
        from drivers.afpacket import AfPacketDevice
        dev = AfPacketDevice(cfg["dev"], mac=mac, vnet_hdr=csum)
        dev.tso = dev.tso and tso
    else:
        from drivers.tap import TapDevice
        dev = TapDevice(cfg.get("tap_device") or "tap0", mac=mac, csum_offload=csum, tso=tso, lro=lro)
    if nshards > 1 and shard == 0:
        dev = ShardForwarder(dev, [link.device(0, mac) for link in _links[1:]], steering)
    if cfg.get("pcap_out"):
        from drivers.base import Recording
        path = cfg["pcap_out"] if nshards == 1 else f"{cfg['pcap_out']}.shard{shard}"
        dev = Recording(dev, path)
    per_shard = cfg.get("memory_per_shard") or (1 << 30)
    buf = int(min(4 << 20, max(64 << 10, per_shard // 1024)))  # per-connection buffers scale with -m
    icfg = InterfaceConfig(
        mac=dev.mac, ip=cfg.get("host_ipv4_addr") or "0.0.0.0", dhcp=use_dhcp,
        netmask=cfg.get("netmask_ipv4_addr") or "255.255.255.0",
        gateway=cfg.get("gw_ipv4_addr"), mtu=dev.mtu, seed=cfg.get("stack_seed"),
        tx_checksum_offload=dev.tx_checksum, tso_max=TSO_MAX if dev.tso else 0,
        tcp=TcpConfig(recv_buffer=buf, send_buffer=buf), answer_arp=(shard == 0))
    if steering is not None:
        ours = icfg.ip
        icfg.port_filter = lambda p, rip, rport: steering.shard_of(rip, ours, rport, p) == shard
    return NativeStack(reactor, dev, icfg)


class NativeStack:
    def __init__(self, reactor, device, config: InterfaceConfig) -> None:
        self.reactor = reactor
        self.dev = device
        self.iface = Interface(config, reactor.now())
        fd = device.fileno()
        self.pfd = reactor.register_fd(fd) if fd is not None else None
        self.extra = [reactor.register_fd(x) for x in getattr(device, "extra_fds", lambda: [])()]
        self.handlers: weakref.WeakValueDictionary = weakref.WeakValueDictionary()
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
                rx = iface.receive_frame
                for f, ok in frames:
                    rx(f, now, ok)
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
            if obj is self.iface.dhcp:
                self._on_dhcp(ev)
                continue
            h = handlers.get(obj)
            if h is not None:
                h.on_event(ev)

    def _on_dhcp(self, ev) -> None:
        if ev in ("bound", "renewed"):
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
        self.handlers[lst] = srv
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
        self.handlers[ep] = ch
        return ch

    def _check_local(self, addr: socket_address) -> None:
        if addr.ip not in ("0.0.0.0", ip_to_str(self.iface.ip)):
            raise OSError(errno.EADDRNOTAVAIL, "bind: Cannot assign requested address")


class _Waits:
    """Futures waiting on one connection / listener / channel."""

    def _wait(self, kind: str) -> Future:
        f = Future()
        self.waiters.append((kind, f))
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
        self.waiters = keep
        if not keep:
            self.stack.busy.discard(self)


class _NativeServer(_Waits):
    def __init__(self, stack: NativeStack, lst) -> None:
        self.stack = stack
        self.lst = lst
        self.waiters: list = []
        self.aborted = False

    def on_event(self, ev) -> None:
        if ev == "acceptable":
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
    def __init__(self, stack: NativeStack, tcb) -> None:
        self.stack = stack
        self.tcb = tcb
        self.waiters: list = []
        self.pending: list = []          # bytes not yet taken by the TCB's send buffer
        self.pending_bytes = 0
        self.input_shut = False
        self.output_closed = False
        stack.handlers[tcb] = self

    # events from the TCB
    def on_event(self, ev) -> None:
        tcb = self.tcb
        if ev is Event.READABLE or ev is Event.PEER_CLOSED:
            self._wake("read")
        elif ev is Event.WRITABLE:
            self._pump()
        elif ev is Event.CONNECTED:
            self._wake("connect")
        elif ev is Event.ERROR:
            self._wake(None, tcb.error)
        elif ev is Event.CLOSED:
            self._wake(None, tcb.error) if tcb.error is not None else self._wake("read")

    # connected_socket impl
    def source(self):
        return _NativeSource(self)

    def sink(self):
        return _NativeSink(self)

    def shutdown_input(self) -> None:
        self.input_shut = True
        self._wake("read")

    def shutdown_output(self) -> None:
        if not self.output_closed:
            self.output_closed = True
            self.tcb.close()

    def set_nodelay(self, v: bool) -> None:
        self.tcb.set_nodelay(v)

    def get_nodelay(self) -> bool:
        return self.tcb.nodelay

    def set_keepalive(self, v: bool) -> None:
        self.tcb.set_keepalive(v)

    def get_keepalive(self) -> bool:
        return self.tcb.keepalive

    def set_keepalive_parameters(self, p) -> None:
        self.tcb.set_keepalive(self.tcb.keepalive, p.idle, p.interval, p.count)

    def local_address(self) -> socket_address:
        return socket_address(ip_to_str(self.tcb.local_ip), self.tcb.local_port)

    def remote_address(self) -> socket_address:
        return socket_address(ip_to_str(self.tcb.remote_ip), self.tcb.remote_port)

    def wait_input_shutdown(self) -> Future:
        if self.tcb.at_eof() or self.tcb.state is State.CLOSED:
            return make_ready_future()
        return self._wait("read").then(self.wait_input_shutdown)

    def close(self) -> None:
        self.shutdown_output()

    def __del__(self) -> None:
        try:
            if not self.output_closed and self.tcb.state is not State.CLOSED:
                self.tcb.close()
        except Exception:  # noqa: BLE001
            pass

    # reading
    def get(self) -> Future:
        tcb = self.tcb
        if self.input_shut:
            return make_ready_future(temporary_buffer())
        if tcb.rq_bytes:
            return make_ready_future(temporary_buffer(tcb.recv()))
        if tcb.error is not None:
            return _failed(tcb.error)
        if tcb.at_eof() or tcb.state is State.CLOSED or tcb.state is State.TIME_WAIT:
            return make_ready_future(temporary_buffer())
        return self._wait("read").then(self.get)

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
        self.pending.append(data)
        self.pending_bytes += len(data)
        return self._wait("space")

    def _pump(self) -> None:
        tcb = self.tcb
        while self.pending:
            d = self.pending[0]
            n = tcb.send(d)
            self.pending_bytes -= n
            if n < len(d):
                self.pending[0] = memoryview(d)[n:]
                return
            self.pending.pop(0)
        self._wake("space")

    def flush(self) -> Future:
        if self.tcb.error is not None:
            return _failed(self.tcb.error)
        if not self.pending:
            return make_ready_future()
        return self._wait("space")


class _NativeSource:
    __slots__ = ("conn",)

    def __init__(self, conn: _NativeConn) -> None:
        self.conn = conn

    def get(self) -> Future:
        return self.conn.get()

    def close(self) -> None:
        self.conn.shutdown_input()


class _NativeSink:
    __slots__ = ("conn",)

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
        if ev is Event.READABLE:
            self._wake("read")

    def local_address(self) -> socket_address:
        return socket_address(ip_to_str(self.stack.iface.ip), self.ep.port)

    def send(self, dst: socket_address, data) -> Future:
        try:
            self.ep.send(ip_to_bytes(dst.ip), dst.port, bytes(data), self.stack.reactor.now())
        except OSError as e:
            return _failed(e)
        return make_ready_future()

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


