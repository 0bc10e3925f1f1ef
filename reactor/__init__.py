"""reactor: futures, continuations, the event loop, shards and app_template."""

from .future import (BrokenPromise, Future, FutureError, FutureUsedError, Promise, Task,
                     as_future, futurize, make_exception_future, make_ready_future,
                     maybe_yield, need_preempt)
from .idioms import (WhenAnyResult, do_for_each, do_until, do_with, keep_doing, map_reduce,
                     max_concurrent_for_each, parallel_for_each, repeat, repeat_until_value,
                     stop_iteration, when_all, when_all_succeed, when_any)
from .loop import PollableFd, Reactor, ReactorStopped, engine
from .sync import (AbortRequestedError, BrokenConditionVariable, BrokenPipe, BrokenSemaphore,
                   GateClosedError, SemaphoreTimedOut, TimedOutError, abort_source,
                   condition_variable, gate, get_units, pipe, pipe_reader, pipe_writer, queue,
                   semaphore, semaphore_units, shared_promise, sleep_abortable, with_gate,
                   with_semaphore, with_timeout)
from .time import ManualClock, MonotonicClock, Timer, sleep, to_seconds
from .shards import ShardCrashed, sharded, smp, this_shard_id
from .app import app_template

__all__ = [
    "Future", "Promise", "Task", "FutureError", "FutureUsedError", "BrokenPromise",
    "make_ready_future", "make_exception_future", "as_future", "futurize", "need_preempt",
    "maybe_yield",
    "stop_iteration", "repeat", "repeat_until_value", "keep_doing", "do_until", "do_for_each",
    "parallel_for_each", "max_concurrent_for_each", "when_all", "when_all_succeed", "when_any",
    "WhenAnyResult", "map_reduce", "do_with",
    "Reactor", "ReactorStopped", "engine", "PollableFd",
    "semaphore", "semaphore_units", "get_units", "with_semaphore", "BrokenSemaphore",
    "SemaphoreTimedOut", "gate", "with_gate", "GateClosedError", "condition_variable",
    "BrokenConditionVariable", "queue", "pipe", "pipe_reader", "pipe_writer", "BrokenPipe",
    "shared_promise", "abort_source", "AbortRequestedError", "with_timeout", "TimedOutError",
    "sleep_abortable",
    "ManualClock", "MonotonicClock", "Timer", "sleep", "to_seconds",
    "app_template", "smp", "this_shard_id", "sharded", "ShardCrashed",
]

