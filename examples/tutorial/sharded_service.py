"""sharded<service>: one instance per shard -- start, invoke_on_all, map_reduce, stop.

    python sharded_service.py -c2

Each shard's Counter counts the words it was given; invoke_on_all hands every
shard its share, map_reduce sums the counts back on shard 0, stop() calls each
instance's stop().
"""
import sys

from _main import main
from reactor import sharded, smp, this_shard_id

WORDS = "the quick brown fox jumps over the lazy dog again and again".split()


class Counter:
    def __init__(self, label):
        self.label = label
        self.count = 0

    def take_share(self):
        mine = WORDS[this_shard_id()::smp.count]
        self.count += len(mine)

    def stop(self):
        print(f"{self.label} on shard {this_shard_id()} stopping with {self.count}", flush=True)


def f():
    svc = sharded(Counter)

    async def run():
        await svc.start("counter")
        await svc.invoke_on_all(lambda c: c.take_share())
        total = await svc.map_reduce(lambda acc, v: acc + v, 0, lambda c: c.count)
        print(f"{smp.count} shards counted {total} words ({len(WORDS)} given)", flush=True)
        await svc.stop()
    return run()


if __name__ == "__main__":
    sys.exit(main(f))
