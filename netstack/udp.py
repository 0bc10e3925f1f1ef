"""UDP endpoints: bound ports with bounded receive queues."""

from __future__ import annotations

from collections import deque


class UdpEndpoint:
    def __init__(self, iface, port: int, queue_limit: int) -> None:
        self.iface = iface
        self.port = port
        self.queue: deque = deque()  # (src_ip, src_port, dst_ip, payload)
        self.queue_limit = queue_limit
        self.drops = 0
        self.closed = False

    def deliver(self, src_ip: bytes, src_port: int, dst_ip: bytes, payload) -> bool:
        if len(self.queue) >= self.queue_limit:
            self.drops += 1
            return False
        self.queue.append((src_ip, src_port, dst_ip, bytes(payload)))
        return True

    def recv(self):
        """The oldest datagram (src_ip, src_port, dst_ip, payload), or None."""
        return self.queue.popleft() if self.queue else None

    def send(self, dst_ip: bytes, dst_port: int, payload, now: float) -> None:
        if self.closed:
            raise OSError(9, "udp endpoint closed")
        self.iface.udp_send(self.port, dst_ip, dst_port, payload, now)

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.iface.udp_unbind(self.port)
