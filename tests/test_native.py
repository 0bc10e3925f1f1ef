"""The native stack on a real wire: a TAP device (or AF_PACKET on a veth) in a
network namespace created and deleted by each test, reached by kernel clients.
Addresses: the kernel side 192.0.2.1, our stack 192.0.2.2 (TEST-NET-1)."""
import hashlib
import os
import socket
import struct
import subprocess
import sys
import time

import pytest
import trio
from echo_helpers import trio_echo_client
from pyroute2 import NetNS, netns

from netstack.testing.netlab import NetLab

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EX = os.path.join(ROOT, "examples")
KERNEL, STACK = "192.0.2.1", "192.0.2.2"

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="namespaces and TAP devices need root")


def kernel_listener(lab, port: int, timeout: float = 15) -> socket.socket:
    """A kernel TCP server socket on KERNEL:port inside the lab's namespace."""
    with lab.inside():
        srv = socket.socket()
        srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        srv.bind((KERNEL, port))
        srv.listen()
        srv.settimeout(timeout)
    return srv


class Lab:
    """A namespace with a TAP (kernel address 192.0.2.1) or a veth pair whose
    far end (no kernel address) our stack drives with AF_PACKET."""

    def __init__(self, mode="tap"):
        self.lab = NetLab()
        self.procs = []
        self.ns = self.lab.ns("k")
        self.mode = mode
        if mode == "tap":
            self.lab.tap(self.ns, "tap0", f"{KERNEL}/24")
            self.stack_ns = self.ns
            self.dev_args = ["--tap-device", "tap0"]
        else:
            self.stack_ns = self.lab.ns("s")
            self.lab.veth(self.ns, "vk", self.stack_ns, "vs", f"{KERNEL}/24", None)
            self.dev_args = ["--dev", "vs"]

    def start(self, script, *args, native=True, wait_port=None):
        argv = [sys.executable, os.path.join(EX, script), "-c1"]
        if native:
            argv += ["--network-stack", "native", *self.dev_args, "--host-ipv4-addr", STACK,
                     "--gw-ipv4-addr", KERNEL]
        argv += list(args)
        p = self.lab.popen(self.stack_ns if native else self.ns, argv, stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True)
        self.procs.append(p)
        if wait_port is not None:
            host = STACK if native else KERNEL
            deadline = time.monotonic() + 15
            with self.inside():
                while True:
                    try:
                        socket.create_connection((host, wait_port), timeout=0.5).close()
                        break
                    except OSError:
                        if p.poll() is not None or time.monotonic() > deadline:
                            raise RuntimeError(f"{script} did not start: {p.stderr.read()}")
                        time.sleep(0.05)
        return p

    def inside(self):
        lab = self

        class _Ctx:
            def __enter__(self):
                netns.pushns(lab.ns)

            def __exit__(self, *e):
                netns.popns()
        return _Ctx()

    def stop(self, p, sig=2):
        if p.poll() is None:
            p.send_signal(sig)
            try:
                p.wait(5)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        return p.stdout.read(), p.stderr.read()

    def close(self):
        for p in self.procs:
            if p.poll() is None:
                p.kill()
                p.wait()
        self.lab.close()


@pytest.fixture
def lab():
    lab = Lab("tap")
    yield lab
    lab.close()


@pytest.fixture
def veth_lab():
    lab = Lab("veth")
    yield lab
    lab.close()


def echo_many(lab, host, conns, size, timeout=120):
    payloads = [os.urandom(size) for _ in range(conns)]

    async def main():
        results = [None] * conns

        async def one(i):
            results[i] = await trio_echo_client(host, 1234, payloads[i])
        with trio.fail_after(timeout):
            async with trio.open_nursery() as n:
                for i in range(conns):
                    n.start_soon(one, i)
        return results
    with lab.inside():
        results = trio.run(main)
    for p, r in zip(payloads, results):
        assert len(r) == len(p) and hashlib.sha256(r).digest() == hashlib.sha256(p).digest()


# ---- the tutorial's servers on both stacks -------------------------------------------------

@pytest.mark.parametrize("native", [True, False], ids=["native", "posix"])
def test_accept_server_shows_client_address(lab, native):
    p = lab.start("tutorial/accept_server.py", native=native, wait_port=1234)
    host = STACK if native else KERNEL
    with lab.inside():
        c = socket.create_connection((host, 1234))
        local = c.getsockname()
        time.sleep(0.2)
        c.close()
    out, err = lab.stop(p)
    assert f"Accepted connection from {local[0]}:{local[1]}" in out.splitlines(), err


@pytest.mark.parametrize("native", [True, False], ids=["native", "posix"])
def test_canned_server(lab, native):
    lab.start("tutorial/canned_server.py", native=native, wait_port=1234)
    host = STACK if native else KERNEL

    async def get():
        s = await trio.open_tcp_stream(host, 1234)
        data = b""
        while (chunk := await s.receive_some(100)):
            data += chunk
        await s.aclose()
        return data
    with lab.inside():
        assert trio.run(get) == b"Seastar is the future!\n"


@pytest.mark.parametrize("native", [True, False], ids=["native", "posix"])
@pytest.mark.parametrize("conns,size", [(1, 10 << 20), (10, 10 << 20), (200, 10 << 20)], ids=["1", "10", "200"])
def test_echo_server_10MB_intact(lab, native, conns, size):
    lab.start("tutorial/echo_server.py", native=native, wait_port=1234)
    echo_many(lab, STACK if native else KERNEL, conns, size // conns if conns > 1 else size)


# ---- native-only: ICMP, ARP, UDP, connect, AF_PACKET, pcap ---------------------------------

def ping(host, size, ident=0x4242, seq=1, timeout=3.0):
    from netstack.wire import IcmpRepr
    s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
    s.settimeout(timeout)
    try:
        payload = bytes(i & 0xFF for i in range(size))
        s.sendto(IcmpRepr(8, 0, ident, seq, payload).emit(), (host, 0))
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            data, addr = s.recvfrom(70000)
            ihl = (data[0] & 0x0F) * 4
            icmp = data[ihl:]
            if addr[0] == host and icmp[0] == 0 and struct.unpack("!HH", icmp[4:8]) == (ident, seq):
                return icmp[8:] == payload
        return False
    finally:
        s.close()


def test_ping_and_large_ping_with_reassembly(lab):
    lab.start("tutorial/echo_server.py", wait_port=1234)
    with lab.inside():
        assert ping(STACK, 56)
        assert ping(STACK, 4000, seq=2)  # fragmented both ways


def test_kernel_learns_our_mac_by_arp(lab):
    lab.start("tutorial/echo_server.py", wait_port=1234)
    with NetNS(lab.ns) as n:
        entries = {e.get_attr("NDA_DST"): e.get_attr("NDA_LLADDR") for e in n.get_neighbours()}
    assert STACK in entries and entries[STACK] not in (None, "00:00:00:00:00:00")
    # (the other direction -- our stack resolving the kernel -- is exercised by
    # every connect and UDP send from our side below)


def test_native_connect_to_kernel_server(lab):
    srv = kernel_listener(lab, 4321, timeout=15)
    p = lab.start("client.py", "--to", f"{KERNEL}:4321", "--send", "hello kernel")
    conn, addr = srv.accept()
    assert addr[0] == STACK
    conn.settimeout(10)
    data = b""
    while not data.endswith(b"kernel"):
        data += conn.recv(100)
    assert data == b"hello kernel"
    conn.sendall(b"hello native")
    conn.close()
    srv.close()
    out, err = p.communicate(timeout=15)
    assert p.returncode == 0, err
    assert out.strip() == f"tcp reply from {KERNEL}:4321: hello native"


def test_udp_echo_both_ways(lab):
    server = lab.start("udp_echo.py", "--port", "7777")
    with lab.inside():
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.settimeout(1.0)
        for _attempt in range(30):
            s.sendto(b"ping over udp", (STACK, 7777))
            try:
                data, addr = s.recvfrom(100)
                break
            except socket.timeout:
                continue
        s.close()
    assert (data, addr) == (b"ping over udp", (STACK, 7777))
    lab.stop(server)
    # and from our stack to a kernel UDP server
    with lab.inside():
        k = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        k.bind((KERNEL, 7778))
        k.settimeout(15)
    try:
        p = lab.start("client.py", "--udp", "--to", f"{KERNEL}:7778", "--send", "hello udp")
        data, addr = k.recvfrom(100)
        assert data == b"hello udp" and addr[0] == STACK
        k.sendto(b"udp back", addr)
        out, err = p.communicate(timeout=15)
        assert out.strip() == f"udp reply from {KERNEL}:7778: udp back", err
    finally:
        k.close()


def test_echo_over_af_packet_on_a_veth(veth_lab):
    veth_lab.start("tutorial/echo_server.py", wait_port=1234)
    echo_many(veth_lab, STACK, 10, 1 << 20)


def test_pcap_out_is_readable_and_replays(lab, tmp_path):
    import dpkt
    from netstack.config import InterfaceConfig
    from netstack.testing import Replay, _tcp_fields, echo_app, read_pcap, significant
    path = str(tmp_path / "native.pcap")
    p = lab.start("tutorial/echo_server.py", "--pcap-out", path, "--stack-seed", "5",
                  "--no-tso", "--no-lro", wait_port=1234)
    echo_many(lab, STACK, 1, 3000)
    lab.stop(p)
    frames = read_pcap(path)
    assert len(frames) > 5
    payloads = b"".join(bytes(dpkt.ethernet.Ethernet(f).data.data.data) for _t, f in frames
                        if isinstance(dpkt.ethernet.Ethernet(f).data, dpkt.ip.IP)
                        and isinstance(dpkt.ethernet.Ethernet(f).data.data, dpkt.tcp.TCP))
    assert len(payloads) >= 2 * 3000
    if subprocess.run(["which", "tcpdump"], capture_output=True).returncode == 0:
        r = subprocess.run(["tcpdump", "-nr", path], capture_output=True, text=True)
        assert r.returncode == 0 and "192.0.2.2.1234" in r.stdout
    # replay the kernel's half against a fresh stack with the same seed
    ours = [f for _t, f in frames if f[26:30] == socket.inet_aton(STACK)]
    mac = ours[0][6:12]
    r = Replay(path, InterfaceConfig(mac=mac, ip=STACK, seed=5, gratuitous_arp=False), app=echo_app(1234))
    r.run()
    expected = [f for _t, f in r.expected if significant(f) and f[12:14] == b"\x08\x00"]
    actual = [f for _t, f in r.sent if significant(f) and f[12:14] == b"\x08\x00"]
    exp_data = b"".join(_tcp_fields(f)["payload"] for f in expected if _tcp_fields(f))
    act_data = b"".join(_tcp_fields(f)["payload"] for f in actual if _tcp_fields(f))
    assert (len(act_data), len(exp_data)) == (3000, 3000)
    assert act_data == exp_data

    def per_connection(frames):
        conns = {}
        for f in frames:
            t = _tcp_fields(f)
            conns.setdefault(t["dport"], []).append((t["flags"] & 0x07, t["payload"]))
        return conns
    # each connection gets the same replies (connections interleave differently in time)
    assert per_connection(actual) == per_connection(expected)


# ---- several shards (issue 5): shard 0 reads the TAP and forwards by RSS hash ----------------

def _net_stats(err):
    import json
    return [json.loads(line[len("net-stats "):]) for line in err.splitlines() if line.startswith("net-stats ")]


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="needs 2 CPUs")
def test_sharded_echo_server_native_serves_every_connection_on_both_shards(lab):
    p = lab.start("tutorial/sharded_echo_server.py", "-c2", "--print-net-stats", wait_port=1234)
    echo_many(lab, STACK, 200, 20_000)
    out, err = lab.stop(p)
    served = {}
    for line in out.splitlines():
        if line.startswith("shard "):
            name, n = line.split(": ")
            served[name] = int(n.split()[0])
    assert set(served) == {"shard 0", "shard 1"} and min(served.values()) > 30, out + err
    assert sum(served.values()) == 201   # + the start-up probe
    stats = {s["shard"]: s for s in _net_stats(err)}
    # single-queue TAP: shard 0 forwards shard 1's frames and relays what shard 1 sends
    assert stats[0]["device_forwarded"] > 0 and stats[0]["device_relayed"] > 0
    assert stats[1]["rx_tcp"] > 0 and stats[1]["device_from_shards"] > 0


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="needs 2 CPUs")
@pytest.mark.parametrize("kernel_steering", [True, False], ids=["ebpf", "learned"])
def test_sharded_echo_server_on_a_multi_queue_tap(kernel_steering):
    """Each shard reads and writes its own TAP queue, and the kernel runs our eBPF
    steering program (the Toeplitz hash of drivers/steering.py): every frame of
    every flow lands on its owner's queue, none is forwarded. Without the program
    (--no-kernel-steering) the TAP's learned steering delivers most frames home
    and the rest are forwarded: all data still arrives."""
    lab = _mq_lab("mq")
    try:
        extra = [] if kernel_steering else ["--no-kernel-steering"]
        p = lab.start("tutorial/sharded_echo_server.py", "-c2", "--print-net-stats", *extra, wait_port=1234)
        echo_many(lab, STACK, 100, 100_000)
        out, err = lab.stop(p)
        stats = {s["shard"]: s for s in _net_stats(err)}
        assert set(stats) == {0, 1}, err
        assert stats[0]["device_kept"] > 0 and stats[1]["device_kept"] > 0, stats   # both read their own queue
        assert stats[0].get("device_relayed", 0) == 0 and stats[1].get("device_relayed", 0) == 0
        kept = stats[0]["device_kept"] + stats[1]["device_kept"]
        fwd = stats[0]["device_forwarded"] + stats[1]["device_forwarded"]
        print(f"multi-queue: {fwd} of {kept + fwd} frames forwarded")
        if kernel_steering:
            assert stats[0]["device_kernel_steered"] == 1 == stats[1]["device_kernel_steered"]
            assert fwd == 0
        else:
            assert stats[0]["device_kernel_steered"] == 0 == stats[1]["device_kernel_steered"]
            assert fwd < kept
    finally:
        lab.close()


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="needs 2 CPUs")
def test_tutorial_echo_server_on_two_shards_serves_only_shard_0_connections(lab):
    """As the tutorial explains: f() runs on shard 0 only, so only the connections
    that hash to shard 0 are served; the others are refused by shard 1."""
    from netstack.rss import FlowSteering
    lab.start("tutorial/echo_server.py", "-c2", wait_port=None)
    steer = FlowSteering(2)
    served = refused = 0
    with lab.inside():
        deadline = time.monotonic() + 15
        while True:     # wait until shard 0 listens (a port that hashes to it answers)
            s = socket.socket()
            s.bind((KERNEL, 0))
            port = s.getsockname()[1]
            if steer.shard_of(socket.inet_aton(KERNEL), socket.inet_aton(STACK), port, 1234) == 0:
                try:
                    s.settimeout(0.5)
                    s.connect((STACK, 1234))
                    s.close()
                    break
                except OSError:
                    assert time.monotonic() < deadline
                    time.sleep(0.1)
            s.close()
        for _ in range(40):
            s = socket.socket()
            s.settimeout(5)
            s.bind((KERNEL, 0))
            port = s.getsockname()[1]
            home = steer.shard_of(socket.inet_aton(KERNEL), socket.inet_aton(STACK), port, 1234)
            try:
                s.connect((STACK, 1234))
                s.sendall(b"hi")
                s.shutdown(socket.SHUT_WR)
                assert s.recv(10) == b"hi"
                assert home == 0
                served += 1
            except ConnectionRefusedError:
                assert home == 1
                refused += 1
            finally:
                s.close()
    assert served > 5 and refused > 5


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="needs 2 CPUs")
def test_connect_from_a_shard_needs_no_forwarding(lab):
    srv = kernel_listener(lab, 4322, timeout=15)
    p = lab.start("client.py", "-c2", "--print-net-stats", "--to", f"{KERNEL}:4322", "--send", "from shard 0")
    conn, _addr = srv.accept()
    conn.settimeout(10)
    data = b""
    while not data.endswith(b"shard 0"):
        data += conn.recv(100)
    conn.sendall(b"ok")
    conn.close()
    srv.close()
    out, err = p.communicate(timeout=15)
    assert out.strip() == f"tcp reply from {KERNEL}:4322: ok", err
    stats = {s["shard"]: s for s in _net_stats(err)}
    assert stats[0]["device_forwarded"] == 0 and stats[0]["device_kept"] > 0


def _mq_lab(name):
    lab = Lab.__new__(Lab)
    lab.lab = NetLab()
    lab.procs = []
    lab.ns = lab.stack_ns = lab.lab.ns(name)
    lab.mode = "tap"
    lab.lab.tap(lab.ns, "tap0", f"{KERNEL}/24", multi_queue=True)
    lab.dev_args = ["--tap-device", "tap0"]
    return lab


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="needs 2 CPUs")
def test_connects_from_both_shards_need_no_forwarding():
    import threading
    lab = _mq_lab("mqc")
    try:
        srv = kernel_listener(lab, 4323, timeout=20)
        seen = []

        def serve():
            for _ in range(2):
                c, addr = srv.accept()
                c.settimeout(10)
                data = b""
                while (d := c.recv(100)):
                    data += d
                seen.append((data, addr[1]))
                c.sendall(b"hello " + data)
                c.close()
        t = threading.Thread(target=serve)
        t.start()
        app = os.path.join(ROOT, "tests", "apps", "native_shards_app.py")
        p = lab.lab.popen(lab.ns, [sys.executable, app, "-c2", "--network-stack", "native", "--tap-device", "tap0",
                                   "--host-ipv4-addr", STACK, "--print-net-stats", "--to", f"{KERNEL}:4323"],
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        out, err = p.communicate(timeout=30)
        t.join(10)
        srv.close()
        assert p.returncode == 0, err
        assert sorted(d for d, _port in seen) == [b"shard 0", b"shard 1"]
        assert "shard 0 got hello shard 0" in out and "shard 1 got hello shard 1" in out
        assert "stats shards=2" in out and "sum_ok=True" in out   # network_stats(): per shard and summed
        stats = {s["shard"]: s for s in _net_stats(err)}
        # connect() on shard k picks a port whose replies hash to k, and the kernel
        # runs that hash (eBPF steering): even the SYN-ACK arrives at home.
        assert stats[0]["device_forwarded"] + stats[1]["device_forwarded"] == 0
        assert stats[1]["device_kept"] >= 3    # shard 1's replies came straight to its queue
    finally:
        lab.close()


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="needs 2 CPUs")
def test_killing_a_native_shard_stops_the_application_without_orphans():
    import signal as sig
    lab = _mq_lab("mqk")
    try:
        app = os.path.join(ROOT, "tests", "apps", "native_shards_app.py")
        p = lab.lab.popen(lab.ns, [sys.executable, app, "-c2", "--network-stack", "native", "--tap-device", "tap0",
                                   "--host-ipv4-addr", STACK, "--serve-forever"],
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        line = p.stdout.readline()
        while line and not line.startswith("child "):
            line = p.stdout.readline()
        assert line.startswith("child "), p.stderr.read()
        child = int(line.split()[1])
        os.kill(child, sig.SIGKILL)
        rc = p.wait(timeout=15)
        err = p.stderr.read()
        assert rc == 1 and "shard 1 died unexpectedly (killed by SIGKILL)" in err
        deadline = time.monotonic() + 5
        while os.path.exists(f"/proc/{child}") and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not os.path.exists(f"/proc/{child}") or "Z" in open(f"/proc/{child}/stat").read().split(")")[1][:3]
    finally:
        lab.close()


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="needs 2 CPUs")
@pytest.mark.parametrize("kernel_steering", [True, False], ids=["cbpf", "fanout-hash"])
def test_sharded_echo_over_af_packet_fanout(veth_lab, kernel_steering):
    """AF_PACKET on a veth with -c2: each shard has its own socket in one fanout
    group, steered by our hash (PACKET_FANOUT_CBPF), or with --no-kernel-steering
    by the kernel's (PACKET_FANOUT_HASH, frames of flows it puts on the wrong
    shard are forwarded)."""
    extra = [] if kernel_steering else ["--no-kernel-steering"]
    p = veth_lab.start("tutorial/sharded_echo_server.py", "-c2", "--print-net-stats", *extra, wait_port=1234)
    echo_many(veth_lab, STACK, 60, 50_000)
    out, err = veth_lab.stop(p)
    stats = {s["shard"]: s for s in _net_stats(err)}
    assert set(stats) == {0, 1}, err
    assert stats[0]["device_kept"] > 0 and stats[1]["device_kept"] > 0   # both sockets receive
    if kernel_steering:
        # the fanout group runs our hash (PACKET_FANOUT_CBPF): nothing is forwarded
        assert stats[0]["device_kernel_steered"] == 1 == stats[1]["device_kernel_steered"]
        assert stats[0]["device_forwarded"] == 0 == stats[1]["device_forwarded"], stats
    else:
        assert stats[0]["device_kernel_steered"] == 0 == stats[1]["device_kernel_steered"]
        assert stats[0]["device_forwarded"] + stats[1]["device_forwarded"] > 0    # the hashes disagree
    served = [int(line.split(": ")[1].split()[0]) for line in out.splitlines() if line.startswith("shard ")]
    assert len(served) == 2 and sum(served) == 61 and min(served) > 5


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="needs 2 CPUs")
def test_fragmented_datagrams_reach_the_shard_that_owns_their_flow(lab):
    """Only the first fragment has ports: the receiving shard reassembles, then steers
    the whole datagram to its owner (the RSS hash of its 4-tuple)."""
    from netstack.rss import FlowSteering
    app = os.path.join(ROOT, "tests", "apps", "udp_shards_app.py")
    p = lab.lab.popen(lab.ns, [sys.executable, app, "-c2", "--network-stack", "native", *lab.dev_args,
                               "--host-ipv4-addr", STACK], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lab.procs.append(p)
    assert p.stdout.readline().strip() == "ready", p.stderr.read()
    steer = FlowSteering(2)
    homes = []
    with lab.inside():
        for i in range(12):
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            s.bind((KERNEL, 0))
            s.settimeout(2)
            port = s.getsockname()[1]
            big = bytes(4000)                  # > MTU: the kernel fragments it
            reply = None
            for _attempt in range(5):
                s.sendto(big, (STACK, 7777))
                try:
                    reply = s.recv(100)
                    break
                except socket.timeout:
                    continue
            s.close()
            assert reply is not None
            shard, length = reply.split()[1:]
            assert int(length) == 4000
            expected = steer.shard_of(socket.inet_aton(KERNEL), socket.inet_aton(STACK), port, 7777)
            assert int(shard) == expected
            homes.append(expected)
    assert set(homes) == {0, 1}


# ---- the TAP behind a bridge process and a shared-memory ring (drivers/bridge.py) ------------

def test_echo_through_a_tap_bridge_process(lab):
    """--tap-bridge: a second process does the TAP's reads and writes and talks to
    the stack through the virtio ring. Offloaded frames (GSO in, TSO out) cross
    the ring with their headers; data arrives intact; the bridge stops with the
    application."""
    p = lab.start("tutorial/echo_server.py", "--tap-bridge", "--print-net-stats", wait_port=1234)
    bridge = [int(x) for x in open(f"/proc/{p.pid}/task/{p.pid}/children").read().split()]
    assert len(bridge) == 1
    echo_many(lab, STACK, 10, 1_000_000)
    with lab.inside():
        assert ping(STACK, 4000)                          # fragments both ways through the ring
    out, err = lab.stop(p)
    stats = _net_stats(err)[0]
    assert stats["device_bridge_pid"] == bridge[0]
    print({k: v for k, v in stats.items() if "frames" in k})
    # 10 MB each way is ~7,000 full-size segments; GSO super-frames in and TSO
    # frames out crossed the ring whole, with their virtio-net headers
    assert 100 < stats["rx_frames"] < 3500 and 100 < stats["tx_frames"] < 3500
    assert not os.path.exists(f"/proc/{bridge[0]}"), "the bridge outlived the application"


def test_tap_bridge_is_refused_with_shards(lab):
    p = lab.start("tutorial/echo_server.py", "--tap-bridge", "-c2")
    out, err = p.communicate(timeout=30)
    assert p.returncode != 0 and "--tap-bridge works with one shard" in err


@pytest.mark.parametrize("native", [True, False], ids=["native", "posix"])
def test_udp_port_unreachable_reaches_the_channel(lab, native):
    """A datagram to a kernel port nobody listens on brings back ICMP port
    unreachable; the channel reports it (errors()) on both stacks."""
    p = lab.start("client.py", "--udp", "--udp-expect-error", "--to", f"{KERNEL}:7799", "--send", "anyone?",
                  native=native)
    out, err = p.communicate(timeout=20)
    assert out.strip() == f"udp error from {KERNEL}:7799: ConnectionRefusedError errno 111", out + err


def test_peer_reset_with_writes_queued_fails_only_that_connection(lab):
    """A server writing faster than its peer reads has data queued beyond the send
    buffer when the peer resets. Regression: the reset used to raise out of the
    stack's event dispatch and stop the whole application. Now that connection's
    write fails with ConnectionResetError and the server goes on."""
    import struct
    app = os.path.join(ROOT, "tests", "apps", "source_app.py")
    p = lab.lab.popen(lab.ns, [sys.executable, app, "-c1", "--network-stack", "native", *lab.dev_args,
                               "--host-ipv4-addr", STACK, "--print-net-stats"],
                      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lab.procs.append(p)
    with lab.inside():
        for attempt in range(3):
            deadline = time.monotonic() + 15
            while True:
                try:
                    s = socket.create_connection((STACK, 1236), timeout=5)
                    break
                except OSError:
                    assert p.poll() is None and time.monotonic() < deadline, p.stderr.read()
                    time.sleep(0.05)
            got = 0
            while got < 1 << 20:
                got += len(s.recv(65536))
            if attempt < 2:
                s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))   # close = RST
            s.close()
            time.sleep(0.2)
            assert p.poll() is None, p.stderr.read()      # still serving
    out, err = lab.stop(p)
    assert out.count("source ended: ConnectionResetError") >= 2, out + err
    stats = _net_stats(err)[0]
    assert stats.get("internal_errors", 0) == 0 and "uncaught" not in err


def test_fault_options_impair_the_wire_and_the_bytes_still_arrive(lab):
    """--fault-loss/-dup/-reorder/-corrupt/-delay-ms from the command line: a
    user tries a server under a bad network. The impairments happen (counted in
    the device's stats) and every echoed byte comes back intact."""
    p = lab.start("tutorial/echo_server.py", "--no-tso", "--no-lro", "--fault-loss", "3", "--fault-dup", "1",
                  "--fault-reorder", "3", "--fault-corrupt", "1", "--fault-delay-ms", "2", "--fault-seed", "5",
                  "--print-net-stats", wait_port=1234)
    echo_many(lab, STACK, 4, 300_000)
    _out, err = lab.stop(p)
    (stats,) = _net_stats(err)
    assert stats["device_fault_dropped"] > 0 and stats["device_fault_duplicated"] > 0, stats
    assert stats["device_fault_corrupted"] > 0 and stats["device_fault_delayed"] > 0
    assert "drop_internal_error" not in stats


def test_af_packet_buffer_holds_a_window_and_kernel_drops_are_counted(veth_lab):
    """The AF_PACKET device asks for a receive buffer of RCVBUF (the kernel's
    default held ~90 frames: a sender pacing at the path's rate overran it at
    every pause); frames the kernel still drops for want of room are counted
    (PACKET_STATISTICS) instead of vanishing."""
    from pyroute2 import netns
    from drivers.afpacket import RCVBUF, AfPacketDevice
    netns.pushns(veth_lab.stack_ns)
    try:
        dev = AfPacketDevice("vs", vnet_hdr=False)
    finally:
        netns.popns()
    try:
        assert dev.sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF) >= RCVBUF    # (the kernel doubles it)
        assert dev.stats()["rx_kernel_drops"] == 0
        frame = b"\xff" * 6 + b"\x02\x00\x00\x00\x00\x09" + b"\x88\xb5" + bytes(1486)   # local experimental ethertype
        with veth_lab.inside():
            tx = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
            tx.bind(("vk", 0))
            try:
                for _ in range(6000):      # ~9 MB: more than the buffer holds, nobody reading
                    tx.send(frame)
            finally:
                tx.close()
        time.sleep(0.2)
        drops = dev.stats()["rx_kernel_drops"]
        got = 0
        while (batch := dev.recv_batch(64)):
            got += len(batch)
        assert drops > 0 and got > 1000
        assert got + drops == 6000, (got, drops)      # every frame read or counted
    finally:
        dev.close()


@pytest.mark.parametrize("vnet", [False, True])
def test_af_packet_batches_are_the_same_with_and_without_mmsg(veth_lab, monkeypatch, vnet):
    """send_batch/recv_batch through sendmmsg/recvmmsg (drivers/_mmsg.c) and
    through the per-frame loops deliver the same frames, in order, with the same
    counters; a frame the kernel refuses (over the MTU) is counted as a tx error
    and the frames behind it still go."""
    from pyroute2 import netns
    import drivers.afpacket as afp
    from frames import Gather, TxFrame
    assert afp._mmsg is not None or os.environ.get("PYSEASTAR_PURE_PYTHON"), "the C extension was not built"
    head = b"\xff" * 6 + b"\x02\x00\x00\x00\x00\x09" + b"\x88\xb5"       # local experimental ethertype
    batch = [head + bytes([i]) * (46 + 97 * i) for i in range(12)]
    batch.insert(5, head + bytes(3000))                                         # over the veth's MTU
    batch.append(TxFrame(head + b"hdr", 0, 0, 0, Gather([b"part-one;", memoryview(b"part-two;"), b"3"])))
    expect = [f for f in batch[:-1] if len(f) <= 1514] + [head + b"hdrpart-one;part-two;3"]
    results = []
    for use_c in (True, False):
        if not use_c:
            monkeypatch.setattr(afp, "_mmsg", None)
        netns.pushns(veth_lab.stack_ns)
        try:
            tx = afp.AfPacketDevice("vs", vnet_hdr=vnet)
        finally:
            netns.popns()
        with veth_lab.inside():
            rx = afp.AfPacketDevice("vk", vnet_hdr=vnet)
        try:
            assert tx.send_batch(batch) == len(expect)
            time.sleep(0.1)
            got = []
            while (more := rx.recv_batch(5)):
                got += [bytes(f) for f, _ in more]
            got = [f for f in got if f[12:14] == b"\x88\xb5"]          # (not the kernel's own IPv6 chatter)
            assert got == expect
            results.append((tx.counters["tx_frames"], tx.counters["tx_errors"], tx.counters["tx_bytes"]))
        finally:
            tx.close()
            rx.close()
    assert results[0] == results[1] == (len(expect), 1, sum(map(len, expect)))


def test_stats_interval_on_the_native_stack(lab):
    """--stats-interval: one line per period with the stack's counters beside
    the reactor's (frames, connections, drops, retransmissions)."""
    p = lab.start("tutorial/echo_server.py", "--stats-interval", "0.2", wait_port=1234)
    echo_many(lab, STACK, 2, 20_000)
    time.sleep(0.5)
    _out, err = lab.stop(p)
    lines = [line for line in err.splitlines() if line.startswith("stats shard=0 ")]
    assert len(lines) >= 2, err
    last = dict(kv.split("=") for kv in lines[-1].split()[1:])
    assert int(last["rx"]) > 10 and int(last["tx"]) > 10 and "drops" in last and "retransmits" in last


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="needs 2 CPUs")
def test_pcap_out_with_two_shards_one_file_each_read_by_tcpdump(lab, tmp_path):
    """--pcap-out FILE with -c2: FILE.shard0 and FILE.shard1, each a pcap that
    tcpdump reads, each holding its shard's connections. With TSO/LRO on (the
    default) frames are recorded as the stack exchanges them with the device:
    merged segments of up to 64 KB, not the wire's MTU-sized frames."""
    path = str(tmp_path / "cap.pcap")
    p = lab.start("tutorial/sharded_echo_server.py", "-c2", "--pcap-out", path, wait_port=1234)
    echo_many(lab, STACK, 40, 100_000)
    lab.stop(p)
    files = sorted(os.listdir(tmp_path))
    assert files == ["cap.pcap.shard0", "cap.pcap.shard1"]
    for name in files:
        r = subprocess.run(["tcpdump", "-nr", str(tmp_path / name)], capture_output=True, text=True)
        assert r.returncode == 0 and f"{STACK}.1234" in r.stdout, r.stderr
    from netstack.testing import read_pcap
    sizes = [len(f) for _t, f in read_pcap(str(tmp_path / "cap.pcap.shard0"))]
    assert max(sizes) > 1514        # TSO/LRO: the stack's large segments, as documented


def _syn_retransmits(lab) -> int:
    with lab.inside():
        with open("/proc/net/netstat") as f:
            rows = [line.split() for line in f]
    for names, values in zip(rows[::2], rows[1::2]):
        if names[0] == "TcpExt:":
            return int(values[names.index("TCPSynRetrans")])
    raise AssertionError("no TcpExt counters")


@pytest.mark.parametrize("queue_len", [10000, 0])
def test_a_burst_of_connects_waits_in_the_tap_queue(lab, queue_len):
    """3,000 connects at once to the native echo server: with the TAP's kernel
    queue raised (the default, --tap-queue-len 10000) not one SYN is dropped --
    the kernel resends none -- and every connection echoes; left at the kernel's
    1000 (--tap-queue-len 0), the same burst loses SYNs on the device (the case
    the option is for: each cost its client a second)."""
    from pyroute2 import NetNS
    p = lab.start("tutorial/echo_server.py", "--port", "1234", "--tap-queue-len", str(queue_len), wait_port=1234)
    with NetNS(lab.ns) as n:
        qlen = n.get_links(ifname="tap0")[0].get_attr("IFLA_TXQLEN")
    assert qlen == (10000 if queue_len else 1000)
    before = _syn_retransmits(lab)
    socks = []
    with lab.inside():
        try:
            for _ in range(3000):
                s = socket.socket()
                s.setblocking(False)
                s.connect_ex((STACK, 1234))
                socks.append(s)
            deadline = time.monotonic() + 30
            pending = set(socks)
            while pending and time.monotonic() < deadline:
                for s in list(pending):
                    if s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) == 0:
                        try:
                            s.getpeername()
                        except OSError:
                            continue
                        pending.discard(s)
                time.sleep(0.01)
            assert not pending
            for i, s in enumerate(socks[::100]):
                s.setblocking(True)
                s.settimeout(10)
                s.sendall(b"burst %d" % i)
                assert s.recv(64) == b"burst %d" % i
        finally:
            for s in socks:
                s.close()
    resent = _syn_retransmits(lab) - before
    if queue_len:
        assert resent == 0
    else:
        assert resent > 0
    lab.stop(p)
