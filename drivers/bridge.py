"""A bridge process between a TAP and a shared-memory virtio ring (drivers.ring),
in the role vhost plays for a virtual machine: the native stack reads and
writes the ring (no system call per packet on its core), and a second process,
on another core when there is one, does the TAP's reads and writes.

Virtio-net headers cross the ring untouched in both directions, so the TAP's
offloads keep working through the bridge: 64 KB GSO super-frames and partial
checksums on the way in, TSO frames with NEEDS_CSUM on the way out.

    dev = TapBridge("tap0", mac)     # a Device: give it to the native stack
    ...
    dev.close()                      # stops the bridge process

The native stack uses it with `--tap-bridge` (one shard). The bridge dies with
its parent (PR_SET_PDEATHSIG) and never outlives the application.
"""

from __future__ import annotations

import ctypes
import os
import select
import signal
import time

from .base import Device
from .ring import RingLink
from .tap import TapDevice

PR_SET_PDEATHSIG = 1
SPIN = 0.0002           # busy-poll this long before sleeping (as the reactor's idle poll)


class TapBridge(Device):
    def __init__(self, tap_name: str, mac: bytes, csum_offload: bool = True, tso: bool = True,
                 lro: bool = True, cpu: int | None = None, slots: int = 256) -> None:
        # Open the TAP here, before the fork, so that errors reach the caller.
        tap = TapDevice(tap_name, mac=mac, csum_offload=csum_offload, tso=tso, lro=lro)
        self.link = RingLink(slots=slots)
        parent = os.getpid()
        pid = os.fork()
        if pid == 0:                                  # the bridge
            code = 0
            try:
                ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
                signal.signal(signal.SIGTERM, signal.SIG_DFL)
                signal.signal(signal.SIGINT, signal.SIG_IGN)   # the application decides when we stop
                if cpu is not None:
                    os.sched_setaffinity(0, {cpu})
                _relay(tap, self.link.device(1, tap.mac), parent)
            except BaseException:  # noqa: BLE001 - report and leave; never return into the parent's code
                import traceback
                traceback.print_exc()
                code = 1
            finally:
                os._exit(code)
        tap.close()                                   # the bridge has its own copy
        self.pid = pid
        self.ring = self.link.device(0, tap.mac)
        self.mac, self.mtu = tap.mac, tap.mtu
        self.rx_checksum, self.tx_checksum = tap.rx_checksum, tap.tx_checksum
        self.tso, self.lro = tap.tso, tap.lro

    def fileno(self) -> int:
        return self.ring.fileno()

    def recv_batch(self, n: int = 64) -> list:
        return self.ring.recv_batch(n)

    def send_batch(self, frames) -> int:
        return self.ring.send_batch(frames)

    @property
    def recheck(self) -> bool:
        return self.ring.recheck

    def idle_timeout(self):
        return self.ring.idle_timeout()

    def stats(self) -> dict:
        s = self.ring.stats()
        s["bridge_pid"] = self.pid
        return s

    def close(self) -> None:
        if self.pid:
            try:
                os.kill(self.pid, signal.SIGTERM)
                os.waitpid(self.pid, 0)
            except (ProcessLookupError, ChildProcessError):
                pass
            self.pid = 0


def _relay(tap: TapDevice, ring, parent: int) -> None:
    """Move frames TAP -> ring and ring -> TAP until the parent goes away."""
    ep = select.epoll()
    ep.register(tap.fileno(), select.EPOLLIN)
    ep.register(ring.fileno(), select.EPOLLIN)
    idle_since = None
    while True:
        moved = 0
        items = tap.recv_raw(64)
        if items:
            ring.send_with_headers(items)
            moved += len(items)
        for hdr, frame in ring.recv_raw(64):
            tap.write_raw(hdr, frame)
            moved += 1
        if moved:
            idle_since = None
            continue
        now = time.perf_counter()
        if idle_since is None:
            idle_since = now
        if now - idle_since < SPIN:
            continue
        ep.poll(0.001 if ring.recheck else 0.5)
        if os.getppid() != parent:
            return
