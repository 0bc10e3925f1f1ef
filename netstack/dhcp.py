"""A DHCP client (RFC 2131, options RFC 2132), sans-IO.

    client = DhcpClient(mac, rng)
    for payload in client.poll(now): send it as UDP 0.0.0.0:68 -> 255.255.255.255:67
    client.receive(payload, now)       # a UDP datagram that arrived on port 68
    client.lease                       # a Lease once bound, else None

States: INIT -> SELECTING (DISCOVER sent) -> REQUESTING (REQUEST sent after an
OFFER) -> BOUND (ACK). A NAK, or no answer after `retries` tries, starts over.
At T1 (half the lease) the client renews with a REQUEST for the same address.
Requests set the BROADCAST flag, so servers answer to 255.255.255.255 and
the interface, which has no address yet, can hear them.
"""

from __future__ import annotations

import logging
import socket
import struct
from typing import NamedTuple

from .wire import MalformedPacket
from .events import EV_DHCP_BOUND, EV_DHCP_LOST, EV_DHCP_RENEWED

_log = logging.getLogger("dhcp")

DISCOVER, OFFER, REQUEST, DECLINE, ACK, NAK, RELEASE = 1, 2, 3, 4, 5, 6, 7
MAGIC = b"\x63\x82\x53\x63"
OPT_SUBNET, OPT_ROUTER, OPT_DNS, OPT_REQUESTED_IP, OPT_LEASE, OPT_MSG_TYPE, OPT_SERVER_ID = 1, 3, 6, 50, 51, 53, 54
OPT_PARAMS, OPT_END, OPT_PAD = 55, 255, 0
_FIXED = struct.Struct("!BBBBIHH4s4s4s4s16s64s128s")


class Lease(NamedTuple):
    ip: bytes
    netmask: bytes
    router: bytes | None
    server: bytes
    lease_time: int
    dns: tuple


def build(msg_type: int, xid: int, mac: bytes, ciaddr: bytes = b"\0" * 4, options: dict | None = None) -> bytes:
    fixed = _FIXED.pack(1, 1, 6, 0, xid, 0, 0x8000, ciaddr, b"\0" * 4, b"\0" * 4, b"\0" * 4,
                        mac.ljust(16, b"\0"), b"", b"")
    opts = bytes([OPT_MSG_TYPE, 1, msg_type])
    for code, value in (options or {}).items():
        opts += bytes([code, len(value)]) + value
    opts += bytes([OPT_PARAMS, 3, OPT_SUBNET, OPT_ROUTER, OPT_DNS, OPT_END])
    return fixed + MAGIC + opts


def parse(payload) -> tuple[int, int, bytes, bytes, dict]:
    """(op, xid, yiaddr, chaddr, options) of a DHCP message."""
    if len(payload) < _FIXED.size + 4:
        raise MalformedPacket("dhcp_truncated")
    op, _htype, _hlen, _hops, xid, _secs, _flags, _ci, yiaddr, _si, _gi, chaddr, _s, _f = \
        _FIXED.unpack_from(payload, 0)
    if bytes(payload[_FIXED.size:_FIXED.size + 4]) != MAGIC:
        raise MalformedPacket("dhcp_bad_magic")
    opts = {}
    i = _FIXED.size + 4
    n = len(payload)
    while i < n:
        code = payload[i]
        if code == OPT_END:
            break
        if code == OPT_PAD:
            i += 1
            continue
        if i + 1 >= n or i + 2 + payload[i + 1] > n:
            raise MalformedPacket("dhcp_bad_option")
        ln = payload[i + 1]
        value = bytes(payload[i + 2:i + 2 + ln])
        if not _OPTION_LENGTH_OK.get(code, _any_length)(ln):
            raise MalformedPacket("dhcp_bad_option_length")
        opts[code] = value
        i += 2 + ln
    return op, xid, yiaddr, chaddr[:6], opts


def _any_length(n: int) -> bool:
    return True


# RFC 2132: the lengths the options we read must have (a server that sends a
# 0-byte message type or a 3-byte netmask gets a counted drop, never a crash
# or a mangled address)
_OPTION_LENGTH_OK = {
    OPT_MSG_TYPE: lambda n: n == 1,
    OPT_SERVER_ID: lambda n: n == 4,
    OPT_SUBNET: lambda n: n == 4,
    OPT_LEASE: lambda n: n == 4,
    OPT_ROUTER: lambda n: n >= 4 and n % 4 == 0,
    OPT_DNS: lambda n: n >= 4 and n % 4 == 0,
}


class DhcpClient:
    def __init__(self, mac: bytes, rng, retry: float = 1.0, retries: int = 4) -> None:
        self.mac = mac
        self.rng = rng
        self.retry = retry
        self.retries = retries
        self.state = "INIT"
        self.xid = 0
        self.offer = None
        self.lease: Lease | None = None
        self.next_at = 0.0
        self.tries = 0
        self.bound_at = 0.0
        self.out: list = []
        self.events: list = []      # EV_DHCP_BOUND, EV_DHCP_RENEWED, EV_DHCP_LOST

    def poll_at(self):
        return 0.0 if self.out else self.next_at

    def poll(self, now: float) -> list:
        """Payloads to broadcast from port 68 to 255.255.255.255:67."""
        if now >= self.next_at:
            if self.state in ("INIT", "SELECTING") or (self.state == "REQUESTING" and self.tries >= self.retries):
                self._discover(now)
            elif self.state == "REQUESTING":
                self._request(now)
            elif self.state == "BOUND":
                self.state = "RENEWING"
                self.tries = 0
                self._request(now)
            elif self.state == "RENEWING":
                if now - self.bound_at >= self.lease.lease_time:
                    _log.warning("lease of %s lost: no answer before it expired", socket.inet_ntoa(self.lease.ip))
                    self.events.append(EV_DHCP_LOST)
                    self.lease = None
                    self.state = "INIT"
                    self._discover(now)
                else:
                    self._request(now)
        out, self.out = self.out, []
        return out

    def _backoff(self, now: float) -> None:
        self.tries += 1
        self.next_at = now + self.retry * (2 ** min(self.tries - 1, 5))

    def _discover(self, now: float) -> None:
        if self.state != "SELECTING" or self.tries >= self.retries:
            self.xid = self.rng.getrandbits(32)
            self.tries = 0
        self.state = "SELECTING"
        self.out.append(build(DISCOVER, self.xid, self.mac))
        self._backoff(now)

    def _request(self, now: float) -> None:
        if self.state == "RENEWING":
            lease = self.lease
            opts = {OPT_REQUESTED_IP: lease.ip, OPT_SERVER_ID: lease.server}
        else:
            ip, server = self.offer
            opts = {OPT_REQUESTED_IP: ip, OPT_SERVER_ID: server}
        self.out.append(build(REQUEST, self.xid, self.mac, options=opts))
        self._backoff(now)

    def receive(self, payload, now: float) -> None:
        op, xid, yiaddr, chaddr, opts = parse(payload)
        if op != 2 or xid != self.xid or chaddr != self.mac:
            return
        mtype = opts.get(OPT_MSG_TYPE, b"\0")[0]
        server = opts.get(OPT_SERVER_ID)
        if mtype == OFFER and self.state == "SELECTING" and server:
            self.offer = (yiaddr, server)
            self.state = "REQUESTING"
            self.tries = 0
            self._request(now)
        elif mtype == ACK and self.state in ("REQUESTING", "RENEWING"):
            lease_time = struct.unpack("!I", opts[OPT_LEASE])[0] if len(opts.get(OPT_LEASE, b"")) == 4 else 3600
            router = opts.get(OPT_ROUTER)
            dns = opts.get(OPT_DNS, b"")
            self.lease = Lease(yiaddr, opts.get(OPT_SUBNET, b"\xff\xff\xff\x00"),
                               router[:4] if router and len(router) >= 4 else None,
                               server or self.offer[1], lease_time,
                               tuple(dns[i:i + 4] for i in range(0, len(dns) - 3, 4)))
            self.events.append(EV_DHCP_RENEWED if self.state == "RENEWING" else EV_DHCP_BOUND)
            _log.info("lease %s %s/%s for %d s from %s", "renewed" if self.state == "RENEWING" else "bound",
                      socket.inet_ntoa(yiaddr), socket.inet_ntoa(self.lease.netmask), lease_time,
                      socket.inet_ntoa(self.lease.server) if self.lease.server else "?")
            self.state = "BOUND"
            self.bound_at = now
            self.tries = 0
            self.next_at = now + lease_time / 2   # T1 (RFC 2131 4.4.5)
        elif mtype == NAK and self.state in ("REQUESTING", "RENEWING"):
            self.lease = None
            self.state = "INIT"
            self.tries = 0
            self.next_at = now
            self.events.append(EV_DHCP_LOST)
