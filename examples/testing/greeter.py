"""A small line server to show how to test an application on this stack.

    python examples/testing/greeter.py [--port 7000] [--network-stack native ...]

Each line "HELLO <name>" is answered "hello, <name>!"; "COUNT" with how many
greetings this connection made; "QUIT" (or EOF) closes the connection; any
other line gets "error: unknown command". Written against the socket API only,
so it runs on either stack -- and in the tests of examples/testing/, on the
native stack in-process.
"""

import sys

from reactor import app_template, keep_doing
from netstack.sockets.api import listen, listen_options, make_ipv4_address


def answer(line: bytes, state: dict):
    """The protocol, as a pure function: (reply or None, keep going)."""
    words = line.strip().split(b" ", 1)
    cmd = words[0].upper()
    if cmd == b"HELLO" and len(words) == 2 and words[1]:
        state["greeted"] = state.get("greeted", 0) + 1
        return b"hello, " + words[1] + b"!\n", True
    if cmd == b"COUNT":
        return str(state.get("greeted", 0)).encode() + b"\n", True
    if cmd == b"QUIT":
        return b"bye\n", False
    return b"error: unknown command\n", True


async def handle(conn) -> None:
    inp, out = conn.input(), conn.output()
    state: dict = {}
    buf = b""
    try:
        while True:
            data = await inp.read()
            if not data:
                break
            buf += bytes(data)
            going = True
            while going and b"\n" in buf:
                line, buf = buf.split(b"\n", 1)
                reply, going = answer(line, state)
                await out.write(reply)
            await out.flush()
            if not going:
                break
    finally:
        await out.close()


def serve(port: int = 7000):
    """Start the server (the function the tests hand to the fixtures)."""
    lo = listen_options()
    lo.reuse_address = True
    srv = listen(make_ipv4_address(port), lo)

    def one():
        return srv.accept().then(lambda ar: handle_bg(ar.connection))

    def handle_bg(conn):
        from reactor import futurize
        futurize(handle, conn).handle_exception(lambda e: None)   # served beside the next accept
    return keep_doing(one)


def main() -> int:
    app = app_template()
    app.add_options()("port", int, 7000, "TCP port to listen on")
    return app.run(sys.argv, lambda: serve(app.configuration()["port"]))


if __name__ == "__main__":
    sys.exit(main())
