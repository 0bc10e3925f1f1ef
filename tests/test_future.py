"""Futures, promises and continuations: the tutorial's semantics."""
import gc
import logging

import pytest

from reactor import (BrokenPromise, Future, FutureError, FutureUsedError, Promise,
                     make_exception_future, make_ready_future, sleep)


def test_ready_future_value_and_state():
    f = make_ready_future(3)
    assert f.available() and not f.failed()
    assert f.get() == 3


def test_then_passes_value_and_returns_new_future(reactor):
    assert reactor.run(lambda: make_ready_future(3).then(lambda v: v + 1)) == 4


def test_then_on_void_future_calls_without_argument(reactor):
    called = []
    reactor.run(lambda: make_ready_future().then(lambda: called.append(1)))
    assert called == [1]


def test_then_chains_a_returned_future(reactor):
    def slow():
        return sleep(0.01).then(lambda: 3)
    assert reactor.run(lambda: make_ready_future().then(slow).then(lambda v: v * 2)) == 6


def test_then_runs_ready_continuation_inline():
    order = []
    f = make_ready_future(1).then(lambda v: order.append(v))
    order.append("after")
    assert order == [1, "after"]
    assert f.available()


def test_continuation_of_pending_future_runs_from_run_queue(reactor):
    p = Promise()
    order = []
    p.get_future().then(lambda v: order.append(v))
    p.set_value(5)
    order.append("set")  # set_value never runs user code itself
    reactor.run_until_idle()
    assert order == ["set", 5]


def test_exception_skips_then_and_propagates(reactor):
    skipped = []

    def boom():
        raise ValueError("boom")
    f = make_ready_future().then(boom).then(lambda: skipped.append(1))
    with pytest.raises(ValueError, match="boom"):
        reactor.run(f)
    assert skipped == []


def test_then_wrapped_sees_failure_and_can_recover(reactor):
    def inspect(fut):
        assert fut.failed()
        return f"recovered from {fut.get_exception()}"
    assert reactor.run(make_exception_future(KeyError("k")).then_wrapped(inspect)) == "recovered from 'k'"


def test_then_wrapped_can_return_its_input_future(reactor):
    assert reactor.run(make_ready_future(7).then_wrapped(lambda f: f).then(lambda v: v + 1)) == 8


def test_finally_keeps_value_and_exception(reactor):
    ran = []
    assert reactor.run(make_ready_future(1).finally_(lambda: ran.append("a"))) == 1
    with pytest.raises(ValueError):
        reactor.run(make_exception_future(ValueError()).finally_(lambda: ran.append("b")))
    assert ran == ["a", "b"]


def test_finally_cleanup_failure_replaces_outcome(reactor):
    def bad():
        raise RuntimeError("cleanup failed")
    with pytest.raises(RuntimeError, match="cleanup failed"):
        reactor.run(make_ready_future(1).finally_(bad))


def test_finally_waits_for_returned_future(reactor):
    order = []
    f = make_ready_future(1).finally_(lambda: sleep(0.01).then(lambda: order.append("cleanup")))
    assert reactor.run(f.then(lambda v: order.append(v) or v)) == 1
    assert order == ["cleanup", 1]


def test_finally_returned_future_failure_replaces_outcome(reactor):
    f = make_ready_future(1).finally_(lambda: make_exception_future(OSError("x")))
    with pytest.raises(OSError):
        reactor.run(f)


def test_handle_exception_recovers_and_passes_values(reactor):
    assert reactor.run(make_exception_future(ValueError("v")).handle_exception(lambda e: str(e))) == "v"
    assert reactor.run(make_ready_future(2).handle_exception(lambda e: 0)) == 2


def test_handle_exception_type_only_matches_its_type(reactor):
    f = make_exception_future(KeyError("k")).handle_exception_type(ValueError, lambda e: 0)
    with pytest.raises(KeyError):
        reactor.run(f)
    assert reactor.run(make_exception_future(ValueError()).handle_exception_type(ValueError, lambda e: 9)) == 9


def test_future_is_single_use():
    f = make_ready_future(1)
    f.then(lambda v: v)
    with pytest.raises(FutureUsedError):
        f.then(lambda v: v)
    g = make_ready_future(1)
    g.get()
    with pytest.raises(FutureUsedError, match="single use"):
        g.get()


def test_pending_future_second_continuation_is_an_error():
    p = Promise()
    f = p.get_future()
    f.then(lambda v: v)
    with pytest.raises(FutureUsedError):
        f.then(lambda v: v)
    p.set_value(1)


def test_get_on_pending_future_is_an_error():
    p = Promise()
    with pytest.raises(FutureError, match="not available"):
        p.get_future().get()
    p.set_value(None)


def test_dropped_promise_breaks_its_future():
    p = Promise()
    f = p.get_future()
    del p
    gc.collect()
    assert f.failed()
    with pytest.raises(BrokenPromise):
        f.get()


def test_promise_set_twice_is_an_error():
    p = Promise()
    p.set_value(1)
    with pytest.raises(FutureError):
        p.set_value(2)
    p.get_future().get()


def test_ignored_failed_future_is_logged(caplog):
    caplog.set_level(logging.ERROR, logger="seastar")
    f = make_exception_future(ValueError("nobody looked"))
    del f
    gc.collect()
    assert "exceptional future ignored" in caplog.text
    assert "nobody looked" in caplog.text


def test_consumed_failed_future_is_not_logged(caplog, reactor):
    caplog.set_level(logging.ERROR, logger="seastar")
    reactor.run(make_exception_future(ValueError("seen")).handle_exception(lambda e: None))
    gc.collect()
    assert "exceptional future ignored" not in caplog.text


def test_async_await_on_futures(reactor):
    async def coro():
        await sleep(0.001)
        v = await make_ready_future(20)
        try:
            await make_exception_future(KeyError("x"))
        except KeyError:
            v += 1
        return v
    assert reactor.run(coro) == 21


def test_then_with_coroutine_continuation(reactor):
    async def plus_one(v):
        await sleep(0.001)
        return v + 1
    assert reactor.run(make_ready_future(1).then(plus_one).then(lambda v: v * 10)) == 20


def test_coroutine_starts_eagerly(reactor):
    from reactor import Task
    started = []

    async def c():
        started.append(1)
        await sleep(0)
    t = Task(c())
    assert started == [1]
    reactor.run(t)


def test_awaiting_foreign_awaitable_is_a_clear_error(reactor):
    import asyncio

    async def c():
        await asyncio.sleep(0)
    with pytest.raises(TypeError, match="foreign awaitable"):
        reactor.run(c)


def test_deep_ready_recursion_does_not_overflow(reactor):
    def loop(i):
        if i == 0:
            return make_ready_future("done")
        return make_ready_future().then(lambda: loop(i - 1))
    assert reactor.run(lambda: loop(20000)) == "done"


def test_future_repr():
    assert "pending" in repr(Future())
    assert "value" in repr(make_ready_future(1))
