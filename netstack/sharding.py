"""Shards of the native stack: the wires opened before the fork, the rings
between shards, and the shard frame router (`ShardDevice`), a device that
keeps the frames its shard owns and forwards the others.

Not part of the sans-IO core: it opens devices and reads the clock (for the
reassembly of fragments before steering). The socket layer (native.py) picks
a shard's device from here; app_template calls `prepare_shards` through the
network extension before the shards fork.
"""

from __future__ import annotations

import errno
import logging
import os

from .rss import DEFAULT_KEY, RedirectionTable
from .wire import parse_mac

__all__ = ["ShardDevice", "prepare_shards", "open_wire", "ring_to"]

log = logging.getLogger("smp")

# ---- shards ----------------------------------------------------------------------------
# With -c N every shard runs its own Interface (same MAC and address) and owns the
# flows whose Toeplitz hash maps to it (netstack.rss). Three ways to get frames there:
#
# * multi-queue TAP (preferred): app_template opens one queue per shard before the
#   shards fork, in shard order, and sets an eBPF steering program that computes
#   our hash (drivers.steering): the kernel puts every flow on its owner's queue.
#   Without the program (bpf() refused), the kernel's learned steering does most
#   of it: it keeps a flow on the queue userspace last wrote it to.
# * AF_PACKET (--dev): one socket per shard, opened in shard order before the fork,
#   in a PACKET_FANOUT_CBPF group running the same hash (PACKET_FANOUT_HASH, the
#   kernel's own hash, if the program is refused).
# * single queue (fallback that always works): shard 0 reads the device, keeps its
#   frames, forwards the others, and writes to the device what the other shards
#   send it.
#
# A frame that still lands on the wrong shard is forwarded over shared-memory rings
# (drivers.ring) made before the shards fork, one per pair of shards. ARP frames go
# to every shard (all learn neighbours; shard 0 alone answers); ICMP and
# non-TCP/UDP traffic belong to shard 0; TCP/UDP fragments are reassembled by the
# shard that receives them (shard 0 when the kernel is steered), then steered
# whole. connect() on shard k picks a source port whose replies hash to shard k.
links: dict = {}
shared_mac: bytes | None = None
wires: list = []           # per shard: its queue / socket of the wire, opened before the fork
steering_mode = ""         # "ebpf", "cbpf", "learned", "fanout-hash" or "single-queue"


def prepare_shards(n: int, cfg) -> None:
    """Called by app_template before it forks shards (native stack, -c > 1)."""
    global links, shared_mac, wires, steering_mode
    from drivers.ring import RingLink
    links = {(i, j): RingLink(slots=512) for i in range(n) for j in range(i + 1, n)}
    shared_mac = parse_mac(cfg["hw_address"]) if cfg.get("hw_address") else b"\x02" + os.urandom(5)
    # The kernel numbers a fanout group's sockets and a TAP's queues in the order
    # they join: opening them here, in shard order, makes index k shard k's.
    from drivers import steering
    wires = []
    try:
        if cfg.get("dev"):
            for _ in range(n):
                wires.append(open_wire(cfg, None, False))
            group = os.getpid() & 0xFFFF        # one fanout group per application
            try:
                if not cfg.get("kernel_steering", True):
                    raise OSError(errno.EPERM, "--no-kernel-steering")
                steering.attach_fanout_cbpf([w.sock for w in wires], group, DEFAULT_KEY, RedirectionTable(n).entries)
                steering_mode = "cbpf"
            except OSError as e:
                if cfg.get("kernel_steering", True):
                    log.warning("PACKET_FANOUT_CBPF refused (%s): the kernel's fanout hash spreads flows, "
                                "misdelivered frames are forwarded", e)
                for w in wires:
                    w.close()
                wires = []
                for _ in range(n):
                    wires.append(open_wire(cfg, None, False))
                    wires[-1].fanout(group)
                steering_mode = "fanout-hash"
        else:
            try:
                for _ in range(n):
                    wires.append(open_wire(cfg, shared_mac, True))
            except OSError as e:
                if e.errno != errno.EINVAL or wires:
                    raise
                # a single-queue TAP exists: shard 0 reads it and relays
                steering_mode = "single-queue"
                return
            if not cfg.get("kernel_steering", True):
                steering_mode = "learned"
                return
            try:
                steering.set_tap_steering(wires[0].fileno(), DEFAULT_KEY, RedirectionTable(n).entries)
                steering_mode = "ebpf"
            except OSError as e:
                log.warning("TUNSETSTEERINGEBPF refused (%s): learned steering, first frames forwarded", e)
                steering_mode = "learned"
    except BaseException:
        for w in wires:
            w.close()
        wires = []
        raise


def ring_to(shard: int, peer: int, mac: bytes):
    i, j = min(shard, peer), max(shard, peer)
    return links[(i, j)].device(0 if shard == i else 1, mac)


class ShardDevice:
    """A shard's device when the native stack runs on several shards.

    own     this shard's queue of the wire device, or None (single-queue mode, shard > 0)
    peers   {shard: RingDevice}
    relay   single-queue mode on shard 0: frames arriving on the rings are the other
            shards' transmissions, to be written to the wire
    tx_via  single-queue mode on shard > 0: the ring our transmissions take to shard 0
    """

    def __init__(self, shard: int, own, peers: dict, steering, relay: bool = False, tx_via=None,
                 mode: str = "") -> None:
        self.shard = shard
        self.mode = mode
        self.own = own
        self.peers = peers
        self.steering = steering
        self.relay = relay
        self.tx_via = tx_via
        ref = own if own is not None else next(iter(peers.values()))
        self.mac, self.mtu = ref.mac, ref.mtu
        self.rx_checksum, self.tx_checksum = ref.rx_checksum, ref.tx_checksum
        self.tso, self.lro = ref.tso, ref.lro
        self.drained = True
        self.counters = {"kept": 0, "forwarded": 0, "arp_copies": 0, "from_shards": 0, "relayed": 0,
                         "reassembled": 0}

    def fileno(self):
        return self.own.fileno() if self.own is not None else None

    def extra_fds(self) -> list:
        return [r.fileno() for r in self.peers.values()]

    @property
    def recheck(self) -> bool:
        return any(r.recheck for r in self.peers.values())

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
        if proto == 17 and dport == 68:
            return 0            # DHCP: shard 0 runs the client
        return self.steering.shard_of(bytes(f[26:30]), bytes(f[30:34]), sport, dport)

    def _defragment(self, f):
        """Reassemble TCP/UDP fragments here, before steering: only the first fragment
        carries the ports that say which shard owns the datagram. Returns the whole
        packet as one (unfragmented) frame, or None while pieces are missing."""
        import time as _time

        from .ipv4 import Reassembler
        from .wire import Ipv4Repr, MalformedPacket
        if self._reasm is None:
            self._reasm = Reassembler(30.0, 4 << 20)
        now = _time.monotonic()
        self._reasm.expire(now, self._count_drop)
        try:
            ip, payload = Ipv4Repr.parse(memoryview(f)[14:])
        except MalformedPacket:
            return f        # let the owner of last resort (shard 0) count it
        whole = self._reasm.add(ip, payload, now, self._count_drop)
        if whole is None:
            return None
        hdr = Ipv4Repr(ip.src, ip.dst, ip.protocol, len(whole), ip.ttl, ip.ident, ip.dont_frag).emit()
        self.counters["reassembled"] += 1
        return bytes(f[:14]) + hdr + whole

    def _count_drop(self, reason: str) -> None:
        self.counters["drop_" + reason] = self.counters.get("drop_" + reason, 0) + 1

    _reasm = None

    def recv_batch(self, n: int = 64) -> list:
        from drivers.tap import DATA_VALID, NEEDS_CSUM, VNET_HDR_LEN, _ZERO_HDR
        valid = bytes([DATA_VALID]) + bytes(VNET_HDR_LEN - 1)
        c = self.counters
        out = []
        if self.own is not None:
            frames = self.own.recv_batch(n)
            self.drained = len(frames) < n
            fwd: dict = {}
            me = self.shard
            for f, ok in frames:
                if len(f) > 24 and f[12:14] == b"\x08\x00" and f[23] in (6, 17) and ((f[20] & 0x3F) or f[21]):
                    f = self._defragment(f)
                    if f is None:
                        continue
                    ok = False      # the reassembled L4 checksum has not been checked
                k = self.owner(f)
                if k == me:
                    out.append((f, ok))
                    c["kept"] += 1
                elif k < 0:
                    out.append((f, ok))
                    for peer in self.peers:
                        fwd.setdefault(peer, []).append((_ZERO_HDR, bytes(f), b""))
                    c["arp_copies"] += len(self.peers)
                else:
                    fwd.setdefault(k, []).append((valid if ok else _ZERO_HDR, f, b""))
                    c["forwarded"] += 1
            for k, items in fwd.items():
                self.peers[k].send_with_headers(items)
        for ring in self.peers.values():
            for hdr, frame in ring.recv_raw(n):
                if self.relay:
                    self.own.write_raw(hdr, frame)       # another shard's transmission
                    c["relayed"] += 1
                else:
                    out.append((memoryview(frame), bool(hdr[0] & (NEEDS_CSUM | DATA_VALID))))
                    c["from_shards"] += 1
        return out

    def send_batch(self, frames) -> int:
        if self.tx_via is not None:
            return self.tx_via.send_batch(frames)
        return self.own.send_batch(frames)

    def close(self) -> None:
        if self.own is not None:
            self.own.close()

    def stats(self) -> dict:
        s = dict(self.own.stats()) if self.own is not None else {}
        s.update(self.counters)
        s["kernel_steered"] = int(self.mode in ("ebpf", "cbpf"))   # the kernel runs our hash
        return s


def open_wire(cfg, mac, multi_queue: bool):
    csum, tso, lro = cfg.get("csum_offload", True), cfg.get("tso", True), cfg.get("lro", True)
    if cfg.get("dev"):
        from drivers.afpacket import AfPacketDevice
        dev = AfPacketDevice(cfg["dev"], mac=mac, vnet_hdr=csum)
        dev.tso = dev.tso and tso
        return dev
    from drivers.tap import DEFAULT_QUEUE_LEN, TapDevice
    return TapDevice(cfg.get("tap_device") or "tap0", mac=mac, csum_offload=csum, tso=tso, lro=lro,
                     multi_queue=multi_queue, queue_len=cfg.get("tap_queue_len", DEFAULT_QUEUE_LEN))


