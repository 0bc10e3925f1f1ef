"""UDP endpoints: bound ports with bounded receive queues, and the ICMP errors
that datagrams they sent brought back (as Linux's IP_RECVERR error queue)."""

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
        self.errors: deque = deque(maxlen=64)   # (remote_ip, remote_port, OSError), oldest dropped

    def icmp_error(self, remote_ip: bytes, remote_port: int, code: int) -> None:
        """An ICMP destination-unreachable about a datagram we sent there."""
        self.errors.append((remote_ip, remote_port, unreachable_error(code)))

    def take_errors(self) -> list:
        out = list(self.errors)
        self.errors.clear()
        return out

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


# ICMP destination-unreachable codes as the errors Linux reports for them
_UNREACH_ERRNO = {0: (101, "Network is unreachable"), 1: (113, "No route to host"),
                  2: (92, "Protocol not available"), 3: (111, "Connection refused"),
                  4: (90, "Message too long")}


def unreachable_error(code: int) -> OSError:
    no, msg = _UNREACH_ERRNO.get(code, (113, "No route to host"))
    return ConnectionRefusedError(no, msg) if no == 111 else OSError(no, msg)
