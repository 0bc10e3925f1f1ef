"""The reactor: one event loop per shard.

Each turn of the loop:

1. runs the run queue (continuations of futures that became ready) until it
   is empty or the task quota (``--task-quota-ms``, 0.5 ms by default) is
   used up; code that loops over ready futures (`repeat`, awaiting ready
   futures) checks the same quota through `need_preempt()` and yields;
2. calls every registered poller (network devices, shard mailboxes); a
   poller returns True when it found work;
3. expires due timers;
4. if nothing is runnable: busy-polls (``--poll-mode``, or for
   ``--idle-poll-time-us`` before sleeping), then sleeps in ``epoll_wait``
   until the next timer deadline or fd event. With a `ManualClock` in
   autojump mode the clock jumps to the next deadline instead of sleeping.

File descriptors are registered edge-triggered once (`PollableFd`); users
try the operation first and wait for readiness only after EAGAIN, which
saves an epoll round per operation on busy sockets.
"""

from __future__ import annotations

from typing import Any, Callable

import errno
import logging
import select
import signal
import socket
from time import perf_counter as _perf

from . import future as _fut
from .future import Future, as_future, futurize
from .time import MonotonicClock, TimerHeap

__all__ = ["Reactor", "engine", "PollableFd", "ReactorStopped"]

log = logging.getLogger("reactor")

_current: "Reactor | None" = None

_EPOLLIN = select.EPOLLIN
_EPOLLOUT = select.EPOLLOUT
_EPOLLERRS = select.EPOLLERR | select.EPOLLHUP | select.EPOLLRDHUP


class ReactorStopped(RuntimeError):
    """The reactor was stopped (signal or stop()) before the awaited future resolved."""


def engine() -> "Reactor":
    """This shard's reactor (created on first use if none exists)."""
    r = _current
    if r is None:
        r = Reactor()
    return r


class PollableFd:
    """An fd registered edge-triggered with the reactor's epoll.

    `readable()` / `writable()` return a ready future while the fd may be
    ready (speculation); after an operation hits EAGAIN call
    `clear_readable()` / `clear_writable()` and the next `readable()` waits
    for a real edge.
    """

    __slots__ = ("fd", "_reactor", "_rready", "_wready", "_rwait", "_wwait", "_closed", "_hup")

    def __init__(self, reactor: "Reactor", fd: int) -> None:
        self.fd = fd
        self._reactor = reactor
        self._rready = True
        self._wready = True
        self._rwait: Any = None     # a Future, or an on_readable() callback
        self._wwait: Future | None = None
        self._closed = False
        self._hup = False   # the peer hung up: reads never block again (EOF or error pending)

    def readable(self) -> Future:
        if self._rready:
            return _fut.make_ready_future()
        if self._rwait is not None:
            raise RuntimeError("already waiting for readability on this fd")
        f = self._rwait = Future()
        return f

    def writable(self) -> Future:
        if self._wready:
            return _fut.make_ready_future()
        if self._wwait is not None:
            raise RuntimeError("already waiting for writability on this fd")
        f = self._wwait = Future()
        return f

    def on_readable(self, cb: Callable[..., Any]) -> None:
        """Call cb(None) once, from the reactor's fd polling, when the fd becomes
        readable (cb(exc) if it is closed first). For I/O objects that read and
        resolve their own future in one step, saving readable()'s future and the
        continuation hop; cb must not run user code (resolve futures instead)."""
        if self._rwait is not None:
            raise RuntimeError("already waiting for readability on this fd")
        self._rwait = cb

    def clear_readable(self) -> None:
        if not self._hup:
            self._rready = False

    def clear_writable(self) -> None:
        self._wready = False

    def _on_event(self, ev: int) -> None:
        if ev & _EPOLLERRS:
            self._hup = True
        if ev & (_EPOLLIN | _EPOLLERRS):
            self._rready = True
            w = self._rwait
            if w is not None:
                self._rwait = None
                if w.__class__ is Future:
                    w._set_value(None)
                else:
                    w(None)          # an on_readable() callback
        if ev & (_EPOLLOUT | _EPOLLERRS):
            self._wready = True
            w = self._wwait
            if w is not None:
                self._wwait = None
                w._set_value(None)

    def abort(self, exc: BaseException) -> None:
        """Fail pending waits (used when the fd is closed under a waiter)."""
        for name in ("_rwait", "_wwait"):
            w = getattr(self, name)
            if w is not None:
                setattr(self, name, None)
                if isinstance(w, Future):
                    w._set_exception(exc)
                else:
                    w(exc)

    def close(self) -> None:
        """Unregister (the fd itself is closed by its owner)."""
        if not self._closed:
            self._closed = True
            self._reactor._unregister_fd(self)
            self.abort(ConnectionAbortedError(errno.ECONNABORTED, "fd closed while waiting"))


class Reactor:
    def __init__(self, clock: Any = None, task_quota: float = 0.0005, poll_mode: bool = False,
                 idle_poll_time: float = 0.0) -> None:
        global _current
        self._clock: Any = clock or MonotonicClock()
        self.now = self._clock.now
        self.task_quota = float(task_quota)
        self.poll_mode = bool(poll_mode)
        self.idle_poll_time = float(idle_poll_time)
        self._timers = TimerHeap()
        self._pollers: list = []
        self._epoll = select.epoll()
        self._fds: dict[int, PollableFd] = {}
        self._stop_requested = False
        self._exit_code = 0
        self.config: dict = {}
        self.network_stack: Any = None    # the socket API's stack on this shard (netstack sets it)
        self._at_exit: list = []
        self._stats = {"tasks": 0, "turns": 0, "sleeps": 0, "timers_fired": 0, "preemptions": 0}
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self._epoll.register(self._wake_r.fileno(), _EPOLLIN)
        _fut._queue.clear()
        _current = self

    # ---- registration -----------------------------------------------------
    def register_fd(self, fd: int) -> PollableFd:
        if fd in self._fds:
            raise RuntimeError(f"fd {fd} already registered")
        p = PollableFd(self, fd)
        self._epoll.register(fd, _EPOLLIN | _EPOLLOUT | _EPOLLERRS | select.EPOLLET)
        self._fds[fd] = p
        return p

    def _unregister_fd(self, p: PollableFd) -> None:
        if self._fds.get(p.fd) is p:
            del self._fds[p.fd]
            try:
                self._epoll.unregister(p.fd)
            except (OSError, ValueError):
                pass

    def add_poller(self, poller: Any) -> None:
        """poller.poll() is called every turn; returns True if it did work.
        Optional poller.idle_timeout() -> seconds or None bounds the sleep."""
        self._pollers.append(poller)

    def remove_poller(self, poller: Any) -> None:
        if poller in self._pollers:
            self._pollers.remove(poller)

    def at_exit(self, fn: Callable[..., Any]) -> None:
        """Run fn() (may return a future) when the application stops."""
        self._at_exit.append(fn)

    def wakeup(self) -> None:
        """Wake the loop from epoll_wait (safe from signal handlers)."""
        try:
            self._wake_w.send(b"\0")
        except (BlockingIOError, OSError):
            pass

    def handle_signal(self, signum: int, fn: Callable[..., Any]) -> None:
        """Run fn() on the reactor when signum arrives."""
        def handler(_s, _frame):
            _fut._schedule((_call0, fn))
            self.wakeup()
        signal.signal(signum, handler)

    def stop(self, exit_code: int = 0) -> None:
        self._exit_code = exit_code
        self._stop_requested = True
        self.wakeup()

    def statistics(self) -> dict:
        return dict(self._stats, fds=len(self._fds), pollers=len(self._pollers),
                    timers=len(self._timers))

    # ---- running ----------------------------------------------------------
    def run(self, fn_or_future: Any = None) -> Any:
        """Run until the future (or the outcome of calling fn / the coroutine)
        resolves; return its value or raise its exception. Raises
        ReactorStopped if stop() came first."""
        global _current
        _current = self
        self._stop_requested = False
        _fut._set_deadline(_perf() + self.task_quota)
        if fn_or_future is None:
            done = Future()
        elif isinstance(fn_or_future, Future):
            done = fn_or_future
        elif callable(fn_or_future):
            done = futurize(fn_or_future)
        else:
            done = as_future(fn_or_future)
        try:
            self._run_until(done)
        finally:
            _fut._set_deadline(float("inf"))
        if not done._state:
            raise ReactorStopped("reactor stopped")
        return done.get()

    def run_until_idle(self) -> None:
        """Run until nothing is runnable and no timer is due (never sleeps)."""
        q = _fut._queue
        try:
            while True:
                self._turn(False)
                nd = self._timers.next_deadline()
                if not q and (nd is None or nd > self.now()):
                    return
        finally:
            _fut._set_deadline(float("inf"))

    def _run_until(self, done: Future) -> None:
        while not done._state and not self._stop_requested:
            self._turn(True, done)

    def _turn(self, block: bool, done: Future | None = None) -> None:
        q = _fut._queue
        popleft = q.popleft
        stats = self._stats
        stats["turns"] += 1
        deadline = _perf() + self.task_quota
        _fut._deadline = deadline
        n = 0
        if q:
            try:
                while q:
                    cb, arg = popleft()
                    cb(arg)
                    n += 1
                    if _perf() >= deadline:
                        stats["preemptions"] += 1
                        break
            except BaseException:  # noqa: BLE001 - internal callbacks must not kill the loop
                log.exception("internal error in a reactor task")
        stats["tasks"] += n
        _fut._deadline = _perf() + self.task_quota
        work = False
        for p in self._pollers:
            if p.poll():
                work = True
        now = self.now()
        stats["timers_fired"] += self._timers.expire(now)
        if q or work or not block or self._stop_requested or (done is not None and done._state):
            self._poll_fds(0)
            return
        # Nothing runnable: spin for a while, then sleep until the next event.
        if self.poll_mode or self.idle_poll_time > 0:
            spin_until = float("inf") if self.poll_mode else _perf() + self.idle_poll_time
            while _perf() < spin_until:
                if self._poll_fds(0) or q:
                    return
                for p in self._pollers:
                    if p.poll():
                        return
                nd = self._timers.next_deadline()
                if nd is not None and nd <= self.now():
                    return
                if self._stop_requested:
                    return
        nd = self._timers.next_deadline()
        for p in self._pollers:
            it = getattr(p, "idle_timeout", None)
            if it is not None:
                t = it()
                if t is not None:
                    pd = self.now() + t
                    nd = pd if nd is None else min(nd, pd)
        if nd is None:
            timeout = -1.0
        else:
            timeout = max(0.0, nd - self.now())
        if self._clock.manual:
            if self._poll_fds(0) or q:
                return
            if nd is not None and self._clock.autojump:
                self._clock.jump_to(nd)
                return
            if nd is not None and nd <= self.now():
                return
            if not self._fds and not self._pollers and nd is None:
                raise RuntimeError("deadlock: nothing runnable, no timers, no fds (manual clock)")
            timeout = 0.001  # manual clock not moving: wait for fds briefly
        stats["sleeps"] += 1
        self._poll_fds(timeout)

    def _poll_fds(self, timeout: float) -> int:
        try:
            events = self._epoll.poll(timeout)
        except InterruptedError:
            return 0
        fds = self._fds
        wake = self._wake_r.fileno()
        for fd, ev in events:
            if fd == wake:
                try:
                    while self._wake_r.recv(4096):
                        pass
                except (BlockingIOError, OSError):
                    pass
                continue
            p = fds.get(fd)
            if p is not None:
                p._on_event(ev)
        return len(events)

    def close(self) -> None:
        global _current
        self._epoll.close()
        self._wake_r.close()
        self._wake_w.close()
        if _current is self:
            _current = None

    def run_exit_hooks(self) -> None:
        hooks, self._at_exit = self._at_exit[::-1], []
        self._stop_requested = False
        for h in hooks:
            try:
                self._run_until(futurize(h))
            except Exception:  # noqa: BLE001
                log.exception("at_exit hook failed")


def _call0(fn) -> None:
    try:
        r = fn()
        if isinstance(r, Future):
            r.ignore_ready_future() if r.available() else None
    except Exception:  # noqa: BLE001
        log.exception("signal handler failed")
