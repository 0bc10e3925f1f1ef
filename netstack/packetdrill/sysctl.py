"""Back-quoted shell lines in scripts: the sysctls scripts set, mapped onto the
stack's TCP configuration (Linux and FreeBSD names). Anything else is a
construct the runner does not run: Unsupported, so the script is a SKIP."""

from __future__ import annotations

import re

from .parser import Unsupported

__all__ = ["apply_command"]


def _bool(v: str) -> bool:
    return v.strip() not in ("0", "")


def _middle(v: str) -> int:
    parts = v.split()
    return int(parts[1] if len(parts) >= 2 else parts[0])


# name -> fn(tcp config, value text)
SYSCTLS = {
    # Linux
    "net.ipv4.tcp_timestamps": lambda c, v: setattr(c, "timestamps", _bool(v)),
    "net.ipv4.tcp_sack": lambda c, v: setattr(c, "sack", _bool(v)),
    "net.ipv4.tcp_window_scaling": lambda c, v: setattr(c, "window_scale", _bool(v)),
    "net.ipv4.tcp_rmem": lambda c, v: setattr(c, "recv_buffer", _middle(v)),
    "net.ipv4.tcp_wmem": lambda c, v: setattr(c, "send_buffer", _middle(v)),
    "net.ipv4.tcp_syn_retries": lambda c, v: setattr(c, "syn_retries", int(v)),
    "net.ipv4.tcp_synack_retries": lambda c, v: setattr(c, "syn_retries", int(v)),
    "net.ipv4.tcp_retries2": lambda c, v: setattr(c, "max_retries", int(v)),
    "net.ipv4.tcp_syncookies": lambda c, v: setattr(c, "syn_cookies", "always" if v.strip() == "2" else _bool(v)),
    "net.ipv4.tcp_max_syn_backlog": lambda c, v: setattr(c, "syn_backlog", int(v)),
    "net.ipv4.tcp_keepalive_time": lambda c, v: setattr(c, "keepalive_idle", float(v)),
    "net.ipv4.tcp_keepalive_intvl": lambda c, v: setattr(c, "keepalive_interval", float(v)),
    "net.ipv4.tcp_keepalive_probes": lambda c, v: setattr(c, "keepalive_count", int(v)),
    "net.ipv4.tcp_congestion_control": lambda c, v: _congestion(c, v),
    "net.ipv4.tcp_fin_timeout": lambda c, v: setattr(c, "fin_timeout", float(v)),
    # what the stack always does, at Linux's defaults: accepted as they are
    "net.ipv4.tcp_dsack": lambda c, v: _only(v, "1", "tcp_dsack=0"),
    "net.ipv4.tcp_recovery": lambda c, v: _only(v, "1", "tcp_recovery other than RACK (1)"),
    "net.ipv4.tcp_early_retrans": lambda c, v: _only(v, "3", "tcp_early_retrans other than TLP (3)"),
    # FreeBSD
    "net.inet.tcp.rfc1323": lambda c, v: (setattr(c, "timestamps", _bool(v)), setattr(c, "window_scale", _bool(v))),
    "net.inet.tcp.sack.enable": lambda c, v: setattr(c, "sack", _bool(v)),
    "net.inet.tcp.recvspace": lambda c, v: setattr(c, "recv_buffer", int(v)),
    "net.inet.tcp.sendspace": lambda c, v: setattr(c, "send_buffer", int(v)),
    "net.inet.tcp.syncookies": lambda c, v: setattr(c, "syn_cookies", _bool(v)),
    "net.inet.tcp.insecure_rst": lambda c, v: _only(v, "0", "insecure_rst=1 (RFC 5961 is always on)"),
}


def _only(v: str, ok: str, what: str) -> None:
    if v.strip() != ok:
        raise Unsupported(f"sysctl {what}")


def _congestion(c, v: str) -> None:
    v = v.strip()
    if v == "reno":
        v = "newreno"
    if v not in ("newreno", "cubic", "bbr"):
        raise Unsupported(f"congestion control {v}")
    c.congestion = v


def linux_profile(tcp) -> None:
    """What Linux's defaults (the google suite's defaults.sh) show in segments
    and we would otherwise do differently: a window scale of 8 (Linux's from its
    6 MB tcp_rmem)."""
    tcp.wscale = 8


def apply_command(text: str, tcp) -> None:
    """One back-quoted line: sysctl settings (several may be joined by ';' or
    '&&'), echo V > /proc/sys/..., or the suites' defaults.sh (our defaults)."""
    for part in re.split(r";|&&|\n", text):
        part = part.strip()
        if not part:
            continue
        if part.endswith("defaults.sh") or part.endswith("set_sysctls.py"):
            linux_profile(tcp)  # the suite's host defaults: Linux's, as far as they show on the wire
            continue
        m = re.match(r"^echo\s+\"?([^\">]*)\"?\s*>\s*/proc/sys/(\S+)$", part)
        if m:
            _set(m.group(2).replace("/", "."), m.group(1), tcp)
            continue
        m = re.match(r"^sysctl\s+((?:-[qwe]+\s+)*)(.*)$", part)
        if m:
            for assign in re.findall(r"([\w.]+)\s*=\s*(\"[^\"]*\"|'[^']*'|\S+)", m.group(2)):
                _set(assign[0], assign[1].strip("\"'"), tcp)
            continue
        raise Unsupported(f"shell command `{part[:60]}`")


def _set(name: str, value: str, tcp) -> None:
    fn = SYSCTLS.get(name)
    if fn is None:
        raise Unsupported(f"sysctl {name}")
    try:
        fn(tcp, value)
    except ValueError:
        raise Unsupported(f"sysctl {name}={value}") from None
