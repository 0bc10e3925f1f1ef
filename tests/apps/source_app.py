"""A source server: every connection gets 64 KiB chunks until the peer goes
away; the way each one ended is printed ("source ended: <exception>")."""
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))

from netstack.sockets import listen, listen_options, make_ipv4_address  # noqa: E402
from reactor import app_template, do_with, keep_doing, repeat, stop_iteration  # noqa: E402

app = app_template()
app.add_options()("port", int, 1236, "TCP port")
CHUNK = bytes(range(256)) * 256


def source(conn):
    out = conn.output(65536)

    def ended(e):
        print(f"source ended: {type(e).__name__}", flush=True)
    return repeat(lambda: out.write(CHUNK).then(lambda: stop_iteration.no)).handle_exception(ended)


def f():
    lo = listen_options()
    lo.reuse_address = True
    return do_with(listen(make_ipv4_address(app.configuration()["port"]), lo),
                   lambda lst: keep_doing(lambda: lst.accept().then(lambda ar: source(ar.connection) and None)))


if __name__ == "__main__":
    sys.exit(app.run(sys.argv, f))
