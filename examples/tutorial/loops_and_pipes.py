"""do_with, loops (repeat, do_until, do_for_each, keep_doing) and a pipe between
a producer and a consumer fiber."""
import sys

from _main import main
from reactor import (do_for_each, do_until, do_with, keep_doing, make_ready_future, pipe, repeat, sleep,
                     stop_iteration)


class Stop(Exception):
    pass


def f():
    out = []

    def loops():
        state = {"i": 0}

        def step():
            state["i"] += 1
            return make_ready_future(stop_iteration.yes if state["i"] == 3 else stop_iteration.no)
        return repeat(step).then(lambda: out.append(f"repeat ran {state['i']} times")).then(
            lambda: do_until(lambda: state["i"] >= 6, lambda: sleep(0.001).then(lambda: state.update(i=state["i"] + 1)))
        ).then(lambda: out.append(f"do_until stopped at {state['i']}")).then(
            lambda: do_for_each([1, 2, 3], lambda x: make_ready_future(out.append(f"do_for_each {x}"))))

    def bounded_keep_doing():
        n = {"k": 0}

        def tick():
            n["k"] += 1
            if n["k"] == 4:
                raise Stop()
            return sleep(0.001)
        return keep_doing(tick).handle_exception_type(Stop, lambda e: out.append(f"keep_doing ended after {n['k']}"))

    def with_state():
        # do_with keeps the object alive until the future the function returns resolves
        return do_with([0], lambda acc: do_for_each(range(5), lambda x: make_ready_future(acc.__setitem__(0, acc[0] + x)))
                       .then(lambda: out.append(f"do_with sum {acc[0]}")))

    async def pipes():
        p = pipe(2)

        async def producer():
            for item in ("one", "two", "three", "four"):
                await p.writer.write(item)
            p.writer.close()

        got = []

        async def consumer():
            while (item := await p.reader.read()) is not None:
                got.append(item)
        from reactor import when_all_succeed
        await when_all_succeed(producer(), consumer())
        out.append(f"pipe carried {got}")

    def report():
        print("\n".join(out))
    return loops().then(bounded_keep_doing).then(with_state).then(pipes).then(report)


if __name__ == "__main__":
    sys.exit(main(f))
