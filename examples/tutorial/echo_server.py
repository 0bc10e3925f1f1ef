"""The RFC 862 echo server: everything a client sends comes back, until it closes.

As in the tutorial, f() runs on shard 0 only: with the native stack and more
than one shard, only the connections hashed to shard 0 are served (see
sharded_echo_server.py for the way to serve them all)."""
import sys

from _main import main
from reactor import app_template, do_with, keep_doing, make_ready_future, repeat, stop_iteration
from netstack.sockets import listen, listen_options, make_ipv4_address

app = app_template()
app.add_options()("port", int, 1234, "TCP port to listen on")


def handle_connection(s, a):
    out = s.output()
    inp = s.input()

    def body(s, out, inp):
        def once():
            def got(buf):
                if buf:
                    return out.write(buf).then(lambda: stop_iteration.no)
                return make_ready_future(stop_iteration.yes)
            return inp.read().then(got)
        return repeat(once).then(out.close)
    return do_with(s, out, inp, body)


def f():
    lo = listen_options()
    lo.reuse_address = True

    def loop(listener):
        def serve(ar):
            # The connection's future is not returned: it is served in parallel
            # with the next accept(). A failed connection (the client reset it)
            # is fine, so its exception is dropped on purpose.
            handle_connection(ar.connection, ar.remote_address).handle_exception(lambda e: None)

        return keep_doing(lambda: listener.accept().then(serve))
    return do_with(listen(make_ipv4_address(app.configuration()["port"]), lo), loop)


if __name__ == "__main__":
    sys.exit(main(f, app))
