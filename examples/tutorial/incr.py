"""Capturing state in a continuation: i is captured by value."""
import sys

from _main import main
from reactor import sleep


def incr(i):
    return sleep(0.010).then(lambda: i + 1)


def f():
    return incr(3).then(lambda val: print(f"Got {val}"))


if __name__ == "__main__":
    sys.exit(main(f))
