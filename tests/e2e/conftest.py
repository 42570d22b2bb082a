import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(__file__))
from otad_harness import Otad  # noqa: E402


@pytest.fixture
def otad():
    """A started daemon (HTTPS only) stopped after the test."""
    d = Otad().start()
    yield d
    d.cleanup()


@pytest.fixture
def otad_factory():
    """Builds daemons with custom args; every one made is stopped after the test."""
    made = []

    def make(**kwargs):
        start = kwargs.pop("start", True)
        d = Otad(**kwargs)
        made.append(d)
        return d.start() if start else d

    yield make
    for d in made:
        d.cleanup()
