"""Network benchmark: the same kernel client against echo servers on
(a) our native stack on a TAP, (b) our posix stack, (c) plain asyncio, uvloop
and trio servers on kernel sockets -- all in one network namespace created
(and removed) by this script, all in the same run.

    sudo .venv/bin/python scripts/bench/net.py [--seconds 3] [--bulk-mb 64]

Prints absolute numbers, ratios against asyncio, and the server's CPU seconds
per MB and per request (from /proc/<pid>/stat). Loads are bounded in count and
time. The client shares the 2 cores with the server: read CPU-per-unit
columns as the fairer comparison.
"""
import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, ROOT)

from pyroute2 import netns  # noqa: E402

from netstack.netlab import NetLab  # noqa: E402

KERNEL, STACK, PORT = "192.0.2.1", "192.0.2.2", 1234
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


def wait_port(host, p, timeout=15):
    deadline = time.monotonic() + timeout
    while True:
        try:
            socket.create_connection((host, PORT), timeout=0.3).close()
            return
        except OSError:
            if p.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"server did not start: {p.stderr.read()[-500:]}")
            time.sleep(0.05)


def bulk(host, mb):
    data = os.urandom(1 << 20)
    s = socket.create_connection((host, PORT))
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


def rtt(host, n=2000):
    s = socket.create_connection((host, PORT))
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


def conn_rate(host, seconds):
    n = 0
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        s = socket.create_connection((host, PORT))
        s.sendall(b"q" * 16)
        got = 0
        while got < 16:
            got += len(s.recv(16))
        s.close()
        n += 1
    return n / seconds


def run_one(lab, ns, name, argv, host, args):
    p = lab.popen(ns, argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    netns.pushns(ns)
    try:
        wait_port(host, p)
        res = {}
        c0 = cpu(p.pid)
        res["bulk"] = bulk(host, args.bulk_mb)
        res["cpu_per_mb"] = (cpu(p.pid) - c0) / (2 * args.bulk_mb)
        res["rtt"] = rtt(host)
        c0 = cpu(p.pid)
        r = rate(host, 64, args.seconds)
        res["rps"] = r
        res["cpu_per_req"] = (cpu(p.pid) - c0) / max(1, r * args.seconds)
        res["cps"] = conn_rate(host, args.seconds)
    finally:
        netns.popns()
        p.kill()
        p.wait()
    return res


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=3.0)
    ap.add_argument("--bulk-mb", type=int, default=64)
    ap.add_argument("--shards", action="store_true",
                    help="instead: -c1 vs -c2 of sharded_echo_server.py, native and posix (issue 5)")
    args = ap.parse_args()
    if args.shards:
        return shards_main(args)
    ex = os.path.join(ROOT, "examples", "tutorial", "echo_server.py")
    py = sys.executable
    rows = []
    with NetLab("bench") as lab:
        ns = lab.ns("bench")
        lab.tap(ns, "tap0", f"{KERNEL}/24")
        cases = [
            ("native (TAP)", [py, ex, "-c1", "--network-stack", "native", "--tap-device", "tap0",
                              "--host-ipv4-addr", STACK], STACK),
            ("posix", [py, ex, "-c1", "--network-stack", "posix"], KERNEL),
            ("asyncio", [py, "-c", ASYNCIO], KERNEL),
            ("uvloop", [py, "-c", ASYNCIO, "uvloop"], KERNEL),
            ("trio", [py, "-c", TRIO], KERNEL),
        ]
        for name, argv, host in cases:
            try:
                rows.append((name, run_one(lab, ns, name, argv, host, args)))
            except Exception as e:  # noqa: BLE001
                rows.append((name, {"error": str(e)[:60]}))
            print(f"  measured {name}", flush=True)
    base = dict(rows).get("asyncio", {})
    print(f"\n{'server':14} {'bulk MB/s':>10} {'64B RTT us':>11} {'req/s (64c)':>12} {'conn/s':>8} "
          f"{'CPU-s/MB':>9} {'CPU-s/req':>10}   ratios vs asyncio (bulk, rtt, req/s, conn/s)")
    for name, r in rows:
        if "error" in r:
            print(f"{name:14} error: {r['error']}")
            continue
        ratio = ""
        if base and "bulk" in base:
            ratio = (f"x{r['bulk'] / base['bulk']:.2f}, x{base['rtt'] / r['rtt']:.2f}, "
                     f"x{r['rps'] / base['rps']:.2f}, x{r['cps'] / base['cps']:.2f}")
        print(f"{name:14} {r['bulk']:10.1f} {r['rtt']:11.0f} {r['rps']:12.0f} {r['cps']:8.0f} "
              f"{r['cpu_per_mb']:9.4f} {r['cpu_per_req'] * 1e6:8.1f}us   {ratio}")


def shards_main(args):
    """req/s and server CPU per request, -c1 vs -c2, native and posix. The load
    generator shares the 2 cores: read CPU per request beside throughput."""
    ex = os.path.join(ROOT, "examples", "tutorial", "sharded_echo_server.py")
    py = sys.executable
    rows = []
    with NetLab("benchc") as lab:
        ns = lab.ns("benchc")
        lab.tap(ns, "tap0", f"{KERNEL}/24")
        lab.tap(ns, "tapm", "198.51.100.1/24", multi_queue=True)
        for stack in ("native", "native-mq", "posix"):
            for c in (1, 2):
                argv = [py, ex, f"-c{c}", "--network-stack", stack.split("-")[0], "--print-net-stats"]
                host = KERNEL
                if stack == "native":
                    argv += ["--tap-device", "tap0", "--host-ipv4-addr", STACK]
                    host = STACK
                elif stack == "native-mq":
                    argv += ["--tap-device", "tapm", "--host-ipv4-addr", "198.51.100.2"]
                    host = "198.51.100.2"
                p = lab.popen(ns, argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
                netns.pushns(ns)
                try:
                    wait_port(host, p)
                    pids = [p.pid] + [int(x) for x in open(f"/proc/{p.pid}/task/{p.pid}/children").read().split()]
                    c0 = sum(cpu(x) for x in pids)
                    r = rate(host, 64, args.seconds)
                    used = sum(cpu(x) for x in pids) - c0
                    rows.append((stack, c, r, used / max(1, r * args.seconds)))
                finally:
                    netns.popns()
                    p.send_signal(2)
                    try:
                        _o, err = p.communicate(timeout=10)
                    except subprocess.TimeoutExpired:
                        p.kill()
                        _o, err = p.communicate()
                stats = [json.loads(line[len("net-stats "):]) for line in err.splitlines()
                         if line.startswith("net-stats ") and "device_forwarded" in line]
                if stats:
                    fwd = sum(st.get("device_forwarded", 0) for st in stats)
                    total = sum(st.get("device_kept", 0) + st.get("device_forwarded", 0) for st in stats)
                    rows[-1] += (fwd / max(1, total),)
                print(f"  measured {stack} -c{c}", flush=True)
    print(f"\n{'stack':10} {'shards':>6} {'req/s (64c)':>12} {'server CPU us/req':>18} {'frames forwarded':>17}")
    for row in rows:
        stack, c, r, cpr = row[:4]
        fwd = f"{row[4] * 100:.0f}%" if len(row) > 4 else "-"
        print(f"{stack:10} {c:>6} {r:12.0f} {cpr * 1e6:18.1f} {fwd:>17}")


if __name__ == "__main__":
    main()
