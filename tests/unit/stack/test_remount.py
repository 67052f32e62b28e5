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
