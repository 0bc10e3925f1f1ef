"""Network namespaces, veth pairs and TAP devices for tests and demos, on pyroute2.

    with NetLab() as lab:
        kernel = lab.ns("kernel")                    # a namespace, lo up
        lab.veth(kernel, "vk", stack, "vs", addr_a="192.0.2.1/24")
        lab.tap(kernel, "tap0", addr="192.0.2.1/24")
        p = lab.popen(kernel, [sys.executable, "client.py"])
    # every namespace (and the links inside it) is deleted on exit, even on failure

Names carry the creating process id, so parallel runs never collide and
`NetLab.cleanup_stale()` can remove what a killed run left behind. Only
TEST-NET addresses belong here (192.0.2.0/24, 198.51.100.0/24, 203.0.113.0/24).
"""

from __future__ import annotations

import ipaddress
import os
import subprocess

from pyroute2 import NetNS, netns

__all__ = ["NetLab"]

_TEST_NETS = [ipaddress.ip_network(n) for n in ("192.0.2.0/24", "198.51.100.0/24", "203.0.113.0/24")]


def _check_test_net(addr: str) -> None:
    ip = ipaddress.ip_interface(addr).ip
    if not any(ip in n for n in _TEST_NETS):
        raise ValueError(f"{addr}: only TEST-NET addresses (RFC 5737) are used in labs")


class NetLab:
    PREFIX = "pss"

    def __init__(self, tag: str = "") -> None:
        self.prefix = f"{self.PREFIX}{os.getpid()}{tag}_"
        self.namespaces: list[str] = []
        self.procs: list[subprocess.Popen] = []

    # ---- namespaces ---------------------------------------------------------------
    def ns(self, name: str) -> str:
        full = self.prefix + name
        netns.create(full)
        self.namespaces.append(full)
        with NetNS(full) as n:
            n.link("set", index=n.link_lookup(ifname="lo")[0], state="up")
        self.sysctl(full, "net/ipv6/conf/all/disable_ipv6", "1")
        self.sysctl(full, "net/ipv6/conf/default/disable_ipv6", "1")
        return full

    def sysctl(self, ns: str, key: str, value: str) -> None:
        """Write /proc/sys/<key> inside ns (in a short-lived child process)."""
        code = f"open('/proc/sys/{key}', 'w').write({value!r})"
        subprocess.run(["python3", "-c", code], preexec_fn=lambda: netns.setns(ns), check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    # ---- links --------------------------------------------------------------------
    def veth(self, ns_a: str, if_a: str, ns_b: str, if_b: str, addr_a: str | None = None,
             addr_b: str | None = None) -> None:
        with NetNS(ns_a) as a:
            a.link("add", ifname=if_a, kind="veth", peer={"ifname": if_b, "net_ns_fd": ns_b})
        self.up(ns_a, if_a, addr_a)
        self.up(ns_b, if_b, addr_b)

    def tap(self, ns: str, name: str, addr: str | None = None, multi_queue: bool = False) -> None:
        """A persistent TAP device (our stack attaches to it with TUNSETIFF). Made
        with the tun ioctls in a short child inside ns (TAP creation is not netlink)."""
        flags = 0x0002 | 0x1000 | (0x0100 if multi_queue else 0)   # IFF_TAP|IFF_NO_PI[|IFF_MULTI_QUEUE]
        code = ("import fcntl, os, struct; fd = os.open('/dev/net/tun', os.O_RDWR); "
                f"fcntl.ioctl(fd, 0x400454CA, struct.pack('16sH22x', {name.encode()!r}, {flags})); "
                "fcntl.ioctl(fd, 0x400454CB, 1)")                 # TUNSETIFF, TUNSETPERSIST
        subprocess.run(["python3", "-c", code], preexec_fn=lambda: netns.setns(ns), check=True)
        self.up(ns, name, addr)

    def up(self, ns: str, ifname: str, addr: str | None = None) -> None:
        with NetNS(ns) as n:
            idx = n.link_lookup(ifname=ifname)[0]
            if addr is not None:
                _check_test_net(addr)
                iface = ipaddress.ip_interface(addr)
                n.addr("add", index=idx, address=str(iface.ip), prefixlen=iface.network.prefixlen)
            n.link("set", index=idx, state="up")

    def link_mac(self, ns: str, ifname: str) -> str:
        with NetNS(ns) as n:
            return n.get_links(n.link_lookup(ifname=ifname)[0])[0].get_attr("IFLA_ADDRESS")

    def neigh(self, ns: str, ifname: str, ip: str, mac: str) -> None:
        """A permanent ARP entry (so the kernel need not resolve ip)."""
        with NetNS(ns) as n:
            n.neigh("add", dst=ip, lladdr=mac, ifindex=n.link_lookup(ifname=ifname)[0], state=0x80)

    # ---- processes ----------------------------------------------------------------
    def popen(self, ns: str, argv, **kw) -> subprocess.Popen:
        p = subprocess.Popen(argv, preexec_fn=lambda: netns.setns(ns), **kw)
        self.procs.append(p)
        return p

    def run(self, ns: str, argv, **kw) -> subprocess.CompletedProcess:
        return subprocess.run(argv, preexec_fn=lambda: netns.setns(ns), **kw)

    def wait_port(self, ns: str, host: str, port: int, proc=None, timeout: float = 20.0) -> None:
        """Until a TCP connect to host:port from inside ns succeeds; RuntimeError if
        `proc` (the server) exits first or `timeout` passes."""
        import socket
        import time
        netns.pushns(ns)
        try:
            end = time.monotonic() + timeout
            while True:
                try:
                    socket.create_connection((host, port), timeout=0.5).close()
                    return
                except OSError:
                    if (proc is not None and proc.poll() is not None) or time.monotonic() > end:
                        err = proc.stderr.read() if proc is not None and proc.stderr else ""
                        raise RuntimeError(f"nothing listens on {host}:{port} in {ns}: {err!r}") from None
                    time.sleep(0.05)
        finally:
            netns.popns()

    def stop(self, proc, timeout: float = 10.0) -> None:
        """End a process this lab started: SIGTERM, then SIGKILL after `timeout`."""
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

    def enter(self, ns: str) -> None:
        """Move the calling process (use in a forked child only) into ns."""
        netns.setns(ns)

    # ---- teardown -------------------------------------------------------------------
    def close(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                p.kill()
                try:
                    p.wait(5)
                except subprocess.TimeoutExpired:
                    pass
        self.procs.clear()
        for ns in reversed(self.namespaces):
            try:
                netns.remove(ns)
            except OSError:
                pass
        self.namespaces.clear()

    def __enter__(self) -> "NetLab":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    @classmethod
    def cleanup_stale(cls) -> list[str]:
        """Remove namespaces left by NetLabs whose process is gone."""
        removed = []
        for ns in netns.listnetns():
            if not ns.startswith(cls.PREFIX):
                continue
            pid = ns[len(cls.PREFIX):].split("_")[0].rstrip("abcdefghijklmnopqrstuvwxyz")
            if pid.isdigit() and not os.path.exists(f"/proc/{pid}"):
                netns.remove(ns)
                removed.append(ns)
        return removed
