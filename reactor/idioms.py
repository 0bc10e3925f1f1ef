"""Loop and composition idioms over futures.

Every function here accepts, wherever it takes an "action", a callable
returning a Future, a coroutine (an ``async def`` called) or a plain value.
Loops run iterations inline while the futures they get are ready, and yield
to the reactor when the task quota is used up, so an endless loop of ready
futures never starves timers or pollers.
"""

from __future__ import annotations

from typing import Any, Callable, Iterable

import enum
from types import CoroutineType

from . import future as _fut
from .future import Future, Task, _failed, as_future, futurize, make_ready_future, need_preempt

__all__ = [
    "stop_iteration", "repeat", "keep_doing", "do_until", "do_for_each", "parallel_for_each",
    "max_concurrent_for_each", "when_all", "when_all_succeed", "when_any", "WhenAnyResult",
    "map_reduce", "do_with", "repeat_until_value",
]


class stop_iteration(enum.IntEnum):  # noqa: N801 - Seastar's name
    no = 0
    yes = 1


def _call(action, args=()):
    """Call action, returning a Future (exceptions become failed futures)."""
    try:
        r = action(*args)
    except BaseException as e:  # noqa: BLE001
        return _failed(e)
    if isinstance(r, Future):
        return r
    if r.__class__ is CoroutineType:
        return Task(r)
    return make_ready_future(r)


class _Loop:
    """Shared machinery: call step() repeatedly; step returns a Future whose
    value tells whether to continue (via self.check)."""

    __slots__ = ("out", "action")

    def __init__(self, action) -> None:
        self.out = Future()
        self.action = action

    def check(self, value) -> bool:  # True = stop
        raise NotImplementedError

    def start(self) -> Future:
        self.run()
        return self.out

    def run(self, _arg=None) -> None:
        action = self.action
        while True:
            f = _call(action)
            if f._state and f._cb is None:
                state, value = f._take()
                if state == 2:
                    self.out._set_exception(value)
                    return
                try:
                    if self.check(value):
                        self.finish(value)
                        return
                except BaseException as e:  # noqa: BLE001
                    self.out._set_exception(e)
                    return
                if need_preempt():
                    _fut._schedule((self.run, None))
                    return
            else:
                f._attach(self._resume, None)
                return

    def finish(self, value) -> None:
        self.out._set_value(None)

    def _resume(self, f: Future) -> None:
        f._cb = None
        state, value = f._take()
        if state == 2:
            self.out._set_exception(value)
            return
        try:
            if self.check(value):
                self.finish(value)
                return
        except BaseException as e:  # noqa: BLE001
            self.out._set_exception(e)
            return
        self.run()


class _Repeat(_Loop):
    __slots__ = ()

    def check(self, value) -> bool:
        if value is None:
            raise TypeError("repeat(): the action must return stop_iteration.yes/no")
        return bool(value)


def repeat(action: Callable[..., Any]) -> Future:
    """Call action() until it returns (a future of) stop_iteration.yes."""
    return _Repeat(action).start()


class _RepeatUntilValue(_Loop):
    __slots__ = ()

    def check(self, value) -> bool:
        return value is not None

    def finish(self, value) -> None:
        self.out._set_value(value)


def repeat_until_value(action: Callable[..., Any]) -> Future:
    """Call action() until it returns a value other than None; resolve with it."""
    return _RepeatUntilValue(action).start()


class _KeepDoing(_Loop):
    __slots__ = ()

    def check(self, value) -> bool:
        return False


def keep_doing(action: Callable[..., Any]) -> Future:
    """Call action() forever; the future resolves only with the first failure."""
    return _KeepDoing(action).start()


class _DoUntil(_Loop):
    __slots__ = ("stop_cond",)

    def __init__(self, stop_cond, action) -> None:
        _Loop.__init__(self, action)
        self.stop_cond = stop_cond

    def run(self, _arg=None) -> None:
        try:
            if self.stop_cond():
                self.out._set_value(None)
                return
        except BaseException as e:  # noqa: BLE001
            self.out._set_exception(e)
            return
        _Loop.run(self)

    def check(self, value) -> bool:
        return bool(self.stop_cond())


def do_until(stop_cond: Callable[..., Any], action: Callable[..., Any]) -> Future:
    """While not stop_cond(): await action()."""
    return _DoUntil(stop_cond, action).start()


class _ForEach(_Loop):
    __slots__ = ("it", "fn")

    def __init__(self, iterable, fn) -> None:
        self.it = iter(iterable)
        self.fn = fn
        _Loop.__init__(self, self._next)

    def _next(self):
        for item in self.it:
            return _call(self.fn, (item,)).then(_false)
        return True

    def check(self, value) -> bool:
        return value is True


def _false(*_a):
    return False


def do_for_each(iterable: Iterable[Any], fn: Callable[..., Any]) -> Future:
    """Call fn(item) for each item, one after the other."""
    return _ForEach(iterable, fn).start()


class _Counter:
    """Counts outstanding futures; resolves `out` when all are done, failing
    with the first exception seen (after all are done)."""

    __slots__ = ("pending", "exc", "out", "done_adding")

    def __init__(self) -> None:
        self.pending = 0
        self.exc: Any = None
        self.out = Future()
        self.done_adding = False

    def add(self, f: Future) -> None:
        if f._state and f._cb is None:
            exc = f.get_exception()
            if exc is not None and self.exc is None:
                self.exc = exc
            return
        self.pending += 1
        f._attach(self._done, None)

    def _done(self, f: Future) -> None:
        f._cb = None
        exc = f.get_exception()
        if exc is not None and self.exc is None:
            self.exc = exc
        self.pending -= 1
        self.maybe_finish()

    def maybe_finish(self) -> None:
        if self.done_adding and self.pending == 0 and not self.out._state:
            if self.exc is not None:
                self.out._set_exception(self.exc)
            else:
                self.out._set_value(None)


def parallel_for_each(iterable: Iterable[Any], fn: Callable[..., Any]) -> Future:
    """Start fn(item) for every item at once; resolve when all finish (failing
    with the first exception, after every invocation has finished)."""
    c = _Counter()
    for item in iterable:
        c.add(_call(fn, (item,)))
    c.done_adding = True
    c.maybe_finish()
    return c.out


def max_concurrent_for_each(iterable: Iterable[Any], max_concurrent: int, fn: Callable[..., Any]) -> Future:
    """Like parallel_for_each with at most max_concurrent invocations in flight."""
    if max_concurrent < 1:
        raise ValueError("max_concurrent must be >= 1")
    it = iter(iterable)
    c = _Counter()

    def worker():
        def next_item():
            for item in it:
                if c.exc is not None:
                    return True  # stop early after a failure
                return _call(fn, (item,)).then(_false)
            return True
        return repeat(lambda: as_future(next_item()).then(lambda stop: stop_iteration.yes if stop else stop_iteration.no))

    for _ in range(max_concurrent):
        c.add(worker())
    c.done_adding = True
    c.maybe_finish()
    return c.out


def when_all(*futures) -> Future:
    """A future of the list of input futures, all ready (values or failures).
    Accepts futures, coroutines, or one iterable of them."""
    futs = _collect(futures)
    out = Future()
    remaining = [len(futs)]
    if not futs:
        out._set_value([])
        return out

    def done(_f):
        remaining[0] -= 1
        if remaining[0] == 0:
            out._set_value(results)

    results = []
    for f in futs:
        if f._state and f._cb is None:
            results.append(f)
            remaining[0] -= 1
        else:
            holder = Future()  # a ready copy handed to the caller
            results.append(holder)
            f._attach(_copy_into, (holder, done))
    if remaining[0] == 0:
        out._set_value(results)
    return out


def _copy_into(f: Future) -> None:
    holder, done = f._cbarg
    f._cbarg = None
    state, value = f._take()
    if state == 2:
        holder._set_exception(value)
    else:
        holder._set_value(value)
    done(holder)


def when_all_succeed(*futures) -> Future:
    """A future of the list of values; fails with the first failure once all are done."""
    def collect(ready):
        exc = None
        values = []
        for f in ready:
            e = f.get_exception() if f.failed() else None
            if e is not None:
                exc = exc or e
                values.append(None)
            else:
                values.append(f.get())
        if exc is not None:
            raise exc
        return values
    return when_all(*futures).then(collect)


class WhenAnyResult:
    __slots__ = ("index", "futures")

    def __init__(self, index: int, futures: list) -> None:
        self.index = index
        self.futures = futures

    def __repr__(self) -> str:
        return f"WhenAnyResult(index={self.index})"


def when_any(*futures) -> Future:
    """Resolves when the first input is ready, with WhenAnyResult(index, futures).
    The futures list holds futures that each resolve like the inputs."""
    futs = _collect(futures)
    out = Future()
    if not futs:
        raise ValueError("when_any() of nothing")
    holders = []
    for i, f in enumerate(futs):
        h = Future()
        holders.append(h)

        def done(holder, i=i):
            if not out._state:
                out._set_value(WhenAnyResult(i, holders))
        f._attach(_copy_into, (h, done))
    return out


def map_reduce(iterable: Iterable[Any], mapper: Callable[..., Any], initial: Any, reducer: Callable[..., Any]) -> Future:
    """Run mapper(item) for all items in parallel; fold the results with
    reducer(acc, value) as they arrive, starting from initial."""
    acc = [initial]
    c = _Counter()

    def reduce(v):
        acc[0] = reducer(acc[0], v)

    for item in iterable:
        c.add(_call(mapper, (item,)).then(reduce))
    c.done_adding = True
    c.maybe_finish()
    return c.out.then(lambda: acc[0])


def do_with(*args) -> Future:
    """do_with(obj1, obj2, ..., fn): call fn(obj1, obj2, ...) and keep the
    objects alive until the future it returns resolves."""
    if not args or not callable(args[-1]):
        raise TypeError("do_with(*objects, fn): the last argument must be callable")
    fn = args[-1]
    objs = args[:-1]
    f = futurize(fn, *objs)
    if f._state:
        return f
    return f._wrapped(_release, objs)      # the tuple in the continuation keeps them alive


def _release(f: Future, _objs) -> Future:
    # do_with's end: the objects go with this call's reference; the outcome is f's
    return f


def _collect(futures) -> list:
    if len(futures) == 1 and not isinstance(futures[0], Future) and hasattr(futures[0], "__iter__") \
            and futures[0].__class__ is not CoroutineType:
        futures = tuple(futures[0])
    return [as_future(f) for f in futures]
