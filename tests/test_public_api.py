"""The public surface is what the README and the tutorial promise."""
import reactor
import netstack.sockets as sockets


def test_reactor_exports_are_importable():
    for name in reactor.__all__:
        assert hasattr(reactor, name), name


def test_reactor_surface_matches_the_docs():
    documented = """Future Promise make_ready_future make_exception_future BrokenPromise repeat keep_doing
    do_until do_for_each parallel_for_each max_concurrent_for_each when_all when_all_succeed when_any
    map_reduce do_with stop_iteration semaphore with_semaphore gate condition_variable queue pipe
    shared_promise abort_source with_timeout TimedOutError sleep Timer ManualClock app_template smp
    this_shard_id sharded engine Reactor""".split()
    assert set(documented) <= set(reactor.__all__)


def test_socket_api_surface():
    documented = """listen connect make_udp_channel listen_options accept_result connected_socket
    server_socket input_stream output_stream temporary_buffer socket_address make_ipv4_address
    network_stats""".split()
    for name in documented:
        assert name in sockets.__all__ and hasattr(sockets, name), name
