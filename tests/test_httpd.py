"""examples/httpd.py on both stacks: curl and a trio client, keep-alive,
pipelining, chunked bodies both ways, 413, 400, static files, -c2, and a slow
and a garbage client that do not disturb the others."""
import os
import socket
import subprocess
import sys
import time

import pytest
import trio

from netstack.testing.netlab import NetLab

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HTTPD = os.path.join(ROOT, "examples", "httpd.py")
KERNEL, STACK = "192.0.2.1", "192.0.2.2"


class Server:
    """httpd on the chosen stack; `run(argv)` runs a kernel-side command where
    the server is reachable, `inside()` a block of client code."""

    def __init__(self, kind, tmp_path, shards=1, parser="httptools"):
        self.kind = kind
        self.static = tmp_path / "www"
        self.static.mkdir()
        (self.static / "index.html").write_text("<h1>static</h1>\n")
        (tmp_path / "secret.txt").write_text("not for you\n")
        args = [sys.executable, HTTPD, f"-c{shards}", "--static-dir", str(self.static), "--max-body", "100000",
                "--idle-timeout", "5", "--parser", parser]
        self.lab = None
        if kind == "posix":
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
            s.close()
            self.host = "127.0.0.1"
            self.p = subprocess.Popen(args + ["--port", str(self.port)], stdout=subprocess.PIPE,
                                      stderr=subprocess.PIPE, text=True)
        else:
            self.lab = NetLab("httpd")
            self.ns = self.lab.ns("k")
            self.lab.tap(self.ns, "tap0", f"{KERNEL}/24", multi_queue=shards > 1)
            self.host, self.port = STACK, 8080
            self.p = self.lab.popen(self.ns, args + ["--network-stack", "native", "--tap-device", "tap0",
                                                     "--host-ipv4-addr", STACK, "--gw-ipv4-addr", KERNEL],
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        with self.inside():
            end = time.monotonic() + 20
            while True:
                try:
                    socket.create_connection((self.host, self.port), timeout=0.5).close()
                    break
                except OSError:
                    if self.p.poll() is not None or time.monotonic() > end:
                        raise RuntimeError(f"httpd did not start: {self.p.stderr.read()}")
                    time.sleep(0.05)

    def inside(self):
        from pyroute2 import netns
        srv = self

        class Ctx:
            def __enter__(self):
                if srv.lab is not None:
                    netns.pushns(srv.ns)

            def __exit__(self, *e):
                if srv.lab is not None:
                    netns.popns()
        return Ctx()

    def run(self, argv):
        """(bytes out: no newline translation, the CRLFs are the point)"""
        if self.lab is None:
            return subprocess.run(argv, capture_output=True, timeout=30)
        return self.lab.run(self.ns, argv, capture_output=True, timeout=30)

    def url(self, path):
        return f"http://{self.host}:{self.port}{path}"

    def close(self):
        if self.p.poll() is None:
            self.p.terminate()
            try:
                self.p.wait(10)
            except subprocess.TimeoutExpired:
                self.p.kill()
                self.p.wait()
        if self.lab is not None:
            self.lab.close()


@pytest.fixture(params=[("posix", "httptools"), ("native", "httptools"), ("posix", "h11"), ("native", "h11")],
                ids=lambda p: f"{p[0]}-{p[1]}")
def httpd(request, tmp_path):
    kind, parser = request.param
    if kind == "native" and os.geteuid() != 0:
        pytest.skip("the native stack needs root for its TAP")
    s = Server(kind, tmp_path, parser=parser)
    yield s
    s.close()


def curl(srv, *args):
    r = srv.run(["curl", "-s", "-S", "-i", "--max-time", "10", *args])
    assert r.returncode == 0, r.stderr
    head, _, body = r.stdout.decode().partition("\r\n\r\n")
    return head.split("\r\n")[0], dict(line.lower().split(": ", 1) for line in head.split("\r\n")[1:]), body


def test_curl_hello_static_and_errors(httpd):
    status, headers, body = curl(httpd, httpd.url("/hello"))
    assert (status, body) == ("HTTP/1.1 200 OK", "hello, world\n") and headers["content-length"] == "13"
    assert curl(httpd, httpd.url("/static/index.html"))[2] == "<h1>static</h1>\n"
    assert curl(httpd, "--path-as-is", httpd.url("/static/../secret.txt"))[0] == "HTTP/1.1 404 Not Found"
    assert curl(httpd, httpd.url("/nowhere"))[0] == "HTTP/1.1 404 Not Found"
    big = httpd.static.parent / "big.bin"
    big.write_bytes(b"x" * 200_000)
    assert curl(httpd, "-X", "POST", "--data-binary", f"@{big}", httpd.url("/echo"))[0] == \
        "HTTP/1.1 413 Request Entity Too Large"
    assert curl(httpd, "-X", "POST", "-H", "Transfer-Encoding: chunked", "--data-binary", f"@{big}",
                httpd.url("/echo"))[0] == "HTTP/1.1 413 Request Entity Too Large"          # chunked: counted as it comes
    metrics = curl(httpd, httpd.url("/metrics"))
    assert metrics[0] == "HTTP/1.1 200 OK" and "seastar_reactor_tasks_total" in metrics[2]


def test_chunked_request_and_response(httpd):
    status, headers, body = curl(httpd, "-X", "POST", "-H", "Transfer-Encoding: chunked", "--data-binary",
                                 "chunky " * 1000, httpd.url("/echo"))
    assert status == "HTTP/1.1 200 OK" and headers["transfer-encoding"] == "chunked"
    assert body == "chunky " * 1000                      # curl took the chunks apart


async def _read_responses(stream, n):
    """n responses (Content-Length bodies) off one stream, in order."""
    buf = b""
    out = []
    while len(out) < n:
        while b"\r\n\r\n" not in buf:
            data = await stream.receive_some(65536)
            if not data:
                return out
            buf += data
        head, _, rest = buf.partition(b"\r\n\r\n")
        length = int([line.split(b": ")[1] for line in head.split(b"\r\n") if line.lower().startswith(b"content-length")][0])
        while len(rest) < length:
            rest += await stream.receive_some(65536)
        out.append((head.split(b"\r\n")[0], rest[:length]))
        buf = rest[length:]
    return out


def test_trio_client_keep_alive_and_pipelining(httpd):
    async def main():
        s = await trio.open_tcp_stream(httpd.host, httpd.port)
        async with s:
            for _ in range(3):                             # keep-alive: one request at a time
                await s.send_all(b"GET /hello HTTP/1.1\r\nHost: x\r\n\r\n")
                assert await _read_responses(s, 1) == [(b"HTTP/1.1 200 OK", b"hello, world\n")]
            # pipelining: five requests in one write, five answers in order
            reqs = b"".join(b"GET %s HTTP/1.1\r\nHost: x\r\n\r\n" % p for p in
                            (b"/hello", b"/static/index.html", b"/nowhere", b"/hello", b"/static/index.html"))
            await s.send_all(reqs)
            return await _read_responses(s, 5)
    with httpd.inside():
        got = trio.run(main)
    assert [b for _s, b in got] == [b"hello, world\n", b"<h1>static</h1>\n", b"not found\n", b"hello, world\n",
                                    b"<h1>static</h1>\n"]
    assert [s for s, _b in got][2] == b"HTTP/1.1 404 Not Found"


def test_a_slow_client_and_a_garbage_client_do_not_disturb_the_others(httpd):
    async def main():
        slow = await trio.open_tcp_stream(httpd.host, httpd.port)
        await slow.send_all(b"GET /hello HTTP/1.1\r\nHo")     # and then nothing for a while
        junk = await trio.open_tcp_stream(httpd.host, httpd.port)
        await junk.send_all(b"\x00\xffNOT HTTP AT ALL\r\n\r\n")
        bad = await junk.receive_some(65536)
        ok = []
        for _ in range(20):                                   # meanwhile the others are served
            s = await trio.open_tcp_stream(httpd.host, httpd.port)
            async with s:
                await s.send_all(b"GET /hello HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                ok += await _read_responses(s, 1)
        await slow.send_all(b"st: x\r\n\r\n")                 # the slow one finishes its request
        slow_answer = await _read_responses(slow, 1)
        await slow.aclose()
        await junk.aclose()
        return bad, ok, slow_answer
    with httpd.inside():
        bad, ok, slow_answer = trio.run(main)
    assert bad.startswith(b"HTTP/1.1 400 Bad Request")
    assert ok == [(b"HTTP/1.1 200 OK", b"hello, world\n")] * 20
    assert slow_answer == [(b"HTTP/1.1 200 OK", b"hello, world\n")]


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="two shards need two CPUs")
@pytest.mark.parametrize("kind", ["posix", "native"])
def test_two_shards_serve(kind, tmp_path):
    if kind == "native" and os.geteuid() != 0:
        pytest.skip("the native stack needs root")
    srv = Server(kind, tmp_path, shards=2)
    try:
        async def main():
            out = []
            for _ in range(30):
                s = await trio.open_tcp_stream(srv.host, srv.port)
                async with s:
                    await s.send_all(b"GET /hello HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                    out += await _read_responses(s, 1)
            return out
        with srv.inside():
            got = trio.run(main)
        assert got == [(b"HTTP/1.1 200 OK", b"hello, world\n")] * 30
        metrics = curl(srv, srv.url("/metrics"))[2]
        assert 'shard="1"' in metrics
    finally:
        srv.close()
