"""drivers: L2 devices (TAP, AF_PACKET, pcap replay, loopback) and wrappers."""

from .base import Device, FaultInjecting, Recording, Wrapper

__all__ = ["Device", "Wrapper", "Recording", "FaultInjecting"]
