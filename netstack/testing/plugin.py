"""The pytest plugin (entry point `pytest11`: installed with the package).

Fixtures for testing a network application written against the socket API:

  pcap_replay   replay(capture, app, port=None, pace="asap"|"capture") -> ReplayResult:
                the client side of a pcap/pcapng against your server on the native
                stack, in-process on a manual clock (netstack.testing.replay)
  link_pair     link_pair(seed=0, loss=0, duplicate=0, reorder=0, corrupt=0, delay=0)
                -> AppLink: a client stack and a server stack on an in-memory wire
                with seeded impairments; link.serve(app), link.run(client)
  native_stack  a LiveStack: the native stack on a TAP in a namespace made for the
                test and removed after (root; skipped with the reason otherwise)

Option: --pcap-dir DIR -- every failed test that used these fixtures leaves
DIR/<test name>.pcap of its traffic (tcpdump -r and Wireshark open it).
Marker: @pytest.mark.native_stack -- the test needs root for a live TAP.
"""

from __future__ import annotations

import os
import re

import pytest


def pytest_addoption(parser) -> None:
    g = parser.getgroup("pyseastar")
    g.addoption("--pcap-dir", default=None, metavar="DIR",
                help="write a pcap of the traffic of every failed test that used pcap_replay, "
                     "link_pair or native_stack into DIR")


def pytest_configure(config) -> None:
    config.addinivalue_line("markers", "native_stack: needs root: a live TAP in a network namespace")


@pytest.hookimpl(hookwrapper=True, tryfirst=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    setattr(item, "_pyseastar_rep_" + rep.when, rep)


def _failed(request) -> bool:
    return any(getattr(getattr(request.node, "_pyseastar_rep_" + w, None), "failed", False)
               for w in ("setup", "call"))


def _keep_pcap(request, things) -> None:
    d = request.config.getoption("--pcap-dir")
    if not d or not _failed(request):
        return
    os.makedirs(d, exist_ok=True)
    name = re.sub(r"[^\w.-]+", "_", request.node.name)
    for i, t in enumerate(things):
        t.write_pcap(os.path.join(d, f"{name}{'' if i == 0 else f'.{i}'}.pcap"))


@pytest.fixture
def pcap_replay(request):
    """replay(capture, app, port=None, pace="asap", **kw) -> ReplayResult: the
    client side of a capture against `app` (your server function, socket API)
    on the native stack, in-process on a manual clock. The result has our
    replies (frames, byte streams per connection) and stream_diffs() /
    frame_diffs() against the capture's own server side."""
    from .replay import CaptureReplay
    results = []

    def replay(capture, app, **kw):
        res = CaptureReplay(capture, app, **kw).run()
        results.append(res)
        return res
    yield replay
    _keep_pcap(request, results)


@pytest.fixture
def link_pair(request):
    """link_pair(seed=0, loss=0, duplicate=0, reorder=0, corrupt=0, delay=0) ->
    AppLink: a client and a server native stack on an in-memory wire with seeded
    impairments, a manual clock. link.serve(app) starts your server; link.run(fn)
    runs fn(link) (a client: link.connect(port)) and returns its value."""
    from .apps import AppLink
    links = []

    def make(**kw):
        link = AppLink(**kw)
        links.append(link)
        return link
    yield make
    try:
        _keep_pcap(request, links)
    finally:
        for link in links:
            link.close()


@pytest.fixture
def native_stack(request):
    """A LiveStack: the native stack on a TAP in a namespace made for this test
    (kernel side 192.0.2.1, ours 192.0.2.2), removed after. Run your server on
    .reactor (.run(fn)); kernel clients with .in_namespace(fn). Needs root."""
    if os.geteuid() != 0:
        pytest.skip("native_stack needs root (CAP_NET_ADMIN) for a TAP in a network namespace")
    from .apps import LiveStack
    live = LiveStack()
    yield live
    try:
        _keep_pcap(request, [live])
    finally:
        live.close()
