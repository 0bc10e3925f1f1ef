"""Prometheus metrics, served by the application itself on our own reactor.

    --prometheus-port N        serve http://ADDRESS:N/metrics (0, the default here: off)
    --prometheus-address A     (default 0.0.0.0)
    --prometheus-prefix P      metric names start with P_ (default "seastar")

Shard 0 serves; each scrape gathers every shard's counters (smp.submit_to) and
renders them with prometheus_client's exposition code (text format 0.0.4, HELP
and TYPE lines), one series per shard (`shard` label). The server speaks just
enough HTTP/1.1 for a scraper (GET /metrics; anything else a 404) on the socket
API, so it runs on whichever stack the application runs on.

The series (P = the prefix):
  P_reactor_tasks_total, _polls_total, _sleeps_total, _preemptions_total, _timers_total
  P_memory_budget_bytes, P_memory_used_bytes (this shard's RSS)
  native stack:
  P_network_frames_total{direction}, P_network_bytes_total{direction}     per device
  P_network_drops_total{reason}
  P_tcp_connections{state}
  P_tcp_retransmits_total{kind=all|fast|timeout|tlp|rescue}
  P_tcp_resets_sent_total, P_tcp_challenge_acks_total
  P_tcp_listen_overflows_total{queue=syn|accept}, P_tcp_syn_cookies_total{what=sent|accepted|rejected}
  P_arp_requests_total, P_arp_misses_total, P_ipv4_reassembled_total
  P_shard_frames_forwarded_total (frames routed to the shard that owns the flow)
  P_network_counter_total{name}   every other counter of the stack, by name
"""

from __future__ import annotations

import os
from typing import Any

__all__ = ["collect_local", "gather", "render", "start_metrics_server"]

# (name, type, help) of the fixed families; values come as {labels tuple: value}
FAMILIES = {
    "reactor_tasks_total": ("counter", "continuations and tasks run"),
    "reactor_polls_total": ("counter", "turns of the reactor loop (each polls the devices)"),
    "reactor_sleeps_total": ("counter", "times the reactor slept in epoll_wait"),
    "reactor_preemptions_total": ("counter", "task quota expiries"),
    "reactor_timers_total": ("counter", "timers fired"),
    "memory_budget_bytes": ("gauge", "this shard's memory budget (-m divided between shards)"),
    "memory_used_bytes": ("gauge", "this shard's resident memory"),
    "network_frames_total": ("counter", "frames through the device"),
    "network_bytes_total": ("counter", "bytes through the device"),
    "network_drops_total": ("counter", "frames dropped by the stack, by reason"),
    "tcp_connections": ("gauge", "TCP connections by state"),
    "tcp_retransmits_total": ("counter", "TCP segments retransmitted (all) and recoveries started by kind"),
    "tcp_resets_sent_total": ("counter", "TCP resets sent"),
    "tcp_challenge_acks_total": ("counter", "RFC 5961 challenge ACKs sent"),
    "tcp_listen_overflows_total": ("counter", "SYNs or handshakes refused by a full queue"),
    "tcp_syn_cookies_total": ("counter", "SYN cookies"),
    "arp_requests_total": ("counter", "ARP requests sent"),
    "arp_misses_total": ("counter", "packets that waited for an address that never resolved"),
    "ipv4_reassembled_total": ("counter", "IPv4 datagrams reassembled from fragments"),
    "shard_frames_forwarded_total": ("counter", "frames handed to the shard that owns their flow"),
    "network_counter_total": ("counter", "every counter of the native stack, by name"),
}


def _rss() -> int:
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return 0


def collect_local() -> dict:
    """This shard's values: {family: {labels (tuple of pairs): value}} (plain data:
    it crosses to shard 0)."""
    from reactor import engine
    r = engine()
    st = r._stats
    out: dict[str, dict] = {k: {} for k in FAMILIES}
    out["reactor_tasks_total"][()] = st["tasks"]
    out["reactor_polls_total"][()] = st["turns"]
    out["reactor_sleeps_total"][()] = st["sleeps"]
    out["reactor_preemptions_total"][()] = st["preemptions"]
    out["reactor_timers_total"][()] = st["timers_fired"]
    out["memory_budget_bytes"][()] = (r.config or {}).get("memory_per_shard") or 0
    out["memory_used_bytes"][()] = _rss()
    stack = r.network_stack
    iface = getattr(stack, "iface", None)
    if iface is None:
        return out
    s = iface.stats()
    dev = stack.dev.stats()
    name = getattr(stack.dev, "name", None) or getattr(stack.dev, "ifname", None) or type(stack.dev).__name__
    for d in ("rx", "tx"):
        out["network_frames_total"][(("device", name), ("direction", d))] = dev.get(f"{d}_frames", s.get(f"{d}_frames", 0))
        if f"{d}_bytes" in dev:
            out["network_bytes_total"][(("device", name), ("direction", d))] = dev[f"{d}_bytes"]
    for k, v in s.items():
        if k.startswith("drop_"):
            out["network_drops_total"][(("reason", k[5:]),)] = v
    states: dict[str, int] = {}
    for tcb in iface.tcbs.values():
        states[tcb.state.value] = states.get(tcb.state.value, 0) + 1
    for state, n in states.items():
        out["tcp_connections"][(("state", state),)] = n
    for kind, key in (("all", "tcp_retransmits"), ("fast", "tcp_fast_retransmits"), ("timeout", "tcp_timeouts"),
                      ("tlp", "tcp_tlp_probes"), ("rescue", "tcp_rescue_retransmits")):
        out["tcp_retransmits_total"][(("kind", kind),)] = s.get(key, 0)
    out["tcp_resets_sent_total"][()] = s.get("tx_tcp_rst", 0) + s.get("tcp_resets_sent", 0)
    out["tcp_challenge_acks_total"][()] = s.get("tcp_challenge_acks", 0)
    lst = [x.stats for x in iface.listeners.values()]
    out["tcp_listen_overflows_total"][(("queue", "syn"),)] = sum(x["syn_queue_overflow"] for x in lst) + \
        s.get("drop_tcp_listen_queue_full", 0)
    out["tcp_listen_overflows_total"][(("queue", "accept"),)] = sum(x["accept_queue_overflow"] for x in lst)
    for what in ("sent", "accepted", "rejected"):
        out["tcp_syn_cookies_total"][(("what", what),)] = sum(x[f"syn_cookies_{what}"] for x in lst)
    out["arp_requests_total"][()] = s.get("tx_arp", 0)
    out["arp_misses_total"][()] = s.get("drop_arp_unresolved", 0)
    out["ipv4_reassembled_total"][()] = s.get("ipv4_reassembled", 0)
    out["shard_frames_forwarded_total"][()] = dev.get("forwarded", 0)
    for k, v in {**s, **{"device_" + k: v for k, v in dev.items()}}.items():
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            out["network_counter_total"][(("name", k),)] = v
    return out


def gather():
    """A future of [(shard, collect_local())] from every shard."""
    from reactor import smp, when_all_succeed
    futs = [smp.submit_to(s, collect_local) for s in range(smp.count)]
    return when_all_succeed(futs).then(lambda values: list(enumerate(values)))


def render(per_shard: list, prefix: str = "seastar") -> bytes:
    """The text exposition of [(shard, values)], by prometheus_client."""
    from prometheus_client import CollectorRegistry, generate_latest
    from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

    class _Collector:
        def collect(self):
            for fam, (kind, text) in FAMILIES.items():
                labels: list[str] = []
                for _shard, values in per_shard:
                    for key in values.get(fam, {}):
                        labels = [k for k, _v in key]
                        break
                    if labels:
                        break
                name = f"{prefix}_{fam}"
                if kind == "counter":
                    m: Any = CounterMetricFamily(name[:-6] if name.endswith("_total") else name, text,
                                                 labels=["shard", *labels])
                else:
                    m = GaugeMetricFamily(name, text, labels=["shard", *labels])
                for shard, values in per_shard:
                    for key, v in sorted(values.get(fam, {}).items()):
                        m.add_metric([str(shard), *[str(x) for _k, x in key]], v)
                yield m

    reg = CollectorRegistry(auto_describe=False)
    reg.register(_Collector())
    return generate_latest(reg)


def start_metrics_server(port: int, address: str = "0.0.0.0", prefix: str = "seastar"):
    """Serve /metrics on this shard (shard 0) until the application ends."""
    from reactor import futurize, keep_doing
    from .api import listen, listen_options, make_ipv4_address
    lo = listen_options()
    lo.reuse_address = True
    srv = listen(make_ipv4_address((address, port)), lo)

    async def handle(conn):
        inp, out = conn.input(), conn.output()
        req = b""
        try:
            while b"\r\n\r\n" not in req and len(req) < 16384:
                data = await inp.read()
                if not data:
                    return
                req += bytes(data)
            line = req.split(b"\r\n", 1)[0].split()
            if len(line) >= 2 and line[0] == b"GET" and line[1].split(b"?")[0] == b"/metrics":
                body = render(await gather(), prefix)
                head = (b"HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4; charset=utf-8\r\n"
                        b"Content-Length: %d\r\nConnection: close\r\n\r\n" % len(body))
            else:
                body = b"not found: try /metrics\n"
                head = (b"HTTP/1.1 404 Not Found\r\nContent-Type: text/plain\r\nContent-Length: %d\r\n"
                        b"Connection: close\r\n\r\n" % len(body))
            await out.write(head + body)
        finally:
            await out.close()

    def serve(ar) -> None:
        futurize(handle, ar.connection).handle_exception(lambda e: None)    # beside the next accept

    keep_doing(lambda: srv.accept().then(serve)).handle_exception(lambda e: None)
    return srv
