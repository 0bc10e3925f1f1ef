"""Record the reference captures in pcaps/: a Linux client talking to a Linux
server, each in its own network namespace, captured on the server's veth.

    sudo .venv/bin/python scripts/record_pcaps.py

pcaps/echo_linux.pcap: ARP, then a TCP echo session (RFC 862) in which the
client sends three lines, reads each echo, and closes; the server echoes and
closes when the client does. Replayed against our stack by tests/test_replay.py.
"""
import os
import socket
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import dpkt  # noqa: E402

from netstack.testing.netlab import NetLab  # noqa: E402

SERVER, CLIENT, PORT = "192.0.2.1", "192.0.2.2", 7
LINES = [b"hello, seastar\n", b"futures and continuations\n", b"share nothing\n"]


def capture(lab, ns, ifname, out_path, ready_w, stop_r):
    lab.enter(ns)
    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(3))
    s.bind((ifname, 0))
    s.settimeout(0.05)
    os.write(ready_w, b"1")
    with open(out_path, "wb") as f:
        w = dpkt.pcap.Writer(f, linktype=dpkt.pcap.DLT_EN10MB, nano=False)
        while True:
            try:
                data = s.recv(65536)
                w.writepkt(data, time.time())
            except socket.timeout:
                pass
            try:
                if os.read(stop_r, 1):
                    break
            except BlockingIOError:
                pass
    os._exit(0)


def server(lab, ns, ready_w):
    lab.enter(ns)
    ls = socket.socket()
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ls.bind((SERVER, PORT))
    ls.listen()
    os.write(ready_w, b"1")
    c, _ = ls.accept()
    while (d := c.recv(4096)):
        c.sendall(d)
    c.close()
    os._exit(0)


def client(lab, ns):
    lab.enter(ns)
    c = socket.create_connection((SERVER, PORT), timeout=5)
    for line in LINES:
        c.sendall(line)
        got = b""
        while len(got) < len(line):
            got += c.recv(4096)
        assert got == line
        time.sleep(0.05)
    c.shutdown(socket.SHUT_WR)
    assert c.recv(10) == b""
    c.close()
    os._exit(0)


def fork(fn, *args):
    pid = os.fork()
    if pid == 0:
        try:
            fn(*args)
        finally:
            os._exit(1)
    return pid


def main():
    out = os.path.join(ROOT, "pcaps", "echo_linux.pcap")
    with NetLab("rec") as lab:
        s_ns, c_ns = lab.ns("srv"), lab.ns("cli")
        lab.veth(s_ns, "vsrv", c_ns, "vcli", "192.0.2.1/24", "192.0.2.2/24")
        r1, w1 = os.pipe()
        stop_r, stop_w = os.pipe()
        os.set_blocking(stop_r, False)
        cap = fork(capture, lab, s_ns, "vsrv", out, w1, stop_r)
        os.read(r1, 1)
        r2, w2 = os.pipe()
        srv = fork(server, lab, s_ns, w2)
        os.read(r2, 1)
        cli = fork(client, lab, c_ns)
        for pid in (cli, srv):
            _, status = os.waitpid(pid, 0)
            assert status == 0, f"child failed: {status}"
        time.sleep(0.3)
        os.write(stop_w, b"x")
        os.waitpid(cap, 0)
    with open(out, "rb") as f:
        n = sum(1 for _ in dpkt.pcap.Reader(f))
    print(f"wrote {out}: {n} frames")


if __name__ == "__main__":
    main()
