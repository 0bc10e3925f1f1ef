"""An HTTP/1.1 server on our socket API (either stack), with h11 as the parser.

    python examples/httpd.py [--port 8080] [--static-dir DIR] [--max-body 1048576] [-c N]
                             [--network-stack native --tap-device tap0 --host-ipv4-addr ...]

Routes:  GET /hello           "hello, world"
         GET /metrics         the Prometheus metrics of every shard
         GET /static/PATH     a file under --static-dir (no way out of it)
         POST /echo           the request body back, chunked
Keep-alive and pipelining (requests answered in order, several per write),
chunked request and response bodies, a body over --max-body is a 413 (by its
Content-Length before reading it, or as soon as a chunked body passes the
limit), a malformed request a 400, then the connection closes. A connection
idle for --idle-timeout seconds is closed (one sweep timer for all of them),
so a slow or silent client holds its own connection only.

With -c N every shard listens (posix: SO_REUSEPORT; native: our RSS steering).
--parser httptools (the default) or h11: both sans-IO parsers on the same
stack and routes. httptools (C) is the default by measurement: with h11 a
/hello request cost 87 us of server CPU on the native stack, about half of it
in h11 (py-spy), and the server reached 0.79x asyncio + h11; see
scripts/bench/httpd.py for the table with both.
"""

import os
import sys
from http import HTTPStatus

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import h11  # noqa: E402

from netstack.sockets import listen, listen_options, make_ipv4_address  # noqa: E402
from reactor import app_template, futurize, keep_doing, sharded, sleep  # noqa: E402

app = app_template(name="httpd")
app.add_options()("port", int, 8080, "TCP port")("static-dir", str, None, "serve files from here under /static/")(
    "parser", str, "httptools", "httptools (C, the default: faster by measurement) or h11 (pure Python)")(
    "max-body", int, 1 << 20, "largest request body accepted (bytes); more is a 413")(
    "idle-timeout", float, 30.0, "close a connection idle this long (seconds)")

SERVER = b"pyseastar-httpd"
TYPES = {".html": b"text/html", ".txt": b"text/plain", ".css": b"text/css", ".js": b"application/javascript",
         ".json": b"application/json", ".png": b"image/png", ".jpg": b"image/jpeg"}


class TooLarge(Exception):
    pass


def _headers(extra=()):
    return [(b"server", SERVER), *extra]


_REASONS = {int(x): x.phrase.encode() for x in HTTPStatus}


def _response(status, headers):
    return h11.Response(status_code=status, reason=_REASONS[status], headers=_headers(headers))


class _Request:
    __slots__ = ("url", "headers", "body", "size", "method", "keep_alive")

    def __init__(self):
        self.url = b""
        self.headers = []
        self.body = []
        self.size = 0


class _Collector:
    """httptools' callbacks: complete requests, in order (pipelining)."""

    def __init__(self, max_body):
        self.max_body = max_body
        self.done = []
        self.cur = None
        self.parser = None

    def on_message_begin(self):
        self.cur = _Request()

    def on_url(self, url):
        self.cur.url += url

    def on_header(self, name, value):
        self.cur.headers.append((name.lower(), value))

    def on_headers_complete(self):
        for name, value in self.cur.headers:
            if name == b"content-length" and int(value) > self.max_body:
                raise TooLarge()                 # refused before its body is read

    def on_body(self, body):
        self.cur.size += len(body)
        if self.cur.size > self.max_body:
            raise TooLarge()                     # a chunked body, refused as it passes the limit
        self.cur.body.append(body)

    def on_message_complete(self):
        r = self.cur
        r.method = self.parser.get_method()
        r.keep_alive = self.parser.should_keep_alive()
        self.done.append(r)


def _raw(status, body, ctype, head=False, close=False):
    return b"HTTP/1.1 %d %s\r\nserver: %s\r\ncontent-type: %s\r\ncontent-length: %d\r\n%s\r\n%s" % (
        status, _REASONS[status], SERVER, ctype, len(body), b"connection: close\r\n" if close else b"",
        b"" if head else body)


class Server:
    def __init__(self, port, static_dir, max_body, idle_timeout, parser="httptools"):
        if parser not in ("httptools", "h11"):
            raise ValueError(f"--parser is httptools or h11, not {parser!r}")
        self.parser = parser
        self.port, self.max_body, self.idle_timeout = port, max_body, idle_timeout
        self.static_dir = os.path.realpath(static_dir) if static_dir else None
        self.requests = 0

    def _sweep(self):
        """Every idle_timeout / 2: end the connections idle for idle_timeout (one
        timer for all of them, not one per read)."""
        now = self._now()
        for rec in list(self._records.values()):
            if now - rec[0] >= self.idle_timeout:
                rec[0] = now
                rec[1].shutdown_input()          # its pending read returns end of stream

    def start(self):
        from reactor import Timer, engine
        self._now = engine().now
        self._records = {}
        self._sweeper = Timer(self._sweep)
        self._sweeper.arm_periodic(max(0.05, self.idle_timeout / 2))
        lo = listen_options()
        lo.reuse_address = True
        self.listener = listen(make_ipv4_address(self.port), lo)
        keep_doing(lambda: self.listener.accept().then(self._spawn)).handle_exception(lambda e: None)

    def _spawn(self, ar):
        serve = self.serve_httptools if self.parser == "httptools" else self.serve
        futurize(serve, ar.connection).handle_exception(lambda e: None)

    # ---- one connection, httptools -----------------------------------------------------------
    async def serve_httptools(self, conn):
        import httptools
        inp, out = conn.input(), conn.output()
        col = _Collector(self.max_body)
        p = col.parser = httptools.HttpRequestParser(col)
        rec = [self._now(), conn]
        self._records[id(rec)] = rec
        try:
            while True:
                data = await inp.read()
                if not data:
                    break
                rec[0] = self._now()
                try:
                    p.feed_data(bytes(data))
                    failed = None
                except httptools.HttpParserCallbackError as e:
                    failed = (413, f"body over {self.max_body} bytes\n") if isinstance(e.__context__, TooLarge) \
                        else (400, "bad request\n")
                except (httptools.HttpParserError, ValueError) as e:
                    failed = (400, f"bad request: {e}\n")
                keep = True
                for req in col.done:
                    keep = await self._answer(req, out) and req.keep_alive
                    if not keep:
                        break
                col.done = []
                if failed is not None:
                    await out.write(_raw(failed[0], failed[1].encode(), b"text/plain", close=True))
                    keep = False
                await out.flush()                    # the answers of pipelined requests leave together
                if not keep:
                    break
        finally:
            await self._finish(rec, out)

    async def _finish(self, rec, out) -> None:
        """A connection's end, whichever parser served it."""
        self._records.pop(id(rec), None)
        try:
            await out.close()
        except Exception:  # noqa: BLE001 - the peer may be gone already
            pass

    async def _answer(self, req, out) -> bool:
        target = req.url.split(b"?", 1)[0]
        m = req.method
        if m in (b"GET", b"HEAD") and target == b"/hello":
            await out.write(_raw(200, b"hello, world\n", b"text/plain", m == b"HEAD"))
        elif m == b"GET" and target == b"/metrics":
            from netstack.sockets.metrics import gather, render
            await out.write(_raw(200, render(await gather(), "seastar"), b"text/plain; version=0.0.4"))
        elif m in (b"GET", b"HEAD") and target.startswith(b"/static/"):
            status, body, ctype = self._file(target[len(b"/static/"):])
            await out.write(_raw(status, body, ctype, m == b"HEAD"))
        elif m == b"POST" and target == b"/echo":
            body = b"".join(req.body)
            parts = [b"HTTP/1.1 200 OK\r\nserver: %s\r\ncontent-type: application/octet-stream\r\n"
                     b"transfer-encoding: chunked\r\n\r\n" % SERVER]
            for i in range(0, len(body), 16384):
                chunk = body[i:i + 16384]
                parts.append(b"%x\r\n%s\r\n" % (len(chunk), chunk))
            parts.append(b"0\r\n\r\n")
            await out.write(b"".join(parts))
        else:
            await out.write(_raw(404, b"not found\n", b"text/plain"))
        return True

    def _file(self, rel):
        if self.static_dir is None:
            return 404, b"no --static-dir\n", b"text/plain"
        path = os.path.realpath(os.path.join(self.static_dir, os.fsdecode(rel)))
        if not path.startswith(self.static_dir + os.sep) or not os.path.isfile(path):
            return 404, b"not found\n", b"text/plain"
        with open(path, "rb") as f:
            return 200, f.read(), TYPES.get(os.path.splitext(path)[1], b"application/octet-stream")

    def stop(self):
        self.listener.close()

    # ---- one connection ------------------------------------------------------------------
    async def serve(self, conn):
        inp, out = conn.input(), conn.output()
        h = h11.Connection(h11.SERVER, max_incomplete_event_size=16384)
        rec = [self._now(), conn]             # last activity: the idle sweep reads it
        self._records[id(rec)] = rec
        try:
            while True:
                try:
                    ev = h.next_event()
                except h11.RemoteProtocolError as e:
                    await self._error(h, out, e.error_status_hint, f"bad request: {e}\n")
                    break
                if ev is h11.NEED_DATA:
                    await out.flush()                 # answers of pipelined requests leave together
                    data = await inp.read()
                    rec[0] = self._now()
                    h.receive_data(bytes(data))      # b"": the peer closed (or the idle sweep ended it)
                    continue
                if isinstance(ev, h11.Request):
                    if not await self._request(h, ev, inp, out):
                        break
                elif isinstance(ev, h11.ConnectionClosed):
                    break
                if h.our_state is h11.MUST_CLOSE or h.their_state is h11.MUST_CLOSE:
                    break
                if h.our_state is h11.DONE and h.their_state is h11.DONE:
                    h.start_next_cycle()
        finally:
            await self._finish(rec, out)

    async def _body(self, h, req, inp_next):
        n = 0
        parts = []
        for name, value in req.headers:
            if name == b"content-length" and int(value) > self.max_body:
                raise TooLarge()
        while True:
            ev = await inp_next()
            if isinstance(ev, h11.Data):
                n += len(ev.data)
                if n > self.max_body:
                    raise TooLarge()
                parts.append(ev.data)
            elif isinstance(ev, h11.EndOfMessage):
                return b"".join(parts)
            else:
                raise h11.RemoteProtocolError("the body ended early", 400)

    async def _request(self, h, req, inp, out) -> bool:
        """Answer one request; False: the connection is to close."""
        self.requests += 1

        async def next_body_event():
            while True:
                ev = h.next_event()
                if ev is not h11.NEED_DATA:
                    return ev
                data = await inp.read()
                h.receive_data(bytes(data))
        try:
            if not any(n in (b"content-length", b"transfer-encoding") for n, _v in req.headers):
                ev = h.next_event()                      # no body: the end of the message is there already
                body = b""
                if not isinstance(ev, h11.EndOfMessage):
                    raise h11.RemoteProtocolError("a body without a length", 400)
            else:
                body = await self._body(h, req, next_body_event)
        except TooLarge:
            await self._error(h, out, 413, f"body over {self.max_body} bytes\n")
            return False
        except (h11.RemoteProtocolError, ValueError) as e:
            await self._error(h, out, 400, f"bad request: {e}\n")
            return False
        target = req.target.split(b"?", 1)[0]
        if req.method in (b"GET", b"HEAD") and target == b"/hello":
            await self._send(h, out, 200, b"hello, world\n", b"text/plain", req.method == b"HEAD")
        elif req.method == b"GET" and target == b"/metrics":
            from netstack.sockets.metrics import gather, render
            await self._send(h, out, 200, render(await gather(), "seastar"), b"text/plain; version=0.0.4")
        elif req.method in (b"GET", b"HEAD") and target.startswith(b"/static/"):
            await self._static(h, out, target[len(b"/static/"):], req.method == b"HEAD")
        elif req.method == b"POST" and target == b"/echo":
            await out.write(h.send(_response(200, [(b"content-type", b"application/octet-stream"),
                                                   (b"transfer-encoding", b"chunked")])))
            for i in range(0, len(body), 16384):
                await out.write(h.send(h11.Data(data=body[i:i + 16384])))
            await out.write(h.send(h11.EndOfMessage()))
        else:
            await self._send(h, out, 404, b"not found\n", b"text/plain")
        return True

    async def _static(self, h, out, rel, head):
        status, body, ctype = self._file(rel)
        await self._send(h, out, status, body, ctype, head)

    async def _send(self, h, out, status, body, ctype, head=False):
        data = h.send(_response(status, [(b"content-type", ctype), (b"content-length", b"%d" % len(body))]))
        if not head:
            data += h.send(h11.Data(data=body))
        await out.write(data + h.send(h11.EndOfMessage()))     # one write: the response leaves whole

    async def _error(self, h, out, status, text):
        if h.our_state not in (h11.IDLE, h11.SEND_RESPONSE):
            return
        body = text.encode()
        try:
            await out.write(h.send(_response(status, [(b"content-type", b"text/plain"),
                                                      (b"content-length", str(len(body)).encode()),
                                                      (b"connection", b"close")])))
            await out.write(h.send(h11.Data(data=body)))
            await out.write(h.send(h11.EndOfMessage()))
            await out.flush()
        except h11.LocalProtocolError:
            pass


def main():
    svc = sharded(Server)
    cfg = app.configuration

    async def run():
        c = cfg()
        await svc.start(c["port"], c["static_dir"], c["max_body"], c["idle_timeout"], c["parser"])
        await svc.invoke_on_all(lambda s: s.start())
        while True:                     # serve until stopped (SIGINT/SIGTERM)
            await sleep(3600)
    return run()


if __name__ == "__main__":
    sys.exit(app.run(sys.argv, main))
