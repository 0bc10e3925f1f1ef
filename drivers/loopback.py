"""An in-memory wire between two devices, for tests."""

from __future__ import annotations

from collections import deque

from .base import Device, frame_bytes


class LoopbackDevice(Device):
    def __init__(self, mac: bytes, mtu: int = 1500) -> None:
        self.mac = mac
        self.mtu = mtu
        self.inbox: deque = deque()
        self.peer: "LoopbackDevice | None" = None
        self.sent = 0

    @classmethod
    def pair(cls, mac_a=b"\x02\x00\x00\x00\x00\x01", mac_b=b"\x02\x00\x00\x00\x00\x02"):
        a, b = cls(mac_a), cls(mac_b)
        a.peer, b.peer = b, a
        return a, b

    def recv_batch(self, n: int = 64) -> list:
        out = []
        while self.inbox and len(out) < n:
            out.append((self.inbox.popleft(), False))
        return out

    def send_batch(self, frames) -> int:
        for f in frames:
            self.peer.inbox.append(bytes(frame_bytes(f)))
        self.sent += len(frames)
        return len(frames)

    def pending(self) -> bool:
        return bool(self.inbox)
