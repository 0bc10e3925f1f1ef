"""Every shard connects to --to and sends its shard id; prints what came back.
With --serve-forever the application then keeps running (for the kill test)."""
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))

from netstack.sockets import connect, make_ipv4_address  # noqa: E402
from reactor import Promise, app_template, smp, this_shard_id, when_all_succeed  # noqa: E402

app = app_template()
app.add_options()("to", str, "192.0.2.1:4323", "kernel server")
app.add_option("--serve-forever", action="store_true")
forever = Promise()


async def hello(to):
    s = await connect(make_ipv4_address(to))
    out, inp = s.output(), s.input()
    await out.write(b"shard %d" % this_shard_id())
    await out.close()
    data = await inp.consume_all()
    return f"shard {this_shard_id()} got {bytes(data).decode()} via port {s.local_address().port}"


def f():
    to = app.configuration()["to"]
    if app.configuration()["serve_forever"]:
        print(f"pids {os.getpid()}", flush=True)
        return smp.submit_to(1, os.getpid).then(lambda pid: print(f"child {pid}", flush=True)).then(
            forever.get_future)
    from netstack.sockets import network_stats

    def show(st):
        print(f"stats shards={len(st['shards'])} total_tx_frames={st['total']['tx_frames']} "
              f"sum_ok={st['total']['tx_frames'] == sum(s['tx_frames'] for s in st['shards'])}", flush=True)
    return when_all_succeed([smp.submit_to(s, hello, to) for s in range(smp.count)]).then(
        lambda lines: print("\n".join(lines), flush=True)).then(network_stats).then(show)


if __name__ == "__main__":
    sys.exit(app.run(sys.argv, f))
