"""The stack assembled (stack.py): what a new Stack is made of, its timers,
how interfaces are named, attached, brought up and down, lost and detached,
and how shutdown gives every mbuf back and says so. Each log line is
checked word for word: it is what the user reads."""

import logging
import time

import pytest

from iopkt.kern.mbuf import DEFAULT_NMBJUMBO
from iopkt.net import bpf
from iopkt.net.bpf import BPF_D_INOUT, BpfDesc, bpf_attach
from iopkt.net.ifnet import (
    IFF_BROADCAST,
    IFF_MULTICAST,
    IFF_RUNNING,
    IFF_SIMPLEX,
    IFF_UP,
    LINK_STATE_DOWN,
    LINK_STATE_UP,
)
from iopkt.netinet.arp import Arp
from iopkt.netinet6.in6 import IN6_IFF_AUTOCONF, IN6_IFF_TENTATIVE, linklocal
from iopkt.netinet6.nd6 import Nd6
from iopkt.stack.stack import Stack

from fakenet import FakeClock, fake_if

IDLE = IFF_BROADCAST | IFF_SIMPLEX | IFF_MULTICAST      # a new Ifnet's flags


def said(caplog, level=logging.INFO):
    return [r.getMessage() for r in caplog.records if r.name == "iopkt" and r.levelno >= level]


# -- a new stack ----------------------------------------------------------------------

def test_a_default_stack_is_named_iopkt_with_4096_clusters_of_2_kb():
    st = Stack()
    try:
        assert st.name == "iopkt"
        p = st.pool
        assert (p.nclusters, p.mclbytes, p.nmbjumbo) == (4096, 2048, DEFAULT_NMBJUMBO)
        assert st.clock is time.monotonic and st.log is logging.getLogger("iopkt")
    finally:
        st.close()


def test_a_stack_is_built_from_what_it_is_given():
    clock, log = FakeClock(5.0), logging.getLogger("iopkt.test.stack")
    st = Stack("r1", nmbclusters=8, mclbytes=4096, clock=clock, log=log, nmbjumbo=2)
    try:
        assert st.name == "r1"
        assert (st.pool.nclusters, st.pool.mclbytes, st.pool.nmbjumbo) == (8, 4096, 2)
        assert st.clock is clock and st.log is log and st.started == 5.0
        for proto in (st.ip, st.arp, st.icmp, st.ip6, st.nd6, st.icmp6):
            assert proto.stack is st
        assert (st.ifnets, st._unmounted, st._mount_mtu) == ({}, {}, {})
    finally:
        st.close()


def test_arp_and_nd6_timers_run_once_a_second(monkeypatch, clock):
    ticks = []
    monkeypatch.setattr(Arp, "timer", lambda self: ticks.append(("arp", clock())))
    monkeypatch.setattr(Nd6, "timer", lambda self: ticks.append(("nd6", clock())))
    st = Stack("unit", nmbclusters=8, clock=clock)
    try:
        assert st._run_callouts() == 1.0 and ticks == []
        clock.advance(1.0)
        assert st._run_callouts() == 1.0
        clock.advance(1.0)
        st._run_callouts()
        assert ticks == [("arp", 1001.0), ("nd6", 1001.0), ("arp", 1002.0), ("nd6", 1002.0)]
    finally:
        st.close()


# -- naming and attaching -------------------------------------------------------------

def test_next_unit_is_the_lowest_free_one(stack):
    assert stack.next_unit("fk") == 0
    fake_if(stack, 1, "02:00:00:00:00:02")
    assert stack.next_unit("fk") == 0
    fake_if(stack, 0, "02:00:00:00:00:01")
    assert stack.next_unit("fk") == 2
    fake_if(stack, 3, "02:00:00:00:00:04")
    assert stack.next_unit("fk") == 2
    assert stack.next_unit("en") == 0


def test_attach_hooks_the_interface_to_the_stack_and_says_so(stack, caplog):
    caplog.set_level(logging.INFO, logger="iopkt")
    ifp = fake_if(stack, 0, "02:00:00:00:00:01")
    assert ifp.stack is stack and stack.ifnets == {"fk0": ifp}
    assert ifp.ip_input == stack.ip.input and ifp.arp_input == stack.arp.input
    assert ifp.ip6_input == stack.ip6.input
    assert ifp.in6_addrs == []                      # auto_linklocal off (conftest)
    from iopkt.net.ether import ether_ifattach, mac_aton
    from iopkt.net.ifnet import Ifnet
    other = Ifnet("fk", 1, "devnp-fake")
    other.description = "TAP tap3"
    ether_ifattach(other, mac_aton("02:00:00:00:00:02"))
    stack.if_attach(other)
    assert said(caplog) == ["fk0: attached (fake)", "fk1: attached (devnp-fake, TAP tap3)"]


def test_attaching_a_name_taken_is_refused(stack):
    ifp = fake_if(stack, 0, "02:00:00:00:00:01")
    with pytest.raises(ValueError) as e:
        fake_if(stack, 0, "02:00:00:00:00:02")
    assert str(e.value) == "interface fk0 exists"
    assert stack.ifnets == {"fk0": ifp}


def test_with_auto_linklocal_an_attached_interface_gets_its_link_local_address(
        stack, monkeypatch):
    from iopkt.net.ether import mac_aton
    monkeypatch.setattr(Stack, "auto_linklocal", True)
    ifp = fake_if(stack, 0, "02:00:00:00:00:01")
    assert [(ia.addr, ia.plen, ia.flags) for ia in ifp.in6_addrs] == [
        (linklocal(mac_aton("02:00:00:00:00:01")), 64, IN6_IFF_AUTOCONF | IN6_IFF_TENTATIVE)]


# -- up, down, link lost --------------------------------------------------------------

def counting(ifp):
    calls = []
    ifp.if_init = lambda i: calls.append(("init", i))
    ifp.if_stop = lambda i: calls.append(("stop", i))
    ifp.if_detach = lambda i: calls.append(("detach", i))
    return calls


def test_if_up_and_if_down_call_the_driver_once_each_way(stack):
    ifp = fake_if(stack, 0, "02:00:00:00:00:01")
    calls = counting(ifp)
    assert ifp.flags == IDLE | IFF_UP | IFF_RUNNING
    stack.if_down(ifp)
    assert ifp.flags == IDLE and calls == [("stop", ifp)]
    stack.if_down(ifp)                              # down already: the driver is not asked
    assert ifp.flags == IDLE and calls == [("stop", ifp)]
    stack.if_up(ifp)
    assert ifp.flags == IDLE | IFF_UP and calls == [("stop", ifp), ("init", ifp)]
    stack.if_up(ifp)
    assert ifp.flags == IDLE | IFF_UP and len(calls) == 2


def test_a_lost_link_is_said_once_and_the_interface_goes_down_but_stays(stack, caplog):
    caplog.set_level(logging.INFO, logger="iopkt")
    ifp = fake_if(stack, 0, "02:00:00:00:00:01")
    ifp.link_state = LINK_STATE_UP
    calls = counting(ifp)
    stack.link_lost(ifp, "EBADFD")
    stack.link_lost(ifp, "EBADFD again")
    assert said(caplog, logging.WARNING) == [
        "fk0: link lost: EBADFD; interface marked down"]
    assert ifp.link_state == LINK_STATE_DOWN and ifp.flags == IDLE
    assert calls == [("stop", ifp)] and stack.ifnets == {"fk0": ifp}


# -- detach ------------------------------------------------------------------------------

def test_detach_ends_captures_drops_what_is_queued_and_lets_the_driver_go(stack, caplog):
    caplog.set_level(logging.INFO, logger="iopkt")
    ifp = fake_if(stack, 0, "02:00:00:00:00:01", "10.0.0.1")
    calls = counting(ifp)
    ends = []
    d = BpfDesc(BPF_D_INOUT, 0, bpf.BPF_BUFSIZE, ready=lambda: None, done=ends.append)
    bpf_attach(ifp, d)
    for _ in range(2):
        ifp.if_snd.enqueue(stack.pool.from_bytes(bytes(60)))
    assert stack.pool.in_use == 2
    stack.if_detach(ifp)
    assert ends == ["detached"] and ifp.if_bpf is None
    assert calls == [("stop", ifp), ("detach", ifp)]
    assert ifp.out_discards["down"] == 2 and ifp.oerrors == 2
    assert stack.pool.in_use == 0 and ifp.if_snd.dequeue() is None
    assert stack.ifnets == {} and ifp.in_addrs == []
    assert stack.ip.routes.to_list() == []
    assert said(caplog)[-1] == "fk0: detached"
    assert stack._unmounted == {}                   # no device key: nothing to give back


def test_detach_of_an_interface_with_no_capture_leaves_bpf_alone(stack, monkeypatch):
    ifp = fake_if(stack, 0, "02:00:00:00:00:01")
    asked = []
    import iopkt.stack.stack as stackmod
    monkeypatch.setattr(stackmod, "bpf_ifdetach", asked.append)
    stack.if_detach(ifp)
    assert asked == []


# -- the MTU across a remount -----------------------------------------------------------

def test_an_mtu_never_set_takes_what_the_new_mount_gives(stack):
    ifp = fake_if(stack, 0, "02:00:00:00:00:01", "10.0.0.1", devkey="TAP x0")
    stack.if_detach(ifp)
    again = fake_if(stack, 0, "02:00:00:00:00:01", devkey="TAP x0", mtu=9000)
    assert again.mtu == 9000


def test_an_mtu_set_above_the_new_mount_s_is_cut_to_it(stack):
    ifp = fake_if(stack, 0, "02:00:00:00:00:01", devkey="TAP x0", mtu=9000)
    ifp.mtu = 4000
    stack.if_detach(ifp)
    assert stack._unmounted["TAP x0"][1] == 4000
    assert fake_if(stack, 0, "02:00:00:00:00:01", devkey="TAP x0", mtu=1500).mtu == 1500


def test_a_remount_of_a_new_device_restores_nothing(stack):
    ifp = fake_if(stack, 0, "02:00:00:00:00:01", "10.0.0.1", devkey="TAP x0")
    stack.if_detach(ifp)
    other = fake_if(stack, 0, "02:00:00:00:00:02", devkey="TAP y0")
    assert other.in_addrs == [] and list(stack._unmounted) == ["TAP x0"]


# -- shutdown ---------------------------------------------------------------------------

def test_shutdown_takes_every_interface_down_before_detaching_any(stack):
    a = fake_if(stack, 0, "02:00:00:00:00:01")
    b = fake_if(stack, 1, "02:00:00:00:00:02")
    seen = []
    a.if_detach = lambda i: seen.append(("a", b.flags & (IFF_UP | IFF_RUNNING)))
    b.if_detach = lambda i: seen.append(("b", a.flags & (IFF_UP | IFF_RUNNING)))
    stack.shutdown()
    assert seen == [("a", 0), ("b", 0)]
    assert stack.ifnets == {} and stack.running is False and stack.stopping is True


def test_shutdown_remembers_no_configuration_and_ends_every_callout(stack, clock):
    fake_if(stack, 0, "02:00:00:00:00:01", "10.0.0.1", devkey="TAP x0")
    ran = []
    stack.timeout(0.0, lambda: ran.append(1))
    stack.shutdown()
    assert stack._unmounted == {}
    assert stack._run_callouts() == 1.0 and ran == []


def test_a_detach_that_fails_is_logged_and_the_others_are_still_detached(stack, caplog):
    caplog.set_level(logging.INFO, logger="iopkt")
    a = fake_if(stack, 0, "02:00:00:00:00:01")
    fake_if(stack, 1, "02:00:00:00:00:02")

    def broken(ifp):
        raise RuntimeError("driver bug")
    a.if_detach = broken
    stack.shutdown()
    assert list(stack.ifnets) == ["fk0"]            # it never got as far as leaving
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert [r.getMessage() for r in errors] == ["fk0: detach failed"]
    assert errors[0].exc_info[0] is RuntimeError
    assert "fk1: detached" in said(caplog)
    a.if_detach = lambda ifp: None
    stack.if_detach(a)


def test_shutdown_says_every_cluster_came_back(stack, caplog):
    caplog.set_level(logging.INFO, logger="iopkt")
    stack.shutdown()
    assert said(caplog) == ["shutdown: all 256 mbuf clusters back in the pool"]
    caplog.clear()
    stack.pool.enable_jumbo(2)
    stack.shutdown()
    assert said(caplog) == ["shutdown: all 256 mbuf clusters and 2 jumbo clusters "
                            "back in the pool"]


def test_a_quiet_shutdown_says_nothing_when_every_cluster_came_back(stack, caplog):
    caplog.set_level(logging.DEBUG, logger="iopkt")
    stack.pool.enable_jumbo(2)
    stack.shutdown(quiet=True)
    assert said(caplog, logging.DEBUG) == []


@pytest.mark.parametrize("quiet", [False, True], ids=["loud", "quiet"])
def test_shutdown_warns_of_clusters_still_out_quiet_or_not(stack, caplog, quiet):
    caplog.set_level(logging.INFO, logger="iopkt")
    stack.pool.enable_jumbo(2)
    m = stack.pool.get()
    stack.shutdown(quiet=quiet)
    stack.pool.freem(m)
    j = stack.pool.get_jumbo()
    stack.shutdown(quiet=quiet)
    stack.pool.freem(j)
    assert said(caplog) == ["shutdown: 1 mbuf clusters and 0 jumbo clusters still out",
                            "shutdown: 0 mbuf clusters and 1 jumbo clusters still out"]
    assert [r.levelno for r in caplog.records] == [logging.WARNING] * 2
