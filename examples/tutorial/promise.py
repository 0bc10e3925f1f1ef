"""Promise objects: a promise resolved by hand. print_every() writes a message
every interval and completes its future after `count` messages."""
import sys

from _main import main
from reactor import Promise, Timer


def print_every(interval, count):
    p = Promise()
    sent = [0]
    t = Timer()

    def tick():
        sent[0] += 1
        print(f"message {sent[0]}", flush=True)
        if sent[0] == count:
            t.cancel()
            p.set_value(sent[0])
    t.set_callback(tick)
    t.arm_periodic(interval)
    return p.get_future()


def f():
    return print_every(0.1, 10).then(lambda n: print(f"Done after {n} messages"))


if __name__ == "__main__":
    sys.exit(main(f))
