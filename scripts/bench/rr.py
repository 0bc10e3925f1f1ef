"""Requests, connections and bulk with a C load generator (run as root).

    sudo .venv/bin/python scripts/bench/rr.py [--rounds 3]

Builds scripts/bench/loadgen.c (gcc installed if missing): one thread on epoll
(and 4 forked workers for connect/echo/close), pinned to CPU 0, so the client
is not the bottleneck. Servers, pinned to CPU 1, started fresh each round: the
tutorial's echo_server.py on the native stack (TAP) and on posix, asyncio
streams, uvloop streams, a C epoll echo. All in one namespace (TAP kernel side
192.0.2.1, our stack 192.0.2.2). Per server: bulk echo of 100 MiB (MB/s and
server CPU ms/MB), RTT p50 of one connection's 64-byte round trips, 64
connections' request/response rate (and CPU us/request), connect+request+close
rate, and the server's resident memory per idle connection (10,000 held open
after one round trip each), and a burst of 3,000 connects at once (a SYN
resent after an overflowing listen queue shows as a connect of >= 1 s). Medians of the rounds, round-robin; the targets of issue 15 marked.
"""
import argparse
import json
import os
import resource
import statistics
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, ROOT)
sys.path.insert(0, HERE)
from cbuild import build_c  # noqa: E402
KERNEL, STACK, PORT = "192.0.2.1", "192.0.2.2", 1234
IDLE_CONNS = 10000
BURST_CONNS = 3000
LOADGEN = os.path.join(ROOT, ".venv", "loadgen")
ECHO = os.path.join(ROOT, "examples", "tutorial", "echo_server.py")
SERVERS = {
    "native (TAP)": (STACK, [sys.executable, ECHO, "-c1", "--port", str(PORT), "--network-stack", "native",
                             "--tap-device", "tap0", "--host-ipv4-addr", STACK, "--gw-ipv4-addr", KERNEL]),
    "posix": (KERNEL, [sys.executable, ECHO, "-c1", "--port", str(PORT)]),
    "asyncio streams": (KERNEL, [sys.executable, os.path.join(HERE, "echo_baselines.py"), "asyncio", KERNEL, str(PORT)]),
    "uvloop streams": (KERNEL, [sys.executable, os.path.join(HERE, "echo_baselines.py"), "uvloop", KERNEL, str(PORT)]),
    "C epoll echo": (KERNEL, [LOADGEN, "server", KERNEL, str(PORT)]),
}


def build() -> None:
    build_c(os.path.join(HERE, "loadgen.c"), LOADGEN)


def cpu(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        x = f.read().rsplit(")", 1)[1].split()
    return (int(x[11]) + int(x[12])) / os.sysconf("SC_CLK_TCK")


def load(lab, ns, argv, timeout=120):
    r = lab.run(ns, ["taskset", "-c", "0", LOADGEN, *argv], capture_output=True, text=True, timeout=timeout)
    if r.returncode != 0:
        raise RuntimeError(f"loadgen {argv}: {r.stderr}")
    return json.loads(r.stdout)


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def idle_kib(lab, ns, host, server_pid, conns=IDLE_CONNS):
    """The server's resident memory per idle connection: RSS with `conns`
    connections open (each after one 64-byte round trip) less RSS before."""
    before = rss_kib(server_pid)
    h = lab.popen(ns, ["taskset", "-c", "0", LOADGEN, "hold", host, str(PORT), str(conns), "2"],
                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = h.stdout.readline()
        if not line.startswith('{"held"'):
            raise RuntimeError(f"loadgen hold: {h.stderr.read()}")
        held = rss_kib(server_pid)
    finally:
        h.wait(timeout=60)
    return (held - before) / conns


def run_server(lab, ns, name):
    host, argv = SERVERS[name]
    p = lab.popen(ns, ["taskset", "-c", "1", *argv], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    out = {}
    try:
        lab.wait_port(ns, host, PORT, p)
        c0 = cpu(p.pid)
        b = load(lab, ns, ["bulk", host, str(PORT), "100"])
        c1 = cpu(p.pid)
        out["bulk MB/s"] = b["bytes"] / b["seconds"] / 1e6
        out["CPU ms/MB"] = (c1 - c0) * 1000 / (b["bytes"] / 1e6)
        out["RTT p50 us"] = load(lab, ns, ["rr", host, str(PORT), "1", "3", "64"])["p50_us"]
        c0 = cpu(p.pid)
        r = load(lab, ns, ["rr", host, str(PORT), "64", "4", "64"])
        c1 = cpu(p.pid)
        out["64-conn req/s"] = r["requests"] / r["seconds"]
        out["CPU us/req"] = (c1 - c0) / max(r["requests"], 1) * 1e6
        c = load(lab, ns, ["conn", host, str(PORT), "4", "3"])
        out["conn/s"] = c["connections"] / c["seconds"]
        out["conn failed"] = c["failed"]
    finally:
        lab.stop(p)
    # idle memory on a fresh server of its own (10,000 connections closing at once
    # leave work behind that would slow any row after them; memory freed by the
    # rows before would be reused and hide part of the cost)
    p = lab.popen(ns, ["taskset", "-c", "1", *argv], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        lab.wait_port(ns, host, PORT, p)
        out["idle KiB/conn"] = idle_kib(lab, ns, host, p.pid)
    finally:
        lab.stop(p)
    # a burst of BURST_CONNS connects at once, on a fresh server too: a listen queue
    # that overflows shows as SYNs the client resends after a second
    p = lab.popen(ns, ["taskset", "-c", "1", *argv], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        lab.wait_port(ns, host, PORT, p)
        b = load(lab, ns, ["burst", host, str(PORT), str(BURST_CONNS)])
        out["burst s"] = b["seconds"] if not b["failed"] and b["connected"] == BURST_CONNS else float("inf")
        out["burst max connect ms"] = b["max_connect_ms"]
    finally:
        lab.stop(p)
    return out


COLS = ["bulk MB/s", "CPU ms/MB", "RTT p50 us", "64-conn req/s", "CPU us/req", "conn/s", "conn failed",
        "idle KiB/conn", "burst s", "burst max connect ms"]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--servers", default="")
    a = ap.parse_args()
    build()
    # the servers hold IDLE_CONNS sockets at once (posix, asyncio, uvloop, C)
    resource.setrlimit(resource.RLIMIT_NOFILE, (IDLE_CONNS + 1024, max(IDLE_CONNS + 1024,
                                                                      resource.getrlimit(resource.RLIMIT_NOFILE)[1])))
    from netstack.testing.netlab import NetLab
    names = [n for n in SERVERS if not a.servers or n in a.servers.split(",")]
    res = {n: [] for n in names}
    with NetLab("rr") as lab:
        ns = lab.ns("k")
        lab.tap(ns, "tap0", f"{KERNEL}/24")
        # connect/close loops leave the client's side in TIME-WAIT: without reuse the
        # namespace runs out of ports after ~28k connections and the later rows measure that
        lab.sysctl(ns, "net/ipv4/tcp_tw_reuse", "1")
        lab.sysctl(ns, "net/ipv4/ip_local_port_range", "10000 65000")
        for rnd in range(a.rounds):
            for n in names:
                cell = run_server(lab, ns, n)
                res[n].append(cell)
                print(f"  round {rnd}: {n:16} " + "  ".join(f"{k} {cell[k]:.1f}" for k in COLS), file=sys.stderr,
                      flush=True)
    med = {n: {k: statistics.median(c[k] for c in res[n]) for k in COLS} for n in names}
    print(f"\nmedians of {a.rounds} rounds; server on CPU 1, C load generator on CPU 0")
    print("| server | " + " | ".join(COLS) + " |\n|---|" + "---|" * len(COLS))
    for n in names:
        print(f"| {n} | " + " | ".join(f"{med[n][k]:.1f}" if med[n][k] < 100 else f"{med[n][k]:.0f}" for k in COLS) + " |")
    if "native (TAP)" in med and "asyncio streams" in med:
        nat, asy = med["native (TAP)"], med["asyncio streams"]
        print("\ntargets (native, issue 15):")
        print(f"  64-conn req/s >= asyncio's: {nat['64-conn req/s'] / asy['64-conn req/s']:.2f}x "
              f"{'MET' if nat['64-conn req/s'] >= asy['64-conn req/s'] else 'not met'}; CPU/req "
              f"{nat['CPU us/req'] / asy['CPU us/req']:.2f}x of asyncio's")
        print(f"  conn/s >= asyncio's: {nat['conn/s'] / asy['conn/s']:.2f}x "
              f"{'MET' if nat['conn/s'] >= asy['conn/s'] else 'not met'}")
        if "C epoll echo" in med:
            cc = med["C epoll echo"]
            print(f"  bulk >= C echo's: {nat['bulk MB/s'] / cc['bulk MB/s']:.2f}x "
                  f"{'MET' if nat['bulk MB/s'] >= cc['bulk MB/s'] else 'not met'}; RTT within 10%: "
                  f"{nat['RTT p50 us'] / cc['RTT p50 us']:.2f}x {'MET' if nat['RTT p50 us'] <= 1.1 * cc['RTT p50 us'] else 'not met'}")
        if "posix" in med and "uvloop streams" in med:
            px, uv = med["posix"], med["uvloop streams"]
            print(f"  posix req/s >= uvloop's: {px['64-conn req/s'] / uv['64-conn req/s']:.2f}x; "
                  f"conn/s: {px['conn/s'] / uv['conn/s']:.2f}x")
        if "posix" in med:
            px = med["posix"]
            absorbed = asy["burst max connect ms"] < 1000
            print(f"  posix absorbs a {BURST_CONNS}-connect burst (no SYN resent) where asyncio does: "
                  f"posix worst connect {px['burst max connect ms']:.0f} ms, asyncio "
                  f"{asy['burst max connect ms']:.0f} ms: "
                  f"{'MET' if px['burst max connect ms'] < 1000 or not absorbed else 'not met'}")
        print(f"  idle connection <= 4 KiB: {nat['idle KiB/conn']:.2f} KiB "
              f"{'MET' if nat['idle KiB/conn'] <= 4 else 'not met'} ({IDLE_CONNS} held)")


if __name__ == "__main__":
    main()
