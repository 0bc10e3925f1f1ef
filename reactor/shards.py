"""Share-nothing shards: one process per shard, message passing between them.

Theory of operation
-------------------
`start_shards(n)` (called by app_template) forks shards 1..n-1 from shard 0
before any reactor exists. Every pair of shards shares one Unix stream
socketpair (a *channel*). Messages are length-prefixed pickles (cloudpickle
as a fallback, so lambdas and closures can cross), queued during a reactor
turn and written in one `send` per peer per turn by the mailbox poller.
Each shard's reactor learns of incoming messages through edge-triggered
epoll readiness on its channel sockets.

A message is one of:
  ("call", id, fn, args)     run fn(*args) on the receiving shard
  ("ret", id, ok, payload)   the outcome of call `id`: value or exception
  ("stop", code)             stop this shard (sent by shard 0)

Shards 1..n-1 run until told to stop or until a channel to shard 0 closes
(shard 0 died: they also get SIGKILL from PR_SET_PDEATHSIG). Shard 0 treats a
channel that closes while the application runs as a crashed shard and stops
the application with an error.
"""

from __future__ import annotations

from typing import Any, Callable

import ctypes
import itertools
import logging
import os
import pickle
import signal
import socket
import struct
import sys

from .future import Future, _failed, futurize

__all__ = ["smp", "this_shard_id", "sharded", "ShardCrashed", "cpu_order"]

log = logging.getLogger("smp")
_LEN = struct.Struct("!I")


class ShardCrashed(RuntimeError):
    pass


class RemoteError(RuntimeError):
    """An exception from another shard that could not be pickled as itself."""


_shard_id = 0
_mailbox: "_Mailbox | None" = None


def this_shard_id() -> int:
    return _shard_id


class _Smp:
    """Seastar's smp: the shard count and cross-shard calls."""

    count = 1

    @staticmethod
    def submit_to(shard: int, fn: Callable[..., Any], *args) -> Future:
        """Run fn(*args) on `shard`; a future of its result (exceptions cross too)."""
        if shard == _shard_id:
            return futurize(fn, *args)
        if not 0 <= shard < _Smp.count:
            return _failed(ValueError(f"no shard {shard} (smp.count = {_Smp.count})"))
        if _mailbox is None:
            return _failed(RuntimeError("shards are not running"))
        return _mailbox.call(shard, fn, args)

    @staticmethod
    def invoke_on_all(fn: Callable[..., Any], *args) -> Future:
        """Run fn(*args) on every shard; resolves when all are done."""
        from .idioms import parallel_for_each
        return parallel_for_each(range(_Smp.count), lambda s: _Smp.submit_to(s, fn, *args))

    @staticmethod
    def invoke_on_others(fn: Callable[..., Any], *args) -> Future:
        from .idioms import parallel_for_each
        return parallel_for_each([s for s in range(_Smp.count) if s != _shard_id],
                                 lambda s: _Smp.submit_to(s, fn, *args))

    @staticmethod
    def all_cpus() -> range:
        return range(_Smp.count)


smp = _Smp


def _dumps(obj) -> bytes:
    try:
        return pickle.dumps(obj, protocol=5)
    except (pickle.PicklingError, AttributeError, TypeError):
        import cloudpickle
        return cloudpickle.dumps(obj, protocol=5)


def _exc_payload(e: BaseException) -> bytes:
    try:
        data = _dumps(e)
        pickle.loads(data)
        return data
    except Exception:  # noqa: BLE001
        return _dumps(RemoteError(f"{type(e).__name__}: {e}"))


class _Peer:
    __slots__ = ("shard", "sock", "pfd", "out", "inbuf", "closed")

    def __init__(self, shard: int, sock: socket.socket) -> None:
        self.shard = shard
        self.sock = sock
        self.pfd: Any = None
        self.out: list = []
        self.inbuf = bytearray()
        self.closed = False


class _Mailbox:
    """The reactor poller that moves messages between this shard and the others."""

    def __init__(self, reactor, peers: dict[int, socket.socket]) -> None:
        self.reactor = reactor
        self.peers = {s: _Peer(s, sock) for s, sock in peers.items()}
        self.pending: dict[int, tuple] = {}
        self.ids = itertools.count(1)
        self.stopping = False
        self.on_peer_lost: Any = None  # fn(shard)
        self.on_stop: Any = None  # fn(code)
        self.stats = {"sent": 0, "received": 0}
        for p in self.peers.values():
            p.sock.setblocking(False)
            p.pfd = reactor.register_fd(p.sock.fileno())
        reactor.add_poller(self)

    def call(self, shard: int, fn, args) -> Future:
        peer = self.peers[shard]
        if peer.closed:
            return _failed(ShardCrashed(f"shard {shard} is gone"))
        i = next(self.ids)
        f = Future()
        self.pending[i] = (f, shard)
        try:
            data = _dumps(("call", i, fn, args))
        except Exception as e:  # noqa: BLE001
            del self.pending[i]
            return _failed(e)
        self._queue(peer, data)
        return f

    def send_stop(self, shard: int, code: int) -> None:
        peer = self.peers[shard]
        if not peer.closed:
            self._queue(peer, _dumps(("stop", code)))

    def _queue(self, peer: _Peer, data: bytes) -> None:
        peer.out.append(_LEN.pack(len(data)))
        peer.out.append(data)

    def poll(self) -> bool:
        work = False
        for peer in self.peers.values():
            if peer.closed:
                continue
            if peer.out:
                self._flush(peer)
                work = True
            if peer.pfd._rready:
                if self._receive(peer):
                    work = True
        return work

    def _flush(self, peer: _Peer) -> None:
        data = b"".join(peer.out)
        try:
            n = peer.sock.send(data)
        except BlockingIOError:
            n = 0
        except OSError:
            self._lost(peer)
            return
        peer.out = [data[n:]] if n < len(data) else []
        self.stats["sent"] += 1

    def _receive(self, peer: _Peer) -> bool:
        got = False
        while True:
            try:
                chunk = peer.sock.recv(1 << 20)
            except BlockingIOError:
                peer.pfd.clear_readable()
                break
            except OSError:
                chunk = b""
            if not chunk:
                self._lost(peer)
                return got
            peer.inbuf += chunk
            got = True
        buf = peer.inbuf
        pos = 0
        while len(buf) - pos >= 4:
            (n,) = _LEN.unpack_from(buf, pos)
            if len(buf) - pos - 4 < n:
                break
            msg = pickle.loads(memoryview(buf)[pos + 4:pos + 4 + n])
            pos += 4 + n
            self._dispatch(peer, msg)
        del buf[:pos]
        return got

    def _dispatch(self, peer: _Peer, msg) -> None:
        self.stats["received"] += 1
        kind = msg[0]
        if kind == "call":
            _k, i, fn, args = msg
            f = futurize(fn, *args)
            f.then_wrapped(lambda r: self._reply(peer, i, r))
        elif kind == "ret":
            _k, i, ok, payload = msg
            entry = self.pending.pop(i, None)
            if entry is None:
                return
            f = entry[0]
            if ok:
                f._set_value(pickle.loads(payload))
            else:
                f._set_exception(pickle.loads(payload))
        elif kind == "stop":
            if self.on_stop is not None:
                self.on_stop(msg[1])

    def _reply(self, peer: _Peer, i: int, r: Future) -> None:
        exc = r.get_exception()
        if exc is None:
            try:
                payload = _dumps(r._result)  # get_exception() above consumed r
                ok = True
            except Exception as e:  # noqa: BLE001
                payload, ok = _exc_payload(e), False
        else:
            payload, ok = _exc_payload(exc), False
        if not peer.closed:
            self._queue(peer, _dumps(("ret", i, ok, payload)))

    def _lost(self, peer: _Peer) -> None:
        if peer.closed:
            return
        peer.closed = True
        peer.pfd.close()
        for i, (f, shard) in list(self.pending.items()):
            if shard == peer.shard:
                del self.pending[i]
                f._set_exception(ShardCrashed(f"shard {peer.shard} exited while a call was in flight"))
        if not self.stopping and self.on_peer_lost is not None:
            self.on_peer_lost(peer.shard)

    def flush_all(self) -> None:
        for peer in self.peers.values():
            if peer.out and not peer.closed:
                peer.sock.setblocking(True)
                try:
                    peer.sock.sendall(b"".join(peer.out))
                except OSError:
                    pass
                peer.out = []

    def close(self) -> None:
        self.reactor.remove_poller(self)
        for p in self.peers.values():
            if not p.closed:
                p.closed = True
                p.pfd.close()
            p.sock.close()


# ---- sharded services --------------------------------------------------------
_services: dict[int, object] = {}
_service_ids = itertools.count(1)


def _svc_start(sid: int, cls, args, kwargs):
    _services[sid] = cls(*args, **kwargs)


def _svc_call(sid: int, fn, args):
    inst = _services.get(sid)
    if inst is None:
        raise RuntimeError(f"sharded service not started on shard {_shard_id}")
    if isinstance(fn, str):
        return getattr(inst, fn)(*args)
    return fn(inst, *args)


def _svc_stop(sid: int):
    inst = _services.pop(sid, None)
    stop = getattr(inst, "stop", None)
    if stop is not None:
        return stop()
    return None


class sharded:  # noqa: N801 - Seastar's name
    """One instance of a service class per shard.

    `start(*args)` constructs ServiceClass(*args) on every shard;
    `invoke_on(shard, fn, *args)` runs fn(instance, *args) there (fn may be a
    method name); `local()` is this shard's instance; `stop()` calls each
    instance's stop() (if any) and drops it.
    """

    def __init__(self, service_class: Any) -> None:
        self._cls = service_class
        self._id = next(_service_ids) * 1000 + _shard_id  # unique across shards' creators
        self._started = False

    def start(self, *args, **kwargs) -> Future:
        self._started = True
        return smp.invoke_on_all(_svc_start, self._id, self._cls, args, kwargs)

    def stop(self) -> Future:
        self._started = False
        return smp.invoke_on_all(_svc_stop, self._id)

    def local(self) -> Any:
        inst = _services.get(self._id)
        if inst is None:
            raise RuntimeError("sharded service not started on this shard")
        return inst

    def invoke_on(self, shard: int, fn: Callable[..., Any], *args) -> Future:
        return smp.submit_to(shard, _svc_call, self._id, fn, args)

    def invoke_on_all(self, fn: Callable[..., Any], *args) -> Future:
        return smp.invoke_on_all(_svc_call, self._id, fn, args)

    def map_reduce(self, reducer: Callable[..., Any], initial: Any, fn: Callable[..., Any], *args) -> Future:
        """Fold fn(instance, *args) from every shard with reducer(acc, value)."""
        from .idioms import map_reduce
        return map_reduce(range(smp.count), lambda s: self.invoke_on(s, fn, *args), initial, reducer)

    def map(self, fn: Callable[..., Any], *args) -> Future:
        """A future of [fn(instance, *args) for each shard], in shard order."""
        from .idioms import when_all_succeed
        return when_all_succeed([self.invoke_on(s, fn, *args) for s in range(smp.count)])


# ---- process management ------------------------------------------------------
def cpu_order(cpus) -> list[int]:
    """CPUs ordered so that distinct physical cores come before hyperthread siblings."""
    first, rest = [], []
    seen = set()
    for c in sorted(cpus):
        try:
            base = f"/sys/devices/system/cpu/cpu{c}/topology/"
            with open(base + "core_id") as f:
                core = f.read().strip()
            with open(base + "physical_package_id") as f:
                pkg = f.read().strip()
            key = (pkg, core)
        except OSError:
            key = ("?", c)
        if key in seen:
            rest.append(c)
        else:
            seen.add(key)
            first.append(c)
    return first + rest


_PR_SET_PDEATHSIG = 1


def _set_pdeathsig() -> None:
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    except Exception:  # noqa: BLE001
        pass


class ShardSet:
    """The forked shard processes of one application run (held by shard 0)."""

    def __init__(self, n: int, cpus: list[int], child_main) -> None:
        """Fork shards 1..n-1; each child calls child_main(shard, peers, cpu) and exits."""
        global _shard_id
        self.n = n
        self.pids: dict[int, int] = {}
        pairs = {}
        for i in range(n):
            for j in range(i + 1, n):
                a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
                for s in (a, b):
                    s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 << 20)
                    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
                pairs[(i, j)] = (a, b)
        parent_pid = os.getpid()
        for k in range(1, n):
            sys.stdout.flush()
            sys.stderr.flush()
            pid = os.fork()
            if pid == 0:
                code = 0
                try:
                    _set_pdeathsig()
                    if os.getppid() != parent_pid:
                        os._exit(1)
                    signal.signal(signal.SIGINT, signal.SIG_IGN)
                    signal.signal(signal.SIGTERM, signal.SIG_DFL)
                    peers = {}
                    for (i, j), (a, b) in pairs.items():
                        if i == k:
                            peers[j] = a
                            b.close()
                        elif j == k:
                            peers[i] = b
                            a.close()
                        else:
                            a.close()
                            b.close()
                    _shard_id = k
                    code = child_main(k, peers, cpus[k]) or 0
                except SystemExit as e:
                    code = e.code if isinstance(e.code, int) else 1
                except BaseException:  # noqa: BLE001
                    import traceback
                    traceback.print_exc()
                    code = 1
                finally:
                    try:
                        sys.stdout.flush()
                        sys.stderr.flush()
                    finally:
                        os._exit(code)
            self.pids[k] = pid
        self.peers = {}
        for (i, j), (a, b) in pairs.items():
            if i == 0:
                self.peers[j] = a
                b.close()
            else:
                a.close()
                b.close()

    def reap(self, timeout: float = 5.0) -> dict[int, int]:
        """Wait for the children (SIGKILL after timeout); their wait statuses."""
        import time
        statuses = {}
        deadline = time.monotonic() + timeout
        while self.pids and time.monotonic() < deadline:
            for k, pid in list(self.pids.items()):
                try:
                    done, status = os.waitpid(pid, os.WNOHANG)
                except ChildProcessError:
                    done, status = pid, 0
                if done:
                    statuses[k] = status
                    del self.pids[k]
            if self.pids:
                time.sleep(0.005)
        for k, pid in list(self.pids.items()):
            try:
                os.kill(pid, signal.SIGKILL)
                _d, status = os.waitpid(pid, 0)
            except (ProcessLookupError, ChildProcessError):
                status = 0
            statuses[k] = status
            del self.pids[k]
        return statuses

    def kill_all(self) -> None:
        for pid in self.pids.values():
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


def _install(shard: int, count: int, mailbox: "_Mailbox | None") -> None:
    global _shard_id, _mailbox
    _shard_id = shard
    _Smp.count = count
    _mailbox = mailbox


def _reset() -> None:
    global _shard_id, _mailbox
    _shard_id = 0
    _Smp.count = 1
    _mailbox = None
    _services.clear()


def describe_status(status: int) -> str:
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        try:
            name = signal.Signals(sig).name
        except ValueError:
            name = str(sig)
        return f"killed by {name}"
    if os.WIFEXITED(status):
        return f"exit code {os.WEXITSTATUS(status)}"
    return f"status {status}"

