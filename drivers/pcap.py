"""A replay device: the frames of a pcap file, delivered at their capture times
(relative to the first frame, on the given clock) or as fast as possible.
What the stack sends is kept in `sent` (and recorded if wrapped in Recording)."""

from __future__ import annotations

import time

from .base import Device, frame_bytes


class PcapReplayDevice(Device):
    def __init__(self, path: str, mac: bytes, clock=time.monotonic, realtime: bool = True,
                 skip_from_mac: bytes | None = None) -> None:
        import dpkt
        with open(path, "rb") as f:
            frames = [(ts, bytes(buf)) for ts, buf in dpkt.pcap.Reader(f)]
        if skip_from_mac is not None:
            frames = [(ts, b) for ts, b in frames if b[6:12] != skip_from_mac]
        self.mac = mac
        self.frames = frames
        self.pos = 0
        self.clock = clock
        self.realtime = realtime
        self.start = None
        self.t0 = frames[0][0] if frames else 0.0
        self.sent: list = []

    def next_time(self):
        """When the next frame is due (clock time), or None when all were delivered."""
        if self.pos >= len(self.frames):
            return None
        if self.start is None:
            self.start = self.clock()
        return self.start + (self.frames[self.pos][0] - self.t0) if self.realtime else self.clock()

    def recv_batch(self, n: int = 64) -> list:
        out = []
        while self.pos < len(self.frames) and len(out) < n:
            due = self.next_time()
            if due is not None and due > self.clock():
                break
            out.append((self.frames[self.pos][1], True))
            self.pos += 1
        return out

    def send_batch(self, frames) -> int:
        self.sent.extend(bytes(frame_bytes(f)) for f in frames)
        return len(frames)

    def done(self) -> bool:
        return self.pos >= len(self.frames)
