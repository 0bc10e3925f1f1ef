"""TCP connection states (RFC 9293 3.3.2)."""

import enum


class State(enum.Enum):
    # Members are singletons: hash them by identity, in C. Enum's own __hash__
    # is Python code, and `state in CAN_SEND` runs on every send.
    __hash__ = object.__hash__

    CLOSED = "CLOSED"
    LISTEN = "LISTEN"
    SYN_SENT = "SYN-SENT"
    SYN_RECEIVED = "SYN-RECEIVED"
    ESTABLISHED = "ESTABLISHED"
    FIN_WAIT_1 = "FIN-WAIT-1"
    FIN_WAIT_2 = "FIN-WAIT-2"
    CLOSE_WAIT = "CLOSE-WAIT"
    CLOSING = "CLOSING"
    LAST_ACK = "LAST-ACK"
    TIME_WAIT = "TIME-WAIT"


# The members as module names: in CPython 3.11 a class attribute read (State.X)
# is not specialized and costs about 100 ns, a global about 10 ns -- and the
# per-segment paths test the state several times.
(CLOSED, LISTEN, SYN_SENT, SYN_RECEIVED, ESTABLISHED, FIN_WAIT_1, FIN_WAIT_2, CLOSE_WAIT, CLOSING, LAST_ACK,
 TIME_WAIT) = State

SYNCHRONIZED = frozenset({State.ESTABLISHED, State.FIN_WAIT_1, State.FIN_WAIT_2, State.CLOSE_WAIT,
                          State.CLOSING, State.LAST_ACK, State.TIME_WAIT})
# States in which we may still send data
CAN_SEND = frozenset({State.ESTABLISHED, State.CLOSE_WAIT})
# States in which the peer may still send data
CAN_RECEIVE = frozenset({State.ESTABLISHED, State.FIN_WAIT_1, State.FIN_WAIT_2})


# Every state change a TCB may make (RFC 9293 3.3.2, figure 5, with
# simultaneous open and close; CLOSED stands for LISTEN, which is the
# listener's, not a TCB's). TCB._set_state refuses anything else.
TRANSITIONS = {
    State.CLOSED: frozenset({State.SYN_SENT, State.SYN_RECEIVED, State.ESTABLISHED}),   # connect, SYN, cookie
    State.SYN_SENT: frozenset({State.ESTABLISHED, State.SYN_RECEIVED, State.CLOSED}),
    State.SYN_RECEIVED: frozenset({State.ESTABLISHED, State.FIN_WAIT_1, State.CLOSED}),
    State.ESTABLISHED: frozenset({State.FIN_WAIT_1, State.CLOSE_WAIT, State.CLOSED}),
    State.FIN_WAIT_1: frozenset({State.FIN_WAIT_2, State.CLOSING, State.TIME_WAIT, State.CLOSED}),
    State.FIN_WAIT_2: frozenset({State.TIME_WAIT, State.CLOSED}),
    State.CLOSE_WAIT: frozenset({State.LAST_ACK, State.CLOSED}),
    State.CLOSING: frozenset({State.TIME_WAIT, State.CLOSED}),
    State.LAST_ACK: frozenset({State.CLOSED}),
    State.TIME_WAIT: frozenset({State.CLOSED}),
    State.LISTEN: frozenset(),
}


# The events live in netstack.events (TCP, listeners and DHCP report them).
from ..events import (EV_ACCEPTABLE, EV_CLOSED, EV_CONNECTED, EV_DHCP_BOUND, EV_DHCP_LOST,  # noqa: E402,F401
                      EV_DHCP_RENEWED, EV_ERROR, EV_PEER_CLOSED, EV_READABLE, EV_WRITABLE, Event)
