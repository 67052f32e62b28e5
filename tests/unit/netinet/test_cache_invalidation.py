"""What the IPv4 fast path vouches for is forgotten on every change that
could make it wrong.

A route cache hit (routes.cache) skips every check on the destination (not
ours, not a broadcast, forwarding on, which route); a vouched source
(good_src) skips the martian-source checks, which read the broadcast
addresses (bcast_addrs). So each address change (add, delete, a new prefix
length, an interface detached), each route change (add, delete, change, the
default route) and turning forwarding off must drop them. Each test here
makes the fast path vouch first (a packet forwarded), changes one thing,
and shows the next packet takes the new decision: the exact frame out, or
the exact counter that says why nothing went out.

Topology (fixture `net3`, every neighbour resolved):

    H0 10.0.0.2 --- fk0 10.0.0.1/24 [stack] fk1 10.0.1.1/24 --- H1 10.0.1.2
                                            fk2 10.0.2.1/24 --- H2 10.0.2.2
"""

import pytest
from scapy.compat import raw
from scapy.layers.inet import ICMP, IP, UDP

from fakenet import Router, aton, fake_if, take

R = Router
IP2, H2, H2_MAC, MAC2 = "10.0.2.1", "10.0.2.2", "02:cc:00:00:02:02", "02:00:00:00:02:01"
# Hosts the tests make the stack forward to, each with its own MAC.
HOSTS = {"10.0.1.7": "02:bb:00:00:01:07", "10.0.1.127": "02:bb:00:00:01:7f",
         "10.0.1.200": "02:bb:00:00:01:c8", "10.0.0.127": "02:aa:00:00:00:7f",
         "10.0.5.9": "02:bb:00:00:05:09", "10.0.0.100": "02:aa:00:00:00:64"}


@pytest.fixture
def net3(net, stack):
    net.if2 = fake_if(stack, 2, MAC2, IP2)
    net.learn(net.if2, H2, H2_MAC)
    return net


def udp(dst, src=R.H0, ident=1):
    return IP(src=src, dst=dst, ttl=64, id=ident) / UDP(sport=1234, dport=5678) / b"cache"


def learn(net, ifp, host):
    net.learn(ifp, host, HOSTS[host])


def stats(stack, *names):
    return tuple(getattr(stack.ip, "ips_" + n) for n in names)


def out(ifp) -> list:
    """What `ifp` sent since the last call: (destination MAC, IP dst, IP id, TTL)."""
    return [(f.dst, f[IP].dst, f[IP].id, f[IP].ttl) for f in take(ifp)]


def vouch(net, stack, dst, ifp, mac, src=R.H0):
    """Forward one packet from `src` to `dst` (out of `ifp` to `mac`): the
    route cache now holds `dst` and good_src holds `src`."""
    net.send0(udp(dst, src=src, ident=0x100))
    assert out(ifp) == [(mac, dst, 0x100, 63)]
    assert aton(dst) in stack.ip.routes.cache and aton(src) in stack.ip.good_src


def again(net):
    """H0 sends through the router once more, to H1: H0 is vouched for
    again, so only a forgotten route cache sends what follows from H0 the
    slow way."""
    net.send0(udp(R.H1, ident=0x101))
    assert out(net.if1) == [(R.H1_MAC, R.H1, 0x101, 63)]


def icmp_errors(net) -> list:
    """The ICMP errors H0 got since the last call: (type, code, quoted dst)."""
    return [(f[ICMP].type, f[ICMP].code, IP(raw(f[ICMP])[8:]).dst) for f in take(net.if0)]


def discards(ifp):
    return {k: v for k, v in ifp.in_discards.items() if v}


# -- forwarding turned off ------------------------------------------------------------

def test_forwarding_turned_off_stops_a_cached_destination(net, stack):
    vouch(net, stack, R.H1, net.if1, R.H1_MAC)
    stack.ip.forwarding = False
    net.send0(udp(R.H1, ident=2))
    assert out(net.if1) == [] and net.if0.sent == []
    assert stats(stack, "forward", "cantforward") == (1, 1)
    stack.ip.forwarding = True
    net.send0(udp(R.H1, ident=3))
    assert out(net.if1) == [(R.H1_MAC, R.H1, 3, 63)]


# -- addresses added ----------------------------------------------------------------------

def test_an_address_added_for_a_cached_destination_makes_it_ours(net, stack):
    # Same subnet as fk1's address: the connected route stays as it is,
    # only the address change says the destination is now local.
    learn(net, net.if1, "10.0.1.7")
    vouch(net, stack, "10.0.1.7", net.if1, HOSTS["10.0.1.7"])
    stack.ip.add_address(net.if1, aton("10.0.1.7"), 24)
    again(net)
    net.send0(udp("10.0.1.7", ident=2))
    assert out(net.if1) == []
    assert icmp_errors(net) == [(3, 3, "10.0.1.7")]         # port unreachable: ours
    assert stats(stack, "forward", "delivered") == (2, 1)


def test_an_address_whose_broadcast_is_a_cached_destination(net, stack):
    # A static route for the subnet exists already, so adding the address
    # changes no route: only the address change makes 10.0.1.127 a broadcast.
    stack.ip.routes.add(aton("10.0.1.64"), 26, aton(R.H1))
    vouch(net, stack, "10.0.1.127", net.if1, R.H1_MAC)
    stack.ip.add_address(net.if1, aton("10.0.1.65"), 26)
    again(net)
    net.send0(udp("10.0.1.127", ident=2))
    assert out(net.if1) == [] and net.if0.sent == []
    assert stats(stack, "forward", "bcast") == (2, 1)


def test_a_shorter_prefix_makes_a_cached_destination_a_broadcast(net, stack):
    learn(net, net.if1, "10.0.1.127")
    vouch(net, stack, "10.0.1.127", net.if1, HOSTS["10.0.1.127"])
    stack.ip.del_address(net.if1, aton(R.IP1))
    stack.ip.add_address(net.if1, aton(R.IP1), 25)          # broadcast 10.0.1.127
    again(net)
    net.send0(udp("10.0.1.127", ident=2))
    assert out(net.if1) == [] and net.if0.sent == []
    assert stats(stack, "forward", "bcast") == (2, 1)


@pytest.mark.parametrize("change", ["new_prefix_length", "second_address"])
def test_a_vouched_source_that_becomes_a_broadcast_is_refused(net, stack, change):
    # 10.0.0.127 sent through the router while fk0 was a /24. Then its
    # subnet's broadcast becomes 10.0.0.127. Another source brings H1 back
    # into the route cache; the next packet from 10.0.0.127 is refused all
    # the same, cached destination or not.
    vouch(net, stack, R.H1, net.if1, R.H1_MAC, src="10.0.0.127")
    if change == "new_prefix_length":
        stack.ip.del_address(net.if0, aton(R.IP0))
        stack.ip.add_address(net.if0, aton(R.IP0), 25)
    else:
        stack.ip.add_address(net.if0, aton("10.0.0.100"), 25)
    net.send0(udp(R.H1, ident=2))
    net.send0(udp(R.H1, src="10.0.0.127", ident=3))
    assert out(net.if1) == [(R.H1_MAC, R.H1, 2, 63)]
    assert net.if0.sent == []                               # silently (RFC 1812 5.3.7)
    assert stats(stack, "forward", "badaddr") == (2, 1)
    assert discards(net.if0) == {"ip_badaddr": 1}


# -- addresses deleted ----------------------------------------------------------------

def test_a_deleted_address_is_forwarded_to_again(net, stack):
    learn(net, net.if1, "10.0.1.7")
    stack.ip.add_address(net.if1, aton("10.0.1.7"), 24)
    vouch(net, stack, R.H1, net.if1, R.H1_MAC)
    net.send0(udp("10.0.1.7", ident=2))
    assert icmp_errors(net) == [(3, 3, "10.0.1.7")]
    stack.ip.del_address(net.if1, aton("10.0.1.7"))
    net.send0(udp("10.0.1.7", ident=3))
    assert out(net.if1) == [(HOSTS["10.0.1.7"], "10.0.1.7", 3, 63)]
    assert stats(stack, "forward", "delivered") == (2, 1)


def test_a_deleted_address_takes_its_broadcast_with_it(net, stack):
    # fk0 holds 10.0.0.1/24 and 10.0.0.100/25: 10.0.0.127 is a broadcast
    # until the /25 goes, then an ordinary host, as source and destination.
    learn(net, net.if0, "10.0.0.127")
    stack.ip.add_address(net.if0, aton("10.0.0.100"), 25)
    vouch(net, stack, R.H1, net.if1, R.H1_MAC)
    net.send0(udp(R.H1, src="10.0.0.127", ident=2))
    net.send1(udp("10.0.0.127", src=R.H1, ident=3))
    assert out(net.if1) == [] and out(net.if0) == []
    assert stats(stack, "badaddr", "bcast") == (1, 1)
    stack.ip.del_address(net.if0, aton("10.0.0.100"))
    net.send0(udp(R.H1, src="10.0.0.127", ident=4))
    net.send1(udp("10.0.0.127", src=R.H1, ident=5))
    assert out(net.if1) == [(R.H1_MAC, R.H1, 4, 63)]
    assert out(net.if0) == [(HOSTS["10.0.0.127"], "10.0.0.127", 5, 63)]
    assert stats(stack, "forward", "badaddr", "bcast") == (3, 1, 1)


def test_deleting_the_address_of_a_cached_route_leaves_no_route(net, stack):
    stack.ip.add_address(net.if1, aton("10.0.5.1"), 24)
    learn(net, net.if1, "10.0.5.9")
    vouch(net, stack, "10.0.5.9", net.if1, HOSTS["10.0.5.9"])
    stack.ip.del_address(net.if1, aton("10.0.5.1"))
    net.send0(udp("10.0.5.9", ident=2))
    assert out(net.if1) == []
    assert icmp_errors(net) == [(3, 0, "10.0.5.9")]         # net unreachable
    assert stats(stack, "forward", "noroute") == (1, 1)


# -- an interface detached ------------------------------------------------------------

def test_a_detached_interface_takes_its_cached_routes_and_addresses(net3, stack):
    net = net3
    stack.ip.routes.add(aton("172.16.0.0"), 12, aton(H2))
    stack.ip.routes.add(0, 0, aton(R.H1))
    vouch(net, stack, H2, net.if2, H2_MAC)
    vouch(net, stack, "172.16.0.9", net.if2, H2_MAC)
    stack.if_detach(net.if2)
    net.send0(udp(H2, ident=2))                 # its subnet: now the default route
    net.send0(udp("172.16.0.9", ident=3))       # its static route: gone with it
    net.send0(udp(IP2, ident=4))                # its address: no longer ours
    net.send0(udp("10.0.2.255", ident=5))       # its broadcast: an address like any other
    assert out(net.if1) == [(R.H1_MAC, H2, 2, 63), (R.H1_MAC, "172.16.0.9", 3, 63),
                            (R.H1_MAC, IP2, 4, 63), (R.H1_MAC, "10.0.2.255", 5, 63)]
    assert net.if0.sent == [] and net.if2.sent == []
    assert stats(stack, "forward", "delivered", "bcast") == (6, 0, 0)


def test_a_detached_interface_leaves_no_route_where_it_was_the_only_one(net3, stack):
    net = net3
    vouch(net, stack, H2, net.if2, H2_MAC)
    stack.if_detach(net.if2)
    net.send0(udp(H2, ident=2))
    assert net.if2.sent == [] and out(net.if1) == []
    assert icmp_errors(net) == [(3, 0, H2)]
    assert stats(stack, "forward", "noroute") == (1, 1)


# -- routes ---------------------------------------------------------------------------

def test_a_more_specific_route_added_takes_a_cached_destination(net3, stack):
    net = net3
    learn(net, net.if1, "10.0.1.200")
    vouch(net, stack, "10.0.1.200", net.if1, HOSTS["10.0.1.200"])
    stack.ip.routes.add(aton("10.0.1.128"), 25, aton(H2))
    net.send0(udp("10.0.1.200", ident=2))
    assert out(net.if2) == [(H2_MAC, "10.0.1.200", 2, 63)] and out(net.if1) == []


def test_a_deleted_route_gives_a_cached_destination_to_the_next_longest(net3, stack):
    net = net3
    stack.ip.routes.add(0, 0, aton(R.H1))
    stack.ip.routes.add(aton("192.0.2.0"), 24, aton(H2))
    vouch(net, stack, "192.0.2.5", net.if2, H2_MAC)
    stack.ip.routes.delete(aton("192.0.2.0"), 24)
    net.send0(udp("192.0.2.5", ident=2))
    assert out(net.if1) == [(R.H1_MAC, "192.0.2.5", 2, 63)] and out(net.if2) == []


def test_a_changed_route_sends_the_next_packet_to_the_new_gateway(net3, stack):
    # route change = delete, then add with another gateway; a packet in
    # between finds no route.
    net = net3
    stack.ip.routes.add(aton("172.16.0.0"), 12, aton(R.H1))
    vouch(net, stack, "172.16.0.9", net.if1, R.H1_MAC)
    stack.ip.routes.delete(aton("172.16.0.0"), 12)
    net.send0(udp("172.16.0.9", ident=2))
    assert icmp_errors(net) == [(3, 0, "172.16.0.9")]
    stack.ip.routes.add(aton("172.16.0.0"), 12, aton(H2))
    net.send0(udp("172.16.0.9", ident=3))
    assert out(net.if2) == [(H2_MAC, "172.16.0.9", 3, 63)] and out(net.if1) == []
    assert stats(stack, "forward", "noroute") == (2, 1)


def test_the_default_route_changed_deleted_and_shadowed(net3, stack):
    net = net3
    routes = stack.ip.routes
    routes.add(0, 0, aton(R.H1))
    vouch(net, stack, "198.51.100.1", net.if1, R.H1_MAC)
    routes.delete(0, 0)
    routes.add(0, 0, aton(H2))                      # a new default gateway
    net.send0(udp("198.51.100.1", ident=2))
    assert out(net.if2) == [(H2_MAC, "198.51.100.1", 2, 63)]
    routes.add(aton("198.51.100.0"), 24, aton(R.H1))    # a more specific one
    net.send0(udp("198.51.100.1", ident=3))
    assert out(net.if1) == [(R.H1_MAC, "198.51.100.1", 3, 63)]
    routes.delete(aton("198.51.100.0"), 24)
    routes.delete(0, 0)                             # no default any more
    net.send0(udp("198.51.100.1", ident=4))
    assert out(net.if1) == [] and out(net.if2) == []
    assert icmp_errors(net) == [(3, 0, "198.51.100.1")]
    assert stats(stack, "forward", "noroute") == (3, 1)
