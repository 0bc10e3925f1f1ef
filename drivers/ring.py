"""A virtio-style split ring in shared memory: a network link between two
processes (two native stacks, or a stack and a bridge that relays to a TAP)
with no system call per packet on the data path.

One RingLink holds two rings, one per direction. Each ring has, as in the
virtio 1.x split layout:

    descriptor table  N x {addr u64 (offset of the buffer), len u32, flags u16, next u16}
    available ring    flags u16, idx u16, ring[N] u16      (producer -> consumer)
    used ring         flags u16, idx u16, ring[N] {id u32, len u32}   (consumer -> producer)
    buffers           N x slot bytes: a virtio_net_hdr followed by the frame

The producer copies a frame into a free descriptor's buffer, publishes the
descriptor in the available ring and bumps avail.idx; the consumer takes
descriptors from the available ring, hands the frame up, and returns the
descriptor through the used ring. Notifications are eventfds, and they are
suppressed like virtio's VRING_AVAIL_F_NO_INTERRUPT / event index: a consumer
that is polling clears its "kick me" flag, so a busy link costs no syscalls;
only a consumer about to sleep in epoll sets the flag and gets one eventfd
write. Index updates rely on x86's in-order stores (TSO); the index is
written after the data it publishes. Python cannot issue the full fence that
virtio puts between "set the flag" and "re-read the index", so a consumer that
goes idle looks once more 1 ms later (`idle_timeout`) instead of sleeping on a
wakeup that may have been lost.
"""

from __future__ import annotations

import mmap
import os
import struct

from frames import Gather, buffers  # noqa: F401 - payload pieces of TxFrames

from .base import Device
from .tap import DATA_VALID, NEEDS_CSUM, VNET_HDR_LEN, _ZERO_HDR, vnet_header

_DESC = struct.Struct("<QIHH")
_U16 = struct.Struct("<H")
_USED = struct.Struct("<II")
_U64 = struct.Struct("<Q")


class _Ring:
    """One direction: layout offsets inside the shared mapping."""

    def __init__(self, mem: mmap.mmap, base: int, n: int, slot: int) -> None:
        self.mem = mem
        self.n = n
        self.slot = slot
        self.desc = base
        self.avail = self.desc + 16 * n
        self.used = (self.avail + 4 + 2 * n + 3) & ~3
        self.kick = self.used + 4 + 8 * n          # u16: consumer wants an eventfd kick
        self.bufs = (self.kick + 2 + 63) & ~63
        self.size = self.bufs + n * slot - base
        for i in range(n):
            _DESC.pack_into(mem, self.desc + 16 * i, self.bufs + i * slot, 0, 0, 0)

    def avail_idx(self) -> int:
        return _U16.unpack_from(self.mem, self.avail + 2)[0]

    def used_idx(self) -> int:
        return _U16.unpack_from(self.mem, self.used + 2)[0]


class RingLink:
    """Two rings and two eventfds in one shared mapping; create it before fork()."""

    def __init__(self, slots: int = 256, slot_size: int = 65536 + VNET_HDR_LEN + 64) -> None:
        n = slots
        per_ring = ((16 * n + 4 + 2 * n + 3) & ~3) + 4 + 8 * n + 2 + 64 + n * slot_size + 64
        self.mem = mmap.mmap(-1, 2 * per_ring)
        self.rings = [_Ring(self.mem, 0, n, slot_size)]
        self.rings.append(_Ring(self.mem, (self.rings[0].size + 63) & ~63, n, slot_size))
        self.eventfds = [os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC),
                         os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)]

    def device(self, side: int, mac: bytes, mtu: int = 1500) -> "RingDevice":
        """side 0 sends on ring 0 and receives on ring 1; side 1 the reverse."""
        return RingDevice(self, side, mac, mtu)


class RingDevice(Device):
    def __init__(self, link: RingLink, side: int, mac: bytes, mtu: int = 1500) -> None:
        self.link = link
        self.tx = link.rings[side]
        self.rx = link.rings[1 - side]
        self.rx_fd = link.eventfds[1 - side]     # kicked when our rx ring gets frames
        self.tx_fd = link.eventfds[side]         # we kick the peer through this one
        self.mac = mac
        self.mtu = mtu
        self.rx_checksum = self.tx_checksum = self.tso = self.lro = True
        self.tx_free = list(range(self.tx.n))    # descriptors we own
        self.tx_used_seen = 0
        self.tx_avail = 0
        self.rx_seen = 0
        self.counters = {"rx_frames": 0, "tx_frames": 0, "tx_full": 0, "kicks_sent": 0, "kicks_received": 0}
        self.recheck = False   # look at the ring once more shortly after going idle
        mem = link.mem
        _U16.pack_into(mem, self.rx.kick, 1)     # until we poll, ask to be woken

    def fileno(self) -> int:
        return self.rx_fd

    def recv_batch(self, n: int = 64) -> list:
        return self._recv(n)

    def _recv(self, n: int = 64, keep_hdr: bool = False) -> list:
        """Up to n frames. When the ring is drained the device asks the producer
        for a kick before returning (and looks once more, so a frame published
        in between is never missed): the caller may then sleep on fileno()."""
        rx = self.rx
        mem = self.link.mem
        try:
            os.eventfd_read(self.rx_fd)
            self.counters["kicks_received"] += 1
        except BlockingIOError:
            pass
        _U16.pack_into(mem, rx.kick, 0)          # we are polling: no kicks needed
        out = []
        hdrs = self._last_hdrs = []
        used_idx = rx.used_idx()
        while len(out) < n:
            avail = rx.avail_idx()
            if self.rx_seen == avail:
                _U16.pack_into(mem, rx.kick, 1)  # about to go idle: kick me
                if rx.avail_idx() == avail:
                    # Python has no memory fence: our flag store and the producer's
                    # index store may cross (x86 lets a load pass an older store),
                    # and then neither side sees the other. One more look a moment
                    # later closes that window (see idle_timeout) -- also after a
                    # call that did return frames: the race is the same then, and
                    # without the look a frame could wait in the ring for the peer's
                    # retransmission timer (a rare hang of the two-process test).
                    self.recheck = True
                    break
                _U16.pack_into(mem, rx.kick, 0)  # a frame slipped in: keep reading
                continue
            slot = self.rx_seen % rx.n
            d = _U16.unpack_from(mem, rx.avail + 4 + 2 * slot)[0]
            addr, length, _f, _nx = _DESC.unpack_from(mem, rx.desc + 16 * d)
            data = mem[addr:addr + length]       # one copy out of the shared buffer
            out.append((memoryview(data)[VNET_HDR_LEN:], bool(data[0] & (NEEDS_CSUM | DATA_VALID))))
            if keep_hdr:
                hdrs.append(memoryview(data)[:VNET_HDR_LEN])
            _USED.pack_into(mem, rx.used + 4 + 8 * (used_idx % rx.n), d, length)
            used_idx = (used_idx + 1) & 0xFFFF
            self.rx_seen = (self.rx_seen + 1) & 0xFFFF
        if out:
            _U16.pack_into(mem, rx.used + 2, used_idx)
            self.counters["rx_frames"] += len(out)
        return out

    def recv_raw(self, n: int = 64) -> list:
        """Like recv_batch, but [(virtio_net_hdr, frame)]: for relaying frames to
        another device with their offload metadata intact."""
        return [(bytes(self._last_hdrs[i]), f) for i, (f, _ok) in enumerate(self._recv(n, keep_hdr=True))]

    def idle_timeout(self):
        """Seconds until the device wants recv_batch called even without a kick."""
        return 0.001 if self.recheck else None

    def _reclaim(self) -> None:
        tx = self.tx
        mem = self.link.mem
        used = tx.used_idx()
        while self.tx_used_seen != used:
            d = _USED.unpack_from(mem, tx.used + 4 + 8 * (self.tx_used_seen % tx.n))[0]
            self.tx_free.append(d)
            self.tx_used_seen = (self.tx_used_seen + 1) & 0xFFFF

    def send_batch(self, frames) -> int:
        items = []
        for f in frames:
            if hasattr(f, "data"):
                items.append((vnet_header(f), f.data, bytes(f.payload) if f.payload.__class__ is Gather else f.payload))
            else:
                items.append((_ZERO_HDR, f, b""))
        return self.send_with_headers(items)

    def send_with_headers(self, items) -> int:
        """Send [(virtio_net_hdr, headers, payload)]: the frame is headers + payload."""
        tx = self.tx
        mem = self.link.mem
        sent = 0
        for hdr, data, payload in items:
            if not self.tx_free:
                self._reclaim()
                if not self.tx_free:
                    self.counters["tx_full"] += 1   # the peer is not keeping up: drop (TCP resends)
                    continue
            total = VNET_HDR_LEN + len(data) + len(payload)
            if total > tx.slot:
                self.counters["tx_full"] += 1
                continue
            d = self.tx_free.pop()
            addr = tx.bufs + d * tx.slot
            mem[addr:addr + VNET_HDR_LEN] = hdr
            mid = addr + VNET_HDR_LEN + len(data)
            mem[addr + VNET_HDR_LEN:mid] = data
            if payload:
                mem[mid:addr + total] = payload
            _DESC.pack_into(mem, tx.desc + 16 * d, addr, total, 0, 0)
            _U16.pack_into(mem, tx.avail + 4 + 2 * (self.tx_avail % tx.n), d)
            self.tx_avail = (self.tx_avail + 1) & 0xFFFF
            sent += 1
        if sent:
            _U16.pack_into(mem, tx.avail + 2, self.tx_avail)   # publish after the data
            self.counters["tx_frames"] += sent
            if _U16.unpack_from(mem, tx.kick)[0]:
                os.eventfd_write(self.tx_fd, 1)
                self.counters["kicks_sent"] += 1
        self._reclaim()
        return sent

    def stats(self) -> dict:
        return dict(self.counters)

    def close(self) -> None:
        pass
