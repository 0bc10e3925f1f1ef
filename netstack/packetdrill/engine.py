"""Run one packetdrill script against the native stack on a virtual clock.

The script plays the remote host. Its inbound packets (`<`) are built as
Ethernet/IPv4/TCP frames and handed to the sans-IO Interface at their script
time; the frames the Interface sends are parsed and matched, in order,
against the outbound packets (`>`), field by field and within the time
tolerance; socket calls go through a BSD-style shim (shim.py).

Sequence numbers: the script's are relative. Inbound SEQ (and outbound ACK,
outbound SACK blocks) are relative to the remote ISN, which the runner fixes
(REMOTE_ISN); outbound SEQ (and inbound ACK, inbound SACK blocks) to our ISN,
learned from our first SYN or SYN-ACK. Timestamps: inbound TS val are the
script's own; outbound TS val are checked against the script's by their
distance from the first one we sent (in ticks of --tcp_ts_tick_usecs, within
the tolerance); outbound ecr must echo the script's val; inbound ecr are
mapped back to our clock.

Portable by default (documented in RELAXATIONS); --strict compares everything.

One flow, as packetdrill: every inbound packet belongs to the script's one
connection. Our dialect adds the option line `--new_flow_per_syn`: then an
inbound SYN whose sequence number no flow started with opens a new connection
from the next remote port, and other inbound packets go to the flow whose
script sequence numbers start nearest below theirs -- enough to script a full
listen backlog.
"""

from __future__ import annotations

import os
import struct
import sys
import time as _time
from dataclasses import dataclass

from ..config import InterfaceConfig, TcpConfig
from ..interface import Interface
from ..wire import Ipv4Repr, ip_to_bytes
from ..wire.checksum import internet_checksum, pseudo_header_sum
from .parser import Code, Command, Event, PacketSpec, Script, Syscall, Unsupported, parse_script
from .shim import Err, Pending, Shim, const
from .sysctl import apply_command

__all__ = ["run_script", "run_text", "Result", "RELAXATIONS"]

RELAXATIONS = """Option lines a script may use besides packetdrill's own: --profile=ours|linux
(linux: window scale 8, as the suites' defaults.sh), --init_cwnd=SEGMENTS,
--wscale=N, --new_flow_per_syn (each inbound SYN with a sequence number of its
own is a new client, from the next remote port).

Portable mode (the default) relaxes, and --strict restores:
  - the outbound window (`win N` on a `>` line) is not compared;
  - outbound TCP options are compared as a multiset: NOP and EOL padding and
    the order are ignored (values are compared);
  - an expected outbound segment longer than one MSS may arrive as several
    consecutive MSS-sized segments (a super-segment split as TSO would);
  - getsockopt(SO_RCVBUF / SO_SNDBUF) values are not compared."""

_DEBUG = bool(os.environ.get("PACKETDRILL_DEBUG"))
REMOTE_ISN = 1_000_000          # the script's sequence number 0 on the wire
REMOTE_PORT = 48879
LOCAL_MAC, REMOTE_MAC = b"\x02\x00\x00\x00\x00\x01", b"\x02\x00\x00\x00\x00\x02"
MASK = 0xFFFFFFFF
_TCP = struct.Struct("!HHIIBBHHH")
_FLAG_BITS = {"F": 0x01, "S": 0x02, "R": 0x04, "P": 0x08, ".": 0x10}
KNOWN_OPTIONS = {"tolerance_usecs", "ip_version", "local_ip", "remote_ip", "gateway_ip", "netmask_ip",
                 "bind_port", "connect_port", "mss", "mtu", "tcp_ts_tick_usecs", "non_fatal", "verbose",
                 "dry_run", "speculative_connect_port", "strict_segments", "init_scripts", "debug",
                 "new_flow_per_syn", "profile", "init_cwnd", "wscale"}


@dataclass
class Result:
    status: str          # PASS, FAIL, SKIP
    line: int = 0
    message: str = ""


class Fail(Exception):
    def __init__(self, line: int, msg: str) -> None:
        super().__init__(msg)
        self.line = line


@dataclass
class Flow:
    """One connection the script plays: its ports, where its script sequence
    numbers start (the script's SYN), and our ISN on it."""
    lport: int
    rport: int
    remote_start: int | None = None
    local_isn: int | None = None


@dataclass
class Captured:
    time: float
    flags: int
    seq: int
    ack: int
    win: int
    options: list        # [(name, value)] in wire order
    length: int
    src_port: int
    dst_port: int
    flow: Flow | None = None


def run_text(text: str, strict: bool = False, time_limit: float = 20.0) -> Result:
    from .parser import ScriptError
    try:
        script = parse_script(text)
    except Unsupported as e:
        return Result("SKIP", 0, str(e))
    except ScriptError as e:
        return Result("FAIL", e.line, f"script error: {e}")
    try:
        return _Run(script, strict, time_limit).run()
    except Unsupported as e:
        return Result("SKIP", 0, str(e))


def run_script(path: str, strict: bool = False, time_limit: float = 20.0) -> Result:
    with open(path, encoding="utf-8", errors="replace") as f:
        return run_text(f.read(), strict, time_limit)


class _Run:
    def __init__(self, script: Script, strict: bool, time_limit: float) -> None:
        self.script = script
        self.strict = strict
        self.deadline = _time.monotonic() + time_limit
        opts = script.options
        unknown = sorted(set(opts) - KNOWN_OPTIONS)
        if unknown:
            raise Unsupported(f"option --{unknown[0]}")
        if opts.get("ip_version", "ipv4") != "ipv4":
            raise Unsupported(f"--ip_version={opts['ip_version']} (IPv4 only)")
        self.tol = int(opts.get("tolerance_usecs", 4000)) / 1e6
        self.tick = int(opts.get("tcp_ts_tick_usecs", 1000)) / 1e6
        self.local_ip = ip_to_bytes(opts.get("local_ip", "192.168.0.1"))
        self.remote_ip = ip_to_bytes(opts.get("remote_ip", "192.0.2.1"))
        self.bind_port = int(opts.get("bind_port", 8080))
        self.connect_port = int(opts.get("connect_port", 8080))
        self.mtu = int(opts.get("mtu", 1500))
        if "mss" in opts:
            self.mtu = int(opts["mss"]) + 40
        self.tcp = TcpConfig(mss=self.mtu - 40, rto_initial=1.0, rto_min=0.2, delayed_ack=0.04)
        # a profile of the host the script assumes: --profile=linux (as the suites'
        # defaults.sh: window scale 8), or single knobs --init_cwnd=SEGMENTS, --wscale=N
        profile = opts.get("profile", "ours")
        if profile == "linux":
            from .sysctl import linux_profile
            linux_profile(self.tcp)
        elif profile != "ours":
            raise Unsupported(f"--profile={profile} (ours or linux)")
        if "init_cwnd" in opts:
            self.tcp.initial_cwnd_segments = int(opts["init_cwnd"])
        if "wscale" in opts:
            self.tcp.wscale = int(opts["wscale"])
        self.iface = None
        self.shim = None
        self.now = 0.0
        self.captured: list[Captured] = []
        self.flows: list[Flow] = []  # the connections the script plays (several: each inbound SYN with a
        self.cur = None              # sequence number of its own opens one, on the next remote port)
        self.listen_port = None
        # our dialect: --new_flow_per_syn makes each inbound SYN with a sequence number of
        # its own a new connection from the next remote port (listen backlogs, SYN floods)
        self.multi = opts.get("new_flow_per_syn", "0") not in ("0", "")
        self.ts_base = None          # (live TS val, script TS val) of our first timestamp
        self.ip_id = 1
        self.pending = None          # (event, syscall) of a blocking call in progress

    # ---- the stack ---------------------------------------------------------------------------
    def _stack(self) -> Interface:
        if self.iface is None:
            cfg = InterfaceConfig(mac=LOCAL_MAC, ip=self.local_ip, netmask=b"\x00\x00\x00\x00", mtu=self.mtu,
                                  seed=7, gratuitous_arp=False, arp_timeout=1e9, tcp=self.tcp)
            self.iface = Interface(cfg, 0.0)
            self.iface.neighbours.learn(self.remote_ip, REMOTE_MAC, 0.0)
            self.shim = Shim(self.iface, self)
        return self.iface

    # called by the shim
    def listening(self, sock) -> None:
        self.listen_port = sock.port

    def flush(self) -> None:
        self._send_due(self.now)

    def _send_due(self, now: float) -> None:
        iface = self.iface
        for f in iface.frames_to_send(now):
            data = f.frame() if hasattr(f, "frame") else f
            self._capture(bytes(data), now)
        iface.pop_events()

    def _capture(self, frame: bytes, now: float) -> None:
        if _DEBUG:
            print(f"  [{now:.6f}] captured {len(frame)} bytes", file=sys.stderr)
        if len(frame) < 54 or frame[12:14] != b"\x08\x00" or frame[23] != 6:
            return
        ihl = (frame[14] & 0x0F) * 4
        tcp = frame[14 + ihl:]
        sport, dport, seq, ack, off, flags, win, _c, _u = _TCP.unpack_from(tcp, 0)
        hl = (off >> 4) * 4
        total = struct.unpack_from("!H", frame, 16)[0]
        opts = _parse_options(bytes(tcp[20:hl]))
        flow = next((f for f in self.flows if f.lport == sport and f.rport == dport), None)
        if flow is None and flags & 0x02 and not flags & 0x10:
            flow = Flow(sport, dport)                 # our active open
            self.flows.append(flow)
        if flow is not None and flags & 0x02 and flow.local_isn is None:
            flow.local_isn = seq
        self.captured.append(Captured(now, flags & 0x1F, seq, ack, win, opts, total - ihl - hl, sport, dport,
                                      flow))
        if _DEBUG:
            print(f"  [{now:.6f}] > {self._describe(self.captured[-1])}", file=sys.stderr)

    def advance(self, t: float) -> None:
        """Run the stack's timers up to time t (capturing what it sends), retrying a
        blocking call as things change."""
        iface = self._stack()
        spins = 0
        while True:
            if _time.monotonic() > self.deadline:
                raise Fail(0, "time limit exceeded")
            self._retry_pending()
            due = iface.poll_at()
            if due is None or due > t:
                break
            self.now = max(self.now, due)
            before = len(self.captured)
            self._send_due(self.now)
            spins = spins + 1 if len(self.captured) == before and due <= self.now else 0
            if spins > 10000:
                raise Fail(0, f"the stack spins at t={self.now:.6f}: due timers send nothing")
        self.now = max(self.now, t)
        self._retry_pending()

    # ---- events ---------------------------------------------------------------------------------------
    def run(self) -> Result:
        prev = 0.0
        line = 0
        try:
            for ev in self.script.events:
                line = ev.line
                t = self._event_time(ev, prev)
                a = ev.action
                if isinstance(a, Command):
                    if self.iface is not None and self.pending is None:
                        self.advance(t)
                    apply_command(a.text, self.tcp)
                elif isinstance(a, Code):
                    raise Unsupported("%{ python }% code blocks (Linux tcp_info assertions)")
                elif isinstance(a, PacketSpec) and a.direction == "<":
                    self.advance(t)
                    self._check_unexpected(ev, t)
                    self._inject(a, ev.line)
                elif isinstance(a, PacketSpec):
                    self._expect(a, ev, t)
                elif isinstance(a, Syscall):
                    self._syscall(a, ev, t, prev)
                prev = t      # after a blocking call (START...END) the next line counts from its start
            if self.pending is not None:      # wait for it: until its END time, or a long while
                pev, pcall, start = self.pending
                if pcall.end_time is not None:
                    kind, v = pcall.end_time
                    self.advance((v if kind == "abs" else start + v) + self.tol)
                else:
                    self.advance(self.now + 600.0)
                if self.pending is not None:
                    raise Fail(self.pending[0].line, f"{self.pending[1].name}() never returned")
            self.advance(prev + self.tol)
            self._check_unexpected(None, prev + 2 * self.tol)
        except Fail as e:
            return Result("FAIL", e.line or line, str(e))
        except Unsupported:
            raise
        except Exception as e:  # noqa: BLE001 - never crash the runner: report it
            return Result("FAIL", line, f"internal error: {type(e).__name__}: {e}")
        return Result("PASS")

    def _event_time(self, ev: Event, prev: float) -> float:
        if ev.time_kind == "any":
            return max(self.now, prev)
        return ev.time if ev.time_kind == "abs" else prev + ev.time

    def _check_unexpected(self, ev, t: float) -> None:
        if self.captured and self.captured[0].time + self.tol < t:
            c = self.captured[0]
            raise Fail(ev.line if ev is not None else 0, f"unexpected packet at {c.time:.6f}: {self._describe(c)}")

    # ---- inbound -------------------------------------------------------------------------------------------
    def _inject(self, p: PacketSpec, line: int) -> None:
        self._stack()
        flags = 0
        for ch in p.flags:
            flags |= _FLAG_BITS[ch]
        flow = self._inbound_flow(p, flags)
        self.cur = flow
        lport, rport = flow.lport, flow.rport
        seq = (p.start + REMOTE_ISN) & MASK
        ack = 0
        if p.ack is not None:
            ack = (p.ack + (flow.local_isn or 0)) & MASK
        opts = b"" if not p.options else self._build_options(p.options, line, flow)
        hl = 20 + len(opts)
        payload = bytes(p.length)
        win = p.win if p.win is not None else 65535
        hdr = bytearray(_TCP.pack(rport, lport, seq, ack, (hl // 4) << 4, flags, win, 0, 0) + opts)
        seg = bytes(hdr) + payload
        csum = internet_checksum(seg, pseudo_header_sum(self.remote_ip, self.local_ip, 6, len(seg)))
        seg = seg[:16] + struct.pack("!H", csum) + seg[18:]
        self.ip_id = (self.ip_id + 1) & 0xFFFF
        ip = Ipv4Repr(self.remote_ip, self.local_ip, 6, len(seg), 64, self.ip_id, True).emit()
        self.iface.receive_frame(LOCAL_MAC + REMOTE_MAC + b"\x08\x00" + ip + seg, self.now)
        self.iface.pop_events()
        self._send_due(self.now)

    def _inbound_flow(self, p: PacketSpec, flags: int) -> Flow:
        """The flow an inbound packet belongs to: a SYN with a sequence number of
        its own opens a new one (on the next remote port); a SYN-ACK answers our
        open; anything else goes to the flow whose script sequence numbers start
        nearest below its own."""
        if not self.multi:                            # packetdrill's own model: one flow
            if not self.flows:
                self.flows.append(Flow(self.listen_port or self.bind_port, REMOTE_PORT, 0))
            return self.flows[-1]
        if flags & 0x02 and not flags & 0x10:
            for f in self.flows:
                if f.remote_start == p.start:
                    return f                          # a retransmitted SYN
            passive = sum(1 for f in self.flows if f.lport == (self.listen_port or self.bind_port))
            f = Flow(self.listen_port or self.bind_port, REMOTE_PORT + passive, p.start)
            self.flows.append(f)
            return f
        if flags & 0x02:
            for f in reversed(self.flows):
                if f.remote_start is None:
                    f.remote_start = p.start          # the SYN-ACK of our open
                    return f
        best = None
        for f in self.flows:
            if f.remote_start is not None and f.remote_start <= p.start and \
                    (best is None or f.remote_start > best.remote_start):
                best = f
        if best is not None:
            return best
        for f in reversed(self.flows):
            if f.remote_start is None:
                return f                              # an answer to our open (a RST)
        if self.cur is not None:
            return self.cur
        f = Flow(self.listen_port or self.bind_port, REMOTE_PORT, 0)     # no connection yet (a closed port)
        self.flows.append(f)
        return f

    def _build_options(self, opts, line, flow) -> bytes:
        out = b""
        for name, v in opts:
            if name == "nop":
                out += b"\x01"
            elif name == "eol":
                out += b"\x00"
            elif name == "mss":
                out += struct.pack("!BBH", 2, 4, v)
            elif name == "wscale":
                out += struct.pack("!BBB", 3, 3, v)
            elif name == "sackOK":
                out += b"\x04\x02"
            elif name == "sack":
                base = flow.local_isn or 0
                out += struct.pack("!BB", 5, 2 + 8 * len(v))
                for a, b in v:
                    out += struct.pack("!II", (a + base) & MASK, (b + base) & MASK)
            elif name == "TS":
                val, ecr = v
                if ecr and self.ts_base is not None:
                    live, script = self.ts_base
                    ecr = (live + round((ecr - script) * self.tick * 1000)) & MASK
                out += struct.pack("!BBII", 8, 10, val & MASK, ecr)
        if len(out) % 4:
            out += b"\x00" * (4 - len(out) % 4)
        if len(out) > 40:
            raise Fail(line, "inbound TCP options longer than 40 bytes")
        return out

    # ---- outbound ---------------------------------------------------------------------------------------------
    def _expect(self, p: PacketSpec, ev: Event, t: float) -> None:
        hi = t if ev.time_hi is None else (ev.time_hi if ev.hi_kind == "abs" else t + ev.time_hi)
        limit = hi + self.tol if ev.time_kind != "any" else self.now + 3600.0
        self._wait_for_packet(limit)
        if not self.captured:
            raise Fail(ev.line, f"expected {_spec_text(p)} at {t:.6f}, nothing was sent by {limit:.6f}")
        c = self.captured.pop(0)
        if ev.time_kind != "any" and not (t - self.tol <= c.time <= hi + self.tol):
            raise Fail(ev.line, f"expected {_spec_text(p)} at {t:.6f}, it came at {c.time:.6f}")
        if c.flags & 0x02 and "S" in p.flags and c.flow is not None:
            c.flow.local_isn = (c.seq - p.start) & MASK
        split = not self.strict and 0 < c.length < p.length
        self._compare(p, c, ev.line, ignore_psh=split)
        got = c.length
        # portable: an expected super-segment may come as several consecutive segments
        isn = c.flow.local_isn if c.flow is not None else None
        while not self.strict and got < p.length and c.length and isn is not None:
            self._wait_for_packet(limit)
            if not self.captured:
                break
            nxt = self.captured[0]
            if nxt.flow is not c.flow or (nxt.seq - isn - p.start - got) & MASK or nxt.flags & ~0x18:
                break
            self.captured.pop(0)
            got += nxt.length
            c = nxt
        if got != p.length:
            raise Fail(ev.line, f"expected {_spec_text(p)}, got {self._describe(c)} ({got} bytes)")
        if split and "P" in p.flags and not c.flags & 0x08:
            raise Fail(ev.line, f"expected {_spec_text(p)}: its last piece {self._describe(c)} lacks PSH")

    def _wait_for_packet(self, limit: float) -> None:
        while not self.captured:
            due = self.iface.poll_at() if self.iface is not None else None
            if due is None or due > limit:
                self.advance(limit)
                return
            self.advance(max(due, self.now))

    def _compare(self, p: PacketSpec, c: Captured, line: int, ignore_psh: bool = False) -> None:
        want_flags = 0
        for ch in p.flags:
            want_flags |= _FLAG_BITS[ch]
        if ignore_psh:          # the first piece of a split super-segment: PSH goes on the last
            want_flags &= ~0x08
        seq = (c.seq - _isn(c)) & MASK

        def fail(what):
            raise Fail(line, f"expected {_spec_text(p)}, got {self._describe(c)}: {what}")
        if (c.flags & ~0x08 if ignore_psh else c.flags) != want_flags:
            fail("flags differ")
        if seq != p.start & MASK:
            fail(f"seq {seq} instead of {p.start}")
        if p.ack is not None and (c.ack - REMOTE_ISN) & MASK != p.ack & MASK:
            fail(f"ack {(c.ack - REMOTE_ISN) & MASK} instead of {p.ack}")
        if self.strict and p.win is not None and c.win != p.win:
            fail(f"win {c.win} instead of {p.win}")
        if p.any_options:
            return
        self._compare_options(p.options or [], c, fail)

    def _compare_options(self, want, c: Captured, fail) -> None:
        got = c.options
        if self.strict:
            w = [(n, v) for n, v in want]
            g = [(n, v) for n, v in got]
        else:
            w = sorted(((n, v) for n, v in want if n not in ("nop", "eol")), key=repr)
            g = sorted(((n, v) for n, v in got if n not in ("nop", "eol")), key=repr)
        wi = {n: v for n, v in w}
        gi = {n: v for n, v in g}
        if sorted(n for n, _ in w) != sorted(n for n, _ in g):
            fail(f"options {[n for n, _ in g]} instead of {[n for n, _ in w]}")
        if self.strict and [n for n, _ in w] != [n for n, _ in g]:
            fail("options in another order")
        for name, v in wi.items():
            have = gi[name]
            if name == "sack":
                have = tuple(((a - REMOTE_ISN) & MASK, (b - REMOTE_ISN) & MASK) for a, b in have)
                if have != v:
                    fail(f"sack {have} instead of {v}")
            elif name == "TS":
                self._compare_ts(v, have, fail)
            elif have != v:
                fail(f"{name} {have} instead of {v}")

    def _compare_ts(self, want, have, fail) -> None:
        sval, secr = want
        lval, lecr = have
        if self.ts_base is None:
            self.ts_base = (lval, sval)
        else:
            live0, script0 = self.ts_base
            live_ms = ((lval - live0) & MASK)
            script_ms = (sval - script0) * self.tick * 1000
            if abs(live_ms - script_ms) > self.tol * 1000 + 1:
                fail(f"TS val {lval} is {live_ms} ms after our first, the script says {script_ms:.0f}")
        if lecr != secr & MASK:
            fail(f"TS ecr {lecr} instead of {secr}")

    def _describe(self, c: Captured) -> str:
        names = "".join(ch for ch, bit in (("S", 2), ("F", 1), ("R", 4), ("P", 8)) if c.flags & bit)
        names += "." if c.flags & 0x10 else ""
        s = (c.seq - _isn(c)) & MASK
        text = f"{names or '-'} {s}:{(s + c.length) & MASK}({c.length})"
        if c.flags & 0x10:
            text += f" ack {(c.ack - REMOTE_ISN) & MASK}"
        text += f" win {c.win}"
        if c.options:
            parts = []
            for n, v in c.options:
                if n == "TS":
                    parts.append(f"TS val {v[0]} ecr {v[1]}")
                elif n == "sack":
                    parts.append("sack " + " ".join(f"{(a - REMOTE_ISN) & MASK}:{(b - REMOTE_ISN) & MASK}"
                                                    for a, b in v))
                elif v is None:
                    parts.append(n)
                else:
                    parts.append(f"{n} {v}")
            text += " <" + ",".join(parts) + ">"
        return text

    # ---- system calls ------------------------------------------------------------------------------------------
    def _syscall(self, call: Syscall, ev: Event, t: float, base: float) -> None:
        if self.pending is not None:
            pev, pcall, _start = self.pending
            self.advance(t)
            if self.pending is not None:
                raise Fail(pev.line, f"{pcall.name}() was still blocked at {t:.6f}")
        self.advance(t)
        self._check_unexpected(ev, t)
        r = self.shim.call(call.name, call.args)
        self.flush()
        if r is Pending:
            self.pending = (ev, call, base)
            return
        self._check_result(call, ev, r, t, base)

    def _retry_pending(self) -> None:
        if self.pending is None or self.shim is None:
            return
        ev, call, start = self.pending
        r = self.shim.call(call.name, call.args)
        if r is Pending:
            return
        self.pending = None
        self.flush()
        self._check_result(call, ev, r, self.now, start)

    def _check_result(self, call: Syscall, ev: Event, r, t_done: float, base: float) -> None:
        if call.end_time is not None:
            kind, v = call.end_time
            end = v if kind == "abs" else base + v    # a relative END counts from the previous event, as START
            if abs(t_done - end) > self.tol:
                raise Fail(ev.line, f"{call.name}() returned at {t_done:.6f}, expected at {end:.6f}")
        want = call.result
        if isinstance(r, Err):
            if want != -1 or (call.errno is not None and call.errno != r.errno):
                raise Fail(ev.line, f"{call.name}() = -1 {r.errno}, expected {_result_text(call)}")
            return
        if isinstance(want, int) and want == -1 and call.errno:
            raise Fail(ev.line, f"{call.name}() = {r.value}, expected -1 {call.errno}")
        if want is not Ellipsis and not _is_any(want) and const_or(want) != r.value:
            raise Fail(ev.line, f"{call.name}() = {r.value}, expected {_result_text(call)}")
        out = r.out or {}
        relaxed = out.get("relaxed") and not self.strict
        for idx, val in out.items():
            if idx in ("relaxed", "revents"):
                continue
            if idx < len(call.args) and isinstance(call.args[idx], list) and not relaxed:
                exp = call.args[idx]
                if exp and not _is_any(exp[0]) and const_or(exp[0]) != val[0]:
                    raise Fail(ev.line, f"{call.name}(): {val[0]} where the script says {exp[0]}")
        if "revents" in out and call.args and isinstance(call.args[0], list):
            for p, got in zip(call.args[0], out["revents"]):
                want_rev = p.fields.get("revents") if hasattr(p, "fields") else None
                if want_rev is not None and const_or(want_rev) != got:
                    raise Fail(ev.line, f"poll(): revents {got:#x}, the script says {const_or(want_rev):#x}")


def _isn(c: Captured) -> int:
    return (c.flow.local_isn or 0) if c.flow is not None else 0


def _is_any(v) -> bool:
    from .parser import Ellipsis_
    return v is Ellipsis_


def const_or(v):
    return const(v)


def _result_text(call: Syscall) -> str:
    return f"{call.result}" + (f" {call.errno}" if call.errno else "")


def _spec_text(p: PacketSpec) -> str:
    text = f"{p.flags or '-'} {p.start}:{p.end}({p.length})"
    if p.ack is not None:
        text += f" ack {p.ack}"
    if p.win is not None:
        text += f" win {p.win}"
    return text


def _parse_options(b: bytes) -> list:
    out = []
    i = 0
    while i < len(b):
        k = b[i]
        if k == 0:
            out.append(("eol", None))
            i += 1
            continue
        if k == 1:
            out.append(("nop", None))
            i += 1
            continue
        if i + 1 >= len(b):
            break
        ln = b[i + 1]
        if ln < 2:
            break
        v = b[i + 2:i + ln]
        if k == 2 and ln == 4:
            out.append(("mss", struct.unpack("!H", v)[0]))
        elif k == 3 and ln == 3:
            out.append(("wscale", v[0]))
        elif k == 4:
            out.append(("sackOK", None))
        elif k == 5:
            out.append(("sack", tuple(struct.unpack_from("!II", v, j) for j in range(0, len(v) - 7, 8))))
        elif k == 8 and ln == 10:
            out.append(("TS", struct.unpack("!II", v)))
        else:
            out.append((f"opt{k}", bytes(v)))
        i += ln
    return out

