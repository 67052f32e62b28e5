"""`iopkt capture` on a live lab: a native interface with offload (devnp-tap)
on side A and a shim interface (devn-tap, enN) on side B, with real ping
and iperf3 through the stack. The files are read by scapy and by tcpdump;
a capture client that never reads costs the traffic nothing."""

import ctypes
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time

import pytest
from scapy.layers.inet import ICMP, TCP
from scapy.utils import PcapNgReader, rdpcap

from iopkt.bench import measure
from iopkt.ctl import control
from iopkt.lab import lab, netns
from iopkt.net.bpf import BPF_D_IN, BPF_D_OUT

import accounting
from conftest import running_lab, unique_prefix

pytestmark = pytest.mark.skipif(not shutil.which("tcpdump"), reason="needs tcpdump "
                                "(sudo make setup installs it)")


@pytest.fixture(scope="module")
def mixed():
    spec = lab.LabSpec(prefix=unique_prefix("cap"), driver_a="devnp-tap",
                       driver_b="devn-tap")
    with running_lab(spec) as lb:
        assert lb.if_b.startswith("en") and not lb.if_a.startswith("en")
        lb.ping(lb.ns_a, "198.19.0.2")              # ARP resolved outside the captures
        lb.ping(lb.ns_b, "198.18.0.2")
        yield lb


def capture_cmd(lb, ifname, *args):
    return [sys.executable, "-m", "iopkt", "capture", "--instance", lb.prefix, ifname, *args]


def wait_open(lb, n, timeout=10.0):
    deadline = time.monotonic() + timeout
    while lb.netstat()["bpf"]["open"] != n:
        assert time.monotonic() < deadline, lb.netstat()["bpf"]
        time.sleep(0.05)


def finish(p, timeout=30):
    """The capture's (returncode, stderr); SIGINT if COUNT never came."""
    try:
        _, err = p.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        p.send_signal(signal.SIGINT)
        _, err = p.communicate(timeout=10)
    return p.returncode, err


def echoes(pkts):
    """{(type, id, seq): direction} of the ICMP echoes in a capture."""
    return {(p[ICMP].type, p[ICMP].id, p[ICMP].seq): p.direction
            for p in pkts if ICMP in p and p[ICMP].type in (0, 8)}


def tcpdump_lines(path):
    r = subprocess.run(["tcpdump", "-nr", path], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    return r.stdout.splitlines()


def test_capture_files_of_ping_and_iperf3_on_native_and_shim(mixed, tmp_path):
    lb = mixed
    fa, fb = str(tmp_path / "a.pcapng"), str(tmp_path / "b.pcapng")
    n = 300
    pa = subprocess.Popen(capture_cmd(lb, lb.if_a, "-w", fa, "--pcapng", "-c", str(n)),
                          stderr=subprocess.PIPE, text=True)
    pb = subprocess.Popen(capture_cmd(lb, lb.if_b, "-w", fb, "--pcapng", "-c", str(n)),
                          stderr=subprocess.PIPE, text=True)
    try:
        wait_open(lb, 2)
        r = lb.ping(lb.ns_a, "198.19.0.2", count=4)
        assert "4 received" in r.stdout, r.stdout
        measure.iperf3(lb.ns_a, lb.ns_b, "198.19.0.2", 1)
        (ca, ea), (cb, eb) = finish(pa), finish(pb)
    finally:
        for p in (pa, pb):
            if p.poll() is None:
                p.kill()
    assert ca == 0 and cb == 0, (ea, eb)
    assert ea.splitlines()[-1].startswith(f"{n} frames captured, "), ea
    assert eb.splitlines()[-1].startswith(f"{n} frames captured, "), eb
    a, b = rdpcap(fa), rdpcap(fb)
    assert len(a) == len(b) == n
    # The four echo requests and their replies, with ping's id and seqs 1..4:
    # in on A's native interface, out on B's shim interface; the replies back.
    ea_, eb_ = echoes(a), echoes(b)
    ids = {i for _, i, _ in ea_}
    assert len(ids) == 1, ea_
    pid = ids.pop()
    want_a = {**{(8, pid, s): BPF_D_IN for s in range(1, 5)},
              **{(0, pid, s): BPF_D_OUT for s in range(1, 5)}}
    want_b = {**{(8, pid, s): BPF_D_OUT for s in range(1, 5)},
              **{(0, pid, s): BPF_D_IN for s in range(1, 5)}}
    assert ea_ == want_a and eb_ == want_b
    # Offload on the native side: TCP super-frames, captured whole; the
    # shim's interface carries only what the stack segmented for it.
    big_a = [len(p) for p in a if TCP in p and len(p) > 1514]
    assert big_a and max(big_a) <= 65535 + 14, big_a[:5]
    assert any(TCP in p for p in b)
    assert max(len(p) for p in b) <= 1514
    assert all(p.sniffed_on == lb.if_a for p in a)
    # tcpdump reads both, a line per frame.
    la, lb_ = tcpdump_lines(fa), tcpdump_lines(fb)
    assert len(la) == len(a) and len(lb_) == len(b)
    assert sum("ICMP echo request, id %d, seq" % pid in x for x in la) == 4
    # tcpdump reads each TCP segment scapy found as one (its flags shown).
    for lines, pkts in ((la, a), (lb_, b)):
        assert sum(" Flags [" in x for x in lines) == sum(TCP in p for p in pkts)
    assert lb.netstat()["bpf"]["open"] == 0


def test_ipv6_and_icmpv6_frames_show_as_such(mixed):
    """ping -6 across the shim's interface: one line per frame, as tcpdump
    prints them, with scapy naming IPv6 and ICMPv6 (requests out towards
    B, replies in)."""
    lb = mixed
    assert "1 received" in lb.ping(lb.ns_a, "2001:2:0:b::2", "-6").stdout   # neighbours known
    p = subprocess.Popen(capture_cmd(lb, lb.if_b, "-c", "8"), stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
    ping = None
    try:
        wait_open(lb, 1)
        # Pings until the capture has its 8 frames: the hosts' own ARP,
        # Neighbour Discovery and MLD may take some of them.
        ping = netns.ns_popen(lb.ns_a, ["ping", "-6", "-n", "-i", "0.2", "-c", "30",
                                        "2001:2:0:b::2"], stdout=subprocess.DEVNULL)
        out, err = p.communicate(timeout=30)
    finally:
        if ping is not None:
            ping.kill()
            ping.wait()
        if p.poll() is None:
            p.kill()
            p.communicate()
    assert p.returncode == 0, err
    assert len(out.splitlines()) == 8, out
    lines = [x for x in out.splitlines() if "ICMPv6 Echo" in x]
    req = [x for x in lines if "Echo Request" in x]
    rep = [x for x in lines if "Echo Reply" in x]
    assert len(req) >= 1 and len(req) - len(rep) in (0, 1), out   # the last reply may be cut
    assert all(" Out " in x and "IPv6" in x for x in req), out
    assert all(" In " in x and "IPv6" in x for x in rep), out


# What a dual-stack host sends by itself: Neighbour Discovery (its
# reachability checks) and MLD reports.
ICMP6_OWN = ("ICMP6, neighbor solicitation", "ICMP6, neighbor advertisement",
             "ICMP6, multicast listener report")


def test_stdout_into_tcpdump_shows_the_frames(mixed):
    lb = mixed
    cmd = " ".join(capture_cmd(lb, lb.if_b, "-w", "-", "-c", "8")) + " | tcpdump -nlr -"
    p = subprocess.Popen(["sh", "-c", cmd], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         text=True)
    ping = None
    try:
        wait_open(lb, 1)
        # Pings until the capture has its 8 frames: the hosts' own IPv6
        # Neighbour Discovery may take some of them.
        ping = netns.ns_popen(lb.ns_b, ["ping", "-n", "-i", "0.2", "-c", "30", "198.18.0.2"],
                              stdout=subprocess.DEVNULL)
        out, err = p.communicate(timeout=30)
    finally:
        if ping is not None:
            ping.kill()
            ping.wait()
        if p.poll() is None:
            p.kill()
            p.communicate()
    assert p.returncode == 0, err
    lines = out.splitlines()
    req = [x for x in lines if "198.19.0.2 > 198.18.0.2: ICMP echo request" in x]
    rep = [x for x in lines if "198.18.0.2 > 198.19.0.2: ICMP echo reply" in x]
    own = [x for x in lines if any(k in x for k in ICMP6_OWN)]
    assert len(lines) == 8 and len(req) + len(rep) + len(own) == 8, out
    # In order, each request followed by its reply (the last may be cut off).
    assert [f"seq {s}," in x for s, x in enumerate(req, 1)] == [True] * len(req), out
    assert len(req) - len(rep) in (0, 1) and len(req) >= 1, out
    assert "8 frames captured, 0 dropped by a slow reader" in err, err


@pytest.mark.alone
def test_a_client_that_never_reads_drops_frames_and_ping_loses_nothing(mixed):
    """A capture on A's interface with a client that never reads while
    iperf3 crosses the stack: its bound fills, frames are dropped and
    counted, and ping every 10 ms through the same interface loses nothing
    to it: any echo lost is a drop counted on the path (on a quiet machine
    there is none). iperf3 is held at 200 Mbit/s, below what the shim side
    carries: at full rate TCP fills en0's if_snd until it drops."""
    lb = mixed
    # Before the capture opens: what it drops then moves these by its own
    # count (no other capture is open; earlier ones count in the totals).
    before, ns0 = lb.nic(lb.if_a)["counters"], lb.netstat()["bpf"]
    sock, header, _ = control.open_stream(lb.prefix, "capture", ifname=lb.if_a)
    try:
        drops = accounting.path_drops(lb)
        res = {}

        def pinger():
            res["ping"] = lb.run(lb.ns_a, ["ping", "-n", "-q", "-i", "0.01", "-c", "150",
                                           "-W", "5", "198.19.0.2"], timeout=60)
        t = threading.Thread(target=pinger)
        t.start()
        measure.iperf3(lb.ns_a, lb.ns_b, "198.19.0.2", 2, ["-b", "200M"])
        t.join(60)
        r = res["ping"]
        m = re.search(r"(\d+) packets transmitted, (\d+) received", r.stdout)
        assert m, r.stdout
        dropped = accounting.moved(drops, accounting.path_drops(lb))
        lost = int(m.group(1)) - int(m.group(2))
        assert lost <= sum(dropped.values()), (r.stdout, dropped)
        ns = lb.netstat()
        cap, = ns["captures"]
        assert cap["dropped"] > 0 and cap["captured"] > 0, cap
        assert cap["pending"] <= header["bufsize"] + 4096
        assert ns["bpf"]["dropped"] - ns0["dropped"] == cap["dropped"]
        assert ns["bpf"]["captured"] - ns0["captured"] == cap["captured"]
        # The interface's counts, read a moment later, lie between the
        # capture's then and the capture's after that (hosts keep sending).
        after = lb.nic(lb.if_a)["counters"]
        later, = lb.netstat()["captures"]
        for k in ("dropped", "captured"):
            assert cap[k] <= after[f"bpf_{k}"] - before[f"bpf_{k}"] <= later[k], (k, cap, later)
        assert ns["control"]["cut"]["unread"] == 0 and ns["bpf"]["open"] == 1
    finally:
        sock.close()
    wait_open(lb, 0)


def test_no_such_interface_is_one_line_exit_1(mixed):
    r = subprocess.run(capture_cmd(mixed, "zz9"), capture_output=True, text=True, timeout=30)
    assert r.returncode == 1
    assert r.stderr.splitlines() == [f"iopkt capture: no interface 'zz9' (interfaces: "
                                     f"{mixed.if_a}, {mixed.if_b})"]


def test_a_full_filesystem_ends_the_capture_in_one_line_with_what_was_written(mixed,
                                                                              tmp_path):
    """-w onto a 16 KiB tmpfs that fills mid-capture: exit 1, one line
    naming the file and how many whole frames it holds; the stack's
    capture is closed, and the stack forwards on."""
    lb = mixed
    libc = ctypes.CDLL(None, use_errno=True)
    mnt = str(tmp_path / "small")
    os.mkdir(mnt)
    assert libc.mount(b"tmpfs", mnt.encode(), b"tmpfs", 0, b"size=16k") == 0, \
        os.strerror(ctypes.get_errno())
    try:
        path = os.path.join(mnt, "cap.pcapng")
        p = subprocess.Popen(capture_cmd(lb, lb.if_a, "-w", path, "--pcapng"),
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        wait_open(lb, 1)
        lb.ping(lb.ns_a, "198.19.0.2", "-s", "1000", count=30)
        code, err = finish(p)
        lines = err.strip().splitlines()
        assert code == 1 and len(lines) == 2 and "Traceback" not in err, err
        whole = 0
        try:
            for _ in PcapNgReader(path):
                whole += 1
        except Exception:                   # the block the disk cut short
            pass
        assert 0 < whole < 60
        assert lines[1] == (f"iopkt capture: {path}: No space left on device; {whole} "
                            f"frames written to {path} before it"), (lines, whole)
        wait_open(lb, 0)
        assert "1 received" in lb.ping(lb.ns_a, "198.19.0.2").stdout
    finally:
        assert libc.umount2(mnt.encode(), 2) == 0


FILTERS = ["host 198.19.0.2", "net 198.18.0.0/24", "udp port 53", "icmp6",
           "tcp[tcpflags] & tcp-syn != 0"]


def test_filters_take_what_tcpdump_takes_from_the_same_traffic(mixed, tmp_path):
    """Five captures with tcpdump expressions and one of everything, all on
    A's interface at once, under pings of both families, a TCP connection
    refused and a DNS query nobody answers: in the window where all six were
    open, each filtered file holds exactly the frames tcpdump's own filter
    takes from the file of everything."""
    lb = mixed
    procs = []
    try:
        for i, expr in enumerate(["", *FILTERS]):
            procs.append(subprocess.Popen(
                capture_cmd(lb, lb.if_a, "-w", str(tmp_path / f"{i}.pcap"), *expr.split()),
                stderr=subprocess.PIPE, text=True))
        wait_open(lb, len(procs))
        t0 = time.time()
        lb.ping(lb.ns_a, "198.19.0.2", count=3)
        lb.ping(lb.ns_a, "2001:2:0:b::2", "-6", count=3)
        lb.run(lb.ns_a, [sys.executable, "-c", "import socket\ntry:\n socket.create_connection("
                         "('198.19.0.2', 9), 3)\nexcept OSError: pass"])
        lb.run(lb.ns_a, [sys.executable, "-c", "import socket; socket.socket(2, 2).sendto("
                         "b'q', ('198.19.0.2', 53))"])
        time.sleep(0.5)
        t1 = time.time()
        for p in procs:
            p.send_signal(signal.SIGINT)
        ends = [finish(p) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    for (code, err), expr in zip(ends, ["", *FILTERS], strict=True):
        assert code == 0 and ", 0 dropped by a slow reader" in err, (expr, err)

    def window(pkts):
        return [bytes(p) for p in pkts if t0 <= float(p.time) <= t1]
    for i, expr in enumerate(FILTERS, 1):
        theirs = str(tmp_path / f"tcpdump{i}.pcap")
        r = subprocess.run(["tcpdump", "-r", str(tmp_path / "0.pcap"), "-w", theirs, expr],
                           capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, r.stderr
        want = window(rdpcap(theirs))
        assert want and window(rdpcap(str(tmp_path / f"{i}.pcap"))) == want, expr
