"""ip6.py's addresses (SIOCAIFADDR_IN6 / SIOCDIFADDR_IN6): what an
address brings (its solicited-node group, its connected route, tentative
until DAD), what deleting it takes away and what it leaves for the
addresses that remain, an interface leaving, the source address chosen for
what the stack sends (a simple RFC 6724), and a fresh Ip6's state."""

import pytest
from ip6_net import resolved
from net6 import H0, H1, R0, R1, inject, na, take
from scapy.layers.inet6 import ICMPv6DestUnreach, ICMPv6EchoReply, ICMPv6EchoRequest, IPv6
from scapy.layers.l2 import Ether

from iopkt.net.ether import mac_aton
from iopkt.net.route import RTF_CONNECTED
from iopkt.netinet6.in6 import (
    ALLNODES,
    ALLROUTERS,
    IN6_IFF_AUTOCONF,
    IN6_IFF_DUPLICATED,
    IN6_IFF_TENTATIVE,
    aton6,
    linklocal,
    ntoa6,
    solicited_node,
)
from iopkt.netinet6.ip6 import IP6STAT_NAMES

from fakenet import fake_if

MAC = "02:00:00:00:00:01"
MAC_B = "02:00:00:00:01:01"


@pytest.fixture
def ifp(stack):
    return fake_if(stack, 0, MAC)


@pytest.fixture
def ifp_b(stack):
    return fake_if(stack, 1, MAC_B)


def routes(stack) -> list:
    return [(d["destination"], d["gateway"], d["flags"]) for d in stack.ip6.routes.to_list()]


def addrs(ifp) -> list:
    return [(ntoa6(ia.addr), ia.plen, ia.flags) for ia in ifp.in6_addrs]


# -- a fresh Ip6 -------------------------------------------------------------------------
def test_a_fresh_ip6_forwards_counts_nothing_and_knows_no_address(stack):
    ip6 = stack.ip6
    assert ip6.stats() == dict.fromkeys(IP6STAT_NAMES, 0)
    assert list(ip6.stats()) == list(IP6STAT_NAMES)
    assert ip6.forwarding is True
    assert ip6.local6 == {} and ip6.good_src == set() and ip6.routes.routes == []


def test_the_routing_table_is_128_bits_wide_and_speaks_ipv6(stack, ifp):
    rt = stack.ip6.routes
    rt.add(aton6("2001:db8::"), 128, 0, ifp)
    rt.add(0, 0, 0, ifp)
    assert routes(stack) == [("2001:db8::/128", "link#fk0", "UHS"), ("::/0", "link#fk0", "US")]
    assert rt.lookup(aton6("2001:db8::1")).plen == 0
    with pytest.raises(ValueError, match="prefix length 129: must be 0..128"):
        rt.add(0, 129, 0, ifp)
    with pytest.raises(ValueError, match=r"route 2001:db8::/128 exists"):
        rt.add(aton6("2001:db8::"), 128, 0, ifp)


# -- attaching, adding -----------------------------------------------------------------------
def test_ifattach_gives_the_eui64_link_local_address_tentative_and_the_groups(stack, ifp):
    stack.ip6.ifattach(ifp)
    ll = linklocal(mac_aton(MAC))
    assert addrs(ifp) == [(ntoa6(ll), 64, IN6_IFF_AUTOCONF | IN6_IFF_TENTATIVE)]
    assert ifp.in6_groups == {ALLNODES, ALLROUTERS, solicited_node(ll)}
    assert routes(stack) == []              # link-local destinations name their interface
    assert stack.ip6.local6 == {}           # not before DAD


def test_an_address_is_tentative_joins_its_groups_and_brings_its_connected_route(stack, ifp):
    ia = stack.ip6.add_address(ifp, aton6("2001:2:0:a::77"), 64, 0x100)
    assert ia is ifp.in6_addrs[0]
    assert (ia.addr, ia.plen, ia.flags) == (aton6("2001:2:0:a::77"), 64, 0x100 | IN6_IFF_TENTATIVE)
    assert ifp.in6_groups == {ALLNODES, ALLROUTERS, aton6("ff02::1:ff00:77")}
    assert routes(stack) == [("2001:2:0:a::/64", "link#fk0", "UC")]
    rt = stack.ip6.routes.routes[0]
    assert (rt.ifp, rt.gateway, rt.flags & RTF_CONNECTED) == (ifp, 0, RTF_CONNECTED)


@pytest.mark.parametrize("plen,net", [(1, "::/1"), (128, "2001:2:0:a::77/128"),
                                      (48, "2001:2::/48")])
def test_any_prefix_length_from_1_to_128_is_taken(stack, ifp, plen, net):
    stack.ip6.add_address(ifp, aton6("2001:2:0:a::77"), plen)
    assert [d["destination"] for d in stack.ip6.routes.to_list()] == [net]


@pytest.mark.parametrize("plen", [0, 129, -1])
def test_a_prefix_length_outside_1_to_128_is_refused_and_nothing_added(stack, ifp, plen):
    with pytest.raises(ValueError, match=rf"^prefix length {plen}: must be 1..128$"):
        stack.ip6.add_address(ifp, aton6("2001:2:0:a::77"), plen)
    assert ifp.in6_addrs == [] and routes(stack) == [] and ifp.in6_groups == set()


def test_a_second_address_in_the_same_prefix_shares_the_route(stack, ifp):
    stack.ip6.add_address(ifp, aton6("2001:2:0:a::1"), 64)
    stack.ip6.add_address(ifp, aton6("2001:2:0:a::2"), 64)
    assert routes(stack) == [("2001:2:0:a::/64", "link#fk0", "UC")]
    assert len(ifp.in6_addrs) == 2


def test_a_global_address_is_unique_across_interfaces(stack, ifp, ifp_b):
    stack.ip6.add_address(ifp, aton6("2001:2:0:a::1"), 64)
    for target in (ifp, ifp_b):
        with pytest.raises(ValueError,
                           match=r"^address 2001:2:0:a::1 is already on fk0$"):
            stack.ip6.add_address(target, aton6("2001:2:0:a::1"), 64)
    assert ifp_b.in6_addrs == []


def test_a_link_local_address_need_only_be_unique_on_its_link(stack, ifp, ifp_b):
    ll = aton6("fe80::1")
    stack.ip6.add_address(ifp, ll, 64)
    stack.ip6.add_address(ifp_b, ll, 64)
    with pytest.raises(ValueError, match=r"^address fe80::1 is already on fk1$"):
        stack.ip6.add_address(ifp_b, ll, 64)
    assert [len(i.in6_addrs) for i in (ifp, ifp_b)] == [1, 1]
    assert routes(stack) == []


def test_adding_an_address_forgets_the_cached_routes_and_sources(stack, clock):
    r = resolved(stack, clock)
    inject(r.if0, r.from_h0(IPv6(src=H0, dst=H1) / ICMPv6EchoRequest()))
    ip6 = stack.ip6
    assert ip6.routes.cache and ip6.good_src
    ip6.add_address(r.if1, aton6("2001:2:0:c::1"), 64)
    assert ip6.routes.cache == {} and ip6.good_src == set()


def test_an_address_that_passed_dad_is_answered_at_once_even_if_its_route_was_cached(
        stack, clock):
    # 2001:2:0:b::99 was forwarded (the route cached); once it is ours, the
    # next echo to it is answered, not forwarded.
    r = resolved(stack, clock)
    ip6 = stack.ip6
    dst = "2001:2:0:b::99"
    inject(r.if0, r.from_h0(IPv6(src=H0, dst=dst) / ICMPv6EchoRequest(seq=1)))
    take(r.if1)
    ia = ip6.add_address(r.if1, aton6(dst), 64)
    ia.flags &= ~IN6_IFF_TENTATIVE
    inject(r.if0, r.from_h0(IPv6(src=H0, dst=H1) / ICMPv6EchoRequest(seq=2)))
    take(r.if1)
    assert aton6(dst) not in ip6.local6 and ip6.routes.cache
    ip6.address_usable(r.if1, ia)
    assert ip6.local6[aton6(dst)] is r.if1
    assert ip6.routes.cache == {} and ip6.good_src == set()
    inject(r.if0, r.from_h0(IPv6(src=H0, dst=dst) / ICMPv6EchoRequest(seq=3)))
    (f,) = take(r.if0)
    assert (f[IPv6].src, f[ICMPv6EchoReply].seq) == (dst, 3) and r.if1.sent == []


# -- deleting ----------------------------------------------------------------------------------
def usable(stack, ifp, addr, plen=64):
    ia = stack.ip6.add_address(ifp, aton6(addr), plen)
    ia.flags &= ~IN6_IFF_TENTATIVE
    stack.ip6.address_usable(ifp, ia)
    return ia


def test_deleting_an_address_takes_its_group_route_and_local_entry(stack, ifp):
    stack.ip6.ifattach(ifp)
    usable(stack, ifp, "2001:2:0:a::77")
    usable(stack, ifp, "2001:2:0:c::5", 48)
    stack.ip6.good_src.add(12345)
    stack.ip6.routes.lookup(aton6("2001:2:0:c::9"))
    stack.ip6.del_address(ifp, aton6("2001:2:0:a::77"))
    ll = linklocal(mac_aton(MAC))
    assert addrs(ifp) == [(ntoa6(ll), 64, IN6_IFF_AUTOCONF | IN6_IFF_TENTATIVE),
                          ("2001:2:0:c::5", 48, 0)]
    assert ifp.in6_groups == {ALLNODES, ALLROUTERS, solicited_node(ll),
                              aton6("ff02::1:ff00:5")}
    assert routes(stack) == [("2001:2::/48", "link#fk0", "UC")]
    assert stack.ip6.local6 == {aton6("2001:2:0:c::5"): ifp}
    assert stack.ip6.routes.cache == {} and stack.ip6.good_src == set()


def test_deleting_a_tentative_address_is_fine(stack, ifp):
    stack.ip6.add_address(ifp, aton6("2001:2:0:a::77"), 64)
    stack.ip6.del_address(ifp, aton6("2001:2:0:a::77"))
    assert ifp.in6_addrs == [] and routes(stack) == []


def test_a_group_or_route_another_address_still_needs_stays(stack, ifp):
    # ::1 in two prefixes and fe80::ff:fe00:1 share ff02::1:ff00:1; ::2 shares
    # the first prefix's route.
    stack.ip6.ifattach(ifp)
    usable(stack, ifp, "2001:2:0:a::1")
    usable(stack, ifp, "2001:2:0:a::2")
    usable(stack, ifp, "2001:2:0:c::1")
    stack.ip6.del_address(ifp, aton6("2001:2:0:a::1"))
    assert aton6("ff02::1:ff00:1") in ifp.in6_groups
    assert aton6("ff02::1:ff00:2") in ifp.in6_groups
    assert routes(stack) == [("2001:2:0:a::/64", "link#fk0", "UC"),
                             ("2001:2:0:c::/64", "link#fk0", "UC")]
    stack.ip6.del_address(ifp, aton6("2001:2:0:a::2"))
    assert routes(stack) == [("2001:2:0:c::/64", "link#fk0", "UC")]
    assert aton6("ff02::1:ff00:2") not in ifp.in6_groups


def test_a_route_of_the_same_prefix_but_another_length_goes_with_its_address(stack, ifp):
    usable(stack, ifp, "2001:2:0:a::1", 64)
    usable(stack, ifp, "2001:2:0:a::2", 56)
    stack.ip6.del_address(ifp, aton6("2001:2:0:a::1"))
    assert routes(stack) == [("2001:2::/56", "link#fk0", "UC")]


def test_deleting_an_address_whose_route_is_already_gone_is_fine(stack, ifp):
    usable(stack, ifp, "2001:2:0:a::1")
    stack.ip6.routes.delete(aton6("2001:2:0:a::"), 64)
    stack.ip6.del_address(ifp, aton6("2001:2:0:a::1"))
    assert ifp.in6_addrs == [] and stack.ip6.local6 == {}


def test_deleting_a_link_local_address_leaves_a_route_of_its_prefix(stack, ifp):
    # A static fe80::/64 route is not the link-local address's to take.
    stack.ip6.ifattach(ifp)
    stack.ip6.routes.add(aton6("fe80::"), 64, 0, ifp)
    stack.ip6.del_address(ifp, linklocal(mac_aton(MAC)))
    assert routes(stack) == [("fe80::/64", "link#fk0", "US")]
    assert ifp.in6_groups == {ALLNODES, ALLROUTERS}


def test_deleting_an_address_the_interface_does_not_have_is_refused(stack, ifp, ifp_b):
    usable(stack, ifp_b, "2001:2:0:a::1")
    with pytest.raises(ValueError, match=r"^2001:2:0:a::1 is not an address of fk0$"):
        stack.ip6.del_address(ifp, aton6("2001:2:0:a::1"))
    assert len(ifp_b.in6_addrs) == 1 and aton6("2001:2:0:a::1") in stack.ip6.local6


def test_a_deleted_address_is_no_longer_answered(stack, clock):
    r = resolved(stack, clock)
    stack.ip6.del_address(r.if1, aton6(R1))
    ll1 = linklocal(mac_aton(r.MAC1))
    assert stack.ip6.local6 == {r.ll0: r.if0, aton6(R0): r.if0, ll1: r.if1}
    inject(r.if0, r.from_h0(IPv6(src=H0, dst=R1) / ICMPv6EchoRequest()))
    (f,) = take(r.if0)                      # its prefix went with it: no route
    assert (f[IPv6].src, f[ICMPv6DestUnreach].code) == (R0, 0)
    assert stack.ip6.stats()["noroute"] == 1 and stack.ip6.stats()["delivered"] == 4


# -- an interface leaving ----------------------------------------------------------------------
def test_purge_ifp_forgets_every_address_group_and_route_of_that_interface_only(
        stack, clock):
    r = resolved(stack, clock)
    ip6 = stack.ip6
    ip6.routes.add(aton6("2001:db8::"), 32, aton6(H1))
    ip6.routes.add(aton6("2001:db9::"), 32, aton6(H0))
    inject(r.if0, r.from_h0(IPv6(src=H0, dst=H1) / ICMPv6EchoRequest()))
    ip6.purge_ifp(r.if1)
    assert r.if1.in6_addrs == [] and r.if1.in6_groups == set()
    assert set(ip6.local6) == {r.ll0, aton6(R0)}
    assert [d["destination"] for d in ip6.routes.to_list()] == ["2001:2:0:a::/64",
                                                               "2001:db9::/32"]
    assert ip6.routes.cache == {} and ip6.good_src == set()
    assert len(r.if0.in6_addrs) == 2


# -- source selection ----------------------------------------------------------------------------
def test_source_for_a_link_local_destination_is_the_link_local_address(stack, ifp):
    ip6 = stack.ip6
    usable(stack, ifp, "2001:2:0:a::1")
    assert ip6.source_for(ifp, aton6("fe80::9")) is None       # none usable yet
    ip6.ifattach(ifp)
    assert ip6.source_for(ifp, aton6("fe80::9")) is None       # tentative
    ll = ifp.in6_addrs[-1]
    ll.flags &= ~IN6_IFF_TENTATIVE
    assert ip6.source_for(ifp, aton6("fe80::9")) == ll.addr
    assert ip6.source_for(ifp, aton6("ff02::1")) == ll.addr
    ll.flags |= IN6_IFF_DUPLICATED
    assert ip6.source_for(ifp, aton6("fe80::9")) is None


def test_source_for_prefers_the_address_in_the_destinations_prefix(stack, ifp):
    ip6 = stack.ip6
    ip6.ifattach(ifp)
    ifp.in6_addrs[0].flags &= ~IN6_IFF_TENTATIVE
    usable(stack, ifp, "2001:2:0:a::1")
    usable(stack, ifp, "2001:2:0:c::1")
    assert ip6.source_for(ifp, aton6("2001:2:0:c::9")) == aton6("2001:2:0:c::1")
    assert ip6.source_for(ifp, aton6("2001:2:0:a::9")) == aton6("2001:2:0:a::1")
    # No prefix matches: the first global one, never the link-local.
    assert ip6.source_for(ifp, aton6("2001:db8::1")) == aton6("2001:2:0:a::1")


def test_source_for_skips_a_tentative_address_in_the_prefix(stack, ifp):
    ip6 = stack.ip6
    usable(stack, ifp, "2001:2:0:c::1")
    ip6.add_address(ifp, aton6("2001:2:0:a::1"), 64)
    assert ip6.source_for(ifp, aton6("2001:2:0:a::9")) == aton6("2001:2:0:c::1")


def test_source_for_falls_back_to_any_global_address_of_the_stack(stack, ifp, ifp_b):
    ip6 = stack.ip6
    ip6.ifattach(ifp)
    ll = ifp.in6_addrs[0]
    ll.flags &= ~IN6_IFF_TENTATIVE
    ip6.address_usable(ifp, ll)
    assert ip6.source_for(ifp, aton6("2001:db8::1")) is None
    assert ip6.source_for(None, aton6("2001:db8::1")) is None
    usable(stack, ifp_b, "2001:2:0:b::1")
    assert ip6.source_for(ifp, aton6("2001:db8::1")) == aton6("2001:2:0:b::1")
    assert ip6.source_for(None, aton6("2001:db8::1")) == aton6("2001:2:0:b::1")
    assert ip6.source_for(None, aton6("fe80::1")) is None


def test_an_echo_reply_to_a_group_comes_from_our_address_on_that_link(stack, clock):
    r = resolved(stack, clock)
    inject(r.if1, Ether(dst="33:33:00:00:00:01", src=r.H1_MAC)
           / IPv6(src=H1, dst="ff02::1") / ICMPv6EchoRequest(seq=4))
    (f,) = take(r.if1)
    assert (f[IPv6].src, f[IPv6].dst) == (R1, H1)
    inject(r.if0, Ether(dst="33:33:00:00:00:01", src=r.H0_MAC)
           / IPv6(src="fe80::aa", dst="ff02::1") / ICMPv6EchoRequest(seq=5))
    (ns,) = take(r.if0)                     # fe80::aa is solicited first
    inject(r.if0, na(r, r.if0, "fe80::aa", r.H0_MAC, ntoa6(r.ll0)))
    (f,) = take(r.if0)
    assert (ns[IPv6].src, f[IPv6].src, f[IPv6].dst, f[ICMPv6EchoReply].seq) \
        == (ntoa6(r.ll0), ntoa6(r.ll0), "fe80::aa", 5)
