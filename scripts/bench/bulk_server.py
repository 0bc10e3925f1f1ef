"""The bulk-transfer servers of scripts/bench/net.py, on our socket API (either
stack: --network-stack native|posix) and on asyncio / uvloop / trio:

    port 1235  discard: read everything until EOF, then close (kernel -> server)
    port 1236  source: write 64 KiB chunks until the peer goes away (server -> kernel)

    python scripts/bench/bulk_server.py [app_template options]
    python scripts/bench/bulk_server.py --framework asyncio|uvloop|trio
"""
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, ROOT)

DISCARD, SOURCE = 1235, 1236
CHUNK = os.urandom(64 << 10)


def ours() -> int:
    from netstack.sockets import listen, listen_options, make_ipv4_address
    from reactor import app_template, do_with, keep_doing, repeat, stop_iteration, when_all

    def discard(conn):
        inp = conn.input()

        def once():
            return inp.read().then(lambda b: stop_iteration.no if b else stop_iteration.yes)
        return repeat(once).then(conn.shutdown_output)

    def source(conn):
        out = conn.output(65536)
        return repeat(lambda: out.write(CHUNK).then(lambda: stop_iteration.no))

    def serve(port, handler):
        lo = listen_options()
        lo.reuse_address = True

        def accepted(ar):
            # served in parallel with the next accept; a peer going away ends it
            handler(ar.connection).handle_exception(lambda e: None)

        return do_with(listen(make_ipv4_address(port), lo),
                       lambda lst: keep_doing(lambda: lst.accept().then(accepted)))

    return app_template().run(sys.argv, lambda: when_all(serve(DISCARD, discard), serve(SOURCE, source)))


async def asyncio_main():
    import asyncio

    async def discard(r, w):
        while await r.read(1 << 20):
            pass
        w.close()

    async def source(r, w):
        try:
            while True:
                w.write(CHUNK)
                await w.drain()
        except OSError:
            pass
        w.close()

    a = await asyncio.start_server(discard, "0.0.0.0", DISCARD, reuse_address=True)
    b = await asyncio.start_server(source, "0.0.0.0", SOURCE, reuse_address=True)
    await asyncio.gather(a.serve_forever(), b.serve_forever())


async def trio_main():
    import trio

    async def discard(s):
        while await s.receive_some(1 << 20):
            pass

    async def source(s):
        try:
            while True:
                await s.send_all(CHUNK)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass

    async with trio.open_nursery() as n:
        n.start_soon(trio.serve_tcp, discard, DISCARD)
        n.start_soon(trio.serve_tcp, source, SOURCE)


if __name__ == "__main__":
    if "--framework" in sys.argv:
        name = sys.argv[sys.argv.index("--framework") + 1]
        if name == "trio":
            import trio
            trio.run(trio_main)
        else:
            import asyncio
            if name == "uvloop":
                import uvloop
                uvloop.install()
            asyncio.run(asyncio_main())
    else:
        sys.exit(ours())
