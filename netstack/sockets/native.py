"""The native stack glue (Interface + Device + reactor). Not built yet: see issue 4."""


def create_native_stack(reactor):
    raise NotImplementedError(
        "--network-stack native is not available yet: the drivers and the glue between the "
        "sans-IO core and the reactor are still to be built (use --network-stack posix)")
