"""A semaphore limiting parallelism: 12 jobs, at most 3 at a time.

with_semaphore(sem, units, fn) runs fn once it holds the units and gives them
back when fn's future resolves, whatever its outcome; get_units() hands the
units over as an object that returns them when released (or dropped).
"""
import sys

from _main import main
from reactor import get_units, parallel_for_each, semaphore, sleep, with_semaphore

LIMIT = 3
running = {"now": 0, "max": 0}


def job(i):
    running["now"] += 1
    running["max"] = max(running["max"], running["now"])

    def done():
        running["now"] -= 1
    return sleep(0.01 * (1 + i % 3)).then(done)


def f():
    sem = semaphore(LIMIT)

    def with_units():
        async def big_job():
            units = await get_units(sem, 2)       # two of the three units
            print(f"get_units: holding {units.count()}, {sem.available_units()} left")
            units.return_all()
            print(f"returned: {sem.available_units()} available")
        return big_job()

    return parallel_for_each(range(12), lambda i: with_semaphore(sem, 1, lambda: job(i))).then(
        lambda: print(f"12 jobs done, at most {running['max']} at once (limit {LIMIT})")).then(with_units)


if __name__ == "__main__":
    sys.exit(main(f))
