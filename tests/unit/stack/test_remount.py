"""A device unmounted and mounted again gets its configuration back
(addresses, static routes, the MTU ifconfig set), and tells its neighbours
its new MAC with a gratuitous ARP; another device gets nothing."""

import logging

import pytest
from scapy.layers.l2 import ARP

from iopkt.net.ifnet import IFF_RUNNING

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


# -- what the remount says, and what it cannot give back ---------------------------

def _said(caplog):
    return [(r.levelname, r.getMessage()) for r in caplog.records
            if r.name == "iopkt" and "attached" not in r.getMessage()
            and "detached" not in r.getMessage()]


def test_the_restore_names_each_address_and_counts_the_routes(stack, clock, caplog):
    from iopkt.netinet6.in6 import aton6
    caplog.set_level(logging.INFO, logger="iopkt")
    ifp = fake_if(stack, 0, "02:00:00:00:00:01", "10.0.0.1", devkey="TAP x0")
    stack.ip.add_address(ifp, aton("10.0.5.1"), 24)
    stack.ip6.add_address(ifp, aton6("2001:2:0:a::1"), 64)
    stack.ip.routes.add(aton("10.9.0.0"), 16, aton("10.0.0.2"), ifp)
    stack.ip6.routes.add(aton6("2001:db8::"), 32, aton6("2001:2:0:a::2"), ifp)
    stack.if_detach(ifp)
    fake_if(stack, 0, "02:00:00:00:00:99", devkey="TAP x0")
    assert _said(caplog) == [("INFO", "fk0: restored 10.0.0.1/24, 10.0.5.1/24, 2001:2:0:a::1/64 "
                                      "and 2 routes from before its umount")]


def test_one_route_is_said_as_one(stack, clock, caplog):
    caplog.set_level(logging.INFO, logger="iopkt")
    ifp = fake_if(stack, 0, "02:00:00:00:00:01", "10.0.0.1", devkey="TAP x0")
    stack.ip.routes.add(aton("10.9.0.0"), 16, aton("10.0.0.2"), ifp)
    stack.if_detach(ifp)
    fake_if(stack, 0, "02:00:00:00:00:99", devkey="TAP x0")
    assert _said(caplog) == [
        ("INFO", "fk0: restored 10.0.0.1/24 and 1 route from before its umount")]


def test_addresses_alone_are_said_with_no_routes(stack, clock, caplog):
    caplog.set_level(logging.INFO, logger="iopkt")
    ifp = fake_if(stack, 0, "02:00:00:00:00:01", "10.0.0.1", devkey="TAP x0")
    stack.if_detach(ifp)
    fake_if(stack, 0, "02:00:00:00:00:99", devkey="TAP x0")
    assert _said(caplog) == [("INFO", "fk0: restored 10.0.0.1/24 from before its umount")]


def test_an_interface_route_comes_back_on_its_interface_without_any_address(
        stack, clock, caplog):
    """A route with no gateway names only its interface: it must come back
    on the new mount. No address came back, so nothing is announced."""
    caplog.set_level(logging.INFO, logger="iopkt")
    ifp = fake_if(stack, 0, "02:00:00:00:00:01", devkey="TAP x0")
    stack.ip.routes.add(aton("10.9.0.0"), 16, 0, ifp)
    stack.if_detach(ifp)
    again = fake_if(stack, 0, "02:00:00:00:00:99", devkey="TAP x0")
    assert _routes(stack) == {"10.9.0.0/16": ("link#fk0", "fk0", "US")}
    assert _said(caplog) == [
        ("INFO", "fk0: restored no address and 1 route from before its umount")]
    clock.advance(1.0)
    stack._run_callouts()
    assert take(again) == []


def test_an_mtu_alone_comes_back_without_a_word(stack, clock, caplog):
    caplog.set_level(logging.INFO, logger="iopkt")
    ifp = fake_if(stack, 0, "02:00:00:00:00:01", devkey="TAP x0")
    ifp.mtu = 1400
    stack.if_detach(ifp)
    again = fake_if(stack, 0, "02:00:00:00:00:99", devkey="TAP x0")
    assert again.mtu == 1400 and _said(caplog) == []


def test_what_was_taken_meanwhile_is_said_and_left(stack, clock, caplog):
    from iopkt.netinet6.in6 import aton6
    caplog.set_level(logging.INFO, logger="iopkt")
    ifp = fake_if(stack, 0, "02:00:00:00:00:01", "10.0.0.1", devkey="TAP x0")
    stack.ip.add_address(ifp, aton("10.0.5.1"), 24)
    stack.ip6.add_address(ifp, aton6("2001:2:0:a::1"), 64)
    stack.ip6.add_address(ifp, aton6("2001:2:0:c::1"), 64)
    stack.ip.routes.add(aton("10.9.0.0"), 16, aton("10.0.0.2"), ifp)
    stack.ip.routes.add(aton("10.8.0.0"), 16, aton("10.0.0.2"), ifp)
    stack.ip6.routes.add(aton6("2001:db8::"), 32, aton6("2001:2:0:a::2"), ifp)
    stack.ip6.routes.add(aton6("2001:db9::"), 32, aton6("2001:2:0:a::2"), ifp)
    stack.if_detach(ifp)
    other = fake_if(stack, 1, "02:00:00:00:01:01", "10.0.0.1")     # took these meanwhile
    stack.ip6.add_address(other, aton6("2001:2:0:a::1"), 64)
    stack.ip.routes.add(aton("10.9.0.0"), 16, aton("10.0.0.2"), other)
    stack.ip6.routes.add(aton6("2001:db8::"), 32, aton6("2001:2:0:a::2"), other)
    caplog.clear()
    again = fake_if(stack, 0, "02:00:00:00:00:99", devkey="TAP x0")
    assert _said(caplog) == [
        ("WARNING", "fk0: not restoring 10.0.0.1/24: address 10.0.0.1 is already on fk1"),
        ("WARNING", "fk0: not restoring 2001:2:0:a::1/64: "
                    "address 2001:2:0:a::1 is already on fk1"),
        ("WARNING", "fk0: not restoring route 10.9.0.0/16: route 10.9.0.0/16 exists"),
        ("WARNING", "fk0: not restoring route 2001:db8::/32: route 2001:db8::/32 exists"),
        ("INFO", "fk0: restored 10.0.5.1/24, 2001:2:0:c::1/64 and 2 routes "
                 "from before its umount")]
    assert [r["destination"] for r in stack.ip.routes.to_list() if r["interface"] == "fk0"
            and "G" in r["flags"]] == ["10.8.0.0/16"]
    assert [ia.addr for ia in again.in_addrs] == [aton("10.0.5.1")]


def test_no_announce_for_an_interface_no_longer_running(stack, clock):
    ifp = fake_if(stack, 0, "02:00:00:00:00:01", "10.0.0.1", devkey="TAP x0")
    stack.if_detach(ifp)
    again = fake_if(stack, 0, "02:00:00:00:00:99", devkey="TAP x0")
    again.flags &= ~IFF_RUNNING                     # its driver has not started it yet
    clock.advance(0.001)
    stack._run_callouts()
    assert take(again) == [] and stack.arp.stats["txannounce"] == 0


def test_no_announce_for_an_interface_detached_before_it_ran(stack, clock):
    ifp = fake_if(stack, 0, "02:00:00:00:00:01", "10.0.0.1", devkey="TAP x0")
    stack.if_detach(ifp)
    again = fake_if(stack, 0, "02:00:00:00:00:99", devkey="TAP x0")
    stack.if_detach(again)
    again.flags |= IFF_RUNNING                      # as a driver's late start would
    clock.advance(0.001)
    stack._run_callouts()
    assert take(again) == [] and stack.arp.stats["txannounce"] == 0


def test_a_detach_retried_after_its_driver_failed_keeps_the_first_configuration(stack, clock):
    """The driver's detach raised: the interface stays, its configuration is
    saved already. A second umount must not save over it what is left (no
    address, no route, the MTU the driver gave)."""
    ifp = fake_if(stack, 0, "02:00:00:00:00:01", "10.0.0.1", devkey="TAP x0")
    stack.ip.routes.add(aton("10.9.0.0"), 16, aton("10.0.0.2"), ifp)
    fails = [RuntimeError("busy")]

    def detach(i):
        if fails:
            raise fails.pop()
    ifp.if_detach = detach
    with pytest.raises(RuntimeError):
        stack.if_detach(ifp)
    assert stack.ifnets == {"fk0": ifp}
    stack.if_detach(ifp)
    assert stack.ifnets == {}
    again = fake_if(stack, 0, "02:00:00:00:00:99", devkey="TAP x0", mtu=9000)
    assert [ia.addr for ia in again.in_addrs] == [aton("10.0.0.1")]
    assert _routes(stack)["10.9.0.0/16"] == ("10.0.0.2", "fk0", "UGS")
    assert again.mtu == 9000
