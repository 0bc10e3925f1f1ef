"""Every tutorial example, run as a user runs it (a subprocess), checking its output."""
import hashlib
import os
import socket
import subprocess
import sys
import time

import pytest
import trio
from echo_helpers import trio_echo_client

EX = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "examples", "tutorial")
NCPU = len(os.sched_getaffinity(0))


def run(name, *args, timeout=30):
    return subprocess.run([sys.executable, os.path.join(EX, name), *args], capture_output=True,
                          text=True, timeout=timeout)


def test_hello():
    r = run("hello.py")
    assert (r.returncode, r.stdout) == (0, "Hello world\n")


def test_smp_count_default_is_cpu_count():
    r = run("smp_count.py")
    assert (r.returncode, r.stdout) == (0, f"{NCPU}\n")


def test_smp_count_c1():
    r = run("smp_count.py", "-c1")
    assert (r.returncode, r.stdout) == (0, "1\n")


def test_smp_count_too_many_shards():
    r = run("smp_count.py", f"-c{NCPU + 1}")
    assert r.returncode == 1
    assert r.stderr == "Couldn't start application: insufficient processing units\n"


def test_smp_count_too_much_memory():
    r = run("smp_count.py", "-m10T")
    assert r.returncode == 1
    assert r.stderr == "Couldn't start application: insufficient physical memory\n"


def test_sleep_prints_then_done_a_second_later():
    p = subprocess.Popen([sys.executable, os.path.join(EX, "sleep.py")], stdout=subprocess.PIPE)
    first = p.stdout.read(len(b"Sleeping... "))
    t0 = time.monotonic()
    rest = p.stdout.read()
    elapsed = time.monotonic() - t0
    assert p.wait(10) == 0
    assert first == b"Sleeping... " and rest == b"Done.\n"
    assert 0.8 < elapsed < 3.0


def test_parallel_sleep():
    r = run("parallel_sleep.py")
    assert (r.returncode, r.stdout) == (0, "Sleeping... 100ms 200ms Done.\n")


@pytest.mark.parametrize("name,out", [("slow.py", "Got 3\n"), ("fast.py", "Got 3\n"), ("incr.py", "Got 4\n")])
def test_value_examples(name, out):
    r = run(name)
    assert (r.returncode, r.stdout) == (0, out)


def test_exceptions_example():
    r = run("exceptions.py")
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines() == [
        "then_wrapped saw an exception: line2 failed",
        "then_wrapped returned recovered",
        "finally_ ran",
        "handle_exception caught: line2 failed",
        "await raised: line2 failed",
        "finally (coroutine)",
    ]
    assert "never printed" not in r.stdout


def test_promise_example():
    t0 = time.monotonic()
    r = run("promise.py")
    elapsed = time.monotonic() - t0
    assert r.returncode == 0
    assert r.stdout.splitlines() == [f"message {i}" for i in range(1, 11)] + ["Done after 10 messages"]
    assert elapsed > 0.9


# ---- the servers (posix stack until the native stack lands) --------------------

def free_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


class Server:
    def __init__(self, name, port, *args):
        self.port = port
        self.p = subprocess.Popen([sys.executable, os.path.join(EX, name), "-c1", "--port", str(port), *args],
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                if self.p.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"server did not start: {self.p.stderr.read()}")
                time.sleep(0.05)

    def stop(self):
        if self.p.poll() is None:
            self.p.send_signal(2)
            try:
                self.p.wait(5)
            except subprocess.TimeoutExpired:
                self.p.kill()
                self.p.wait()
        return self.p.stdout.read(), self.p.stderr.read()


@pytest.fixture
def server(request):
    started = []

    def start(name, *args, port=None):
        s = Server(name, port or free_port(), *args)
        started.append(s)
        return s
    yield start
    for s in started:
        s.stop()


def test_accept_server_prints_client_address(server):
    s = server("accept_server.py")

    async def client():
        stream = await trio.open_tcp_stream("127.0.0.1", s.port)
        local = stream.socket.getsockname()
        await trio.sleep(0.2)
        await stream.aclose()
        return local
    local = trio.run(client)
    out, _ = s.stop()
    assert f"Accepted connection from 127.0.0.1:{local[1]}" in out.splitlines()


def test_canned_server_answers_and_closes(server):
    s = server("canned_server.py")

    async def client():
        stream = await trio.open_tcp_stream("127.0.0.1", s.port)
        data = b""
        while True:
            chunk = await stream.receive_some(1000)
            if not chunk:
                break
            data += chunk
        await stream.aclose()
        return data
    assert trio.run(client) == b"Seastar is the future!\n"


@pytest.mark.parametrize("conns,size", [(1, 10 << 20), (10, 1 << 20), (200, 50 << 10)])
def test_echo_server_returns_bytes_intact(server, conns, size):
    s = server("echo_server.py")
    payloads = [os.urandom(size) for _ in range(conns)]

    async def main():
        results = [None] * conns

        async def one(i):
            results[i] = await trio_echo_client("127.0.0.1", s.port, payloads[i])
        with trio.fail_after(60):
            async with trio.open_nursery() as n:
                for i in range(conns):
                    n.start_soon(one, i)
        return results
    results = trio.run(main)
    for p, r in zip(payloads, results):
        assert len(r) == len(p) and hashlib.sha256(r).digest() == hashlib.sha256(p).digest()


def test_restart_during_time_wait_fails_without_reuse_address(server):
    s = server("accept_server.py")
    # The server closes each accepted connection first (it drops the socket), so
    # the server side lingers in TIME_WAIT after the client closes too.
    for _ in range(3):
        c = socket.create_connection(("127.0.0.1", s.port))
        time.sleep(0.1)
        c.close()
    time.sleep(0.2)
    s.stop()
    r = subprocess.run([sys.executable, os.path.join(EX, "accept_server.py"), "-c1", "--port", str(s.port)],
                       capture_output=True, text=True, timeout=10)
    assert r.returncode == 1
    assert r.stderr.strip() == "program failed with uncaught exception: bind: Address already in use"


def test_canned_server_restarts_during_time_wait_with_reuse_address(server):
    s = server("canned_server.py")
    for _ in range(3):
        c = socket.create_connection(("127.0.0.1", s.port))
        c.recv(100)
        c.close()
    s.stop()
    s2 = server("canned_server.py", port=s.port)  # reuse_address = true: starts fine
    assert socket.create_connection(("127.0.0.1", s2.port)).recv(100) == b"Seastar is the future!\n"


# ---- the rest of Seastar's tutorial ------------------------------------------------------------

def test_when_all_and_when_all_succeed_with_mixed_results():
    r = run("when_all.py", "-c1")
    assert r.returncode == 0, r.stderr
    assert r.stdout == ("when_all: future 0 = a\n"
                        "when_all: future 1 failed: the second one failed\n"
                        "when_all: future 2 = c\n"
                        "when_all_succeed: [1, 2, 3]\n"
                        "when_all_succeed failed: ValueError: the second one failed\n")


def test_a_semaphore_limits_parallelism():
    r = run("semaphore.py", "-c1")
    assert (r.returncode, r.stdout) == (0, "12 jobs done, at most 3 at once (limit 3)\n"
                                           "get_units: holding 2, 1 left\nreturned: 3 available\n"), r.stderr


def test_a_gate_guards_shutdown():
    r = run("gate.py", "-c1")
    assert (r.returncode, r.stdout) == (0, "stopping with 3 requests in flight\n"
                                           "request 99 refused: GateClosedError\n"
                                           "request 0 done\nrequest 1 done\nrequest 2 done\n"
                                           "stopped after 3 requests\n"), r.stderr


@pytest.mark.skipif(NCPU < 2, reason="needs two CPUs for two shards")
def test_sharded_service_start_invoke_on_all_map_reduce_stop():
    r = run("sharded_service.py", "-c2")
    assert r.returncode == 0, r.stderr
    assert sorted(r.stdout.splitlines()) == ["2 shards counted 12 words (12 given)",
                                             "counter on shard 0 stopping with 6",
                                             "counter on shard 1 stopping with 6"]


def test_coroutines_beside_continuations():
    r = run("coroutines.py", "-c1")
    assert (r.returncode, r.stdout) == (0, "continuations: 13\ncoroutines: 13\nsame: True\n"), r.stderr


def test_do_with_loops_and_pipes():
    r = run("loops_and_pipes.py", "-c1")
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines() == ["repeat ran 3 times", "do_until stopped at 6", "do_for_each 1",
                                     "do_for_each 2", "do_for_each 3", "keep_doing ended after 4", "do_with sum 10",
                                     "pipe carried ['one', 'two', 'three', 'four']"]


def test_user_defined_options_with_a_switch_and_an_alias():
    r = run("options.py", "-c1", "--name", "ana", "-n", "2", "--shout", "--no-punctuation")
    assert (r.returncode, r.stdout) == (0, "HELLO, ANA\nHELLO, ANA\n"), r.stderr
    r = run("options.py", "-c1")
    assert (r.returncode, r.stdout) == (0, "hello, world!\n")
    r = run("options.py", "-c1", "--shout", "hello")            # a switch takes no value
    assert r.returncode == 1 and r.stderr == "options.py: error: unrecognized arguments: hello\n"
