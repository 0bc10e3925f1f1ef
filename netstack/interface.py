"""The sans-IO Interface: see netstack.iface (split by protocol)."""

from .iface import Interface, TxFrame

__all__ = ["Interface", "TxFrame"]
