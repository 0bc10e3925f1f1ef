"""Configuration of one Interface (one per shard)."""

from __future__ import annotations

import os
import random
from dataclasses import dataclass, field

from .wire import ip_to_bytes, parse_mac


__all__ = ["TcpConfig", "InterfaceConfig"]


@dataclass
class TcpConfig:
    mss: int | None = None             # default: MTU - 40
    recv_buffer: int = 1 << 20         # receive buffer (bytes) -> advertised window
    send_buffer: int = 1 << 20         # send buffer limit (bytes) -> writer backpressure
    recv_buffer_initial: int | None = None   # auto-tuning, as Linux's (off: None, the buffers are fixed, as a
    send_buffer_initial: int | None = None   # socket with SO_RCVBUF/SO_SNDBUF set). Set: a connection's receive
                                       # budget starts here (at least 65535) and grows each RTT to about twice
                                       # what the application read in the last one (tcp_rcv_space_adjust); its
                                       # send limit starts here and grows to twice the congestion window
                                       # (tcp_sndbuf_expand). Neither shrinks, neither passes recv_buffer /
                                       # send_buffer, which also choose the window scale.
    window_scale: bool = True
    wscale: int | None = None          # our window scale shift; None: the smallest that covers recv_buffer
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
    fin_timeout: float = 60.0          # an orphaned FIN-WAIT-2 (the application closed it, the peer
                                       # ACKed our FIN and sent none of its own) ends after this
                                       # (Linux's tcp_fin_timeout); 0 = wait for ever (RFC 9293)
    keepalive_idle: float = 7200.0
    keepalive_interval: float = 75.0
    keepalive_count: int = 9
    ooo_limit: int | None = None       # bytes of out-of-order data kept; None: the connection's receive
                                       # buffer -- what its window may offer (a smaller limit drops in-window data)
    syn_backlog: int = 256
    syn_cookies: bool | str = True     # answer SYNs statelessly once the SYN queue is full (RFC 4987);
                                       # "always": for every SYN (Linux's tcp_syncookies=2)
    initial_cwnd_segments: int = 10    # RFC 6928
    frto: bool = True                  # detect spurious retransmission timeouts (RFC 5682)
    dsack_undo: bool = False           # undo a recovery's window reduction when D-SACKs show every
                                       # retransmission unneeded. Off: on LinkPair at 5% loss, 5%
                                       # reordering it measured 1.3-3.7 vs 1.9-4.0 MB/s (newreno, seeds 1-3)
    challenge_ack_limit: int = 100     # challenge ACKs per second, per stack (RFC 5961 7; Linux's first limit)
    user_timeout: float = 0.0          # RFC 5482 / TCP_USER_TIMEOUT: 0 = off


@dataclass
class InterfaceConfig:
    mac: bytes
    ip: bytes | str                      # '192.0.2.2' or 4 bytes (bytes after __post_init__)
    netmask: bytes | str = b"\xff\xff\xff\x00"
    gateway: bytes | str | None = None
    mtu: int = 1500
    seed: int | None = None
    arp_timeout: float = 60.0          # a neighbour entry's lifetime
    arp_retry: float = 1.0             # between requests for the same address
    arp_retries: int = 3               # then waiting packets fail
    arp_queue_limit: int = 64          # packets waiting for one address
    reassembly_timeout: float = 30.0
    reassembly_limit: int = 4 << 20    # bytes held in partial datagrams (each fragment also costs
                                       # REASSEMBLY_OVERHEAD bytes: empty fragments are not free)
    reassembly_max_datagrams: int = 256    # partial datagrams at once (the oldest is evicted)
    reassembly_max_fragments: int = 64     # fragments of one datagram (more: it is dropped)
    arp_max_entries: int = 1024        # neighbour table size (least recently used evicted)
    arp_max_pending: int = 256         # addresses being resolved at once
    pmtu_min: int = 552                # never believe a path MTU below this (Linux's min_pmtu)
    pmtu_expiry: float = 600.0         # a learned path MTU is forgotten after this (RFC 1191 6.3)
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
    secrets: bytes | None = None       # 32 bytes: ISN key, then SYN-cookie key

    def __post_init__(self) -> None:
        if isinstance(self.mac, str):
            self.mac = parse_mac(self.mac)
        self.ip = ip_to_bytes(self.ip)
        self.netmask = ip_to_bytes(self.netmask)
        if self.gateway is not None:
            self.gateway = ip_to_bytes(self.gateway)
        seeded = self.seed is not None or self.rng is not None
        if self.rng is None:
            self.rng = random.Random(self.seed)
        # The ISN and SYN-cookie secrets: from the OS's randomness, unless the run
        # is seeded (reproducible replays: then drawn first from the seeded rng, as
        # they always were). Never from an unseeded rng: a Mersenne Twister is
        # recoverable from its outputs, and IP ids and ports are outputs.
        if self.secrets is None:
            if seeded:
                self.secrets = self.rng.getrandbits(128).to_bytes(16, "big") + \
                    self.rng.getrandbits(128).to_bytes(16, "big")
            else:
                self.secrets = os.urandom(32)
        if self.tcp.mss is None:
            self.tcp.mss = self.mtu - 40
