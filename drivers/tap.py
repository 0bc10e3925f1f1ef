"""TAP devices (/dev/net/tun) with virtio-net headers and offloads.

With IFF_VNET_HDR every frame carries a 10-byte virtio_net_hdr (host byte
order). On receive, NEEDS_CSUM or DATA_VALID means the kernel vouches for the
L4 checksum (a NEEDS_CSUM frame's checksum field holds only the pseudo-header
sum: it must not be verified). With TUNSETOFFLOAD(TSO4|TSO6) the kernel hands
us GSO super-frames of up to 64 KB ("LRO"). On send, NEEDS_CSUM lets the
kernel fill in the TCP/UDP checksum, and GSO_TCPV4 lets us write one 64 KB
segment that the kernel splits ("TSO"). Facts measured on these machines:
../shared/probes/FINDINGS.md, section 2.
"""

from __future__ import annotations

import errno
import fcntl
import os
import struct

from frames import Gather, buffers  # noqa: F401 - payload pieces of TxFrames

from .base import Device

TUNSETIFF = 0x400454CA
TUNSETOFFLOAD = 0x400454D0
TUNSETVNETHDRSZ = 0x400454D8
SIOCGIFTXQLEN = 0x8942
SIOCSIFTXQLEN = 0x8943
DEFAULT_QUEUE_LEN = 10000       # frames the kernel may queue for us (its own default: 1000)
IFF_TAP = 0x0002
IFF_NO_PI = 0x1000
IFF_VNET_HDR = 0x4000
IFF_MULTI_QUEUE = 0x0100
TUN_F_CSUM = 0x01
TUN_F_TSO4 = 0x02
TUN_F_TSO6 = 0x04
TUN_F_TSO_ECN = 0x08

VNET_HDR = struct.Struct("<BBHHHH")
VNET_HDR_LEN = VNET_HDR.size
NEEDS_CSUM = 1
DATA_VALID = 2
GSO_NONE = 0
GSO_TCPV4 = 1
_ZERO_HDR = bytes(VNET_HDR_LEN)
READ_SIZE = 65536 + VNET_HDR_LEN + 64


def vnet_header(f) -> bytes:
    """The virtio_net_hdr for a frame (bytes, or a TxFrame with offload metadata)."""
    start = getattr(f, "csum_start", 0)
    gso = getattr(f, "gso_size", 0)
    if not start and not gso:
        return _ZERO_HDR
    data = f.data
    if gso:
        ihl = (data[14] & 0x0F) * 4
        thl = (data[14 + ihl + 12] >> 4) * 4
        return VNET_HDR.pack(NEEDS_CSUM, GSO_TCPV4, 14 + ihl + thl, gso, start, f.csum_offset)
    return VNET_HDR.pack(NEEDS_CSUM, GSO_NONE, 0, 0, start, f.csum_offset)


def set_queue_len(name: str, n: int) -> int:
    """Raise the interface's txqueuelen to n (never lower it); returns the length
    in force (unchanged without CAP_NET_ADMIN)."""
    import socket
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        cur = struct.unpack_from("16si", fcntl.ioctl(s.fileno(), SIOCGIFTXQLEN, struct.pack("16si20x", name.encode(), 0)))[1]
        if cur >= n:
            return cur
        try:
            fcntl.ioctl(s.fileno(), SIOCSIFTXQLEN, struct.pack("16si20x", name.encode(), n))
        except PermissionError:
            return cur
        return n


class TapDevice(Device):
    def __init__(self, name: str = "tap0", mac: bytes | None = None, mtu: int = 1500, vnet_hdr: bool = True,
                 csum_offload: bool = True, tso: bool = True, lro: bool = True, multi_queue: bool = False,
                 queue_len: int = DEFAULT_QUEUE_LEN) -> None:
        flags = IFF_TAP | IFF_NO_PI | (IFF_VNET_HDR if vnet_hdr else 0) | (IFF_MULTI_QUEUE if multi_queue else 0)
        self.fd = os.open("/dev/net/tun", os.O_RDWR | os.O_NONBLOCK | os.O_CLOEXEC)
        try:
            res = fcntl.ioctl(self.fd, TUNSETIFF, struct.pack("16sH22x", name.encode(), flags))
            self.name = res[:16].rstrip(b"\0").decode()
            self.vnet = vnet_hdr
            offload = 0
            if vnet_hdr:
                fcntl.ioctl(self.fd, TUNSETVNETHDRSZ, struct.pack("i", VNET_HDR_LEN))
                if csum_offload:
                    offload |= TUN_F_CSUM
                    if lro:
                        offload |= TUN_F_TSO4 | TUN_F_TSO6 | TUN_F_TSO_ECN
                fcntl.ioctl(self.fd, TUNSETOFFLOAD, offload)
        except OSError:
            os.close(self.fd)
            raise
        # The kernel's side queues at most txqueuelen frames for us and drops the
        # rest (counted as the device's TX drops): at its default of 1000, a burst
        # of 3,000 connects lost SYNs while the stack was busy, each a second's wait
        # for its client. Raised when we may (0: leave it as it is).
        self.queue_len = set_queue_len(self.name, queue_len) if queue_len else queue_len
        self.mac = mac or b"\x02" + os.urandom(5)
        self.mtu = mtu
        self.rx_checksum = vnet_hdr and csum_offload
        self.tx_checksum = vnet_hdr and csum_offload
        self.tso = vnet_hdr and csum_offload and tso
        self.lro = vnet_hdr and csum_offload and lro
        self.counters = {"rx_frames": 0, "tx_frames": 0, "rx_bytes": 0, "tx_bytes": 0, "rx_gso": 0,
                         "tx_gso": 0, "tx_errors": 0, "reads": 0}

    def fileno(self) -> int:
        return self.fd

    def recv_batch(self, n: int = 64) -> list:
        out = []
        fd = self.fd
        vnet = self.vnet
        c = self.counters
        for _ in range(n):
            try:
                data = os.read(fd, READ_SIZE)
            except BlockingIOError:
                break
            c["reads"] += 1
            if vnet:
                flags, gso_type = data[0], data[1]
                if gso_type:
                    c["rx_gso"] += 1
                out.append((memoryview(data)[VNET_HDR_LEN:], bool(flags & (NEEDS_CSUM | DATA_VALID))))
                c["rx_bytes"] += len(data) - VNET_HDR_LEN
            else:
                out.append((data, False))
                c["rx_bytes"] += len(data)
        c["rx_frames"] += len(out)
        return out

    def send_batch(self, frames) -> int:
        fd = self.fd
        c = self.counters
        sent = 0
        for f in frames:
            try:
                if hasattr(f, "data"):
                    hdr = vnet_header(f) if self.vnet else b""
                    if self.vnet and hdr[1]:
                        c["tx_gso"] += 1
                    os.writev(fd, (hdr, f.data, *buffers(f.payload)))   # the payload is never copied
                    c["tx_bytes"] += len(f.data) + len(f.payload)
                else:
                    os.writev(fd, (_ZERO_HDR, f)) if self.vnet else os.write(fd, f)
                    c["tx_bytes"] += len(f)
                sent += 1
            except OSError as e:
                if e.errno not in (errno.EAGAIN, errno.ENOBUFS, errno.EIO, errno.EINVAL):
                    raise
                c["tx_errors"] += 1
        c["tx_frames"] += sent
        return sent

    def recv_raw(self, n: int = 64) -> list:
        """[(virtio_net_hdr, frame, b"")]: frames with their offload metadata, for
        relaying to a ring (drivers.bridge). Needs the vnet header."""
        out = []
        fd = self.fd
        for _ in range(n):
            try:
                data = os.read(fd, READ_SIZE)
            except BlockingIOError:
                break
            mv = memoryview(data)
            out.append((mv[:VNET_HDR_LEN], mv[VNET_HDR_LEN:], b""))
        self.counters["rx_frames"] += len(out)
        return out

    def write_raw(self, hdr: bytes, frame) -> None:
        """Write a frame with a virtio_net_hdr prepared elsewhere (relayed frames)."""
        try:
            os.writev(self.fd, (hdr, frame) if self.vnet else (frame,))
            self.counters["tx_frames"] += 1
        except OSError as e:
            if e.errno not in (errno.EAGAIN, errno.ENOBUFS, errno.EIO, errno.EINVAL):
                raise
            self.counters["tx_errors"] += 1

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def stats(self) -> dict:
        return dict(self.counters)
