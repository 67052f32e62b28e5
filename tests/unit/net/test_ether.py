"""iopkt.ether: input classification and discards, output framing."""

import pytest
from scapy.compat import raw
from scapy.layers.inet import ICMP, IP, UDP
from scapy.layers.inet6 import IPv6
from scapy.layers.l2 import ARP, Ether

from iopkt.kern.mbuf import M_BCAST, M_MCAST, M_PKTHDR
from iopkt.net.ether import ETHERTYPE_IP, ether_header, ether_output_frame, mac_aton, mac_ntoa
from iopkt.net.ifnet import IFF_PROMISC, IFF_RUNNING, IN_DISCARD_REASONS

from fakenet import Router, aton, fake_if, inject, take

OTHER_MAC = "02:cc:cc:cc:cc:cc"


@pytest.fixture
def ifp(stack):
    ifp = fake_if(stack, 0, "02:00:00:00:00:01", "10.0.0.1")
    seen = ifp.seen = []

    def ip_input(pkts):                     # what ether_input hands up
        for m in pkts:
            seen.append((m.tobytes(), m.flags))
            stack.pool.freem(m)

    ifp.ip_input = ip_input
    return ifp


def discards(ifp):
    return {k: v for k, v in ifp.in_discards.items() if v}


def test_counters_start_at_zero(ifp):
    assert set(ifp.in_discards) == set(IN_DISCARD_REASONS)
    assert discards(ifp) == {}


def test_unicast_to_us_goes_up_without_link_header(ifp):
    pkt = raw(IP(src="10.0.0.2", dst="10.0.0.1") / UDP())
    frame = raw(Ether(dst=ifp.mac_str(), src=OTHER_MAC, type=ETHERTYPE_IP) / pkt)
    inject(ifp, frame)
    assert [b for b, _ in ifp.seen] == [pkt]
    assert (ifp.ipackets, ifp.ibytes, ifp.imcasts, ifp.ierrors) == (1, len(frame), 0, 0)


def test_unicast_to_another_mac_dropped_not_ours(ifp):
    inject(ifp, Ether(dst=OTHER_MAC, src="02:dd:00:00:00:01") / IP() / UDP())
    assert ifp.seen == []
    assert discards(ifp) == {"not_ours": 1}
    assert ifp.ierrors == 1 and ifp.ipackets == 1


def test_promiscuous_accepts_other_mac(ifp):
    ifp.flags |= IFF_PROMISC
    inject(ifp, Ether(dst=OTHER_MAC, src="02:dd:00:00:00:01") / IP() / UDP())
    assert len(ifp.seen) == 1 and discards(ifp) == {}


def test_runt(ifp):
    inject(ifp, b"\x02\x00\x00\x00\x00\x01abcd")          # 10 bytes
    assert discards(ifp) == {"runt": 1}
    assert ifp.ierrors == 1 and ifp.ipackets == 1 and ifp.ibytes == 0


def test_header_split_over_a_chain_is_pulled_up(ifp, stack):
    frame = raw(Ether(dst=ifp.mac_str(), src=OTHER_MAC) / IP() / UDP())
    m = stack.pool.from_bytes(frame[:6])
    stack.pool.cat(m, stack.pool.from_bytes(frame[6:]))
    m.rcvif = ifp
    ifp.if_input(ifp, [m])
    assert len(ifp.seen) == 1 and ifp.seen[0][0] == frame[14:]
    assert discards(ifp) == {}


@pytest.mark.parametrize("etype", [0x88B5, 0x88CC])
def test_unknown_ethertype(ifp, etype):
    inject(ifp, Ether(dst=ifp.mac_str(), src=OTHER_MAC, type=etype) / (b"x" * 46))
    assert discards(ifp) == {"unknown_ethertype": 1}
    assert ifp.noproto == 1 and ifp.ierrors == 0
    assert ifp.seen == []


def test_broadcast_counted_in_imcasts_and_flagged(ifp):
    inject(ifp, Ether(dst="ff:ff:ff:ff:ff:ff", src=OTHER_MAC) / IP() / UDP())
    assert ifp.imcasts == 1 and len(ifp.seen) == 1
    assert ifp.seen[0][1] & M_BCAST


def test_multicast_counted_in_imcasts_and_flagged(ifp):
    inject(ifp, Ether(dst="01:00:5e:00:00:01", src=OTHER_MAC) / IP(dst="224.0.0.1") / UDP())
    assert ifp.imcasts == 1
    flags = ifp.seen[0][1]
    assert flags & M_MCAST and not flags & M_BCAST


def test_interface_down_discards(ifp, stack):
    stack.if_down(ifp)
    inject(ifp, Ether(dst=ifp.mac_str(), src=OTHER_MAC) / IP() / UDP())
    assert discards(ifp) == {"down": 1}
    assert ifp.seen == [] and ifp.ipackets == 1


def test_burst_of_mixed_frames(ifp):
    good = Ether(dst=ifp.mac_str(), src=OTHER_MAC) / IP() / UDP()
    inject(ifp, good, Ether(dst=OTHER_MAC) / IP(), b"short", good,
           Ether(dst=ifp.mac_str(), type=0x88B5) / b"zz")
    assert len(ifp.seen) == 2
    assert discards(ifp) == {"not_ours": 1, "runt": 1, "unknown_ethertype": 1}
    assert ifp.ipackets == 5


def family_frames(ifp):
    """An IPv4, an IPv6 and an ARP frame for `ifp`, whose IPv6 and ARP
    input free what they get."""
    ifp.ip6_input = lambda pkts: [ifp.stack.pool.freem(m) for m in pkts]
    ifp.arp_input = ifp.stack.pool.freem
    me = ifp.mac_str()
    return (Ether(dst=me, src=OTHER_MAC) / IP() / UDP(),
            Ether(dst=me, src=OTHER_MAC) / IPv6() / UDP(),
            Ether(dst=me, src=OTHER_MAC) / ARP())


def test_accepted_frames_are_counted_by_family(ifp):
    v4, v6, arp = family_frames(ifp)
    inject(ifp, v4, v6, v6, arp, v4, v4, Ether(dst=OTHER_MAC) / IPv6(),
           Ether(dst=ifp.mac_str(), type=0x88B5) / b"zz")
    assert (ifp.ipackets_inet, ifp.ipackets_inet6, ifp.ipackets_arp) == (3, 2, 1)
    assert ifp.counters()["families"] == {"inet": {"ipackets": 3, "opackets": 0},
                                          "inet6": {"ipackets": 2, "opackets": 0},
                                          "arp": {"ipackets": 1, "opackets": 0}}


def test_output_is_counted_by_family(net, stack):
    from iopkt.net.ether import ETHERTYPE_ARP, ETHERTYPE_IPV6
    ms = [stack.pool.from_bytes(raw(IP(src="10.0.1.1", dst=Router.H1) / ICMP()))
          for _ in range(3)]
    net.if1.if_output(net.if1, ms, aton(Router.H1))
    for et in (ETHERTYPE_IPV6, ETHERTYPE_IPV6, ETHERTYPE_ARP, ETHERTYPE_IP):
        ether_output_frame(net.if1, stack.pool.from_bytes(b"x" * 40),
                           ether_header(b"\x02" * 6, net.if1.lladdr, et))
    f = net.if1.counters()["families"]
    assert {k: v["opackets"] for k, v in f.items()} == {"inet": 4, "inet6": 2, "arp": 1}


# -- output -------------------------------------------------------------------

def test_mac_helpers():
    assert mac_aton("02:00:0a:ff:10:01") == bytes([2, 0, 10, 255, 16, 1])
    assert mac_ntoa(b"\x02\x00\x0a\xff\x10\x01") == "02:00:0a:ff:10:01"
    with pytest.raises(ValueError):
        mac_aton("02:00:0a")


def test_ether_output_uses_leading_space(net, stack):
    pkt = raw(IP(src="10.0.1.1", dst=Router.H1) / ICMP())
    m = stack.pool.from_bytes(pkt)
    net.if1.if_output(net.if1, [m], aton(Router.H1))
    assert stack.pool.hiwat == 1            # no second cluster was needed
    (f,) = take(net.if1)
    assert (f.dst, f.src, f.type) == (Router.H1_MAC, Router.MAC1, ETHERTYPE_IP)
    assert raw(f.payload) == pkt


def test_ether_output_without_leading_space_prepends_mbuf(net, stack):
    pkt = raw(IP(src="10.0.1.1", dst=Router.H1) / ICMP())
    m = stack.pool.from_bytes(pkt, headroom=0)
    net.if1.if_output(net.if1, [m], aton(Router.H1))
    (f,) = take(net.if1)
    assert f.dst == Router.H1_MAC and raw(f.payload) == pkt


@pytest.fixture
def r6(stack, clock):
    from net6 import Router6
    return Router6(stack, clock)


def test_ether_output6_sends_through_a_usable_neighbour_in_the_packets_leading_space(r6, stack):
    from scapy.layers.inet6 import IPv6

    from iopkt.net.ether import ETHERTYPE_IPV6
    from iopkt.netinet6.in6 import aton6
    from iopkt.netinet6.nd6 import ND_REACHABLE, NdEntry
    h1 = aton6("2001:2:0:b::2")
    ln = r6.if1.nd6info[h1] = NdEntry(h1, r6.if1)
    ln.mac = mac_aton(Router.H1_MAC)
    ln.hdr = ether_header(ln.mac, r6.if1.lladdr, ETHERTYPE_IPV6)
    ln.set_state(ND_REACHABLE, 1e9)
    pkts = [raw(IPv6(src="2001:2:0:b::1", dst="2001:2:0:b::2", hlim=i) / UDP()) for i in (1, 2)]
    before = r6.if1.opackets_inet6                  # the DAD probes
    calls = []
    transmit = r6.if1.if_transmit
    r6.if1.if_transmit = lambda ifp, ms: (calls.append(len(ms)), transmit(ifp, ms))
    r6.if1.if_output6(r6.if1, [stack.pool.from_bytes(p) for p in pkts], h1)
    assert calls == [2]                             # the burst goes down as one
    out = take(r6.if1)
    assert [(f.dst, f.src, f.type, raw(f.payload)) for f in out] == [
        (Router.H1_MAC, Router.MAC1, ETHERTYPE_IPV6, p) for p in pkts]
    assert r6.if1.opackets_inet6 - before == 2


def test_ether_output6_without_a_usable_neighbour_solicits_and_holds(r6, stack):
    from scapy.layers.inet6 import ICMPv6ND_NS, IPv6

    from iopkt.netinet6.in6 import aton6
    h1 = aton6("2001:2:0:b::2")
    m = stack.pool.from_bytes(raw(IPv6(src="2001:2:0:b::1", dst="2001:2:0:b::2") / UDP()))
    before = r6.if1.opackets_inet6                  # the DAD probes
    r6.if1.if_output6(r6.if1, [m], h1)
    (ns,) = take(r6.if1)
    assert ns[ICMPv6ND_NS].tgt == "2001:2:0:b::2"
    assert [len(e.holdq) for e in r6.if1.nd6info.values()] == [1]
    assert r6.if1.opackets_inet6 - before == 1      # the NS; the held packet is not out yet


def test_ether_output6_on_an_interface_not_running_drops_down(r6, stack):
    from scapy.layers.inet6 import IPv6

    from iopkt.net.ether import ETHERTYPE_IPV6
    from iopkt.netinet6.in6 import aton6
    from iopkt.netinet6.nd6 import ND_REACHABLE, NdEntry
    r6.if1.flags &= ~IFF_RUNNING
    inuse = stack.pool.in_use
    ms = [stack.pool.from_bytes(raw(IPv6(dst="2001:2:0:b::2") / UDP())) for _ in range(2)]
    r6.if1.if_output6(r6.if1, ms, aton6("2001:2:0:b::2"))
    assert r6.if1.sent == [] and r6.if1.out_discards["down"] == 2 and r6.if1.oerrors == 2
    assert stack.pool.in_use == inuse and r6.if1.nd6info == {}
    # A neighbour usable or not: an interface that is not running sends nothing.
    h1 = aton6("2001:2:0:b::2")
    ln = r6.if1.nd6info[h1] = NdEntry(h1, r6.if1)
    ln.mac = mac_aton(Router.H1_MAC)
    ln.hdr = ether_header(ln.mac, r6.if1.lladdr, ETHERTYPE_IPV6)
    ln.set_state(ND_REACHABLE, 1e9)
    r6.if1.if_output6(r6.if1, [stack.pool.from_bytes(raw(IPv6(dst="2001:2:0:b::2")))], h1)
    assert r6.if1.sent == [] and r6.if1.out_discards["down"] == 3
    assert stack.pool.in_use == inuse


def test_ether_output_not_running_discards(net, stack):
    net.if1.flags &= ~IFF_RUNNING
    m = stack.pool.from_bytes(raw(IP(dst=Router.H1)))
    net.if1.if_output(net.if1, [m], aton(Router.H1))
    assert net.if1.sent == [] and net.if1.out_discards["down"] == 1
    assert net.if1.oerrors == 1


def test_ether_header():
    assert ether_header(b"\xff" * 6, b"\x02" * 6, 0x0806) == b"\xff" * 6 + b"\x02" * 6 + b"\x08\x06"


def test_external_storage_must_be_a_bytearray(stack):
    # ether_input relies on bytearray.startswith; a memoryview is refused
    # where it is handed in, not deep in the input path.
    with pytest.raises(TypeError, match="bytearray"):
        stack.pool.get_ext(memoryview(bytearray(64)), 0, 64, lambda a: None, "x")
    assert stack.pool.ext_in_use == 0


# -- address helpers: what a user sees when a MAC is mistyped --------------------

def test_mac_aton_names_the_bad_address():
    for bad in ("02:00:0a", "02:00:0a:ff:10:01:07", "02-00-0a-ff-10-01"):
        with pytest.raises(ValueError, match=f"^bad MAC address '{bad}'$"):
            mac_aton(bad)
    assert mac_aton("ff:FF:00:0a:10:9") == bytes([255, 255, 0, 10, 16, 9])


def test_ether_header_is_dst_src_type_in_network_order():
    h = ether_header(bytearray(b"\x01" * 6), memoryview(b"\x02" * 6), 0x86DD)
    assert type(h) is bytes and h == b"\x01" * 6 + b"\x02" * 6 + b"\x86\xdd"


# -- input counters: every frame of every burst counted once ---------------------

def test_input_counters_accumulate_over_bursts(ifp):
    pkt = raw(IP(src="10.0.0.2", dst="10.0.0.1") / UDP())
    frame = raw(Ether(dst=ifp.mac_str(), src=OTHER_MAC, type=ETHERTYPE_IP) / pkt)
    inject(ifp, frame)
    inject(ifp, frame, frame)
    assert [b for b, _ in ifp.seen] == [pkt] * 3
    assert (ifp.ipackets, ifp.ibytes, ifp.imcasts) == (3, 3 * len(frame), 0)


def test_every_multicast_and_broadcast_frame_counts_in_imcasts(ifp):
    bcast = Ether(dst="ff:ff:ff:ff:ff:ff", src=OTHER_MAC) / IP() / UDP()
    mcast = Ether(dst="01:00:5e:00:00:01", src=OTHER_MAC) / IP(dst="224.0.0.1") / UDP()
    inject(ifp, bcast, mcast)
    inject(ifp, mcast)
    assert ifp.imcasts == 3 and ifp.ipackets == 3
    assert [flags for _, flags in ifp.seen] == [M_PKTHDR | M_BCAST, M_PKTHDR | M_MCAST,
                                                M_PKTHDR | M_MCAST]


def test_unicast_to_us_carries_no_link_broadcast_flag(ifp):
    inject(ifp, Ether(dst=ifp.mac_str(), src=OTHER_MAC) / IP() / UDP())
    assert [flags for _, flags in ifp.seen] == [M_PKTHDR]


def test_interface_down_discards_and_counts_each_frame_of_the_burst(ifp, stack):
    stack.if_down(ifp)
    frame = Ether(dst=ifp.mac_str(), src=OTHER_MAC) / IP() / UDP()
    inject(ifp, frame, frame)
    inject(ifp, frame)
    assert discards(ifp) == {"down": 3}
    assert (ifp.ipackets, ifp.ibytes, ifp.ierrors) == (3, 0, 3)
    assert ifp.seen == [] and stack.pool.in_use == 0


def test_frame_for_us_and_one_for_another_mac_in_one_burst(ifp):
    # The frame for another MAC is dropped; the one behind it still goes up.
    pkt = raw(IP(src="10.0.0.2", dst="10.0.0.1") / UDP())
    other = Ether(dst=OTHER_MAC, src="02:dd:00:00:00:01") / IP() / UDP()
    inject(ifp, other, Ether(dst=ifp.mac_str(), src=OTHER_MAC, type=ETHERTYPE_IP) / pkt)
    assert [b for b, _ in ifp.seen] == [pkt]
    assert discards(ifp) == {"not_ours": 1}
    assert (ifp.ipackets, ifp.ierrors, ifp.noproto) == (2, 1, 0)


def test_arp_frame_is_handed_to_arp_without_its_link_header(ifp):
    got = []

    def arp_input(m):
        got.append((m.tobytes(), m.len, m.pkt_len))
        ifp.stack.pool.freem(m)

    ifp.arp_input = arp_input
    arp = b"\x00\x01\x08\x00\x06\x04\x00\x01" + b"\x11" * 20
    inject(ifp, Ether(dst="ff:ff:ff:ff:ff:ff", src=OTHER_MAC, type=0x0806) / arp)
    assert got == [(arp, 28, 28)] and ifp.seen == []
    assert discards(ifp) == {}


def test_ethertype_is_read_big_endian(ifp):
    # 0x0008 is not IPv4 (0x0800), 0x0608 not ARP (0x0806)
    for etype in (0x0008, 0x0608, 0x0900, 0x0801):
        inject(ifp, Ether(dst=ifp.mac_str(), src=OTHER_MAC, type=etype) / IP())
    assert ifp.seen == []
    assert discards(ifp) == {"unknown_ethertype": 4}


# -- a header split over mbufs: pulled up if it is all there -----------------------

def test_header_only_frame_split_over_a_chain_is_not_a_runt(ifp, stack):
    frame = raw(Ether(dst=ifp.mac_str(), src=OTHER_MAC, type=0x88B5))
    assert len(frame) == 14
    m = stack.pool.from_bytes(frame[:6])
    stack.pool.cat(m, stack.pool.from_bytes(frame[6:]))
    m.rcvif = ifp
    ifp.if_input(ifp, [m])
    assert discards(ifp) == {"unknown_ethertype": 1}
    assert (ifp.ipackets, ifp.ibytes) == (1, 14)


def test_split_header_with_the_pool_empty_is_dropped_as_nobufs(ifp, stack):
    frame = raw(Ether(dst=ifp.mac_str(), src=OTHER_MAC) / IP() / UDP())
    pool = stack.pool
    # The first 6 bytes sit at the very end of their cluster, so making the
    # header contiguous needs a fresh cluster: there is none.
    m = pool.from_bytes(frame[:6])
    m.off = m.size - 6
    m.buf[m.off:m.size] = frame[:6]
    pool.cat(m, pool.from_bytes(frame[6:]))
    m.rcvif = ifp
    held = []
    while (x := pool.get()) is not None:
        held.append(x)
    try:
        ifp.if_input(ifp, [m])
    finally:
        for x in held:
            pool.freem(x)
    assert ifp.seen == []
    assert discards(ifp) == {"nobufs": 1}
    assert (ifp.iqdrops, ifp.ierrors, ifp.ipackets, ifp.ibytes) == (1, 0, 1, 0)
    assert pool.in_use == 0


# -- output: the leading space, else a new mbuf in front ------------------------------

def test_exactly_a_header_of_leading_space_is_enough(net, stack):
    pkt = raw(IP(src="10.0.1.1", dst=Router.H1) / ICMP())
    m = stack.pool.from_bytes(pkt, headroom=14)
    net.if1.if_output(net.if1, [m], aton(Router.H1))
    assert stack.pool.hiwat == 1
    (f,) = take(net.if1)
    assert (f.dst, f.src, f.type) == (Router.H1_MAC, Router.MAC1, ETHERTYPE_IP)
    assert raw(f.payload) == pkt


def test_output_burst_mixing_room_and_no_room(net, stack):
    pkts = [raw(IP(src="10.0.1.1", dst=Router.H1, id=i) / ICMP()) for i in range(3)]
    ms = [stack.pool.from_bytes(pkts[0], headroom=0), stack.pool.from_bytes(pkts[1]),
          stack.pool.from_bytes(pkts[2], headroom=0)]
    net.if1.if_output(net.if1, ms, aton(Router.H1))
    out = take(net.if1)
    assert [(f.dst, f.src, f.type) for f in out] == \
        [(Router.H1_MAC, Router.MAC1, ETHERTYPE_IP)] * 3
    assert [raw(f.payload) for f in out] == pkts
    assert net.if1.oerrors == 0


def test_no_room_and_no_mbuf_is_a_txerror_and_the_rest_still_go(net, stack):
    pool = stack.pool
    pkts = [raw(IP(src="10.0.1.1", dst=Router.H1, id=i) / ICMP()) for i in range(2)]
    ms = [pool.from_bytes(pkts[0], headroom=0), pool.from_bytes(pkts[1])]
    held = []
    while (x := pool.get()) is not None:
        held.append(x)
    try:
        net.if1.if_output(net.if1, ms, aton(Router.H1))
    finally:
        for x in held:
            pool.freem(x)
    (f,) = take(net.if1)
    assert raw(f.payload) == pkts[1] and f.dst == Router.H1_MAC
    assert net.if1.out_discards["txerror"] == 1 and net.if1.oerrors == 1
    assert pool.in_use == 0


def test_not_running_unresolved_next_hop_is_discarded_not_resolved(router, stack):
    router.if1.flags &= ~IFF_RUNNING
    pkts = [stack.pool.from_bytes(raw(IP(dst=Router.H1, id=i))) for i in range(2)]
    router.if1.if_output(router.if1, pkts, aton(Router.H1))
    assert router.if1.sent == [] and router.if1.llinfo == {}
    assert router.if1.out_discards["down"] == 2 and router.if1.oerrors == 2
    assert stack.arp.stats["txrequests"] == 0 and stack.pool.in_use == 0


def test_resolved_next_hop_transmits_on_this_interface_with_every_packet(net, stack):
    # One call to the driver for the whole burst, each mbuf's lengths
    # grown by the header.
    got = []

    def transmit(ifp, pkts):
        got.append((ifp, [(m.tobytes(), m.len, m.pkt_len) for m in pkts]))
        for m in pkts:
            stack.pool.freem(m)

    net.if1.if_transmit = transmit
    pkts = [raw(IP(src="10.0.1.1", dst=Router.H1, id=i) / ICMP()) for i in range(2)]
    net.if1.if_output(net.if1, [stack.pool.from_bytes(p) for p in pkts], aton(Router.H1))
    (ifp, frames), = got
    assert ifp is net.if1
    assert [raw(Ether(b).payload) for b, _, _ in frames] == pkts
    assert [(n, total) for _, n, total in frames] == [(14 + len(p), 14 + len(p)) for p in pkts]


# -- ether_output_frame: one frame with any header ------------------------------------

def test_output_frame_counts_multicast_headers_in_omcasts(net, stack):
    ifp = net.if1
    bcast = ether_header(b"\xff" * 6, ifp.lladdr, 0x0806)
    ucast = ether_header(mac_aton(Router.H1_MAC), ifp.lladdr, 0x0806)
    mcast = ether_header(mac_aton("01:00:5e:00:00:05"), ifp.lladdr, 0x0800)
    for hdr in (bcast, ucast, mcast, bcast):
        ether_output_frame(ifp, stack.pool.from_bytes(b"x" * 28), hdr)
    assert [b[:14] for b in ifp.sent] == [bcast, ucast, mcast, bcast]
    assert [b[14:] for b in ifp.sent] == [b"x" * 28] * 4
    assert ifp.omcasts == 3


def test_output_frame_drops_the_link_broadcast_flag_of_what_came_in(net, stack):
    flags = []

    def transmit(ifp, pkts):
        for m in pkts:
            flags.append(m.flags)
            stack.pool.freem(m)

    net.if1.if_transmit = transmit
    m = stack.pool.from_bytes(b"y" * 28)
    m.flags |= M_BCAST | M_MCAST                 # as a received broadcast would be
    ether_output_frame(net.if1, m, ether_header(mac_aton(Router.H1_MAC), net.if1.lladdr, 0x0806))
    assert flags == [M_PKTHDR]
    assert net.if1.omcasts == 0


def test_output_frame_without_room_or_mbuf_is_a_txerror(net, stack):
    pool = stack.pool
    m = pool.from_bytes(b"z" * 28, headroom=0)
    held = []
    while (x := pool.get()) is not None:
        held.append(x)
    try:
        ether_output_frame(net.if1, m, ether_header(b"\xff" * 6, net.if1.lladdr, 0x0806))
    finally:
        for x in held:
            pool.freem(x)
    assert net.if1.sent == []
    assert net.if1.out_discards["txerror"] == 1 and net.if1.oerrors == 1
    assert net.if1.omcasts == 0 and pool.in_use == 0


# -- the family counters add up over bursts ------------------------------------------

def test_input_family_counters_add_up_over_bursts(ifp):
    v4, v6, arp = family_frames(ifp)
    inject(ifp, v4, v4, v6, arp)
    inject(ifp, v6, arp, v4, v6)
    assert (ifp.ipackets_inet, ifp.ipackets_inet6, ifp.ipackets_arp) == (3, 3, 2)
    assert ifp.ipackets == 8


def test_output_family_counters_add_up_over_bursts_and_frames(net, stack):
    from iopkt.net.ether import ETHERTYPE_ARP, ETHERTYPE_IPV6
    ifp = net.if1
    for n in (2, 1):
        ifp.if_output(ifp, [stack.pool.from_bytes(raw(IP(src="10.0.1.1", dst=Router.H1)
                                                      / ICMP())) for _ in range(n)],
                      aton(Router.H1))
    for et in (ETHERTYPE_ARP, ETHERTYPE_IP, ETHERTYPE_ARP, ETHERTYPE_IPV6):
        ether_output_frame(ifp, stack.pool.from_bytes(b"x" * 40),
                           ether_header(b"\x02" * 6, ifp.lladdr, et))
    assert (ifp.opackets_inet, ifp.opackets_inet6, ifp.opackets_arp) == (4, 1, 2)
    assert [int.from_bytes(b[12:14], "big") for b in ifp.sent] == [
        ETHERTYPE_IP] * 3 + [ETHERTYPE_ARP, ETHERTYPE_IP, ETHERTYPE_ARP, ETHERTYPE_IPV6]


# -- the work done: no pullup or prepend call where the first mbuf suffices ----------

def counting(monkeypatch, pool, name) -> list:
    """Count the calls of pool.`name` (still doing their work)."""
    calls = []
    real = getattr(pool, name)

    def spy(m, n):
        calls.append(n)
        return real(m, n)

    monkeypatch.setattr(pool, name, spy)
    return calls


def test_a_header_exactly_filling_the_first_mbuf_needs_no_pullup(ifp, stack, monkeypatch):
    pkt = raw(IP(src="10.0.0.2", dst="10.0.0.1") / UDP())
    frame = raw(Ether(dst=ifp.mac_str(), src=OTHER_MAC, type=ETHERTYPE_IP) / pkt)
    m = stack.pool.from_bytes(frame[:14])
    stack.pool.cat(m, stack.pool.from_bytes(frame[14:]))
    m.rcvif = ifp
    calls = counting(monkeypatch, stack.pool, "pullup")
    ifp.if_input(ifp, [m])
    assert [b for b, _ in ifp.seen] == [pkt]
    assert calls == []


def test_exactly_a_header_of_leading_space_is_written_in_place(net, stack, monkeypatch):
    pkt = raw(IP(src="10.0.1.1", dst=Router.H1) / ICMP())
    m = stack.pool.from_bytes(pkt, headroom=14)
    calls = counting(monkeypatch, stack.pool, "prepend")
    net.if1.if_output(net.if1, [m], aton(Router.H1))
    (f,) = take(net.if1)
    assert (f.dst, raw(f.payload)) == (Router.H1_MAC, pkt)
    assert calls == []
    m = stack.pool.from_bytes(pkt, headroom=13)         # one byte short: the slow path
    net.if1.if_output(net.if1, [m], aton(Router.H1))
    assert raw(take(net.if1)[0].payload) == pkt
    assert calls == [14]
