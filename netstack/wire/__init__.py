"""Wire formats: one module per header.

Each header has a Repr (an immutable NamedTuple: cheap to build on the per-packet
path, `_replace()` for tests) with `parse(buf)` that checks lengths before it
reads a field and raises `MalformedPacket(reason)`, and `emit()` producing bytes.
Offsets live in module-level `struct.Struct`s.
"""

from .checksum import MalformedPacket, internet_checksum, ones_sum, pseudo_header_sum
from .ethernet import ETHERTYPE_ARP, ETHERTYPE_IPV4, BROADCAST_MAC, EthernetRepr, format_mac, parse_mac
from .arp import ARP_REPLY, ARP_REQUEST, ArpRepr
from .ipv4 import IP_PROTO_ICMP, IP_PROTO_TCP, IP_PROTO_UDP, Ipv4Repr, ip_to_bytes, ip_to_str
from .icmp import IcmpRepr
from .udp import UdpRepr
from .tcp import TcpFlags, TcpRepr
from .seq import Seq, seq_add, seq_ge, seq_gt, seq_le, seq_lt, seq_max, seq_min, seq_sub

__all__ = [
    "MalformedPacket", "internet_checksum", "ones_sum", "pseudo_header_sum",
    "EthernetRepr", "ETHERTYPE_ARP", "ETHERTYPE_IPV4", "BROADCAST_MAC", "format_mac", "parse_mac",
    "ArpRepr", "ARP_REQUEST", "ARP_REPLY",
    "Ipv4Repr", "IP_PROTO_ICMP", "IP_PROTO_TCP", "IP_PROTO_UDP", "ip_to_bytes", "ip_to_str",
    "IcmpRepr", "UdpRepr", "TcpRepr", "TcpFlags",
    "Seq", "seq_add", "seq_sub", "seq_lt", "seq_le", "seq_gt", "seq_ge", "seq_max", "seq_min",
]
