"""The baselines of scripts/bench/httpd.py, doing the same work as examples/httpd.py's
/hello (keep-alive, pipelining-safe): asyncio streams + h11, and uvloop + httptools.

    python scripts/bench/httpd_baselines.py asyncio-h11|uvloop-httptools HOST PORT
"""
import asyncio
import sys

BODY = b"hello, world\n"


async def asyncio_h11(reader, writer):
    import h11
    h = h11.Connection(h11.SERVER)
    try:
        while True:
            ev = h.next_event()
            if ev is h11.NEED_DATA:
                await writer.drain()
                data = await reader.read(65536)
                h.receive_data(data)
                continue
            if isinstance(ev, h11.Request):
                out = h.send(h11.Response(status_code=200, reason=b"OK", headers=[
                    (b"server", b"asyncio-h11"), (b"content-type", b"text/plain"),
                    (b"content-length", b"%d" % len(BODY))]))
                out += h.send(h11.Data(data=BODY)) + h.send(h11.EndOfMessage())
                writer.write(out)
            elif isinstance(ev, h11.ConnectionClosed):
                break
            if h.our_state is h11.MUST_CLOSE:
                break
            if h.our_state is h11.DONE and h.their_state is h11.DONE:
                h.start_next_cycle()
    except (h11.RemoteProtocolError, ConnectionError):
        pass
    finally:
        writer.close()


class HttptoolsProtocol(asyncio.Protocol):
    RESPONSE = (b"HTTP/1.1 200 OK\r\nserver: uvloop-httptools\r\ncontent-type: text/plain\r\n"
                b"content-length: %d\r\n\r\n" % len(BODY)) + BODY

    def connection_made(self, transport):
        import httptools
        self.t = transport
        self.parser = httptools.HttpRequestParser(self)

    def data_received(self, data):
        import httptools
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            self.t.write(b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
            self.t.close()

    def on_message_complete(self):
        self.t.write(self.RESPONSE)
        if not self.parser.should_keep_alive():
            self.t.close()


def main():
    kind, host, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
    if kind == "asyncio-h11":
        async def run():
            srv = await asyncio.start_server(asyncio_h11, host, port, reuse_address=True)
            async with srv:
                await srv.serve_forever()
        asyncio.run(run())
    elif kind == "uvloop-httptools":
        import uvloop
        loop = uvloop.new_event_loop()
        asyncio.set_event_loop(loop)
        srv = loop.run_until_complete(loop.create_server(HttptoolsProtocol, host, port, reuse_address=True))
        try:
            loop.run_forever()
        finally:
            srv.close()
    else:
        raise SystemExit(f"unknown baseline {kind!r}")


if __name__ == "__main__":
    main()
