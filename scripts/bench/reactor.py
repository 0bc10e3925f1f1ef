"""Reactor benchmark: the same work in this reactor, asyncio and trio, in one run.

    python scripts/bench/reactor.py [--runs 5]

Each figure is the median over --runs of CPU time per operation (process_time,
so a noisy neighbour inflates it less than wall time). Ratios are
other/ours: above 1 means we are faster.
"""
import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, ROOT)

import trio  # noqa: E402

from reactor import Promise, Reactor, make_ready_future, sleep  # noqa: E402

N = 200_000
NT = 20_000


def timed(fn, n):
    t0 = time.process_time()
    fn()
    return (time.process_time() - t0) / n


# ---- ready continuation chains -------------------------------------------------
def ours_ready_then():
    r = Reactor()

    from reactor import repeat, stop_iteration
    count = [0]

    def inc(v):
        count[0] = v + 1
        return stop_iteration.yes if v + 1 >= N else stop_iteration.no

    # Each iteration: a ready future and an inline continuation on it.
    r.run(lambda: repeat(lambda: make_ready_future(count[0]).then(inc)))
    assert count[0] == N
    r.close()


def ours_ready_await():
    r = Reactor()

    async def go():
        v = 0
        for _ in range(N):
            v = await make_ready_future(v + 1)
        return v
    assert r.run(go) == N
    r.close()


def asyncio_ready_await():
    async def go():
        loop = asyncio.get_running_loop()
        v = 0
        for _ in range(N):
            f = loop.create_future()
            f.set_result(v + 1)
            v = await f
        return v
    assert asyncio.run(go()) == N


def asyncio_ready_callbacks():
    async def go():
        loop = asyncio.get_running_loop()
        done = loop.create_future()
        count = [0]

        # asyncio runs a callback added to a done future via call_soon.
        def cb(f):
            count[0] += 1
            if count[0] == N:
                done.set_result(None)
                return
            g = loop.create_future()
            g.set_result(None)
            g.add_done_callback(cb)  # already done: scheduled with call_soon
        g = loop.create_future()
        g.set_result(None)
        g.add_done_callback(cb)
        await done
    asyncio.run(go())


def trio_ready_await():
    async def ready(v):
        return v

    async def go():
        v = 0
        for _ in range(N):
            v = await ready(v + 1)
        return v
    assert trio.run(go) == N


# ---- deferred chains (a promise resolved later) ----------------------------------
def ours_deferred():
    r = Reactor()

    def go():
        done = Promise()
        count = [0]

        def step(_=None):
            count[0] += 1
            if count[0] == N:
                done.set_value()
                return
            p = Promise()
            p.get_future().then(step)
            p.set_value()
        step()
        return done.get_future()
    r.run(go)
    r.close()


def asyncio_deferred():
    async def go():
        loop = asyncio.get_running_loop()
        done = loop.create_future()
        count = [0]

        def step(_=None):
            count[0] += 1
            if count[0] == N:
                done.set_result(None)
                return
            f = loop.create_future()
            f.add_done_callback(step)
            f.set_result(None)
        step()
        await done
    asyncio.run(go())


def trio_deferred():
    async def go():
        send, recv = trio.open_memory_channel(1)

        async def producer():
            for i in range(N // 4):
                await send.send(i)
            await send.aclose()

        async with trio.open_nursery() as n:
            n.start_soon(producer)
            async for _ in recv:
                pass
    trio.run(go)


# ---- timers ------------------------------------------------------------------------
def ours_timers():
    r = Reactor()

    def go():
        from reactor import parallel_for_each
        return parallel_for_each(range(NT), lambda i: sleep((i % 100) * 1e-5))
    r.run(go)
    r.close()


def asyncio_timers():
    async def go():
        await asyncio.gather(*(asyncio.sleep((i % 100) * 1e-5) for i in range(NT)))
    asyncio.run(go())


def trio_timers():
    async def go():
        async with trio.open_nursery() as n:
            for i in range(NT):
                n.start_soon(trio.sleep, (i % 100) * 1e-5)
    trio.run(go)


def submit_to_rate(mode, extra=()):
    app = os.path.join(ROOT, "tests", "apps", "shards_app.py")
    out = subprocess.run([sys.executable, app, "-c2", "--mode", mode, *extra], capture_output=True,
                         text=True, timeout=120).stdout
    return float(out.split()[-1])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=5)
    args = ap.parse_args()

    def med(fn, n):
        return statistics.median(timed(fn, n) for _ in range(args.runs))

    rows = []

    def row(name, ours, others):
        cells = [f"{name:<34} ours {ours * 1e9:8.0f} ns/op"]
        for oname, o in others:
            cells.append(f"{oname} {o * 1e9:8.0f} ns/op (x{o / ours:5.2f})")
        rows.append("  ".join(cells))
        print(rows[-1], flush=True)

    # deferred trio figure is per item sent through a channel (N/4 items)
    row("ready chain: then()", med(ours_ready_then, N),
        [("asyncio call_soon chain", med(asyncio_ready_callbacks, N))])
    row("ready chain: await", med(ours_ready_await, N),
        [("asyncio await done", med(asyncio_ready_await, N)), ("trio await", med(trio_ready_await, N))])
    row("deferred chain: promise later", med(ours_deferred, N),
        [("asyncio future later", med(asyncio_deferred, N)), ("trio channel item", med(trio_deferred, N // 4))])
    row("timers: 20k sleeps", med(ours_timers, NT),
        [("asyncio", med(asyncio_timers, NT)), ("trio", med(trio_timers, NT))])
    if len(os.sched_getaffinity(0)) >= 2:
        seq = statistics.median(submit_to_rate("rate") for _ in range(3))
        seqp = statistics.median(submit_to_rate("rate", ["--poll-mode"]) for _ in range(3))
        pipe = statistics.median(submit_to_rate("prate") for _ in range(3))
        print(f"submit_to round trips/s between 2 shards: sequential {seq:,.0f}; "
              f"sequential --poll-mode {seqp:,.0f}; 64 in flight {pipe:,.0f}")


if __name__ == "__main__":
    main()
