"""Connect to --to IP:PORT, send --send TEXT (then, with --udp, over UDP), print
what comes back until the server closes. Works on both stacks."""
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from netstack.sockets import connect, make_ipv4_address, make_udp_channel  # noqa: E402
from reactor import app_template  # noqa: E402

app = app_template()
app.add_options()("to", str, "192.0.2.1:1234", "server address")("send", str, "hello", "what to send")
app.add_option("--udp", action="store_true", help="one UDP datagram instead of a TCP connection")
app.add_option("--udp-expect-error", action="store_true",
               help="with --udp: wait for the ICMP error the datagram brings back (nobody listens there)")


async def f():
    cfg = app.configuration()
    addr = make_ipv4_address(cfg["to"])
    if cfg["udp"]:
        ch = make_udp_channel()
        await ch.send(addr, cfg["send"].encode())
        if cfg["udp_expect_error"]:
            from reactor import sleep
            for _ in range(100):
                errs = ch.errors()
                if errs:
                    for where, e in errs:
                        print(f"udp error from {where}: {type(e).__name__} errno {e.errno}", flush=True)
                    return
                await sleep(0.02)
            print("no udp error", flush=True)
            return
        dg = await ch.receive()
        print(f"udp reply from {dg.get_src()}: {bytes(dg.get_data()).decode()}", flush=True)
        return
    s = await connect(addr)
    out, inp = s.output(), s.input()
    await out.write(cfg["send"].encode())
    await out.close()
    data = await inp.consume_all()
    print(f"tcp reply from {s.remote_address()}: {bytes(data).decode()}", flush=True)


if __name__ == "__main__":
    try:
        sys.exit(app.run(sys.argv, f))
    except RuntimeError as e:
        print(f"Couldn't start application: {e}", file=sys.stderr)
        sys.exit(1)
