"""One socket API, two stacks: posix (kernel sockets) and native (our TCP/IP)."""

from .api import (accept_result, connect, connected_socket, datagram, input_stream,
                  ipv4_addr, keepalive_params, listen, listen_options, make_ipv4_address,
                  make_udp_channel, network_stack, network_stats, output_stream, server_socket, socket_address,
                  temporary_buffer, udp_channel)

__all__ = [
    "temporary_buffer", "socket_address", "make_ipv4_address", "ipv4_addr", "listen_options",
    "accept_result", "connected_socket", "server_socket", "input_stream", "output_stream",
    "listen", "connect", "make_udp_channel", "udp_channel", "datagram", "network_stack",
    "keepalive_params", "network_stats",
]
