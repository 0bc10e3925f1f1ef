"""Accept connections on port 1234 and print who connected (the tutorial's first
server; no reuse_address, so a restart during TIME_WAIT fails with
"bind: Address already in use")."""
import sys

from _main import main
from reactor import app_template, do_with, keep_doing
from netstack.sockets import listen, make_ipv4_address

app = app_template()
app.add_options()("port", int, 1234, "TCP port to listen on")


def f():
    port = app.configuration()["port"]

    def loop(listener):
        def accept_one():
            return listener.accept().then(
                lambda ar: print(f"Accepted connection from {ar.remote_address}", flush=True))
        return keep_doing(accept_one)
    return do_with(listen(make_ipv4_address(port)), loop)


if __name__ == "__main__":
    sys.exit(main(f, app))
