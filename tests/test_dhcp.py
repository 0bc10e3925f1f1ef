"""The DHCP client: the exchange against a scripted server, and against dnsmasq."""
import os
import shutil
import socket
import subprocess
import sys
import time

import pytest

from netstack.events import Event
from scapy.all import BOOTP, DHCP, IP, UDP, Ether, raw

from netstack.config import InterfaceConfig
from netstack.dhcp import parse
from netstack.interface import Interface
from netstack.wire import ip_to_bytes

MAC = "02:00:00:00:00:07"
SERVER_MAC = "02:00:00:00:00:fe"


def reply(xid, mtype, yiaddr="192.0.2.77", lease=600):
    return raw(Ether(src=SERVER_MAC, dst="ff:ff:ff:ff:ff:ff") / IP(src="192.0.2.1", dst="255.255.255.255")
               / UDP(sport=67, dport=68) / BOOTP(op=2, xid=xid, yiaddr=yiaddr, chaddr=bytes.fromhex("020000000007"), flags=0x8000)
               / DHCP(options=[("message-type", mtype), ("server_id", "192.0.2.1"), ("lease_time", lease),
                               ("subnet_mask", "255.255.255.0"), ("router", "192.0.2.1"), "end"]))


def sent_dhcp(iface, now):
    out = []
    for f in iface.frames_to_send(now):
        p = Ether(f)
        if UDP in p and p[UDP].dport == 67:
            # from 0.0.0.0 until bound; a renewal comes from the leased address
            assert p[IP].src in ("0.0.0.0", socket.inet_ntoa(iface.ip))
            assert p[IP].dst == "255.255.255.255" and p.dst == "ff:ff:ff:ff:ff:ff"
            out.append(parse(bytes(p[UDP].payload)))
    return out


def test_discover_offer_request_ack_configures_the_interface():
    i = Interface(InterfaceConfig(mac=MAC, ip="0.0.0.0", dhcp=True, seed=3))
    (disc,) = sent_dhcp(i, 0.0)
    assert disc[4][53] == b"\x01"
    xid = disc[1]
    i.receive_frame(reply(xid, "offer"), 0.1)
    (req,) = sent_dhcp(i, 0.1)
    assert req[4][53] == b"\x03" and req[4][50] == ip_to_bytes("192.0.2.77") and req[4][54] == ip_to_bytes("192.0.2.1")
    i.receive_frame(reply(xid, "ack"), 0.2)
    assert i.ip == ip_to_bytes("192.0.2.77") and i.cfg.gateway == ip_to_bytes("192.0.2.1")
    assert (Event.DHCP_BOUND in [e for _o, e in i.pop_events()])
    # renewal at T1 (half the 600 s lease)
    assert sent_dhcp(i, 299.0) == []
    (renew,) = sent_dhcp(i, 300.2)
    assert renew[4][53] == b"\x03"


def test_discover_is_retried_with_backoff_and_offers_for_others_ignored():
    i = Interface(InterfaceConfig(mac=MAC, ip="0.0.0.0", dhcp=True, seed=3))
    (disc,) = sent_dhcp(i, 0.0)
    i.receive_frame(reply(disc[1] ^ 1, "offer"), 0.1)   # another transaction
    assert sent_dhcp(i, 0.5) == []
    assert len(sent_dhcp(i, 1.0)) == 1
    assert sent_dhcp(i, 2.5) == []
    assert len(sent_dhcp(i, 3.0)) == 1
    assert i.ip == b"\0\0\0\0"


def test_nak_restarts():
    i = Interface(InterfaceConfig(mac=MAC, ip="0.0.0.0", dhcp=True, seed=3))
    (disc,) = sent_dhcp(i, 0.0)
    i.receive_frame(reply(disc[1], "offer"), 0.1)
    sent_dhcp(i, 0.1)
    i.receive_frame(reply(disc[1], "nak"), 0.2)
    (again,) = sent_dhcp(i, 0.2)
    assert again[4][53] == b"\x01"


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root for namespaces")
@pytest.mark.parametrize("shards", [1, 2])
def test_native_stack_gets_its_address_from_dnsmasq(shards):
    if shards > len(os.sched_getaffinity(0)):
        pytest.skip("needs 2 CPUs")
    if shutil.which("dnsmasq") is None:
        subprocess.run(["apt-get", "install", "-y", "-q", "dnsmasq-base"], capture_output=True)
    dnsmasq = shutil.which("dnsmasq") or "/usr/sbin/dnsmasq"
    if not os.path.exists(dnsmasq):
        pytest.fail("dnsmasq is not installed (scripts/test.sh installs dnsmasq-base)")
    from netstack.testing.netlab import NetLab
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    with NetLab() as lab:
        ns = lab.ns("dhcp")
        lab.tap(ns, "tap0", "192.0.2.1/24")
        d = lab.popen(ns, [dnsmasq, "--no-daemon", "--port=0", "--interface=tap0", "--bind-interfaces",
                           "--dhcp-range=192.0.2.50,192.0.2.60,255.255.255.0,120", "--dhcp-leasefile=/dev/null",
                           "--dhcp-option=3,192.0.2.1"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        time.sleep(0.3)
        app = os.path.join(root, "examples", "tutorial", "sharded_echo_server.py")
        p = lab.popen(ns, [sys.executable, app, f"-c{shards}", "--network-stack", "native", "--tap-device",
                           "tap0", "--print-net-stats"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        from pyroute2 import netns
        got = None
        deadline = time.monotonic() + 20
        netns.pushns(ns)
        try:
            while got is None and time.monotonic() < deadline:
                for host in (f"192.0.2.{n}" for n in range(50, 61)):
                    try:
                        c = socket.create_connection((host, 1234), timeout=0.2)
                    except OSError:
                        continue
                    c.sendall(b"dhcp works")
                    got = (host, c.recv(100))
                    c.close()
                    break
            if got is not None:
                # every shard answers on the leased address (20 connections spread by hash)
                for i in range(20):
                    c = socket.create_connection((got[0], 1234), timeout=5)
                    c.sendall(b"%d" % i)
                    c.shutdown(socket.SHUT_WR)
                    assert c.recv(100) == b"%d" % i
                    c.close()
        finally:
            netns.popns()
        p.send_signal(2)
        _out, err = p.communicate(timeout=10)
        d.kill()
        d.wait()
        assert got is not None, err
        assert got[1] == b"dhcp works"
        served = [line for line in _out.splitlines() if line.startswith("shard ")]
        assert len(served) == shards and all(int(x.split(": ")[1].split()[0]) > 0 for x in served), _out
