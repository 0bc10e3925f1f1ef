"""Logging as Seastar's: named loggers, levels per logger, the shard and a
timestamp in every line.

    --default-log-level LEVEL            error | warn | info | debug | trace (default info)
    --logger-log-level NAME=LEVEL[:NAME=LEVEL...]
    --log-to-stdout                      (default: stderr)
    --log-to-syslog                      (also to the local syslog, /dev/log)

A line:  INFO  2026-12-02 15:26:22,123 [shard 0] tcp - 192.0.2.1:80 ESTABLISHED -> FIN-WAIT-1

The loggers are the Python `logging` module's, by these names (the project's
modules log through them, never on the per-packet path): seastar (the
application's own and app_template), reactor, smp, native (the socket glue),
tcp, arp, dhcp, icmp, ipv4. Any other name given is a logger too, for the
application's own modules.
"""

from __future__ import annotations

import logging
import logging.handlers
import os
import sys
from typing import Any

__all__ = ["LOGGERS", "LEVELS", "parse_logger_levels", "configure_logging", "TRACE"]

TRACE = 5
logging.addLevelName(TRACE, "TRACE")
LEVELS = {"error": logging.ERROR, "warn": logging.WARNING, "info": logging.INFO, "debug": logging.DEBUG,
          "trace": TRACE}
LOGGERS = ("seastar", "reactor", "smp", "native", "tcp", "arp", "dhcp", "icmp", "ipv4")
_NAMES = {logging.ERROR: "ERROR", logging.WARNING: "WARN", logging.INFO: "INFO", logging.DEBUG: "DEBUG",
          TRACE: "TRACE", logging.CRITICAL: "ERROR"}


def level(text: str) -> int:
    try:
        return LEVELS[text.strip().lower()]
    except KeyError:
        raise ValueError(f"unknown log level {text!r} (one of {', '.join(LEVELS)})") from None


def parse_logger_levels(text: str) -> dict[str, int]:
    """'tcp=debug:arp=trace' -> {'tcp': DEBUG, 'arp': TRACE} (',' separates too)."""
    out: dict[str, int] = {}
    for part in text.replace(",", ":").split(":"):
        if not part.strip():
            continue
        name, eq, lv = part.partition("=")
        if not eq or not name.strip():
            raise ValueError(f"--logger-log-level wants NAME=LEVEL[:NAME=LEVEL...], not {part!r}")
        out[name.strip()] = level(lv)
    return out


class _Formatter(logging.Formatter):
    def __init__(self, shard: int) -> None:
        super().__init__()
        self.shard = shard

    def format(self, record: logging.LogRecord) -> str:
        ts = self.formatTime(record, "%Y-%m-%d %H:%M:%S") + f",{int(record.msecs):03d}"
        text = f"{_NAMES.get(record.levelno, record.levelname):<5} {ts} [shard {self.shard}] {record.name} - " \
               f"{record.getMessage()}"
        if record.exc_info:
            text += "\n" + self.formatException(record.exc_info)
        return text


_installed: list = []


def configure_logging(cfg: Any, shard: int) -> None:
    """Install the handlers and levels the options ask for (each shard calls it
    with its id after the fork, so every line names its shard)."""
    root = logging.getLogger()
    for old in _installed:
        root.removeHandler(old)
    _installed.clear()
    fmt = _Formatter(shard)
    h: logging.Handler = logging.StreamHandler(sys.stdout if cfg.get("log_to_stdout") else sys.stderr)
    h.setFormatter(fmt)
    handlers = [h]
    if cfg.get("log_to_syslog"):
        address = "/dev/log" if os.path.exists("/dev/log") else ("localhost", 514)
        s = logging.handlers.SysLogHandler(address=address)
        s.setFormatter(fmt)
        handlers.append(s)
    for x in handlers:
        root.addHandler(x)
        _installed.append(x)
    default = cfg.get("default_log_level") or logging.INFO
    root.setLevel(default)
    for name in LOGGERS:
        logging.getLogger(name).setLevel(logging.NOTSET)
    for name, lv in (cfg.get("logger_log_level") or {}).items():
        logging.getLogger(name).setLevel(lv)
