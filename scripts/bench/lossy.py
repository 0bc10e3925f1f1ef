"""Goodput on a lossy link, our stack and Linux in the same run (run as root).

    sudo .venv/bin/python scripts/bench/lossy.py [--size-mib 50] [--levels 0,1,5] [--sim]

Three namespaces: a Linux client (198.51.100.1), an impairment bridge
(scripts/bench/impair_bridge.c, built here with gcc: seeded loss, reorder,
duplication, corruption, 1 ms delay each way, recvmmsg/sendmmsg so that it is
not the bottleneck), and the server: our native echo server on
AF_PACKET (198.51.100.2, offloads off), or a Linux echo server. The client
sends SIZE MiB and reads the echo back at once (both directions loaded);
goodput = SIZE / time, sha256 checked. Cells: (loss, reorder, dup, corrupt) =
(0,0,0,0), (1,1,0.1,0.1)%, (5,5,1,1)%; servers: ours with newreno and cubic
against a Linux client on reno and cubic, Linux against Linux with reno, cubic
and bbr. Rows are measured round-robin within each level. Two more levels by
name: 5r, the 5% cell's reordering alone, and 5n, the rest of it without.

--sim: the same question on the in-memory LinkPair (no root, seconds):
goodput in simulated time against the Mathis bound.

Each native cell also prints the server's CPU seconds (and per MB echoed).
To see why a cell is slow: --capture DIR (tcpdump on both sides of the
bridge, per cell: what the server sent and heard, what the client received
and reported) and --py-spy DIR (the native server's raw stacks, per cell).
"""
import argparse
import hashlib
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, ROOT)
sys.path.insert(0, HERE)
from cbuild import build_c  # noqa: E402

CLIENT, SERVER = "198.51.100.1", "198.51.100.2"
BRIDGE = os.path.join(ROOT, ".venv", "impair_bridge")
PORT = 1234
LEVELS = {"0": (0, 0, 0, 0), "1": (1, 1, 0.1, 0.1), "5": (5, 5, 1, 1),
          # not in the default table, by name with --levels: the 5% cell's reordering alone, and the
          # rest of it without reordering (a reordering-only run showed RACK's avalanche of spurious
          # retransmissions: 3 MB/s where Linux went 108; see rack.py _rack_delivered)
          "5r": (0, 5, 0, 0), "5n": (5, 0, 1, 1)}
ROWS = [("ours newreno", "native", "newreno", "reno"), ("ours cubic", "native", "cubic", "cubic"),
        ("linux reno", "linux", "reno", "reno"), ("linux cubic", "linux", "cubic", "cubic"),
        ("ours bbr", "native", "bbr", "bbr"), ("linux bbr", "linux", "bbr", "bbr")]
# not in the default table, by name with --rows: our server's cc against another client cc
EXTRA_ROWS = [("ours bbr/reno", "native", "bbr", "reno"), ("ours newreno/bbr", "native", "newreno", "bbr"),
              ("linux bbr/reno", "linux", "bbr", "reno")]

LINUX_ECHO = r"""
import socket, sys, threading
cc = sys.argv[1].encode()
srv = socket.socket(); srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
srv.setsockopt(socket.IPPROTO_TCP, socket.TCP_CONGESTION, cc)
srv.bind(("198.51.100.2", 1234)); srv.listen(16)
def serve(c):
    c.setsockopt(socket.IPPROTO_TCP, socket.TCP_CONGESTION, cc)
    while (b := c.recv(1 << 16)):
        c.sendall(b)
    c.close()
while True:
    c, _ = srv.accept()
    threading.Thread(target=serve, args=(c,), daemon=True).start()
"""

# --direction up/down: a discard server on 1235 and a 64 KiB-periodic source on 1236
LINUX_BULK = r"""
import os, socket, sys, threading
cc = sys.argv[1].encode()
chunk = os.urandom(1 << 16)
def discard(c):
    while c.recv(1 << 16):
        pass
    c.close()
def source(c):
    try:
        while True:
            c.sendall(chunk)
    except OSError:
        c.close()
def serve(port, fn):
    srv = socket.socket(); srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.setsockopt(socket.IPPROTO_TCP, socket.TCP_CONGESTION, cc)
    srv.bind(("198.51.100.2", port)); srv.listen(16)
    while True:
        c, _ = srv.accept()
        c.setsockopt(socket.IPPROTO_TCP, socket.TCP_CONGESTION, cc)
        threading.Thread(target=fn, args=(c,), daemon=True).start()
threading.Thread(target=serve, args=(1235, discard), daemon=True).start()
serve(1236, source)
"""
DISCARD, SOURCE = 1235, 1236


def _connect(port: int, cc: str, timeout: float) -> socket.socket:
    deadline = time.monotonic() + 30
    while True:
        s = socket.socket()
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_CONGESTION, cc.encode())
        s.settimeout(timeout)
        try:
            s.connect((SERVER, port))
            return s
        except OSError:
            s.close()
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def client_one_way(size: int, cc: str, timeout: float, direction: str):
    """up: SIZE to the discard server, done when it closes after our FIN; down:
    SIZE from the source, every 64 KiB block equal to the first. (seconds, intact)."""
    if direction == "up":
        data = os.urandom(1 << 20)
        s = _connect(DISCARD, cc, timeout)
        t0 = time.monotonic()
        for _ in range(size >> 20):
            s.sendall(data)
        s.shutdown(socket.SHUT_WR)
        ok = s.recv(1) == b""           # the server's FIN: it has read everything
        elapsed = time.monotonic() - t0
        s.close()
        return elapsed, ok
    s = _connect(SOURCE, cc, timeout)
    t0 = time.monotonic()
    buf = bytearray()
    first = None
    ok = True
    n = 0
    while n < size:
        b = s.recv(1 << 16)
        if not b:
            ok = False
            break
        buf += b
        while len(buf) >= 1 << 16 and n < size:
            block = bytes(buf[:1 << 16])
            del buf[:1 << 16]
            first = first or block
            ok = ok and block == first
            n += 1 << 16
    elapsed = time.monotonic() - t0
    s.close()
    return elapsed, ok


def client_run(size: int, cc: str, timeout: float):
    """In the client namespace (a forked child): one echo transfer; (seconds, intact)."""
    data = os.urandom(1 << 20)
    want = hashlib.sha256()
    for _ in range(size >> 20):
        want.update(data)
    s = socket.socket()
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_CONGESTION, cc.encode())
    s.settimeout(timeout)
    deadline = time.monotonic() + 30
    while True:
        try:
            s.connect((SERVER, PORT))
            break
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)
            s = socket.socket()
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_CONGESTION, cc.encode())
            s.settimeout(timeout)
    t0 = time.monotonic()

    def sender():
        for _ in range(size >> 20):
            s.sendall(data)
        s.shutdown(socket.SHUT_WR)
    th = threading.Thread(target=sender, daemon=True)
    th.start()
    got = hashlib.sha256()
    n = 0
    while n < size:
        b = s.recv(1 << 16)
        if not b:
            break
        got.update(b)
        n += len(b)
    elapsed = time.monotonic() - t0
    s.close()
    return elapsed, n == size and got.digest() == want.digest()


def run_cell(lab, ns, level, row, size, timeout, direction="echo", diag=None):
    diag = diag or {}
    from netstack.testing.netlab import NetLab  # noqa: F401
    name, kind, server_cc, client_cc = row
    loss, reorder, dup, corrupt = LEVELS[level]
    bridge = lab.popen(ns["b"], [BRIDGE, "b0", "b1",
                                 "--loss", str(loss), "--reorder", str(reorder), "--dup", str(dup),
                                 "--corrupt", str(corrupt), "--delay-ms", "1", "--seed", "1",
                                 "--duration", str(timeout + 60)],
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    if kind == "native":
        app = os.path.join(ROOT, "examples", "tutorial", "echo_server.py") if direction == "echo" else \
            os.path.join(HERE, "bulk_server.py")
        server = lab.popen(ns["s"], [sys.executable, app,
                                     "-c1", "--network-stack", "native", "--dev", "vs0", "--host-ipv4-addr", SERVER,
                                     "--netmask-ipv4-addr", "255.255.255.0", "--no-csum-offload", "--no-tso",
                                     "--no-lro", "--print-net-stats", "--tcp-congestion", server_cc]
                           + (["--port", str(PORT)] if direction == "echo" else []),
                           stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    else:
        lab.up(ns["s"], "vs0", f"{SERVER}/24")
        server = lab.popen(ns["s"], [sys.executable, "-c", LINUX_ECHO if direction == "echo" else LINUX_BULK,
                                     server_cc],
                           stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    before = _linux_counters(lab, ns["s"]) if kind == "linux" else None
    spy = caps = None
    tag = f"{level}_{name.replace(' ', '_')}"
    if diag.get("py_spy") and kind == "native":
        time.sleep(1.5)         # the server's start-up is not the profile
        spy = subprocess.Popen([os.path.join(ROOT, ".venv", "bin", "py-spy"), "record", "-r", "300", "-f", "raw",
                                "-o", os.path.join(diag["py_spy"], f"{tag}.txt"), "-p", str(server.pid)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    if diag.get("capture"):
        # both sides of the bridge: what the server sent and heard, what the client got and said
        caps = [lab.popen(n_, ["tcpdump", "-i", dev, "-s", "128", "-B", "65536", "-w",
                               os.path.join(diag["capture"], f"{tag}_{dev}.pcap"), "tcp"],
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                for n_, dev in ((ns["s"], "vs0"), (ns["c"], "vc0"))]
        time.sleep(1)
    cpu = cpu0 = None
    try:
        cpu0 = _cpu_seconds(server.pid) if kind == "native" else None     # start-up excluded
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:
            try:
                lab.enter(ns["c"])
                res = client_run(size, client_cc, timeout) if direction == "echo" else \
                    client_one_way(size, client_cc, timeout, direction)
                os.write(w, json.dumps(res).encode())
            except BaseException as e:  # noqa: BLE001
                os.write(w, json.dumps([None, repr(e)]).encode())
            os._exit(0)
        os.close(w)
        raw = b""
        while (chunk := os.read(r, 4096)):
            raw += chunk
        os.waitpid(pid, 0)
        elapsed, ok = json.loads(raw or b"[null, false]")
    finally:
        if kind == "native" and cpu0 is not None:
            cpu = _cpu_seconds(server.pid)
            cpu = None if cpu is None else cpu - cpu0
        if spy is not None:
            spy.send_signal(signal.SIGINT)
            spy.wait(20)
        for p in caps or ():
            p.send_signal(signal.SIGINT)
            p.wait(5)
        for p in (server, bridge):
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
                try:
                    p.wait(5)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait()
        if kind == "linux":
            _del_addr(ns["s"], "vs0", SERVER)
    if kind == "native":
        st = _net_stats(server)
        if st is not None and cpu is not None:
            st["server_cpu_s"] = cpu
        return elapsed, ok, st
    after = _linux_counters(lab, ns["s"])
    return elapsed, ok, {k: after.get(k, 0) - before.get(k, 0) for k in after}


# what a cell's server counted (native: --print-net-stats, a 'net-stats {json}' line on stderr at exit;
# Linux: its namespace's counters, below):
# retransmissions and how many the client reported as duplicates show a recovery
# that resends too much; out-of-order drops, a window the stack could not hold
STAT_KEYS = (("tcp_retransmits", "retransmits"), ("tcp_dsacks_received", "D-SACKed"),
             ("tcp_rack_losses", "RACK losses"), ("tcp_timeouts", "RTOs"),
             ("tcp_timeouts_in_recovery", "in recovery"), ("tcp_timeouts_after_timeout", "after an RTO"),
             ("tcp_timeouts_retransmission_lost", "head resent"), ("tcp_tlp_probes", "TLPs"),
             ("tcp_fast_retransmits", "recoveries"), ("tcp_undo_eifel", "Eifel undos"),
             ("tcp_ooo_dropped", "ooo dropped"), ("drop_tcp_bad_checksum", "bad checksums"))


# the same counts from a Linux server's namespace (/proc/net/snmp and netstat: only
# the benchmark's connection lives there), under our stack's names
LINUX_KEYS = {("Tcp", "RetransSegs"): "tcp_retransmits", ("TcpExt", "TCPDSACKRecv"): "tcp_dsacks_received",
              ("TcpExt", "TCPTimeouts"): "tcp_timeouts", ("TcpExt", "TCPLossProbes"): "tcp_tlp_probes",
              ("TcpExt", "TCPOFODrop"): "tcp_ooo_dropped", ("Tcp", "InCsumErrors"): "drop_tcp_bad_checksum",
              ("TcpExt", "TCPSackFailures"): "tcp_timeouts_in_recovery",
              ("TcpExt", "TCPLossFailures"): "tcp_timeouts_after_timeout",
              ("TcpExt", "TCPSackRecovery"): "tcp_fast_retransmits", ("TcpExt", "TCPLossProbeRecovery"): "tcp_tlp_recoveries",
              ("TcpExt", "TCPLostRetransmit"): "tcp_lost_retransmits", ("TcpExt", "TCPSpuriousRTOs"): "tcp_spurious_rtos",
              # Linux only: recoveries undone (Eifel timestamps, D-SACK, after a loss), out-of-order queue in
              ("TcpExt", "TCPFullUndo"): "linux_full_undo", ("TcpExt", "TCPPartialUndo"): "linux_partial_undo",
              ("TcpExt", "TCPDSACKUndo"): "linux_dsack_undo", ("TcpExt", "TCPLossUndo"): "linux_loss_undo",
              ("TcpExt", "TCPSACKReorder"): "linux_sack_reorder", ("TcpExt", "TCPTSReorder"): "linux_ts_reorder"}


def _cpu_seconds(pid: int):
    """User + system CPU seconds of a running process (/proc/PID/stat), or None."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _linux_counters(lab, ns) -> dict:
    out = {}
    for path in ("/proc/net/snmp", "/proc/net/netstat"):
        r = lab.run(ns, ["cat", path], capture_output=True, text=True)
        lines = r.stdout.splitlines()
        for names, values in zip(lines[::2], lines[1::2]):
            proto, names = names.split(":", 1)
            for name, value in zip(names.split(), values.split(":", 1)[1].split()):
                key = LINUX_KEYS.get((proto, name))
                if key is not None:
                    out[key] = int(value)
    return out


def _net_stats(server):
    try:
        err = server.stderr.read() or ""
    except (OSError, ValueError):
        return None
    for line in reversed(err.splitlines()):
        if line.startswith("net-stats {"):
            try:
                return json.loads(line[len("net-stats "):])
            except ValueError:
                return None
    return None


def _del_addr(ns, ifname, ip):
    from pyroute2 import NetNS
    with NetNS(ns) as n:
        idx = n.link_lookup(ifname=ifname)[0]
        n.addr("del", index=idx, address=ip, prefixlen=24)


def offloads_off(lab, ns, dev):
    lab.run(ns, ["ethtool", "-K", dev, "tso", "off", "gso", "off", "gro", "off", "tx", "off", "rx", "off"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def build_bridge() -> None:
    build_c(os.path.join(HERE, "impair_bridge.c"), BRIDGE)


def real(a):
    from netstack.testing.netlab import NetLab
    if shutil.which("ethtool") is None:
        subprocess.run(["apt-get", "install", "-y", "-q", "ethtool"], stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL)
    build_bridge()
    size = a.size_mib << 20
    results = {}
    with NetLab("lossy") as lab:
        ns = {k: lab.ns(k) for k in ("c", "b", "s")}
        lab.veth(ns["c"], "vc0", ns["b"], "b0", f"{CLIENT}/24", None)
        lab.veth(ns["b"], "b1", ns["s"], "vs0", None, None)
        for n_, dev in ((ns["c"], "vc0"), (ns["b"], "b0"), (ns["b"], "b1"), (ns["s"], "vs0")):
            offloads_off(lab, n_, dev)
        rows = [r for r in ROWS + EXTRA_ROWS if r[0] in a.rows.split(",")] if a.rows else ROWS
        for d in (a.capture, a.py_spy):
            if d:
                os.makedirs(d, exist_ok=True)     # tcpdump and py-spy fail silently without it
        for level in a.levels.split(","):
            for rnd in range(a.rounds):
                for row in rows:
                    elapsed, ok, st = run_cell(lab, ns, level, row, size, a.timeout, a.direction,
                                              {"capture": a.capture, "py_spy": a.py_spy})
                    results.setdefault((level, row[0]), []).append((elapsed, ok))
                    mbps = size / elapsed / 1e6 if elapsed else 0.0
                    counted = "" if not st else \
                        "  (" + ", ".join(f"{label} {st[k]}" for k, label in STAT_KEYS if k in st) + ")"
                    if st and st.get("server_cpu_s") is not None:
                        # both directions cross the server: CPU per MB echoed (received and sent once each)
                        counted += f"  server CPU {st['server_cpu_s']:.2f} s, {st['server_cpu_s'] * 1e3 / (size / 1e6):.1f} ms/MB"
                    print(f"  level {level}% round {rnd}: {row[0]:14} {mbps:8.2f} MB/s intact={ok}{counted}",
                          file=sys.stderr, flush=True)
                    if a.stats_json and st:
                        with open(a.stats_json, "a") as f:
                            f.write(json.dumps({"level": level, "round": rnd, "row": row[0], "MB/s": mbps,
                                                "stats": st}) + "\n")
    what = {"echo": "echo (both directions at once)", "up": "transfer client -> server",
            "down": "transfer server -> client"}[a.direction]
    print(f"\ngoodput of a {a.size_mib} MiB {what}, MB/s, median of {a.rounds}; "
          "1 ms delay each way through the bridge")
    print(f"{'(loss, reorder, dup, corrupt) %':34}" + "".join(f"{r[0]:>15}" for r in rows))
    for level in a.levels.split(","):
        cells = []
        for row in rows:
            runs = results[(level, row[0])]
            ok = all(o for _e, o in runs)
            med = statistics.median(size / e / 1e6 if e else 0.0 for e, _o in runs)
            cells.append(f"{med:10.2f}{'' if ok else ' BAD'}")
        print(f"{str(LEVELS[level]):34}" + "".join(f"{c:>15}" for c in cells))


def sim(a):
    import random
    from netstack.config import InterfaceConfig, TcpConfig
    from netstack.interface import Interface
    from netstack.testing import LinkPair, mathis_bound
    seeds = range(1, 11)     # one RTO halves a transfer and any change moves which seeds draw one: a median of 10
    print(f"LinkPair (in memory), 1 MB each way, 1 ms RTT: goodput (simulated time) vs the Mathis bound, "
          f"median of seeds {seeds[0]}-{seeds[-1]}")
    print(f"{'loss, dup, reorder':22} {'cc':8} {'MB/s':>8} {'Mathis':>8} {'ratio':>6}")
    for loss, dup, reo in ((0.01, 0.001, 0.01), (0.05, 0.01, 0.05)):
        for cc in ("newreno", "cubic", "bbr"):
            ratios = []
            for seed in seeds:
                def iface(n, ip):
                    return Interface(InterfaceConfig(mac=bytes([2, 0, 0, 0, 0, n]), ip=ip, seed=seed * 10 + n,
                                                     tcp=TcpConfig(congestion=cc, max_retries=30)))
                lp = LinkPair(iface(1, "192.0.2.1"), iface(2, "192.0.2.2"), seed=seed, loss=loss, duplicate=dup,
                              reorder=reo)
                lst = lp.b.tcp_listen(80)
                c = lp.a.tcp_connect(lp.b.ip, 80, lp.now)
                lp.run_until(lambda: lst.accept_queue, max_time=60)
                s = lst.accept()
                r = random.Random(seed)
                up, down = r.randbytes(1_000_000), r.randbytes(1_000_000)
                gu, gd, elapsed = lp.exchange(c, s, up, down)
                assert gu == up and gd == down
                goodput = len(up) / elapsed
                bound = mathis_bound(1448, 2 * lp.latency, loss)
                ratios.append((goodput, bound))
            g = statistics.median(x[0] for x in ratios)
            b = ratios[0][1]
            print(f"{f'{loss:.0%}, {dup:.1%}, {reo:.0%}':22} {cc:8} {g / 1e6:8.2f} {b / 1e6:8.2f} {g / b:6.2f}")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--size-mib", type=int, default=50)
    ap.add_argument("--levels", default="0,1,5")
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--timeout", type=float, default=600.0)
    ap.add_argument("--sim", action="store_true")
    ap.add_argument("--direction", choices=("echo", "up", "down"), default="echo",
                    help="echo (the table), or one way: up (client to server), down (server to client)")
    ap.add_argument("--rows", default="", help="comma-separated row names to run (default: all)")
    ap.add_argument("--capture", default="", metavar="DIR",
                    help="tcpdump both sides of the bridge (server's vs0, client's vc0) into DIR, per cell")
    ap.add_argument("--py-spy", default="", metavar="DIR",
                    help="profile each native server with py-spy (raw stacks) into DIR, per cell")
    ap.add_argument("--stats-json", default="", help="append each native cell's server counters to this file")
    a = ap.parse_args()
    if a.sim:
        sim(a)
    else:
        real(a)


if __name__ == "__main__":
    main()
