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

from iopkt.ctl import control
from iopkt.lab import lab, netns

_seq = itertools.count()
_made: list[str] = []          # every prefix this session handed out

pytestmark = pytest.mark.integration


def pytest_collection_modifyitems(config, items):
    if os.geteuid() != 0:
        skip = pytest.mark.skip(reason="needs root: integration tests (sudo make test)")
        for item in items:
            if "integration" in str(item.fspath):
                item.add_marker(skip)


def _base36(n: int, width: int) -> str:
    digits = "0123456789abcdefghijklmnopqrstuvwxyz"
    out = ""
    for _ in range(width):
        n, r = divmod(n, 36)
        out = digits[r] + out
    assert n == 0, "does not fit"
    return out


def unique_prefix(tag: str = "t") -> str:
    """A name prefix no other test, worker or lab uses: the tag (at most 3
    characters), this process's pid and a counter, each of a fixed width
    (pid_max is below 36**5), so two workers can never build one name. 11
    characters at most: P-sa0 still fits a 15-character interface name."""
    assert len(tag) <= 3, tag
    p = f"{tag}{_base36(os.getpid(), 5)}{_base36(next(_seq), 3)}"
    _made.append(p)
    return p


def leftovers_of(prefix: str) -> list[str]:
    """Namespaces and root-namespace links carrying `prefix` (P-a, P-b,
    P-s, P-c..., P-a0, P-sa, ...): what a lab or a test could leave."""
    from pyroute2 import IPRoute
    out = [f"netns {n}" for n in netns.ns_list() if n.startswith(f"{prefix}-")]
    with IPRoute() as ip:
        out += [f"link {name}" for name in (ln.get_attr("IFLA_IFNAME") for ln in ip.get_links())
                if name and name.startswith(f"{prefix}-")]
    return out


@pytest.fixture(scope="session", autouse=True)
def nothing_left_behind():
    """After the session: no namespace and no link of any prefix the
    tests handed out is left (`ip netns list`, `ip link`), whatever the link
    kind. Only this session's prefixes: others may run labs meanwhile."""
    yield
    if os.geteuid() != 0:
        return
    left = [x for p in _made for x in leftovers_of(p)]
    assert not left, f"left behind by the tests: {left}"


class Lab:
    """A running lab and the ways a test talks to it."""

    def __init__(self, spec: lab.LabSpec):
        self.spec = spec
        self.prefix = spec.prefix
        self.link = spec.link
        self.state = lab.up(spec)
        self.ns_a, self.ns_b = self.state["ns_a"], self.state["ns_b"]
        self.if_a, self.if_b = self.state["if_a"], self.state["if_b"]
        # The hosts' interfaces: their TAPs, or their veth ends.
        self.host_if_a, self.host_if_b = self.state["host_if_a"], self.state["host_if_b"]
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
            raise AssertionError(f"{cmd} timed out; output: "
                                 f"{out.decode(errors='replace')}") from None
        res = subprocess.CompletedProcess(cmd, p.returncode, out.decode(errors="replace"))
        if check:
            assert res.returncode == 0, f"{cmd} failed: {res.stdout}"
        return res

    def evidence(self, since: dict | None = None) -> str:
        """What the stack knows now, for an assertion's message when
        traffic went missing: its neighbour caches, each interface's
        discards and errors, and the IPv4, IPv6 and ICMP counters that
        moved since `since` (an earlier netstat()), or all of them."""
        now = self.netstat()
        out = [f"arp: {self.req('arp')}", f"ndp: {self.req('ndp')}"]
        for d in self.req("nicinfo"):
            c = d["counters"]
            out.append(f"{d['name']}: in_discards={c.get('in_discards')} "
                       f"out_discards={c.get('out_discards')} "
                       f"ierrors={c.get('ierrors')} oerrors={c.get('oerrors')}")
        for proto in ("ip", "ip6", "icmp", "icmp6", "nd6"):
            new, old = now.get(proto, {}), (since or {}).get(proto, {})
            moved = {k: v if not isinstance(v, int) or not isinstance(old.get(k, 0), int)
                     else v - old.get(k, 0)
                     for k, v in new.items() if v != old.get(k)}
            out.append(f"{proto}: {moved}")
        return "\n".join(out)

    def ping(self, ns, dst, *extra, count=1):
        return self.run(ns, ["ping", "-n", "-c", str(count), "-i", "0.2", "-W", "2", *extra, dst])

    def wait_reachable(self, ns, dst, *extra, timeout=30.0):
        """ping until `dst` answers once (a new host's interface, its ARP
        or its neighbour entry may take a while on a busy machine); the
        last ping's result."""
        deadline = time.monotonic() + timeout
        while True:
            r = self.ping(ns, dst, *extra)
            if "1 received" in r.stdout or time.monotonic() > deadline:
                return r

    def raw_socket(self, ns, ifname):
        """An AF_PACKET socket on a host's interface (its TAP, or its veth
        end: the same for both), to write frames straight at the stack."""
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

    def add_host(self, tag: str, addr: str, gw: str, plen: int = 24):
        """A third host, namespace P-TAG, wired to a new interface of the
        stack the way this lab's are (a TAP; or a veth pair P-TAG0 <->
        P-sTAG with the stack's end in P-s), the native driver of the link
        mounted on it with address `gw`. Returns (namespace, the stack's
        interface); remove_host() (or lab down with the namespace) undoes it."""
        ns, host_if = f"{self.prefix}-{tag}", f"{self.prefix}-{tag}0"
        netns.ns_create(ns)
        if self.link == "veth":
            # The host's end up first, as lab up does: the driver follows
            # the carrier of its end (a 1 s callout), which a veth has only
            # while both ends are up.
            port, ns_s = f"{self.prefix}-s{tag}", self.state["ns_s"]
            netns.veth_create(host_if, ns, port, ns_s)
            netns.host_setup(ns, host_if, addr, plen, gw)
            netns.link_up(ns_s, port)
            res = self.req("mount", driver=lab.LINK_DRIVERS["veth"][0],
                           options=f"ifname={port},netns={ns_s}")
            self.req("ifconfig", ifname=res["mounted"], inet=f"{gw}/{plen}")
            self.wait_link_up(res["mounted"])
        else:
            res = self.req("mount", driver="devnp-tap", options=f"name={host_if},netns={ns}")
            self.req("ifconfig", ifname=res["mounted"], inet=f"{gw}/{plen}")
            netns.host_setup(ns, host_if, addr, plen, gw)
        return ns, res["mounted"]

    def wait_link_up(self, ifname: str, timeout: float = 5.0) -> None:
        """Until the stack sees `ifname`'s link up (or the timeout)."""
        deadline = time.monotonic() + timeout
        while self.req("ifconfig", ifname=ifname)[0]["link_state"] != "up" \
                and time.monotonic() < deadline:
            time.sleep(0.1)

    def remove_host(self, tag: str) -> None:
        ns, host_if = f"{self.prefix}-{tag}", f"{self.prefix}-{tag}0"
        netns.link_delete(host_if, ns)          # a veth's stack end goes with it
        netns.ns_remove(ns)
        netns.link_delete(host_if)

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

    def make(driver_a=None, driver_b=None, **kw):
        driver_a = driver_a or lab.default_driver(kw.get("link", "tap"))
        spec = lab.LabSpec(prefix=unique_prefix(), driver_a=driver_a,
                           driver_b=driver_b or driver_a, **kw)
        made.append(spec.prefix)
        return Lab(spec)

    yield make
    for prefix in made:
        lab.down(prefix, quiet=True)


def link_drivers(link: str) -> tuple[str, str]:
    """(native, legacy) driver for a lab over `link`."""
    return lab.LINK_DRIVERS[link]


# Every forwarding test runs for each of these: (driver A, driver B, shim
# options, offload on the native sides: None is the driver's default, on;
# link: TAPs, or veth pairs driven through AF_PACKET).
_NP, _NL = lab.LINK_DRIVERS["veth"]
DRIVER_SETS = [
    pytest.param(("devnp-tap", "devnp-tap", "", None, "tap"), id="native"),
    pytest.param(("devnp-tap", "devnp-tap", "", False, "tap"), id="native-nooffload"),
    pytest.param(("devn-tap", "devn-tap", "", None, "tap"), id="shim"),
    pytest.param(("devn-tap", "devn-tap", "shimrxcopy=0", None, "tap"), id="shim-zerocopy"),
    pytest.param(("devnp-tap", "devn-tap", "", None, "tap"), id="mixed"),
    pytest.param((_NP, _NP, "", None, "veth"), id="native-veth"),
    pytest.param((_NP, _NP, "", False, "veth"), id="native-veth-nooffload"),
    pytest.param((_NL, _NL, "", None, "veth"), id="shim-veth"),
    pytest.param((_NL, _NL, "shimrxcopy=0", None, "veth"), id="shim-veth-zerocopy"),
    pytest.param((_NP, _NL, "", None, "veth"), id="mixed-veth"),
]

# Suites that run over both links ask for this fixture (test_shim.py).
LINK_PARAMS = [pytest.param("tap", id="tap"),
               pytest.param("veth", id="veth")]


# The deliberately broken legacy drivers live in tests/drivers.
os.environ["IOPKT_DRIVER_PATH"] = os.path.join(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))), "drivers")


@pytest.fixture(scope="module", params=DRIVER_SETS)
def shared_lab(request):
    """One lab per driver set, shared by a module's read-mostly tests."""
    a, b, opts, offload, link = request.param
    spec = lab.LabSpec(prefix=unique_prefix("s"), driver_a=a, driver_b=b,
                       opts_a=opts if a.startswith("devn-") else "",
                       opts_b=opts if b.startswith("devn-") else "", offload=offload,
                       link=link)
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
