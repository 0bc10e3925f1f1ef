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


class Event(enum.Enum):
    __hash__ = object.__hash__

    CONNECTED = "connected"      # handshake complete
    READABLE = "readable"        # data (or the peer's FIN) can be read
    WRITABLE = "writable"        # send buffer space became available
    PEER_CLOSED = "peer_closed"  # FIN received: no more data will arrive
    ERROR = "error"              # reset / timeout / refused: see tcb.error
    CLOSED = "closed"            # the connection is gone (its port may be reused)


(EV_CONNECTED, EV_READABLE, EV_WRITABLE, EV_PEER_CLOSED, EV_ERROR, EV_CLOSED) = Event
