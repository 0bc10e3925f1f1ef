"""sleep(1s).then(print "Done.")"""
import sys
from datetime import timedelta

from _main import main
from reactor import sleep


def f():
    print("Sleeping... ", end="", flush=True)
    return sleep(timedelta(seconds=1)).then(lambda: print("Done."))


if __name__ == "__main__":
    sys.exit(main(f))
