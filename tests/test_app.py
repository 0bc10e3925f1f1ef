"""app_template options and start-up errors."""
import argparse

import pytest

from reactor import app_template, make_ready_future
from reactor.app import format_exception, parse_memory_size


@pytest.mark.parametrize("text,value", [("1", 1), ("4k", 4096), ("512M", 512 << 20), ("2G", 2 << 30),
                                        ("10T", 10 << 40), ("1.5G", 3 << 29)])
def test_memory_units_are_binary(text, value):
    assert parse_memory_size(text) == value


def test_bad_memory_size_is_rejected():
    with pytest.raises(argparse.ArgumentTypeError):
        parse_memory_size("lots")


def test_memory_beyond_physical_raises():
    with pytest.raises(RuntimeError, match="insufficient physical memory"):
        app_template().run(["prog", "-c1", "-m10T"], make_ready_future)


def test_too_little_memory_per_shard_raises():
    with pytest.raises(RuntimeError, match="insufficient memory"):
        app_template().run(["prog", "-c1", "-m1M"], make_ready_future)


def test_user_options_and_configuration(capsys):
    app = app_template()
    app.add_options()("port", int, 1234, "port")("name", str, "x", "a name")
    app.add_option("--flag", action="store_true")
    seen = {}

    def f():
        cfg = app.configuration()
        seen.update(port=cfg["port"], name=cfg["name"], flag=cfg["flag"], smp=cfg["smp"],
                    quota=cfg["task-quota-ms"], per_shard=cfg["memory_per_shard"])
        return make_ready_future()
    assert app.run(["prog", "-c1", "--port", "99", "--flag", "-m", "256M", "--task-quota-ms", "1"], f) == 0
    assert seen == {"port": 99, "name": "x", "flag": True, "smp": 1, "quota": 1.0, "per_shard": 256 << 20}


def test_task_quota_reaches_the_reactor():
    from reactor import engine
    seen = []
    app_template().run(["prog", "-c1", "--task-quota-ms", "2"],
                       lambda: seen.append(engine().task_quota) or make_ready_future())
    assert seen == [0.002]


def test_help_returns_zero(capsys):
    assert app_template().run(["prog", "--help"], make_ready_future) == 0
    out = capsys.readouterr().out
    for opt in ("--smp", "--memory", "--reserve-memory", "--task-quota-ms", "--poll-mode",
                "--idle-poll-time-us", "--network-stack"):
        assert opt in out


def test_bad_option_is_one_line_and_returns_1(capsys):
    assert app_template().run(["prog", "--no-such-option"], make_ready_future) == 1
    assert capsys.readouterr().err == "prog: error: unrecognized arguments: --no-such-option\n"


def test_failed_future_prints_and_returns_1(capsys):
    def f():
        raise OSError(98, "bind: Address already in use")
    assert app_template().run(["prog", "-c1"], f) == 1
    assert capsys.readouterr().err.strip() == "program failed with uncaught exception: bind: Address already in use"


def test_run_restores_affinity_and_limits():
    import os
    import resource
    before = os.sched_getaffinity(0)
    rl = resource.getrlimit(resource.RLIMIT_DATA)
    app_template().run(["prog", "-c1", "-m", "1G"], make_ready_future)
    assert os.sched_getaffinity(0) == before
    assert resource.getrlimit(resource.RLIMIT_DATA) == rl


def test_memory_budget_is_enforced_as_rlimit_data():
    """-m is a real per-shard limit: allocating past it fails with MemoryError."""
    import subprocess
    import sys
    code = r'''
import sys; sys.path.insert(0, %r)
from reactor import app_template, make_ready_future
def f():
    try:
        x = bytearray(400 << 20)
        print("allocated")
    except MemoryError:
        print("MemoryError")
    return make_ready_future()
sys.exit(app_template().run(["p", "-c1", "-m", "128M"], f))
''' % (__import__("os").path.dirname(__import__("os").path.dirname(__file__)),)
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=30)
    assert r.stdout.strip() == "MemoryError", r.stderr


def test_format_exception():
    assert format_exception(KeyError("k")) == "'k'"
    assert format_exception(RuntimeError()) == "RuntimeError"


def test_fault_options_are_checked(capsys):
    assert app_template().run(["prog", "--fault-loss", "150"], make_ready_future) == 1
    assert "a percentage is between 0 and 100" in capsys.readouterr().err
    assert app_template().run(["prog", "--fault-delay-ms", "-1"], make_ready_future) == 1


@pytest.mark.parametrize("argv, message", [
    (["-c", "0"], "argument -c/--smp: must be at least 1, not 0"),
    (["-c", "two"], "argument -c/--smp: not a whole number: 'two'"),
    (["--task-quota-ms", "-1"], "argument --task-quota-ms: must be a finite number above 0, not -1"),
    (["--task-quota-ms", "nan"], "argument --task-quota-ms: must be a finite number above 0, not nan"),
    (["--idle-poll-time-us", "-5"], "argument --idle-poll-time-us: must be a finite number >= 0, not -5"),
    (["--idle-poll-time-us", "inf"], "argument --idle-poll-time-us: must be a finite number >= 0, not inf"),
    (["-m", "lots"], "argument -m/--memory: invalid memory size 'lots' (use e.g. 512M, 2G, 1T)"),
    (["--network-stack", "native", "--host-ipv4-addr", "10"],
     "argument --host-ipv4-addr: invalid IPv4 address '10' (want a dotted quad such as 192.0.2.1)"),
    (["--network-stack", "native", "--host-ipv4-addr", "192.0.2.2", "--netmask-ipv4-addr", "255.0.255.0"],
     "argument --netmask-ipv4-addr: 255.0.255.0 is not a netmask (its one bits must be contiguous from the left)"),
    (["--network-stack", "native", "--host-ipv4-addr", "192.0.2.2", "--gw-ipv4-addr", "198.51.100.1"],
     "--gw-ipv4-addr 198.51.100.1 is outside our subnet 192.0.2.0/24"),
    (["--network-stack", "native", "--host-ipv4-addr", "192.0.2.2", "--gw-ipv4-addr", "192.0.2.2"],
     "--gw-ipv4-addr 192.0.2.2 is our own address"),
    (["--network-stack", "native", "--host-ipv4-addr", "192.0.2.255"],
     "--host-ipv4-addr 192.0.2.255 is the broadcast address of 192.0.2.0/24"),
    (["--network-stack", "native", "--host-ipv4-addr", "224.0.0.1"], "--host-ipv4-addr 224.0.0.1 is not a host address"),
    (["--network-stack", "native", "--hw-address", "ff:ff:ff:ff:ff:ff"],
     "argument --hw-address: ff:ff:ff:ff:ff:ff is a broadcast address; a station needs a unicast one (first octet even)"),
    (["--network-stack", "native", "--hw-address", "01:00:5e:00:00:01"],
     "argument --hw-address: 01:00:5e:00:00:01 is a multicast address; a station needs a unicast one (first octet even)"),
    (["--network-stack", "native", "--hw-address", "02:00:00:00:00"],
     "argument --hw-address: invalid MAC address '02:00:00:00:00' (want six hex octets, 02:00:00:00:00:01)"),
    (["--network-stack", "native", "--no-dhcp"], "--no-dhcp needs --host-ipv4-addr (no DHCP: the address must be given)"),
    (["--network-stack", "native", "--dhcp", "--host-ipv4-addr", "192.0.2.2"],
     "--dhcp and --host-ipv4-addr: choose one (the address comes from DHCP or from you)"),
    (["--network-stack", "native", "--gw-ipv4-addr", "192.0.2.1"],
     "--gw-ipv4-addr and --netmask-ipv4-addr need --host-ipv4-addr (DHCP provides them)"),
    (["--prometheus-port", "70000"], "argument --prometheus-port: a port is 0..65535, not 70000"),
    (["--prometheus-prefix", "9x"], "argument --prometheus-prefix: '9x' is not a metric name prefix (letters, digits, _)"),
    (["--tcp-congestion", "vegas"], "argument --tcp-congestion: invalid choice: 'vegas' (choose from 'newreno', 'cubic', 'bbr')"),
])
def test_wrong_options_are_one_line_errors_and_exit_status_1(capsys, argv, message):
    """Every option is checked before anything starts: the function never runs,
    the error is one line on stderr, no traceback, and run() returns 1."""
    ran = []
    assert app_template().run(["prog", *argv], lambda: ran.append(1)) == 1
    assert ran == []
    assert capsys.readouterr().err == f"prog: error: {message}\n"


def test_a_wrong_option_from_the_command_line_is_one_line_and_status_1():
    import subprocess
    import sys
    import os
    ex = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "examples", "tutorial", "hello.py")
    r = subprocess.run([sys.executable, ex, "-c", "0"], capture_output=True, text=True, timeout=30)
    assert r.returncode == 1 and r.stderr == "hello.py: error: argument -c/--smp: must be at least 1, not 0\n"
    assert "Traceback" not in r.stderr


def test_user_options_switches_and_short_aliases(capsys):
    """add_options() as Seastar's: ("flag", "help") is a switch that takes no
    value, "size,s" gives the option a short alias."""
    seen = {}

    def f():
        cfg = app.configuration()
        seen.update(verbose=cfg["verbose"], size=cfg["size"], color=cfg["color"])
        return make_ready_future()
    app = app_template()
    app.add_options()("verbose", "say more")("size,s", int, 10, "how many")("color", bool, True, "colours")
    assert app.run(["prog", "-c1", "--verbose", "-s", "7", "--no-color"], f) == 0
    assert seen == {"verbose": True, "size": 7, "color": False}
    app = app_template()
    app.add_options()("verbose", "say more")("size,s", int, 10, "how many")("color", bool, True, "colours")
    assert app.run(["prog", "-c1"], f) == 0
    assert seen == {"verbose": False, "size": 10, "color": True}
    app = app_template()
    app.add_options()("verbose", "say more")
    assert app.run(["prog", "-c1", "--verbose", "hello"], f) == 1      # a switch does not swallow a value
    assert capsys.readouterr().err.endswith("error: unrecognized arguments: hello\n")
    app = app_template()
    app.add_options()("size,s", int, 10, "how many")
    app.run(["prog", "--help"], f)
    assert "--size SIZE, -s SIZE  how many" in capsys.readouterr().out


def _logging_app(*lines):
    import logging

    def f():
        for name, level, text in lines:
            logging.getLogger(name).log(level, text)
        return make_ready_future()
    return f


def test_log_lines_carry_level_time_shard_and_logger(capsys):
    import logging
    import re
    f = _logging_app(("seastar", logging.INFO, "hello"), ("tcp", logging.DEBUG, "hidden at info"),
                     ("arp", logging.WARNING, "careful"))
    assert app_template().run(["prog", "-c1"], f) == 0
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 2
    assert re.fullmatch(r"INFO  \d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} \[shard 0\] seastar - hello", err[0])
    assert re.fullmatch(r"WARN  \S+ \S+ \[shard 0\] arp - careful", err[1])


def test_log_levels_per_logger_and_to_stdout(capsys):
    import logging
    f = _logging_app(("seastar", logging.INFO, "info line"), ("tcp", logging.DEBUG, "tcp debug"),
                     ("arp", 5, "arp trace"), ("dhcp", logging.DEBUG, "dhcp debug"))
    assert app_template().run(["prog", "-c1", "--default-log-level", "warn", "--logger-log-level",
                               "tcp=debug:arp=trace", "--log-to-stdout"], f) == 0
    out = capsys.readouterr()
    lines = [line.split(" - ", 1)[1] for line in out.out.splitlines()]
    assert lines == ["tcp debug", "arp trace"] and out.err == ""
    assert "TRACE" in out.out


def test_logging_is_restored_after_an_in_process_run():
    import logging
    root = logging.getLogger()
    before = (root.level, list(root.handlers))
    app_template().run(["prog", "-c1", "--default-log-level", "trace"], make_ready_future)
    assert (root.level, list(root.handlers)) == before


@pytest.mark.parametrize("argv, message", [
    (["--default-log-level", "loud"], "argument --default-log-level: unknown log level 'loud' "
                                      "(one of error, warn, info, debug, trace)"),
    (["--logger-log-level", "tcp"], "argument --logger-log-level: --logger-log-level wants NAME=LEVEL[:NAME=LEVEL...], "
                                    "not 'tcp'"),
    (["--logger-log-level", "tcp=verbose"], "argument --logger-log-level: unknown log level 'verbose' "
                                            "(one of error, warn, info, debug, trace)"),
])
def test_wrong_log_options(capsys, argv, message):
    assert app_template().run(["prog", *argv], make_ready_future) == 1
    assert capsys.readouterr().err == f"prog: error: {message}\n"


def test_tcp_state_changes_reach_the_tcp_logger_at_debug(caplog):
    import logging
    from netstack.testing import LinkPair
    caplog.set_level(logging.DEBUG, logger="tcp")
    lp = LinkPair.make(seed=3)
    lst = lp.b.tcp_listen(80)
    c = lp.a.tcp_connect(lp.b.ip, 80, lp.now)
    lp.run_until(lambda: lst.accept_queue)
    msgs = [r.getMessage() for r in caplog.records if r.name == "tcp"]
    assert "192.0.2.1:%d <-> 192.0.2.2:80 SYN-SENT -> ESTABLISHED" % c.local_port in msgs
    assert any(m.endswith("LISTEN -> SYN-RECEIVED") or m.endswith("SYN-RECEIVED -> ESTABLISHED") for m in msgs)


def test_stats_interval_prints_a_line_per_period():
    import os
    import subprocess
    import sys
    ex = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "examples", "tutorial", "sleep.py")
    r = subprocess.run([sys.executable, ex, "-c1", "--stats-interval", "0.25"], capture_output=True, text=True,
                       timeout=30)
    lines = [line for line in r.stderr.splitlines() if line.startswith("stats shard=0 ")]
    assert r.returncode == 0 and 2 <= len(lines) <= 6, r.stderr
    assert all("tasks=" in line and "sleeps=" in line for line in lines)
