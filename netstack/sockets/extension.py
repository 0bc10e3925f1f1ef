"""The network stack as an app_template extension: its options, the shard
wiring made before the fork, and the stack brought up on every shard before
the application starts (registered through the "pyseastar.app_extensions"
entry point, so the reactor imports nothing of the network)."""

from __future__ import annotations

import argparse

__all__ = ["NetworkExtension", "add_network_options", "fault_wrapper"]


def add_network_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("Network options")
    g.add_argument("--network-stack", choices=("posix", "native"), default="posix",
                   help="posix: the kernel's sockets; native: our userspace TCP/IP stack")
    g.add_argument("--tap-device", default="tap0", help="TAP device for the native stack")
    g.add_argument("--dev", default=None, help="interface for AF_PACKET (native stack) instead of a TAP")
    g.add_argument("--host-ipv4-addr", default=None, help="our IPv4 address (native)")
    g.add_argument("--gw-ipv4-addr", default=None, help="gateway IPv4 address (native)")
    g.add_argument("--netmask-ipv4-addr", default=None, help="netmask (native)")
    g.add_argument("--dhcp", action=argparse.BooleanOptionalAction, default=None,
                   help="obtain the address by DHCP (default unless --host-ipv4-addr is given)")
    g.add_argument("--hw-address", default=None, help="MAC address of the native stack")
    g.add_argument("--pcap-out", default=None, help="record every frame to this pcap file")
    g.add_argument("--csum-offload", action=argparse.BooleanOptionalAction, default=True)
    g.add_argument("--tso", action=argparse.BooleanOptionalAction, default=True)
    g.add_argument("--lro", action=argparse.BooleanOptionalAction, default=True)
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
    g.add_argument("--stack-seed", type=int, default=None,
                   help="seed for the stack's randomness (ISNs, IP ids, ports): reproducible runs")
    f = p.add_argument_group("Fault injection (native stack: impairs the frames it receives)")
    f.add_argument("--fault-loss", type=_percent, default=0.0, metavar="PCT", help="drop this %% of frames")
    f.add_argument("--fault-reorder", type=_percent, default=0.0, metavar="PCT",
                   help="swap this %% of received batches' frames with a neighbour")
    f.add_argument("--fault-dup", type=_percent, default=0.0, metavar="PCT", help="duplicate this %% of frames")
    f.add_argument("--fault-corrupt", type=_percent, default=0.0, metavar="PCT",
                   help="flip one byte in this %% of frames")
    f.add_argument("--fault-delay-ms", type=_non_negative, default=0.0, metavar="MS",
                   help="hold every received frame back this long")
    f.add_argument("--fault-seed", type=int, default=0, help="seed of the impairments (reproducible runs)")
    g.add_argument("--print-net-stats", action="store_true",
                   help="print the network stack's counters (one JSON line on stderr) at exit")


def _percent(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a percentage: {text!r}") from None
    if not 0.0 <= v <= 100.0:
        raise argparse.ArgumentTypeError(f"a percentage is between 0 and 100, not {text}")
    return v


def _non_negative(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not v >= 0.0:
        raise argparse.ArgumentTypeError(f"must be >= 0, not {text}")
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
        if cfg.get("network_stack") != "native":
            return None
        from .api import network_stack
        return network_stack().ready()
