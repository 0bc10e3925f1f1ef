"""`python -m netstack.replay CAPTURE --app MODULE:FUNCTION`: the replay engine
(netstack.testing.replay) as a command. A tool beside the core, as testing/ is."""

from .testing.replay import CaptureReplay, ReplayResult, main, replay  # noqa: F401

if __name__ == "__main__":
    import sys
    sys.exit(main())
