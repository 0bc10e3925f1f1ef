"""Applications on the native stack in a test: two stacks on an in-memory wire
(`AppLink`), or one on a TAP in a network namespace of its own (`LiveStack`).

Both run the user's code -- functions written against the socket API
(`listen`, `connect`, streams), as under app_template -- on a reactor in the
test's own process, and keep every frame that crossed the wire for a pcap.
"""

from __future__ import annotations

import threading
import time
from typing import Any, Callable

from drivers.base import FaultInjecting, Wrapper, frame_bytes

from ..config import InterfaceConfig
from . import write_pcap

__all__ = ["AppLink", "LiveStack"]


class _Tape(Wrapper):
    """Keeps (time, frame) of everything the inner device sends."""

    def __init__(self, inner, clock, tape: list) -> None:
        super().__init__(inner)
        self._clock, self._tape = clock, tape

    def send_batch(self, frames) -> int:
        now = self._clock()
        for f in frames:
            self._tape.append((now, bytes(frame_bytes(f))))
        return self.inner.send_batch(frames)


class AppLink:
    """Two native stacks, a client and a server, on one in-memory Ethernet
    segment, on one reactor with a manual clock (it jumps to the next deadline:
    a lossy transfer of seconds of simulated time takes milliseconds).

    Impairments are seeded and apply to the frames each side receives: `loss`,
    `duplicate`, `reorder`, `corrupt` (fractions 0..1), `delay` (seconds, each
    way). The socket API's own calls (`listen`, `connect`, ...) go to the server
    stack, so the user's server runs unchanged; the client side is
    `link.connect(port)` (or `link.client`, a NativeStack)."""

    client_ip = "192.0.2.1"
    server_ip = "192.0.2.2"

    def __init__(self, seed: int = 0, loss: float = 0.0, duplicate: float = 0.0, reorder: float = 0.0,
                 corrupt: float = 0.0, delay: float = 0.0, client_config: dict | None = None,
                 server_config: dict | None = None) -> None:
        from drivers.loopback import LoopbackDevice
        from reactor import ManualClock, Reactor
        from ..sockets.native import NativeStack
        self.reactor = r = Reactor(clock=ManualClock(autojump=True))
        self.frames: list = []
        a, b = LoopbackDevice.pair()
        def faults(dev, s):
            return FaultInjecting(dev, seed=s, drop=loss, duplicate=duplicate, reorder=reorder, corrupt=corrupt,
                                  delay=delay, clock=r.now)
        da = _Tape(faults(a, seed * 2 + 1), r.now, self.frames)
        db = _Tape(faults(b, seed * 2 + 2), r.now, self.frames)
        self.client = NativeStack(r, da, InterfaceConfig(mac=a.mac, ip=self.client_ip, seed=seed * 2 + 1,
                                                         **(client_config or {})))
        self.server = NativeStack(r, db, InterfaceConfig(mac=b.mac, ip=self.server_ip, seed=seed * 2 + 2,
                                                         **(server_config or {})))
        r.network_stack = self.server
        self._apps: list = []
        self.app_errors: list = []

    def serve(self, app: Callable[[], Any]) -> "AppLink":
        """Start `app` (the server: a function returning a future, or a coroutine
        function) when the link runs; it may run forever."""
        self._apps.append(app)
        return self

    def connect(self, port: int) -> Any:
        """A future of a connected_socket from the client stack to the server."""
        from ..sockets.api import make_ipv4_address
        return self.client.connect(make_ipv4_address((self.server_ip, port)), None)

    def run(self, client: Callable[["AppLink"], Any], timeout: float = 600.0) -> Any:
        """Run the servers and `client(link)` (a coroutine function or a function
        returning a future) until the client is done; returns its value. Fails
        with TimeoutError after `timeout` seconds of simulated time."""
        from reactor import futurize, sleep, with_timeout

        async def main():
            for app in self._apps:
                futurize(app).handle_exception(self.app_errors.append)
            self._apps = []
            await sleep(0.001)
            return await with_timeout(timeout, futurize(client, self))
        return self.reactor.run(main)

    def write_pcap(self, path: str) -> None:
        write_pcap(path, sorted(self.frames, key=lambda x: x[0]))

    def stats(self) -> dict:
        return {"client": self.client.stats(), "server": self.server.stats()}

    def faults(self) -> dict:
        """What the impairments did, both directions: dropped, duplicated, ..."""
        out: dict = {}
        for stack in (self.client, self.server):
            for k, v in stack.dev.inner.counts.items():
                out[k] = out.get(k, 0) + v
        return out

    def close(self) -> None:
        self.reactor.close()


class _Thread(threading.Thread):
    result: Any = None
    error: BaseException | None = None


class LiveStack:
    """The native stack on a TAP device in a network namespace made for it (and
    removed by close()), in this process: the kernel side of the TAP has
    `kernel_ip`, our stack `stack_ip`. The user's server runs on `reactor`;
    kernel clients run in a thread inside the namespace (`in_namespace`).
    Needs root (CAP_NET_ADMIN)."""

    kernel_ip = "192.0.2.1"
    stack_ip = "192.0.2.2"

    def __init__(self, tag: str = "fixture", offloads: bool = True) -> None:
        from pyroute2 import netns
        from drivers.tap import TapDevice
        from reactor import Reactor
        from ..sockets.native import NativeStack
        from .netlab import NetLab
        self.lab = NetLab(tag)
        try:
            self.ns = self.lab.ns("k")
            self.lab.tap(self.ns, "tap0", f"{self.kernel_ip}/24")
            self.reactor = Reactor()
            self.frames: list = []
            netns.pushns(self.ns)
            try:
                dev = TapDevice("tap0", csum_offload=offloads, tso=offloads, lro=offloads)
            finally:
                netns.popns()
            self.stack = NativeStack(self.reactor, _Tape(dev, time.time, self.frames),
                                     InterfaceConfig(mac=dev.mac, ip=self.stack_ip, gateway=self.kernel_ip,
                                                     mtu=dev.mtu, tx_checksum_offload=dev.tx_checksum,
                                                     tso_max=64000 if dev.tso else 0))
            self.reactor.network_stack = self.stack
        except BaseException:
            self.lab.close()
            raise

    def in_namespace(self, fn: Callable[[], Any]) -> "_Thread":
        """Run fn() in a thread inside the namespace (the kernel's side); the
        thread's result or exception is in .result / .error after join()."""
        from pyroute2 import netns

        def body():
            netns.pushns(self.ns)
            try:
                t.result = fn()
            except BaseException as e:  # noqa: BLE001 - handed to the test
                t.error = e
            finally:
                netns.popns()
        t = _Thread(target=body, daemon=True)
        t.start()
        return t

    def run(self, fn: Callable[[], Any], timeout: float = 60.0) -> Any:
        from reactor import futurize, with_timeout
        return self.reactor.run(lambda: with_timeout(timeout, futurize(fn)))

    def write_pcap(self, path: str) -> None:
        write_pcap(path, sorted(self.frames, key=lambda x: x[0]))

    def close(self) -> None:
        try:
            self.reactor.close()
        finally:
            self.lab.close()
