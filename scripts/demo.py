"""The main job: start the tutorial's echo and canned-response servers and talk to
them with a kernel client (trio), printing what comes back.

Today the servers run on the posix stack; the native stack on a TAP device in a
network namespace replaces this once it lands (issue 4).
"""
import os
import socket
import subprocess
import sys
import time

import trio

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EX = os.path.join(ROOT, "examples", "tutorial")


def start(name, port, stack):
    p = subprocess.Popen([sys.executable, os.path.join(EX, name), "-c1", "--port", str(port),
                          "--network-stack", stack])
    deadline = time.monotonic() + 10
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return p
        except OSError:
            if p.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"{name} did not start")
            time.sleep(0.05)


async def talk(echo_port, canned_port):
    stream = await trio.open_tcp_stream("127.0.0.1", echo_port)
    for line in (b"hello, seastar\n", b"futures and continuations\n", b"share nothing\n"):
        await stream.send_all(line)
        got = b""
        while len(got) < len(line):
            got += await stream.receive_some(1024)
        print(f"echo  > {line.decode().rstrip()}\necho  < {got.decode().rstrip()}")
    await stream.aclose()
    stream = await trio.open_tcp_stream("127.0.0.1", canned_port)
    data = b""
    while chunk := await stream.receive_some(1024):
        data += chunk
    print(f"canned< {data.decode().rstrip()}")
    await stream.aclose()


def main():
    stack = "posix"
    procs = [start("echo_server.py", 12340, stack), start("canned_server.py", 12341, stack)]
    try:
        trio.run(talk, 12340, 12341)
    finally:
        for p in procs:
            p.send_signal(2)
            p.wait(5)


if __name__ == "__main__":
    main()
