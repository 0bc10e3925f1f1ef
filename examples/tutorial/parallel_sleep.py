"""Three sleeps in parallel, each with its own continuation."""
import sys

from _main import main
from reactor import sleep


def f():
    print("Sleeping... ", end="", flush=True)
    sleep(0.200).then(lambda: print("200ms ", end="", flush=True))
    sleep(0.100).then(lambda: print("100ms ", end="", flush=True))
    return sleep(1).then(lambda: print("Done."))


if __name__ == "__main__":
    sys.exit(main(f))
