"""HTTP benchmark: wrk against examples/httpd.py on both stacks and two baselines,
in the same run, round-robin (run as root).

    sudo .venv/bin/python scripts/bench/httpd.py [--rounds 3] [--duration 5] [--connections 32]

One network namespace with a TAP (kernel 192.0.2.1, our native stack 192.0.2.2).
Servers, each started fresh per cell and pinned to CPU 1: our httpd on the
native stack (TAP; with httptools, its default, and with h11), our httpd on
posix (kernel sockets, 192.0.2.1), asyncio
streams + h11, uvloop + httptools (scripts/bench/httpd_baselines.py; same
/hello response). wrk (Debian's, installed if missing), pinned to CPU 0, runs
GET /hello with keep-alive from inside the namespace. Printed: requests/s,
latency p50/p99, server CPU per request (utime+stime over the run / requests),
medians of the rounds.
"""
import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, ROOT)

KERNEL, STACK, PORT = "192.0.2.1", "192.0.2.2", 8080
HTTPD = [sys.executable, os.path.join(ROOT, "examples", "httpd.py"), "-c1", "--port", str(PORT)]
NATIVE = ["--network-stack", "native", "--tap-device", "tap0", "--host-ipv4-addr", STACK, "--gw-ipv4-addr", KERNEL]
SERVERS = {
    "native httpd (TAP)": (STACK, HTTPD + NATIVE),
    "native httpd, h11": (STACK, HTTPD + NATIVE + ["--parser", "h11"]),
    "posix httpd": (KERNEL, HTTPD),
    "asyncio + h11": (KERNEL, [sys.executable, os.path.join(HERE, "httpd_baselines.py"), "asyncio-h11", KERNEL,
                               str(PORT)]),
    "uvloop + httptools": (KERNEL, [sys.executable, os.path.join(HERE, "httpd_baselines.py"), "uvloop-httptools",
                                    KERNEL, str(PORT)]),
}


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _ms(text: str) -> float:
    m = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text)
    if m is None:
        raise ValueError(f"wrk latency {text!r}")
    v, unit = float(m.group(1)), m.group(2)
    return {"us": v / 1000, "ms": v, "s": v * 1000, "m": v * 60000}[unit]


def run_cell(lab, ns, name, a):
    host, argv = SERVERS[name]
    p = lab.popen(ns, ["taskset", "-c", "1", *argv], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        lab.wait_port(ns, host, PORT, p)
        # the server's own process (taskset exec'd into it, so it is p.pid)
        c0 = cpu_seconds(p.pid)
        r = lab.run(ns, ["taskset", "-c", "0", "wrk", "-t1", f"-c{a.connections}", f"-d{a.duration}s", "--latency",
                         f"http://{host}:{PORT}/hello"], capture_output=True, text=True, timeout=a.duration + 60)
        c1 = cpu_seconds(p.pid)
    finally:
        lab.stop(p)
    out = r.stdout
    m = re.search(r"(\d+) requests in", out)
    reqs = int(m.group(1)) if m else 0
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)) if reqs else 0.0
    p50 = _ms(re.search(r"50%\s+(\S+)", out).group(1)) if reqs else 0.0
    p99 = _ms(re.search(r"99%\s+(\S+)", out).group(1)) if reqs else 0.0
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)|Socket errors: (.*)", out)
    cpu_us = (c1 - c0) / reqs * 1e6 if reqs else 0.0
    return rps, p50, p99, cpu_us, errors.group(0) if errors else ""


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--duration", type=int, default=5)
    ap.add_argument("--connections", type=int, default=32)
    ap.add_argument("--servers", default="", help="comma-separated names (default: all)")
    a = ap.parse_args()
    if shutil.which("wrk") is None:
        subprocess.run(["apt-get", "install", "-y", "-q", "wrk"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    from netstack.testing.netlab import NetLab
    names = [n for n in SERVERS if not a.servers or n in a.servers.split(",")]
    res = {n: [] for n in names}
    with NetLab("httpbench") as lab:
        ns = lab.ns("k")
        lab.tap(ns, "tap0", f"{KERNEL}/24")
        for rnd in range(a.rounds):
            for n in names:
                cell = run_cell(lab, ns, n, a)
                res[n].append(cell)
                print(f"  round {rnd}: {n:20} {cell[0]:9.0f} req/s  p50 {cell[1]:.2f} ms  p99 {cell[2]:.2f} ms  "
                      f"{cell[3]:.1f} us CPU/req {cell[4]}", file=sys.stderr, flush=True)
    print(f"\nwrk -t1 -c{a.connections} -d{a.duration}s GET /hello (keep-alive), server on CPU 1, wrk on CPU 0; "
          f"medians of {a.rounds} rounds")
    print(f"| server | req/s | p50 ms | p99 ms | server CPU us/req |\n|---|---|---|---|---|")
    for n in names:
        cells = res[n]
        med = [statistics.median(c[i] for c in cells) for i in range(4)]
        print(f"| {n} | {med[0]:.0f} | {med[1]:.2f} | {med[2]:.2f} | {med[3]:.1f} |")


if __name__ == "__main__":
    main()
