"""Echo servers for scripts/bench/rr.py's comparison rows: asyncio streams and
uvloop streams (the same code on either loop).

    python scripts/bench/echo_baselines.py asyncio|uvloop HOST PORT
"""
import asyncio
import sys


async def echo(reader, writer):
    try:
        while (data := await reader.read(65536)):
            writer.write(data)
            await writer.drain()
    except ConnectionError:
        pass
    finally:
        writer.close()


async def serve(host, port):
    srv = await asyncio.start_server(echo, host, port, reuse_address=True, backlog=4096)
    async with srv:
        await srv.serve_forever()


def main():
    kind, host, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
    if kind == "uvloop":
        import uvloop
        uvloop.install()
    elif kind != "asyncio":
        raise SystemExit(f"unknown baseline {kind!r}")
    asyncio.run(serve(host, port))


if __name__ == "__main__":
    main()
