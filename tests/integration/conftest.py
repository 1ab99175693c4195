"""conftest.py — pytest fixtures for the integration suites: a running broker per test.

  broker          a started single-shard broker (Broker from ailurus_harness), stopped and
                  checked for crashes at teardown
  broker_factory  make(args=..., env=..., smp=...) -> started Broker; all are stopped/checked
                  at teardown
"""
import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(__file__))

from ailurus_harness import Broker, binary  # noqa: E402


def pytest_sessionstart(session):
    if not os.access(binary(), os.X_OK):
        raise pytest.UsageError("ailurus binary not found at %s (set AILURUS_BIN or build)"
                                % binary())


@pytest.fixture
def broker_factory():
    made = []

    def make(args=(), env=None, smp=1, **kw):
        b = Broker(args=args, env=env, smp=smp, **kw)
        made.append(b)
        return b.start()

    yield make
    errors = []
    for b in made:
        try:
            b.stop()
            b.remove_files()  # segments are preallocated: leaking them fills the disk
        except AssertionError as e:
            errors.append(str(e))
    if errors:
        pytest.fail("\n\n".join(errors))


@pytest.fixture
def broker(broker_factory):
    return broker_factory()
