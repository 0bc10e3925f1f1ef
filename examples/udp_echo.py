"""A UDP echo server (RFC 862 over UDP): every datagram goes back to its sender."""
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from netstack.sockets import make_ipv4_address, make_udp_channel  # noqa: E402
from reactor import app_template, keep_doing  # noqa: E402

app = app_template()
app.add_options()("port", int, 1234, "UDP port")


def f():
    ch = make_udp_channel(make_ipv4_address(app.configuration()["port"]))

    def once():
        return ch.receive().then(lambda dg: ch.send(dg.get_src(), dg.get_data()))
    return keep_doing(once)


if __name__ == "__main__":
    try:
        sys.exit(app.run(sys.argv, f))
    except RuntimeError as e:
        print(f"Couldn't start application: {e}", file=sys.stderr)
        sys.exit(1)
