"""The network stack as an app_template extension: its options, the shard
wiring made before the fork, and the stack brought up on every shard before
the application starts (registered through the "pyseastar.app_extensions"
entry point, so the reactor imports nothing of the network)."""

from __future__ import annotations

import argparse

from reactor.app import non_negative_float, non_negative_int, port_number

__all__ = ["NetworkExtension", "add_network_options", "fault_wrapper"]


def add_network_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("Network options")
    g.add_argument("--network-stack", choices=("posix", "native"), default="posix",
                   help="posix: the kernel's sockets; native: our userspace TCP/IP stack")
    g.add_argument("--tap-device", default="tap0", help="TAP device for the native stack")
    g.add_argument("--tap-queue-len", type=non_negative_int, default=10000, metavar="FRAMES",
                   help="native: raise the TAP's kernel queue (txqueuelen) to this many frames, so a burst "
                        "waits instead of being dropped while the stack is busy (0: leave it)")
    g.add_argument("--dev", default=None, help="interface for AF_PACKET (native stack) instead of a TAP")
    g.add_argument("--host-ipv4-addr", type=_ipv4, default=None, help="our IPv4 address (native)")
    g.add_argument("--gw-ipv4-addr", type=_ipv4, default=None, help="gateway IPv4 address (native)")
    g.add_argument("--netmask-ipv4-addr", type=_netmask, default=None, help="netmask (native; default 255.255.255.0)")
    g.add_argument("--dhcp", action=argparse.BooleanOptionalAction, default=None,
                   help="obtain the address by DHCP (the default when --host-ipv4-addr is not given; "
                        "--no-dhcp needs it)")
    g.add_argument("--hw-address", type=_unicast_mac, default=None, help="MAC address of the native stack")
    g.add_argument("--pcap-out", default=None, help="record every frame to this pcap file")
    g.add_argument("--csum-offload", action=argparse.BooleanOptionalAction, default=True,
                   help="native: the device computes and checks TCP/UDP checksums (TAP/AF_PACKET virtio header)")
    g.add_argument("--tso", action=argparse.BooleanOptionalAction, default=True,
                   help="native: hand the device TCP segments of up to 64 KB to cut to the MSS")
    g.add_argument("--lro", action=argparse.BooleanOptionalAction, default=True,
                   help="native: take merged (GRO) TCP segments of up to 64 KB from the device")
    g.add_argument("--kernel-steering", action=argparse.BooleanOptionalAction, default=True,
                   help="native, several shards: have the kernel deliver each flow to its shard with our RSS "
                        "hash (eBPF on a multi-queue TAP, classic BPF for AF_PACKET fanout); off: the "
                        "kernel's own spreading, misdelivered frames forwarded")
    g.add_argument("--tap-bridge", action="store_true",
                   help="native, one shard: a bridge process does the TAP's I/O and talks to the stack "
                        "through a shared-memory virtio ring (no system call per packet on the shard)")
    g.add_argument("--tcp-congestion", choices=("newreno", "cubic", "bbr"), default=None,
                   help="congestion control of every connection (default: newreno on the native "
                        "stack, the kernel's default on posix; per socket: connected_socket.set_congestion)")
    g.add_argument("--tcp-fin-timeout", type=non_negative_float, default=None, metavar="SECONDS",
                   help="how long a connection the application has closed waits in FIN-WAIT-2 for the "
                        "peer's FIN (default 60, Linux's tcp_fin_timeout; native: 0 waits for ever; "
                        "posix: TCP_LINGER2 on every socket, where 0 means the kernel's default)")
    g.add_argument("--stack-seed", type=int, default=None,
                   help="seed for the stack's randomness (ISNs, IP ids, ports): reproducible runs")
    f = p.add_argument_group("Fault injection (native stack: impairs the frames it receives)")
    f.add_argument("--fault-loss", type=_percent, default=0.0, metavar="PCT", help="drop this %% of frames")
    f.add_argument("--fault-reorder", type=_percent, default=0.0, metavar="PCT",
                   help="swap this %% of received batches' frames with a neighbour")
    f.add_argument("--fault-dup", type=_percent, default=0.0, metavar="PCT", help="duplicate this %% of frames")
    f.add_argument("--fault-corrupt", type=_percent, default=0.0, metavar="PCT",
                   help="flip one byte in this %% of frames")
    f.add_argument("--fault-delay-ms", type=non_negative_float, default=0.0, metavar="MS",
                   help="hold every received frame back this long")
    f.add_argument("--fault-seed", type=int, default=0, help="seed of the impairments (reproducible runs)")
    g.add_argument("--print-net-stats", action="store_true",
                   help="print the network stack's counters (one JSON line on stderr) at exit")
    m = p.add_argument_group("Metrics (Prometheus)")
    m.add_argument("--prometheus-port", type=port_number, default=0,
                   help="serve the metrics at http://ADDRESS:PORT/metrics (0: off)")
    m.add_argument("--prometheus-address", type=_ipv4, default="0.0.0.0", help="the address to serve them on")
    m.add_argument("--prometheus-prefix", default="seastar", type=_metric_prefix,
                   help="the first part of every metric's name")
    g.add_argument("--stats-interval", type=non_negative_float, default=0.0, metavar="SECONDS",
                   help="every SECONDS, one compact line of counters per shard on stderr (0: off)")


def _metric_prefix(text: str) -> str:
    import re
    if not re.fullmatch(r"[a-zA-Z_][a-zA-Z0-9_]*", text):
        raise argparse.ArgumentTypeError(f"{text!r} is not a metric name prefix (letters, digits, _)")
    return text


def _ipv4(text: str) -> str:
    from ..wire import ip_to_bytes
    try:
        ip_to_bytes(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None
    return text


def _netmask(text: str) -> str:
    from ..wire import ip_to_bytes
    try:
        m = int.from_bytes(ip_to_bytes(text), "big")
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None
    inv = ~m & 0xFFFFFFFF
    if inv & (inv + 1) or m == 0:
        raise argparse.ArgumentTypeError(f"{text} is not a netmask (its one bits must be contiguous from the left)")
    return text


def _unicast_mac(text: str) -> str:
    from ..wire.ethernet import parse_mac
    try:
        mac = parse_mac(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None
    if mac[0] & 1:
        kind = "broadcast" if mac == b"\xff" * 6 else "multicast"
        raise argparse.ArgumentTypeError(f"{text} is a {kind} address; a station needs a unicast one "
                                         "(first octet even)")
    if mac == bytes(6):
        raise argparse.ArgumentTypeError("00:00:00:00:00:00 is not a station address")
    return text


def check_network_options(cfg) -> None:
    """The combinations the native stack cannot honour, refused before anything starts."""
    if cfg.get("network_stack") != "native":
        return
    import ipaddress
    host, gw, mask, dhcp = (cfg.get(k) for k in ("host_ipv4_addr", "gw_ipv4_addr", "netmask_ipv4_addr", "dhcp"))
    if dhcp and host:
        raise ValueError("--dhcp and --host-ipv4-addr: choose one (the address comes from DHCP or from you)")
    if dhcp is False and not host:
        raise ValueError("--no-dhcp needs --host-ipv4-addr (no DHCP: the address must be given)")
    if not host:
        if gw or mask:
            raise ValueError("--gw-ipv4-addr and --netmask-ipv4-addr need --host-ipv4-addr (DHCP provides them)")
        return
    net = ipaddress.IPv4Network(f"{host}/{mask or '255.255.255.0'}", strict=False)
    addr = ipaddress.IPv4Address(host)
    if addr.is_multicast or addr.is_unspecified or addr == ipaddress.IPv4Address("255.255.255.255"):
        raise ValueError(f"--host-ipv4-addr {host} is not a host address")
    if net.prefixlen < 31 and addr in (net.network_address, net.broadcast_address):
        raise ValueError(f"--host-ipv4-addr {host} is the {'network' if addr == net.network_address else 'broadcast'} "
                         f"address of {net}")
    if gw:
        g = ipaddress.IPv4Address(gw)
        if g not in net:
            raise ValueError(f"--gw-ipv4-addr {gw} is outside our subnet {net}")
        if g == addr:
            raise ValueError(f"--gw-ipv4-addr {gw} is our own address")


def _percent(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a percentage: {text!r}") from None
    if not 0.0 <= v <= 100.0:
        raise argparse.ArgumentTypeError(f"a percentage is between 0 and 100, not {text}")
    return v


def fault_wrapper(cfg, device):
    """The device behind FaultInjecting when a --fault-* option asks for it."""
    loss, reorder, dup, corrupt = (cfg.get(k, 0.0) or 0.0 for k in ("fault_loss", "fault_reorder", "fault_dup",
                                                                     "fault_corrupt"))
    delay = (cfg.get("fault_delay_ms", 0.0) or 0.0) / 1000.0
    if not (loss or reorder or dup or corrupt or delay):
        return device
    from drivers.base import FaultInjecting
    return FaultInjecting(device, seed=cfg.get("fault_seed", 0) or 0, drop=loss / 100, duplicate=dup / 100,
                          reorder=reorder / 100, corrupt=corrupt / 100, delay=delay)


class NetworkExtension:
    def add_options(self, parser: argparse.ArgumentParser) -> None:
        add_network_options(parser)

    def check_options(self, cfg) -> None:
        check_network_options(cfg)

    def before_fork(self, shards: int, cfg) -> None:
        if shards > 1 and cfg.get("network_stack") == "native":
            # the shards' links and wires must exist before they fork
            from ..sharding import prepare_shards
            prepare_shards(shards, cfg)

    def on_shard_start(self, cfg):
        """With --network-stack native, bring the stack up (and wait for its DHCP
        lease) before the application's function runs, as Seastar's app_template
        does. Every shard runs its share of the stack, whether or not the
        application uses the network there (frames hashed to it must be answered)."""
        if cfg.get("stats_interval"):
            _start_stats_lines(cfg["stats_interval"])
        ready = None
        if cfg.get("network_stack") == "native":
            from .api import network_stack
            ready = network_stack().ready()
        from reactor import this_shard_id
        if cfg.get("prometheus_port") and this_shard_id() == 0:
            from reactor import make_ready_future
            from .metrics import start_metrics_server

            def serve_metrics() -> None:
                _metric_servers.append(start_metrics_server(cfg["prometheus_port"], cfg.get("prometheus_address")
                                                            or "0.0.0.0", cfg.get("prometheus_prefix") or "seastar"))
            ready = (ready or make_ready_future()).then(serve_metrics)
        return ready


def stats_line() -> str:
    """This shard's counters on one line: the reactor's, and the stack's."""
    from reactor import engine, this_shard_id
    r = engine()
    st = r._stats
    parts = [f"shard={this_shard_id()}", f"tasks={st['tasks']}", f"turns={st['turns']}", f"sleeps={st['sleeps']}",
             f"timers={st['timers_fired']}", f"preemptions={st['preemptions']}"]
    stack = r.network_stack
    iface = getattr(stack, "iface", None)
    if iface is not None:
        s = iface.stats()
        drops = sum(v for k, v in s.items() if k.startswith("drop_"))
        parts += [f"rx={s.get('rx_frames', 0)}", f"tx={s.get('tx_frames', 0)}", f"conns={s['tcp_connections']}",
                  f"drops={drops}", f"retransmits={s.get('tcp_retransmits', 0)}"]
    elif stack is not None:
        parts.append(f"fds={len(r._fds)}")
    return "stats " + " ".join(parts)


def _start_stats_lines(interval: float) -> None:
    import sys
    from reactor import Timer

    def tick() -> None:
        print(stats_line(), file=sys.stderr, flush=True)
    t = Timer(tick)
    t.arm_periodic(interval)
    _stats_timers.append(t)       # kept alive for the run


_stats_timers: list = []
_metric_servers: list = []
