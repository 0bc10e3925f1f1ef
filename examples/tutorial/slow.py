"""A future<int> that becomes ready after 100 ms."""
import sys

from _main import main
from reactor import sleep


def slow():
    return sleep(0.100).then(lambda: 3)


def f():
    return slow().then(lambda val: print(f"Got {val}"))


if __name__ == "__main__":
    sys.exit(main(f))
