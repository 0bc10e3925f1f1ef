"""Interface: one network interface's protocol stack, sans-IO.

    iface = Interface(InterfaceConfig(mac=..., ip=..., seed=1))
    iface.receive_frame(frame, now)        # bytes in
    for frame in iface.frames_to_send(now): ...   # bytes out
    iface.poll_at()                         # when to call frames_to_send again
    iface.pop_events()                      # [(object, Event)] for the socket layer

`receive_frame` never raises for remote input: a malformed or unwanted frame
is a drop counted under its reason in `stats()`. Local misuse (binding a port
twice, sending on a closed endpoint) raises.

Checksums: `receive_frame(..., checksum_verified=True)` says the device has
already validated the L4 checksum (virtio DATA_VALID or NEEDS_CSUM frames),
so it is not recomputed. With `tx_checksum_offload`, outgoing TCP/UDP
segments carry only the pseudo-header sum and `frames_to_send` returns
`TxFrame`s that tell the driver where the checksum goes.

Split by protocol, as smoltcp's iface/interface/ (each module one layer's
rules; the class below only holds the state they share):

  ethernet   receive_frame, the fast TCP parse, software GRO, the Ethernet demux
  arp        ARP's receive rules and retries
  ipv4       destination check, reassembly, protocol demux
  icmp       echo, errors to the connection they quote
  udp        UDP endpoints, DHCP
  tcp        the TCP demux, listeners and SYN cookies, RSTs, connect, a TCB's life
  tx         THE frame builder (per-connection header templates), IP output, ARP queue
  timers     the deadline heap, frames_to_send, poll_at
"""

from __future__ import annotations

from collections import defaultdict

from frames import TxFrame

from ..arp import NeighbourCache
from ..config import InterfaceConfig
from ..ipv4 import Reassembler
from ..tcp import IsnGenerator, SynCookies
from ..tcp.rate import RateLimit
from ..wire import ARP_REQUEST, BROADCAST_MAC
from .arp import ArpInput
from .ethernet import EthernetInput
from .icmp import IcmpInput
from .ipv4 import Ipv4Input
from .tcp import EventSink, TcpLayer
from .timers import Timers
from .tx import NO_MAC, Output, TcpTemplate
from .udp import UdpLayer

__all__ = ["Interface", "TxFrame", "TcpTemplate", "EventSink"]


class Interface(EthernetInput, ArpInput, Ipv4Input, IcmpInput, UdpLayer, TcpLayer, Output, Timers):
    def __init__(self, config: InterfaceConfig, now: float = 0.0) -> None:
        self.cfg = config
        self.mac = config.mac
        self.ip = config.ip
        self.rng = config.rng
        self._mask_int = int.from_bytes(config.netmask, "big")
        self._net = int.from_bytes(config.ip, "big") & self._mask_int
        self.neighbours = NeighbourCache(config.arp_timeout, config.arp_retry, config.arp_retries,
                                         config.arp_queue_limit, config.arp_max_entries, config.arp_max_pending)
        self.reassembler = Reassembler(config.reassembly_timeout, config.reassembly_limit,
                                       config.reassembly_max_datagrams, config.reassembly_max_fragments)
        self.path_mtu: dict = {}          # destination -> (path MTU, expiry), learned from ICMP (RFC 1191)
        self.tx: list = []
        self.counters: dict[str, int] = defaultdict(int)
        self.tcbs: dict = {}
        self._timers: list = []           # heap of (time, n, tcb): when a TCB wants poll()
        self._timer_n = 0
        self._stale_timers = 0            # entries of forgotten TCBs still in the heap (roughly)
        self.listeners: dict = {}
        self.udp: dict = {}
        self.events: list = []           # the same list for good: TCBs hold its append
        self._events_append = self.events.append
        self.dirty: set = set()
        self._dirty_add = self.dirty.add     # one bound method for all TCBs (72 bytes each, made per TCB)
        self.isn = IsnGenerator(config.secrets[:16])
        self.cookies = SynCookies(config.secrets[16:32])
        self.challenge_acks = RateLimit(config.tcp.challenge_ack_limit)
        self.ip_ident = self.rng.getrandbits(16)
        self.ping_replies: list = []      # echo replies received: (src, ident, seq, data)
        self.unreachable_errors: list = []
        self.dhcp = None
        if config.dhcp:
            from ..dhcp import DhcpClient
            self.dhcp = DhcpClient(self.mac, self.rng)
            self.set_address(b"\x00\x00\x00\x00", b"\x00\x00\x00\x00", None)
        elif config.gratuitous_arp and config.answer_arp:
            self._send_arp(ARP_REQUEST, BROADCAST_MAC, NO_MAC, self.ip)

    def set_address(self, ip: bytes, netmask: bytes, gateway: bytes | None) -> None:
        """(Re)configure our address, e.g. from a DHCP lease."""
        self.ip = self.cfg.ip = ip
        self.cfg.netmask = netmask
        self.cfg.gateway = gateway
        self._mask_int = int.from_bytes(netmask, "big")
        self._net = int.from_bytes(ip, "big") & self._mask_int
        if ip != b"\x00\x00\x00\x00" and self.cfg.gratuitous_arp:
            self._send_arp(ARP_REQUEST, BROADCAST_MAC, NO_MAC, ip)

    # ---- stats ----------------------------------------------------------------------
    def drop(self, reason: str) -> None:
        self.counters["drop_" + reason] += 1

    def stats(self) -> dict:
        s = dict(self.counters)
        s["rx_tcp"] = s.get("rx_tcp", 0) + s.get("rx_tcp_fast", 0)   # the fast path counts only its own
        s["tcp_connections"] = len(self.tcbs)
        for tcb in self.tcbs.values():          # live connections' counters, beside the closed ones' totals
            for name, v in tcb.stats.items():
                if v:
                    s["tcp_" + name] = s.get("tcp_" + name, 0) + v
        s["arp_entries"] = len(self.neighbours.entries)
        s["arp_evicted"] = self.neighbours.evicted
        s["challenge_acks_suppressed"] = self.challenge_acks.suppressed
        return s
