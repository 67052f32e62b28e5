"""devn-afpacket (a legacy io-net driver on an existing Linux interface,
through an AF_PACKET socket) under the shim, on real veth pairs.

Each test builds its own topology with unique names:

    P-a (host A 198.18.0.2/24)  --veth P-a0 | P-sa--  P-s (the stack's wire
    namespace: its veth ends, no addresses)  --P-sb | P-b0 veth--  P-b (host B
    198.19.0.2/24)

and runs the stack in no namespace at all, `python -m iopkt run -i P -d
devn-afpacket ifname=P-sa,netns=P-s -d devn-afpacket ifname=P-sb,netns=P-s
--inet en0=198.18.0.1/24 --inet en1=198.19.0.1/24`. The hosts keep TX
checksum offload on (their TCP and UDP frames cross the veth with partial
checksums, which the driver completes) and have TSO off (the driver drops
GSO super-frames: io-net knew no offload). Everything is removed in a
finalizer, also when the test fails.
"""

import contextlib
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time

import psutil
import pytest

from iopkt.bench import measure
from iopkt.ctl import control
from iopkt.lab import netns

import accounting
from conftest import unique_prefix

pytestmark = [pytest.mark.integration,
              pytest.mark.skipif(os.geteuid() != 0, reason="needs root (sudo make test)"),
              pytest.mark.skipif(not shutil.which("iperf3"), reason="needs iperf3")]
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def set_tso(ns: str, ifname: str, on: bool) -> None:
    """ethtool -K IF tso on|off, through pyroute2's ethtool ioctls, in `ns`."""
    from pyroute2.ethtool import Ethtool
    with netns.inside(ns):
        with Ethtool() as et:
            f = et.get_features(ifname)
            f.features["tx-tcp-segmentation"].enable = on
            et.set_features(ifname, f)


def features(ns: str, ifname: str) -> dict:
    from pyroute2.ethtool import Ethtool
    with netns.inside(ns):
        with Ethtool() as et:
            return {k: v.enable for k, v in et.get_features(ifname).features.items()}


def promiscuity(ns: str, ifname: str) -> int:
    """How many asked `ifname` to be promiscuous: a device without a unicast
    filter (veth) goes promiscuous when the driver adds its MAC to it."""
    from pyroute2 import NetNS
    with NetNS(ns) as n:
        return n.get_links(n.link_lookup(ifname=ifname)[0])[0].get_attr("IFLA_PROMISCUITY")


def link_set(ns: str, ifname: str, **kw) -> None:
    from pyroute2 import NetNS
    with NetNS(ns) as n:
        n.link("set", index=n.link_lookup(ifname=ifname)[0], **kw)


class Topo:
    """Three namespaces, two veth pairs, and the stack between them."""

    def __init__(self, prefix: str, tso: bool = False, opts_a: str = "", opts_b: str = "",
                 mtu: int | None = None):
        p = self.prefix = prefix
        self.ns_a, self.ns_s, self.ns_b = f"{p}-a", f"{p}-s", f"{p}-b"
        self.if_sa, self.if_sb = f"{p}-sa", f"{p}-sb"
        self.proc = None
        self.logf = tempfile.NamedTemporaryFile("w+", prefix=f"iopkt-{p}-", suffix=".log")
        try:
            self._build(tso, opts_a, opts_b, mtu)
        except BaseException:           # half built: remove what is there
            self.down()
            raise

    def _build(self, tso, opts_a, opts_b, mtu):
        p = self.prefix
        for ns in (self.ns_a, self.ns_s, self.ns_b):
            netns.ns_create(ns)
        for host, wire, ns, addr, gw in ((f"{p}-a0", self.if_sa, self.ns_a, "198.18.0.2",
                                          "198.18.0.1"),
                                         (f"{p}-b0", self.if_sb, self.ns_b, "198.19.0.2",
                                          "198.19.0.1")):
            netns.veth_pair(host, wire)
            netns.link_move(host, ns)
            netns.link_move(wire, self.ns_s)
            link_set(self.ns_s, wire, state="up", **({"mtu": mtu} if mtu else {}))
            netns.host_setup(ns, host, addr, 24, gw, mtu=mtu)
            set_tso(ns, host, tso)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "iopkt", "run", "-i", p,
             "-d", "devn-afpacket", f"ifname={self.if_sa},netns={self.ns_s}"
             + (f",{opts_a}" if opts_a else ""),
             "-d", "devn-afpacket", f"ifname={self.if_sb},netns={self.ns_s}"
             + (f",{opts_b}" if opts_b else ""),
             "--inet", "en0=198.18.0.1/24", "--inet", "en1=198.19.0.1/24"],
            stdout=subprocess.DEVNULL, stderr=self.logf, cwd=ROOT)
        try:
            control.wait_ready(p, 15, self.proc)
        except control.ControlError as e:
            raise AssertionError(f"{e}; its log:\n{self.log()}") from None

    def req(self, op, **kw):
        return control.request(self.prefix, op, **kw)

    def netstat(self):
        return self.req("netstat")

    @property
    def state(self) -> dict:
        """What accounting.path_drops asks of a lab: its wire namespace."""
        return {"ns_s": self.ns_s}

    def nic(self, ifname):
        return self.req("nicinfo", ifname=ifname)[0]

    def drv(self, ifname):
        return self.nic(ifname)["driver_info"]["legacy_driver_stats"]

    def log(self) -> str:
        self.logf.flush()
        with open(self.logf.name) as f:
            return f.read()

    def run(self, ns, cmd, timeout=30):
        p = netns.ns_popen(ns, cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        try:
            out, _ = p.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            p.kill()
            out, _ = p.communicate()
        return subprocess.CompletedProcess(cmd, p.returncode, out.decode(errors="replace"))

    def ping(self, ns, dst, count=1, *extra):
        return self.run(ns, ["ping", "-n", "-c", str(count), "-i", "0.2", "-W", "2",
                             *extra, dst])

    def stop(self) -> str:
        """Stop the stack (SIGINT: it unmounts everything); its log."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.log()

    def down(self) -> None:
        try:
            self.stop()
        finally:
            for ns in (self.ns_a, self.ns_b, self.ns_s):
                for pid in netns.ns_pids(ns):
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGKILL)
                netns.ns_remove(ns)         # takes its veth ends (and their peers) along
            for ifname in (f"{self.prefix}-a0", f"{self.prefix}-b0", self.if_sa, self.if_sb):
                netns.link_delete(ifname)   # one a failed build left in this namespace
            self.logf.close()


@pytest.fixture
def topo():
    """topo(**kw) -> a running Topo; every one is removed afterwards."""
    made = []
    yield _Maker(made)
    for t in made:
        t.down()


class _Maker:
    def __init__(self, made):
        self._made = made

    def __call__(self, **kw):
        t = Topo(unique_prefix("af"), **kw)
        self._made.append(t)
        return t


def tcp_csum_errors(ns: str) -> int:
    """TcpInCsumErrors in `ns`, from /proc/net/snmp (read in that namespace)."""
    with netns.inside(ns):
        # /proc/net follows the reading thread's namespace (/proc/thread-self).
        with open("/proc/thread-self/net/snmp") as f:
            lines = [ln.split() for ln in f if ln.startswith("Tcp:")]
    return int(dict(zip(lines[0], lines[1]))["InCsumErrors"])


def udp_csum_errors(ns: str) -> int:
    with netns.inside(ns):
        with open("/proc/thread-self/net/snmp") as f:
            lines = [ln.split() for ln in f if ln.startswith("Udp:")]
    return int(dict(zip(lines[0], lines[1]))["InCsumErrors"])


@pytest.mark.alone
def test_ping_tcp_udp_through_two_afpacket_drivers(topo):
    t = topo()
    ifs = {d["name"]: d for d in t.req("ifconfig")}
    assert ifs["en0"]["driver"] == ifs["en1"]["driver"] == "devnp-shim"
    assert t.req("ping")["threads"] == 3        # the stack and two receive threads
    r = t.ping(t.ns_a, "198.19.0.2", 3)
    assert "3 received" in r.stdout, r.stdout + t.log()
    # The hosts send with checksum offload on: partial checksums cross the veth.
    assert features(t.ns_a, f"{t.prefix}-a0")["tx-checksum-ip-generic"] is True
    before = tcp_csum_errors(t.ns_b), tcp_csum_errors(t.ns_a)
    tcp = measure.iperf3(t.ns_a, t.ns_b, "198.19.0.2", 1)
    assert measure.received_bps(tcp) > 10e6, tcp["end"]
    back = measure.iperf3(t.ns_b, t.ns_a, "198.18.0.2", 1)
    assert measure.received_bps(back) > 10e6, back["end"]
    # The kernels checked every checksum the driver completed: none wrong.
    assert (tcp_csum_errors(t.ns_b), tcp_csum_errors(t.ns_a)) == before
    udp_before = udp_csum_errors(t.ns_b)
    drops = accounting.path_drops(t)
    udp = measure.iperf3(t.ns_a, t.ns_b, "198.19.0.2", 1, ["-u", "-b", "50M"])
    dropped = accounting.moved(drops, accounting.path_drops(t))
    srv = udp["server"]["end"]["sum"]
    # Every datagram B missed (below the last it saw) was dropped on the
    # path and counted there; a busy machine may drop, never uncounted.
    assert 0 < srv["packets"] - srv["lost_packets"] <= srv["packets"] <= \
        udp["end"]["sum_sent"]["packets"], (srv, udp["end"]["sum_sent"])
    assert srv["lost_packets"] <= sum(dropped.values()), (srv, dropped)
    assert udp_csum_errors(t.ns_b) == udp_before
    # What crossed each way, as the receivers counted it: every byte went
    # in at one interface and out at the other, in frames that carry more
    # than their payload; every datagram B got, in a frame of its own.
    a_to_b = tcp["end"]["sum_received"]["bytes"] + srv["bytes"]
    b_to_a = back["end"]["sum_received"]["bytes"]
    got = srv["packets"] - srv["lost_packets"]
    floors = {"en0": {"octets_rxed_ok": a_to_b, "octets_txed_ok": b_to_a, "rxed_ok": got},
              "en1": {"octets_txed_ok": a_to_b, "octets_rxed_ok": b_to_a, "txed_ok": got}}
    for name in ("en0", "en1"):
        st = t.drv(name)
        assert st["rx_csum_completed"] > 0, (name, st)
        assert st["rx_gso_dropped"] == 0 and st["rx_bad_vnet_hdr"] == 0, st
        assert st["rx_thread_alive"] is True, st
        assert all(st[k] >= v for k, v in floors[name].items()), (name, floors[name], st)
        assert t.nic(name)["driver_info"]["tx_offload_leaked"] == 0
    err = t.stop()
    assert t.proc.returncode == 0, err
    assert len(re.findall(r"devn-afpacket unmounted: 256/256 npkts back with the driver",
                          err)) == 2, err


def test_nicinfo_shows_the_driver_and_its_counters(topo):
    t = topo()
    t.ping(t.ns_a, "198.19.0.2", 2)
    n = t.nic("en0")
    assert n["driver_info"]["legacy_driver"] == "devn-afpacket"
    st = n["driver_info"]["legacy_driver_stats"]
    for key in ("rx_kernel_drops", "rx_csum_completed", "rx_gso_dropped", "rx_too_long",
                "npkts_total", "npkts_free"):
        assert key in st, st
    out = subprocess.run([sys.executable, "-m", "iopkt", "nicinfo", "--instance", t.prefix,
                          "en0"], capture_output=True, text=True, timeout=20)
    assert out.returncode == 0, out.stderr
    assert f"{t.if_sa} (AF_PACKET) in netns {t.ns_s}" in out.stdout, out.stdout


def test_umount_under_traffic_gives_every_npkt_back(topo):
    t = topo()
    assert "1 received" in t.ping(t.ns_a, "198.19.0.2").stdout
    # Our MAC is on each interface's unicast filter while mounted.
    assert promiscuity(t.ns_s, t.if_sa) == promiscuity(t.ns_s, t.if_sb) == 1
    srv = measure.iperf3_server(t.ns_b, ["-p", "5321"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    cli = None
    try:
        cli = netns.ns_popen(t.ns_a, ["iperf3", "-c", "198.19.0.2", "-p", "5321", "-t", "30"],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        # Unmounted once 1000 packets crossed it, however long that takes.
        deadline = time.time() + 25
        while t.nic("en1")["counters"]["ipackets"] < 1000 and time.time() < deadline:
            time.sleep(0.1)
        assert t.nic("en1")["counters"]["ipackets"] >= 1000    # traffic flows through it
        assert t.req("detach", ifname="en1")["detached"] == "en1"
    finally:
        for p in (cli, srv):
            if p is not None:
                p.kill()
                p.communicate()
    deadline = time.time() + 30      # generous: a busy machine
    while "devn-afpacket unmounted" not in t.log() and time.time() < deadline:
        time.sleep(0.1)
    said = [ln for ln in t.log().splitlines() if "devn-afpacket unmounted" in ln]
    assert len(said) == 1, t.log()                  # en1's alone
    m = re.search(r"(\d+)/(\d+) npkts back with the driver, (\d+) transmit npkts back "
                  r"with the shim \(of (\d+)\)", said[0])
    assert m and m.group(1) == m.group(2) == "256" and m.group(3) == m.group(4), said[0]
    assert t.req("ping")["threads"] == 2            # that receive thread is gone
    assert promiscuity(t.ns_s, t.if_sb) == 0        # the socket took our MAC along
    assert "en1" not in t.req("ping")["interfaces"]
    # Mounted again, it gets its address back and forwards again (the
    # stack announces its new MAC with a gratuitous ARP).
    res = t.req("mount", driver="devn-afpacket", options=f"ifname={t.if_sb},netns={t.ns_s}")
    assert "198.19.0.1/24" in {d["name"]: d for d in t.req("ifconfig")}[res["mounted"]]["inet"]
    r = t.ping(t.ns_a, "198.19.0.2", 3)
    assert "3 received" in r.stdout, r.stdout


def test_interface_down_is_reported_as_link_down(topo):
    t = topo()
    assert "1 received" in t.ping(t.ns_a, "198.19.0.2").stdout
    link_set(t.ns_s, t.if_sb, state="down")
    deadline = time.time() + 30      # generous: a busy machine
    while t.nic("en1")["link_state"] != "down" and time.time() < deadline:
        time.sleep(0.2)
    assert t.nic("en1")["link_state"] == "down", t.nic("en1")
    assert "en1: link lost: legacy driver devn-afpacket reports link down" in t.log()
    assert t.nic("en0")["link_state"] == "up"
    # The kernel told the socket (ENETDOWN, once); the receive thread lives
    # on and does not spin.
    st = t.drv("en1")
    assert st["rx_link_down"] == 1 and st["rx_thread_alive"] is True, st
    p = psutil.Process(t.proc.pid)
    c0 = sum(p.cpu_times()[:2])
    time.sleep(1.0)
    assert sum(p.cpu_times()[:2]) - c0 < 0.3
    # The link comes back: the shim brings en1 up again and traffic resumes.
    link_set(t.ns_s, t.if_sb, state="up")
    deadline = time.time() + 30      # generous: a busy machine
    while t.nic("en1")["link_state"] != "up" and time.time() < deadline:
        time.sleep(0.2)
    assert t.nic("en1")["link_state"] == "up" and "UP" in t.nic("en1")["flags"], t.nic("en1")
    assert "en1: legacy driver devn-afpacket reports link up again; interface up" in t.log()
    assert "1 received" in t.ping(t.ns_a, "198.19.0.2", 1).stdout


def test_mtu_is_the_interfaces_and_big_frames_cross(topo):
    """No mtu= option: the driver takes the interface's (1960 here, so its
    ring slots are 4 KiB); a 1960-byte IP packet with DF crosses whole."""
    t = topo(mtu=1960)
    assert t.nic("en0")["mtu"] == t.nic("en1")["mtu"] == 1960
    r = t.ping(t.ns_a, "198.19.0.2", 2, "-s", "1932", "-M", "do")
    assert "2 received" in r.stdout, r.stdout
    r = t.ping(t.ns_a, "198.19.0.2", 1, "-s", "1933", "-M", "do")
    # One byte more: host A itself refuses to send it (DF, its MTU 1960).
    assert r.returncode == 1 and "ping: local error: message too long, mtu=1960" in r.stdout
    assert "1 packets transmitted, 0 received, +1 errors" in r.stdout, r.stdout
    assert t.drv("en0")["rx_too_long"] == 0


def test_gso_from_a_peer_with_tso_on_is_dropped_and_counted(topo):
    """A host with TSO on sends super-frames across the veth: an io-net
    driver cannot take them; it drops them, counts them, says so once."""
    t = topo(tso=True)
    measure.iperf3(t.ns_a, t.ns_b, "198.19.0.2", 1, timeout=30)
    st = t.drv("en0")
    assert st["rx_gso_dropped"] > 0, st
    said = [ln for ln in t.log().splitlines() if "GSO super-frames" in ln]
    assert len(said) == 1 and "TSO off" in said[0], said


def test_bad_options_and_missing_things_are_named():
    p = unique_prefix("ax")
    cases = [
        (["-d", "devn-afpacket", ""], "option ifname: required", 2),
        (["-d", "devn-afpacket", "ifname=x,netns=nosuch-ns-zz"],
         "no network namespace 'nosuch-ns-zz'", 2),
        (["-d", "devn-afpacket", "ifname=nosuchif0"], "no interface nosuchif0", 1),
        (["-d", "devn-afpacket", "ifname=lo"], "lo is not an Ethernet interface", 1),
        (["-d", "devn-afpacket", "ifname=x,mtu=5000"], "option mtu=5000: must be 68..2034", 2),
    ]
    for args, needle, code in cases:
        r = subprocess.run([sys.executable, "-m", "iopkt", "run", "-i", p, *args],
                           capture_output=True, text=True, timeout=20)
        assert r.returncode == code and needle in r.stderr, (args, r.returncode, r.stderr)
        assert len(r.stderr.strip().splitlines()) == 1, r.stderr
