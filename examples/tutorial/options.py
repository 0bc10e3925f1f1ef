"""User-defined options: values with defaults, a switch, a short alias, a boolean.

    python options.py --name ana -n 3 --shout
"""
import sys

from _main import main
from reactor import app_template, make_ready_future

app = app_template()
app.add_options()("name", str, "world", "who to greet")("times,n", int, 1, "how many times")(
    "shout", "upper-case the greeting")("punctuation", bool, True, "end with an exclamation mark")


def f():
    cfg = app.configuration()
    text = f"hello, {cfg['name']}" + ("!" if cfg["punctuation"] else "")
    for _ in range(cfg["times"]):
        print(text.upper() if cfg["shout"] else text)
    return make_ready_future()


if __name__ == "__main__":
    sys.exit(main(f, app))
