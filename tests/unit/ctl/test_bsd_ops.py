"""The control socket's answers to NetBSD's route, arp and ifconfig
idioms, run by ControlServer.handle against a stack with two fake
interfaces (the router fixture: fk0 10.0.0.1/24, fk1 10.0.1.1/24):
what each changes in the tables, and that a refused change changes nothing.
"""

import json

import pytest
from scapy.layers.inet import ICMP, IP
from scapy.layers.l2 import ARP, Ether

from iopkt.ctl import control
from iopkt.ctl.server import ControlServer

from fakenet import aton, inject, take


@pytest.fixture
def srv(router, tmp_path, monkeypatch):
    monkeypatch.setattr(control, "RUN_DIR", str(tmp_path))
    s = ControlServer(router.stack, "unit")
    yield s
    s.close()


def ask(srv, op, **args):
    """The answer's result, or ("usage"|"error", message)."""
    a = srv.handle(json.dumps({"op": op, "args": args}).encode() + b"\n")
    if a["ok"]:
        return a["result"]
    return ("usage" if a.get("usage") else "error", a["error"])


def routes(srv, family="inet"):
    return [(r["destination"], r["gateway"], r["flags"], r["interface"])
            for r in ask(srv, "route", family=family)]


# -- route get, change, flush, -interface --------------------------------------
def test_route_get_names_the_route_its_mask_and_next_hop(srv):
    ask(srv, "route", add="172.16.0.0/12", gateway="10.0.1.2")
    got = ask(srv, "route_get", dst="172.20.1.1")
    assert (got["route_to"], got["destination"], got["mask"], got["gateway"],
            got["interface"], got["flags"], got["next_hop"]) == (
        "172.20.1.1", "172.16.0.0/12", "255.240.0.0", "10.0.1.2", "fk1", "UGS", "10.0.1.2")
    direct = ask(srv, "route_get", dst="10.0.0.9")     # connected: the host is the next hop
    assert (direct["destination"], direct["next_hop"], direct["flags"]) == (
        "10.0.0.0/24", "10.0.0.9", "UC")
    assert ask(srv, "route_get", dst="192.0.2.1") == ("error", "route get 192.0.2.1: not in table")
    assert ask(srv, "route_get", dst="192.0.2.300")[0] == "usage"


def test_route_change_moves_the_gateway_and_a_refused_change_keeps_the_old(srv):
    ask(srv, "route", add="172.16.0.0/12", gateway="10.0.1.2")
    ask(srv, "route", change="172.16.0.0/12", gateway="10.0.0.2")
    assert ("172.16.0.0/12", "10.0.0.2", "UGS", "fk0") in routes(srv)
    # A gateway on no connected network: refused, and the route stays as it was.
    assert ask(srv, "route", change="172.16.0.0/12", gateway="192.0.2.1")[0] == "error"
    assert ("172.16.0.0/12", "10.0.0.2", "UGS", "fk0") in routes(srv)
    assert ask(srv, "route", change="192.168.0.0/16", gateway="10.0.0.2") == (
        "error", "no route 192.168.0.0/16")


def test_route_to_an_interface_has_no_gateway_and_resolves_the_destination(srv, router):
    ask(srv, "route", add="192.168.7.0/24", interface="fk1")
    assert ("192.168.7.0/24", "link#fk1", "US", "fk1") in routes(srv)
    # By one of our addresses, as BSD's -interface takes it too.
    ask(srv, "route", add="192.168.8.0/24", interface="10.0.0.1")
    assert ("192.168.8.0/24", "link#fk0", "US", "fk0") in routes(srv)
    assert ask(srv, "route", add="192.168.9.0/24", interface="10.9.9.9") == (
        "error", "-interface 10.9.9.9: not an address of this stack")
    assert ask(srv, "route", add="192.168.9.0/24", interface="fk7")[0] == "error"
    # A packet for it is sent to the destination itself: ARP asks for it.
    router.if1.sent.clear()
    router.send0(IP(src="10.0.0.2", dst="192.168.7.5", ttl=9) / ICMP())
    (req,) = take(router.if1)
    assert req[ARP].op == 1 and req[ARP].pdst == "192.168.7.5"


@pytest.mark.parametrize("args", [{"add": "10.9.0.0/16"},
                                  {"add": "10.9.0.0/16", "gateway": "10.0.0.2",
                                   "interface": "fk0"},
                                  {"add": "10.9.0.0/16", "change": "10.9.0.0/16",
                                   "gateway": "10.0.0.2"}], ids=["none", "both", "add+change"])
def test_route_add_needs_exactly_one_of_gateway_and_interface(srv, args):
    before = routes(srv)
    assert ask(srv, "route", **args)[0] == "usage"
    assert routes(srv) == before


def test_route_flush_removes_the_gateway_routes_and_keeps_the_connected(srv):
    ask(srv, "route", add="default", gateway="10.0.1.2")
    ask(srv, "route", add="172.16.0.0/12", gateway="10.0.0.2")
    ask(srv, "route", add="192.168.7.0/24", interface="fk1")
    gone = ask(srv, "route_flush")
    assert sorted(r["destination"] for r in gone) == ["0.0.0.0/0", "172.16.0.0/12"]
    assert sorted(r[0] for r in routes(srv)) == ["10.0.0.0/24", "10.0.1.0/24", "192.168.7.0/24"]
    assert ask(srv, "route_flush") == []
    assert ask(srv, "route_flush", family="ipx")[0] == "usage"


def test_route_flush_inet6_leaves_ipv4_alone(srv, router):
    ask(srv, "ifconfig", ifname="fk0", inet6="2001:db8:0:a::1/64")
    ask(srv, "route", add="2001:db8:f::/48", gateway="2001:db8:0:a::2", family="inet6")
    ask(srv, "route", add="default", gateway="10.0.1.2")
    assert [r["destination"] for r in ask(srv, "route_flush", family="inet6")] == \
        ["2001:db8:f::/48"]
    assert ("0.0.0.0/0", "10.0.1.2", "UGS", "fk1") in routes(srv)


# -- arp -s, arp -d --------------------------------------------------------------
def arp_entry(srv, addr):
    return next((e for e in ask(srv, "arp") if e["address"] == addr), None)


def test_arp_s_is_used_at_once_never_ages_and_traffic_does_not_move_it(srv, router, clock):
    ask(srv, "arp", set="10.0.1.7", mac="02:00:00:00:77:77")
    e = arp_entry(srv, "10.0.1.7")
    assert (e["interface"], e["mac"], e["state"], e["expires_in"]) == (
        "fk1", "02:00:00:00:77:77", "permanent", None)
    router.if1.sent.clear()
    router.send0(IP(src="10.0.0.2", dst="10.0.1.7", ttl=9) / ICMP())
    (f,) = take(router.if1)                 # no request: straight to the MAC set
    assert f[Ether].dst == "02:00:00:00:77:77" and IP in f
    # A reply claiming another MAC does not move it; nor do the hours.
    inject(router.if1, Ether(dst=router.MAC1, src="02:00:00:00:66:66") / ARP(
        op=2, hwsrc="02:00:00:00:66:66", psrc="10.0.1.7", hwdst=router.MAC1, pdst="10.0.1.1"))
    for _ in range(5):
        clock.advance(3600)
        router.stack.arp.timer()
    assert arp_entry(srv, "10.0.1.7")["mac"] == "02:00:00:00:77:77"
    assert take(router.if1) == []           # and no request was ever sent for it
    # It outlives the interface going down and up.
    ask(srv, "ifconfig", ifname="fk1", up=False)
    ask(srv, "ifconfig", ifname="fk1", up=True)
    assert arp_entry(srv, "10.0.1.7")["state"] == "permanent"


def test_arp_s_temp_ages_as_a_learned_entry(srv, router, clock):
    ask(srv, "arp", set="10.0.1.8", mac="02:00:00:00:88:88", permanent=False)
    e = arp_entry(srv, "10.0.1.8")
    assert (e["state"], e["expires_in"]) == ("reachable", router.stack.arp.keep)
    clock.advance(router.stack.arp.keep)
    router.stack.arp.timer()
    assert arp_entry(srv, "10.0.1.8") is None


def test_arp_s_sends_what_was_waiting(srv, router):
    router.send0(IP(src="10.0.0.2", dst="10.0.1.9", ttl=9) / ICMP())
    router.send0(IP(src="10.0.0.2", dst="10.0.1.9", ttl=9) / ICMP())
    assert arp_entry(srv, "10.0.1.9")["held"] == 2
    router.if1.sent.clear()
    ask(srv, "arp", set="10.0.1.9", mac="02:00:00:00:99:99")
    assert [f[Ether].dst for f in take(router.if1)] == ["02:00:00:00:99:99"] * 2


@pytest.mark.parametrize("args, want", [
    ({"set": "192.0.2.1", "mac": "02:00:00:00:00:01"}, ("error", "arp -s 192.0.2.1: on no "
                                                              "interface's network")),
    ({"set": "10.0.1.7"}, ("usage", "arp -s 10.0.1.7: give the MAC address")),
    ({"set": "10.0.1.7", "mac": "02:00:00:00:00"}, ("usage", "arp -s 10.0.1.7 02:00:00:00:00: "
                                                     "not a MAC address (six hex bytes, like "
                                                     "02:00:00:00:00:01)")),
    ({"set": "10.0.1.7", "mac": "02:00:00:00:00:1ff"}, ("usage", None)),
    ({"set": "10.0.1.300", "mac": "02:00:00:00:00:01"}, ("usage", None)),
    ({"delete": "10.0.1.7"}, ("error", "arp -d 10.0.1.7: no entry")),
    ({"delete": "every"}, ("usage", None)),
], ids=["no-network", "no-mac", "short-mac", "big-byte", "bad-addr", "no-entry", "bad-delete"])
def test_arp_refusals_change_nothing(srv, router, args, want):
    router.learn(router.if1, "10.0.1.2", "02:bb:00:00:01:02")
    before = ask(srv, "arp")
    got = ask(srv, "arp", **args)
    assert got[0] == want[0] and (want[1] is None or got[1] == want[1]), got
    assert ask(srv, "arp") == before


def test_arp_d_forgets_one_entry_or_all_and_discards_what_they_held(srv, router):
    router.learn(router.if0, "10.0.0.2", "02:aa:00:00:00:02")
    router.learn(router.if1, "10.0.1.2", "02:bb:00:00:01:02")
    router.send0(IP(src="10.0.0.2", dst="10.0.1.9", ttl=9) / ICMP())     # held for .9
    ask(srv, "arp", delete="10.0.1.2")
    assert sorted(e["address"] for e in ask(srv, "arp")) == ["10.0.0.2", "10.0.1.9"]
    ask(srv, "arp", set="10.0.0.7", mac="02:00:00:00:77:77")
    ask(srv, "arp", delete="all")
    assert ask(srv, "arp") == []
    assert router.if1.out_discards["down"] == 1 and router.stack.pool.in_use == 0


# -- ifconfig without alias replaces the first address -----------------------------
def inet(srv, ifname):
    return ask(srv, "ifconfig", ifname=ifname)[0]["inet"]


def test_ifconfig_replace_takes_the_first_address_place(srv):
    ask(srv, "ifconfig", ifname="fk0", inet="10.0.5.1/24")          # alias: added
    assert inet(srv, "fk0") == ["10.0.0.1/24", "10.0.5.1/24"]
    ask(srv, "ifconfig", ifname="fk0", inet="10.0.9.1/16", replace=True)
    assert inet(srv, "fk0") == ["10.0.5.1/24", "10.0.9.1/16"]
    assert "10.0.0.0/24" not in [r[0] for r in routes(srv)]
    # Refused (the address is fk1's): the first address stays first.
    assert ask(srv, "ifconfig", ifname="fk0", inet="10.0.1.1/24", replace=True)[0] == "error"
    assert inet(srv, "fk0") == ["10.0.5.1/24", "10.0.9.1/16"]
    # Onto an interface with none: simply set.
    ask(srv, "ifconfig", ifname="fk1", delete="10.0.1.1")
    ask(srv, "ifconfig", ifname="fk1", inet="10.0.1.1/24", replace=True)
    assert inet(srv, "fk1") == ["10.0.1.1/24"]
    # The same address again: nothing changes.
    ask(srv, "ifconfig", ifname="fk1", inet="10.0.1.1/24", replace=True)
    assert inet(srv, "fk1") == ["10.0.1.1/24"] and aton("10.0.1.1") in router_addrs(srv)


def router_addrs(srv):
    return srv.stack.ip.local_addrs


def test_arp_s_again_moves_an_entry_set_by_hand(srv, router):
    ask(srv, "arp", set="10.0.1.7", mac="02:00:00:00:77:77")
    ask(srv, "arp", set="10.0.1.7", mac="02:00:00:00:77:78")
    assert (arp_entry(srv, "10.0.1.7")["mac"], arp_entry(srv, "10.0.1.7")["state"]) == (
        "02:00:00:00:77:78", "permanent")
    ask(srv, "arp", set="10.0.1.7", mac="02:00:00:00:77:79", permanent=False)
    e = arp_entry(srv, "10.0.1.7")
    assert (e["mac"], e["state"], e["expires_in"]) == ("02:00:00:00:77:79", "reachable",
                                                       router.stack.arp.keep)


def test_arp_d_a_on_an_empty_table_is_no_error(srv):
    assert ask(srv, "arp", delete="all") == []
