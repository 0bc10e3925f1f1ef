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


def test_bad_option_returns_2(capsys):
    assert app_template().run(["prog", "--no-such-option"], make_ready_future) == 2


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
    assert app_template().run(["prog", "--fault-loss", "150"], make_ready_future) == 2
    assert "a percentage is between 0 and 100" in capsys.readouterr().err
    assert app_template().run(["prog", "--fault-delay-ms", "-1"], make_ready_future) == 2
