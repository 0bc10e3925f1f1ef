"""The packetdrill script language: a lexer and a parser into events.

The grammar is packetdrill's (google/packetdrill Syntax.md): option lines
(`--name=value`), then events, one per line, each a time and an action:

  time     0.1 | +0.1 | * | 0.1~0.2 | +0.1~+0.2   (for a syscall also START...END)
  packet   < or >, [ip info], flags, start:end(len), [ack N], [win N], [<options> | <...>]
  syscall  name(args) = result [ERRNO (note)]
  command  `shell line`         code  %{ python }%

A construct this runner does not implement raises Unsupported naming it; the
runner turns that into a SKIP. Malformed text raises ScriptError (a FAIL).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

__all__ = ["parse_script", "Script", "Event", "PacketSpec", "Syscall", "Command", "Code",
           "Unsupported", "ScriptError", "Ellipsis_", "Struct", "BinaryOr"]


class Unsupported(Exception):
    """A construct the runner does not implement (the script is skipped)."""


class ScriptError(Exception):
    """The script itself is malformed."""

    def __init__(self, line: int, msg: str) -> None:
        super().__init__(msg)
        self.line = line


class _Ellipsis:
    def __repr__(self) -> str:
        return "..."


Ellipsis_ = _Ellipsis()     # the `...` argument: anything


@dataclass
class Struct:
    """{name = value, ...} (sockaddr, linger, pollfd, ...)."""
    fields: dict


@dataclass
class BinaryOr:
    parts: list


@dataclass
class PacketSpec:
    direction: str                 # "<" inbound, ">" outbound
    flags: str                     # letters: S F R P . E W U, or "" for "-"
    start: int
    end: int
    length: int
    ack: int | None = None
    win: int | None = None
    options: list | None = None    # [(name, value)], or None for <...> / absent-but-any
    options_given: bool = False    # the packet line had an option list (or <...>)
    any_options: bool = False      # <...>


@dataclass
class Syscall:
    name: str
    args: list
    result: object
    errno: str | None = None
    end_time: tuple | None = None  # ("abs" | "rel", seconds) of a blocking call's return


@dataclass
class Command:
    text: str


@dataclass
class Code:
    text: str


@dataclass
class Event:
    line: int
    time_kind: str                 # "abs", "rel", "any"
    time: float
    time_hi: float | None          # a range's upper end
    hi_kind: str | None
    action: object


@dataclass
class Script:
    options: dict = field(default_factory=dict)
    events: list = field(default_factory=list)


# ---- lexing ------------------------------------------------------------------------------------

def _strip_comments(text: str) -> str:
    """Comments out, line numbers kept; %{ }% code kept whole."""
    out = []
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if text.startswith("%{", i):
            j = text.find("}%", i)
            if j < 0:
                raise ScriptError(text.count("\n", 0, i) + 1, "unterminated %{ code block")
            out.append(text[i:j + 2])
            i = j + 2
        elif text.startswith("//", i):
            j = text.find("\n", i)
            i = n if j < 0 else j
        elif text.startswith("/*", i):
            j = text.find("*/", i)
            if j < 0:
                raise ScriptError(text.count("\n", 0, i) + 1, "unterminated /* comment")
            out.append("\n" * text.count("\n", i, j))
            i = j + 2
        elif c == '"' or c == "`":
            j = i + 1
            while j < n and text[j] != c:
                j += 2 if text[j] == "\\" else 1
            out.append(text[i:j + 1])
            i = j + 1
        else:
            out.append(c)
            i += 1
    return "".join(out)


_TOKEN = re.compile(r"""
    (?P<ws>[ \t\r]+)
  | (?P<ellipsis>\.\.\.)
  | (?P<string>"(?:\\.|[^"\\])*")
  | (?P<back>`(?:\\.|[^`\\])*`)
  | (?P<ip>\d+\.\d+\.\d+\.\d+)
  | (?P<hex>0x[0-9a-fA-F]+)
  | (?P<float>-?\d*\.\d+)
  | (?P<int>-?\d+)
  | (?P<word>[A-Za-z_][A-Za-z0-9_]*)
  | (?P<punct>[<>\[\]{}()=,:|~+*.\-!])
""", re.X)


def _tokens(s: str, line: int) -> list:
    out = []
    i = 0
    while i < len(s):
        m = _TOKEN.match(s, i)
        if not m:
            raise ScriptError(line, f"unexpected character {s[i]!r}")
        kind = m.lastgroup
        if kind != "ws":
            out.append((kind, m.group()))
        i = m.end()
    return out


def _logical_lines(text: str):
    """(line number, text) of each statement: brackets may span lines; a code
    block is one statement."""
    buf, start, depth = [], 0, 0
    for no, raw in enumerate(text.split("\n"), 1):
        if not buf:
            start = no
        buf.append(raw)
        depth += raw.count("(") + raw.count("[") + raw.count("{") - raw.count(")") - raw.count("]") \
            - raw.count("}")
        joined = "\n".join(buf)
        if "%{" in joined and "}%" not in joined:
            continue
        if joined.count("`") % 2:
            continue                     # a back-quoted command spanning lines
        if depth > 0:
            continue
        depth = 0
        stmt = " ".join(x.strip() for x in buf).strip()
        buf = []
        if stmt:
            yield start, stmt
    if buf and " ".join(buf).strip():
        raise ScriptError(start, "unbalanced brackets: the statement never ends")


# ---- parsing -------------------------------------------------------------------------------------

_OPTION = re.compile(r"^--([A-Za-z0-9_]+)(?:=(.*))?$")
_TIME = re.compile(r"^(\*|[+]?\d*\.?\d+(?:~[+]?\d*\.?\d+)?)\s+(.*)$", re.S)
_BLOCKING = re.compile(r"^([+]?\d*\.?\d+)\.\.\.([+]?\d*\.?\d+)\s+(.*)$", re.S)


def parse_script(text: str) -> Script:
    script = Script()
    for line, stmt in _logical_lines(_strip_comments(text)):
        if stmt.startswith("--"):
            for word in stmt.split():
                m = _OPTION.match(word)
                if not m:
                    raise ScriptError(line, f"bad option {word!r}")
                script.options[m.group(1)] = m.group(2) if m.group(2) is not None else "1"
            continue
        if stmt.startswith("%{"):
            script.events.append(Event(line, "rel", 0.0, None, None, Code(stmt)))
            continue
        if stmt.startswith("`") and not script.events:
            script.events.append(Event(line, "rel", 0.0, None, None, Command(stmt.strip("`"))))
            continue
        script.events.append(_parse_event(line, stmt))
    return script


def _time_value(text: str) -> tuple[str, float]:
    if text.startswith("+"):
        return "rel", float(text[1:])
    return "abs", float(text)


def _parse_event(line: int, stmt: str) -> Event:
    end_time = None
    m = _BLOCKING.match(stmt)
    if m:
        kind, t = _time_value(m.group(1))
        end_kind, end = _time_value(m.group(2))
        # START...END: with a relative START (`+.1...0.2`) END counts, like START,
        # from the previous event
        end_time = ("rel", end) if kind == "rel" or end_kind == "rel" else ("abs", end)
        rest = m.group(3)
        hi = hi_kind = None
    else:
        m = _TIME.match(stmt)
        if not m:
            raise ScriptError(line, f"an event starts with its time: {stmt[:40]!r}")
        spec, rest = m.group(1), m.group(2)
        hi = hi_kind = None
        if spec == "*":
            kind, t = "any", 0.0
        elif "~" in spec:
            lo_s, hi_s = spec.split("~")
            kind, t = _time_value(lo_s)
            hi_kind, hi = _time_value(hi_s)
        else:
            kind, t = _time_value(spec)
    rest = rest.strip()
    if rest.startswith("<") or rest.startswith(">"):
        action = _parse_packet(line, rest)
    elif rest.startswith("`"):
        action = Command(rest.strip().strip("`"))
    elif rest.startswith("%{"):
        action = Code(rest)
    else:
        action = _parse_syscall(line, rest)
        action.end_time = end_time
    if end_time is not None and not isinstance(action, Syscall):
        raise ScriptError(line, "only a system call can have an end time (START...END)")
    return Event(line, kind, t, hi, hi_kind, action)


_FLAG_LETTERS = set("SFRP.EWUC")


def _parse_packet(line: int, text: str) -> PacketSpec:
    toks = _tokens(text, line)
    direction = toks[0][1]
    i = 1
    if i < len(toks) and toks[i][1] == "[":
        raise Unsupported("IP info in brackets ([ect0], [tos ...]) on packet lines")
    if i < len(toks) and toks[i][0] == "word" and toks[i][1] in ("udp", "icmp"):
        raise Unsupported(f"{toks[i][1]} packets")
    # flags: a word of letters, '.', a word then '.', or '-'
    flags = ""
    if toks[i][1] == "-":
        i += 1
    else:
        while i < len(toks) and (toks[i][1] == "." or (toks[i][0] == "word" and set(toks[i][1]) <= _FLAG_LETTERS)):
            flags += toks[i][1]
            i += 1
        if not flags:
            raise ScriptError(line, f"packet flags expected, found {toks[i][1]!r}")
    if set(flags) & set("EWUC"):
        raise Unsupported(f"TCP flags {''.join(sorted(set(flags) & set('EWUC')))} (ECN, URG)")
    # start:end(len)
    try:
        start = int(toks[i][1])
        assert toks[i + 1][1] == ":"
        end = int(toks[i + 2][1])
        assert toks[i + 3][1] == "("
        length = int(toks[i + 4][1])
        assert toks[i + 5][1] == ")"
    except (IndexError, ValueError, AssertionError):
        raise ScriptError(line, "sequence numbers as start:end(length) expected") from None
    i += 6
    spec = PacketSpec(direction, flags, start, end, length)
    while i < len(toks):
        kind, val = toks[i]
        if val == "ack":
            spec.ack = int(toks[i + 1][1])
            i += 2
        elif val == "win":
            spec.win = int(toks[i + 1][1])
            i += 2
        elif val == "<":
            j = i + 1
            depth = 1
            while j < len(toks) and depth:
                if toks[j][1] == "<":
                    depth += 1
                elif toks[j][1] == ">":
                    depth -= 1
                j += 1
            inner = toks[i + 1:j - 1]
            spec.options_given = True
            if len(inner) == 1 and inner[0][0] == "ellipsis":
                spec.any_options = True
            else:
                spec.options = _parse_tcp_options(line, inner)
            i = j
        else:
            raise ScriptError(line, f"unexpected {val!r} on a packet line")
    if (spec.end - spec.start) & 0xFFFFFFFF != spec.length:
        raise ScriptError(line, f"{start}:{end}({length}): the length is not end - start")
    return spec


def _parse_tcp_options(line: int, toks: list) -> list:
    opts = []
    groups, cur = [], []
    for t in toks:
        if t[1] == ",":
            groups.append(cur)
            cur = []
        else:
            cur.append(t)
    groups.append(cur)
    for g in groups:
        if not g:
            continue
        name = g[0][1]
        if name == "nop":
            opts.append(("nop", None))
        elif name == "eol":
            opts.append(("eol", None))
        elif name == "mss":
            opts.append(("mss", int(g[1][1])))
        elif name == "wscale":
            opts.append(("wscale", int(g[1][1])))
        elif name == "sackOK":
            opts.append(("sackOK", None))
        elif name == "sack":
            blocks = []
            k = 1
            while k + 2 < len(g) + 1 and k < len(g):
                blocks.append((int(g[k][1]), int(g[k + 2][1])))
                k += 3
            opts.append(("sack", tuple(blocks)))
        elif name == "TS":
            try:
                assert g[1][1] == "val" and g[3][1] == "ecr"
                opts.append(("TS", (int(g[2][1]), int(g[4][1]))))
            except (IndexError, AssertionError, ValueError):
                raise ScriptError(line, "TS val N ecr M expected") from None
        elif name in ("FO", "FOEXP", "md5", "exp", "mptcp", "tfo"):
            raise Unsupported(f"TCP option {name}")
        else:
            raise Unsupported(f"TCP option {name!r}")
    return opts


# ---- syscalls ---------------------------------------------------------------------------------------

def _parse_syscall(line: int, text: str) -> Syscall:
    toks = _tokens(text, line)
    if not toks or toks[0][0] != "word" or len(toks) < 2 or toks[1][1] != "(":
        raise ScriptError(line, f"a system call name(...) expected: {text[:40]!r}")
    name = toks[0][1]
    p = _Exprs(toks, 2, line)
    args = []
    if p.peek() != ")":
        args.append(p.expr())
        while p.peek() == ",":
            p.i += 1
            args.append(p.expr())
    p.expect(")")
    p.expect("=")
    result = p.expr()
    errno = None
    if p.i < len(toks) and toks[p.i][0] == "word":
        errno = toks[p.i][1]
        p.i += 1
        if p.peek() == "(":              # the note: (Operation now in progress)
            depth = 0
            while p.i < len(toks):
                if toks[p.i][1] == "(":
                    depth += 1
                elif toks[p.i][1] == ")":
                    depth -= 1
                p.i += 1
                if depth == 0:
                    break
    elif p.peek() == "(":                # a note after a value: = 0x02 (flags O_RDWR)
        while p.i < len(toks) and toks[p.i][1] != ")":
            p.i += 1
        p.i += 1
    if p.i != len(toks):
        raise ScriptError(line, f"unexpected {toks[p.i][1]!r} after the system call")
    return Syscall(name, args, result, errno)


class _Exprs:
    def __init__(self, toks, i, line):
        self.toks, self.i, self.line = toks, i, line

    def peek(self):
        return self.toks[self.i][1] if self.i < len(self.toks) else None

    def expect(self, v):
        if self.peek() != v:
            raise ScriptError(self.line, f"expected {v!r}, found {self.peek()!r}")
        self.i += 1

    def expr(self):
        left = self.atom()
        if self.peek() == "|":
            parts = [left]
            while self.peek() == "|":
                self.i += 1
                parts.append(self.atom())
            return BinaryOr(parts)
        return left

    def atom(self):
        if self.i >= len(self.toks):
            raise ScriptError(self.line, "an expression expected")
        kind, val = self.toks[self.i]
        self.i += 1
        if kind == "ellipsis":
            return Ellipsis_
        if kind == "int":
            return int(val)
        if kind == "hex":
            return int(val, 16)
        if kind == "string":
            s = val[1:-1]
            if self.peek() == "...":
                self.i += 1
            return s
        if kind == "word":
            if self.peek() == "(":         # htons(8080), inet_addr("..."), ...
                self.i += 1
                inner = self.expr() if self.peek() != ")" else None
                self.expect(")")
                return (val, inner)
            return val
        if val == "[":
            items = []
            if self.peek() != "]":
                items.append(self.expr())
                while self.peek() == ",":
                    self.i += 1
                    items.append(self.expr())
            self.expect("]")
            return items
        if val == "{":
            fields = {}
            while self.peek() != "}":
                key = self.toks[self.i][1]
                self.i += 1
                if self.peek() == "(":      # msg_name(...) = ...
                    self.i += 1
                    self.atom() if self.peek() != ")" else None
                    self.expect(")")
                self.expect("=")
                fields[key] = self.expr()
                if self.peek() == ",":
                    self.i += 1
            self.expect("}")
            return Struct(fields)
        if val == "-" and self.i < len(self.toks) and self.toks[self.i][0] == "int":
            self.i += 1
            return -int(self.toks[self.i - 1][1])
        raise ScriptError(self.line, f"unexpected {val!r} in an expression")
