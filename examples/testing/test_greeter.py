"""Tests of greeter.py, written as a user of the package writes them: the
fixtures come from the pytest plugin the package installs (pcap_replay,
link_pair, native_stack) and `pytest --pcap-dir DIR` keeps a capture of every
failed test's traffic.

    pip install pyseastar pytest && pytest examples/testing
"""
import os
import socket
import sys

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from greeter import answer, serve  # noqa: E402

SESSION = os.path.join(HERE, "session.pcap")     # record_session.py made it


def test_the_protocol():
    state = {}
    assert answer(b"HELLO ana", state) == (b"hello, ana!\n", True)
    assert answer(b"COUNT", state) == (b"1\n", True)
    assert answer(b"dance", state) == (b"error: unknown command\n", True)
    assert answer(b"QUIT", state) == (b"bye\n", False)


def test_replay_of_a_recorded_session(pcap_replay):
    """The recorded client against today's server: the same bytes back, and the
    same segments (data, SYN, FIN) field by field."""
    res = pcap_replay(SESSION, lambda: serve(7000))
    assert res.stream_diffs() == []
    assert res.frame_diffs() == []
    (ours, _capture), = res.streams().values()
    assert ours == b"hello, alice!\nhello, bob!\n2\nbye\n"


def test_replay_shows_where_a_changed_server_differs(pcap_replay):
    import greeter
    real = greeter.answer

    def rude(line, state):
        reply, going = real(line, state)
        return reply.replace(b"hello", b"hi"), going
    greeter.answer = rude
    try:
        res = pcap_replay(SESSION, lambda: serve(7000))
    finally:
        greeter.answer = real
    (diff,) = res.stream_diffs()
    assert "differs at byte 1" in diff


async def greet(link, names, port=7000):
    conn = await link.connect(port)
    out, inp = conn.output(), conn.input()
    for n in names:
        await out.write(b"HELLO " + n + b"\n")
    await out.write(b"QUIT\n")
    await out.flush()
    got = b""
    while (data := await inp.read()):
        got += bytes(data)
    await out.close()
    return got


def test_many_greetings_over_a_lossy_link(link_pair):
    """5% loss, 5% reordering, 1% duplication each way: every reply arrives, in
    order, on simulated time (a manual clock: the test takes milliseconds)."""
    names = [b"guest%d" % i for i in range(3000)]
    link = link_pair(seed=7, loss=0.05, reorder=0.05, duplicate=0.01, delay=0.001)
    link.serve(lambda: serve(7000))
    got = link.run(lambda link: greet(link, names))
    assert got == b"".join(b"hello, " + n + b"!\n" for n in names) + b"bye\n"
    assert link.faults()["dropped"] > 0            # the link did lose frames (and the replies still came)


def test_a_kernel_client_over_a_live_tap(native_stack):
    """The server on the native stack on a real TAP device, a kernel socket as
    the client, from inside the namespace the fixture made."""
    from reactor import sleep

    def kernel_client():
        with socket.create_connection((native_stack.stack_ip, 7000), timeout=10) as s:
            s.sendall(b"HELLO kernel\nCOUNT\nQUIT\n")
            got = b""
            while (b := s.recv(4096)):
                got += b
            return got
    serve_started = []

    async def main():
        from reactor import futurize
        futurize(serve, 7000).handle_exception(lambda e: None)
        serve_started.append(1)
        t = native_stack.in_namespace(kernel_client)
        while t.is_alive():
            await sleep(0.01)
        if t.error:
            raise t.error
        return t.result
    assert native_stack.run(main) == b"hello, kernel!\n1\nbye\n"
