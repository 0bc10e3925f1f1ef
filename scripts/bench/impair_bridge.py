"""An impairment bridge: relays Ethernet frames between two interfaces (AF_PACKET,
promiscuous) with seeded loss, reordering, duplication, corruption and delay,
each direction with its own generator. Runs inside the bridge namespace of
scripts/bench/lossy.py until it is signalled (SIGTERM) or --duration passes.

    python impair_bridge.py IF_A IF_B --loss 5 --reorder 5 --dup 1 --corrupt 1 --delay-ms 1 --seed 1
Percentages; prints its counters as JSON on exit."""
import argparse
import heapq
import json
import random
import select
import signal
import socket
import struct
import sys
import time

ETH_P_ALL = 0x0003
SOL_PACKET, PACKET_ADD_MEMBERSHIP, PACKET_MR_PROMISC = 263, 1, 1
PACKET_OUTGOING = 4


def open_if(name: str) -> socket.socket:
    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
    s.bind((name, 0))
    idx = socket.if_nametoindex(name)
    s.setsockopt(SOL_PACKET, PACKET_ADD_MEMBERSHIP, struct.pack("iHH8s", idx, PACKET_MR_PROMISC, 0, b""))
    s.setblocking(False)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 8 << 20)
    return s


class Direction:
    def __init__(self, src, dst, rng, a):
        self.src, self.dst, self.rng = src, dst, rng
        self.loss, self.reorder, self.dup, self.corrupt = a.loss / 100, a.reorder / 100, a.dup / 100, a.corrupt / 100
        self.held = None             # a frame held back to be swapped with the next (reordering)
        self.counts = {"in": 0, "out": 0, "lost": 0, "reordered": 0, "duplicated": 0, "corrupted": 0}

    def take(self, frame: bytes, out: list) -> None:
        r = self.rng.random
        self.counts["in"] += 1
        if r() < self.loss:
            self.counts["lost"] += 1
            return
        if r() < self.corrupt and len(frame) > 14:
            b = bytearray(frame)
            b[self.rng.randrange(14, len(b))] ^= 0xFF
            frame = bytes(b)
            self.counts["corrupted"] += 1
        copies = 2 if r() < self.dup else 1
        if copies == 2:
            self.counts["duplicated"] += 1
        for _ in range(copies):
            if self.held is None and r() < self.reorder:
                self.held = frame        # goes out after the next frame
                self.counts["reordered"] += 1
                continue
            out.append(frame)
            if self.held is not None:
                out.append(self.held)
                self.held = None


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("if_a")
    ap.add_argument("if_b")
    for k in ("loss", "reorder", "dup", "corrupt", "delay-ms"):
        ap.add_argument("--" + k, type=float, default=0.0)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--duration", type=float, default=600.0)
    a = ap.parse_args()
    sa, sb = open_if(a.if_a), open_if(a.if_b)
    dirs = {sa.fileno(): Direction(sa, sb, random.Random(a.seed * 2), a),
            sb.fileno(): Direction(sb, sa, random.Random(a.seed * 2 + 1), a)}
    delay = a.delay_ms / 1000.0
    pending = []                 # heap of (release time, n, socket, frame)
    n = 0
    stop = [False]
    signal.signal(signal.SIGTERM, lambda *_: stop.__setitem__(0, True))
    end = time.monotonic() + a.duration
    while not stop[0] and time.monotonic() < end:
        timeout = 0.05
        if pending:
            timeout = max(0.0, min(timeout, pending[0][0] - time.monotonic()))
        ready, _, _ = select.select([sa, sb], [], [], timeout)
        now = time.monotonic()
        for s in ready:
            d = dirs[s.fileno()]
            for _ in range(256):
                try:
                    frame, addr = s.recvfrom(65536)
                except BlockingIOError:
                    break
                if addr[2] == PACKET_OUTGOING:
                    continue             # our own transmissions, seen again
                out = []
                d.take(frame, out)
                for f in out:
                    if delay:
                        n += 1
                        heapq.heappush(pending, (now + delay, n, d.dst, f))
                    else:
                        try:
                            d.dst.send(f)
                            d.counts["out"] += 1
                        except OSError:
                            pass
        while pending and pending[0][0] <= now:
            _t, _n, dst, f = heapq.heappop(pending)
            try:
                dst.send(f)
            except OSError:
                pass
    print(json.dumps({a.if_a + "->" + a.if_b: dirs[sa.fileno()].counts,
                      a.if_b + "->" + a.if_a: dirs[sb.fileno()].counts}), flush=True)


if __name__ == "__main__":
    sys.exit(main())
