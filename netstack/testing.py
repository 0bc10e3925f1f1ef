"""What users import in their own tests: a manual clock, a link between two
Interfaces with seeded loss / duplication / reordering, and pcap replay."""

from __future__ import annotations

import random

from .config import InterfaceConfig
from .interface import Interface, TxFrame


class LinkPair:
    """Two Interfaces on one in-memory Ethernet segment, driven by a manual clock.

    `step()` moves every frame each side has to send to the other side (with
    the configured impairments) and advances the clock to the next deadline
    when nothing is in flight."""

    def __init__(self, a: Interface, b: Interface, seed: int = 0, loss: float = 0.0,
                 duplicate: float = 0.0, reorder: float = 0.0, latency: float = 0.0005) -> None:
        self.a, self.b = a, b
        self.now = 0.0
        self.rng = random.Random(seed)
        self.loss, self.duplicate, self.reorder, self.latency = loss, duplicate, reorder, latency
        self.in_flight: list = []   # (arrival time, seq, destination, frame)
        self.seq = 0
        self.frames = 0

    @classmethod
    def make(cls, seed: int = 0, **kw) -> "LinkPair":
        a = Interface(InterfaceConfig(mac=b"\x02\x00\x00\x00\x00\x01", ip="192.0.2.1", seed=seed + 1))
        b = Interface(InterfaceConfig(mac=b"\x02\x00\x00\x00\x00\x02", ip="192.0.2.2", seed=seed + 2))
        return cls(a, b, seed, **kw)

    def _send(self, src: Interface, dst: Interface) -> None:
        for f in src.frames_to_send(self.now):
            data = f.data if isinstance(f, TxFrame) else f
            self.frames += 1
            if self.rng.random() < self.loss:
                continue
            copies = 2 if self.rng.random() < self.duplicate else 1
            for _ in range(copies):
                delay = self.latency
                if self.rng.random() < self.reorder:
                    delay += self.rng.random() * 0.01
                self.seq += 1
                self.in_flight.append((self.now + delay, self.seq, dst, bytes(data)))

    def step(self) -> None:
        self._send(self.a, self.b)
        self._send(self.b, self.a)
        self.in_flight.sort()
        deadline = min((t for t in (self.a.poll_at(), self.b.poll_at()) if t is not None), default=None)
        nxt = self.in_flight[0][0] if self.in_flight else None
        if nxt is not None and (deadline is None or nxt <= deadline):
            self.now = max(self.now, nxt)
            while self.in_flight and self.in_flight[0][0] <= self.now:
                _t, _s, dst, frame = self.in_flight.pop(0)
                dst.receive_frame(frame, self.now)
        elif deadline is not None:
            self.now = max(self.now, deadline)

    def run_until(self, cond, max_time: float = 600.0, max_steps: int = 1_000_000) -> None:
        steps = 0
        idle = 0
        while not cond():
            if self.now > max_time or steps > max_steps:
                raise TimeoutError(f"condition not met by t={self.now:.3f}s after {steps} steps")
            before = (self.now, self.frames, len(self.in_flight))
            self.step()
            steps += 1
            # a stack that says it is due (poll_at() <= now) but sends nothing
            # and lets no time pass would spin forever: fail fast instead
            idle = idle + 1 if (self.now, self.frames, len(self.in_flight)) == before else 0
            if idle > 1000:
                raise RuntimeError(f"livelock at t={self.now:.6f}: due timers send nothing")
