"""Answer every connection with a canned response, then close it."""
import sys

from _main import main
from reactor import app_template, do_with, keep_doing
from netstack.sockets import listen, listen_options, make_ipv4_address

canned_response = "Seastar is the future!\n"

app = app_template()
app.add_options()("port", int, 1234, "TCP port to listen on")


def respond(ar):
    s = ar.connection
    out = s.output()
    return do_with(s, out, lambda s, out: out.write(canned_response).then(out.close))


def f():
    lo = listen_options()
    lo.reuse_address = True

    def loop(listener):
        return keep_doing(lambda: listener.accept().then(respond))
    return do_with(listen(make_ipv4_address(app.configuration()["port"]), lo), loop)


if __name__ == "__main__":
    sys.exit(main(f, app))
