"""Constants of the TCP rules, shared by the TCB's modules."""

from __future__ import annotations

from ..wire.seq import MASK
from .state import CLOSE_WAIT, CLOSING, ESTABLISHED, FIN_WAIT_1, LAST_ACK

MAX_WINDOW_SHIFT = 14          # RFC 7323 2.3

from .congestion import DUPACK_THRESHOLD  # noqa: F401 - RFC 5681 3.2, shared with recovery
PAWS_IDLE = 24 * 24 * 3600     # RFC 7323 5.5: ts_recent is invalid after 24 days idle
_SENDING_STATES = frozenset({ESTABLISHED, CLOSE_WAIT, FIN_WAIT_1, CLOSING, LAST_ACK})
TS_HZ = 1000                   # the timestamp clock ticks each millisecond (RFC 7323 5.4: 1 ms to 1 s)


def ts_clock(now: float) -> int:
    """Our TSval at `now`: every segment's timestamp, RTT sample and RACK test
    reads the clock here."""
    return int(now * TS_HZ) & MASK
