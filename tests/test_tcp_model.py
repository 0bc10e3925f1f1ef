"""A stateful hypothesis test of the TCP state machine against RFC 9293's
transitions: two TCBs over a wire that hypothesis drives -- deliver, drop,
duplicate or reorder segments, user calls (send, close, abort), time passing.

Every state change is checked against a model of what may cause it (the RFC's
figure 5: a delivered SYN, ACK, FIN or RST, a user call, a timer), bytes that
arrive are always a prefix of the bytes sent, and once the wire turns clean
both ends finish: the data complete, the connection closed."""
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from netstack.config import TcpConfig
from netstack.tcp import TCB, State
from netstack.wire.tcp import ACK, FIN, RST, SYN, reset_for

A_IP, B_IP = b"\xc0\x00\x02\x01", b"\xc0\x00\x02\x02"
S = State

# what may cause each change: "user", "timer", or the flag of the delivered segment
ALLOWED = {
    (S.CLOSED, S.SYN_SENT): {"user"},
    (S.CLOSED, S.SYN_RECEIVED): {"SYN"},
    (S.SYN_SENT, S.ESTABLISHED): {"SYN"},
    (S.SYN_SENT, S.SYN_RECEIVED): {"SYN"},
    (S.SYN_RECEIVED, S.ESTABLISHED): {"ACK", "SYN"},
    (S.ESTABLISHED, S.FIN_WAIT_1): {"user", "timer", "ACK", "SYN", "FIN", "data"},   # our FIN goes at a poll
    (S.ESTABLISHED, S.CLOSE_WAIT): {"FIN"},
    (S.FIN_WAIT_1, S.FIN_WAIT_2): {"ACK", "FIN"},
    (S.FIN_WAIT_1, S.CLOSING): {"FIN"},
    (S.FIN_WAIT_1, S.TIME_WAIT): {"FIN"},
    (S.FIN_WAIT_2, S.TIME_WAIT): {"FIN"},
    (S.CLOSE_WAIT, S.LAST_ACK): {"user", "timer", "ACK", "SYN", "FIN", "data"},
    (S.CLOSING, S.TIME_WAIT): {"ACK", "FIN"},
    (S.LAST_ACK, S.CLOSED): {"ACK", "FIN"},
    (S.TIME_WAIT, S.CLOSED): {"timer"},
}
TO_CLOSED = {"RST", "user", "timer"}      # reset, abort, out of retries: from any state


def cfg():
    return TcpConfig(mss=536, recv_buffer=8000, send_buffer=8000, rto_initial=0.5, rto_min=0.2,
                     max_retries=8, syn_retries=6, time_wait=5.0)


class TcpPair(RuleBasedStateMachine):
    def __init__(self):
        super().__init__()
        self.now = 0.0
        self.a = TCB(cfg(), A_IP, 1000, B_IP, 80, 7_000, 0.0)
        self.b = None
        self.wire = []          # [(to, TcpRepr, payload)]
        self.sent = {"a": bytearray(), "b": bytearray()}
        self.got = {"a": bytearray(), "b": bytearray()}
        self.cause = None
        self.aborted = False
        self.a.trace = self._trace("a")
        self.cause = "user"
        self.a.open_active(0.0)
        self._pump()

    def _trace(self, name):
        def check(tcb, old, new):
            c = self.cause if isinstance(self.cause, set) else {self.cause}
            if new is S.CLOSED and c & TO_CLOSED:
                return
            assert c & ALLOWED.get((old, new), set()), f"{name}: {old.value} -> {new.value} on {sorted(c)}"
        return check

    def _pump(self):
        for name, t in (("a", self.a), ("b", self.b)):
            if t is None:
                continue
            for seg, payload in t.poll(self.now):
                self.wire.append(("b" if name == "a" else "a", seg, bytes(payload)))

    def _deliver(self, i):
        to, seg, payload = self.wire.pop(i)
        flags = seg.flags
        self.cause = {name for name, bit in (("RST", RST), ("SYN", SYN), ("FIN", FIN), ("ACK", ACK))
                      if flags & bit} | ({"data"} if payload else set())
        if to == "b":
            if self.b is None:
                if flags & SYN and not flags & ACK:
                    self.b = TCB(cfg(), B_IP, 80, A_IP, 1000, 90_000, self.now)
                    self.b.trace = self._trace("b")
                    self.b.open_passive(seg, self.now)
                return
            t = self.b
        else:
            t = self.a
        if t.state is S.CLOSED:
            self._no_connection(to, seg, payload)
        else:
            t.on_segment(seg, memoryview(payload), self.now)

    def _no_connection(self, to, seg, payload):
        """A segment for a TCB that has closed meets what the interface does for
        a connection it no longer has (RFC 9293 3.10.7.1): a RST, never to a RST.
        Without it a peer whose RST drew a challenge ACK (RFC 5961) waited forever."""
        rst = reset_for(seg, len(payload))
        if rst is not None:
            self.wire.append(("a" if to == "b" else "b", rst, b""))

    def _read(self):
        for name, t in (("a", self.a), ("b", self.b)):
            while t is not None and (x := t.recv()):
                self.got[name].extend(x)

    # ---- the wire -----------------------------------------------------------------------------------
    @precondition(lambda self: self.wire)
    @rule(pick=st.integers(0, 7))
    def deliver(self, pick):
        self._deliver(min(pick, len(self.wire) - 1) if pick < 3 else 0)
        self._read()
        self.cause = "timer"
        self._pump()

    @precondition(lambda self: self.wire)
    @rule()
    def drop(self):
        self.wire.pop(0)

    @precondition(lambda self: self.wire)
    @rule()
    def duplicate(self):
        self.wire.append(self.wire[0])

    @rule(dt=st.sampled_from([0.01, 0.05, 0.3, 1.0, 6.0]))
    def time_passes(self, dt):
        self.now += dt
        self.cause = "timer"
        self._pump()

    # ---- the users ------------------------------------------------------------------------------------
    @rule(who=st.sampled_from(["a", "b"]), n=st.integers(1, 3000))
    def send(self, who, n):
        t = self.a if who == "a" else self.b
        if t is None or t.fin_queued or t.state not in (S.ESTABLISHED, S.CLOSE_WAIT, S.SYN_SENT, S.SYN_RECEIVED):
            return
        data = bytes((len(self.sent[who]) + i) % 251 for i in range(n))
        k = t.send(data)
        self.sent[who].extend(data[:k])
        self.cause = "user"
        self._pump()

    @rule(who=st.sampled_from(["a", "b"]))
    def close(self, who):
        t = self.a if who == "a" else self.b
        if t is not None:
            self.cause = "user"
            t.close()
            self._pump()

    @precondition(lambda self: not self.aborted)
    @rule(who=st.sampled_from(["a", "b"]))
    def abort(self, who):
        t = self.a if who == "a" else self.b
        if t is not None and t.state is not S.CLOSED and not self.wire:
            self.aborted = True
            self.cause = "user"
            t.abort()
            self._pump()

    # ---- what must always hold -----------------------------------------------------------------------------
    @invariant()
    def bytes_are_a_prefix_of_what_was_sent(self):
        for me, peer in (("a", "b"), ("b", "a")):
            got = bytes(self.got[me])
            assert got == bytes(self.sent[peer][:len(got)])

    def teardown(self):
        """A clean wire from here on: both applications close and let go (as the
        socket layer does: close, then orphan), everything is delivered. (With a
        half close only, a FIN-WAIT-2 whose peer aborted and lost its RST waits
        for a FIN for ever, as RFC 9293 says; the orphan's fin_timeout ends it.)"""
        for t in (self.a, self.b):
            if t is not None:
                self.cause = "user"
                t.close()
                t.orphan(self.now)
        for _ in range(4000):
            self._pump()
            if self.wire:
                self._deliver(0)
                self._read()
            else:
                self.now += 0.25
                self.cause = "timer"
            if self.a.state in (S.CLOSED, S.TIME_WAIT) and (self.b is None or self.b.state in (S.CLOSED,
                                                                                                S.TIME_WAIT)):
                break
        assert self.a.state in (S.CLOSED, S.TIME_WAIT), self.a
        if self.b is not None:
            assert self.b.state in (S.CLOSED, S.TIME_WAIT), self.b
        if not self.aborted and self.b is not None and self.a.error is None and self.b.error is None:
            assert bytes(self.got["b"]) == bytes(self.sent["a"])
            assert bytes(self.got["a"]) == bytes(self.sent["b"])


TcpPair.TestCase.settings = settings(max_examples=100, stateful_step_count=60, deadline=None)
test_tcp_state_machine_against_the_rfc_model = TcpPair.TestCase
