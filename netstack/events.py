"""What the sans-IO core reports to the socket layer: (owner, Event) pairs
from Interface.pop_events(); owners are TCBs, listeners, UDP endpoints and
the DHCP client."""

import enum

__all__ = ["Event"]


class Event(enum.Enum):
    __hash__ = object.__hash__

    CONNECTED = "connected"      # handshake complete
    READABLE = "readable"        # data (or the peer's FIN) can be read
    WRITABLE = "writable"        # send buffer space became available
    PEER_CLOSED = "peer_closed"  # FIN received: no more data will arrive
    ERROR = "error"              # reset / timeout / refused: see tcb.error
    CLOSED = "closed"            # the connection is gone (its port may be reused)
    ACCEPTABLE = "acceptable"    # a listener has a connection to accept
    DHCP_BOUND = "bound"         # the DHCP client got a lease ...
    DHCP_RENEWED = "renewed"     # ... renewed it ...
    DHCP_LOST = "lost"           # ... or lost it


(EV_CONNECTED, EV_READABLE, EV_WRITABLE, EV_PEER_CLOSED, EV_ERROR, EV_CLOSED, EV_ACCEPTABLE, EV_DHCP_BOUND,
 EV_DHCP_RENEWED, EV_DHCP_LOST) = Event
