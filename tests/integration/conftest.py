"""Fixtures for tests that build real namespaces and TAPs (root only).

Every lab gets a unique prefix, so suites can run side by side, and is torn
down in a finalizer, so a failing test leaves nothing behind.
"""

import contextlib
import itertools
import os
import socket
import subprocess
import time

import pytest
from pyroute2 import netns as pr_netns

from iopkt import control, lab, netns

_seq = itertools.count()

pytestmark = pytest.mark.integration


def pytest_collection_modifyitems(config, items):
    if os.geteuid() != 0:
        skip = pytest.mark.skip(reason="integration tests need root (sudo make test)")
        for item in items:
            if "integration" in str(item.fspath):
                item.add_marker(skip)


def unique_prefix(tag: str = "t") -> str:
    return f"{tag}{os.getpid() % 10000}{next(_seq)}"[:12]


class Lab:
    """A running lab and the ways a test talks to it."""

    def __init__(self, spec: lab.LabSpec):
        self.spec = spec
        self.prefix = spec.prefix
        self.state = lab.up(spec)
        self.ns_a, self.ns_b = self.state["ns_a"], self.state["ns_b"]
        self.if_a, self.if_b = self.state["if_a"], self.state["if_b"]
        self.pid = self.state["pid"]

    def req(self, op, **kw):
        return control.request(self.prefix, op, **kw)

    def nic(self, ifname):
        return self.req("nicinfo", ifname=ifname)[0]

    def netstat(self):
        return self.req("netstat")

    def run(self, ns, cmd, timeout=30, check=False):
        p = netns.ns_popen(ns, cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        try:
            out, _ = p.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            p.kill()
            out, _ = p.communicate()
            raise AssertionError(f"{cmd} timed out; output: {out.decode(errors='replace')}")
        res = subprocess.CompletedProcess(cmd, p.returncode, out.decode(errors="replace"))
        if check:
            assert res.returncode == 0, f"{cmd} failed: {res.stdout}"
        return res

    def ping(self, ns, dst, *extra, count=1):
        return self.run(ns, ["ping", "-n", "-c", str(count), "-i", "0.2", "-W", "2", *extra, dst])

    def raw_socket(self, ns, ifname):
        """An AF_PACKET socket on the host side of a TAP, to write frames
        straight at the stack."""
        pr_netns.pushns(ns)
        try:
            s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
        finally:
            pr_netns.popns()
        s.bind((ifname, 0))
        return s

    def wait_idle_pool(self, timeout=3.0):
        """The mbuf pool once nothing is in flight any more. An interface
        with offload keeps one jumbo cluster ready for its next super-frame
        (its receive spill); any other jumbo still out is in flight."""
        held = sum(1 for d in self.req("nicinfo") if d["driver_info"].get("rx_spill"))
        deadline = time.monotonic() + timeout
        while True:
            mb = self.netstat()["mbuf"]
            if (mb["clusters_in_use"] == 0 and mb["jumbo_in_use"] == held) \
                    or time.monotonic() > deadline:
                mb["jumbo_held_ready"] = held
                return mb
            time.sleep(0.1)

    def down(self):
        return lab.down(self.prefix, quiet=True)


@pytest.fixture
def fresh_prefix():
    """A prefix no other lab uses; whatever carries it is removed afterwards."""
    p = unique_prefix("c")
    yield p
    lab.down(p, quiet=True)


@pytest.fixture
def make_lab():
    """make_lab(driver_a=..., driver_b=...) -> Lab, torn down afterwards."""
    made = []

    def make(driver_a="devnp-tap", driver_b=None, **kw):
        spec = lab.LabSpec(prefix=unique_prefix(), driver_a=driver_a,
                           driver_b=driver_b or driver_a, **kw)
        made.append(spec.prefix)
        return Lab(spec)

    yield make
    for prefix in made:
        lab.down(prefix, quiet=True)


# Every forwarding test runs for each of these: (driver A, driver B, shim
# options, offload on the native sides: None is the driver's default, on).
DRIVER_SETS = [
    pytest.param(("devnp-tap", "devnp-tap", "", None), id="native"),
    pytest.param(("devnp-tap", "devnp-tap", "", False), id="native-nooffload"),
    pytest.param(("devn-tap", "devn-tap", "", None), id="shim"),
    pytest.param(("devn-tap", "devn-tap", "shimrxcopy=0", None), id="shim-zerocopy"),
    pytest.param(("devnp-tap", "devn-tap", "", None), id="mixed"),
]

# The deliberately broken legacy drivers live in tests/drivers.
os.environ["IOPKT_DRIVER_PATH"] = os.path.join(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))), "drivers")


@pytest.fixture(scope="module", params=DRIVER_SETS)
def shared_lab(request):
    """One lab per driver set, shared by a module's read-mostly tests."""
    a, b, opts, offload = request.param
    spec = lab.LabSpec(prefix=unique_prefix("s"), driver_a=a, driver_b=b,
                       opts_a=opts if a.startswith("devn-") else "",
                       opts_b=opts if b.startswith("devn-") else "", offload=offload)
    with running_lab(spec) as lb:
        yield lb


@contextlib.contextmanager
def running_lab(spec):
    """A Lab for the block, removed afterwards, also if building it fails
    half way."""
    try:
        yield Lab(spec)
    finally:
        lab.down(spec.prefix, quiet=True)


def have(cmd):
    from shutil import which
    return which(cmd) is not None
