"""Record session.pcap: a client greeting the server, over the in-memory link.

    python examples/testing/record_session.py

The capture the replay test plays back: made once, kept in the repository, so
a change in what the server answers (or how TCP carries it) shows up as a
difference from this recording.
"""

import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from greeter import serve  # noqa: E402
from netstack.testing.apps import AppLink  # noqa: E402

LINES = [b"HELLO alice\nHELLO bob\n", b"COUNT\n", b"QUIT\n"]


async def client(link):
    conn = await link.connect(7000)
    out, inp = conn.output(), conn.input()
    got = b""
    for chunk in LINES:
        await out.write(chunk)
        await out.flush()
        got += bytes(await inp.read())
    while (data := await inp.read()):
        got += bytes(data)
    await out.close()
    return got


def main() -> int:
    link = AppLink(seed=1).serve(lambda: serve(7000))
    try:
        got = link.run(client)
        print(got.decode(), end="")
        link.write_pcap(os.path.join(HERE, "session.pcap"))
    finally:
        link.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
