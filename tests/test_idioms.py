"""Loop and composition idioms."""
import pytest

from reactor import (Promise, do_for_each, do_until, do_with, keep_doing, make_exception_future,
                     make_ready_future, map_reduce, max_concurrent_for_each, parallel_for_each,
                     repeat, repeat_until_value, sleep, stop_iteration, when_all,
                     when_all_succeed, when_any)


def test_repeat_until_stop_iteration_yes(reactor):
    n = [0]

    def body():
        n[0] += 1
        return sleep(0).then(lambda: stop_iteration.yes if n[0] == 5 else stop_iteration.no)
    reactor.run(lambda: repeat(body))
    assert n[0] == 5


def test_repeat_accepts_plain_values_and_coroutines(reactor):
    n = [0]

    async def body():
        n[0] += 1
        await sleep(0)
        return stop_iteration.yes if n[0] >= 3 else stop_iteration.no
    reactor.run(lambda: repeat(body))
    assert n[0] == 3
    m = [0]

    def plain():
        m[0] += 1
        return stop_iteration.yes if m[0] == 100000 else stop_iteration.no
    reactor.run(lambda: repeat(plain))
    assert m[0] == 100000


def test_repeat_stops_on_exception(reactor):
    def body():
        raise KeyError("stop")
    with pytest.raises(KeyError):
        reactor.run(lambda: repeat(body))


def test_repeat_requires_stop_iteration(reactor):
    with pytest.raises(TypeError, match="stop_iteration"):
        reactor.run(lambda: repeat(lambda: None))


def test_repeat_until_value(reactor):
    n = [0]

    def body():
        n[0] += 1
        return n[0] * 10 if n[0] == 4 else None
    assert reactor.run(lambda: repeat_until_value(body)) == 40


def test_keep_doing_runs_until_failure(reactor):
    n = [0]

    def body():
        n[0] += 1
        if n[0] == 10:
            return make_exception_future(RuntimeError("enough"))
        return sleep(0)
    with pytest.raises(RuntimeError, match="enough"):
        reactor.run(lambda: keep_doing(body))
    assert n[0] == 10


def test_do_until(reactor):
    n = [0]
    reactor.run(lambda: do_until(lambda: n[0] >= 7, lambda: sleep(0).then(lambda: n.__setitem__(0, n[0] + 1))))
    assert n[0] == 7
    reactor.run(lambda: do_until(lambda: True, lambda: 1 / 0))  # condition checked first


def test_do_for_each_is_sequential(reactor):
    log = []

    def step(i):
        log.append(("start", i))
        return sleep(0.001 * (3 - i)).then(lambda: log.append(("end", i)))
    reactor.run(lambda: do_for_each(range(3), step))
    assert log == [("start", 0), ("end", 0), ("start", 1), ("end", 1), ("start", 2), ("end", 2)]


def test_parallel_for_each_runs_concurrently_and_waits_all(reactor):
    log = []

    def step(i):
        log.append(("start", i))
        return sleep(0.001 * (3 - i)).then(lambda: log.append(("end", i)))
    reactor.run(lambda: parallel_for_each(range(3), step))
    assert log[:3] == [("start", 0), ("start", 1), ("start", 2)]
    assert [e for e in log if e[0] == "end"] == [("end", 2), ("end", 1), ("end", 0)]


def test_parallel_for_each_reports_failure_after_all_finish(reactor):
    done = []

    def step(i):
        if i == 0:
            return make_exception_future(ValueError("zero"))
        return sleep(0.005).then(lambda: done.append(i))
    with pytest.raises(ValueError):
        reactor.run(lambda: parallel_for_each(range(3), step))
    assert sorted(done) == [1, 2]


def test_max_concurrent_for_each_bounds_concurrency(reactor):
    active = [0]
    peak = [0]
    done = []

    def step(i):
        active[0] += 1
        peak[0] = max(peak[0], active[0])

        def end():
            active[0] -= 1
            done.append(i)
        return sleep(0.001).then(end)
    reactor.run(lambda: max_concurrent_for_each(range(20), 3, step))
    assert peak[0] == 3
    assert sorted(done) == list(range(20))


def test_when_all_returns_ready_futures(reactor):
    fs = reactor.run(lambda: when_all(sleep(0.002).then(lambda: 1), make_exception_future(KeyError()),
                                      make_ready_future(3)))
    assert fs[0].get() == 1
    assert fs[1].failed()
    fs[1].ignore_ready_future()
    assert fs[2].get() == 3


def test_when_all_succeed(reactor):
    assert reactor.run(lambda: when_all_succeed([sleep(0.001).then(lambda: "a"), make_ready_future("b")])) == ["a", "b"]
    with pytest.raises(KeyError):
        reactor.run(lambda: when_all_succeed(make_ready_future(1), make_exception_future(KeyError())))


def test_when_any(reactor):
    r = reactor.run(lambda: when_any(sleep(0.05).then(lambda: "slow"), sleep(0.001).then(lambda: "fast")))
    assert r.index == 1
    assert r.futures[1].get() == "fast"
    r.futures[0].ignore_ready_future() if r.futures[0].available() else None


def test_map_reduce(reactor):
    total = reactor.run(lambda: map_reduce(range(10), lambda i: sleep(0).then(lambda: i * i), 0,
                                           lambda a, b: a + b))
    assert total == sum(i * i for i in range(10))


def test_do_with_keeps_objects_alive_until_done(reactor):
    import weakref

    class Obj:
        pass
    o = Obj()
    ref = weakref.ref(o)
    p = Promise()
    seen = []

    def f(obj_):
        return do_with(obj_, lambda obj: p.get_future().then(lambda: seen.append(obj is ref())))
    fut = f(o)
    del o
    import gc
    gc.collect()
    assert ref() is not None  # still alive while the future is pending
    p.set_value()
    reactor.run(fut)
    assert seen == [True]


def test_do_with_requires_callable():
    with pytest.raises(TypeError):
        do_with(1, 2)
