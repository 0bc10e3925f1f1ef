"""Synchronisation primitives for fibers on one shard.

None of these take locks: continuations on a shard never run in parallel.
They coordinate *fibers* (chains of continuations) that interleave.
"""

from __future__ import annotations

from typing import Any, Callable

from collections import deque

from .future import Future, _failed, futurize, make_exception_future, make_ready_future
from .time import to_seconds

__all__ = [
    "semaphore", "with_semaphore", "semaphore_units", "get_units", "BrokenSemaphore",
    "SemaphoreTimedOut", "gate", "with_gate", "GateClosedError", "condition_variable",
    "BrokenConditionVariable", "queue", "pipe", "pipe_reader", "pipe_writer", "BrokenPipe",
    "shared_promise", "abort_source", "AbortRequestedError", "with_timeout", "TimedOutError",
    "sleep_abortable",
]


class BrokenSemaphore(RuntimeError):
    def __init__(self, msg: str = "semaphore broken") -> None:
        super().__init__(msg)


class SemaphoreTimedOut(TimeoutError):
    def __init__(self, msg: str = "semaphore timed out") -> None:
        super().__init__(msg)


class TimedOutError(TimeoutError):
    def __init__(self, msg: str = "timedout") -> None:
        super().__init__(msg)


class semaphore:  # noqa: N801 - Seastar's names
    """A counting semaphore. wait(n) resolves in FIFO order once n units are free."""

    def __init__(self, count: int) -> None:
        self._count = count
        self._waiters: deque = deque()  # [units, future, timer]
        self._broken: BaseException | None = None

    def available_units(self) -> int:
        return self._count

    def waiters(self) -> int:
        return len(self._waiters)

    def try_wait(self, units: int = 1) -> bool:
        if self._broken is None and not self._waiters and self._count >= units:
            self._count -= units
            return True
        return False

    def wait(self, units: int = 1, timeout: float | None = None) -> Future:
        if self._broken is not None:
            return make_exception_future(self._broken)
        if not self._waiters and self._count >= units:
            self._count -= units
            return make_ready_future()
        f = Future()
        entry = [units, f, None]
        if timeout is not None:
            from .time import Timer
            t = Timer(lambda: self._expire(entry))
            t.arm(timeout)
            entry[2] = t
        self._waiters.append(entry)
        return f

    def _expire(self, entry) -> None:
        try:
            self._waiters.remove(entry)
        except ValueError:
            return
        entry[1]._set_exception(SemaphoreTimedOut())
        self._wake()

    def signal(self, units: int = 1) -> None:
        if self._broken is not None:
            return
        self._count += units
        self._wake()

    def _wake(self) -> None:
        w = self._waiters
        while w and w[0][0] <= self._count:
            units, f, t = w.popleft()
            if t is not None:
                t.cancel()
            self._count -= units
            f._set_value(None)

    def consume(self, units: int = 1) -> None:
        """Take units without waiting (the count may go negative)."""
        self._count -= units

    def broken(self, exc: BaseException | None = None) -> None:
        self._broken = exc or BrokenSemaphore()
        while self._waiters:
            _u, f, t = self._waiters.popleft()
            if t is not None:
                t.cancel()
            f._set_exception(self._broken)


class semaphore_units:  # noqa: N801
    """Units held from a semaphore, returned by return_all() (or when dropped)."""

    def __init__(self, sem: semaphore, units: int) -> None:
        self._sem = sem
        self._units = units

    def count(self) -> int:
        return self._units

    def return_units(self, n: int) -> None:
        if n > self._units:
            raise ValueError("returning more units than held")
        self._units -= n
        self._sem.signal(n)

    def return_all(self) -> None:
        if self._units:
            n, self._units = self._units, 0
            self._sem.signal(n)

    release = return_all

    def __del__(self) -> None:
        if self._units:
            self.return_all()


def get_units(sem: semaphore, units: int = 1, timeout: float | None = None) -> Future:
    """A future of semaphore_units that gives the units back when released."""
    return sem.wait(units, timeout).then(lambda: semaphore_units(sem, units))


def with_semaphore(sem: semaphore, units: int, fn: Callable[..., Any], timeout: float | None = None) -> Future:
    """Run fn() holding `units` of sem; release them whatever fn's outcome."""
    def run():
        return futurize(fn).finally_(lambda: sem.signal(units))
    return sem.wait(units, timeout).then(run)


class GateClosedError(RuntimeError):
    def __init__(self, msg: str = "gate closed") -> None:
        super().__init__(msg)


class gate:  # noqa: N801
    """Tracks in-flight work; close() resolves when all of it has left."""

    def __init__(self) -> None:
        self._count = 0
        self._closed: Future | None = None

    def enter(self) -> None:
        if self._closed is not None:
            raise GateClosedError()
        self._count += 1

    def try_enter(self) -> bool:
        if self._closed is not None:
            return False
        self._count += 1
        return True

    def leave(self) -> None:
        self._count -= 1
        if self._count == 0 and self._closed is not None and not self._closed._state:
            self._closed._set_value(None)

    def check(self) -> None:
        if self._closed is not None:
            raise GateClosedError()

    def is_closed(self) -> bool:
        return self._closed is not None

    def get_count(self) -> int:
        return self._count

    def close(self) -> Future:
        if self._closed is not None:
            raise RuntimeError("gate closed twice")
        self._closed = Future()
        f = self._closed
        if self._count == 0:
            f._set_value(None)
        out = Future()
        f._attach(_forward_to, out)
        return out


def _forward_to(f: Future) -> None:
    out = f._cbarg
    f._cbarg = None
    out._set_value(None)


def with_gate(g: gate, fn: Callable[..., Any]) -> Future:
    try:
        g.enter()
    except GateClosedError as e:
        return _failed(e)
    return futurize(fn).finally_(g.leave)


class BrokenConditionVariable(RuntimeError):
    def __init__(self, msg: str = "condition variable broken") -> None:
        super().__init__(msg)


class condition_variable:  # noqa: N801
    def __init__(self) -> None:
        self._waiters: deque = deque()
        self._broken: BaseException | None = None

    def wait(self, pred: Callable[..., Any] | None = None, timeout: float | None = None) -> Future:
        """Wait for signal() (or, with pred, until pred() is true)."""
        if self._broken is not None:
            return make_exception_future(self._broken)
        if pred is not None:
            if pred():
                return make_ready_future()
            from .idioms import repeat, stop_iteration
            return repeat(lambda: self._wait_once(timeout).then(
                lambda: stop_iteration.yes if pred() else stop_iteration.no))
        return self._wait_once(timeout)

    def _wait_once(self, timeout) -> Future:
        f = Future()
        self._waiters.append(f)
        if timeout is None:
            return f
        return with_timeout(timeout, f)

    def signal(self) -> None:
        while self._waiters:
            f = self._waiters.popleft()
            if not f._state:
                f._set_value(None)
                return

    def broadcast(self) -> None:
        w, self._waiters = self._waiters, deque()
        for f in w:
            if not f._state:
                f._set_value(None)

    def broken(self, exc: BaseException | None = None) -> None:
        self._broken = exc or BrokenConditionVariable()
        w, self._waiters = self._waiters, deque()
        for f in w:
            if not f._state:
                f._set_exception(self._broken)

    def has_waiters(self) -> bool:
        return bool(self._waiters)


class queue:  # noqa: N801
    """A bounded FIFO between fibers."""

    def __init__(self, max_size: int) -> None:
        if max_size < 1:
            raise ValueError("queue max_size must be >= 1")
        self._items: deque = deque()
        self._max = max_size
        self._not_empty: shared_promise | None = None
        self._not_full: shared_promise | None = None
        self._exc: BaseException | None = None

    def size(self) -> int:
        return len(self._items)

    def max_size(self) -> int:
        return self._max

    def empty(self) -> bool:
        return not self._items

    def full(self) -> bool:
        return len(self._items) >= self._max

    def push(self, item: Any) -> bool:
        """Push without waiting; False if full."""
        if self._exc is not None:
            raise self._exc
        if len(self._items) >= self._max:
            return False
        self._items.append(item)
        sp = self._not_empty
        if sp is not None:
            self._not_empty = None
            sp.set_value(None)
        return True

    def pop(self) -> Any:
        """Pop without waiting (IndexError if empty)."""
        item = self._items.popleft()
        sp = self._not_full
        if sp is not None:
            self._not_full = None
            sp.set_value(None)
        return item

    def not_empty(self) -> Future:
        if self._exc is not None:
            return make_exception_future(self._exc)
        if self._items:
            return make_ready_future()
        if self._not_empty is None:
            self._not_empty = shared_promise()
        return self._not_empty.get_shared_future()

    def not_full(self) -> Future:
        if self._exc is not None:
            return make_exception_future(self._exc)
        if len(self._items) < self._max:
            return make_ready_future()
        if self._not_full is None:
            self._not_full = shared_promise()
        return self._not_full.get_shared_future()

    def push_eventually(self, item: Any) -> Future:
        if self._exc is not None:
            return make_exception_future(self._exc)
        if self.push(item):
            return make_ready_future()
        return self.not_full().then(lambda: self.push_eventually(item))

    def pop_eventually(self) -> Future:
        if self._exc is not None:
            return make_exception_future(self._exc)
        if self._items:
            return make_ready_future(self.pop())
        return self.not_empty().then(self.pop_eventually)

    def abort(self, exc: BaseException) -> None:
        """Fail current and future waiters with exc."""
        self._exc = exc
        self._fail_waiters(exc)

    def _fail_waiters(self, exc: BaseException) -> None:
        for name in ("_not_empty", "_not_full"):
            sp = getattr(self, name)
            if sp is not None:
                setattr(self, name, None)
                sp.set_exception(exc)


class BrokenPipe(RuntimeError):
    def __init__(self, msg: str = "broken pipe") -> None:
        super().__init__(msg)


class _PipeBuffer:
    def __init__(self, size: int) -> None:
        self.q = queue(size)
        self.read_open = True
        self.write_open = True


class pipe_reader:  # noqa: N801
    def __init__(self, buf: _PipeBuffer) -> None:
        self._buf = buf

    def read(self) -> Future:
        """The next item, or None once the writer closed and all items were read.

        A future whose value is None calls then() continuations with no
        argument, so write `lambda item=None: ...` (or await it)."""
        b = self._buf
        if b.q._items:
            return make_ready_future(b.q.pop())
        if not b.write_open:
            return make_ready_future(None)
        return b.q.not_empty().then(self.read).handle_exception_type(_PipeEOF, lambda e: None)

    def close(self) -> None:
        self._buf.read_open = False
        self._buf.q.abort(BrokenPipe())

    def __del__(self) -> None:
        if self._buf.read_open:
            self._buf.read_open = False
            self._buf.q.abort(BrokenPipe())


class _PipeEOF(Exception):
    pass


class pipe_writer:  # noqa: N801
    def __init__(self, buf: _PipeBuffer) -> None:
        self._buf = buf

    def write(self, item: Any) -> Future:
        b = self._buf
        if not b.read_open:
            return make_exception_future(BrokenPipe())
        if not b.write_open:
            return make_exception_future(BrokenPipe("write to a closed pipe"))
        return b.q.push_eventually(item)

    def close(self) -> None:
        b = self._buf
        if b.write_open:
            b.write_open = False
            f = b.q._not_empty
            if f is not None:
                b.q._not_empty = None
                f.set_exception(_PipeEOF())

    def __del__(self) -> None:
        self.close()


class pipe:  # noqa: N801
    """A one-way bounded channel of items between fibers: pipe(size).reader / .writer.
    Closing the writer gives the reader None (end of stream) after the last item."""

    def __init__(self, size: int) -> None:
        buf = _PipeBuffer(size)
        self.reader = pipe_reader(buf)
        self.writer = pipe_writer(buf)


class shared_promise:  # noqa: N801
    """A promise whose outcome any number of futures can wait for."""

    def __init__(self) -> None:
        self._state = 0
        self._result: Any = None
        self._waiters: list = []

    def get_shared_future(self) -> Future:
        if self._state == 1:
            return make_ready_future(self._result)
        if self._state == 2:
            return make_exception_future(self._result)
        f = Future()
        self._waiters.append(f)
        return f

    def set_value(self, value: Any = None) -> None:
        if self._state:
            raise RuntimeError("shared_promise already satisfied")
        self._state, self._result = 1, value
        w, self._waiters = self._waiters, []
        for f in w:
            f._set_value(value)

    def set_exception(self, exc: BaseException) -> None:
        if self._state:
            raise RuntimeError("shared_promise already satisfied")
        self._state, self._result = 2, exc
        w, self._waiters = self._waiters, []
        for f in w:
            f._set_exception(exc)

    def available(self) -> bool:
        return self._state != 0

    def failed(self) -> bool:
        return self._state == 2


class AbortRequestedError(RuntimeError):
    def __init__(self, msg: str = "abort requested") -> None:
        super().__init__(msg)


class _Subscription:
    def __init__(self, src: "abort_source | None", fn: Callable[..., Any]) -> None:
        self._src: Any = src
        self._fn = fn

    def unsubscribe(self) -> None:
        if self._src is not None:
            try:
                self._src._subs.remove(self)
            except ValueError:
                pass
            self._src = None

    def __bool__(self) -> bool:
        return self._src is not None


class abort_source:  # noqa: N801
    def __init__(self) -> None:
        self._subs: list = []
        self._exc: Any = None
        self._requested = False

    def subscribe(self, fn: Callable[..., Any]) -> Any:
        """fn(exc) is called on request_abort(); returns a subscription
        (falsy if the abort already happened, in which case fn is not called)."""
        if self._requested:
            return _Subscription(None, fn)
        s = _Subscription(self, fn)
        self._subs.append(s)
        return s

    def request_abort(self, exc: BaseException | None = None) -> None:
        if self._requested:
            return
        self._requested = True
        self._exc = exc or AbortRequestedError()
        subs, self._subs = self._subs, []
        for s in subs:
            s._src = None
            s._fn(self._exc)

    def abort_requested(self) -> bool:
        return self._requested

    def check(self) -> None:
        if self._requested:
            raise self._exc


def with_timeout(timeout: float | None, f: Future) -> Future:
    """f's outcome, or TimedOutError if it is not ready within `timeout`
    seconds (timedelta accepted). f keeps running; its late outcome is dropped."""
    from .time import Timer
    if f._state:
        return f
    out = Future()
    def expire() -> None:
        if not out._state:
            out._set_exception(TimedOutError())
    t = Timer(expire)
    t.arm(to_seconds(timeout))

    def done(src: Future):
        t.cancel()
        state, result = src._take()
        if out._state:
            return
        if state == 2:
            out._set_exception(result)
        else:
            out._set_value(result)
    f._attach(done, None)
    return out


def sleep_abortable(duration: float, source: abort_source) -> Future:
    """sleep() that fails with AbortRequestedError when `source` aborts."""
    from .time import Timer
    out = Future()
    if source.abort_requested():
        return make_exception_future(source._exc)
    sub = None
    def wake() -> None:
        if sub:
            sub.unsubscribe()
        if not out._state:
            out._set_value(None)
    t = Timer(wake)

    def on_abort(exc):
        t.cancel()
        if not out._state:
            out._set_exception(exc)
    sub = source.subscribe(on_abort)
    t.arm(to_seconds(duration))
    return out
