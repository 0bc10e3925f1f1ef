"""The reactor loop: task quota preemption, timers, clocks, fds, poll mode."""
import datetime
import os
import socket
import time

import pytest

from reactor import (ManualClock, Reactor, Timer, make_ready_future, maybe_yield, repeat, sleep,
                     stop_iteration)


def test_endless_ready_repeat_does_not_starve_a_timer(reactor):
    """An endless chain of ready futures must not stop a 10 ms timer from firing on time."""
    t0 = time.monotonic()
    fired = []
    iterations = [0]

    def f():
        sleep(0.010).then(lambda: fired.append(time.monotonic() - t0))

        def body():
            iterations[0] += 1
            return make_ready_future(stop_iteration.yes if fired else stop_iteration.no)
        return repeat(body)
    reactor.run(f)
    assert fired and 0.010 <= fired[0] < 0.060, fired
    assert iterations[0] > 1000  # the loop really was spinning on ready futures
    assert reactor.statistics()["preemptions"] > 0


def test_endless_awaiting_coroutine_is_preempted(reactor):
    fired = []

    async def spin():
        while not fired:
            await make_ready_future()
    sleep(0.005).then(lambda: fired.append(1))
    reactor.run(spin)
    assert fired == [1]


def test_maybe_yield_lets_timers_run(reactor):
    fired = []

    async def spin():
        while not fired:
            await maybe_yield()
    sleep(0.005).then(lambda: fired.append(1))
    reactor.run(spin)
    assert fired


def test_task_quota_option_is_honoured():
    r = Reactor(task_quota=0.002)
    try:
        assert r.task_quota == 0.002
    finally:
        r.close()


def test_sleep_accepts_timedelta_and_seconds(manual_reactor):
    clock = manual_reactor._clock
    manual_reactor.run(lambda: sleep(datetime.timedelta(hours=1)))
    assert clock.now() == pytest.approx(3600.0)
    manual_reactor.run(lambda: sleep(0.5))
    assert clock.now() == pytest.approx(3600.5)


def test_sleep_rejects_bad_duration(reactor):
    with pytest.raises(TypeError):
        reactor.run(lambda: sleep("1s"))


def test_manual_clock_timers_fire_in_deadline_order(manual_reactor):
    order = []
    sleep(3).then(lambda: order.append(3))
    sleep(1).then(lambda: order.append(1))
    sleep(2).then(lambda: order.append(2))
    manual_reactor.run(lambda: sleep(4))
    assert order == [1, 2, 3]


def test_manual_clock_advance_by_hand():
    clock = ManualClock()
    r = Reactor(clock=clock)
    try:
        fired = []
        Timer(lambda: fired.append(clock.now()), reactor=r).arm(10)
        r.run_until_idle()
        assert fired == []
        clock.advance(9.9)
        r.run_until_idle()
        assert fired == []
        clock.advance(0.1)
        r.run_until_idle()
        assert fired == [10.0]
        with pytest.raises(ValueError):
            clock.advance(-1)
    finally:
        r.close()


def test_timer_cancel_and_periodic(manual_reactor):
    ticks = []
    t = Timer(lambda: ticks.append(manual_reactor.now()))
    t.arm_periodic(1.0)
    cancelled = Timer(lambda: ticks.append("never"))
    cancelled.arm(0.5)
    assert cancelled.cancel() is True
    assert cancelled.cancel() is False
    manual_reactor.run(lambda: sleep(3.5))
    t.cancel()
    assert ticks == [1.0, 2.0, 3.0]
    with pytest.raises(RuntimeError):
        t.arm(1)
        t.arm(1)


def test_fd_readiness_wakes_the_reactor(reactor):
    a, b = socket.socketpair()
    a.setblocking(False)
    pfd = reactor.register_fd(a.fileno())
    got = []

    def read():
        try:
            got.append(a.recv(100))
            return make_ready_future()
        except BlockingIOError:
            pfd.clear_readable()
            return pfd.readable().then(read)
    sleep(0.01).then(lambda: b.send(b"ping"))
    reactor.run(read)
    assert got == [b"ping"]
    pfd.close()
    a.close()
    b.close()


def test_reactor_sleeps_when_idle(reactor):
    """Waiting 50 ms for a timer costs almost no CPU (the loop sleeps in epoll)."""
    c0 = time.process_time()
    reactor.run(lambda: sleep(0.05))
    assert time.process_time() - c0 < 0.03


def test_poll_mode_busy_polls():
    r = Reactor(poll_mode=True)
    try:
        c0 = time.process_time()
        r.run(lambda: sleep(0.05))
        assert time.process_time() - c0 > 0.02  # it spun instead of sleeping
        assert r.statistics()["sleeps"] == 0
    finally:
        r.close()


def test_idle_poll_time_spins_before_sleeping():
    r = Reactor(idle_poll_time=0.02)
    try:
        r.run(lambda: sleep(0.01))
        assert r.statistics()["sleeps"] == 0  # woke up within the spin period
    finally:
        r.close()


def test_pollers_are_called_every_turn(reactor):
    class P:
        n = 0

        def poll(self):
            P.n += 1
            return False
    reactor.add_poller(P())
    reactor.run(lambda: sleep(0.01))
    assert P.n >= 1


def test_stop_from_signal_handler(reactor):
    import signal
    reactor.handle_signal(signal.SIGUSR1, lambda: reactor.stop(0))
    sleep(0.01).then(lambda: os.kill(os.getpid(), signal.SIGUSR1))
    from reactor import ReactorStopped
    with pytest.raises(ReactorStopped):
        reactor.run(lambda: sleep(10))
    signal.signal(signal.SIGUSR1, signal.SIG_DFL)
