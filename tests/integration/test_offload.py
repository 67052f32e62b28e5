"""Offload through real TAPs and namespaces: TCP super-frames across the
stack, software segmentation where the outgoing interface has no TSO (the
shim's enN, a native interface with -tso4), the MTU judged per segment,
capabilities toggled under traffic.

Checksums are judged by the receiving host's kernel (TcpInCsumErrors).
A host trusts a frame that arrives with a partial checksum, so that count
says something only about frames written without offload flags, which the
kernel checks one by one: the segments software segmentation makes leave
the stack exactly so. Each such test also sends frames with a wrong
checksum through the stack and out of the same interface, written the same
way, and sees the count move by exactly their number (the negative
control: the receiver's check can fail).
"""

import json
import re
import subprocess
import sys
import threading
import time

from pyroute2 import NetNS
from scapy.all import IP, TCP, Ether, raw

from iopkt.lab import netns

from tcpstream import tcp_stream


def snmp(lb, ns, proto="Tcp") -> dict:
    """/proc/net/snmp of a host namespace, one protocol's counters."""
    out = lb.run(ns, ["cat", "/proc/net/snmp"], check=True).stdout.splitlines()
    heads = [ln.split()[1:] for ln in out if ln.startswith(proto + ":")]
    return dict(zip(heads[0], map(int, heads[1])))


def csum_errors(lb, ns) -> int:
    return snmp(lb, ns)["InCsumErrors"]


def info(lb, ifname) -> dict:
    return lb.nic(ifname)["driver_info"]


def counters(lb, ifname) -> dict:
    return lb.nic(ifname)["counters"]


def stream(lb, nbytes: int, reverse=False) -> None:
    """`nbytes` across the lab (B -> A with reverse), arrived byte for byte."""
    src, got = tcp_stream(lb, nbytes, reverse)
    assert got == src and got[0] == str(nbytes)


def bad_checksums(lb, count=3) -> None:
    """`count` TCP segments with a wrong checksum, from host A's side of
    the wire to host B through the stack, which forwards them whole (no
    offload flags) out of the interface under test (no socket listens on
    port 9: B checks the checksum before it would answer)."""
    mac = lb.nic(lb.if_a)["mac"]
    s = lb.raw_socket(lb.ns_a, lb.state["tap_a"])
    try:
        for i in range(count):
            s.send(raw(Ether(dst=mac, src="02:00:00:00:00:99")
                       / IP(src="198.18.0.2", dst="198.19.0.2")
                       / TCP(sport=4000 + i, dport=9, flags="S", chksum=0xDEAD)))
    finally:
        s.close()


def assert_checked_by_the_receiver(lb) -> None:
    """The negative control: B counts every wrong checksum we send it."""
    before = csum_errors(lb, lb.ns_b)
    bad_checksums(lb, 3)
    deadline = time.monotonic() + 3
    while csum_errors(lb, lb.ns_b) - before < 3 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert csum_errors(lb, lb.ns_b) - before == 3


def test_native_lab_carries_superframes_both_ways(make_lab):
    lb = make_lab()                                 # offload on: the driver's default
    for ifname in (lb.if_a, lb.if_b):
        d = lb.nic(ifname)
        assert d["enabled"].endswith("<TSO4,TCP4CSUM_Rx,TCP4CSUM_Tx,UDP4CSUM_Rx,UDP4CSUM_Tx,"
                                     "TCP6CSUM_Rx,TCP6CSUM_Tx,UDP6CSUM_Rx,UDP6CSUM_Tx,TSO6>")
        assert d["driver_info"]["tun_offload"] == "CSUM,TSO4,TSO6"
    # Partial checksums go out as they came, and a host trusts them: here
    # the streams' SHA-256 is the check, not TcpInCsumErrors.
    a0, b0 = info(lb, lb.if_a), info(lb, lb.if_b)
    stream(lb, 200 * 2**20)
    stream(lb, 200 * 2**20, reverse=True)
    a1, b1 = info(lb, lb.if_a), info(lb, lb.if_b)

    def moved(d1, d0, key):
        return d1[key] - d0[key]
    # Super-frames came in on each side and went out on the other as they were.
    assert moved(a1, a0, "rx_superframes") > 500 and moved(b1, b0, "rx_superframes") > 500
    assert moved(b1, b0, "tx_superframes") == moved(a1, a0, "rx_superframes")
    assert moved(a1, a0, "tx_superframes") == moved(b1, b0, "rx_superframes")
    for ifname in (lb.if_a, lb.if_b):
        c = counters(lb, ifname)
        assert c["sw_tso"] == 0 and c["oerrors"] == 0 and c["oqdrops"] == 0
    mb = lb.wait_idle_pool()
    assert mb["clusters_in_use"] == 0 and mb["jumbo_in_use"] == 2 and mb["jumbo_drops"] == 0


def test_software_segmentation_for_a_native_interface_without_offload(make_lab):
    lb = make_lab()
    lb.req("ifconfig", ifname=lb.if_b, caps=["-tso4", "-tcp4csum"])
    assert "TSO4" not in lb.nic(lb.if_b)["enabled"]
    errs = csum_errors(lb, lb.ns_b)
    rx0 = info(lb, lb.if_a)["rx_superframes"]
    stream(lb, 100 * 2**20)
    c = counters(lb, lb.if_b)
    supers = info(lb, lb.if_a)["rx_superframes"] - rx0
    assert supers > 100 and c["sw_tso"] == supers      # every one cut here
    assert c["sw_tso_segs"] > 20 * c["sw_tso"]
    assert info(lb, lb.if_b)["tx_superframes"] == 0
    assert csum_errors(lb, lb.ns_b) == errs           # every segment checked by B: all good
    assert_checked_by_the_receiver(lb)


def test_mixed_lab_segments_for_the_shim(make_lab):
    lb = make_lab("devnp-tap", "devn-tap")          # offload on A's side; io-net on B's
    assert lb.nic(lb.if_b)["capabilities"] == "0<>"
    errs_a, errs_b = csum_errors(lb, lb.ns_a), csum_errors(lb, lb.ns_b)
    stream(lb, 40 * 2**20)
    c = counters(lb, lb.if_b)
    assert c["sw_tso"] > 10 and c["sw_tso_segs"] > 10 * c["sw_tso"]
    stream(lb, 40 * 2**20, reverse=True)
    # B -> A: A's ACKs come up with partial checksums; completed for enN.
    assert counters(lb, lb.if_b)["sw_csum"] > 100
    assert info(lb, lb.if_b)["tx_offload_leaked"] == 0      # the legacy driver saw none
    assert (csum_errors(lb, lb.ns_a), csum_errors(lb, lb.ns_b)) == (errs_a, errs_b)
    assert_checked_by_the_receiver(lb)
    mb = lb.wait_idle_pool()
    assert mb["clusters_in_use"] == 0 and mb["jumbo_in_use"] == 1


def test_offload_off_moves_wire_sized_frames(make_lab):
    lb = make_lab(offload=False)
    for ifname in (lb.if_a, lb.if_b):
        d = lb.nic(ifname)
        assert d["capabilities"] == "0<>" and d["driver_info"]["vnet_hdr"] is False
    errs = csum_errors(lb, lb.ns_b)
    stream(lb, 40 * 2**20)
    assert info(lb, lb.if_a)["rx_superframes"] == 0
    assert lb.netstat()["mbuf"]["jumbo_total"] == 0       # nobody needed one
    assert csum_errors(lb, lb.ns_b) == errs
    assert_checked_by_the_receiver(lb)


def _route_mtu(ns: str, dst: str) -> int | None:
    with NetNS(ns) as n:
        r = n.route("get", dst=dst)[0]
        metrics = r.get_attr("RTA_METRICS")
        return metrics.get_attr("RTAX_MTU") if metrics else None


def test_df_superframes_too_big_for_the_next_hop_teach_the_sender(make_lab):
    lb = make_lab()
    lb.req("ifconfig", ifname=lb.if_b, mtu=1400)
    before = lb.netstat()
    stream(lb, 20 * 2**20)
    after = lb.netstat()
    needed = after["icmp"]["outhist"].get("unreach/4", 0) - \
        before["icmp"]["outhist"].get("unreach/4", 0)
    # One error per super-frame that did not fit (some held back by the
    # rate limit), until A lowered its MSS.
    limited = after["icmp"]["ratelimited"] - before["icmp"]["ratelimited"]
    assert needed >= 1
    assert after["ip"]["cantfrag"] - before["ip"]["cantfrag"] == needed + limited
    assert _route_mtu(lb.ns_a, "198.19.0.2") == 1400       # A believed us
    assert after["ip"]["fragmented"] == before["ip"]["fragmented"]


def test_superframes_without_df_are_segmented_then_fragmented(make_lab):
    lb = make_lab()
    netns.ns_sysctl(lb.ns_a, "net/ipv4/ip_no_pmtu_disc", "1")     # TCP without DF
    lb.req("ifconfig", ifname=lb.if_b, mtu=1400)
    errs = csum_errors(lb, lb.ns_b)
    before = lb.netstat()["ip"]
    stream(lb, 20 * 2**20)
    after = lb.netstat()["ip"]
    assert after["fragmented"] - before["fragmented"] > 1000
    assert counters(lb, lb.if_b)["sw_tso"] > 10
    assert csum_errors(lb, lb.ns_b) == errs              # reassembled, then checked
    assert_checked_by_the_receiver(lb)


def test_toggling_offload_under_traffic_loses_nothing(make_lab):
    lb = make_lab()
    stop = threading.Event()
    toggles = []

    def toggle():
        words = (["-tso4"], ["tso4"], ["-tso4", "-tcp4csum"], ["tcp4csum", "tso4"],
                 ["-udp4csum"], ["udp4csum"])
        i = 0
        while not stop.is_set():
            for ifname in (lb.if_a, lb.if_b):
                lb.req("ifconfig", ifname=ifname, caps=words[i % len(words)])
            toggles.append(time.monotonic())
            i += 1
            time.sleep(0.03)

    t = threading.Thread(target=toggle)
    t.start()
    try:
        t0 = time.monotonic()
        src, got = tcp_stream(lb, 200 * 1024 * 1024)
        t1 = time.monotonic()
    finally:
        stop.set()
        t.join()
    assert sum(1 for x in toggles if t0 < x < t1) >= 6    # every state, while it ran
    assert got == src                                      # byte for byte
    for ifname in (lb.if_a, lb.if_b):
        c = counters(lb, ifname)
        assert sum(c["in_discards"].values()) == 0 and sum(c["out_discards"].values()) == 0
        assert info(lb, ifname)["tx_gso_refused"] == 0
    mb = lb.wait_idle_pool()
    assert mb["clusters_in_use"] == 0 and mb["jumbo_in_use"] == 2


def _cli(lb_prefix, *cmd, json_out=True):
    r = subprocess.run([sys.executable, "-m", "iopkt", *cmd, "--instance", lb_prefix]
                       + (["--json"] if json_out else []), capture_output=True, text=True)
    return (json.loads(r.stdout) if json_out and r.returncode == 0 else r)


def test_capabilities_from_mount_options_and_the_command_line(make_lab):
    lb = make_lab(opts_a="tso4=0,udp4csum=0,tso6=0,tcp6csum=0,udp6csum=0")
    a = _cli(lb.prefix, "ifconfig", lb.if_a)["interfaces"][0]
    assert a["capabilities"] == ("7fc80<TSO4,TCP4CSUM_Rx,TCP4CSUM_Tx,UDP4CSUM_Rx,UDP4CSUM_Tx,"
                                 "TCP6CSUM_Rx,TCP6CSUM_Tx,UDP6CSUM_Rx,UDP6CSUM_Tx,TSO6>")
    assert a["enabled"] == "c00<TCP4CSUM_Rx,TCP4CSUM_Tx>"
    r = _cli(lb.prefix, "ifconfig", lb.if_a, "tso4", "udp4csum-tx", json_out=False)
    assert r.returncode == 0, r.stderr
    assert "\tenabled=2c80<TSO4,TCP4CSUM_Rx,TCP4CSUM_Tx,UDP4CSUM_Tx>" in r.stdout
    assert info(lb, lb.if_a)["tun_offload"] == "CSUM,TSO4"
    r = _cli(lb.prefix, "ifconfig", lb.if_a, "-tso4", "-tcp4csum", "-udp4csum", json_out=False)
    assert r.returncode == 0 and "\tenabled=0<>" in r.stdout
    assert info(lb, lb.if_a)["tun_offload"] == "none"
    r = _cli(lb.prefix, "ifconfig", lb.if_a, "tso4", json_out=False)
    assert r.returncode == 1
    assert r.stderr.strip() == (f"iopkt ifconfig: {lb.if_a}: tso4 needs tcp4csum (rx and tx); "
                                "turn on tcp4csum, or turn off tso4 as well")
    r = _cli(lb.prefix, "ifconfig", lb.if_a, "ip4csum", json_out=False)
    assert r.returncode == 1 and "cannot do 300<IP4CSUM_Rx,IP4CSUM_Tx>" in r.stderr
    r = _cli(lb.prefix, "ifconfig", lb.if_a, "tcp4csum", "tso6", json_out=False)
    assert r.returncode == 1
    assert r.stderr.strip() == (f"iopkt ifconfig: {lb.if_a}: tso6 needs tcp6csum (rx and tx); "
                                "turn on tcp6csum, or turn off tso6 as well")
    assert lb.nic(lb.if_a)["enabled"] == "0<>"         # refusals changed nothing
    # The IPv6 words: TCP over IPv6 alone asks the TAP for CSUM and TSO6.
    r = _cli(lb.prefix, "ifconfig", lb.if_a, "tcp6csum", "tso6", "udp6csum-tx", json_out=False)
    assert r.returncode == 0, r.stderr
    assert "\tenabled=6c000<TCP6CSUM_Rx,TCP6CSUM_Tx,UDP6CSUM_Tx,TSO6>" in r.stdout
    assert info(lb, lb.if_a)["tun_offload"] == "CSUM,TSO6"
    text = _cli(lb.prefix, "nicinfo", lb.if_b, json_out=False).stdout
    # B's side kept the driver's defaults: every capability, all enabled;
    # no TCP crossed, so nothing was segmented.
    every = ("7fc80<TSO4,TCP4CSUM_Rx,TCP4CSUM_Tx,UDP4CSUM_Rx,UDP4CSUM_Tx,TCP6CSUM_Rx,"
             "TCP6CSUM_Tx,UDP6CSUM_Rx,UDP6CSUM_Tx,TSO6>")
    for label in ("Capabilities", "Enabled"):
        assert re.search(rf"^  {label} \.+ {re.escape(every)}$", text, re.M), text
    assert re.search(r"^  Super-frames segmented in software \.+ 0 \(0 segments\)$", text,
                     re.M), text
    text = _cli(lb.prefix, "netstat", "-m", json_out=False).stdout
    assert "2/254/256 64k jumbo clusters in use" in text


def test_lab_up_offload_off_from_the_command_line(fresh_prefix):
    r = subprocess.run([sys.executable, "-m", "iopkt", "lab", "up", "--prefix", fresh_prefix,
                        "--offload", "off", "--json"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    for d in _cli(fresh_prefix, "nicinfo")["interfaces"]:
        assert d["capabilities"] == "0<>" and d["driver_info"]["vnet_hdr"] is False
