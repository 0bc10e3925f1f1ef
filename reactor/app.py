"""app_template: Seastar's options, shard start-up, signals and shutdown.

`app_template().run(argv, fn)`:

1. parses Seastar's options plus the application's own (`add_options`);
2. checks the resources asked for: more shards than CPUs raises
   RuntimeError("insufficient processing units"); more memory than the
   machine has raises RuntimeError("insufficient physical memory") -- both
   before anything starts, so `try: app.run(...) except RuntimeError` works
   as in the tutorial;
3. forks shards 1..n-1 (one process each), pins every shard to its own CPU
   (distinct physical cores first), and applies the per-shard memory budget;
4. runs fn once on shard 0 and returns when its future resolves: 0 on a
   value; on failure prints "program failed with uncaught exception: ..."
   and returns 1;
5. on SIGINT/SIGTERM, or when a shard process dies, stops every shard and
   reaps it (no orphans), running at_exit hooks on the way out.

Memory (`-m`, `--reserve-memory`): the budget (default: physical memory minus
the reserve, 512M by default) is divided evenly between shards, and each
shard process gets it as RLIMIT_DATA, so a shard that allocates past its
share gets MemoryError instead of eating its neighbours' memory. The same
per-shard figure sizes the network stack's buffer pools
(`engine().config["memory_per_shard"]`).

Extensions (`Extension`): the reactor knows no network; the network stack
plugs its options, its pre-fork set-up and its per-shard start into
app_template through this generic hook.
"""

from __future__ import annotations

from typing import Any, Callable

import argparse
import gc
import os
import re
import resource
import signal
import sys

from . import log as _log
from . import shards as _smp
from .future import Future, futurize, make_ready_future
from .loop import Reactor, ReactorStopped

__all__ = ["app_template", "Extension", "OptionError", "register_extension", "parse_memory_size", "format_exception",
           "positive_int", "port_number", "positive_float", "non_negative_float"]

_UNITS = {"": 1, "k": 1 << 10, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}
MIN_SHARD_MEMORY = 32 << 20


def parse_memory_size(text: str) -> int:
    """'512M' -> 536870912. Units k, M, G, T are powers of two (M = 2**20)."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([kKMGT]?)(?:i?B)?\s*", str(text))
    if not m:
        raise argparse.ArgumentTypeError(f"invalid memory size {text!r} (use e.g. 512M, 2G, 1T)")
    return int(float(m.group(1)) * _UNITS[m.group(2)])


def format_exception(e: BaseException) -> str:
    """How an uncaught exception is shown: OSError by its message ('bind: Address
    already in use'), anything else by str() (or its class name if empty)."""
    if isinstance(e, OSError) and e.strerror:
        return e.strerror
    text = str(e)
    return text if text else type(e).__name__


def physical_memory() -> int:
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


class Configuration(dict):
    """Parsed options by name (dashes become underscores; both spellings work)."""

    def __getitem__(self, key):
        return dict.__getitem__(self, key.replace("-", "_"))

    def __contains__(self, key) -> bool:
        return dict.__contains__(self, key.replace("-", "_"))

    def get(self, key, default=None):
        return dict.get(self, key.replace("-", "_"), default)


class OptionError(ValueError):
    """A wrong option: app_template prints it on one line and run() returns 1."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):
        raise OptionError(message)


def _whole(text: str, low: int, high: int | None, what: str) -> int:
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a {what}: {text!r}") from None
    if v < low or (high is not None and v > high):
        raise argparse.ArgumentTypeError(f"must be at least {low}, not {v}" if high is None
                                         else f"a {what} is {low}..{high}, not {v}")
    return v


def _finite(text: str, low: float, strict: bool) -> float:
    """A finite number above `low` (strict) or at least `low`; NaN and inf refused."""
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not ((v > low if strict else v >= low) and v != float("inf")):     # NaN fails both
        raise argparse.ArgumentTypeError(f"must be a finite number {'above' if strict else '>='} "
                                         f"{low:g}, not {text}")
    return v


def positive_int(text: str) -> int:
    return _whole(text, 1, None, "whole number")


def non_negative_int(text: str) -> int:
    return _whole(text, 0, None, "whole number")


def port_number(text: str) -> int:
    return _whole(text, 0, 65535, "port")


def positive_float(text: str) -> float:
    return _finite(text, 0.0, True)


def non_negative_float(text: str) -> float:
    return _finite(text, 0.0, False)


def _log_level(text: str) -> int:
    try:
        return _log.level(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def _logger_levels(text: str) -> dict:
    try:
        return _log.parse_logger_levels(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


class _OptionAdder:
    """app.add_options() in Seastar's style, one call per option:

        ("port", int, 1234, "help")      an option with a value (type, default, help)
        ("size,s", int, 10, "help")      "long,short": --size and its alias -s
        ("verbose", "help")              a switch: no value, False unless given
        ("color", bool, True, "help")    a boolean with --color / --no-color
    """

    def __init__(self, group) -> None:
        self._group = group

    def __call__(self, name: str, type=str, default=None, help: str = "", **kw):  # noqa: A002
        long, _, short = name.partition(",")
        flags = [long if long.startswith("-") else "--" + long]
        if short:
            flags.append(short if short.startswith("-") else "-" + short)
        if isinstance(type, str):               # ("flag", "help"): a switch
            self._group.add_argument(*flags, action="store_true", help=type, **kw)
        elif type is bool and default is not None:
            kw.setdefault("action", argparse.BooleanOptionalAction)
            self._group.add_argument(*flags, default=default, help=help, **kw)
        else:
            self._group.add_argument(*flags, type=type, default=default, help=help, **kw)
        return self


class Extension:
    """What an extension of app_template implements (all three are optional).

    add_options(parser)          its command-line options (an argparse parser)
    check_options(cfg)           after parsing: raise OptionError (or ValueError) for
                                 a wrong combination; one line, exit status 1
    before_fork(shards, cfg)     runs once on shard 0 before the shards fork
                                 (resources every shard inherits)
    on_shard_start(cfg)          runs on every shard's reactor before the
                                 application starts; returns None or a future.
                                 On shard 0 the application's function runs
                                 once every extension's future resolved; a
                                 failure there fails the run.

    Extensions come from `register_extension`, from `app_template(extensions=)`,
    and from the entry point group "pyseastar.app_extensions" (how the network
    stack adds --network-stack and friends: the reactor imports no network code).
    """

    def add_options(self, parser: argparse.ArgumentParser) -> None:
        pass

    def check_options(self, cfg) -> None:
        pass

    def before_fork(self, shards: int, cfg) -> None:
        pass

    def on_shard_start(self, cfg):
        return None


_registered: list = []
_discovered: list | None = None


def register_extension(ext) -> None:
    """Add an extension to every app_template made from now on."""
    if ext not in _registered:
        _registered.append(ext)


def _default_extensions() -> list:
    global _discovered
    if _discovered is None:
        from importlib.metadata import entry_points
        _discovered = []
        for ep in sorted(entry_points(group="pyseastar.app_extensions"), key=lambda e: e.name):
            _discovered.append(ep.load()())
    return _discovered + [e for e in _registered if e not in _discovered]


class app_template:  # noqa: N801 - Seastar's name
    def __init__(self, name: str | None = None, description: str | None = None, extensions: Any = None) -> None:
        self._name = name
        self._parser = _Parser(prog=name, description=description)
        g = self._parser.add_argument_group("Seastar options")
        g.add_argument("-c", "--smp", type=positive_int, default=None,
                       help="number of shards (processes, one per CPU); default: all CPUs")
        g.add_argument("-m", "--memory", type=parse_memory_size, default=None,
                       help="memory for the application (k/M/G/T = powers of two), divided between shards")
        g.add_argument("--reserve-memory", type=parse_memory_size, default=512 << 20,
                       help="memory left to the OS when -m is not given (default 512M)")
        g.add_argument("--task-quota-ms", type=positive_float, default=0.5,
                       help="run ready continuations for at most this long before polling (ms)")
        g.add_argument("--poll-mode", action="store_true",
                       help="busy-poll instead of sleeping when idle")
        g.add_argument("--default-log-level", type=_log_level, default=_log.logging.INFO, metavar="LEVEL",
                       help="error, warn, info (the default), debug or trace")
        g.add_argument("--logger-log-level", type=_logger_levels, default=None, metavar="NAME=LEVEL[:NAME=LEVEL]",
                       help=f"levels of single loggers ({', '.join(_log.LOGGERS)}, or the application's own)")
        g.add_argument("--log-to-stdout", action="store_true", help="log to standard output (default: stderr)")
        g.add_argument("--log-to-syslog", action="store_true", help="log to the local syslog as well")
        g.add_argument("--idle-poll-time-us", type=non_negative_float, default=200.0,
                       help="busy-poll this long before sleeping (µs; Seastar's default, 200)")
        self._extensions = list(_default_extensions() if extensions is None else extensions)
        for ext in self._extensions:
            if hasattr(ext, "add_options"):
                ext.add_options(self._parser)
        self._user = self._parser.add_argument_group("Application options")
        self._config: Configuration | None = None

    # ---- options -------------------------------------------------------------
    def add_options(self) -> _OptionAdder:
        return _OptionAdder(self._user)

    def add_option(self, *args, **kwargs) -> None:
        """argparse-style: app.add_option('--port', type=int, default=1234, help=...)."""
        self._user.add_argument(*args, **kwargs)

    def configuration(self) -> Configuration:
        if self._config is None:
            raise RuntimeError("configuration() is available once run() has parsed the options")
        return self._config

    # ---- running -------------------------------------------------------------
    def run(self, argv: Any = None, fn: Callable[..., Any] | None = None) -> int:
        if fn is None and callable(argv):
            argv, fn = None, argv
        if argv is None:
            argv = sys.argv
        if self._name is None and argv:
            self._parser.prog = os.path.basename(str(argv[0]))     # errors name the program run
        prog = self._parser.prog
        try:
            ns = self._parser.parse_args(list(argv[1:]))
            cfg = Configuration(vars(ns))
            for ext in self._extensions:
                check = getattr(ext, "check_options", None)
                if check is not None:
                    check(cfg)
        except SystemExit as e:  # --help, --version
            return int(e.code or 0)
        except ValueError as e:  # OptionError from parsing, or a check that said no
            print(f"{prog}: error: {e}", file=sys.stderr, flush=True)
            return 1
        self._config = cfg

        cpus = sorted(os.sched_getaffinity(0))
        n = cfg["smp"] if cfg["smp"] is not None else len(cpus)
        if n < 1:
            raise RuntimeError("invalid --smp: must be at least 1")
        if n > len(cpus):
            raise RuntimeError("insufficient processing units")
        phys = physical_memory()
        if cfg["memory"] is not None:
            if cfg["memory"] > phys:
                raise RuntimeError("insufficient physical memory")
            total = cfg["memory"]
        else:
            if cfg["reserve_memory"] >= phys:
                raise RuntimeError("insufficient physical memory")
            total = phys - cfg["reserve_memory"]
        per_shard = total // n
        if per_shard < MIN_SHARD_MEMORY:
            raise RuntimeError(
                f"insufficient memory: {total} bytes for {n} shards is below the "
                f"{MIN_SHARD_MEMORY >> 20}M minimum per shard")
        cfg["memory_per_shard"] = per_shard
        order = _smp.cpu_order(cpus)[:n]
        cfg["cpus"] = order
        _steady_malloc()
        # Everything made so far (modules, classes: ~100k objects) lives as long
        # as the program: keep it out of the cyclic GC's full collections.
        gc.freeze()
        return _Run(cfg, n, order, per_shard, fn, self._extensions).main()


def _steady_malloc() -> None:
    """Fix glibc's heap thresholds for the run (shards inherit them).

    A server allocates a 64 KiB buffer for every read (socket recv, TAP read)
    and frees it soon after. With glibc's defaults the freed top of the heap
    goes back to the kernel (trim threshold 128 KiB, adjusted only as the
    program runs), so the next read faults its pages in again: measured here,
    35-45k page faults per second and 2.5x the CPU per request during the
    first seconds of a posix echo server, until glibc's dynamic thresholds
    settled. Fixed thresholds give the steady state from the start; the cost
    is up to 128 MiB of freed heap kept for reuse instead of returned."""
    try:
        import ctypes
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):     # not glibc: nothing to tune
        return
    m_trim_threshold, m_mmap_threshold = -1, -3
    mallopt(m_mmap_threshold, 4 << 20)
    mallopt(m_trim_threshold, 128 << 20)


def _start_extensions(extensions, cfg) -> "Future":
    """Every extension's on_shard_start, in order; the future of them all."""
    f = make_ready_future()
    for ext in extensions:
        start = getattr(ext, "on_shard_start", None)
        if start is not None:
            f = f.then(lambda start=start: start(cfg))
    return f


class _Run:
    """One application run, from shard 0's point of view."""

    def __init__(self, cfg, n, cpus, per_shard, fn, extensions) -> None:
        self.cfg, self.n, self.cpus, self.per_shard, self.fn = cfg, n, cpus, per_shard, fn
        self.extensions = extensions
        self.failure: str | None = None

    def _make_reactor(self) -> Reactor:
        r = Reactor(task_quota=self.cfg["task_quota_ms"] / 1000.0, poll_mode=self.cfg["poll_mode"],
                    idle_poll_time=self.cfg["idle_poll_time_us"] / 1e6)
        r.config = self.cfg
        return r

    def _limit(self, cpu: int):
        saved_aff = os.sched_getaffinity(0)
        os.sched_setaffinity(0, {cpu})
        saved_data = resource.getrlimit(resource.RLIMIT_DATA)
        soft, hard = saved_data
        want = self.per_shard if hard == resource.RLIM_INFINITY else min(self.per_shard, hard)
        if soft == resource.RLIM_INFINITY or want < soft:
            # Never below what this process already uses (a parent test runner).
            try:
                resource.setrlimit(resource.RLIMIT_DATA, (want, hard))
            except (ValueError, OSError):
                pass
        return saved_aff, saved_data

    def _child_main(self, shard: int, peers, cpu: int) -> int:
        _log.configure_logging(self.cfg, shard)
        self._limit(cpu)
        r = self._make_reactor()
        mb = _smp._Mailbox(r, peers)
        _smp._install(shard, self.n, mb)
        def on_stop(code: int) -> None:
            mb.stopping = True
            r.stop(code)
        mb.on_stop = on_stop
        mb.on_peer_lost = lambda s: r.stop(1)
        _start_extensions(self.extensions, self.cfg).handle_exception(lambda e: print(
            f"shard {shard}: start-up failed: {format_exception(e)}", file=sys.stderr, flush=True))
        try:
            r.run(None)
        except ReactorStopped:
            pass
        r.run_exit_hooks()
        mb.flush_all()
        return r._exit_code

    def main(self) -> int:
        root = _log.logging.getLogger()
        saved = (root.level, list(root.handlers))
        try:
            _log.configure_logging(self.cfg, 0)
            return self._main()
        finally:
            for h in list(root.handlers):       # an in-process caller (a test runner) gets its logging back
                if h not in saved[1]:
                    root.removeHandler(h)
            root.setLevel(saved[0])

    def _main(self) -> int:
        shards = None
        if self.n > 1:
            for ext in self.extensions:
                if hasattr(ext, "before_fork"):
                    ext.before_fork(self.n, self.cfg)
            shards = _smp.ShardSet(self.n, self.cpus, self._child_main)
        saved_aff, saved_data = self._limit(self.cpus[0])
        old_handlers = {}
        r = None
        mb = None
        try:
            r = self._make_reactor()
            if shards is not None:
                mb = _smp._Mailbox(r, shards.peers)
                mb.on_peer_lost = lambda s: self._shard_lost(r, shards, s)
            _smp._install(0, self.n, mb)
            for sig in (signal.SIGINT, signal.SIGTERM):
                old_handlers[sig] = signal.getsignal(sig)
                r.handle_signal(sig, lambda sig=sig: r.stop(0))
            code = 0
            try:
                r.run(_start_extensions(self.extensions, self.cfg).then(lambda: futurize(self.fn)))
            except ReactorStopped:
                code = r._exit_code
                if self.failure:
                    print(f"program failed: {self.failure}", file=sys.stderr, flush=True)
            except BaseException as e:  # noqa: BLE001
                print(f"program failed with uncaught exception: {format_exception(e)}",
                      file=sys.stderr, flush=True)
                code = 1
            r.run_exit_hooks()
            return code
        finally:
            if mb is not None:
                mb.stopping = True
                for s in range(1, self.n):
                    mb.send_stop(s, 0)
                mb.flush_all()
            if shards is not None:
                shards.reap(timeout=5.0)
            if mb is not None:
                mb.close()
            for sig, h in old_handlers.items():
                signal.signal(sig, h)
            _smp._reset()
            if r is not None:
                r.close()
            sys.stdout.flush()
            os.sched_setaffinity(0, saved_aff)
            try:
                resource.setrlimit(resource.RLIMIT_DATA, saved_data)
            except (ValueError, OSError):
                pass

    def _shard_lost(self, r: Reactor, shards, shard: int) -> None:
        pid = shards.pids.get(shard)
        how = "exited"
        if pid is not None:
            try:
                done, status = os.waitpid(pid, 0)
                shards.pids.pop(shard, None)
                how = _smp.describe_status(status)
            except ChildProcessError:
                pass
        self.failure = f"shard {shard} died unexpectedly ({how})"
        r.stop(1)
