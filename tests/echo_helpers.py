"""Echo clients and servers shared by the tests: a kernel-side trio client, and
the same exchange written against our socket API (either stack)."""
import trio

from reactor import Task


async def trio_echo_client(host, port, payload: bytes) -> bytes:
    """Send payload (then EOF) to an echo server from a kernel socket; return what came back."""
    stream = await trio.open_tcp_stream(host, port)
    got = bytearray()

    async def sender():
        view = memoryview(payload)
        for i in range(0, len(payload), 65536):
            await stream.send_all(view[i:i + 65536])
        await stream.send_eof()
    async with trio.open_nursery() as n:
        n.start_soon(sender)
        while (chunk := await stream.receive_some(1 << 16)):
            got += chunk
    await stream.aclose()
    return bytes(got)


async def serve_one_echo(server) -> None:
    """Accept one connection on a server_socket and echo it until EOF."""
    ar = await server.accept()
    inp, out = ar.connection.input(), ar.connection.output()
    while (b := await inp.read()):
        await out.write(b)
    await out.close()


async def echo_exchange(sock, data: bytes, chunk: int = 65536) -> bytes:
    """Write data (then close) on a connected_socket while reading everything back."""
    inp, out = sock.input(), sock.output()
    got = bytearray()

    async def reader():
        while (b := await inp.read()):
            got.extend(b)
    t = Task(reader())
    for i in range(0, len(data), chunk):
        await out.write(data[i:i + chunk])
    await out.close()
    await t
    return bytes(got)
