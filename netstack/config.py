"""Configuration of one Interface (one per shard)."""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from .wire import ip_to_bytes, parse_mac


@dataclass
class TcpConfig:
    mss: int | None = None             # default: MTU - 40
    recv_buffer: int = 1 << 20         # receive buffer (bytes) -> advertised window
    send_buffer: int = 1 << 20         # send buffer limit (bytes) -> writer backpressure
    window_scale: bool = True
    timestamps: bool = True
    sack: bool = True
    congestion: str = "newreno"        # or "cubic"
    rto_initial: float = 1.0           # RFC 6298 (2.1)
    rto_min: float = 0.2               # Linux's floor (RFC 6298 suggests 1 s)
    rto_max: float = 60.0              # RFC 6298 (2.5)
    max_retries: int = 15              # data retransmissions before ETIMEDOUT
    syn_retries: int = 6
    delayed_ack: float = 0.04          # at most 200 ms (RFC 1122 4.2.3.2)
    time_wait: float = 60.0            # 2*MSL
    keepalive_idle: float = 7200.0
    keepalive_interval: float = 75.0
    keepalive_count: int = 9
    ooo_limit: int = 1 << 20           # bytes of out-of-order data kept
    syn_backlog: int = 256
    syn_cookies: bool = True           # answer SYNs statelessly once the SYN queue is full (RFC 4987)
    initial_cwnd_segments: int = 10    # RFC 6928


@dataclass
class InterfaceConfig:
    mac: bytes
    ip: bytes
    netmask: bytes = b"\xff\xff\xff\x00"
    gateway: bytes | None = None
    mtu: int = 1500
    seed: int | None = None
    arp_timeout: float = 60.0          # a neighbour entry's lifetime
    arp_retry: float = 1.0             # between requests for the same address
    arp_retries: int = 3               # then waiting packets fail
    arp_queue_limit: int = 64          # packets waiting for one address
    reassembly_timeout: float = 30.0
    reassembly_limit: int = 4 << 20    # bytes held in partial datagrams
    udp_queue_limit: int = 1024        # datagrams queued per endpoint
    ephemeral_ports: tuple = (32768, 60999)
    tx_checksum_offload: bool = False  # leave L4 checksums to the device (NEEDS_CSUM)
    tso_max: int = 0                   # > MSS: TCP may emit segments this large (device TSO)
    gratuitous_arp: bool = True
    dhcp: bool = False                 # obtain ip/netmask/gateway with DHCP (ip starts as 0.0.0.0)
    answer_arp: bool = True            # False on shards other than 0: they learn, shard 0 answers
    port_filter: object = None         # fn(local_port, remote_ip, remote_port) -> bool for connect()
    tcp: TcpConfig = field(default_factory=TcpConfig)
    rng: random.Random = None  # type: ignore[assignment]

    def __post_init__(self) -> None:
        if isinstance(self.mac, str):
            self.mac = parse_mac(self.mac)
        self.ip = ip_to_bytes(self.ip)
        self.netmask = ip_to_bytes(self.netmask)
        if self.gateway is not None:
            self.gateway = ip_to_bytes(self.gateway)
        if self.rng is None:
            self.rng = random.Random(self.seed)
        if self.tcp.mss is None:
            self.tcp.mss = self.mtu - 40
