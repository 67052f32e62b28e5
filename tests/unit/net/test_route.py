"""iopkt.route: longest-prefix match, the route cache, route checks."""

import pytest

from iopkt.net.route import (
    RTF_CONNECTED,
    RTF_GATEWAY,
    RTF_HOST,
    RTF_STATIC,
    RouteError,
    RouteTable,
    parse_prefix,
    prefix_problem,
)
from iopkt.net.route import aton as route_aton

from fakenet import aton, fake_if


class If:
    def __init__(self, name):
        self.name = name


IF0, IF1, IF2 = If("fk0"), If("fk1"), If("fk2")


@pytest.fixture
def rt():
    t = RouteTable()
    t.add(aton("10.0.0.0"), 24, 0, IF0, RTF_CONNECTED)
    t.add(aton("10.0.1.0"), 24, 0, IF1, RTF_CONNECTED)
    return t


def test_connected_lookup(rt):
    r = rt.lookup(aton("10.0.1.77"))
    assert r.ifp is IF1 and r.gateway == 0 and r.flags & RTF_CONNECTED
    assert rt.lookup(aton("10.0.2.1")) is None


def test_longest_prefix_match(rt):
    gw = aton("10.0.1.2")
    rt.add(aton("172.16.0.0"), 12, gw)
    rt.add(aton("172.16.5.0"), 24, aton("10.0.0.9"))
    rt.add(aton("172.16.5.128"), 25, gw, IF2)
    rt.add(aton("172.16.5.200"), 32, aton("10.0.0.3"))
    assert rt.lookup(aton("172.31.0.1")).plen == 12
    assert rt.lookup(aton("172.16.5.1")).plen == 24
    assert rt.lookup(aton("172.16.5.129")).plen == 25
    assert rt.lookup(aton("172.16.5.129")).ifp is IF2     # explicit interface
    host = rt.lookup(aton("172.16.5.200"))
    assert host.plen == 32 and host.flags & RTF_HOST
    assert host.gateway == aton("10.0.0.3") and host.ifp is IF0
    assert rt.lookup(aton("172.32.0.1")) is None


def test_default_route(rt):
    assert rt.lookup(aton("8.8.8.8")) is None
    d = rt.add(0, 0, aton("10.0.1.254"))
    assert d.flags & RTF_GATEWAY and d.flags & RTF_STATIC and d.ifp is IF1
    assert rt.lookup(aton("8.8.8.8")) is d
    assert rt.lookup(aton("10.0.0.5")).plen == 24    # more specific still wins
    assert rt.to_list()[-1] == {"destination": "0.0.0.0/0", "gateway": "10.0.1.254",
                                "flags": "UGS", "interface": "fk1", "use": 0}


def test_destination_is_masked(rt):
    r = rt.add(aton("192.168.7.99"), 16, aton("10.0.0.2"))
    assert r.dst == aton("192.168.0.0") and r.mask == 0xFFFF0000


def test_cache_filled_and_invalidated_by_add(rt):
    dst = aton("10.0.1.77")
    r24 = rt.lookup(dst)
    assert rt.cache == {dst: r24}
    host = rt.add(dst, 32, aton("10.0.0.2"))
    assert rt.cache == {}
    assert rt.lookup(dst) is host and rt.cache[dst] is host


def test_cache_invalidated_by_delete(rt):
    dst = aton("10.0.1.77")
    host = rt.add(dst, 32, aton("10.0.0.2"))
    assert rt.lookup(dst) is host
    assert rt.delete(dst, 32) is host
    assert rt.cache == {}
    assert rt.lookup(dst).plen == 24


def test_delete_unknown(rt):
    with pytest.raises(RouteError, match=r"no route 10\.9\.0\.0/16"):
        rt.delete(aton("10.9.1.1"), 16)


def test_gateway_must_be_on_connected_network(rt):
    with pytest.raises(RouteError, match=r"gateway 192\.0\.2\.1 is not on a connected network"):
        rt.add(aton("172.16.0.0"), 12, aton("192.0.2.1"))
    # a gateway reachable only through another static route is not enough
    rt.add(aton("192.0.2.0"), 24, aton("10.0.0.2"))
    with pytest.raises(RouteError, match="not on a connected network"):
        rt.add(aton("172.16.0.0"), 12, aton("192.0.2.1"))


def test_an_ipv4_gateway_off_every_connected_network_is_refused_even_with_an_interface(rt):
    # IPv4 has no link-local gateways to name an interface for.
    with pytest.raises(RouteError, match="not on a connected network"):
        rt.add(aton("172.16.0.0"), 12, aton("192.0.2.1"), IF0)


def test_an_ipv6_gateway_off_link_needs_the_interface_named():
    # A link-local next hop (fe80::/10) is on no connected prefix: the
    # interface must be named (-ifp), and then it is taken as it is.
    from iopkt.netinet6.in6 import aton6, ntoa6
    t = RouteTable(128, ntoa6)
    t.add(aton6("2001:db8:a::"), 64, 0, IF0, RTF_CONNECTED)
    with pytest.raises(RouteError, match="gateway fe80::1 is not on a connected network"):
        t.add(aton6("2001:db8:c::"), 48, aton6("fe80::1"))
    r = t.add(aton6("2001:db8:c::"), 48, aton6("fe80::1"), IF1)
    assert (r.ifp, r.flags & RTF_GATEWAY) == (IF1, RTF_GATEWAY)
    r = t.add(aton6("2001:db8:d::"), 48, aton6("2001:db8:a::9"))      # on link: its interface
    assert r.ifp is IF0
    assert t.lookup(aton6("2001:db8:c::5")).gateway == aton6("fe80::1")
    assert t.add(aton6("2001:db8:a::7"), 128, 0, IF0).flags & RTF_HOST   # /128 is a host


def test_route_needs_gateway_or_interface(rt):
    with pytest.raises(RouteError, match="gateway or an interface"):
        rt.add(aton("172.16.0.0"), 12)


def test_duplicate_and_bad_prefix_length(rt):
    rt.add(aton("172.16.0.0"), 12, aton("10.0.0.2"))
    with pytest.raises(RouteError, match="exists"):
        rt.add(aton("172.16.9.9"), 12, aton("10.0.1.2"))
    with pytest.raises(RouteError, match="0..32"):
        rt.add(aton("172.16.0.0"), 33, aton("10.0.0.2"))


def test_purge_ifp(rt):
    rt.add(0, 0, aton("10.0.1.2"))
    rt.lookup(aton("8.8.8.8"))
    rt.purge_ifp(IF1)
    assert [r.ifp for r in rt.routes] == [IF0]
    assert rt.cache == {} and rt.lookup(aton("8.8.8.8")) is None


def test_parse_prefix():
    assert parse_prefix("default") == (0, 0)
    assert parse_prefix("198.18.0.0/24") == (aton("198.18.0.0"), 24)
    assert parse_prefix("198.18.0.1") == (aton("198.18.0.1"), 32)
    assert parse_prefix("10.1.2.3/8") == (aton("10.1.2.3"), 8)


@pytest.mark.parametrize("text", ["10.0.0.0/33", "10.0.0.256", "bogus", "10.0.0.0/x",
                                  "", "::1"])
def test_parse_prefix_errors(text):
    with pytest.raises(ValueError) as ei:
        parse_prefix(text)
    assert str(ei.value) == f"{text!r} is not an IPv4 address or prefix"


def test_stack_add_address_creates_connected_route(stack):
    ifp = fake_if(stack, 0, "02:00:00:00:00:01", "10.0.0.1", 24)
    r = stack.ip.routes.lookup(aton("10.0.0.200"))
    assert r.ifp is ifp and r.flags & RTF_CONNECTED
    # a second address in the same subnet shares the route
    stack.ip.add_address(ifp, aton("10.0.0.9"), 24)
    assert len(stack.ip.routes.routes) == 1
    stack.ip.del_address(ifp, aton("10.0.0.1"))
    assert stack.ip.routes.lookup(aton("10.0.0.200")) is r
    stack.ip.del_address(ifp, aton("10.0.0.9"))
    assert stack.ip.routes.lookup(aton("10.0.0.200")) is None


# -- the table as `netstat -r` shows it: flags, link gateways -------------------

def test_route_list_shows_flag_letters_and_link_gateways(rt):
    rt.add(aton("10.0.1.9"), 32, aton("10.0.0.2"))           # a host route via a gateway
    rt.add(aton("192.0.2.0"), 24, 0, IF2)                    # on-link through fk2
    assert rt.to_list() == [
        {"destination": "10.0.1.9/32", "gateway": "10.0.0.2", "flags": "UGHS",
         "interface": "fk0", "use": 0},
        {"destination": "10.0.0.0/24", "gateway": "link#fk0", "flags": "UC",
         "interface": "fk0", "use": 0},
        {"destination": "10.0.1.0/24", "gateway": "link#fk1", "flags": "UC",
         "interface": "fk1", "use": 0},
        {"destination": "192.0.2.0/24", "gateway": "link#fk2", "flags": "US",
         "interface": "fk2", "use": 0},
    ]


def test_host_route_without_gateway_is_on_link(rt):
    r = rt.add(aton("192.0.2.7"), 32, 0, IF2)
    assert r.to_dict() == {"destination": "192.0.2.7/32", "gateway": "link#fk2",
                           "flags": "UHS", "interface": "fk2", "use": 0}


# -- delete: exactly the route named by destination and prefix length -----------

def test_delete_default_ignores_host_bits(rt):
    d = rt.add(0, 0, aton("10.0.0.2"))
    assert rt.delete(aton("10.9.8.7"), 0) is d               # /0: every bit is host
    assert [r.plen for r in rt.routes] == [24, 24]


def test_delete_needs_both_destination_and_prefix_length_to_match(rt):
    before = list(rt.routes)
    with pytest.raises(RouteError, match=r"^no route 10\.0\.5\.0/24$"):
        rt.delete(aton("10.0.5.0"), 24)                      # same length, other net
    with pytest.raises(RouteError, match=r"^no route 10\.0\.0\.0/16$"):
        rt.delete(aton("10.0.0.0"), 16)                      # same net, other length
    with pytest.raises(RouteError, match=r"^no route 0\.0\.0\.0/0$"):
        rt.delete(aton("10.0.0.1"), 0)
    assert rt.routes == before


# -- address and prefix text: the messages a user reads -------------------------

@pytest.mark.parametrize("text, message", [
    ("", "'': not an IPv4 address (four numbers 0..255, like 198.18.0.1)"),
    ("10.0.0.256", "10.0.0.256: not an IPv4 address (four numbers 0..255, like 198.18.0.1)"),
])
def test_aton_error_names_the_text(text, message):
    with pytest.raises(ValueError) as ei:
        route_aton(text)
    assert str(ei.value) == message


ADDR_HINT = "(four numbers 0..255, like 198.18.0.1)"


@pytest.mark.parametrize("text, problem", [
    ("198.18.0.0/24", None),
    ("198.18.0.0/0", None),
    ("198.18.0.1/32", None),
    ("198.18.0.0/255.255.0.0", None),
    ("default", None),
    ("198.18.0.1", None),
    ("198.18.0.0/33", "prefix length /33: must be 0..32"),
    ("198.18.0.0/x", "prefix length /x: must be 0..32"),
    ("198.18.0.0/", "prefix length /: must be 0..32"),
    # a prefix length in range: the address is what is wrong
    ("198.18.0.256/0", f"198.18.0.256 is not an IPv4 address {ADDR_HINT}"),
    ("198.18.0.256/32", f"198.18.0.256 is not an IPv4 address {ADDR_HINT}"),
    ("198.18.0/24", f"198.18.0 is not an IPv4 address {ADDR_HINT}"),
    ("/24", f"'' is not an IPv4 address {ADDR_HINT}"),
    ("bogus", f"bogus is not an IPv4 address {ADDR_HINT}"),
    ("", f"'' is not an IPv4 address {ADDR_HINT}"),
    # dotted after the slash, but not a netmask (its ones not contiguous)
    ("198.18.0.0/255.0.255.0", "/255.0.255.0 is neither a prefix length 0..32 nor a netmask"),
])
def test_prefix_problem_names_the_bad_part(text, problem):
    assert prefix_problem(text) == problem


def test_default_route_matches_every_address(rt):
    d = rt.add(0, 0, aton("10.0.1.254"))
    for a in ("8.8.8.8", "8.8.8.9", "255.255.255.254", "1.0.0.1"):
        assert rt.lookup(aton(a)) is d, a
    assert d.mask == 0 and d.dst == 0


def test_route_needs_gateway_or_interface_message(rt):
    with pytest.raises(RouteError) as ei:
        rt.add(aton("172.16.0.0"), 12)
    assert str(ei.value) == "a route needs a gateway or an interface"


# -- the cache's bound -----------------------------------------------------------

def test_the_cache_starts_over_when_it_holds_rt_cache_max_destinations(rt, monkeypatch):
    import iopkt.net.route as route
    monkeypatch.setattr(route, "RT_CACHE_MAX", 4)
    dsts = [aton(f"10.0.1.{i}") for i in range(1, 6)]
    for d in dsts[:4]:
        rt.lookup(d)
    assert list(rt.cache) == dsts[:4]                       # full, not past it
    r5 = rt.lookup(dsts[4])
    assert rt.cache == {dsts[4]: r5} and r5.ifp is IF1
    rt.lookup(dsts[0])                      # met before the clear: looked up and cached again
    assert list(rt.cache) == [dsts[4], dsts[0]]
