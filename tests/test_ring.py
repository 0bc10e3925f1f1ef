"""The shared-memory ring between two processes, each running a native stack."""
import hashlib
import os
import sys

import pytest

from drivers.ring import RingLink

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_frames_cross_the_ring_in_order_without_kicks_while_polling():
    link = RingLink(slots=8, slot_size=2048)
    a, b = link.device(0, b"\x02\0\0\0\0\1"), link.device(1, b"\x02\0\0\0\0\2")
    frames = [bytes([i]) * (60 + i) for i in range(20)]
    got = []
    b.recv_batch()                               # b is polling, then idle: it asked for a kick
    for i in range(0, 20, 4):
        assert a.send_batch(frames[i:i + 4]) == 4
        got += [bytes(f) for f, _ok in b.recv_batch()]
    assert got == frames
    assert a.stats()["tx_frames"] == 20 and a.stats()["tx_full"] == 0
    # the ring has 8 slots: a consumer that does not read makes the producer drop
    assert a.send_batch(frames[:10]) == 8 and a.stats()["tx_full"] == 2


def _watchdog(r, stack, dev, role):
    """If the exchange is still running after 20 s, print what each side's TCP and
    ring look like (the report of a timed-out run then says why it stalled)."""
    from reactor import Timer

    def dump():
        lines = [f"--- {role} stalled: ring {dev.stats()} recheck={dev.recheck} timers={stack.iface.poll_at()}"]
        for t in stack.iface.tcbs.values():
            lines.append(f"  {t!r} snd_max={t.snd_max} snd_wnd={t.snd_wnd} cwnd={t.cc.cwnd} sbuf={t.sbuf.size} "
                         f"rq={t.rq_bytes} ooo={len(t.ooo)} rto_at={t.rto_at} persist_at={t.persist_at} "
                         f"delack_at={t.delack_at} ack_now={t.ack_now} recovery={t.in_recovery} "
                         f"sched_at={t.sched_at} retries={t.retries} now={r.now()}")
        print("\n".join(lines), file=sys.stderr, flush=True)
    stack.watchdog = Timer(dump, r)     # kept alive with the stack
    stack.watchdog.arm(delay=20.0)


def _serve(link, side, role, port, payload_hash, size, result_w):
    """Child process: a reactor + native stack on one side of the ring."""
    sys.path.insert(0, ROOT)
    from netstack.config import InterfaceConfig
    from netstack.sockets.api import listen_options, make_ipv4_address, server_socket
    from netstack.sockets.native import NativeStack
    from echo_helpers import echo_exchange, serve_one_echo
    from reactor import Reactor
    r = Reactor()
    dev = link.device(side, bytes([2, 0, 0, 0, 0, side + 1]))
    stack = NativeStack(r, dev, InterfaceConfig(mac=dev.mac, ip=f"192.0.2.{side + 1}", seed=side))
    _watchdog(r, stack, dev, role)
    if role == "server":
        srv = server_socket(stack.listen(make_ipv4_address(port), listen_options(reuse_address=True)))

        r.run(lambda: serve_one_echo(srv))

        # A userspace stack lives in its process: stay up until the peer has
        # everything (our FIN acknowledged), as the kernel would after close().
        async def linger():
            from reactor import sleep
            for _ in range(500):
                if all(t.state.name in ("TIME_WAIT", "CLOSED") for t in stack.iface.tcbs.values()):
                    return
                await sleep(0.01)
        r.run(linger)
        os.write(result_w, b"server ok\n")
    else:
        import random
        data = random.Random(5).randbytes(size)

        async def client():
            s = await stack.connect(make_ipv4_address(("192.0.2.1", port)), None)
            return hashlib.sha256(await echo_exchange(s, data)).hexdigest()
        h = r.run(client)
        os.write(result_w, (h + f" {dev.stats()['kicks_sent']} {dev.stats()['tx_frames']}\n").encode())


@pytest.mark.timeout(60)
def test_two_native_stacks_over_the_ring_in_two_processes():
    import random
    size = 4 << 20
    expected = hashlib.sha256(random.Random(5).randbytes(size)).hexdigest()
    link = RingLink(slots=256)
    r, w = os.pipe()
    pids = []
    for side, role in ((0, "server"), (1, "client")):
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                _serve(link, side, role, 7, expected, size, w)
                code = 0
            finally:
                os._exit(code)
        pids.append(pid)
    statuses = [os.waitpid(p, 0)[1] for p in pids]
    os.close(w)
    out = os.read(r, 4096).decode()
    assert statuses == [0, 0], out
    lines = dict((line.split()[0], line.split()[1:]) for line in out.splitlines())
    assert "server" in lines and expected in lines
    kicks, frames = map(int, lines[expected])
    assert kicks < frames  # notifications are suppressed while the peer polls
