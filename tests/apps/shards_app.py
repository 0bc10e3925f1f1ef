"""A test application exercising shards; the mode is the first option."""
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))

from reactor import app_template, make_ready_future, sharded, sleep, smp, this_shard_id  # noqa: E402

app = app_template()
app.add_options()("mode", str, "info", "what to do")


class Counter:
    def __init__(self, base):
        self.value = base + this_shard_id()

    def add(self, n):
        self.value += n
        return self.value

    def get(self):
        return self.value

    def stop(self):
        print(f"stop on shard {this_shard_id()}", flush=True)


def where():
    return (this_shard_id(), os.getpid(), sorted(os.sched_getaffinity(0)))


def fail():
    raise KeyError("from the other shard")


def crash():
    os._exit(3)


def f():
    mode = app.configuration()["mode"]
    if mode == "info":
        def show(infos):
            for shard, pid, cpus in infos:
                print(f"shard {shard} pid {pid} cpus {cpus}")
        from reactor import when_all_succeed
        return when_all_succeed([smp.submit_to(s, where) for s in range(smp.count)]).then(show)
    if mode == "sharded":
        svc = sharded(Counter)

        def run():
            return (svc.invoke_on_all(Counter.add, 10)
                    .then(lambda: svc.invoke_on(1 % smp.count, "add", 5))
                    .then(lambda v: print(f"invoke_on -> {v}"))
                    .then(lambda: svc.map_reduce(lambda a, b: a + b, 0, Counter.get))
                    .then(lambda total: print(f"map_reduce -> {total}"))
                    .then(lambda: svc.invoke_on_all(lambda inst: print(f"lambda on {this_shard_id()} sees {inst.value}", flush=True)))
                    .then(svc.stop))
        return svc.start(100).then(run)
    if mode == "exception":
        return smp.submit_to(1, fail).handle_exception_type(
            KeyError, lambda e: print(f"caught {type(e).__name__}: {e}"))
    if mode == "uncaught":
        return smp.submit_to(1, fail)
    if mode == "crash":
        print(f"children {smp.count - 1}", flush=True)
        return smp.submit_to(1, where).then(lambda info: print(f"child pid {info[1]}", flush=True)).then(
            lambda: sleep(30))
    if mode == "crash-call":
        return smp.submit_to(1, crash)
    if mode == "serve":
        return smp.submit_to(1, where).then(lambda info: print(f"child pid {info[1]}", flush=True)).then(
            lambda: sleep(60))
    if mode == "rate":
        n = 20000
        t0 = time.perf_counter()
        from reactor import repeat, stop_iteration
        count = [0]

        def one():
            count[0] += 1
            return smp.submit_to(1, int, 1).then(lambda v: stop_iteration.yes if count[0] >= n else stop_iteration.no)
        return repeat(one).then(lambda: print(f"rate {n / (time.perf_counter() - t0):.0f}"))
    if mode == "prate":
        from reactor import max_concurrent_for_each
        n = 50000
        t0 = time.perf_counter()
        return max_concurrent_for_each(range(n), 64, lambda i: smp.submit_to(1, int, i)).then(
            lambda: print(f"rate {n / (time.perf_counter() - t0):.0f}"))
    return make_ready_future()


if __name__ == "__main__":
    try:
        sys.exit(app.run(sys.argv, f))
    except RuntimeError as e:
        print(f"Couldn't start application: {e}", file=sys.stderr)
        sys.exit(1)
