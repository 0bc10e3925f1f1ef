"""Receive-side scaling: the Toeplitz hash (Microsoft RSS) over the IPv4 4-tuple
(or the 2-tuple for other protocols), and a redirection table mapping the hash
to a shard, so every TCP connection and UDP flow lives on exactly one shard.

The key is the standard 40-byte one from Microsoft's RSS verification suite;
tests check the published verification values.
"""

from __future__ import annotations

import socket
import struct

# Microsoft's default RSS key (also the default of many NIC drivers).
DEFAULT_KEY = bytes.fromhex(
    "6d5a56da255b0ec24167253d43a38fb0d0ca2bcbae7b30b477cb2da38030f20c6a42b73bbeac01fa")


class Toeplitz:
    """Toeplitz hash with a precomputed table: for each input byte position and
    byte value, the XOR of the key windows its set bits select."""

    def __init__(self, key: bytes = DEFAULT_KEY, max_input: int = 12) -> None:
        if len(key) * 8 < max_input * 8 + 32:
            raise ValueError("RSS key too short for the input length")
        k = int.from_bytes(key, "big")
        klen = len(key) * 8
        # window(i) = the 32 key bits starting at bit i
        windows = [(k >> (klen - 32 - i)) & 0xFFFFFFFF for i in range(max_input * 8)]
        self.table = []
        for pos in range(max_input):
            row = [0] * 256
            for value in range(256):
                h = 0
                for bit in range(8):
                    if value & (0x80 >> bit):
                        h ^= windows[pos * 8 + bit]
                row[value] = h
            self.table.append(row)

    def hash(self, data: bytes) -> int:
        h = 0
        table = self.table
        for i, b in enumerate(data):
            h ^= table[i][b]
        return h

    def hash_ipv4(self, src: bytes, dst: bytes, sport: int | None = None, dport: int | None = None) -> int:
        """The RSS hash of a packet from src:sport to dst:dport (2-tuple without ports)."""
        if sport is None:
            return self.hash(src + dst)
        return self.hash(src + dst + struct.pack("!HH", sport, dport))


class RedirectionTable:
    """hash -> shard through a table of `size` entries (128 like most NICs)."""

    def __init__(self, shards: int, size: int = 128) -> None:
        if shards < 1:
            raise ValueError("at least one shard")
        self.shards = shards
        self.size = size
        self.entries = [i % shards for i in range(size)]

    def shard(self, h: int) -> int:
        return self.entries[h % self.size]


class FlowSteering:
    """Which shard owns a flow, and the ephemeral ports that hash back to a shard."""

    def __init__(self, shards: int, key: bytes = DEFAULT_KEY) -> None:
        self.toeplitz = Toeplitz(key)
        self.reta = RedirectionTable(shards)

    def shard_of(self, src: bytes, dst: bytes, sport: int | None = None, dport: int | None = None) -> int:
        """The shard for a packet *received* from src:sport to dst:dport."""
        return self.reta.shard(self.toeplitz.hash_ipv4(src, dst, sport, dport))

    def port_for_shard(self, shard: int, local_ip: bytes, remote_ip: bytes, remote_port: int, candidates) -> int:
        """The first candidate local port whose replies (remote -> local) hash to `shard`."""
        for p in candidates:
            if self.shard_of(remote_ip, local_ip, remote_port, p) == shard:
                return p
        raise OSError(99, "no ephemeral port maps to this shard")


def ip(s: str) -> bytes:
    return socket.inet_aton(s)
