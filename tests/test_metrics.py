"""Prometheus metrics served by the application, scraped from a kernel client
while traffic runs: posix (two shards) and native (a TAP in a namespace)."""
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EX = os.path.join(ROOT, "examples", "tutorial")


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def scrape(host, port, path="/metrics"):
    with urllib.request.urlopen(f"http://{host}:{port}{path}", timeout=10) as r:
        assert r.headers["Content-Type"].startswith("text/plain; version=0.0.4")
        text = r.read().decode()
    return text, {f.name: f for f in text_string_to_metric_families(text)}


def samples(fams, family, **labels):
    return [s for s in fams[family].samples if all(s.labels.get(k) == v for k, v in labels.items())]


def wait_port(host, port, deadline=15):
    end = time.monotonic() + deadline
    while True:
        try:
            socket.create_connection((host, port), timeout=0.5).close()
            return
        except OSError:
            if time.monotonic() > end:
                raise
            time.sleep(0.05)


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="two shards need two CPUs")
def test_posix_two_shards_scraped_while_a_connection_is_open():
    port, mport = free_port(), free_port()
    p = subprocess.Popen([sys.executable, os.path.join(EX, "echo_server.py"), "-c2", "--port", str(port),
                          "--prometheus-port", str(mport), "--prometheus-address", "127.0.0.1",
                          "--prometheus-prefix", "app"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_port("127.0.0.1", port)
        wait_port("127.0.0.1", mport)
        with socket.create_connection(("127.0.0.1", port)) as c:
            c.sendall(b"x" * 10000)
            got = b""
            while len(got) < 10000:
                got += c.recv(65536)
            text, fams = scrape("127.0.0.1", mport)
        assert "# HELP app_reactor_tasks_total" in text and "# TYPE app_reactor_tasks_total counter" in text
        shards = {s.labels["shard"] for s in fams["app_reactor_polls"].samples}
        assert shards == {"0", "1"}                                   # every shard, gathered on shard 0
        assert samples(fams, "app_reactor_tasks", shard="0")[0].value > 0
        assert samples(fams, "app_memory_budget_bytes", shard="1")[0].value > 0
        assert samples(fams, "app_memory_used_bytes", shard="0")[0].value > 1 << 20
        with pytest.raises(urllib.error.HTTPError) as e:
            scrape("127.0.0.1", mport, "/other")
        assert e.value.code == 404
    finally:
        p.terminate()
        p.wait(10)


def test_native_stack_metrics_from_inside_the_namespace(tmp_path):
    from pyroute2 import netns
    from netstack.testing.netlab import NetLab
    with NetLab("metrics") as lab:
        ns = lab.ns("k")
        lab.tap(ns, "tap0", "192.0.2.1/24")
        p = lab.popen(ns, [sys.executable, os.path.join(EX, "echo_server.py"), "-c1", "--network-stack", "native",
                           "--tap-device", "tap0", "--host-ipv4-addr", "192.0.2.2", "--gw-ipv4-addr", "192.0.2.1",
                           "--prometheus-port", "9180"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        netns.pushns(ns)
        try:
            wait_port("192.0.2.2", 1234)
            wait_port("192.0.2.2", 9180)
            with socket.create_connection(("192.0.2.2", 1234)) as c:
                c.sendall(b"y" * 200_000)
                got = b""
                while len(got) < 200_000:
                    got += c.recv(65536)
                text, fams = scrape("192.0.2.2", 9180)          # while the echo connection is open
        finally:
            netns.popns()
            p.terminate()
            p.wait(10)
    rx = samples(fams, "seastar_network_frames", direction="rx")
    assert rx and rx[0].labels["device"] == "tap0" and rx[0].value > 10
    assert samples(fams, "seastar_network_bytes", direction="tx")[0].value >= 200_000
    est = samples(fams, "seastar_tcp_connections", state="ESTABLISHED")
    assert est and est[0].value >= 2                             # the echo and the scrape itself
    assert {s.labels["kind"] for s in fams["seastar_tcp_retransmits"].samples} == {
        "all", "fast", "timeout", "tlp", "rescue"}
    assert samples(fams, "seastar_network_counter", name="rx_tcp")[0].value > 10
    for fam in ("seastar_network_drops", "seastar_tcp_challenge_acks", "seastar_tcp_listen_overflows",
                "seastar_tcp_syn_cookies", "seastar_arp_requests", "seastar_arp_misses", "seastar_ipv4_reassembled",
                "seastar_shard_frames_forwarded", "seastar_reactor_sleeps", "seastar_reactor_preemptions",
                "seastar_reactor_timers", "seastar_memory_budget_bytes", "seastar_tcp_resets_sent"):
        assert fam in fams, fam
