"""What the IPv6 fast path vouches for is forgotten on every change that
could make it wrong.

A route cache hit (ip6.routes.cache) skips every check on the destination:
not ours (local6), forwarding on, which route. So each address change
(an address becoming usable, deleted, an interface detached), each route
change (add, delete, change, the default route) and turning forwarding off
must drop it. Each test makes the fast path vouch first (a packet
forwarded), changes one thing, and shows the next packet takes the new
decision: the exact frame out, or the exact counter that says why none.

The vouched sources (good_src) are checked against nothing an address or
route change moves (multicast, unspecified, loopback, link-local: RFC 4291
prefixes), so forgetting them too on a change cannot be seen from outside.

Topology (`r`: ip6_net.resolved with a third interface, every neighbour
REACHABLE):

    H0 2001:2:0:a::2 --- fk0 2001:2:0:a::1/64 [stack] fk1 2001:2:0:b::1/64 --- H1 2001:2:0:b::2
                                                  fk2 2001:2:0:c::1/64 --- H3 2001:2:0:c::2
"""

import pytest
from ip6_net import Counters, resolved
from net6 import H0, H1
from scapy.layers.inet6 import (
    ICMPv6DestUnreach,
    ICMPv6EchoReply,
    ICMPv6EchoRequest,
    ICMPv6ND_NA,
    ICMPv6ND_NS,
    ICMPv6NDOptDstLLAddr,
    IPv6,
)
from scapy.layers.l2 import Ether

from iopkt.netinet6.in6 import IN6_IFF_TENTATIVE, aton6

from fakenet import fake_if, inject, take

MAC2 = "02:00:00:00:02:01"
R2, H3, H3_MAC = "2001:2:0:c::1", "2001:2:0:c::2", "02:cc:00:00:02:02"
B77, B77_MAC = "2001:2:0:b::77", "02:bb:00:00:01:77"
FAR = "2001:db8:5::9"


def usable(stack, ifp, addr, plen=64):
    """`addr` on `ifp`, DAD done."""
    ia = stack.ip6.add_address(ifp, aton6(addr), plen)
    ia.flags &= ~IN6_IFF_TENTATIVE
    stack.ip6.address_usable(ifp, ia)
    return ia


def neighbour(ifp, host, mac, ours):
    """Make `host` a REACHABLE neighbour on `ifp`, as ip6_net.resolved does:
    it pings `ours`, the router solicits it, it answers."""
    inject(ifp, Ether(dst=ifp.mac_str(), src=mac) / IPv6(src=host, dst=ours) /
           ICMPv6EchoRequest())
    inject(ifp, Ether(dst=ifp.mac_str(), src=mac) / IPv6(src=host, dst=ours, hlim=255) /
           ICMPv6ND_NA(tgt=host, S=1, O=1, R=0) / ICMPv6NDOptDstLLAddr(lladdr=mac))
    take(ifp)


@pytest.fixture
def r(stack, clock):
    r = resolved(stack, clock)
    r.if2 = fake_if(stack, 2, MAC2)
    stack.ip6.ifattach(r.if2)
    usable(stack, r.if2, R2)
    neighbour(r.if2, H3, H3_MAC, R2)
    return r


def echo(dst, seq, src=H0):
    return IPv6(src=src, dst=dst, hlim=64) / ICMPv6EchoRequest(seq=seq)


def send0(r, dst, seq):
    inject(r.if0, r.from_h0(echo(dst, seq)))


def out(ifp) -> list:
    """What `ifp` sent since the last call: (destination MAC, IPv6 dst,
    hop limit, echo seq)."""
    return [(f.dst, f[IPv6].dst, f[IPv6].hlim, f[ICMPv6EchoRequest].seq) for f in take(ifp)]


def vouch(r, dst, ifp, mac):
    """Forward one echo H0 -> `dst` (out of `ifp` to `mac`): the route
    cache now holds `dst`."""
    send0(r, dst, 0x100)
    assert out(ifp) == [(mac, dst, 63, 0x100)]
    assert aton6(dst) in r.stack.ip6.routes.cache


def unreachable(r) -> list:
    """The Destination Unreachable codes H0 got since the last call, with
    the destination each quotes."""
    return [(f[ICMPv6DestUnreach].code, f[ICMPv6DestUnreach].payload.dst) for f in take(r.if0)]


# -- addresses ---------------------------------------------------------------------------

def test_an_address_usable_for_a_cached_destination_is_answered(r, stack, clock):
    # Same prefix as fk1's address: no route changes, only the address.
    # While DAD runs it is neither ours nor forwarded to the neighbour that
    # had it (RFC 4862 §5.4); once DAD is done, the next echo is answered.
    neighbour(r.if1, B77, B77_MAC, "2001:2:0:b::1")
    vouch(r, B77, r.if1, B77_MAC)
    stack.ip6.add_address(r.if1, aton6(B77), 64)
    c = Counters(r)
    send0(r, B77, 1)
    assert out(r.if1) == [] and take(r.if0) == []
    assert aton6(B77) not in stack.ip6.routes.cache
    assert c.moved() == {"ip6.total": 1, "ip6.notready": 1, "fk0.in.ip6_notready": 1}
    stack.nd6.timer()                           # the DAD probe
    (probe,) = take(r.if1)
    assert (probe[IPv6].src, probe[ICMPv6ND_NS].tgt) == ("::", B77)
    clock.advance(1.0)
    stack.nd6.timer()                           # no answer: ours
    assert stack.ip6.local6[aton6(B77)] is r.if1
    c = Counters(r)
    send0(r, B77, 2)
    (f,) = take(r.if0)
    assert (f[IPv6].src, f[IPv6].dst, f[ICMPv6EchoReply].seq) == (B77, H0, 2)
    assert r.if1.sent == []
    assert c.moved() == {"ip6.total": 1, "ip6.delivered": 1, "ip6.localout": 1,
                         "icmp6.out.echoreply/0": 1}


def test_a_deleted_address_is_forwarded_to_again(r, stack):
    usable(stack, r.if1, B77)
    vouch(r, H1, r.if1, r.H1_MAC)
    send0(r, B77, 2)
    assert take(r.if0)[0][ICMPv6EchoReply].seq == 2
    stack.ip6.del_address(r.if1, aton6(B77))
    c = Counters(r)
    send0(r, B77, 3)                    # its prefix stays: a neighbour to find
    (ns,) = take(r.if1)
    assert (ns[IPv6].dst, ns[ICMPv6ND_NS].tgt) == ("ff02::1:ff00:77", B77)
    assert r.if0.sent == []
    assert c.moved() == {"ip6.total": 1, "ip6.forward": 1}


def test_deleting_the_address_of_a_cached_route_leaves_no_route(r, stack):
    usable(stack, r.if1, "2001:2:0:d::1")
    neighbour(r.if1, "2001:2:0:d::9", B77_MAC, "2001:2:0:d::1")
    vouch(r, "2001:2:0:d::9", r.if1, B77_MAC)
    stack.ip6.del_address(r.if1, aton6("2001:2:0:d::1"))
    c = Counters(r)
    send0(r, "2001:2:0:d::9", 2)
    assert r.if1.sent == []
    assert unreachable(r) == [(0, "2001:2:0:d::9")]         # no route to destination
    assert c.moved() == {"ip6.total": 1, "ip6.noroute": 1, "ip6.cantforward": 1,
                         "ip6.localout": 1, "icmp6.out.unreach/0": 1}


def test_a_detached_interface_takes_its_cached_routes_and_addresses(r, stack):
    routes = stack.ip6.routes
    routes.add(aton6("2001:db8::"), 32, aton6(H3))
    routes.add(0, 0, aton6(H1))
    vouch(r, H3, r.if2, H3_MAC)
    vouch(r, FAR, r.if2, H3_MAC)
    stack.if_detach(r.if2)
    c = Counters(r)
    send0(r, H3, 2)                     # its prefix: now the default route
    send0(r, FAR, 3)                    # its static route: gone with it
    send0(r, R2, 4)                     # its address: no longer ours
    assert out(r.if1) == [(r.H1_MAC, H3, 63, 2), (r.H1_MAC, FAR, 63, 3),
                          (r.H1_MAC, R2, 63, 4)]
    assert r.if0.sent == [] and r.if2.sent == []
    assert c.moved() == {"ip6.total": 3, "ip6.forward": 3}


def test_a_detached_interface_leaves_no_route_where_it_was_the_only_one(r, stack):
    vouch(r, H3, r.if2, H3_MAC)
    stack.if_detach(r.if2)
    send0(r, H3, 2)
    assert r.if2.sent == [] and r.if1.sent == []
    assert unreachable(r) == [(0, H3)]
    assert stack.ip6.stats()["noroute"] == 1


# -- forwarding turned off -------------------------------------------------------------

def test_forwarding_turned_off_stops_a_cached_destination(r, stack):
    vouch(r, H1, r.if1, r.H1_MAC)
    stack.ip6.forwarding = False
    c = Counters(r)
    send0(r, H1, 2)
    assert r.if1.sent == [] and r.if0.sent == []
    assert c.moved() == {"ip6.total": 1, "ip6.cantforward": 1}


# -- routes --------------------------------------------------------------------------------

def test_a_more_specific_route_added_takes_a_cached_destination(r, stack):
    neighbour(r.if1, B77, B77_MAC, "2001:2:0:b::1")
    vouch(r, B77, r.if1, B77_MAC)
    stack.ip6.routes.add(aton6("2001:2:0:b::"), 72, aton6(H3))
    send0(r, B77, 2)
    assert out(r.if2) == [(H3_MAC, B77, 63, 2)] and r.if1.sent == []


def test_a_deleted_route_gives_a_cached_destination_to_the_next_longest(r, stack):
    routes = stack.ip6.routes
    routes.add(0, 0, aton6(H1))
    routes.add(aton6("2001:db8::"), 32, aton6(H3))
    vouch(r, FAR, r.if2, H3_MAC)
    routes.delete(aton6("2001:db8::"), 32)
    send0(r, FAR, 2)
    assert out(r.if1) == [(r.H1_MAC, FAR, 63, 2)] and r.if2.sent == []


def test_a_changed_route_sends_the_next_packet_to_the_new_gateway(r, stack):
    # route change = delete, then add with another gateway; a packet in
    # between finds no route.
    routes = stack.ip6.routes
    routes.add(aton6("2001:db8::"), 32, aton6(H1))
    vouch(r, FAR, r.if1, r.H1_MAC)
    routes.delete(aton6("2001:db8::"), 32)
    send0(r, FAR, 2)
    assert unreachable(r) == [(0, FAR)]
    routes.add(aton6("2001:db8::"), 32, aton6(H3))
    send0(r, FAR, 3)
    assert out(r.if2) == [(H3_MAC, FAR, 63, 3)] and r.if1.sent == []


def test_the_default_route_changed_deleted_and_shadowed(r, stack):
    routes = stack.ip6.routes
    routes.add(0, 0, aton6(H1))
    vouch(r, FAR, r.if1, r.H1_MAC)
    routes.delete(0, 0)
    routes.add(0, 0, aton6(H3))                     # a new default gateway
    send0(r, FAR, 2)
    assert out(r.if2) == [(H3_MAC, FAR, 63, 2)]
    routes.add(aton6("2001:db8:5::"), 48, aton6(H1))     # a more specific one
    send0(r, FAR, 3)
    assert out(r.if1) == [(r.H1_MAC, FAR, 63, 3)]
    routes.delete(aton6("2001:db8:5::"), 48)
    routes.delete(0, 0)                             # no default any more
    send0(r, FAR, 4)
    assert r.if1.sent == [] and r.if2.sent == []
    assert unreachable(r) == [(0, FAR)]
    assert stack.ip6.stats()["noroute"] == 1

