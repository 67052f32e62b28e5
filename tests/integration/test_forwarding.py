"""Real traffic through the stack: ping, iperf3, ICMP errors, bad frames.

Each test runs against every driver set in DRIVER_SETS (conftest.py), over
TAPs and over veth pairs (the AF_PACKET drivers), in a lab shared by the
module, and asserts counter deltas it caused itself.
"""

import json
import re
from datetime import datetime, timedelta, timezone

from scapy.all import IP, UDP, Ether, raw

from iopkt.bench import measure

import accounting
from tcpstream import tcp_stream


def fwd(lb):
    return lb.netstat()["ip"]["forward"]


def outhist(lb):
    return lb.netstat()["icmp"]["outhist"]


def test_ping_both_ways(shared_lab):
    lb = shared_lab
    lb.ping(lb.ns_a, "198.19.0.2")          # resolve ARP outside the count
    lb.ping(lb.ns_b, "198.18.0.2")
    before = fwd(lb)
    a = lb.ping(lb.ns_a, "198.19.0.2", count=3)
    b = lb.ping(lb.ns_b, "198.18.0.2", count=3)
    assert a.returncode == 0 and "3 received" in a.stdout, a.stdout
    assert b.returncode == 0 and "3 received" in b.stdout, b.stdout
    assert "ttl=63" in a.stdout                  # one router hop
    # 3 requests + 3 replies each way, every one forwarded once
    assert fwd(lb) - before == 12


def test_ping_the_stack(shared_lab):
    lb = shared_lab
    r = lb.ping(lb.ns_a, "198.18.0.1", count=2)
    assert "2 received" in r.stdout and "ttl=64" in r.stdout, r.stdout
    r = lb.ping(lb.ns_a, "198.19.0.1", count=1)   # the far interface, also ours
    assert "1 received" in r.stdout, r.stdout


def test_iperf3_tcp_complete(shared_lab):
    # Not a rate test: a fixed amount, whatever time a loaded machine takes.
    lb = shared_lab
    n = 40 * 1024 * 1024
    res = measure.iperf3(lb.ns_a, lb.ns_b, "198.19.0.2", 0, ["-n", str(n)], timeout=120)
    sent = res["end"]["sum_sent"]["bytes"]
    got = res["server"]["end"]["sum_received"]["bytes"]
    assert n <= sent <= n + 128 * 1024, res["end"]["sum_sent"]     # whole 128 KiB writes
    # iperf3's server stops counting at the client's end message: what was
    # still in A's send buffer or B's receive buffer then is not counted.
    # Both are bounded by the namespaces' tcp_wmem and tcp_rmem maximums;
    # test_tcp_stream_arrives_intact checks every byte arrives.
    in_buffers = (accounting.tcp_buf_max(lb.ns_a, "tcp_wmem")
                  + accounting.tcp_buf_max(lb.ns_b, "tcp_rmem"))
    assert sent - in_buffers <= got <= sent, (got, sent, in_buffers)
    mb = lb.wait_idle_pool()
    assert mb["clusters_in_use"] == 0, mb
    assert mb["jumbo_in_use"] == mb["jumbo_held_ready"], mb
    assert mb["cluster_drops"] == 0 and mb["jumbo_drops"] == 0


def test_tcp_stream_arrives_intact(shared_lab):
    src, got = tcp_stream(shared_lab, 30 * 1024 * 1024)
    assert got == src
    assert got[0] == str(30 * 1024 * 1024)


def test_iperf3_udp_every_datagram_arrives_or_is_counted(shared_lab):
    # Not a loss test (the bench measures loss): on a busy machine a host's
    # socket buffer, a queue or the stack may drop, but every datagram
    # iperf3 sent either arrived or moved a drop counter on the path.
    lb = shared_lab
    before = accounting.path_drops(lb)
    res = measure.iperf3(lb.ns_a, lb.ns_b, "198.19.0.2", 1, ["-u", "-b", "20M", "-l", "1400"])
    dropped = accounting.moved(before, accounting.path_drops(lb))
    sent = res["end"]["sum_sent"]["packets"]
    # The server's view: `packets` is the highest sequence number it saw,
    # `lost_packets` the gaps below it. Datagrams after the last one seen
    # may still have been on their way when the test ended: not counted.
    srv = res["server"]["end"]["sum_received"]
    assert 0 < srv["packets"] - srv["lost_packets"] <= srv["packets"] <= sent, (sent, srv)
    assert srv["lost_packets"] <= sum(dropped.values()), (srv, dropped)
    assert lb.wait_idle_pool()["clusters_in_use"] == 0


def test_ttl_1_gets_time_exceeded(shared_lab):
    lb = shared_lab
    before = outhist(lb).get("timxceed/0", 0)
    r = lb.ping(lb.ns_a, "198.19.0.2", "-t", "1")
    assert r.returncode != 0
    assert re.search(r"From 198\.18\.0\.1 .*Time to live exceeded", r.stdout), r.stdout
    assert outhist(lb).get("timxceed/0", 0) - before == 1


def test_unrouted_gets_net_unreachable(shared_lab):
    lb = shared_lab
    before = lb.netstat()["ip"]["noroute"]
    r = lb.ping(lb.ns_a, "198.18.77.1")        # in the lab's range, no route to it
    assert re.search(r"From 198\.18\.0\.1 .*Destination Net Unreachable", r.stdout), r.stdout
    assert lb.netstat()["ip"]["noroute"] - before == 1


def test_non_df_is_fragmented_and_df_too_big_gets_frag_needed(shared_lab):
    lb = shared_lab
    lb.req("ifconfig", ifname=lb.if_b, mtu=1280)
    try:
        # Without DF first: once host A has heard "frag needed" it would
        # fragment by itself and the stack would have nothing to do.
        before = lb.netstat()["ip"]
        r = lb.ping(lb.ns_a, "198.19.0.2", "-M", "dont", "-s", "1400", count=2)
        assert "2 received" in r.stdout, r.stdout
        after = lb.netstat()["ip"]
        assert after["fragmented"] - before["fragmented"] == 2
        assert after["ofragments"] - before["ofragments"] == 4     # 1428 bytes -> 2 each
        r = lb.ping(lb.ns_a, "198.19.0.2", "-M", "do", "-s", "1400")
        assert re.search(r"From 198\.18\.0\.1 .*Frag needed and DF set \(mtu = 1280\)",
                         r.stdout), r.stdout
        assert lb.netstat()["ip"]["cantfrag"] - after["cantfrag"] == 1
    finally:
        lb.req("ifconfig", ifname=lb.if_b, mtu=1500)


def _bad_frames(dst_mac, src_mac):
    eth = Ether(dst=dst_mac, src=src_mac)
    good = raw(eth / IP(src="198.18.0.2", dst="198.19.0.2") / UDP(dport=9) / (b"x" * 32))
    badsum = bytearray(good)
    badsum[14 + 10] ^= 0xFF
    badihl = bytearray(good)
    badihl[14] = 0x44
    toolong = raw(eth / IP(src="198.18.0.2", dst="198.19.0.2", len=900) / UDP(dport=9) / b"y")
    unknown = raw(Ether(dst=dst_mac, src=src_mac, type=0x88B5) / (b"z" * 46))
    headeronly = raw(Ether(dst=dst_mac, src=src_mac, type=0x0800))
    return {"ip_badsum": bytes(badsum), "ip_badhlen": bytes(badihl),
            "ip_badlen": toolong, "unknown_ethertype": unknown,
            "ip_tooshort": headeronly}


def test_malformed_frames_dropped_and_counted_while_traffic_continues(shared_lab):
    lb = shared_lab
    nic = lb.nic(lb.if_a)
    frames = _bad_frames(nic["mac"], "02:00:00:00:00:99")
    before = nic["counters"]["in_discards"]
    before_noproto = nic["counters"]["noproto"]
    s = lb.raw_socket(lb.ns_a, lb.host_if_a)        # the host's TAP or veth end
    try:
        for f in frames.values():
            s.send(f)
    finally:
        s.close()
    r = lb.ping(lb.ns_a, "198.19.0.2", count=2)
    assert "2 received" in r.stdout, r.stdout
    after = lb.nic(lb.if_a)["counters"]
    for reason in frames:
        assert after["in_discards"][reason] - before[reason] == 1, reason
    assert after["noproto"] - before_noproto == 1
    assert lb.wait_idle_pool()["clusters_in_use"] == 0


def test_nicinfo_counters_move(shared_lab):
    lb = shared_lab
    before = lb.nic(lb.if_b)["counters"]
    lb.ping(lb.ns_a, "198.19.0.2", count=3)
    after = lb.nic(lb.if_b)["counters"]
    # The 3 echo requests out and the 3 replies in, 98 bytes each: exactly
    # 3 IPv4 packets each way. The lab is dual-stack: Linux may slip in
    # ARP probes (42 bytes) and IPv6 Neighbour Discovery or MLD (62 bytes
    # at least: an Ethernet and an IPv6 header and 8 more) of its own, and
    # the stack its own ARP requests, as many as they like; each family's
    # count says how many, and the totals must add up, frame for frame.
    for pk, by in (("opackets", "obytes"), ("ipackets", "ibytes")):
        n = {f: after["families"][f][pk] - before["families"][f][pk]
             for f in ("inet", "inet6", "arp")}
        assert n["inet"] == 3, (pk, n)
        assert after[pk] - before[pk] == sum(n.values()), (pk, n)
        six = after[by] - before[by] - 3 * 98 - 42 * n["arp"]     # IPv6 bytes
        assert 62 * n["inet6"] <= six <= 1514 * n["inet6"], (pk, n, six)


def test_one_thread_per_native_stack(shared_lab):
    info = shared_lab.req("ping")
    shim = sum(1 for i in info["interfaces"] if i.startswith("en"))
    assert info["threads"] == 1 + shim


def test_json_outputs_parse(shared_lab):
    import subprocess
    import sys
    lb = shared_lab

    def cli(*cmd):
        t0 = datetime.now(timezone.utc)
        out = subprocess.run([sys.executable, "-m", "iopkt", *cmd, "--instance", lb.prefix,
                              "--json"],
                             capture_output=True, text=True, check=True).stdout
        t1 = datetime.now(timezone.utc)
        res = json.loads(out)
        # Every --json output carries when it was taken: ISO 8601, UTC, in
        # milliseconds (cut, not rounded: at most 1 ms before t0).
        ts = datetime.strptime(res["timestamp"], "%Y-%m-%dT%H:%M:%S.%fZ").replace(
            tzinfo=timezone.utc)
        assert t0 - timedelta(milliseconds=1) <= ts <= t1, (t0, res["timestamp"], t1)
        return res
    assert [d["name"] for d in cli("nicinfo")["interfaces"]] == [lb.if_a, lb.if_b]
    one = cli("nicinfo", lb.if_b)["interfaces"]
    assert len(one) == 1 and one[0]["name"] == lb.if_b and one[0]["mtu"] == 1500
    assert {tuple(d["inet"]) for d in cli("ifconfig")["interfaces"]} == {("198.18.0.1/24",),
                                                                       ("198.19.0.1/24",)}
    # The lab's two connected networks and nothing else (IPv4: the table
    # route shows by default).
    assert {r["destination"] for r in cli("route")["routes"]} == {"198.18.0.0/24",
                                                                 "198.19.0.0/24"}
    assert cli("netstat", "-m")["clusters_total"] == 4096
    total = cli("netstat")["ip"]["total"]
    assert "1 received" in lb.ping(lb.ns_a, "198.18.0.1", count=1).stdout   # to the stack
    assert cli("netstat")["ip"]["total"] - total == 1
    assert {r["name"] for r in cli("netstat", "-i")["interfaces"]} == {lb.if_a, lb.if_b}
    lb.ping(lb.ns_a, "198.19.0.2")
    # The two hosts, the only IPv4 neighbours the lab has.
    assert {e["address"] for e in cli("arp")["neighbours"]} == {"198.18.0.2", "198.19.0.2"}
