"""A device unmounted and mounted again gets its configuration back
(addresses, static routes, the MTU ifconfig set), and tells its neighbours
its new MAC with a gratuitous ARP; another device gets nothing."""

from scapy.layers.l2 import ARP

from fakenet import aton, fake_if, take


def _routes(stack):
    return {r["destination"]: (r["gateway"], r["interface"], r["flags"])
            for r in stack.ip.routes.to_list()}


def test_a_remounted_device_gets_its_addresses_routes_and_mtu_back(stack, clock):
    ifp = fake_if(stack, 0, "02:00:00:00:00:01", "10.0.0.1", devkey="TAP x0")
    stack.ip.add_address(ifp, aton("10.0.5.1"), 24)
    stack.ip.routes.add(aton("10.9.0.0"), 16, aton("10.0.0.2"), ifp)
    ifp.mtu = 1400
    before = _routes(stack)
    stack.if_detach(ifp)
    assert _routes(stack) == {}

    again = fake_if(stack, 0, "02:00:00:00:00:99", devkey="TAP x0")
    assert [(ia.addr, ia.plen) for ia in again.in_addrs] == [(aton("10.0.0.1"), 24),
                                                           (aton("10.0.5.1"), 24)]
    assert _routes(stack) == before
    assert again.mtu == 1400
    assert take(again) == []                 # announced once it runs, not before
    clock.advance(0.001)
    stack._run_callouts()
    frames = take(again)
    assert [(f.dst, f.src, f[ARP].op, f[ARP].hwsrc, f[ARP].psrc, f[ARP].pdst)
            for f in frames] == [
        ("ff:ff:ff:ff:ff:ff", "02:00:00:00:00:99", 1, "02:00:00:00:00:99", a, a)
        for a in ("10.0.0.1", "10.0.5.1")]
    assert stack.arp.stats["txannounce"] == 2


def test_another_device_gets_nothing_and_the_config_waits_for_its_own(stack, clock):
    ifp = fake_if(stack, 0, "02:00:00:00:00:01", "10.0.0.1", devkey="TAP x0")
    stack.if_detach(ifp)
    other = fake_if(stack, 0, "02:00:00:00:00:02", devkey="TAP y0")
    assert other.in_addrs == [] and other.mtu == 1500
    stack.if_detach(other)
    again = fake_if(stack, 0, "02:00:00:00:00:03", devkey="TAP x0")
    assert [ia.addr for ia in again.in_addrs] == [aton("10.0.0.1")]


def test_an_address_taken_meanwhile_is_left_and_the_rest_restored(stack, clock):
    ifp = fake_if(stack, 0, "02:00:00:00:00:01", "10.0.0.1", devkey="TAP x0")
    stack.ip.add_address(ifp, aton("10.0.5.1"), 24)
    stack.if_detach(ifp)
    fake_if(stack, 1, "02:00:00:00:01:01", "10.0.0.1")      # took the first one
    again = fake_if(stack, 0, "02:00:00:00:00:03", devkey="TAP x0")
    assert [ia.addr for ia in again.in_addrs] == [aton("10.0.5.1")]


def test_nothing_is_remembered_when_the_stack_shuts_down(stack, clock):
    ifp = fake_if(stack, 0, "02:00:00:00:00:01", "10.0.0.1", devkey="TAP x0")
    stack.stop()
    stack.if_detach(ifp)
    assert stack._unmounted == {}


def test_a_remounted_device_gets_its_ipv6_addresses_and_routes_back(stack, clock):
    """The configured IPv6 addresses come back (through DAD again, so
    tentative first) and the static IPv6 routes too; the link-local address
    is the new MAC's, not the old one."""
    from iopkt.net.ether import mac_aton
    from iopkt.netinet6.in6 import aton6, linklocal, ntoa6
    ifp = fake_if(stack, 0, "02:00:00:00:00:01", devkey="TAP x0")
    stack.ip6.ifattach(ifp)
    stack.ip6.add_address(ifp, aton6("2001:2:0:a::1"), 64)
    stack.ip6.routes.add(aton6("2001:db8::"), 32, aton6("2001:2:0:a::2"), ifp)
    stack.if_detach(ifp)
    assert stack.ip6.routes.to_list() == []
    again = fake_if(stack, 0, "02:00:00:00:00:99", devkey="TAP x0")
    stack.ip6.ifattach(again)       # (as if_attach does with auto_linklocal, off in unit tests)
    new_ll = ntoa6(linklocal(mac_aton("02:00:00:00:00:99")))
    assert sorted(ia.text() for ia in again.in6_addrs) == sorted([
        "2001:2:0:a::1/64 tentative", f"{new_ll}/64 tentative"])
    assert [(r["destination"], r["gateway"]) for r in stack.ip6.routes.to_list()] == [
        ("2001:2:0:a::/64", "link#fk0"), ("2001:db8::/32", "2001:2:0:a::2")]
