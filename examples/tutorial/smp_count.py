"""Print smp.count; start-up errors are caught and reported (tutorial, "Seastar threads")."""
import sys

from _main import main
from reactor import make_ready_future, smp


def f():
    print(smp.count)
    return make_ready_future()


if __name__ == "__main__":
    sys.exit(main(f))
