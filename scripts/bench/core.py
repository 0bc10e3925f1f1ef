"""Sans-IO core benchmark: CPU time per full-size data segment received and
acknowledged by an established connection (receive_frame + frames_to_send +
the application reading the data), beside dpkt merely parsing the same frames.

    python scripts/bench/core.py [--segments 20000] [--runs 5]

Targets (issue 3): <= 6 us/segment when the device validated checksums,
<= 15 us when the core verifies them, <= 2x dpkt's parse-only time (offloaded).
"""
import argparse
import gc
import os
import statistics
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, ROOT)

import dpkt  # noqa: E402

from netstack.testing import LinkPair  # noqa: E402
from netstack.wire import IP_PROTO_TCP, EthernetRepr, Ipv4Repr, TcpRepr, ip_to_bytes  # noqa: E402
from netstack.wire.tcp import ACK, PSH  # noqa: E402


def setup(n, ts_every=1):
    lp = LinkPair.make(seed=1)
    lp.b.cfg.tcp.recv_buffer = 4 << 20
    lst = lp.b.tcp_listen(80)
    c = lp.a.tcp_connect(ip_to_bytes("192.0.2.2"), 80, lp.now)
    lp.run_until(lambda: lst.accept_queue)
    s = lst.accept()
    lp.run_until(lambda: not lp.in_flight and lp.a.poll_at() is None)
    payload = os.urandom(1448)
    frames = []
    seq = c.snd_nxt
    for i in range(n):
        seg = TcpRepr(c.local_port, 80, seq, c.rcv_nxt, ACK | PSH, 4096, 0, None, None, False, (),
                      (1000 + i // ts_every, c.ts_recent))
        l4 = seg.emit(payload, lp.a.ip, lp.b.ip)
        ip = Ipv4Repr(lp.a.ip, lp.b.ip, IP_PROTO_TCP, len(l4), 64, i & 0xFFFF, True).emit()
        frames.append(EthernetRepr(lp.b.mac, lp.a.mac, 0x0800).header() + ip + l4)
        seq = (seq + 1448) & 0xFFFFFFFF
    return lp, s, frames


def run_core(n, verified):
    lp, s, frames = setup(n)
    b = lp.b
    now = lp.now
    acks = 0
    gc.collect()
    t0 = time.process_time()
    for f in frames:
        now += 0.00001
        b.receive_frame(f, now, verified)
        acks += len(b.frames_to_send(now))
        while s.recv():
            pass
    cpu = time.process_time() - t0
    assert s.rcv_nxt == (s.irs + 1 + 1448 * n) & 0xFFFFFFFF, "segments were not all accepted"
    assert acks >= n // 2
    return cpu / n


def run_core_batched(n, batch=16, verified=True):
    """The driver's view: frames arrive in batches (recv_batch) and a sender's
    segments within one millisecond share a timestamp, so runs merge (software GRO)."""
    lp, s, frames = setup(n, ts_every=batch)
    b = lp.b
    now = lp.now
    gc.collect()
    t0 = time.process_time()
    for i in range(0, n, batch):
        now += 0.00001 * batch
        b.receive_batch([(f, verified) for f in frames[i:i + batch]], now)
        b.frames_to_send(now)
        while s.recv():
            pass
    cpu = time.process_time() - t0
    assert s.rcv_nxt == (s.irs + 1 + 1448 * n) & 0xFFFFFFFF, "segments were not all accepted"
    return cpu / n


def run_dpkt(n):
    _lp, _s, frames = setup(n)
    gc.collect()
    t0 = time.process_time()
    for f in frames:
        e = dpkt.ethernet.Ethernet(f)
        _ = e.data.data.data
    return (time.process_time() - t0) / n


def calibrate(runs):
    """CPU time of the Internet checksum of 1460 bytes (int.from_bytes with
    folding), the yardstick the issue quotes for these machines (about 3.6 us).
    This VM's speed drifts by 2x over minutes; scaling by the yardstick measured
    in the same run makes numbers from different moments comparable."""
    import timeit
    from netstack.wire.checksum import ones_sum
    data = os.urandom(1460)
    return statistics.median(min(timeit.repeat(lambda: ones_sum(data), number=20000, repeat=3)) / 20000
                             for _ in range(runs))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--segments", type=int, default=20000)
    ap.add_argument("--runs", type=int, default=5)
    a = ap.parse_args()
    off = statistics.median(run_core(a.segments, True) for _ in range(a.runs))
    full = statistics.median(run_core(a.segments, False) for _ in range(a.runs))
    batched = statistics.median(run_core_batched(a.segments) for _ in range(a.runs))
    batched_full = statistics.median(run_core_batched(a.segments, verified=False) for _ in range(a.runs))
    dp = statistics.median(run_dpkt(a.segments) for _ in range(a.runs))
    cal = calibrate(a.runs)
    k = 3.6e-6 / cal
    print(f"per full-size segment received + ACKed, CPU time, median of {a.runs} runs of {a.segments}:")
    print(f"  core, checksums validated by the device : {off * 1e6:6.2f} us   (target <= 6)")
    print(f"  core, checksums verified in Python      : {full * 1e6:6.2f} us   (target <= 15)")
    print(f"  core, batches of 16 (GRO), validated    : {batched * 1e6:6.2f} us   (target <= 6)")
    print(f"  core, batches of 16 (GRO), verified     : {batched_full * 1e6:6.2f} us   (target <= 15)")
    print(f"  dpkt parse only (eth+ip+tcp)            : {dp * 1e6:6.2f} us")
    print(f"  ratio core(offload) / dpkt              : {off / dp:6.2f} x  (target <= 2)")
    print(f"yardstick: checksum of 1460 B took {cal * 1e6:.2f} us here (the issue's machine: 3.6 us);")
    print(f"  scaled to it: validated {off * k * 1e6:.2f} us, verified {full * k * 1e6:.2f} us, "
          f"batched {batched * k * 1e6:.2f} / {batched_full * k * 1e6:.2f} us")


if __name__ == "__main__":
    main()
