"""Gather: bytes kept as several buffers.

A TCP segment's payload often spans two chunks of the send buffer (the
application wrote 64 KiB, a TSO segment carries 64,000 bytes). When the
payload goes to an offloading device untouched, joining the chunks would copy
64 KB per frame for nothing: a Gather keeps the pieces, and the drivers hand
them to one gathering write (writev / sendmsg). len() is the total; bytes()
joins (for the paths that need one buffer: software checksums, pcap records).
"""

from __future__ import annotations


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
