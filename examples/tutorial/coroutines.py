"""Coroutines end to end, beside the continuation style: the same computation
(fetch two values concurrently, add them, retry a flaky step) written both ways,
on the same futures."""
import sys

from _main import main
from reactor import make_ready_future, sleep, when_all_succeed

attempts = {"n": 0}


def fetch(value, seconds):
    return sleep(seconds).then(lambda: value)


def flaky():
    attempts["n"] += 1
    if attempts["n"] % 2:
        raise ConnectionError("try again")
    return make_ready_future(10)


# ---- continuations ----
def with_continuations():
    def retry_once(e):
        return flaky()
    return when_all_succeed(fetch(1, 0.01), fetch(2, 0.02)).then(
        lambda vals: make_ready_future(sum(vals)).then(
            lambda s: make_ready_future(None).then(flaky).handle_exception(retry_once).then(lambda x: s + x)))


# ---- coroutines ----
async def with_coroutines():
    a, b = await when_all_succeed(fetch(1, 0.01), fetch(2, 0.02))
    try:
        x = await flaky()
    except ConnectionError:
        x = await flaky()
    return a + b + x


def f():
    async def both():
        c = await with_continuations()
        print(f"continuations: {c}")
        k = await with_coroutines()
        print(f"coroutines: {k}")
        print("same:", c == k)
    return both()


if __name__ == "__main__":
    sys.exit(main(f))
