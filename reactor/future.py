"""Futures, promises and continuations.

Theory of operation
-------------------
A `Future` is a single-use slot holding either a value or an exception. It
has at most one consumer: a continuation (`then`, `then_wrapped`, `finally_`,
`handle_exception`, an `await`) or a direct `get()`. A second consumer is a
programming error and raises `FutureUsedError`.

Continuations attached to a future that is already resolved run *inline*,
inside the call to `then()`, as long as the current task quota has not run
out and the inline nesting depth stays bounded; otherwise they are deferred
to the reactor's run queue. Continuations attached to a pending future are
put on the run queue when the future resolves (never run from inside
`set_value`, so resolving a promise never recurses into user code).

The run queue is a `collections.deque` of ``(callback, argument)`` pairs
owned by this module; the reactor drains it (see `reactor.loop`). The task
quota is a deadline on `time.perf_counter()` set by the reactor at the start
of each batch; `need_preempt()` compares against it.

A failed future that nobody consumes is logged as "exceptional future
ignored" with its traceback when it is garbage-collected. Only failed
futures pay for this: a small guard object is attached when the exception
is stored and disarmed when the failure is consumed.

A `future<>` of Seastar (no value) is a Future whose value is ``None``; its
`then` continuations are called with no argument. Any other value is passed
as the single argument.
"""

from __future__ import annotations

from typing import Any, Callable

import logging
import traceback
from collections import deque
from time import perf_counter as _perf
from sys import is_finalizing as _is_finalizing
from types import CoroutineType

__all__ = [
    "Future", "Promise", "Task", "FutureError", "FutureUsedError", "BrokenPromise",
    "make_ready_future", "make_exception_future", "as_future", "need_preempt",
    "maybe_yield", "futurize",
]

log = logging.getLogger("reactor")

_PENDING = 0
_VALUE = 1
_EXC = 2

# Bound on the depth of inline continuation runs (Seastar's limit is 256;
# Python frames are bigger, so we keep it lower to stay far from the
# interpreter's recursion limit).
MAX_INLINE_DEPTH = 64

# --- scheduler state shared with the reactor --------------------------------
_queue: deque = deque()
_schedule = _queue.append
_deadline = float("inf")  # perf_counter() time at which the running task quota expires
_depth = 0


def _set_deadline(value: float) -> None:
    global _deadline
    _deadline = value


def need_preempt() -> bool:
    """True when the current task quota is used up and work should yield."""
    return _perf() >= _deadline


class FutureError(RuntimeError):
    """Misuse of a future or promise."""


class FutureUsedError(FutureError):
    pass


class BrokenPromise(FutureError):
    """The promise was dropped without being resolved."""

    def __init__(self, msg: str = "broken promise") -> None:
        super().__init__(msg)


class _FailureGuard:
    """Logs a failed future that was garbage-collected unconsumed."""

    __slots__ = ("exc",)

    def __init__(self, exc: BaseException) -> None:
        self.exc: BaseException | None = exc

    def __del__(self) -> None:
        exc = self.exc
        if exc is not None:
            self.exc = None
            try:
                tb = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
                log.error("exceptional future ignored: %r\n%s", exc, tb)
            except Exception:  # interpreter shutdown
                pass


class Future:
    __slots__ = ("_state", "_result", "_cb", "_cbarg", "_used", "_guard", "__weakref__")

    def __init__(self) -> None:
        self._state = _PENDING
        self._result: Any = None
        self._cb: Any = None
        self._cbarg: Any = None
        self._used = False
        self._guard: Any = None

    # ---- inspection -----------------------------------------------------
    def available(self) -> bool:
        return self._state != _PENDING

    def failed(self) -> bool:
        return self._state == _EXC

    def __repr__(self) -> str:
        state = ("pending", "value", "exception")[self._state]
        return f"<Future {state} {self._result!r}>" if self._state else "<Future pending>"

    # ---- resolution (internal; users resolve through a Promise) ----------
    # _set_value and _set_exception are deliberately two copies of one loop:
    # every deferred continuation goes through them, and a shared helper would
    # add a Python call to each resolution.
    def _set_value(self, value) -> None:
        f = self
        while True:
            if f._state:
                raise FutureError("future already resolved")
            f._state = _VALUE
            f._result = value
            cb = f._cb
            if cb is _forward_cb:
                # A pure forward runs no user code: resolve its target now
                # instead of spending a trip through the run queue.
                out = f._cbarg
                f._cbarg = None
                f._used = True
                f = out
                continue
            if cb is not None:
                _schedule((cb, f))
            return

    def _set_exception(self, exc: BaseException) -> None:
        if isinstance(exc, type):
            exc = exc()
        f = self
        while True:
            if f._state:
                raise FutureError("future already resolved")
            f._state = _EXC
            f._result = exc
            cb = f._cb
            if cb is _forward_cb:
                out = f._cbarg
                f._cbarg = None
                f._used = True
                f = out
                continue
            if cb is not None:
                _schedule((cb, f))
            else:
                f._guard = _FailureGuard(exc)
            return

    def _take(self):
        """Consume: mark used, disarm the failure guard, return (state, result)."""
        if self._used:
            raise FutureUsedError("future already consumed: a future is single use")
        self._used = True
        guard = self._guard
        if guard is not None:
            guard.exc = None
            self._guard = None
        return self._state, self._result

    def _attach(self, cb, arg) -> None:
        if self._cb is not None or self._used:
            raise FutureUsedError("future already has a continuation: a future is single use")
        self._cb = cb
        self._cbarg = arg
        if self._state:
            guard = self._guard
            if guard is not None:
                guard.exc = None
                self._guard = None
            _schedule((cb, self))

    # ---- consumption ------------------------------------------------------
    def get(self) -> Any:
        """The value, or raise the stored exception. Consumes the future."""
        if not self._state:
            raise FutureError("future not available: get() on a pending future")
        state, result = self._take()
        if state == _EXC:
            raise result
        return result

    def get_exception(self) -> BaseException | None:
        """The stored exception (consuming the future), or None for a value."""
        if not self._state:
            raise FutureError("future not available")
        state, result = self._take()
        return result if state == _EXC else None

    def ignore_ready_future(self) -> None:
        """Consume and drop the outcome (no 'exceptional future ignored' log)."""
        self._take()

    def discard_result(self) -> "Future":
        """A future<> that resolves when this one does, failing if it fails."""
        return self.then(_discard)

    def then(self, fn: Callable[..., Any]) -> "Future":
        """Run fn(value) (fn() for a None value) once this future has a value.

        The result is a future of fn's result: a Future returned by fn is
        chained, a coroutine becomes a task, any other value becomes ready.
        A failure skips fn and propagates.
        """
        global _depth
        state = self._state
        if state and self._cb is None and _depth < MAX_INLINE_DEPTH and _perf() < _deadline:
            if self._used:
                raise FutureUsedError("future already consumed: a future is single use")
            self._used = True
            value = self._result
            if state == _EXC:
                guard = self._guard
                if guard is not None:
                    guard.exc = None
                    self._guard = None
                return _failed(value)
            _depth += 1
            try:
                r = fn() if value is None else fn(value)
            except BaseException as e:  # noqa: BLE001 - stored in the future
                return _failed(e)
            finally:
                _depth -= 1
            cls = r.__class__
            if cls is Future or cls is Task:
                return r
            if cls is CoroutineType:
                return Task(r)
            if isinstance(r, Future):
                return r
            f = _new_future(Future)
            f._state = _VALUE
            f._result = r
            f._cb = f._cbarg = f._guard = None
            f._used = False
            return f
        out = _new_future(Future)
        out._state = _PENDING
        out._result = out._cb = out._cbarg = out._guard = None
        out._used = False
        if state:                       # ready, but the budget or the depth says: through the queue
            self._attach(_run_then, (fn, out))
        else:                           # _attach's pending case, written out: the common one
            if self._cb is not None or self._used:
                raise FutureUsedError("future already has a continuation: a future is single use")
            self._cb = _run_then
            self._cbarg = (fn, out)
        self._used = True
        return out

    def then_wrapped(self, fn: Callable[..., Any]) -> "Future":
        """Run fn(self) once this future is ready, whether it holds a value or an
        exception. fn owns the future: it may call get() on it once."""
        return self._wrapped(_call_with, fn)

    def _wrapped(self, body: Callable[..., Any], arg: Any) -> "Future":
        """then_wrapped(lambda f: body(f, arg)) without a closure per call: the
        one implementation behind then_wrapped, finally_ and handle_exception (a
        lambda and its cell per call were ~0.2 KB that every connection waiting
        in a do_with or a handle_exception held)."""
        global _depth
        if self._state and self._cb is None and _depth < MAX_INLINE_DEPTH and _perf() < _deadline:
            if self._used:
                raise FutureUsedError("future already consumed: a future is single use")
            self._cb = _owned
            _depth += 1
            try:
                r = body(self, arg)
            except BaseException as e:  # noqa: BLE001
                return _failed(e)
            finally:
                _depth -= 1
                self._cb = None
                self._release_guard()
            return _wrap_result(r)
        out = Future()
        self._attach(_run_then_wrapped, (body, arg, out))
        return out

    def _release_guard(self) -> None:
        # then_wrapped hands the outcome to fn; if fn did not get() it the
        # failure is considered seen (like Seastar: the future was consumed).
        guard = self._guard
        if guard is not None:
            guard.exc = None
            self._guard = None

    def finally_(self, fn: Callable[..., Any]) -> "Future":
        """Run fn() whatever the outcome; keep this future's outcome unless the
        cleanup (or the future it returns) fails."""
        return self._wrapped(_finally_body, fn)

    def handle_exception(self, fn: Callable[..., Any]) -> "Future":
        """On failure, the result of fn(exc) becomes the value; a value passes through."""
        return self._wrapped(_handle_body, (fn, BaseException))

    def handle_exception_type(self, exc_type: Any, fn: Callable[..., Any]) -> "Future":
        """Like handle_exception, only for exceptions of exc_type."""
        return self._wrapped(_handle_body, (fn, exc_type))

    def __await__(self):
        if not self._state or _perf() >= _deadline:
            yield self
        return self.get()

    __iter__ = __await__


def _discard(*_a):
    return None


def _failed(exc: BaseException) -> Future:
    f = Future()
    f._state = _EXC
    f._result = exc
    f._guard = _FailureGuard(exc)
    return f


def _wrap_result(r) -> Future:
    if isinstance(r, Future):
        return r
    if r.__class__ is CoroutineType:
        return Task(r)
    f = Future()
    f._state = _VALUE
    f._result = r
    return f


def _owned(_f):  # placeholder continuation marking a future handed to then_wrapped
    pass


def _forward_cb(src: Future) -> None:
    out = src._cbarg
    src._cbarg = None
    state, result = src._take()
    _settle_tail(out, state, result)


def _settle_tail(out: Future, state: int, result) -> None:
    """Resolve `out` at the very end of a task. If its continuation may run now
    (within the inline depth and the task quota) it runs here instead of being
    queued as one more task: a chain of deferred continuations then costs one
    trip through the run queue rather than one per link. Only task tails use
    this, so resolving a promise from user code still never runs user code."""
    global _depth
    cb = out._cb
    if cb is not None and cb is not _forward_cb and not out._state and _depth < MAX_INLINE_DEPTH \
            and _perf() < _deadline:
        out._state = state
        out._result = result
        _depth += 1
        try:
            cb(out)
        finally:
            _depth -= 1
        return
    if state == _EXC:
        out._set_exception(result)
    else:
        out._set_value(result)


def _forward_tail(r, out: Future) -> None:
    """_forward for task tails (see _settle_tail)."""
    if isinstance(r, Future):
        if r._state and r._cb is None:
            state, result = r._take()
            _settle_tail(out, state, result)
        else:
            r._attach(_forward_cb, out)
    elif r.__class__ is CoroutineType:
        Task(r)._attach(_forward_cb, out)
    else:
        _settle_tail(out, _VALUE, r)


def _forward(r, out: Future) -> None:
    """Resolve out with the outcome of r (a Future, a coroutine or a value)."""
    if isinstance(r, Future):
        if r._state and r._cb is None:
            state, result = r._take()
            if state == _EXC:
                out._set_exception(result)
            else:
                out._set_value(result)
        else:
            r._attach(_forward_cb, out)
    elif r.__class__ is CoroutineType:
        Task(r)._attach(_forward_cb, out)
    else:
        out._set_value(r)


def _run_then(src: Future) -> None:
    fn, out = src._cbarg
    src._cbarg = None
    if src._state == _EXC:
        out._set_exception(src._result)
        return
    value = src._result
    try:
        r = fn() if value is None else fn(value)
    except BaseException as e:  # noqa: BLE001
        out._set_exception(e)
        return
    _forward_tail(r, out)


def _call_with(f: Future, fn):
    return fn(f)


def _run_then_wrapped(src: Future) -> None:
    body, arg, out = src._cbarg
    src._cbarg = None
    src._cb = _owned
    try:
        r = body(src, arg)
    except BaseException as e:  # noqa: BLE001
        out._set_exception(e)
        return
    finally:
        src._cb = None
        src._release_guard()
    _forward_tail(r, out)


def _finally_body(f: Future, fn):
    try:
        r = fn()
    except BaseException as e:  # noqa: BLE001
        f.ignore_ready_future()
        raise e
    if r is None:
        return f
    cleanup = as_future(r)

    def after(c: Future):
        exc = c.get_exception()
        if exc is not None:
            f.ignore_ready_future()
            raise exc
        return f
    return cleanup.then_wrapped(after)


def _handle_body(f: Future, handler):
    fn, exc_type = handler
    state, result = f._state, f._result
    if state == _EXC and isinstance(result, exc_type):
        f.ignore_ready_future()
        return fn(result)
    return f


class Task(Future):
    """A coroutine driven by the reactor; resolves with its return value.

    The first step runs eagerly, inside the constructor, like a Seastar
    coroutine. Awaiting a ready future does not suspend unless the task
    quota is used up, in which case the task yields to the run queue.
    """

    __slots__ = ("_coro",)

    def __init__(self, coro: Any) -> None:
        Future.__init__(self)
        self._coro = coro
        self._step()

    def _step(self, exc: BaseException | None = None) -> None:
        global _depth
        coro = self._coro
        _depth += 1
        try:
            if exc is None:
                y = coro.send(None)
            else:
                y = coro.throw(exc)
        except StopIteration as e:
            self._coro = None
            self._set_value(e.value)
            return
        except BaseException as e:  # noqa: BLE001
            self._coro = None
            self._set_exception(e)
            return
        finally:
            _depth -= 1
        if isinstance(y, Future):
            if y._state and y._cb is None:
                # Yielded for preemption: continue from the run queue.
                _schedule((_task_resume, self))
            else:
                y._attach(_task_wakeup, self)
        else:
            self._step(TypeError(f"a reactor task awaited a foreign awaitable: {y!r}"))

    def __repr__(self) -> str:
        return f"<Task {self._coro!r} {Future.__repr__(self)}>"


def _task_wakeup(f: Future) -> None:
    task = f._cbarg
    f._cbarg = None
    f._cb = None  # the coroutine's __await__ consumes it with get()
    task._step()


def _task_resume(task: Task) -> None:
    task._step()


class Promise:
    """The producer side of a future. Dropping it unresolved fails the future
    with BrokenPromise."""

    __slots__ = ("_future", "_retrieved")

    def __init__(self) -> None:
        self._future = Future()
        self._retrieved = False

    def get_future(self) -> Future:
        if self._retrieved:
            raise FutureError("promise.get_future() called twice")
        self._retrieved = True
        f = self._future
        if f is None:
            raise FutureError("promise already satisfied and its future gone")
        return f

    def set_value(self, value: Any = None) -> None:
        f = self._future
        if f is None or f._state:
            raise FutureError("promise already satisfied")
        f._set_value(value)

    def set_exception(self, exc: BaseException) -> None:
        f = self._future
        if f is None or f._state:
            raise FutureError("promise already satisfied")
        f._set_exception(exc)

    def set_from(self, f: Future) -> None:
        """Resolve with the outcome of another future (consuming it)."""
        _forward(f, self._future)

    def resolved(self) -> bool:
        f = self._future
        return f is None or f._state != _PENDING

    def __del__(self) -> None:
        f = self._future
        if f is not None and not f._state and not _is_finalizing():
            f._set_exception(BrokenPromise())


_new_future = object.__new__


def make_ready_future(value: Any = None) -> Future:
    f = _new_future(Future)
    f._state = _VALUE
    f._result = value
    f._cb = f._cbarg = f._guard = None
    f._used = False
    return f


def make_exception_future(exc: BaseException) -> Future:
    if isinstance(exc, type):
        exc = exc()
    return _failed(exc)


def as_future(x: Any) -> Future:
    """A Future for x: a Future itself, a coroutine as a task, a value as ready."""
    if isinstance(x, Future):
        return x
    if x.__class__ is CoroutineType:
        return Task(x)
    return make_ready_future(x)


def futurize(fn: Callable[..., Any], *args) -> Future:
    """Call fn(*args) and return its outcome as a future (exceptions included)."""
    try:
        r = fn(*args)
    except BaseException as e:  # noqa: BLE001
        return _failed(e)
    return as_future(r)


class _Yield:
    __slots__ = ()

    def __await__(self):
        if _perf() >= _deadline:
            yield make_ready_future()


def maybe_yield() -> Any:
    """`await maybe_yield()`: give the reactor a turn if the task quota is used up."""
    return _Yield()
