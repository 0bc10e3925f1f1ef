"""Synchronisation primitives."""
import pytest

from reactor import (AbortRequestedError, BrokenSemaphore, GateClosedError, Promise,
                     SemaphoreTimedOut, TimedOutError, abort_source, condition_variable, gate,
                     get_units, make_ready_future, parallel_for_each, pipe, queue, semaphore,
                     shared_promise, sleep, sleep_abortable, with_gate, with_semaphore,
                     with_timeout)


def test_semaphore_limits_concurrency(reactor):
    sem = semaphore(2)
    active = [0]
    peak = [0]

    def work(i):
        def body():
            active[0] += 1
            peak[0] = max(peak[0], active[0])
            return sleep(0.001).then(lambda: active.__setitem__(0, active[0] - 1))
        return with_semaphore(sem, 1, body)
    reactor.run(lambda: parallel_for_each(range(10), work))
    assert peak[0] == 2
    assert sem.available_units() == 2


def test_semaphore_units_fifo_and_timeout(manual_reactor):
    sem = semaphore(0)
    order = []
    sem.wait(2).then(lambda: order.append("two"))
    sem.wait(1).then(lambda: order.append("one"))
    sem.signal(1)  # not enough for the head: FIFO, nobody wakes
    manual_reactor.run_until_idle()
    assert order == []
    sem.signal(2)
    manual_reactor.run_until_idle()
    assert order == ["two", "one"]
    with pytest.raises(SemaphoreTimedOut):
        manual_reactor.run(lambda: sem.wait(1, timeout=5))
    assert sem.try_wait(1) is False


def test_semaphore_broken(reactor):
    sem = semaphore(0)
    f = sem.wait()
    sem.broken()
    with pytest.raises(BrokenSemaphore):
        reactor.run(f)


def test_get_units_releases(reactor):
    sem = semaphore(3)
    units = reactor.run(lambda: get_units(sem, 2))
    assert sem.available_units() == 1
    units.return_all()
    assert sem.available_units() == 3


def test_gate_close_waits_for_inflight(reactor):
    g = gate()
    done = []
    with_gate(g, lambda: sleep(0.005).then(lambda: done.append(1)))
    closed = g.close()
    with pytest.raises(GateClosedError):
        g.enter()
    reactor.run(closed)
    assert done == [1]


def test_condition_variable(reactor):
    cv = condition_variable()
    state = {"x": 0}
    woke = []
    cv.wait(lambda: state["x"] >= 2).then(lambda: woke.append("pred"))
    cv.wait().then(lambda: woke.append("plain"))

    def bump():
        state["x"] += 1
        cv.broadcast()
    sleep(0.001).then(bump)
    reactor.run(lambda: sleep(0.002).then(bump).then(lambda: sleep(0.002)))
    assert sorted(woke) == ["plain", "pred"]


def test_queue_backpressure_and_order(reactor):
    q = queue(2)
    got = []

    def producer():
        return parallel_for_each([0], lambda _: _produce())

    def _produce():
        f = make_ready_future()
        for i in range(6):
            f = f.then(lambda i=i: q.push_eventually(i))
        return f

    def consumer():
        def one(_):
            return q.pop_eventually().then(got.append)
        from reactor import do_for_each
        return do_for_each(range(6), one)
    from reactor import when_all_succeed
    reactor.run(lambda: when_all_succeed(producer(), consumer()))
    assert got == list(range(6))
    assert q.push(1) and q.push(2) and not q.push(3)


def test_queue_abort(reactor):
    q = queue(1)
    f = q.pop_eventually()
    q.abort(ConnectionError("gone"))
    with pytest.raises(ConnectionError):
        reactor.run(f)


def test_pipe_delivers_then_eof(reactor):
    p = pipe(2)
    out = []

    def reader():
        def loop():
            return p.reader.read().then(lambda item=None: None if item is None else (out.append(item), loop())[1])
        return loop()

    def writer():
        return p.writer.write("a").then(lambda: p.writer.write("b")).then(lambda: p.writer.write("c")).then(p.writer.close)
    from reactor import when_all_succeed
    reactor.run(lambda: when_all_succeed(reader(), writer()))
    assert out == ["a", "b", "c"]


def test_shared_promise_many_waiters(reactor):
    sp = shared_promise()
    fs = [sp.get_shared_future() for _ in range(3)]
    sp.set_value(42)
    assert [reactor.run(f) for f in fs] == [42, 42, 42]
    assert reactor.run(sp.get_shared_future()) == 42


def test_abort_source(reactor):
    src = abort_source()
    seen = []
    sub = src.subscribe(lambda e: seen.append(type(e)))
    f = sleep_abortable(10, src)
    sleep(0.001).then(src.request_abort)
    with pytest.raises(AbortRequestedError):
        reactor.run(f)
    assert seen == [AbortRequestedError]
    assert not sub
    with pytest.raises(AbortRequestedError):
        src.check()


def test_with_timeout(manual_reactor):
    p = Promise()
    with pytest.raises(TimedOutError):
        manual_reactor.run(lambda: with_timeout(1.0, p.get_future()))
    assert manual_reactor.run(lambda: with_timeout(5, sleep(1).then(lambda: "ok"))) == "ok"
    p.set_value(None)
