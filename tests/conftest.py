import os
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)


@pytest.fixture
def reactor():
    from reactor import Reactor
    r = Reactor()
    yield r
    r.close()


@pytest.fixture
def manual_reactor():
    from reactor import ManualClock, Reactor
    r = Reactor(clock=ManualClock(autojump=True))
    yield r
    r.close()
