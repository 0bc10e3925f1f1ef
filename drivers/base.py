"""The Device protocol and wrappers that compose with any device.

A device moves Ethernet frames:

    fileno()            an fd that polls readable when frames wait (or None)
    recv_batch(n)       up to n received frames as [(frame, checksum_verified)]
    send_batch(frames)  send frames (bytes, or netstack TxFrame with offload
                        metadata); returns how many were sent
    mtu, mac            the link's MTU; the MAC the stack should use
    rx_checksum, tx_checksum, tso, lro   offload capabilities (booleans)
    queues              number of queues (multi-queue devices)
    stats()             counters

Drivers know frames, not protocols: a virtio-net header is the driver's business.
"""

from __future__ import annotations

import random
import time
from collections import deque


def frame_bytes(f) -> bytes:
    """The whole frame of bytes or of a TxFrame (headers + separate payload)."""
    return f.frame() if hasattr(f, "frame") else f


class Device:
    mtu = 1500
    mac = b"\x02\x00\x00\x00\x00\x01"
    rx_checksum = False
    tx_checksum = False
    tso = False
    lro = False
    queues = 1

    def fileno(self):
        return None

    def recv_batch(self, n: int = 64) -> list:
        raise NotImplementedError

    def send_batch(self, frames) -> int:
        raise NotImplementedError

    def close(self) -> None:
        pass

    def stats(self) -> dict:
        return {}


class Wrapper(Device):
    """Forwards everything to an inner device."""

    def __init__(self, inner: Device) -> None:
        self.inner = inner

    def __getattr__(self, name):
        return getattr(self.inner, name)

    @property
    def mtu(self):  # type: ignore[override]
        return self.inner.mtu

    @property
    def mac(self):  # type: ignore[override]
        return self.inner.mac

    @property
    def rx_checksum(self):  # type: ignore[override]
        return self.inner.rx_checksum

    @property
    def tx_checksum(self):  # type: ignore[override]
        return self.inner.tx_checksum

    @property
    def tso(self):  # type: ignore[override]
        return self.inner.tso

    def fileno(self):
        return self.inner.fileno()

    def recv_batch(self, n: int = 64) -> list:
        return self.inner.recv_batch(n)

    def send_batch(self, frames) -> int:
        return self.inner.send_batch(frames)

    def close(self) -> None:
        self.inner.close()

    def stats(self) -> dict:
        return self.inner.stats()


class Recording(Wrapper):
    """Writes every frame in and out to a pcap file (dpkt) that tcpdump and
    Wireshark open. Offload metadata is not recorded: a TSO super-frame is
    written as the one big frame the stack produced."""

    def __init__(self, inner: Device, path: str, clock=time.time) -> None:
        super().__init__(inner)
        import dpkt
        self._file = open(path, "wb")
        self._writer = dpkt.pcap.Writer(self._file, linktype=dpkt.pcap.DLT_EN10MB, snaplen=262144)
        self._clock = clock
        self.recorded = 0

    def recv_batch(self, n: int = 64) -> list:
        got = self.inner.recv_batch(n)
        now = self._clock()
        for f, _ok in got:
            self._writer.writepkt(bytes(f), now)
        if got:
            self.recorded += len(got)
            self._file.flush()
        return got

    def send_batch(self, frames) -> int:
        now = self._clock()
        for f in frames:
            self._writer.writepkt(bytes(frame_bytes(f)), now)
        self.recorded += len(frames)
        self._file.flush()
        return self.inner.send_batch(frames)

    def close(self) -> None:
        self._file.close()
        self.inner.close()


class FaultInjecting(Wrapper):
    """Seeded impairments on received frames: drop, duplicate, reorder (a frame
    swapped with its neighbour in a batch), corrupt (one flipped byte, the
    checksum no longer vouched for), delay (every frame held back `delay`
    seconds, in order, as netem's delay). Probabilities are fractions (0..1).
    While frames are held the device asks to be looked at again (`recheck`,
    `idle_timeout`), so they come out on time without new traffic."""

    def __init__(self, inner: Device, seed: int = 0, drop: float = 0.0, duplicate: float = 0.0,
                 reorder: float = 0.0, corrupt: float = 0.0, delay: float = 0.0, clock=time.monotonic) -> None:
        super().__init__(inner)
        self.rng = random.Random(seed)
        self.drop, self.duplicate, self.reorder, self.corrupt, self.delay = drop, duplicate, reorder, corrupt, delay
        self.held: deque = deque()  # (release time, frame, ok)
        self.clock = clock
        self.counts = {"dropped": 0, "duplicated": 0, "reordered": 0, "corrupted": 0, "delayed": 0}

    def recv_batch(self, n: int = 64) -> list:
        now = self.clock()
        out = []
        for f, ok in self.inner.recv_batch(n):
            r = self.rng.random
            if r() < self.drop:
                self.counts["dropped"] += 1
                continue
            if r() < self.corrupt and len(f):
                b = bytearray(f)
                b[self.rng.randrange(len(b))] ^= 0xFF
                f, ok = bytes(b), False
                self.counts["corrupted"] += 1
            if self.delay:
                self.held.append((now + self.delay, f, ok))
                self.counts["delayed"] += 1
                if r() < self.duplicate:
                    self.held.append((now + self.delay, f, ok))
                    self.counts["duplicated"] += 1
                continue
            out.append((f, ok))
            if r() < self.duplicate:
                out.append((f, ok))
                self.counts["duplicated"] += 1
        while self.held and self.held[0][0] <= now:
            _t, f, ok = self.held.popleft()
            out.append((f, ok))
        if len(out) > 1 and self.rng.random() < self.reorder:
            i = self.rng.randrange(len(out) - 1)
            out[i], out[i + 1] = out[i + 1], out[i]
            self.counts["reordered"] += 1
        return out

    @property
    def recheck(self) -> bool:
        return bool(self.held) or getattr(self.inner, "recheck", False)

    def idle_timeout(self):
        if self.held:
            return max(0.0, self.held[0][0] - self.clock())
        f = getattr(self.inner, "idle_timeout", None)
        return f() if f is not None else None

    def stats(self) -> dict:
        return dict(self.inner.stats(), **{"fault_" + k: v for k, v in self.counts.items()})
