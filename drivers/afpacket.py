"""AF_PACKET raw sockets bound to one interface (a veth end or a NIC), with
PACKET_VNET_HDR offloads as on a TAP (FINDINGS.md section 4).

The kernel's own stack must not answer for the address our stack uses on that
interface: give the interface no kernel address (a dedicated veth end, or a
namespace of its own), or the kernel will send RSTs and ICMP errors for our
connections. PACKET_FANOUT (for shards) is set with `fanout(group, mode)`.
"""

from __future__ import annotations

import errno
import os
import socket
import struct

from frames import Gather, TxFrame, buffers  # noqa: F401 - payload pieces of TxFrames

from .base import Device
from .tap import DATA_VALID, NEEDS_CSUM, VNET_HDR_LEN, _ZERO_HDR, vnet_header

SOL_PACKET = 263
PACKET_VNET_HDR = 15
PACKET_FANOUT = 18
PACKET_IGNORE_OUTGOING = 23
PACKET_STATISTICS = 6
SO_RCVBUFFORCE = 33
RCVBUF = 4 << 20        # the kernel's default (rmem_default, ~200 KB) holds ~90 frames: a few ms at line rate
PACKET_FANOUT_HASH = 0
PACKET_FANOUT_CPU = 2
PACKET_FANOUT_QM = 5
PACKET_FANOUT_CBPF = 6
ETH_P_ALL = 0x0003
RX_FRAME_MAX = 65536 + VNET_HDR_LEN + 64     # a 64 KB GSO frame and its header

# sendmmsg/recvmmsg (drivers/_mmsg.c, built by setup.py when a compiler is there):
# a batch of frames in one system call each way. The per-frame loops below stay the
# reference and the fallback; PYSEASTAR_PURE_PYTHON=1 selects them.
try:
    from . import _mmsg
except ImportError:      # no compiler at install time
    _mmsg = None
if os.environ.get("PYSEASTAR_PURE_PYTHON"):
    _mmsg = None


class AfPacketDevice(Device):
    def __init__(self, ifname: str, mac: bytes | None = None, mtu: int = 1500, vnet_hdr: bool = True,
                 rcvbuf: int = RCVBUF) -> None:
        self.sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
        try:
            # a receive buffer that holds a window's worth of frames: with the default one a
            # sender that paces at the path's rate (BBR) overran it whenever the stack paused
            # for a few ms -- drops the peer then repaired at a 25% retransmission rate
            try:
                self.sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, rcvbuf)     # root: past rmem_max
            except OSError:
                self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
            if vnet_hdr:
                self.sock.setsockopt(SOL_PACKET, PACKET_VNET_HDR, 1)
            try:
                self.sock.setsockopt(SOL_PACKET, PACKET_IGNORE_OUTGOING, 1)
            except OSError:
                pass
            self.sock.bind((ifname, 0))
            self.sock.setblocking(False)
        except OSError:
            self.sock.close()
            raise
        self.ifname = ifname
        self.vnet = vnet_hdr
        self.mac = mac or self.sock.getsockname()[4]
        self.mtu = mtu
        self.rx_checksum = self.tx_checksum = self.tso = self.lro = vnet_hdr
        self.counters = {"rx_frames": 0, "tx_frames": 0, "rx_bytes": 0, "tx_bytes": 0, "tx_errors": 0,
                         "rx_kernel_drops": 0}

    def fanout(self, group: int, mode: int = PACKET_FANOUT_HASH) -> None:
        self.sock.setsockopt(SOL_PACKET, PACKET_FANOUT, (group & 0xFFFF) | (mode << 16))

    def fileno(self) -> int:
        return self.sock.fileno()

    def recv_batch(self, n: int = 64) -> list:
        if _mmsg is not None:
            frames = _mmsg.recv_many(self.sock.fileno(), n, RX_FRAME_MAX)
        else:
            frames = []
            for _ in range(n):
                try:
                    frames.append(self.sock.recv(RX_FRAME_MAX))
                except BlockingIOError:
                    break
        nbytes = sum(map(len, frames))
        if self.vnet:
            out = [(memoryview(data)[VNET_HDR_LEN:], bool(data[0] & (NEEDS_CSUM | DATA_VALID))) for data in frames]
            nbytes -= VNET_HDR_LEN * len(out)
        else:
            out = [(data, False) for data in frames]
        c = self.counters
        c["rx_frames"] += len(out)
        c["rx_bytes"] += nbytes
        return out

    def send_batch(self, frames) -> int:
        hdr = VNET_HDR_LEN if self.vnet else 0
        if _mmsg is not None:
            # a TxFrame as its pieces (virtio-net header, headers, payload parts); other
            # frames whole, the zero header put in front of each by send_many
            msgs = [f if f.__class__ is not TxFrame else
                    ((vnet_header(f), f.data, *buffers(f.payload)) if self.vnet else (f.data, *buffers(f.payload)))
                    for f in frames]
            sent, nbytes, errors = _mmsg.send_many(self.sock.fileno(), msgs, _ZERO_HDR if self.vnet else None)
            nbytes -= hdr * sent
        else:
            sent = nbytes = errors = 0
            for f in frames:
                try:
                    if f.__class__ is TxFrame:
                        parts = [f.data, *buffers(f.payload)] if f.payload else [f.data]
                        nbytes += self.sock.sendmsg(([vnet_header(f)] if self.vnet else []) + parts) - hdr
                    elif self.vnet:
                        nbytes += self.sock.sendmsg([_ZERO_HDR, f]) - hdr
                    else:
                        nbytes += self.sock.send(f)
                    sent += 1
                except OSError as e:
                    if e.errno not in (errno.EAGAIN, errno.ENOBUFS, errno.EMSGSIZE):
                        raise
                    errors += 1
        c = self.counters
        c["tx_errors"] += errors
        c["tx_frames"] += sent
        c["tx_bytes"] += nbytes
        return sent

    def close(self) -> None:
        self.sock.close()

    def stats(self) -> dict:
        """The counters, with the frames the kernel dropped for want of room in
        the socket's buffer (PACKET_STATISTICS, which resets on each read)."""
        try:
            _packets, drops = struct.unpack("II", self.sock.getsockopt(SOL_PACKET, PACKET_STATISTICS, 8))
            self.counters["rx_kernel_drops"] += drops
        except OSError:
            pass
        return dict(self.counters)
