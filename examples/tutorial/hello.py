"""The simplest program: print and return a ready future."""
import sys

import _main  # noqa: F401  (puts the project on sys.path)
from reactor import app_template, make_ready_future


def main() -> int:
    app = app_template()

    def f():
        print("Hello world")
        return make_ready_future()
    return app.run(sys.argv, f)


if __name__ == "__main__":
    sys.exit(main())
