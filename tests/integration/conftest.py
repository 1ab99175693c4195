"""conftest.py — pytest fixtures for the integration suites: a running broker per test.

  broker          a started single-shard broker (Broker from ailurus_harness), stopped and
                  checked for crashes at teardown
  broker_factory  make(args=..., env=..., smp=...) -> started Broker; all are stopped/checked
                  at teardown
  cluster_factory make(n=3, smp=..., first_id=..., ...) -> started harness Cluster; all are
                  stopped/checked at teardown, and their directories (data, logs) deleted only
                  when the test passed and every node stopped cleanly
  kafkajs         (module scope) the tests/integration/js directory with kafkajs installed
                  (npm ci once); skips the test without node/npm or when npm ci fails
"""
import os
import shutil
import subprocess
import sys

import pytest

sys.path.insert(0, os.path.dirname(__file__))

from ailurus_harness import Broker, Cluster, binary  # noqa: E402

JS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "js")


def pytest_sessionstart(session):
    if not os.access(binary(), os.X_OK):
        raise pytest.UsageError("ailurus binary not found at %s (set AILURUS_BIN or build)"
                                % binary())


def _stop_all(made, remove):
    """Stops every Broker or Cluster in made (all of them, whatever one raises) and, if remove,
    deletes the files of each that stopped cleanly. Fails the test with the crash reports of
    those that did not (their files stay for inspection)."""
    errors = []
    for x in made:
        try:
            x.stop()
            if remove:
                x.remove_files()
        except AssertionError as e:
            errors.append(str(e))
    if errors:
        pytest.fail("\n\n".join(errors))


@pytest.fixture
def broker_factory():
    made = []

    def make(args=(), env=None, smp=1, **kw):
        b = Broker(args=args, env=env, smp=smp, **kw)
        made.append(b)
        return b.start()

    yield make
    _stop_all(made, remove=True)  # segments are preallocated: leaking them fills the disk


@pytest.fixture
def broker(broker_factory):
    return broker_factory()


@pytest.fixture
def cluster_factory(request):
    """make(n=3, **kw) -> a started `Cluster` of n nodes (kw as Cluster takes them: smp, args,
    env, ready_timeout, first_id). At teardown every cluster made is stopped (a crashed node
    fails the test) and its files are deleted only if the test passed and its stop was clean:
    pytest runs the code after a fixture's yield on a failure too, so the session's failure
    count, taken before the test, tells whether this test (setup, call) failed."""
    failed = request.session.testsfailed
    made = []

    def make(n=3, **kw):
        c = Cluster(n, **kw)
        made.append(c)  # stopped at teardown even when start() fails half-way
        return c.start()

    yield make
    _stop_all(made, remove=request.session.testsfailed == failed)


@pytest.fixture(scope="module")
def kafkajs():
    """The js/ directory (node scripts) once kafkajs is installed there (npm ci, at most 300 s,
    the first time); skips without node/npm or when the install fails."""
    if not shutil.which("node") or not shutil.which("npm"):
        pytest.skip("node/npm not installed")
    if not os.path.isdir(os.path.join(JS, "node_modules", "kafkajs")):
        r = subprocess.run(["npm", "ci", "--no-audit", "--no-fund"], cwd=JS,
                           capture_output=True, timeout=300)
        if r.returncode != 0:
            pytest.skip("npm ci failed: %s" % r.stderr.decode()[-500:])
    return JS
