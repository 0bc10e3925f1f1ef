"""when_all and when_all_succeed with mixed results.

when_all waits for every future and hands them all back, values and failures
alike (each is then asked for its outcome); when_all_succeed gives the values,
or fails with the first failure once all are done.
"""
import sys

from _main import main
from reactor import make_exception_future, make_ready_future, sleep, when_all, when_all_succeed


def slow(value, seconds):
    return sleep(seconds).then(lambda: value)


def failing(seconds):
    def boom():
        raise ValueError("the second one failed")
    return sleep(seconds).then(boom)


def f():
    def show_all(futures):
        for i, fut in enumerate(futures):
            if fut.failed():
                print(f"when_all: future {i} failed: {fut.get_exception()}")
            else:
                print(f"when_all: future {i} = {fut.get()}")

    def succeed_all():
        return when_all_succeed(slow(1, 0.02), make_ready_future(2), slow(3, 0.01)).then(
            lambda values: print(f"when_all_succeed: {values}"))

    def succeed_one_fails():
        return when_all_succeed(slow(1, 0.01), failing(0.02), make_exception_future(KeyError("unused"))) \
            .then(lambda values: print("not reached", values)) \
            .handle_exception(lambda e: print(f"when_all_succeed failed: {type(e).__name__}: {e}"))

    return when_all(slow("a", 0.01), failing(0.02), make_ready_future("c")).then(show_all) \
        .then(succeed_all).then(succeed_one_fails)


if __name__ == "__main__":
    sys.exit(main(f))
