"""A gate guarding a service's shutdown.

Every request enters the gate (with_gate); stop() closes it: requests still
running finish first, then stop() resolves; a request that arrives after the
gate closed gets a failed future at once (GateClosedError).
"""
import sys

from _main import main
from reactor import gate, sleep, with_gate


class Service:
    def __init__(self):
        self.gate = gate()
        self.done = 0

    def request(self, n):
        def work():
            return sleep(0.02).then(lambda: self.finish(n))
        return with_gate(self.gate, work)

    def finish(self, n):
        self.done += 1
        print(f"request {n} done")

    def stop(self):
        print(f"stopping with {self.gate.get_count()} requests in flight")
        return self.gate.close().then(lambda: print(f"stopped after {self.done} requests"))


def f():
    svc = Service()
    for n in range(3):
        svc.request(n)

    stopped = svc.stop()
    refused = svc.request(99).handle_exception(lambda e: print(f"request 99 refused: {type(e).__name__}"))
    return refused.then(lambda: stopped)


if __name__ == "__main__":
    sys.exit(main(f))
