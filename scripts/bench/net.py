"""Network benchmark: the same kernel client against echo servers on
(a) our native stack on a TAP, (b) our posix stack, (c) plain asyncio, uvloop
and trio servers on kernel sockets -- all in one network namespace created
(and removed) by this script, all in the same run.

    sudo .venv/bin/python scripts/bench/net.py [--seconds 3] [--bulk-mb 1024] [--runs 3]

Measures, per server: bulk kernel -> server and server -> kernel, one direction
at a time (scripts/bench/bulk_server.py: discard and source ports), echo both
ways at once, the 64-byte echo RTT, request/response rate over 64 connections,
connect + request + close rate with 16 connections in progress (and one at a
time), and the server's CPU seconds per MB received and per request (from
/proc/<pid>/stat). Servers are measured round-robin, one sample of everything
per round, and the table gives the medians of the rounds: this VM's speed
drifts by up to 2x over minutes, and round-robin spreads a slow phase over all
rows instead of one. Prints absolute numbers and ratios against asyncio. Loads
are bounded in count and time. The client shares the 2 cores with the server:
read the CPU-per-unit columns as the fairer comparison.
"""
import argparse
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, ROOT)

from pyroute2 import netns  # noqa: E402

from netstack.testing.netlab import NetLab  # noqa: E402

KERNEL, STACK, PORT = "192.0.2.1", "192.0.2.2", 1234
DISCARD, SOURCE = 1235, 1236      # scripts/bench/bulk_server.py
TICK = os.sysconf("SC_CLK_TCK")

ASYNCIO = r'''
import asyncio, sys
async def handle(r, w):
    while (d := await r.read(65536)):
        w.write(d); await w.drain()
    w.close()
async def main():
    s = await asyncio.start_server(handle, "0.0.0.0", %d, reuse_address=True, backlog=512)
    async with s: await s.serve_forever()
if "uvloop" in sys.argv:
    import uvloop; uvloop.install()
asyncio.run(main())
''' % PORT

TRIO = r'''
import trio
async def handle(s):
    try:
        while (d := await s.receive_some(65536)):
            await s.send_all(d)
    except trio.BrokenResourceError:
        pass
trio.run(trio.serve_tcp, handle, %d)
''' % PORT


def cpu(pid):
    f = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(f[11]) + int(f[12])) / TICK


def wait_port(host, p, timeout=15, port=PORT):
    deadline = time.monotonic() + timeout
    while True:
        try:
            socket.create_connection((host, port), timeout=0.3).close()
            return
        except OSError:
            if p.poll() is not None or time.monotonic() > deadline:
                err = getattr(p, "errfile", None) or p.stderr
                if err is not None:
                    err.seek(0) if hasattr(err, "seek") else None
                raise RuntimeError("server did not start" + (f": {err.read()[-500:]}" if err else ""))
            time.sleep(0.05)


def bulk(host, mb):
    """Echo both ways at once (the tutorial's echo server): MB/s each way."""
    data = os.urandom(1 << 20)
    s = socket.create_connection((host, PORT), timeout=60)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
    got = [0]

    def reader():
        while got[0] < mb << 20:
            d = s.recv(1 << 20)
            if not d:
                break
            got[0] += len(d)
    t = threading.Thread(target=reader)
    t0 = time.perf_counter()
    t.start()
    for _ in range(mb):
        s.sendall(data)
    t.join(120)
    dt = time.perf_counter() - t0
    s.close()
    assert got[0] == mb << 20, got[0]
    return mb / dt  # MB/s each way


def bulk_in(host, mb):
    """kernel -> server: mb MiB to the discard port, done when the server, having
    read everything, closes its side. MB/s."""
    data = os.urandom(1 << 20)
    s = socket.create_connection((host, DISCARD))
    s.settimeout(60)
    t0 = time.perf_counter()
    for _ in range(mb):
        s.sendall(data)
    s.shutdown(socket.SHUT_WR)
    while s.recv(65536):
        pass
    dt = time.perf_counter() - t0
    s.close()
    return mb / dt


def bulk_out(host, mb):
    """server -> kernel: mb MiB read from the source port. MB/s."""
    s = socket.create_connection((host, SOURCE))
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
    s.settimeout(60)
    buf = bytearray(1 << 20)
    need = mb << 20
    t0 = time.perf_counter()
    while need > 0:
        n = s.recv_into(buf)
        if not n:
            raise RuntimeError("the source closed early")
        need -= n
    dt = time.perf_counter() - t0
    s.close()
    return mb / dt


def rtt(host, n=2000):
    s = socket.create_connection((host, PORT), timeout=10)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    msg = b"x" * 64
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        s.sendall(msg)
        got = 0
        while got < 64:
            got += len(s.recv(64 - got))
        times.append(time.perf_counter() - t0)
    s.close()
    return statistics.median(times) * 1e6


def rate(host, conns, seconds):
    import selectors
    sel = selectors.DefaultSelector()
    socks = []
    for _ in range(conns):
        s = socket.create_connection((host, PORT))
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        s.setblocking(False)
        s.send(b"r" * 64)
        sel.register(s, selectors.EVENT_READ, [0])
        socks.append(s)
    done = 0
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        for key, _ in sel.select(0.5):
            s = key.fileobj
            d = s.recv(4096)
            key.data[0] += len(d)
            while key.data[0] >= 64:
                key.data[0] -= 64
                done += 1
                s.send(b"r" * 64)
    for s in socks:
        s.close()
    return done / seconds


def conn_rate(host, seconds, lanes=16):
    """connect + 16-byte request + its echo + close, with `lanes` connections in
    progress at once (as `ab -c 16` would): completed connections per second."""
    import selectors
    sel = selectors.DefaultSelector()
    done = 0

    def start():
        s = socket.socket()
        s.setblocking(False)
        s.connect_ex((host, PORT))
        sel.register(s, selectors.EVENT_WRITE, [0])

    for _ in range(lanes):
        start()
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        for key, ev in sel.select(0.5):     # bounded: the loop ends at `end` whatever the server does
            s = key.fileobj
            if ev & selectors.EVENT_WRITE:
                if s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR):
                    raise RuntimeError("connect failed")
                s.send(b"q" * 16)
                sel.modify(s, selectors.EVENT_READ, key.data)
                continue
            d = s.recv(64)
            key.data[0] += len(d)
            if key.data[0] >= 16 or not d:
                sel.unregister(s)
                s.close()
                done += 1
                start()
    for key in list(sel.get_map().values()):
        key.fileobj.close()
    return done / seconds


def conn_rate_sequential(host, seconds):
    """One connection at a time: bound by round trips more than by the server."""
    n = 0
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        s = socket.create_connection((host, PORT), timeout=5)
        s.sendall(b"q" * 16)
        got = 0
        while got < 16:
            d = s.recv(16)
            if not d:
                raise RuntimeError("the server closed without answering")
            got += len(d)
        s.close()
        n += 1
    return n / seconds


def _server(lab, ns, argv):
    errf = tempfile.TemporaryFile("w+")
    p = lab.popen(ns, argv, stdout=subprocess.DEVNULL, stderr=errf, text=True)
    p.errfile = errf
    return p


def run_round(lab, ns, argv, bulk_argv, host, args):
    """One sample of every measure for one server (fresh server processes)."""
    res = {}
    # bulk, one direction at a time, against the discard / source servers
    # a server's stderr goes to a file: a pipe nobody drains would stall a server
    # that logs (asyncio logs every connection reset)
    p = _server(lab, ns, bulk_argv)
    netns.pushns(ns)
    try:
        wait_port(host, p, port=DISCARD)
        bulk_in(host, 8)                          # warm-up
        c0 = cpu(p.pid)
        res["bulk_in"] = bulk_in(host, args.bulk_mb)
        res["cpu_per_mb"] = (cpu(p.pid) - c0) / args.bulk_mb
        res["bulk_out"] = bulk_out(host, args.bulk_mb)
    finally:
        netns.popns()
        p.kill()
        p.wait()
    p = _server(lab, ns, argv)
    netns.pushns(ns)
    try:
        wait_port(host, p)
        res["echo"] = bulk(host, args.bulk_mb)
        res["rtt"] = rtt(host)
        c0 = cpu(p.pid)
        r = rate(host, 64, args.seconds)
        res["rps"] = r
        res["cpu_per_req"] = (cpu(p.pid) - c0) / max(1, r * args.seconds)
        res["cps"] = conn_rate(host, args.seconds)
        res["cps_seq"] = conn_rate_sequential(host, args.seconds)
    finally:
        netns.popns()
        p.kill()
        p.wait()
    return res


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=3.0)
    ap.add_argument("--bulk-mb", type=int, default=1024, help="MiB per bulk run (a 256 MiB run lasts ~70 ms here: too short to be steady)")
    ap.add_argument("--runs", type=int, default=3, help="medians of this many rounds")
    ap.add_argument("--only", help="comma-separated server names to measure (default: all)")
    ap.add_argument("--shards", action="store_true",
                    help="instead: -c1 vs -c2 of sharded_echo_server.py, native and posix (issue 5)")
    args = ap.parse_args()
    signal.signal(signal.SIGTERM, lambda *_a: sys.exit(1))    # so that NetLab removes the namespace
    if args.shards:
        return shards_main(args)
    ex = os.path.join(ROOT, "examples", "tutorial", "echo_server.py")
    bs = os.path.join(ROOT, "scripts", "bench", "bulk_server.py")
    py = sys.executable
    # one MAC for every native server process, so the kernel's ARP entry stays right
    native = ["-c1", "--network-stack", "native", "--tap-device", "tap0", "--host-ipv4-addr", STACK,
              "--hw-address", "02:00:00:00:00:02"]
    rows = []
    with NetLab("bench") as lab:
        ns = lab.ns("bench")
        lab.tap(ns, "tap0", f"{KERNEL}/24")
        # Tens of thousands of short connections per server: let the client reuse
        # its TIME-WAIT ports (timestamps are on) so later servers still get ports.
        lab.sysctl(ns, "net/ipv4/tcp_tw_reuse", "1")
        lab.sysctl(ns, "net/ipv4/ip_local_port_range", "10000 65000")
        cases = [
            ("native (TAP)", [py, ex, *native], [py, bs, *native], STACK),
            ("posix", [py, ex, "-c1", "--network-stack", "posix"], [py, bs, "-c1", "--network-stack", "posix"],
             KERNEL),
            ("asyncio", [py, "-c", ASYNCIO], [py, bs, "--framework", "asyncio"], KERNEL),
            ("uvloop", [py, "-c", ASYNCIO, "uvloop"], [py, bs, "--framework", "uvloop"], KERNEL),
            ("trio", [py, "-c", TRIO], [py, bs, "--framework", "trio"], KERNEL),
        ]
        if args.only:
            keep = {x.strip() for x in args.only.split(",")}
            cases = [c for c in cases if c[0].split()[0] in keep]
        # Round-robin: every round measures every server once, so a slow phase of
        # this VM (they last minutes) hits all of them alike; medians of the rounds.
        samples = {c[0]: [] for c in cases}
        errors = {}
        for rnd in range(args.runs):
            for name, argv, bulk_argv, host in cases:
                if name in errors:
                    continue
                try:
                    samples[name].append(run_round(lab, ns, argv, bulk_argv, host, args))
                except Exception as e:  # noqa: BLE001
                    import traceback
                    traceback.print_exc()
                    errors[name] = str(e)[:60]
                print(f"  round {rnd + 1}: measured {name}", flush=True)
        for name, *_ in cases:
            if name in errors:
                rows.append((name, {"error": errors[name]}))
            else:
                rows.append((name, {k: statistics.median(x[k] for x in samples[name]) for k in samples[name][0]}))
    base = dict(rows).get("asyncio", {})
    print(f"\nmedians of {args.runs} rounds (servers measured round-robin); bulk {args.bulk_mb} MiB per run, "
          f"one direction at a time")
    print(f"{'server':13} {'in MB/s':>8} {'out MB/s':>9} {'echo MB/s':>9} {'RTT us':>7} {'req/s':>7} "
          f"{'conn/s':>7} {'seq c/s':>7} {'CPU-s/MB in':>11} {'CPU us/req':>10}   "
          f"vs asyncio (in, out, rtt, req/s, conn/s)")
    for name, r in rows:
        if "error" in r:
            print(f"{name:13} error: {r['error']}")
            continue
        ratio = ""
        if base and "rps" in base:
            ratio = (f"x{r['bulk_in'] / base['bulk_in']:.2f}, x{r['bulk_out'] / base['bulk_out']:.2f}, "
                     f"x{base['rtt'] / r['rtt']:.2f}, x{r['rps'] / base['rps']:.2f}, x{r['cps'] / base['cps']:.2f}")
        print(f"{name:13} {r['bulk_in']:8.0f} {r['bulk_out']:9.0f} {r['echo']:9.0f} {r['rtt']:7.0f} "
              f"{r['rps']:7.0f} {r['cps']:7.0f} {r['cps_seq']:7.0f} {r['cpu_per_mb']:11.5f} "
              f"{r['cpu_per_req'] * 1e6:10.1f}   {ratio}")



def shards_main(args):
    """req/s and server CPU per request, -c1 vs -c2, native and posix. The load
    generator shares the 2 cores: read CPU per request beside throughput.
    Configurations are measured round-robin (one run each per round), medians
    of the rounds, as in the main table."""
    ex = os.path.join(ROOT, "examples", "tutorial", "sharded_echo_server.py")
    py = sys.executable
    configs = [(stack, c) for stack in ("native", "native-mq", "posix") for c in (1, 2)]
    samples = {k: [] for k in configs}     # (req/s, CPU per request, forwarded share or None)
    with NetLab("benchc") as lab:
        ns = lab.ns("benchc")
        lab.tap(ns, "tap0", f"{KERNEL}/24")
        lab.tap(ns, "tapm", "198.51.100.1/24", multi_queue=True)
        for rnd in range(args.runs):
            for stack, c in configs:
                argv = [py, ex, f"-c{c}", "--network-stack", stack.split("-")[0], "--print-net-stats"]
                host = KERNEL
                if stack == "native":
                    argv += ["--tap-device", "tap0", "--host-ipv4-addr", STACK, "--hw-address", "02:00:00:00:00:02"]
                    host = STACK
                elif stack == "native-mq":
                    argv += ["--tap-device", "tapm", "--host-ipv4-addr", "198.51.100.2",
                             "--hw-address", "02:00:00:00:00:03"]
                    host = "198.51.100.2"
                errf = tempfile.TemporaryFile("w+")
                p = lab.popen(ns, argv, stdout=subprocess.DEVNULL, stderr=errf, text=True)
                p.errfile = errf
                netns.pushns(ns)
                try:
                    wait_port(host, p)
                    pids = [p.pid] + [int(x) for x in open(f"/proc/{p.pid}/task/{p.pid}/children").read().split()]
                    c0 = sum(cpu(x) for x in pids)
                    r = rate(host, 64, args.seconds)
                    cpr = (sum(cpu(x) for x in pids) - c0) / max(1, r * args.seconds)
                finally:
                    netns.popns()
                    p.send_signal(2)
                    try:
                        p.wait(timeout=10)
                    except subprocess.TimeoutExpired:
                        p.kill()
                        p.wait()
                    errf.seek(0)
                    err = errf.read()
                stats = [json.loads(line[len("net-stats "):]) for line in err.splitlines()
                         if line.startswith("net-stats ") and "device_forwarded" in line]
                fwd = None
                if stats:
                    f = sum(st.get("device_forwarded", 0) for st in stats)
                    total = sum(st.get("device_kept", 0) + st.get("device_forwarded", 0) for st in stats)
                    fwd = f / max(1, total)
                samples[(stack, c)].append((r, cpr, fwd))
                print(f"  round {rnd + 1}: measured {stack} -c{c}", flush=True)
    print(f"\nmedians of {args.runs} rounds of {args.seconds:g} s (configurations round-robin)")
    print(f"{'stack':10} {'shards':>6} {'req/s (64c)':>12} {'server CPU us/req':>18} {'frames forwarded':>17}")
    for (stack, c), xs in samples.items():
        r = statistics.median(x[0] for x in xs)
        cpr = statistics.median(x[1] for x in xs)
        fw = [x[2] for x in xs if x[2] is not None]
        fwd = f"{statistics.median(fw) * 100:.0f}%" if fw else "-"
        print(f"{stack:10} {c:>6} {r:12.0f} {cpr * 1e6:18.1f} {fwd:>17}")

if __name__ == "__main__":
    main()
