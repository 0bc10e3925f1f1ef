"""The frame contract between the protocol core and the devices: `TxFrame`
(a frame with its offload metadata) and `Gather` (bytes kept as several
buffers). Both `netstack` and `drivers` import it; it imports nothing of
theirs.

Gather: bytes kept as several buffers.

A TCP segment's payload often spans two chunks of the send buffer (the
application wrote 64 KiB, a TSO segment carries 64,000 bytes). When the
payload goes to an offloading device untouched, joining the chunks would copy
64 KB per frame for nothing: a Gather keeps the pieces, and the drivers hand
them to one gathering write (writev / sendmsg). len() is the total; bytes()
joins (for the paths that need one buffer: software checksums, pcap records).
"""

from __future__ import annotations

from typing import NamedTuple

__all__ = ["Gather", "TxFrame", "buffers"]


class Gather:
    __slots__ = ("parts", "size")

    def __init__(self, parts) -> None:
        self.parts = tuple(parts)
        self.size = sum(len(p) for p in self.parts)

    def __len__(self) -> int:
        return self.size

    def __bool__(self) -> bool:
        return self.size > 0

    def __bytes__(self) -> bytes:
        return b"".join(self.parts)

    def __repr__(self) -> str:
        return f"Gather({len(self.parts)} parts, {self.size} bytes)"


def buffers(payload) -> tuple:
    """The payload as a tuple of buffers (for writev / sendmsg)."""
    return payload.parts if payload.__class__ is Gather else (payload,)


class TxFrame(NamedTuple):
    """A frame plus what an offloading driver needs: where the L4 checksum
    starts and where it is stored (0, 0: complete), and the TSO segment size
    (0: no segmentation). The frame is `data` followed by `payload`: headers and
    a payload kept apart so a gathering write (writev) sends the payload
    without Python ever copying it."""

    data: bytes
    csum_start: int = 0
    csum_offset: int = 0
    gso_size: int = 0
    payload: bytes = b""

    def frame(self) -> bytes:
        return self.data + bytes(self.payload) if self.payload else self.data
