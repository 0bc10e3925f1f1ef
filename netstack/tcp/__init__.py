"""TCP: the connection state machine, listeners, congestion control."""

from .connection import TCB, SendBuffer, TcpError
from .listener import IsnGenerator, Listener, SynCookies
from .state import Event, State

__all__ = ["TCB", "SendBuffer", "TcpError", "Listener", "IsnGenerator", "SynCookies", "State", "Event"]
