"""IPv6 through the stack, for every driver set of the forwarding suite:
the lab is dual-stack, so real ping -6 and iperf3 -6 cross it, each
driver carrying Neighbour Discovery and forwarded packets; the receiving
host's kernel judges our frames (its checksum error counters stay put)."""

import re
import time

import pytest
from scapy.all import UDP, Ether, IPv6, raw

from iopkt.bench import measure

import accounting

A6, B6 = "2001:2:0:a::2", "2001:2:0:b::2"
STACK_A6 = "2001:2:0:a::1"


def snmp(lb, ns, key: str) -> int:
    """A counter of the host's /proc/net/snmp or snmp6 ('Tcp:InCsumErrors',
    'Udp6InCsumErrors'), read inside its namespace."""
    if ":" in key:
        proto, name = key.split(":")
        lines = [ln.split() for ln in lb.run(ns, ["cat", "/proc/net/snmp"]).stdout.splitlines()
                 if ln.startswith(proto + ":")]
        return int(lines[1][lines[0].index(name)])
    for ln in lb.run(ns, ["cat", "/proc/net/snmp6"]).stdout.splitlines():
        k, v = ln.split()
        if k == key:
            return int(v)
    raise KeyError(key)


@pytest.mark.parametrize("size", [56, 1452], ids=["small", "mtu"])
def test_ping6_crosses_the_stack(shared_lab, size):
    """1452 bytes of ICMPv6 payload make a 1500-byte IPv6 packet."""
    lb = shared_lab
    res = lb.run(lb.ns_a, ["ping", "-6", "-n", "-c", "3", "-i", "0.2", "-W", "2", "-s", str(size),
                           B6])
    assert res.returncode == 0 and " 0% packet loss" in res.stdout, res.stdout
    assert f"{size + 8} bytes from {B6}" in res.stdout


def host_mac(ns: str, ifname: str) -> str:
    from pyroute2 import NetNS
    with NetNS(ns) as n:
        return n.get_links(n.link_lookup(ifname=ifname)[0])[0].get_attr("IFLA_ADDRESS")


def test_ping6_to_the_stack_and_its_neighbour_cache(shared_lab):
    lb = shared_lab
    six0 = lb.netstat()
    res = lb.ping(lb.ns_a, STACK_A6, "-6", count=2)
    assert res.returncode == 0 and f"from {STACK_A6}" in res.stdout, res.stdout
    cache = {(e["interface"], e["address"]): e for e in lb.req("ndp")}
    e = cache[(lb.if_a, A6)]
    assert e["mac"] == host_mac(lb.ns_a, lb.host_if_a)      # host A's own
    assert e["state"] in ("REACHABLE", "STALE", "DELAY", "PROBE")
    six = lb.netstat()
    # The two echo requests were delivered to us and answered; Neighbour
    # Discovery may add deliveries of its own (Linux probes when it likes).
    assert six["ip6"]["delivered"] - six0["ip6"]["delivered"] >= 2
    assert six["icmp6"]["outhist"]["echoreply/0"] - \
        six0["icmp6"]["outhist"].get("echoreply/0", 0) == 2
    assert six["nd6"]["badhlim"] == 0 and six["nd6"]["dad_duplicated"] == 0


@pytest.mark.parametrize("reverse", [False, True], ids=["a_to_b", "b_to_a"])
def test_iperf3_tcp6_arrives_with_good_checksums(shared_lab, reverse):
    """Both ways: the receiver counts no checksum error (Linux's TCP MIB
    covers both families): partial checksums were completed, super-frames
    cut, wherever a hop could not do it."""
    lb = shared_lab
    receiver = lb.ns_a if reverse else lb.ns_b
    before = snmp(lb, receiver, "Tcp:InCsumErrors")
    res = measure.iperf3(lb.ns_a, lb.ns_b, B6, 1, ["-R"] if reverse else [])
    got = (res["end"] if reverse else res["server"]["end"])["sum_received"]["bytes"]
    assert got > 1_000_000, res["end"]
    assert snmp(lb, receiver, "Tcp:InCsumErrors") == before
    mb = lb.wait_idle_pool()
    assert mb["clusters_in_use"] == 0, mb


def test_iperf3_udp6_arrives_with_good_checksums(shared_lab):
    """UDP over IPv6 (whose checksum is never optional) A to B: what
    arrives passes B's check (Udp6InCsumErrors unchanged); the negative
    control below shows that check can fail."""
    lb = shared_lab
    before = snmp(lb, lb.ns_b, "Udp6InCsumErrors")
    drops = accounting.path_drops(lb)
    res = measure.iperf3(lb.ns_a, lb.ns_b, B6, 1, ["-u", "-b", "50M", "-l", "1400"])
    s = res["server"]["end"]["sum"]
    # Datagrams arrived (how many is the bench's), and every one lost below
    # the last seen was dropped and counted on the path.
    dropped = accounting.moved(drops, accounting.path_drops(lb))
    assert s["packets"] - s["lost_packets"] > 0, s
    assert s["lost_packets"] <= sum(dropped.values()), (s, dropped)
    assert snmp(lb, lb.ns_b, "Udp6InCsumErrors") == before


def test_udp6_with_a_wrong_checksum_is_forwarded_and_counted_by_the_receiver(shared_lab):
    """The negative control: three UDPv6 datagrams with a wrong checksum,
    written at the stack from A's side, forwarded whole (a router does not
    check a checksum it does not own): B counts exactly three."""
    lb = shared_lab
    lb.ping(lb.ns_a, B6, "-6", count=1)             # B in the stack's neighbour cache
    before = snmp(lb, lb.ns_b, "Udp6InCsumErrors")
    mac = lb.nic(lb.if_a)["mac"]
    s = lb.raw_socket(lb.ns_a, lb.state["host_if_a"])
    try:
        for i in range(3):
            s.send(raw(Ether(dst=mac, src="02:00:00:00:00:99")
                       / IPv6(src=A6, dst=B6, hlim=64)
                       / UDP(sport=4000 + i, dport=9, chksum=0xDEAD) / b"broken"))
    finally:
        s.close()
    deadline = time.monotonic() + 30
    while snmp(lb, lb.ns_b, "Udp6InCsumErrors") - before < 3 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert snmp(lb, lb.ns_b, "Udp6InCsumErrors") - before == 3


def test_a_neighbour_that_never_answers(shared_lab):
    """40 pings at 10 ms to an address on B's link that nobody holds: the
    stack solicits it three times, holds at most 16 packets meanwhile
    (the other 24 dropped and counted), then answers with Destination
    Unreachable, address unreachable (code 3); nothing stays in the pool."""
    lb = shared_lab
    ghost = "2001:2:0:b::99"
    six0 = lb.netstat()
    nd0, c0 = six0["nd6"], lb.nic(lb.if_b)["counters"]["out_discards"]
    res = lb.run(lb.ns_a, ["ping", "-6", "-n", "-c", "40", "-i", "0.01", "-W", "8", ghost])
    assert f"From {STACK_A6} icmp_seq=" in res.stdout, res.stdout
    assert "Address unreachable" in res.stdout, res.stdout
    six = lb.netstat()
    nd, c1 = six["nd6"], lb.nic(lb.if_b)["counters"]["out_discards"]
    assert nd["holdq_drops"] - nd0["holdq_drops"] == 40 - 16
    assert nd["timeouts"] - nd0["timeouts"] == 1
    assert c1.get("nd6_holdq_full", 0) - c0.get("nd6_holdq_full", 0) == 40 - 16
    assert c1.get("nd6_unresolved", 0) - c0.get("nd6_unresolved", 0) == 16
    # Each of the 16 held packets answered with address unreachable, but
    # for those the error rate limit held back (a burst of 16 at once).
    unreach = six["icmp6"]["outhist"]["unreach/3"] - six0["icmp6"]["outhist"].get("unreach/3", 0)
    toofreq = six["icmp6"]["toofreq"] - six0["icmp6"]["toofreq"]
    assert unreach >= 1 and unreach + toofreq == 16, (unreach, toofreq)
    assert (lb.if_b, ghost) not in {(e["interface"], e["address"]) for e in lb.req("ndp")}
    mb = lb.wait_idle_pool()
    assert mb["clusters_in_use"] == 0, mb


@pytest.mark.parametrize("probe", [[], ["-I"]], ids=["udp", "icmp"])
def test_traceroute6_shows_the_stack_as_the_first_hop(shared_lab, probe):
    """Hop limit 1 runs out at the stack: Time Exceeded from its address on
    A's side; then the host answers (port unreachable, or echo reply)."""
    lb = shared_lab
    before = lb.netstat()
    res = lb.run(lb.ns_a, ["traceroute", "-6", "-n", "-q", "1", "-w", "2", *probe, B6],
                 check=True)
    hops = [ln.split()[:2] for ln in res.stdout.splitlines()[1:]]
    assert hops == [["1", STACK_A6], ["2", B6]], res.stdout + lb.evidence(before)


def test_packet_too_big_teaches_the_sender_the_path_mtu(make_lab):
    """The stack never fragments: a 1500-byte packet for a 1400-byte link
    is answered with Packet Too Big, mtu=1400: ping says so, tracepath
    learns the path MTU."""
    lb = make_lab()
    lb.req("ifconfig", ifname=lb.if_b, mtu=1400)
    six0 = lb.netstat()
    res = lb.run(lb.ns_a, ["ping", "-6", "-n", "-c", "2", "-i", "0.3", "-W", "2", "-s", "1452",
                           "-M", "do", B6])
    assert re.search(r"(Packet too big|mtu[= ]1400)", res.stdout, re.I), res.stdout
    six = lb.netstat()
    # The first echo request was too big; the second too only if it left
    # before A heard the answer (a busy machine), else A kept it (local
    # error). Each answered, but for what the error rate limit held back.
    toobig = six["ip6"]["toobig"] - six0["ip6"]["toobig"]
    sent = six["icmp6"]["outhist"].get("toobig/0", 0) - \
        six0["icmp6"]["outhist"].get("toobig/0", 0)
    assert 1 <= toobig <= 2 and sent >= 1, (toobig, sent)
    assert sent + six["icmp6"]["toofreq"] - six0["icmp6"]["toofreq"] == toobig
    res = lb.run(lb.ns_a, ["tracepath", "-6", "-n", B6], check=True)
    assert "Resume: pmtu 1400 hops 2" in res.stdout, res.stdout
