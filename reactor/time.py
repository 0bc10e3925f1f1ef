"""Clocks, timers and sleep.

The reactor reads time only through its clock object, so tests can run
against a `ManualClock` (advanced by hand, or auto-jumping to the next timer
when the reactor would otherwise sleep) and get fully deterministic timing.
"""

from __future__ import annotations

from typing import Any, Callable

import datetime
import heapq
import itertools
import time as _time

from .future import Future, make_exception_future

__all__ = ["MonotonicClock", "ManualClock", "Timer", "TimerHeap", "sleep", "to_seconds"]


def to_seconds(d: Any) -> float:
    """Seconds as float from a number or a datetime.timedelta."""
    if isinstance(d, datetime.timedelta):
        return d.total_seconds()
    if isinstance(d, (int, float)):
        return float(d)
    raise TypeError(f"duration must be seconds (int/float) or datetime.timedelta, not {type(d).__name__}")


class MonotonicClock:
    """The real clock (time.monotonic)."""

    now = staticmethod(_time.monotonic)
    manual = False


class ManualClock:
    """A clock that moves only when told to.

    With autojump=True the reactor, instead of sleeping until the next timer,
    jumps the clock to that timer's deadline (trio's MockClock idea): tests of
    hour-long timeouts finish instantly and deterministically.
    """

    manual = True

    def __init__(self, start: float = 0.0, autojump: bool = False) -> None:
        self._now = float(start)
        self.autojump = autojump

    def now(self) -> float:
        return self._now

    def advance(self, seconds: float) -> None:
        s = to_seconds(seconds)
        if s < 0:
            raise ValueError("a clock cannot go backwards")
        self._now += s

    def jump_to(self, t: float) -> None:
        if t > self._now:
            self._now = t


class TimerHeap:
    """A heap of [deadline, seq, callback, arg] entries; cancelled entries have
    callback None and are skipped when they reach the top."""

    __slots__ = ("_heap", "_seq")

    def __init__(self) -> None:
        self._heap: list = []
        self._seq = itertools.count()

    def add(self, deadline: float, callback, arg) -> list:
        entry = [deadline, next(self._seq), callback, arg]
        heapq.heappush(self._heap, entry)
        return entry

    def next_deadline(self) -> float | None:
        heap = self._heap
        while heap and heap[0][2] is None:
            heapq.heappop(heap)
        return heap[0][0] if heap else None

    def expire(self, now: float) -> int:
        """Run the callbacks of every entry due at `now`. Returns how many ran."""
        heap = self._heap
        n = 0
        while heap and heap[0][0] <= now:
            entry = heapq.heappop(heap)
            cb = entry[2]
            if cb is not None:
                entry[2] = None
                cb(entry[3])
                n += 1
        return n

    def __len__(self) -> int:
        return sum(1 for e in self._heap if e[2] is not None)


class Timer:
    """A re-armable timer calling `callback()` on the reactor at its deadline."""

    __slots__ = ("_callback", "_entry", "_period", "_reactor")

    def __init__(self, callback: Callable[..., Any] | None = None, reactor: Any = None) -> None:
        from .loop import engine
        self._callback = callback
        self._entry: Any = None
        self._period: Any = None
        self._reactor = reactor or engine()

    def set_callback(self, callback: Callable[..., Any]) -> None:
        self._callback = callback

    def arm(self, delay: float | None = None, *, at: float | None = None, period: float | None = None) -> None:
        """Arm to fire after `delay` seconds (or at absolute reactor time `at`);
        with `period`, fire again every `period` seconds."""
        if self._entry is not None:
            raise RuntimeError("timer already armed")
        r = self._reactor
        deadline = at if at is not None else r.now() + to_seconds(delay)
        self._period = to_seconds(period) if period is not None else None
        self._entry = r._timers.add(deadline, Timer._fire, self)

    def arm_periodic(self, period: float) -> None:
        self.arm(period, period=period)

    def rearm(self, delay: float | None = None, *, at: float | None = None, period: float | None = None) -> None:
        self.cancel()
        self.arm(delay, at=at, period=period)

    def cancel(self) -> bool:
        e = self._entry
        if e is None:
            return False
        self._entry = None
        self._period = None
        e[2] = None
        return True

    def armed(self) -> bool:
        return self._entry is not None

    def get_timeout(self) -> float | None:
        return self._entry[0] if self._entry is not None else None

    def _fire(self) -> None:
        entry = self._entry
        self._entry = None
        if self._period is not None:
            self._entry = self._reactor._timers.add(entry[0] + self._period, Timer._fire, self)
        cb = self._callback
        if cb is not None:
            try:
                cb()
            except Exception:  # noqa: BLE001
                import logging
                logging.getLogger("reactor").exception("timer callback failed")


def sleep(duration: float) -> Future:
    """A future<> that resolves after `duration` (seconds or timedelta)."""
    from .loop import engine
    try:
        s = to_seconds(duration)
    except TypeError as e:
        return make_exception_future(e)
    r = engine()
    f = Future()
    r._timers.add(r.now() + s, _wake, f)
    return f


def _wake(f: Future) -> None:
    if not f._state:
        f._set_value(None)
