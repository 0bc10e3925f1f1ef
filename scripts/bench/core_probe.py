"""CPU per unit of the sans-IO core, in-process (no device, no reactor): the
probe that scripts/bench/ab.py runs against two trees. Uses only the core's
public calls, so it runs against older trees too. Prints one JSON line.

  segment  us per full-size data segment received and ACKed (checksums validated)
  request  us per 64-byte request + 64-byte response on an open connection (both stacks)
  conn     us per connection: handshake, one request/response, close both ways (both stacks)
"""
import argparse
import json
import os
import sys
import time

sys.path.insert(0, os.environ.get("PROBE_TREE") or os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__)))))

from netstack.config import InterfaceConfig  # noqa: E402
from netstack.interface import Interface  # noqa: E402


def pair():
    a = Interface(InterfaceConfig(mac=b"\x02\x00\x00\x00\x00\x01", ip="192.0.2.1", seed=1))
    b = Interface(InterfaceConfig(mac=b"\x02\x00\x00\x00\x00\x02", ip="192.0.2.2", seed=2))
    return a, b


class Wire:
    """Frames straight from one side to the other, a clock that moves 10 us a turn."""

    def __init__(self, a, b):
        self.a, self.b, self.now = a, b, 0.0

    def turn(self):
        self.now += 0.00001
        fa = self.a.frames_to_send(self.now)
        fb = self.b.frames_to_send(self.now)
        if fa:
            self.b.receive_batch([(f if f.__class__ is bytes else f.frame(), True) for f in fa], self.now)
        if fb:
            self.a.receive_batch([(f if f.__class__ is bytes else f.frame(), True) for f in fb], self.now)
        self.a.pop_events()
        self.b.pop_events()
        return fa or fb

    def until(self, cond, limit=10000):
        for _ in range(limit):
            if cond():
                return
            if not self.turn():
                # nothing in flight: jump to the next deadline
                t = [x for x in (self.a.poll_at(), self.b.poll_at()) if x is not None]
                if t:
                    self.now = max(self.now, min(t))
        raise RuntimeError("condition not met")


def open_conn(w, port=80):
    lst = w.b.listeners.get(port) or w.b.tcp_listen(port, backlog=4096)
    c = w.a.tcp_connect(w.b.ip, port, w.now)
    w.until(lambda: lst.accept_queue)
    return lst, c, lst.accept()


def bench_request(n):
    a, b = pair()
    w = Wire(a, b)
    _lst, c, s = open_conn(w)
    req, resp = b"q" * 64, b"r" * 64
    t0 = time.process_time()
    for _ in range(n):
        c.send(req)
        w.until(lambda: s.recv_available())
        s.recv()
        s.send(resp)
        w.until(lambda: c.recv_available())
        c.recv()
    return (time.process_time() - t0) / n


def bench_conn(n):
    a, b = pair()
    w = Wire(a, b)
    req, resp = b"q" * 64, b"r" * 64
    t0 = time.process_time()
    for _ in range(n):
        _lst, c, s = open_conn(w)
        c.send(req)
        w.until(lambda: s.recv_available())
        s.recv()
        s.send(resp)
        s.close()
        w.until(lambda: c.fin_received)
        c.recv()
        c.close()
        w.until(lambda: s.state.name == "CLOSED")
    return (time.process_time() - t0) / n


def bench_segment(n):
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import core
    return core.run_core(n, True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=4000)
    a = ap.parse_args()
    out = {"segment": min(bench_segment(a.n * 4) for _ in range(3)) * 1e6,
           "request": min(bench_request(a.n) for _ in range(3)) * 1e6,
           "conn": min(bench_conn(a.n // 4) for _ in range(3)) * 1e6}
    print(json.dumps(out))





def count_work(fn, *args):
    """(Python function calls, bytecodes executed) by fn(*args): a deterministic
    measure of the interpreter's work, for comparisons this noisy VM's clock
    cannot resolve (its timings drift by tens of percent between runs)."""
    calls = [0, 0]

    def tracer(frame, event, arg):
        if event == "call":
            calls[0] += 1
            frame.f_trace_opcodes = True
            return tracer
        if event == "opcode":
            calls[1] += 1
        return tracer
    sys.settrace(tracer)
    try:
        fn(*args)
    finally:
        sys.settrace(None)
    return calls[0], calls[1]


def _segment_loop(lp, s, frames):
    b = lp.b
    now = lp.now
    for f in frames:
        now += 0.00001
        b.receive_frame(f, now, True)
        b.frames_to_send(now)
        while s.recv():
            pass


def main_work():
    n = 300
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import core
    lp, s, frames = core.setup(n * 4)          # built outside the count: only the receive loop is measured
    out = {}
    c, o = count_work(_segment_loop, lp, s, frames)
    out["segment"] = {"calls": c / (n * 4), "bytecodes": o / (n * 4)}
    for name, fn, units in (("request", bench_request, n), ("conn", bench_conn, n // 10)):
        c, o = count_work(fn, units)
        out[name] = {"calls": c / units, "bytecodes": o / units}
    print(json.dumps(out))


if __name__ == "__main__":
    if "--work" in sys.argv:
        sys.argv.remove("--work")
        main_work()
    else:
        main()
