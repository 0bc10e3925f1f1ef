"""The benchmark's own tools, which its numbers rest on: the impairment bridge
of scripts/bench/lossy.py (C, recvmmsg/sendmmsg) relays frames with the seeded
impairments it was asked for, counts what it did, and keeps the delay."""
import json
import os
import signal
import socket
import subprocess
import sys
import time

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "scripts", "bench"))

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="namespaces need root")

ETHERTYPE = b"\x88\xb5"         # local experimental


def _frames(n):
    head = b"\x02\x00\x00\x00\x00\x02" + b"\x02\x00\x00\x00\x00\x01" + ETHERTYPE
    return [head + i.to_bytes(4, "big") + bytes(100) for i in range(n)]


def _run_bridge(args, frames):
    """Frames sent one by one from namespace c through the bridge in b to s:
    (frames received in s, with their arrival times, and the bridge's JSON)."""
    import lossy
    from pyroute2 import netns
    from netstack.testing.netlab import NetLab
    lossy.build_bridge()
    with NetLab("ibt") as lab:
        c, b, s = lab.ns("c"), lab.ns("b"), lab.ns("s")
        lab.veth(c, "vc", b, "b0", None, None)
        lab.veth(b, "b1", s, "vs", None, None)
        bridge = lab.popen(b, [lossy.BRIDGE, "b0", "b1", *args, "--duration", "30"],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            netns.pushns(s)
            try:
                rx = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x88B5))
                rx.setsockopt(socket.SOL_SOCKET, 33, 16 << 20)     # SO_RCVBUFFORCE: read after the last send
                rx.bind(("vs", 0))
            finally:
                netns.popns()
            netns.pushns(c)
            try:
                tx = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
                tx.bind(("vc", 0))
            finally:
                netns.popns()
            time.sleep(0.3)         # the bridge is up and bound
            sent_at = {}
            for f in frames:
                sent_at[f[14:18]] = time.monotonic()
                tx.send(f)
                time.sleep(0.0002)
            got = []
            rx.settimeout(0.5)
            try:
                while True:
                    got.append((rx.recv(2048), time.monotonic()))
            except socket.timeout:
                pass
            tx.close()
            rx.close()
        finally:
            bridge.send_signal(signal.SIGTERM)
            out, err = bridge.communicate(timeout=10)
        assert bridge.returncode == 0, err
        return got, sent_at, json.loads(out)


@pytest.mark.timeout(60)
def test_the_bridge_relays_every_frame_in_order_after_the_delay():
    frames = _frames(500)
    got, sent_at, counts = _run_bridge(["--delay-ms", "20"], frames)
    assert [f for f, _ in got] == frames
    delays = sorted(t - sent_at[f[14:18]] for f, t in got)
    assert delays[0] >= 0.019 and delays[len(delays) // 2] < 0.1, (delays[0], delays[len(delays) // 2])
    assert counts["b0->b1"] == {"in": 500, "out": 500, "lost": 0, "reordered": 0, "duplicated": 0,
                                "corrupted": 0, "overflow": 0}


@pytest.mark.timeout(60)
def test_the_bridge_impairs_as_seeded_and_counts_it():
    frames = _frames(2000)
    args = ["--loss", "10", "--reorder", "10", "--dup", "5", "--corrupt", "5", "--seed", "7"]
    got, _sent_at, counts = _run_bridge(args, frames)
    c = counts["b0->b1"]
    assert c["in"] == 2000 and c["overflow"] == 0
    for k, p in (("lost", 0.10), ("corrupted", 0.045), ("duplicated", 0.045), ("reordered", 0.10)):
        assert 0.6 * p * 2000 < c[k] < 1.5 * p * 2000, (k, c)
    # every frame that went out arrived; the count is in - lost + duplicated, less a
    # frame still held for reordering at the end
    assert c["out"] == len(got)
    assert c["in"] - c["lost"] + c["duplicated"] - 1 <= c["out"] <= c["in"] - c["lost"] + c["duplicated"]
    ids = [f[14:18] for f, _ in got]
    assert ids != sorted(ids)                                    # reordered
    assert len(set(ids)) < len(ids)                              # duplicated
    clean = {f[14:18]: f for f in frames}
    corrupted = [f for f, _ in got if f[14:18] in clean and f != clean[f[14:18]]]
    assert corrupted                                             # (a flip in the id is a frame we cannot match)
    # the same seed, the same impairments
    got2, _, counts2 = _run_bridge(args, frames)
    assert counts2 == counts
    assert sorted(f for f, _ in got2) == sorted(f for f, _ in got)
