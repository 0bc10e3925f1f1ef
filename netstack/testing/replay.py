"""Replay the client side of a capture against an application on the native stack.

    python -m netstack.replay CAPTURE --app MODULE:FUNCTION [--port N] [--pace capture|asap]

The application is the user's own: a function that starts a server with the
socket API (`listen`, `accept`, streams), as under app_template -- it returns a
future or is a coroutine function. It runs in-process on a reactor with a
manual clock (time jumps to the next deadline), on the native stack bound to
the capture's server address, over an in-memory device. No root, no device.

The capture (pcap or pcapng) is split by direction: frames sent by the server
(its IP, and the TCP port given or the one the SYNs go to) are what the
original server answered -- the *expected* side; everything else is fed to our
stack as the client's. While feeding, each TCP frame is remapped onto the live
connection: the acknowledgement number and SACK blocks from the capture
server's sequence space into ours (our ISN is not the capture's), and the
timestamp echo (TSecr) to the latest TSval we sent on that connection.

Pacing: "capture" feeds each client frame at its capture time (relative to the
first); "asap" as soon as the stack has answered the one before. Either way a
frame that acknowledges server data waits (up to `wait` seconds of simulated
time) until our server has sent that data -- a client's ACK of bytes not yet
sent would be refused as acknowledging the future.

The result (`ReplayResult`) has our replies as frames, the byte streams per
connection (ours and the capture's), and comparisons: payload only
(`stream_diffs`) or field by field over the significant frames (`frame_diffs`).
"""

from __future__ import annotations

import importlib
import struct
import sys
from dataclasses import dataclass, field
from typing import Any, Callable

from drivers.base import Device, frame_bytes

from ..config import InterfaceConfig
from . import _tcp_fields, compare_frames, read_pcap, significant, write_pcap

__all__ = ["CaptureReplay", "ReplayResult", "Connection", "replay", "main"]

_SYN, _FIN, _RST, _ACK = 0x02, 0x01, 0x04, 0x10


class _CaptureDevice(Device):
    """The in-memory device the replayed frames enter by and our replies leave by."""

    rx_checksum = True      # captures carry partial checksums (offloads): not re-verified

    def __init__(self, mac: bytes, clock: Callable[[], float], mtu: int = 1500) -> None:
        self.mac = mac
        self.mtu = mtu
        self.clock = clock
        self.inbox: list = []
        self.injected = 0
        self.sent: list = []        # (time, frame bytes)
        self.on_send: Callable[[bytes], None] | None = None

    def inject(self, frame: bytes) -> None:
        self.inbox.append(frame)
        self.injected += 1

    def recv_batch(self, n: int = 64) -> list:
        out, self.inbox = self.inbox[:n], self.inbox[n:]
        return [(f, True) for f in out]

    def send_batch(self, frames) -> int:
        now = self.clock()
        for f in frames:
            b = bytes(frame_bytes(f))
            self.sent.append((now, b))
            if self.on_send is not None:
                self.on_send(b)
        return len(frames)

    def stats(self) -> dict:
        return {"rx_frames": self.injected, "tx_frames": len(self.sent)}


@dataclass
class Connection:
    """One TCP connection of the capture, by the client's (ip, port)."""

    client: tuple
    their_isn: int | None = None       # the capture server's ISN (from its SYN-ACK)
    our_isn: int | None = None         # ours, from the SYN-ACK we sent
    our_sent: int = 0                  # bytes of the server stream we have sent (highest)
    our_tsval: int | None = None       # the latest TSval we sent
    expected: bytes = b""              # what the capture's server sent
    ours: bytes = b""                  # what our server sent
    client_bytes: bytes = b""          # what the client sent (as fed)


@dataclass
class ReplayResult:
    frames: list                        # (time, frame) our replies
    fed: list                           # (time, frame) the client frames as fed (remapped)
    expected: list                      # (time, frame) the capture's server side
    connections: dict = field(default_factory=dict)     # client (ip, port) -> Connection
    counters: dict = field(default_factory=dict)

    def streams(self) -> dict:
        """{client (ip, port): (our bytes, the capture server's bytes)}"""
        return {k: (c.ours, c.expected) for k, c in self.connections.items()}

    def stream_diffs(self) -> list[str]:
        """Payload only: where our server's byte stream differs from the capture's."""
        out = []
        for k, c in sorted(self.connections.items()):
            if c.ours != c.expected:
                n = next((i for i, (a, b) in enumerate(zip(c.ours, c.expected)) if a != b),
                         min(len(c.ours), len(c.expected)))
                out.append(f"{k[0]}:{k[1]}: our reply differs at byte {n} "
                           f"(ours {len(c.ours)} bytes, capture {len(c.expected)}): "
                           f"ours {c.ours[n:n + 16]!r}, capture {c.expected[n:n + 16]!r}")
        return out

    def frame_diffs(self) -> list[str]:
        """Field by field over the significant frames (data, SYN, FIN, RST, ARP) of
        each connection, sequence numbers relative to each side's ISN."""
        out = []
        for k, c in sorted(self.connections.items()):
            def mine(frames, c=c):
                return [f for _t, f in frames if significant(f) and _tcp_fields(f) is not None
                        and _tcp_fields(f)["dport"] == c.client[1]]
            exp, act = mine(self.expected), mine(self.frames)
            peer = next((_tcp_fields(f)["seq"] for _t, f in self.fed
                         if (_tcp_fields(f) or {}).get("flags", 0) & _SYN
                         and _tcp_fields(f)["sport"] == c.client[1]), None)
            for d in compare_frames(exp, act, c.their_isn, c.our_isn, peer):
                out.append(f"{k[0]}:{k[1]}: {d}")
        return out

    def write_pcap(self, path: str) -> None:
        """Everything that crossed the replay's wire (fed and replied), in time order."""
        write_pcap(path, sorted(self.fed + self.frames, key=lambda x: x[0]))


def _ip(frame: bytes):
    return frame[26:30], frame[30:34]


def _is_ipv4(frame: bytes) -> bool:
    return len(frame) >= 34 and frame[12:14] == b"\x08\x00"


class CaptureReplay:
    """The engine: `CaptureReplay(path, app, port=None, pace="asap").run()`."""

    def __init__(self, capture: Any, app: Callable[..., Any], port: int | None = None, pace: str = "asap", wait: float = 1.0,
                 tail: float = 1.0, config: InterfaceConfig | None = None, seed: int = 1) -> None:
        if pace not in ("asap", "capture"):
            raise ValueError(f"pace is 'asap' or 'capture', not {pace!r}")
        self.frames = read_pcap(capture) if isinstance(capture, str) else list(capture)
        if not self.frames:
            raise ValueError("the capture holds no frames")
        self.app, self.pace, self.wait, self.tail = app, pace, wait, tail
        self.port = port if port is not None else self._server_port()
        self.server_ip, self.server_mac = self._server_address()
        self.config = config
        self.seed = seed
        self.conns: dict = {}

    # ---- the capture -----------------------------------------------------------------
    def _server_port(self) -> int:
        for _t, f in self.frames:
            s = _tcp_fields(f) if _is_ipv4(f) else None
            if s is not None and s["flags"] & (_SYN | _ACK) == _SYN:
                return s["dport"]
        raise ValueError("no TCP SYN in the capture: give the server's port")

    def _server_address(self):
        for _t, f in self.frames:
            s = _tcp_fields(f) if _is_ipv4(f) else None
            if s is not None and s["dport"] == self.port:
                return _ip(f)[1], f[0:6]
        raise ValueError(f"no TCP frame to port {self.port} in the capture")

    def _from_server(self, f: bytes) -> bool:
        if f[12:14] == b"\x08\x06":
            return f[28:32] == self.server_ip          # ARP sender protocol address
        if not _is_ipv4(f):
            return f[6:12] == self.server_mac
        if _ip(f)[0] != self.server_ip:
            return False
        s = _tcp_fields(f)
        return s is None or s["sport"] == self.port

    def _conn(self, ip, port: int) -> Connection:
        k = (ip if isinstance(ip, str) else ".".join(str(b) for b in ip), port)
        c = self.conns.get(k)
        if c is None:
            c = self.conns[k] = Connection(k)
        return c

    # ---- the run ----------------------------------------------------------------------
    def run(self) -> ReplayResult:
        from reactor import ManualClock, Reactor
        from ..sockets.native import NativeStack
        r = Reactor(clock=ManualClock(autojump=True))
        try:
            self.reactor = r
            self.dev = _CaptureDevice(self.server_mac, r.now)
            self.dev.on_send = self._learn_ours
            cfg = self.config or InterfaceConfig(mac=self.server_mac, ip=self.server_ip, seed=self.seed,
                                                 gratuitous_arp=False)
            self.stack = NativeStack(r, self.dev, cfg)
            r.network_stack = self.stack
            for _t, f in self.frames:               # the clients' MACs, as the capture shows them
                if _is_ipv4(f) and not self._from_server(f):
                    self.stack.iface.neighbours.learn(_ip(f)[0], f[6:12], 0.0)
            self.fed: list = []
            self.expected = [(t - self.frames[0][0], f) for t, f in self.frames if self._from_server(f)]
            for _t, f in self.expected:
                s = _tcp_fields(f) if _is_ipv4(f) else None
                if s is not None:
                    c = self._conn(_ip(f)[1], s["dport"])
                    if s["flags"] & (_SYN | _ACK) == _SYN | _ACK:
                        c.their_isn = s["seq"]
            self._expected_streams()
            r.run(self._main)
            self._our_streams()
            return ReplayResult(list(self.dev.sent), self.fed, self.expected, self.conns,
                                dict(self.stack.iface.stats()))
        finally:
            r.close()

    async def _main(self):
        from reactor import futurize
        started = futurize(self.app)
        started.handle_exception(self._app_failed)
        await self._drive()

    def _app_failed(self, e: BaseException) -> None:
        self.app_error = e

    async def _drive(self) -> None:
        from reactor import sleep
        r = self.reactor
        t0 = self.frames[0][0]
        base = r.now()
        await sleep(0.001)                     # the application starts listening
        for t, f in self.frames:
            if self._from_server(f):
                continue
            if self.pace == "capture":
                at = base + (t - t0)
                if at > r.now():
                    await sleep(at - r.now())
            limit = r.now() + self.wait
            while not self._ready(f) and r.now() < limit:
                await sleep(0.0005)
            f = self._rewrite(f)
            self.fed.append((r.now() - base, f))
            self.dev.inject(f)
            await sleep(0.0001)                # the stack takes it and answers
        await sleep(self.tail)

    def _ready(self, f: bytes) -> bool:
        """The frame acknowledges nothing our server has not sent yet."""
        s = _tcp_fields(f) if _is_ipv4(f) else None
        if s is None or not s["flags"] & _ACK:
            return True
        c = self._conn(_ip(f)[0], s["sport"])
        if c.their_isn is None:
            return True
        if c.our_isn is None:
            return False
        acked = (s["ack"] - c.their_isn - 1) & 0xFFFFFFFF
        return acked >= 0x80000000 or acked <= c.our_sent

    # ---- remapping ------------------------------------------------------------------
    def _rewrite(self, f: bytes) -> bytes:
        s = _tcp_fields(f) if _is_ipv4(f) else None
        if s is None:
            return f
        c = self._conn(_ip(f)[0], s["sport"])
        c.client_bytes += s["payload"]
        if c.their_isn is None or c.our_isn is None:
            return f
        delta = (c.our_isn - c.their_isn) & 0xFFFFFFFF
        b = bytearray(f)
        off = s["offset"]
        if s["flags"] & _ACK:
            struct.pack_into("!I", b, off + 8, (s["ack"] + delta) & 0xFFFFFFFF)
        thl = (b[off + 12] >> 4) * 4
        i = off + 20
        while i < off + thl:
            kind = b[i]
            if kind == 0:
                break
            if kind == 1:
                i += 1
                continue
            if i + 1 >= off + thl:
                break
            ln = b[i + 1]
            if ln < 2:
                break
            if kind == 5:                                   # SACK blocks: server sequence space
                for j in range(i + 2, i + ln - 7, 8):
                    le, re_ = struct.unpack_from("!II", b, j)
                    struct.pack_into("!II", b, j, (le + delta) & 0xFFFFFFFF, (re_ + delta) & 0xFFFFFFFF)
            elif kind == 8 and ln == 10 and c.our_tsval is not None:     # TSecr: echo ours
                struct.pack_into("!I", b, i + 6, c.our_tsval)
            i += ln
        return bytes(b)

    def _learn_ours(self, f: bytes) -> None:
        s = _tcp_fields(f) if _is_ipv4(f) else None
        if s is None or s["sport"] != self.port:
            return
        c = self._conn(_ip(f)[1], s["dport"])
        if s["flags"] & (_SYN | _ACK) == _SYN | _ACK:
            c.our_isn = s["seq"]
        if c.our_isn is not None:
            fin = 1 if s["flags"] & _FIN else 0          # our FIN takes a sequence number too
            end = (s["seq"] + len(s["payload"]) + fin - c.our_isn - 1) & 0xFFFFFFFF
            if end < 0x80000000 and end > c.our_sent:
                c.our_sent = end
        ts = _tsval(f, s)
        if ts is not None:
            c.our_tsval = ts

    # ---- byte streams ---------------------------------------------------------------
    def _expected_streams(self) -> None:
        for k, data in _streams(self.expected, self.port).items():
            self._conn(*k).expected = data

    def _our_streams(self) -> None:
        for k, data in _streams(self.dev.sent, self.port).items():
            self._conn(*k).ours = data


def _tsval(f: bytes, s: dict):
    off = s["offset"]
    thl = (f[off + 12] >> 4) * 4
    i = off + 20
    while i < off + thl:
        kind = f[i]
        if kind == 0:
            return None
        if kind == 1:
            i += 1
            continue
        if i + 1 >= off + thl or f[i + 1] < 2:
            return None
        if kind == 8 and f[i + 1] == 10:
            return struct.unpack_from("!I", f, i + 2)[0]
        i += f[i + 1]
    return None


def _streams(frames, port: int) -> dict:
    """{(client ip bytes, client port): the server's byte stream}, reassembled by
    sequence number (retransmissions and reordering as the receiver would see them)."""
    segs: dict = {}
    isn: dict = {}
    for _t, f in frames:
        s = _tcp_fields(f) if _is_ipv4(f) else None
        if s is None or s["sport"] != port:
            continue
        k = (_ip(f)[1], s["dport"])
        if s["flags"] & _SYN:
            isn[k] = s["seq"]
        if s["payload"]:
            segs.setdefault(k, []).append((s["seq"], s["payload"]))
    out = {}
    for k, parts in segs.items():
        base = (isn.get(k, min(p[0] for p in parts) - 1) + 1) & 0xFFFFFFFF
        buf = bytearray()
        for seq, data in sorted(parts, key=lambda p: (p[0] - base) & 0xFFFFFFFF):
            off = (seq - base) & 0xFFFFFFFF
            if off > len(buf):
                break                       # a hole the capture never filled
            buf[off:off + len(data)] = data
        out[k] = bytes(buf)
    return {(".".join(str(b) for b in k[0]), k[1]): v for k, v in out.items()}


def replay(capture: Any, app: Callable[..., Any], **kw) -> ReplayResult:
    """Replay `capture` against `app`: CaptureReplay(capture, app, **kw).run()."""
    return CaptureReplay(capture, app, **kw).run()


def _load(spec: str):
    mod, _, fn = spec.partition(":")
    if not fn:
        raise ValueError(f"--app wants MODULE:FUNCTION, not {spec!r}")
    sys.path.insert(0, ".")
    return getattr(importlib.import_module(mod), fn)


def main(argv: Any = None) -> int:
    import argparse
    ap = argparse.ArgumentParser(prog="python -m netstack.replay",
                                 description="Replay a capture's client side against an application on "
                                             "the native stack and show where our replies differ.")
    ap.add_argument("capture", help="pcap or pcapng file")
    ap.add_argument("--app", required=True, help="MODULE:FUNCTION that starts the server (socket API)")
    ap.add_argument("--port", type=int, default=None, help="the server's TCP port (default: where the SYNs go)")
    ap.add_argument("--pace", choices=("asap", "capture"), default="asap")
    ap.add_argument("--frames", action="store_true", help="compare frame by frame too (default: payload only)")
    ap.add_argument("--pcap-out", default=None, help="write what crossed the replay's wire here")
    a = ap.parse_args(argv)
    try:
        res = replay(a.capture, _load(a.app), port=a.port, pace=a.pace)
    except (OSError, ValueError, ImportError, AttributeError) as e:
        print(f"replay: {e}", file=sys.stderr)
        return 2
    if a.pcap_out:
        res.write_pcap(a.pcap_out)
    diffs = res.stream_diffs() + (res.frame_diffs() if a.frames else [])
    for k, c in sorted(res.connections.items()):
        print(f"{k[0]}:{k[1]}: client sent {len(c.client_bytes)} bytes; server replied {len(c.ours)} "
              f"(capture: {len(c.expected)})")
    for d in diffs:
        print(d)
    print("same as the capture" if not diffs else f"{len(diffs)} difference(s)")
    return 1 if diffs else 0


if __name__ == "__main__":
    sys.exit(main())
