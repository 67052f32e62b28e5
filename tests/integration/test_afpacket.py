"""devnp-afpacket on real veth pairs (root): two hosts, each on a veth pair
whose other end the stack drives through an AF_PACKET socket with
PACKET_MMAP rings (afplab.py). Every test builds its own namespaces and
veths with a unique prefix and removes them in a finalizer, even when it
fails."""

import os
import re
import subprocess
import sys
import time

import pytest

from iopkt.bench import measure
from iopkt.lab import netns

from afplab import A_GW, A_HOST, B_HOST, ETHTOOL_STXCSUM, VethLab, ethtool_set, mbps, peer_offload
from conftest import have, unique_prefix
from tcpstream import tcp_stream

pytestmark = [pytest.mark.integration,
              pytest.mark.skipif(not have("iperf3") or not have("ping"),
                                 reason="needs iperf3 and ping")]


@pytest.fixture
def make():
    """make(opts_a=..., opts_b=..., peer_offload=True, start=True) -> a
    VethLab, removed afterwards."""
    made = []

    def build(opts_a="", opts_b=None, offload_peers=True, start=True, **kw):
        lab = VethLab(unique_prefix("f"), opts_a, opts_a if opts_b is None else opts_b, **kw)
        made.append(lab)
        lab.wire()
        if not offload_peers:
            peer_offload(lab.ns_a, lab.host_a, False)
            peer_offload(lab.ns_b, lab.host_b, False)
        if start:
            lab.start()
            wait_link(lab, "afp0", "up")
            wait_link(lab, "afp1", "up")
        return lab

    yield build
    for lab in made:
        lab.down()
    for lab in made:
        assert not any(ns in netns.ns_list() for ns in (lab.ns_a, lab.ns_b, lab.ns_n))
        assert not any(netns.link_exists(x) for x in (lab.host_a, lab.nic_a,
                                                      lab.host_b, lab.nic_b))


def wait_link(lab, ifname, state, timeout=5.0):
    deadline = time.monotonic() + timeout
    while True:
        got = lab.nic(ifname)["link_state"]
        if got == state:
            return
        assert time.monotonic() < deadline, f"{ifname} link {got}, waited for {state}"
        time.sleep(0.1)


def wait_for(pred, timeout=5.0, what=""):
    deadline = time.monotonic() + timeout
    while not pred():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def csum_errors(lab, ns) -> int:
    out = lab.run(ns, ["cat", "/proc/net/snmp"], check=True).stdout.splitlines()
    heads = [ln.split()[1:] for ln in out if ln.startswith("Tcp:")]
    return dict(zip(heads[0], map(int, heads[1])))["InCsumErrors"]


def packet_sockets(lab) -> int:
    """AF_PACKET sockets open in the NIC namespace."""
    out = lab.run(lab.ns_n, ["cat", "/proc/net/packet"], check=True).stdout
    return len(out.strip().splitlines()) - 1


def socket_maps(pid: int) -> int:
    with open(f"/proc/{pid}/maps") as f:
        return sum(1 for ln in f if "socket:" in ln)


def test_ping_both_ways_and_nicinfo(make):
    lab = make()
    lab.ping(lab.ns_a, B_HOST, count=3).check_returncode()
    lab.ping(lab.ns_b, A_HOST, count=3).check_returncode()
    nic = lab.nic("afp0")
    info = nic["driver_info"]
    assert nic["link_state"] == "up" and "RUNNING" in nic["flags"]
    assert info["linux_if"] == lab.nic_a and info["ring"] == "v2"
    # The offload defaults: 128 RX frames of 65632 B rounded up to nine
    # 1 MiB blocks (15 frames each), 64 TX frames to ten 512 KiB blocks (7).
    assert info["frame_size"] == 65632
    assert info["rx_ring"] == "135 x 65632 B in 9 x 1024 KB blocks"
    assert info["tx_ring"] == "70 x 65632 B in 10 x 512 KB blocks"
    assert info["ring_bytes"] == 9 * (1 << 20) + 10 * (512 << 10)
    assert nic["capabilities"].startswith("7fc80<TSO4")
    # Our MAC is the Linux interface's own (no promiscuous mode needed).
    from pyroute2 import NetNS
    with NetNS(lab.ns_n) as n:
        mac = n.get_links(n.link_lookup(ifname=lab.nic_a)[0])[0].get_attr("IFLA_ADDRESS")
    assert nic["mac"] == mac and info["promisc"] is False
    # PACKET_IGNORE_OUTGOING: what we send never comes back as received.
    assert nic["counters"]["in_discards"]["not_ours"] == 0
    assert info["ring_drops"] == 0 and info["tx_kicks"] > 0


@pytest.mark.parametrize("offload", [True, False], ids=["offload", "no-offload"])
def test_iperf3_both_ways(make, offload):
    """TCP both ways, a second each. With offload super-frames cross
    whole; without, the hosts send wire-sized frames (their TSO and GSO
    off) whose checksums are still partial (TX checksum offload left on),
    and the driver completes them: the receiving host counts no checksum
    error, though it checks every one (the stack sends them on plain)."""
    lab = make(offload_peers=offload, opts_a="" if offload else "offload=0")
    if not offload:
        for ns, ifn in ((lab.ns_a, lab.host_a), (lab.ns_b, lab.host_b)):
            ethtool_set(ns, ifn, ETHTOOL_STXCSUM, True)
    errs = (csum_errors(lab, lab.ns_a), csum_errors(lab, lab.ns_b))
    fwd = lab.iperf(1)
    rev = lab.iperf(1, reverse=True)
    assert mbps(fwd) > 1 and mbps(rev) > 1      # traffic flows; its rate is the bench's
    a, b = lab.info("afp0"), lab.info("afp1")
    if offload:
        assert a["rx_superframes"] > 0 and b["tx_superframes"] > 0
    else:
        assert a["rx_superframes"] == 0 and b["tx_superframes"] == 0
        assert lab.nic("afp0")["counters"]["sw_csum"] > 0
        assert (csum_errors(lab, lab.ns_a), csum_errors(lab, lab.ns_b)) == errs
        assert lab.nic("afp0")["capabilities"].startswith("0<")
    assert a["rx_frames_too_long"] == 0 and b["rx_frames_too_long"] == 0
    assert lab.wait_idle_pool()["clusters_in_use"] == 0


def test_ring_wraps_around_many_times_intact(make):
    """A 20 MB stream through 16-frame rings: the RX ring and the TX ring
    each go round hundreds of times; every byte arrives."""
    lab = make(offload_peers=False, opts_a="offload=0,rxframes=16,txframes=8")
    src, got = tcp_stream(lab, 20 << 20)
    assert got == src
    src, got = tcp_stream(lab, 5 << 20, reverse=True)
    assert got == src
    a, b = lab.info("afp0"), lab.info("afp1")
    assert a["rx_ring"].startswith("16 x") and b["tx_ring"].startswith("8 x")
    # The 20 MB took at least this many frames from A (the hosts' TSO and
    # GSO off: at most 1460 bytes of TCP payload in a 1500-byte packet),
    # each through A's RX ring, and through B's TX ring at most 8 a kick.
    frames = -(-(20 << 20) // 1460)
    assert a["ring_packets"] >= frames and b["tx_kicks"] >= -(-frames // 8), (a, b)


def test_a_full_tx_ring_queues_and_resumes(make):
    """The stack's side of B's veth limited to 20 Mbit/s (a slow peer)
    and a 2-frame TX ring: the ring is full most of the time, the driver
    waits for EPOLLOUT with if_snd holding the rest, and TCP still gets
    the link's rate."""
    lab = make(offload_peers=False, opts_a="offload=0", opts_b="offload=0,txframes=2",
               start=False)
    netns.link_rate(lab.ns_n, lab.nic_b, 20)
    lab.start()
    wait_link(lab, "afp1", "up")
    got = mbps(lab.iperf(3))
    b = lab.info("afp1")
    assert b["tx_ring"].startswith("2 x")
    assert b["tx_ring_full"] > 0 and b["tx_waits_for_slots"] > 0
    assert 1 < got < 25, got                    # never above the peer's 20 Mbit/s
    lab.ping(count=2).check_returncode()
    assert lab.nic("afp1")["counters"]["oerrors"] == 0


def test_frames_longer_than_a_ring_frame_are_counted_and_the_ring_goes_on(make):
    """Host A's link with MTU 4000, the stack's 2048-byte ring frames:
    big frames are cut short by the kernel, counted as too_long and
    dropped; the ring is not wedged, ordinary traffic goes on, and the
    stack's MTU follows the Linux interface only as far as a frame fits."""
    lab = make(offload_peers=False, opts_a="offload=0")
    from pyroute2 import NetNS
    for ns, name in ((lab.ns_n, lab.nic_a), (lab.ns_a, lab.host_a)):
        with NetNS(ns) as n:
            n.link("set", index=n.link_lookup(ifname=name)[0], mtu=4000)
    wait_for(lambda: lab.info("afp0")["linux_mtu"] == 4000, what="the MTU poll")
    assert lab.nic("afp0")["mtu"] == 2048 - 76 - 14 - 4
    r = lab.run(lab.ns_a, ["ping", "-n", "-c", "3", "-i", "0.2", "-W", "1", "-s", "3500",
                           "-M", "dont", A_GW])
    assert r.returncode != 0                    # cut short, dropped
    assert lab.info("afp0")["rx_frames_too_long"] == 3
    assert lab.nic("afp0")["counters"]["in_discards"]["too_long"] == 3
    lab.ping(count=3).check_returncode()        # the ring goes on
    assert "give a larger framesize" in lab.log_text()


@pytest.mark.parametrize("side", ["stack", "host"])
def test_link_down_and_up_follows_the_linux_interface(make, side):
    """The stack's veth end set down (ENETDOWN on the socket), or the
    host's (no carrier): link down, traffic stops; up again: it resumes."""
    lab = make()
    lab.ping(count=1).check_returncode()
    changes = lab.info("afp1")["link_changes"]     # 0, or 1 if it came up after attaching
    (lab.nic_link if side == "stack" else lab.host_link)("b", "down")
    wait_link(lab, "afp1", "down")
    assert "RUNNING" not in lab.nic("afp1")["flags"]
    assert lab.ping(count=1).returncode != 0
    (lab.nic_link if side == "stack" else lab.host_link)("b", "up")
    wait_link(lab, "afp1", "up")
    wait_for(lambda: lab.ping(count=1).returncode == 0, 10, "ping after link up")
    assert mbps(lab.iperf(1)) > 1
    info = lab.info("afp1")
    assert info["link_changes"] - changes == 2     # down, then up
    if side == "stack":
        assert info["socket_errors"] >= 1      # the kernel said ENETDOWN
    assert re.search(r"afp1: link down \(\S+ (is down|has no carrier)\)", lab.log_text())


def test_an_interface_deleted_is_link_lost(make):
    lab = make()
    netns.link_delete(lab.nic_b, lab.ns_n)
    wait_link(lab, "afp1", "down")
    assert "UP" not in lab.nic("afp1")["flags"].split(",")
    assert "link lost" in lab.log_text()
    lab.run(lab.ns_a, ["ping", "-c", "1", "-W", "1", A_GW], check=True)   # afp0 carries on


def test_detach_under_traffic_leaves_pool_and_ring_clean(make):
    lab = make()
    pid = lab.proc.pid
    assert packet_sockets(lab) == 2 and socket_maps(pid) == 2
    srv = measure.iperf3_server(lab.ns_b, ["-B", B_HOST],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    cli = netns.ns_popen(lab.ns_a, ["iperf3", "-c", B_HOST, "-t", "6", "-P", "2"],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        time.sleep(1)                       # two TCP streams are in full flow
        out = lab.req("detach", ifname="afp1")
        assert out["detached"] == "afp1"
        mb = lab.wait_idle_pool()
        assert mb["clusters_in_use"] == 0 and mb["jumbo_in_use"] == 0
        assert packet_sockets(lab) == 1 and socket_maps(pid) == 1   # closed and unmapped
        assert netns.link_exists(lab.nic_b, lab.ns_n)               # the "NIC" stays
    finally:
        for p in (cli, srv):
            p.kill()
            p.wait()
    # Mounted again it gets its address back and carries traffic.
    lab.req("mount", driver="devnp-afpacket", options=lab.drv(lab.nic_b, ""))
    wait_link(lab, "afp1", "up")
    wait_for(lambda: lab.ping(count=1).returncode == 0, 10, "ping after remount")
    assert lab.stop_stack() == 0
    assert "all 4096 mbuf clusters" in lab.log_text()


def test_v3_ring_carries_traffic(make):
    lab = make(opts_a="ring=v3")
    lab.ping(count=2).check_returncode()
    assert mbps(lab.iperf(1)) > 1
    info = lab.info("afp0")
    assert info["ring"] == "v3" and info["rx_blocks"] > 0 and info["block_timeout_ms"] == 1


def test_run_refuses_bad_interfaces_in_one_line(make):
    lab = make(start=False)
    for opts, words, code in (
            (f"ifname=nope0,netns={lab.ns_n}", f"no interface nope0 in netns {lab.ns_n}", 1),
            (f"ifname=lo,netns={lab.ns_n}", "not an Ethernet interface", 1),
            ("ifname=x,netns=nonexistent-ns", "no network namespace", 2),
            (f"ifname={lab.nic_a},netns={lab.ns_n},framesize=1024", "framesize=1024", 2)):
        r = subprocess.run([sys.executable, "-m", "iopkt", "run", "-i", lab.prefix,
                            "-d", "afpacket", opts], capture_output=True, text=True,
                           cwd=os.path.dirname(os.path.dirname(os.path.dirname(
                               os.path.abspath(__file__)))), timeout=30)
        lines = r.stderr.strip().splitlines()
        assert r.returncode == code and len(lines) == 1 and words in lines[0], r.stderr
