"""The pytest plugin, the replay command and the package as a user installs it."""
import os
import shutil
import subprocess
import sys
import textwrap

import pytest

from netstack.testing import read_pcap

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EXAMPLE = os.path.join(ROOT, "examples", "testing")


def _pytest(args, cwd, env=None, python=sys.executable, timeout=300):
    return subprocess.run([python, "-m", "pytest", "-p", "no:cacheprovider", *args], cwd=cwd,
                          capture_output=True, text=True, timeout=timeout, env=env)


def test_the_fixtures_are_documented_in_pytest_fixtures(tmp_path):
    (tmp_path / "test_x.py").write_text("def test_x():\n    pass\n")
    r = _pytest(["--fixtures", "test_x.py"], tmp_path)
    for name in ("pcap_replay", "link_pair", "native_stack"):
        assert name in r.stdout, r.stdout[-2000:]
    r = _pytest(["--help"], tmp_path)
    assert "--pcap-dir=DIR" in r.stdout


FAILING = textwrap.dedent('''
    import sys
    sys.path.insert(0, {example!r})
    from greeter import serve

    async def client(link):
        conn = await link.connect(7000)
        out, inp = conn.output(), conn.input()
        await out.write(b"HELLO pcap\\nQUIT\\n")
        await out.flush()
        got = b""
        while (data := await inp.read()):
            got += bytes(data)
        return got

    def test_fails(link_pair):
        link = link_pair(seed=1).serve(lambda: serve(7000))
        assert link.run(client) == b"something else"

    def test_passes(link_pair):
        link = link_pair(seed=1).serve(lambda: serve(7000))
        assert link.run(client) == b"hello, pcap!\\nbye\\n"
''')


def test_a_failed_test_leaves_a_pcap_of_its_traffic(tmp_path):
    (tmp_path / "test_user.py").write_text(FAILING.format(example=EXAMPLE))
    pcaps = tmp_path / "pcaps"
    r = _pytest(["test_user.py", "--pcap-dir", str(pcaps)], tmp_path)
    assert r.returncode == 1 and "1 failed, 1 passed" in r.stdout, r.stdout[-3000:]
    assert sorted(os.listdir(pcaps)) == ["test_fails.pcap"]          # the passing test left none
    frames = read_pcap(str(pcaps / "test_fails.pcap"))
    assert any(b"hello, pcap!" in f for _t, f in frames)
    if shutil.which("tcpdump"):
        t = subprocess.run(["tcpdump", "-nr", str(pcaps / "test_fails.pcap")], capture_output=True, text=True)
        assert t.returncode == 0 and "192.0.2.2.7000" in t.stdout


def test_the_replay_command(tmp_path):
    env = dict(os.environ, PYTHONPATH=EXAMPLE + os.pathsep + ROOT)
    r = subprocess.run([sys.executable, "-m", "netstack.replay", os.path.join(EXAMPLE, "session.pcap"),
                        "--app", "greeter:serve", "--frames"], capture_output=True, text=True, timeout=60, env=env)
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout.splitlines() == ["192.0.2.1:51801: client sent 33 bytes; server replied 32 (capture: 32)",
                                     "same as the capture"]
    (tmp_path / "other.py").write_text(textwrap.dedent('''
        import greeter
        def serve():
            real = greeter.answer
            greeter.answer = lambda line, st: (real(line, st)[0].upper(), real(line, st)[1])
            return greeter.serve(7000)
    '''))
    env["PYTHONPATH"] = str(tmp_path) + os.pathsep + env["PYTHONPATH"]
    r = subprocess.run([sys.executable, "-m", "netstack.replay", os.path.join(EXAMPLE, "session.pcap"),
                        "--app", "other:serve"], capture_output=True, text=True, timeout=60, env=env)
    assert r.returncode == 1
    assert "our reply differs at byte 0" in r.stdout and r.stdout.strip().endswith("1 difference(s)")
    r = subprocess.run([sys.executable, "-m", "netstack.replay", "/nonexistent.pcap", "--app", "greeter:serve"],
                       capture_output=True, text=True, timeout=60, env=env)
    assert r.returncode == 2 and r.stderr.startswith("replay: ")


def test_replay_remaps_onto_the_live_connection(pcap_replay):
    """Our ISN is not the capture's: the client's ACKs are moved into our
    sequence space (else our stack would drop them), and the replay waits for
    our data before feeding an ACK of it."""
    sys.path.insert(0, EXAMPLE)
    try:
        from greeter import serve
    finally:
        sys.path.remove(EXAMPLE)
    res = pcap_replay(os.path.join(EXAMPLE, "session.pcap"), lambda: serve(7000), pace="capture")
    (conn,) = res.connections.values()
    assert conn.our_isn is not None and conn.their_isn is not None and conn.our_isn != conn.their_isn
    assert res.stream_diffs() == [] and res.frame_diffs() == []
    assert res.counters.get("tcp_challenge_acks", 0) == 0
    assert not any(k.startswith("drop_tcp") for k in res.counters), res.counters


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root: the example's live TAP test and --pcap-out on a TAP")
@pytest.mark.timeout(900)
def test_a_plain_install_runs_pcap_out_and_the_example_tests(tmp_path):
    """What a user gets from `pip install .` (no extras) and a pytest beside it:
    --pcap-out works (dpkt is a runtime dependency) and the worked example's
    tests pass with the fixtures the package installed -- run from a copy, so
    nothing comes from this source tree."""
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    py = str(venv / "bin" / "python")
    pip = [py, "-m", "pip", "install", "-q", "--disable-pip-version-check"]
    r = subprocess.run(pip + [ROOT], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    r = subprocess.run(pip + ["pytest"], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    work = tmp_path / "user"
    shutil.copytree(EXAMPLE, work / "testing")
    shutil.copy(os.path.join(ROOT, "examples", "tutorial", "hello.py"), work / "hello.py")
    # hello.py's tutorial main() finds the package installed (its sys.path insert points nowhere here)
    shutil.copy(os.path.join(ROOT, "examples", "tutorial", "_main.py"), work / "_main.py")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    r = _pytest(["testing", "-q"], work, env=env, python=py, timeout=600)
    assert r.returncode == 0 and "5 passed" in r.stdout, r.stdout[-3000:] + r.stderr[-2000:]
    from netstack.testing.netlab import NetLab
    with NetLab("plain") as lab:
        ns = lab.ns("k")
        lab.tap(ns, "tap0", "192.0.2.1/24")
        cap = tmp_path / "hello.pcap"
        p = lab.run(ns, [py, str(work / "hello.py"), "-c1", "--network-stack", "native", "--tap-device", "tap0",
                         "--host-ipv4-addr", "192.0.2.2", "--gw-ipv4-addr", "192.0.2.1", "--pcap-out", str(cap)],
                    capture_output=True, text=True, timeout=60, env=env, cwd=str(work))
        assert p.returncode == 0 and "Hello world" in p.stdout, p.stderr
    frames = read_pcap(str(cap))
    assert frames and all(len(f) >= 42 for _t, f in frames)        # the stack's ARP, as the wire saw it


def test_replay_reads_pcapng(tmp_path, pcap_replay):
    import dpkt
    ng = tmp_path / "session.pcapng"
    with open(ng, "wb") as f:
        w = dpkt.pcapng.Writer(f)
        for ts, frame in read_pcap(os.path.join(EXAMPLE, "session.pcap")):
            w.writepkt(frame, ts)
    sys.path.insert(0, EXAMPLE)
    try:
        from greeter import serve
    finally:
        sys.path.remove(EXAMPLE)
    res = pcap_replay(str(ng), lambda: serve(7000))
    assert res.stream_diffs() == [] and len(res.connections) == 1


def test_the_option_reference_is_generated_and_current():
    r = subprocess.run([sys.executable, os.path.join(ROOT, "scripts", "options_reference.py"), "--check"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    text = open(os.path.join(ROOT, "docs", "options.md")).read()
    for opt in ("`-c`, `--smp`", "`--tcp-congestion`", "`--fault-loss`", "`--hw-address` | unicast MAC"):
        assert opt in text
