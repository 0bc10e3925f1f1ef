"""The main job: the tutorial's echo server and canned-response server on our own
TCP/IP stack (--network-stack native), each on a TAP device in a network
namespace of its own making, talked to by ordinary kernel clients; prints what
came back and the stacks' counters, then tears everything down.

    kernel side (namespace pss<pid>_demo)          our stack (native, in a process)
    tap0 192.0.2.1/24      <------ frames ------>  echo server   192.0.2.2:1234
    tap1 198.51.100.1/24   <------ frames ------>  canned server 198.51.100.2:1234
"""
import json
import os
import socket
import struct
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import trio  # noqa: E402
from pyroute2 import netns  # noqa: E402

from netstack.testing.netlab import NetLab  # noqa: E402
from netstack.wire import IcmpRepr  # noqa: E402

EX = os.path.join(ROOT, "examples", "tutorial")


def start(lab, ns, script, tap, ip, gw):
    p = lab.popen(ns, [sys.executable, os.path.join(EX, script), "-c1", "--network-stack", "native",
                       "--tap-device", tap, "--host-ipv4-addr", ip, "--gw-ipv4-addr", gw, "--print-net-stats"],
                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    netns.pushns(ns)
    try:
        deadline = time.monotonic() + 15
        while True:
            try:
                socket.create_connection((ip, 1234), timeout=0.3).close()
                return p
            except OSError:
                if p.poll() is not None or time.monotonic() > deadline:
                    raise SystemExit(f"{script} did not start: {p.stderr.read()}")
                time.sleep(0.05)
    finally:
        netns.popns()


def ping(host, size=56):
    s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
    s.settimeout(2)
    payload = bytes(range(256)) * (size // 256) + bytes(size % 256)
    t0 = time.perf_counter()
    s.sendto(IcmpRepr(8, 0, 0x5353, 1, payload).emit(), (host, 0))
    while True:
        data, addr = s.recvfrom(70000)
        icmp = data[(data[0] & 0x0F) * 4:]
        if addr[0] == host and icmp[0] == 0 and struct.unpack("!H", icmp[4:6])[0] == 0x5353:
            s.close()
            return (time.perf_counter() - t0) * 1000, icmp[8:] == payload


async def talk():
    stream = await trio.open_tcp_stream("192.0.2.2", 1234)
    for line in (b"hello, seastar\n", b"futures and continuations\n", b"share nothing\n"):
        await stream.send_all(line)
        got = b""
        while len(got) < len(line):
            got += await stream.receive_some(1024)
        print(f"echo   > {line.decode().rstrip()}\necho   < {got.decode().rstrip()}")
    big = os.urandom(4 << 20)
    t0 = time.perf_counter()
    got = bytearray()

    async def send():
        await stream.send_all(big)
        await stream.send_eof()
    async with trio.open_nursery() as n:
        n.start_soon(send)
        while (chunk := await stream.receive_some(1 << 16)):
            got += chunk
    dt = time.perf_counter() - t0
    print(f"echo   4 MiB round trip intact: {bytes(got) == big} ({dt * 1000:.0f} ms)")
    await stream.aclose()
    stream = await trio.open_tcp_stream("198.51.100.2", 1234)
    data = b""
    while (chunk := await stream.receive_some(1024)):
        data += chunk
    print(f"canned < {data.decode().rstrip()}")
    await stream.aclose()


def main():
    with NetLab("demo") as lab:
        ns = lab.ns("demo")
        lab.tap(ns, "tap0", "192.0.2.1/24")
        lab.tap(ns, "tap1", "198.51.100.1/24")
        print(f"namespace {ns}: tap0 192.0.2.1/24, tap1 198.51.100.1/24 (kernel side)")
        echo = start(lab, ns, "echo_server.py", "tap0", "192.0.2.2", "192.0.2.1")
        canned = start(lab, ns, "canned_server.py", "tap1", "198.51.100.2", "198.51.100.1")
        print("native echo server on 192.0.2.2:1234, canned server on 198.51.100.2:1234")
        netns.pushns(ns)
        try:
            for size in (56, 4000):
                ms, ok = ping("192.0.2.2", size)
                print(f"ping   192.0.2.2 {size} bytes: reply intact={ok} in {ms:.2f} ms")
            trio.run(talk)
        finally:
            netns.popns()
        for name, p in (("echo", echo), ("canned", canned)):
            p.send_signal(2)
            _out, err = p.communicate(timeout=10)
            for line in err.splitlines():
                if line.startswith("net-stats "):
                    stats = json.loads(line[len("net-stats "):])
                    keys = ("rx_frames", "tx_frames", "rx_tcp", "rx_tcp_fast", "rx_arp", "rx_icmp",
                            "ipv4_reassembled", "tx_fragmented", "device_rx_gso", "device_tx_gso")
                    shown = ", ".join(f"{k}={stats.get(k, 0)}" for k in keys)
                    drops = {k: v for k, v in stats.items() if k.startswith("drop_")}
                    print(f"{name:6} stack counters: {shown}; drops: {drops}")
    print("namespace and devices removed")


if __name__ == "__main__":
    if os.geteuid() != 0:
        raise SystemExit("the demo creates a network namespace and TAP devices: run it as root")
    main()
