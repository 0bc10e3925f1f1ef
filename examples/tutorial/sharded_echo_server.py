"""The echo server listening on every shard.

echo_server.py runs f() on shard 0 only, as in the tutorial: with several
shards, connections that land on other shards are not served. Here every
shard listens (a `sharded` service started with `invoke_on_all`), so all of
them are: with the posix stack each shard's socket has SO_REUSEPORT and the
kernel spreads the connections. At exit every shard prints how many
connections it served.
"""
import sys

from _main import main
from netstack.sockets import listen, listen_options, make_ipv4_address
from reactor import (Promise, app_template, engine, keep_doing, make_ready_future, repeat, sharded,
                     stop_iteration, this_shard_id)

app = app_template()
app.add_options()("port", int, 1234, "TCP port to listen on")


class EchoService:
    def __init__(self, port):
        self.port = port
        self.connections = 0
        self.listener = None

    def serve(self):
        lo = listen_options(reuse_address=True)
        self.listener = listen(make_ipv4_address(self.port), lo)
        engine().at_exit(self.report)
        keep_doing(lambda: self.listener.accept().then(self.handle)).handle_exception(lambda e: None)

    def handle(self, ar):
        self.connections += 1
        s = ar.connection
        inp, out = s.input(), s.output()

        def once():
            return inp.read().then(
                lambda buf: out.write(buf).then(lambda: stop_iteration.no) if buf
                else make_ready_future(stop_iteration.yes))
        repeat(once).then(out.close).finally_(lambda: s).handle_exception(lambda e: None)

    def report(self):
        print(f"shard {this_shard_id()}: {self.connections} connections", flush=True)

    def stop(self):
        if self.listener is not None:
            self.listener.abort_accept()


# Never resolved: the application runs until SIGINT/SIGTERM stops it. (Kept at
# module level: a promise that is dropped breaks its future.)
forever = Promise()


def f():
    svc = sharded(EchoService)
    return svc.start(app.configuration()["port"]).then(
        lambda: svc.invoke_on_all(EchoService.serve)).then(forever.get_future)


if __name__ == "__main__":
    sys.exit(main(f, app))
