"""Shards as pinned processes: submit_to, sharded, errors, signals, no orphans."""
import os
import signal
import subprocess
import sys
import time

import pytest

APP = os.path.join(os.path.dirname(os.path.abspath(__file__)), "apps", "shards_app.py")
NCPU = len(os.sched_getaffinity(0))
needs2 = pytest.mark.skipif(NCPU < 2, reason="needs 2 CPUs")


def run(*args, timeout=30):
    return subprocess.run([sys.executable, APP, *args], capture_output=True, text=True, timeout=timeout)


def gone(pid: int, within: float = 5.0) -> bool:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        # a zombie still answers kill(0); check its state
        try:
            with open(f"/proc/{pid}/stat") as f:
                if f.read().split(") ")[1].startswith("Z"):
                    return True
        except OSError:
            return True
        time.sleep(0.05)
    return False


@needs2
def test_each_shard_is_a_process_pinned_to_its_own_cpu():
    r = run("-c2", "--mode", "info")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert len(lines) == 2
    pids = {line.split()[3] for line in lines}
    assert len(pids) == 2
    cpus = [line.split("cpus ")[1] for line in lines]
    assert len(set(cpus)) == 2 and all(c.count(",") == 0 for c in cpus)


def test_single_shard_runs_in_process():
    r = run("-c1", "--mode", "info")
    assert r.returncode == 0
    assert r.stdout.startswith("shard 0 pid ")
    assert len(r.stdout.splitlines()) == 1


@needs2
def test_sharded_service():
    r = run("-c2", "--mode", "sharded")
    assert r.returncode == 0, r.stderr
    out = r.stdout
    assert "invoke_on -> 116" in out          # 100 + shard 1 + 10 + 5
    assert "map_reduce -> 226" in out         # 110 + 116
    assert "lambda on 0 sees 110" in out and "lambda on 1 sees 116" in out
    assert "stop on shard 0" in out and "stop on shard 1" in out


@needs2
def test_exception_crosses_shards():
    r = run("-c2", "--mode", "exception")
    assert r.returncode == 0, r.stderr
    assert "caught KeyError: 'from the other shard'" in r.stdout


@needs2
def test_uncaught_exception_fails_the_program():
    r = run("-c2", "--mode", "uncaught")
    assert r.returncode == 1
    assert "program failed with uncaught exception: 'from the other shard'" in r.stderr


@needs2
def test_crashed_shard_stops_the_application_without_orphans():
    p = subprocess.Popen([sys.executable, APP, "-c2", "--mode", "crash"], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
    try:
        line = ""
        while "child pid" not in line:
            line = p.stdout.readline()
            assert line, p.stderr.read()
        child = int(line.split()[-1])
        os.kill(child, signal.SIGKILL)
        rc = p.wait(timeout=10)
        err = p.stderr.read()
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    assert rc == 1
    assert "shard 1 died unexpectedly (killed by SIGKILL)" in err
    assert gone(child)


@needs2
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_signal_stops_every_shard_cleanly(sig):
    p = subprocess.Popen([sys.executable, APP, "-c2", "--mode", "serve"], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
    try:
        line = p.stdout.readline()
        assert "child pid" in line, p.stderr.read()
        child = int(line.split()[-1])
        p.send_signal(sig)
        rc = p.wait(timeout=10)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    assert rc == 0
    assert gone(child)


@needs2
def test_killed_main_process_leaves_no_orphan():
    p = subprocess.Popen([sys.executable, APP, "-c2", "--mode", "serve"], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
    try:
        line = p.stdout.readline()
        child = int(line.split()[-1])
        p.kill()
        p.wait(timeout=10)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    assert gone(child)


def test_too_many_shards_is_a_startup_error():
    r = run(f"-c{NCPU + 1}")
    assert r.returncode == 1
    assert "Couldn't start application: insufficient processing units" in r.stderr


def test_submit_to_in_process_api():
    """smp.submit_to to the own shard runs locally; a bad shard number fails."""
    from reactor import Reactor, smp
    r = Reactor()
    try:
        assert r.run(lambda: smp.submit_to(0, lambda a, b: a + b, 2, 3)) == 5
        with pytest.raises(ValueError, match="no shard 7"):
            r.run(lambda: smp.submit_to(7, int))
    finally:
        r.close()


@needs2
def test_sharded_echo_server_serves_on_every_shard():
    """Listening on every shard (posix: SO_REUSEPORT): 200 connections land on
    both shards and every byte comes back."""
    import socket as so
    ex = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "examples", "tutorial",
                      "sharded_echo_server.py")
    s = so.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    p = subprocess.Popen([sys.executable, ex, "-c2", "--port", str(port)], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                so.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                assert p.poll() is None and time.monotonic() < deadline, p.stderr.read()
                time.sleep(0.05)
        for i in range(200):
            c = so.create_connection(("127.0.0.1", port))
            msg = b"%d" % i * 100
            c.sendall(msg)
            c.shutdown(so.SHUT_WR)
            got = b""
            while (d := c.recv(65536)):
                got += d
            c.close()
            assert got == msg
        p.send_signal(signal.SIGINT)
        out, err = p.communicate(timeout=10)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    counts = {}
    for line in out.splitlines():
        if line.startswith("shard "):
            shard, n = line.split(": ")
            counts[shard] = int(n.split()[0])
    assert set(counts) == {"shard 0", "shard 1"}, out + err
    assert sum(counts.values()) == 201 and min(counts.values()) > 20
    assert "exceptional future ignored" not in err
