"""The packetdrill runner and our own suite of scripts (tests/packetdrill/*.pkt):
each script is its own test and must PASS (a SKIP in our own suite is a
failure: every construct we use must be supported)."""
import glob
import json
import os
import subprocess
import sys

import pytest

from netstack.packetdrill import run_script, run_text

HERE = os.path.dirname(os.path.abspath(__file__))
SCRIPTS = sorted(glob.glob(os.path.join(HERE, "packetdrill", "*.pkt")))
ROOT = os.path.dirname(HERE)


def test_the_suite_has_at_least_80_scripts():
    assert len(SCRIPTS) >= 80


@pytest.mark.parametrize("path", SCRIPTS, ids=[os.path.basename(p) for p in SCRIPTS])
def test_script(path):
    r = run_script(path)
    assert r.status == "PASS", f"{r.status} {os.path.basename(path)}:{r.line}: {r.message}"


SERVER = """
0 socket(..., SOCK_STREAM, IPPROTO_TCP) = 3
+0 bind(3, ..., ...) = 0
+0 listen(3, 1) = 0
+0 < S 0:0(0) win 65535 <mss 1460>
+0 > S. 0:0(0) ack 1 <mss 1460>
"""


@pytest.mark.parametrize("text, construct", [
    ("--ip_version=ipv6\n" + SERVER, "ipv6"),
    (SERVER + "+0 < [ect0] . 1:1(0) ack 1 win 100\n", "IP info"),
    (SERVER + "%{ assert tcpi_rto == 1000 }%\n", "code blocks"),
    ("`tc qdisc add dev tun0 root netem delay 10ms`\n" + SERVER, "shell command"),
    ("`sysctl -q net.ipv4.tcp_frto=2`\n" + SERVER, "sysctl net.ipv4.tcp_frto"),
    (SERVER + "+0 < udp (100)\n", "udp packets"),
    (SERVER + "+0 < S 0:0(0) win 100 <FO abcd>\n", "TCP option FO"),
    (SERVER + "+0 sendfile(4, 5, ..., 100) = 100\n", "sendfile"),
    ("--no_such_option=1\n" + SERVER, "no_such_option"),
])
def test_unsupported_constructs_are_skips_that_name_them(text, construct):
    r = run_text(text)
    assert r.status == "SKIP" and construct in r.message, r


@pytest.mark.parametrize("text", [
    "0 socket(",
    "garbage line\n",
    "0 < S 1:0(5) win 1\n",
    "0 read(3, ..., 10) = 0\n" * 3,
    "\x00\xff binary",
    "0 > S. 0:0(0) ack 1\n",
])
def test_malformed_or_failing_scripts_fail_without_crashing(text):
    r = run_text(text)
    assert r.status == "FAIL" and r.message, r


def test_a_script_that_never_ends_hits_the_time_limit():
    text = SERVER + "+0 < . 1:1(0) ack 1 win 100\n+0 accept(3, ..., ...) = 4\n" \
        + "+0 setsockopt(4, SOL_SOCKET, SO_KEEPALIVE, [1], 4) = 0\n+100000 read(4, ..., 10) = 0\n"
    r = run_text(text, time_limit=0.5)
    assert r.status == "FAIL"


def test_the_command_line_prints_a_line_per_script_and_the_totals(tmp_path):
    bad = tmp_path / "bad.pkt"
    bad.write_text(SERVER.replace("> S. 0:0(0) ack 1", "> S. 0:0(0) ack 2"))
    skip = tmp_path / "skip.pkt"
    skip.write_text("--ip_version=ipv6\n" + SERVER)
    out = tmp_path / "r.json"
    p = subprocess.run([sys.executable, "-m", "netstack.packetdrill", "--json", str(out), SCRIPTS[0], str(bad),
                        str(skip)], capture_output=True, text=True, cwd=ROOT, timeout=60)
    lines = p.stdout.strip().splitlines()
    assert lines[0] == f"PASS {SCRIPTS[0]}"
    assert lines[1].startswith(f"FAIL {bad}:6: expected S. 0:0(0) ack 2")
    assert lines[2].startswith(f"SKIP {skip}: ") and "ipv6" in lines[2]
    assert lines[-1] == "1 passed, 1 failed, 1 skipped" and p.returncode == 1
    data = json.loads(out.read_text())
    assert [r["status"] for r in data["results"]] == ["PASS", "FAIL", "SKIP"]
    p = subprocess.run([sys.executable, "-m", "netstack.packetdrill", SCRIPTS[0]], capture_output=True, text=True,
                       cwd=ROOT, timeout=60)
    assert p.returncode == 0 and p.stdout.strip().endswith("1 passed, 0 failed, 0 skipped")


def test_strict_mode_compares_the_window_and_option_order(tmp_path):
    text = SERVER.replace("> S. 0:0(0) ack 1 <mss 1460>", "> S. 0:0(0) ack 1 win 1 <mss 1460>")
    assert run_text(text).status == "PASS"
    assert run_text(text, strict=True).status == "FAIL"
