"""Every shard binds UDP --port and answers each datagram with
"shard <id> <length>", so a test can see which shard a flow reached."""
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))

from netstack.sockets import make_ipv4_address, make_udp_channel  # noqa: E402
from reactor import Promise, app_template, keep_doing, smp, this_shard_id  # noqa: E402

app = app_template()
app.add_options()("port", int, 7777, "UDP port")
forever = Promise()
_channels = []


def serve(port):
    ch = make_udp_channel(make_ipv4_address(port))
    _channels.append(ch)

    def once():
        return ch.receive().then(lambda dg: ch.send(
            dg.get_src(), b"shard %d %d" % (this_shard_id(), len(dg.get_data()))))
    keep_doing(once).handle_exception(lambda e: None)


def f():
    port = app.configuration()["port"]
    return smp.invoke_on_all(serve, port).then(lambda: print("ready", flush=True)).then(forever.get_future)


if __name__ == "__main__":
    sys.exit(app.run(sys.argv, f))
