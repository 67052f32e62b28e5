import os
import sys

import pytest
from hypothesis import HealthCheck, settings

# Hypothesis: the same examples on every run (make test, CI, make mutate),
# so a verdict never depends on the seed, and no deadline or speed check a
# busy machine could trip. HYPOTHESIS_PROFILE=explore searches with fresh
# random examples (CONTRIBUTING.md).
settings.register_profile("iopkt", derandomize=True, database=None, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("explore", deadline=None,
                          suppress_health_check=[HealthCheck.too_slow])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "iopkt"))

# make mutate: mutmut names a mutant after its file's path
# (drivers.devnp_tap.devnp_tap.x_...) and runs it only in a module whose
# __name__ is that name, while the tests and the entry points import a
# driver by its own name (devnp_tap). Under mutmut (it runs pytest in its own
# process), each driver package and its modules are imported by their path
# and known by their own names too, so that both name one module.
if "mutmut" in sys.modules:
    import importlib
    import pkgutil
    for _pkg in ("devnp_tap", "devn_tap", "devnp_shim", "devnp_afpacket", "devn_afpacket"):
        _mod = importlib.import_module(f"drivers.{_pkg}")
        sys.modules[_pkg] = _mod
        for _info in pkgutil.iter_modules(_mod.__path__):
            sys.modules[f"{_pkg}.{_info.name}"] = importlib.import_module(
                f"drivers.{_pkg}.{_info.name}")

# The tests keep their control sockets, lab state and stack logs in a run
# directory of their own (set before anything imports iopkt, and inherited
# by every `python -m iopkt` they start), so a test run neither sees nor
# disturbs a user's labs, and leaves nothing in /run/iopkt.
if "IOPKT_RUN_DIR" not in os.environ:
    import atexit
    import shutil
    import tempfile

    _run_dir = tempfile.mkdtemp(prefix="iopkt-test-run-")
    os.environ["IOPKT_RUN_DIR"] = _run_dir
    atexit.register(shutil.rmtree, _run_dir, True)


# -- running under pytest-xdist (-n N) ---------------------------------------
# Tests marked `alone` measure time or rates (a rate band, a max RTT, no
# loss at a given load): under xdist each runs with nothing else running,
# while every other test runs alongside whatever else is not `alone`. A
# readers-writer lock over all workers, on flock(2): an `alone` test takes
# it exclusively, any other shared; a turnstile taken first lets an `alone`
# test waiting for its turn stop new shared holders from overtaking it.
# Without xdist nothing is locked. The lock files live in a directory the
# first process (xdist's controller, which the workers inherit it from)
# makes and removes.
if "IOPKT_TEST_LOCK_DIR" not in os.environ:
    import atexit
    import shutil
    import tempfile

    _lock_dir = tempfile.mkdtemp(prefix="iopkt-test-locks-")
    os.environ["IOPKT_TEST_LOCK_DIR"] = _lock_dir
    atexit.register(shutil.rmtree, _lock_dir, True)


def pytest_configure(config):
    config.addinivalue_line("markers", "alone: measures time or rates; under pytest-xdist "
                            "it runs while no other test runs, and make mutate leaves it out "
                            "(mutmut's tracing slows every test)")


def pytest_collection_modifyitems(config, items):
    """Under xdist the `alone` tests go first (in their order; every worker
    collects the same list): run one after the other while the rest wait,
    they idle a worker once, not once each among the rest."""
    if os.environ.get("PYTEST_XDIST_WORKER"):
        items.sort(key=lambda item: item.get_closest_marker("alone") is None)


# A fixture, so a module's shared lab (a module-scoped fixture, set up
# before it) may still be built by another worker beside an `alone` test.
# Locking around the whole test protocol excludes that too, but serialises
# every lab the `alone` tests use: 20 s more on the 2-core VM.
@pytest.fixture(autouse=True)
def _alone_under_xdist(request):
    if not os.environ.get("PYTEST_XDIST_WORKER"):
        yield
        return
    import fcntl
    alone = request.node.get_closest_marker("alone") is not None
    d = os.environ["IOPKT_TEST_LOCK_DIR"]
    with open(os.path.join(d, "turnstile"), "a") as gate, open(os.path.join(d, "tests"), "a") as lk:
        fcntl.flock(gate, fcntl.LOCK_EX)
        try:
            fcntl.flock(lk, fcntl.LOCK_EX if alone else fcntl.LOCK_SH)
        finally:
            fcntl.flock(gate, fcntl.LOCK_UN)
        try:
            yield
        finally:
            fcntl.flock(lk, fcntl.LOCK_UN)


# -- skips ---------------------------------------------------------------------
# A skip may only say that this machine lacks what `sudo make test` brings:
# root, or a tool `make setup` installs (the reason starts with "needs ").
# Any other skip fails the run, and with IOPKT_NO_SKIPS=1 (.ci/run, where
# setup ran) every skip does: a broken driver or a missing feature must
# never pass for a missing tool. Under xdist the controller sees every
# worker's reports.
_skipped: list[tuple[str, str]] = []


def pytest_runtest_logreport(report):
    if report.skipped and not hasattr(report, "wasxfail"):
        lr = report.longrepr
        reason = lr[2] if isinstance(lr, tuple) else str(lr)
        _skipped.append((report.nodeid, reason.removeprefix("Skipped: ")))


def _bad_skips() -> tuple[list[tuple[str, str]], bool]:
    strict = os.environ.get("IOPKT_NO_SKIPS") == "1"
    return [(n, r) for n, r in _skipped if strict or not r.startswith("needs ")], strict


def pytest_sessionfinish(session, exitstatus):
    if not os.environ.get("PYTEST_XDIST_WORKER") and _bad_skips()[0]:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter):
    bad, strict = _bad_skips()
    if bad:
        why = ("skipped where nothing may be (IOPKT_NO_SKIPS=1)" if strict
               else "skipped for a reason other than a missing tool or root")
        terminalreporter.write_sep("=", f"{len(bad)} test(s) {why}", red=True)
        for nodeid, reason in bad:
            terminalreporter.write_line(f"{nodeid}: {reason}")
