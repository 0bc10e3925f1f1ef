"""Handling exceptions: then() skips, then_wrapped() inspects, finally_() always
runs, handle_exception() recovers; the same in async/await style."""
import sys

from _main import main
from reactor import make_ready_future, sleep


def line1():
    return make_ready_future()


def line2():
    raise ValueError("line2 failed")


def line3():
    print("line3 (never printed)")


def chain():
    # An exception skips the following continuations, like straight-line code.
    return line1().then(line2).then(line3)


def inspect(fut):
    if fut.failed():
        print(f"then_wrapped saw an exception: {fut.get_exception()}")
        return "recovered"
    return fut.get()


async def coroutine_style():
    try:
        await sleep(0.001).then(line2)
    except ValueError as e:
        print(f"await raised: {e}")
    finally:
        print("finally (coroutine)")


def f():
    return (chain()
            .then_wrapped(inspect)
            .then(lambda v: print(f"then_wrapped returned {v}"))
            .then(lambda: chain())
            .finally_(lambda: print("finally_ ran"))
            .handle_exception(lambda e: print(f"handle_exception caught: {e}"))
            .then(coroutine_style))


if __name__ == "__main__":
    sys.exit(main(f))
