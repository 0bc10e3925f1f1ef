"""The same consumer as slow.py, fed a future that is already ready."""
import sys

from _main import main
from reactor import make_ready_future


def fast():
    return make_ready_future(3)


def f():
    return fast().then(lambda val: print(f"Got {val}"))


if __name__ == "__main__":
    sys.exit(main(f))
