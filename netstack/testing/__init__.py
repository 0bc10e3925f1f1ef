"""What users import in their own tests: a manual clock, a link between two
Interfaces with seeded loss / duplication / reordering, and pcap replay."""

from __future__ import annotations

from typing import Any, Callable

import random

from ..config import InterfaceConfig
from ..interface import Interface, TxFrame


MATHIS_C = 1.22     # Mathis et al.: Reno's goodput <= MSS / RTT * C / sqrt(p)


__all__ = ["LinkPair", "OversizedFrame", "Replay", "compare_frames", "echo_app", "mathis_bound", "read_pcap",
           "significant", "write_pcap"]


def mathis_bound(mss: int, rtt: float, loss: float) -> float:
    """The Mathis bound on Reno's goodput, bytes per second."""
    return mss / rtt * MATHIS_C / loss ** 0.5


class OversizedFrame(AssertionError):
    """A stack sent a frame larger than the link's MTU (and not as a TSO frame)."""


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
        limit = src.cfg.mtu + 14
        for f in src.frames_to_send(self.now):
            data = f.frame() if isinstance(f, TxFrame) else f
            if len(data) > limit and not (isinstance(f, TxFrame) and f.gso_size):
                # a frame past the MTU leaves only as TSO (the device cuts it): on a
                # real wire this one is lost, so a test on this link fails at once
                raise OversizedFrame(f"{len(data) - 14}-byte IP packet on a {src.cfg.mtu}-byte MTU link "
                                     f"at t={self.now:.6f}")
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
            batches: dict = {}
            while self.in_flight and self.in_flight[0][0] <= self.now:
                _t, _s, dst, frame = self.in_flight.pop(0)
                batches.setdefault(id(dst), (dst, []))[1].append((frame, False))
            for dst, frames in batches.values():
                dst.receive_batch(frames, self.now)   # as a driver's recv_batch would
        elif deadline is not None:
            self.now = max(self.now, deadline)

    def exchange(self, c: Any, s: Any, up: bytes, down: bytes, max_time: float = 600.0) -> tuple:
        """Send `up` from c and `down` from s at once, reading both ends, until all
        arrived: (bytes c's peer got, bytes c got, simulated seconds it took)."""
        sent, got_up, got_down = [0, 0], bytearray(), bytearray()

        def done():
            sent[0] += c.send(memoryview(up)[sent[0]:sent[0] + 65536])
            sent[1] += s.send(memoryview(down)[sent[1]:sent[1] + 65536])
            while (x := s.recv()):
                got_up.extend(x)
            while (x := c.recv()):
                got_down.extend(x)
            return len(got_up) == len(up) and len(got_down) == len(down)
        t0 = self.now
        self.run_until(done, max_time=t0 + max_time)
        return bytes(got_up), bytes(got_down), self.now - t0

    def run_until(self, cond: Callable[[], Any], max_time: float = 600.0, max_steps: int = 1_000_000) -> None:
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


# ---- pcap replay ---------------------------------------------------------------------------

def read_pcap(path: str) -> list:
    """[(timestamp, frame bytes)] from a pcap or a pcapng file (by its magic)."""
    import dpkt
    with open(path, "rb") as f:
        magic = f.read(4)
        f.seek(0)
        reader = dpkt.pcapng.Reader(f) if magic == b"\x0a\x0d\x0d\x0a" else dpkt.pcap.Reader(f)
        return [(ts, bytes(buf)) for ts, buf in reader]


def write_pcap(path: str, frames: Any) -> None:
    """Write [(timestamp, frame)] as a pcap that tcpdump and Wireshark open."""
    import dpkt
    with open(path, "wb") as f:
        w = dpkt.pcap.Writer(f, linktype=dpkt.pcap.DLT_EN10MB)
        for ts, frame in frames:
            w.writepkt(bytes(frame), ts)


def echo_app(port: int = 7) -> Callable[[Interface], None]:
    """An RFC 862 echo server application for replays, listening on `port`:
    returns app(iface), called by Replay after every step."""
    from ..tcp import Event

    def app(iface: Interface) -> None:
        if port not in iface.listeners:
            iface.tcp_listen(port)
        for obj, ev in iface.pop_events():
            if ev is Event.ACCEPTABLE:
                obj.accept()
            elif ev is Event.READABLE and hasattr(obj, "recv"):
                while (data := obj.recv()):
                    obj.send(bytes(data))
                if obj.at_eof() and not obj.fin_queued:
                    obj.close()
    return app


class Replay:
    """Feed one side of a capture into a fresh Interface and collect what it sends.

    Frames in the pcap sent *from* the Interface's own IP/MAC are the original
    host's answers: they are kept as `expected`, not fed. The other frames are
    fed at their capture times (relative to the first one) on a manual clock;
    between them the clock jumps to the Interface's deadlines. TCP
    acknowledgement numbers in fed frames are rewritten from the original
    host's sequence space into ours (our ISN differs), which is what lets a
    recorded client drive our stack. Checksums are not re-verified
    (`checksum_verified=True`): captures taken on veth/TAP carry partial ones.
    """

    def __init__(self, path: str, config: InterfaceConfig, app: Callable[[Interface], None] | None = None,
                 tail: float = 0.1) -> None:
        self.frames = read_pcap(path)
        self.iface = Interface(config)
        self.app = app if app is not None else echo_app(7)
        self.tail = tail
        self.sent: list = []       # (time, frame) our output
        self.expected: list = []   # (time, frame) the original host's output

    def _ours(self, frame: bytes) -> bool:
        return frame[6:12] == self.iface.mac

    def _collect(self, now: float) -> None:
        if self.app is not None:
            self.app(self.iface)
        for f in self.iface.frames_to_send(now):
            data = f.frame() if hasattr(f, "frame") else f
            self.sent.append((now, bytes(data)))
            self._learn_isn(bytes(data), ours=True)
        if self.app is not None:
            self.app(self.iface)

    def _learn_isn(self, frame: bytes, ours: bool) -> None:
        """Remember each connection's ISN (keyed by the peer's port) from SYN-ACKs."""
        seg = _tcp_fields(frame)
        if seg is not None and seg["flags"] & 0x12 == 0x12:
            (self._our_isn if ours else self._their_isn)[(seg["dport"], seg["sport"])] = seg["seq"]

    def run(self) -> "Replay":
        t0 = self.frames[0][0] if self.frames else 0.0
        self._our_isn: dict = {}
        self._their_isn: dict = {}
        for ts, frame in self.frames:
            if self._ours(frame):
                self.expected.append((ts - t0, frame))
                self._learn_isn(frame, ours=False)
        now = 0.0
        for ts, frame in self.frames:
            if self._ours(frame):
                continue
            t = ts - t0
            while True:
                due = self.iface.poll_at()
                if due is None or due > t:
                    break
                now = max(now, due)
                self._collect(now)
            now = max(now, t)
            self.iface.receive_frame(self._rewrite(frame), now, checksum_verified=True)
            self._collect(now)
        for _ in range(100):   # let delayed ACKs and the like go out, not retransmissions
            due = self.iface.poll_at()
            if due is None or due > now + self.tail:
                break
            now = max(now, due)
            self._collect(now)
        return self

    def _rewrite(self, frame: bytes) -> bytes:
        seg = _tcp_fields(frame)
        key = (seg["sport"], seg["dport"]) if seg is not None else None
        if seg is None or not seg["flags"] & 0x10 or key not in self._our_isn or key not in self._their_isn:
            return frame
        delta = (self._our_isn[key] - self._their_isn[key]) & 0xFFFFFFFF
        off = seg["offset"]
        ack = (seg["ack"] + delta) & 0xFFFFFFFF
        return frame[:off + 8] + ack.to_bytes(4, "big") + frame[off + 12:]


def _tcp_fields(frame: bytes):
    if len(frame) < 54 or frame[12:14] != b"\x08\x00" or frame[23] != 6:
        return None
    ihl = (frame[14] & 0x0F) * 4
    off = 14 + ihl
    total = int.from_bytes(frame[16:18], "big")
    thl = (frame[off + 12] >> 4) * 4
    return {"offset": off, "sport": int.from_bytes(frame[off:off + 2], "big"),
            "dport": int.from_bytes(frame[off + 2:off + 4], "big"),
            "seq": int.from_bytes(frame[off + 4:off + 8], "big"),
            "ack": int.from_bytes(frame[off + 8:off + 12], "big"), "flags": frame[off + 13],
            "payload": frame[off + thl:14 + total]}


def significant(frame: bytes) -> bool:
    """ARP, and TCP segments that carry data or SYN/FIN/RST (pure ACKs are
    timing-dependent: stacks delay and merge them differently)."""
    if frame[12:14] == b"\x08\x06":
        return True
    seg = _tcp_fields(frame)
    return seg is not None and (bool(seg["payload"]) or bool(seg["flags"] & 0x07))


def compare_frames(expected: list, actual: list, isn_expected: int | None = None, isn_actual: int | None = None,
                   peer_isn: int | None = None) -> list[str]:
    """Compare two frame lists field by field; one message per difference, naming
    the frame index and the field. TCP sequence and acknowledgement numbers are
    compared relative to each side's ISN (and the peer's)."""
    diffs = []
    if len(expected) != len(actual):
        diffs.append(f"frame count: expected {len(expected)}, got {len(actual)}")
    for i, (e, a) in enumerate(zip(expected, actual)):
        fields = [("eth.dst", e[0:6], a[0:6]), ("eth.src", e[6:12], a[6:12]), ("eth.type", e[12:14], a[12:14])]
        if e[12:14] == b"\x08\x06":
            fields.append(("arp.op", e[20:22], a[20:22]))
            fields.append(("arp.target_ip", e[38:42], a[38:42]))
        se, sa = _tcp_fields(e), _tcp_fields(a)
        if se is not None and sa is not None:
            fields += [("ip.src", e[26:30], a[26:30]), ("ip.dst", e[30:34], a[30:34]),
                       ("tcp.sport", se["sport"], sa["sport"]), ("tcp.dport", se["dport"], sa["dport"]),
                       ("tcp.flags", se["flags"], sa["flags"]),
                       ("tcp.seq(relative)", (se["seq"] - (isn_expected or 0)) & 0xFFFFFFFF,
                        (sa["seq"] - (isn_actual or 0)) & 0xFFFFFFFF),
                       ("tcp.ack(relative)", (se["ack"] - (peer_isn or 0)) & 0xFFFFFFFF if se["flags"] & 0x10 else 0,
                        (sa["ack"] - (peer_isn or 0)) & 0xFFFFFFFF if sa["flags"] & 0x10 else 0),
                       ("tcp.payload", se["payload"], sa["payload"])]
        for name, x, y in fields:
            if x != y:
                diffs.append(f"frame {i}: {name} expected {x!r}, got {y!r}")
                break
    return diffs
