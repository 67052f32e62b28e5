"""ip6.py's local side: packets for our addresses and groups (ip6_input's
delivery: the upper layer found past the extension headers, RFC 8200 §4;
Port Unreachable, Parameter Problem pointing at the Next Header field,
UDP's zero checksum refused, §8.1), and ip6_output for what the stack
itself sends (route, link scope, multicast, the MTU). Also the two
helpers ICMPv6 shares: build_header6 and upper_layer."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from ip6_net import Counters, cache_both, resolved, split
from net6 import H0, H1, R0, R1, inject, take
from scapy.layers.inet import TCP, UDP
from scapy.layers.inet6 import (
    ICMPv6DestUnreach,
    ICMPv6EchoReply,
    ICMPv6EchoRequest,
    ICMPv6ND_NS,
    ICMPv6ParamProblem,
    IPerror6,
    IPv6,
    IPv6ExtHdrDestOpt,
    IPv6ExtHdrFragment,
    IPv6ExtHdrHopByHop,
    PadN,
)
from scapy.layers.l2 import Ether

from iopkt.kern.mbuf import M_CSUM_UDPv6
from iopkt.netinet6.in6 import aton6, ntoa6
from iopkt.netinet6.ip6 import EXT_MAX, build_header6, upper_layer

from spy import calls


@pytest.fixture
def r(stack, clock):
    return resolved(stack, clock)


def eth(r, dst_mac=None):
    return Ether(dst=dst_mac or r.MAC0, src=r.H0_MAC, type=0x86DD)


# -- build_header6 ------------------------------------------------------------------
@settings(derandomize=True)
@given(off=st.integers(0, 20), plen=st.integers(0, 0xFFFF), nxt=st.integers(0, 255),
       hlim=st.integers(0, 255), src=st.integers(0, (1 << 128) - 1),
       dst=st.integers(0, (1 << 128) - 1))
def test_build_header6_writes_the_40_bytes_scapy_would_and_nothing_else(
        off, plen, nxt, hlim, src, dst):
    buf = bytearray(b"\xaa" * 80)
    build_header6(buf, off, plen, nxt, hlim, src, dst)
    want = bytes(IPv6(plen=plen, nh=nxt, hlim=hlim, src=ntoa6(src), dst=ntoa6(dst)))
    assert buf == b"\xaa" * off + want + b"\xaa" * (40 - off)


# -- upper_layer ---------------------------------------------------------------------
@settings(derandomize=True)
@given(chain=st.lists(st.tuples(st.sampled_from([0, 43, 60]), st.integers(0, 3)),
                      max_size=EXT_MAX - 1),
       pad=st.integers(0, 9), last=st.sampled_from([6, 17, 58, 59, 200]))
def test_upper_layer_finds_the_header_after_any_chain_it_may_walk(chain, pad, last):
    # Up to EXT_MAX - 1 extension headers (Hop-by-Hop, Routing, Destination
    # Options) of any length, then the upper layer: its value, where it
    # starts, where the field naming it is; offsets from `off` (the packet
    # starts `pad` bytes into the buffer).
    kinds = [k for k, _ in chain] + [last]
    body, at, ptr = b"", 40, 6
    for i, (_, words) in enumerate(chain):
        body += bytes([kinds[i + 1], words]) + bytes(6 + 8 * words)
        ptr, at = at, at + 8 + 8 * words
    body += bytes([0xEE]) * 12
    b = bytes(IPv6(src=H0, dst=R0, nh=kinds[0], plen=len(body))) + body
    assert upper_layer(bytes(pad) + b, pad, len(b)) == (last, at, ptr)


def hbh_chain(n, last=17):
    """n Hop-by-Hop headers (8 bytes each) then `last`."""
    return b"".join(bytes([0 if i < n - 1 else last, 0, 1, 4, 0, 0, 0, 0]) for i in range(n))


def header(nxt, payload: bytes) -> bytes:
    return bytes(IPv6(src=H0, dst=R0, nh=nxt, plen=len(payload)))


@pytest.mark.parametrize("n,want", [
    (EXT_MAX - 1, (17, 40 + 8 * (EXT_MAX - 1), 40 + 8 * (EXT_MAX - 2))),
    (EXT_MAX, (-1, 40 + 8 * EXT_MAX, 40 + 8 * (EXT_MAX - 1))),
])
def test_upper_layer_gives_up_after_ext_max_headers(n, want):
    body = hbh_chain(n) + bytes(8)
    b = header(0, body) + body
    assert upper_layer(b, 0, len(b)) == want


def test_upper_layer_stops_at_a_fragment_header():
    body = hbh_chain(1, last=44) + bytes([17, 0, 0, 0, 0, 0, 0, 1]) + bytes(8)
    b = header(0, body) + body
    assert upper_layer(b, 0, len(b)) == (44, 48, 40)
    b = header(44, body[8:]) + body[8:]
    assert upper_layer(b, 0, len(b)) == (44, 40, 6)


@pytest.mark.parametrize("length,want", [
    (47, (-1, 40, 6)),              # the first extension header is cut
    (48, (17, 48, 40)),             # exactly one extension header: it is whole
    (55, (-1, 48, 40)),             # the second one is cut
])
def test_upper_layer_says_minus_one_for_a_chain_cut_short(length, want):
    body = hbh_chain(1, last=60) + bytes([17, 0, 0, 0, 0, 0, 0, 0])
    if length == 48:
        body = hbh_chain(1, last=17)
    b = (header(0, body) + body)[:length]
    assert upper_layer(b + bytes(30), 0, length) == want


# -- delivery -----------------------------------------------------------------------------
def test_echo_to_our_address_is_answered_and_counted_delivered(r):
    c = Counters(r)
    inject(r.if0, *[eth(r) / IPv6(src=H0, dst=R0) / ICMPv6EchoRequest(id=3, seq=i)
                    for i in range(2)])
    out = take(r.if0)
    assert [(f[IPv6].src, f[IPv6].dst, f[ICMPv6EchoReply].seq) for f in out] \
        == [(R0, H0, 0), (R0, H0, 1)]
    assert c.moved() == {"ip6.total": 2, "ip6.delivered": 2, "ip6.localout": 2,
                         "icmp6.out.echoreply/0": 2}


def test_echo_to_the_other_interfaces_address_is_ours_too(r):
    inject(r.if0, eth(r) / IPv6(src=H0, dst=R1) / ICMPv6EchoRequest(seq=4))
    (f,) = take(r.if0)
    assert (f[IPv6].src, f[IPv6].dst, f[ICMPv6EchoReply].seq) == (R1, H0, 4)
    assert r.if1.sent == []


def test_echo_behind_extension_headers_is_answered(r):
    p = (IPv6(src=H0, dst=R0) / IPv6ExtHdrHopByHop(options=[PadN(optdata=bytes(12))])
         / IPv6ExtHdrDestOpt() / ICMPv6EchoRequest(id=9, seq=2, data=b"behind"))
    inject(r.if0, eth(r) / p)
    (f,) = take(r.if0)
    assert (f[IPv6].dst, f[ICMPv6EchoReply].id, f[ICMPv6EchoReply].data) == (H0, 9, b"behind")


@pytest.mark.parametrize("group,ifname,answered", [
    ("ff02::1", "fk0", True), ("ff02::2", "fk0", True), ("ff02::1:ff00:1", "fk0", True),
    ("ff02::1:ff00:101", "fk1", True), ("ff02::1:ff00:101", "fk0", False),
    ("ff02::9", "fk0", False), ("ff05::1", "fk0", False),
])
def test_multicast_is_delivered_only_for_the_groups_the_interface_joined(r, group, ifname,
                                                                        answered):
    # fk1's link-local address ends in 00:01:01, fk0's in 00:00:01.
    ifp, mymac, host, hmac = ((r.if0, r.MAC0, H0, r.H0_MAC) if ifname == "fk0"
                              else (r.if1, r.MAC1, H1, r.H1_MAC))
    c = Counters(r)
    mac = "33:33:" + ":".join("%02x" % b for b in aton6(group).to_bytes(16, "big")[-4:])
    inject(ifp, *[Ether(dst=mac, src=hmac) / IPv6(src=host, dst=group)
                  / ICMPv6EchoRequest(seq=i) for i in range(2)])
    out = take(ifp)
    if answered:
        assert [(f[IPv6].dst, f[ICMPv6EchoReply].seq) for f in out] == [(host, 0), (host, 1)]
        assert c.moved() == {"ip6.total": 2, "ip6.delivered": 2, "ip6.localout": 2,
                         "icmp6.out.echoreply/0": 2}
    else:
        assert out == []
        assert c.moved() == {"ip6.total": 2, "ip6.notmember": 2}


@pytest.mark.parametrize("src", ["ff02::1", "ff0e::5", "::1"])
def test_a_packet_for_us_from_a_multicast_or_loopback_source_is_badaddr(r, src):
    c = Counters(r)
    inject(r.if0, *[eth(r) / IPv6(src=src, dst=R0) / ICMPv6EchoRequest(seq=i) for i in range(2)])
    assert take(r.if0) == []
    assert c.moved() == {"ip6.total": 2, "ip6.badaddr": 2, "fk0.in.ip6_badaddr": 2}


@pytest.mark.parametrize("src", ["::", "::2", "2001:2:0:a:ff00::2", "2001:2:0:c::1"])
def test_a_packet_for_us_from_other_sources_is_delivered(r, src):
    # UDP: the error is not sent to :: (RFC 4443 §2.4 e), to the others it is.
    c = Counters(r)
    inject(r.if0, eth(r) / IPv6(src=src, dst=R0) / UDP(dport=7) / b"u")
    assert c.moved().get("ip6.delivered") == 1 and "ip6.badaddr" not in c.moved()


def test_fragments_for_us_are_counted_and_dropped_never_reassembled(r):
    c = Counters(r)
    inject(r.if0, eth(r) / IPv6(src=H0, dst=R0) / IPv6ExtHdrFragment(m=1) / UDP() / (b"f" * 8),
           eth(r) / IPv6(src=H0, dst=R0) / IPv6ExtHdrHopByHop() / IPv6ExtHdrFragment(offset=2)
           / (b"g" * 8))
    assert take(r.if0) == []
    assert c.moved() == {"ip6.total": 2, "ip6.delivered": 2, "ip6.fragments": 2}


def zero_sum_udp(payload=b"x", ext=None):
    p = IPv6(src=H0, dst=R0)
    if ext is not None:
        p = p / ext
    p = p / UDP(sport=4, dport=9, chksum=0) / payload
    return IPv6(bytes(p))


@pytest.mark.parametrize("payload,ext", [(b"x", None), (b"", None), (b"", "hbh")],
                         ids=["data", "header_only", "behind_hbh"])
def test_udp_with_a_zero_checksum_is_dropped_and_counted(r, payload, ext):
    p = zero_sum_udp(payload, IPv6ExtHdrHopByHop() if ext else None)
    assert bytes(p[UDP])[6:8] == b"\0\0"
    c = Counters(r)
    inject(r.if0, eth(r) / p, eth(r) / p)
    assert take(r.if0) == []
    assert c.moved() == {"ip6.total": 2, "ip6.delivered": 2, "ip6.udp_nosum": 2}


@pytest.mark.parametrize("chksum", [0x0001, 0x0100, 0xFFFF])
def test_udp_with_any_other_checksum_is_port_unreachable(r, chksum):
    p = IPv6(src=H0, dst=R0) / UDP(sport=4, dport=9, chksum=chksum) / b"y"
    c = Counters(r)
    inject(r.if0, eth(r) / p)
    (f,) = take(r.if0)
    assert (f[IPv6].src, f[IPv6].dst, f[ICMPv6DestUnreach].code) == (R0, H0, 4)
    assert bytes(f[IPerror6]) == bytes(p)
    assert c.moved() == {"ip6.total": 1, "ip6.delivered": 1, "ip6.localout": 1,
                         "icmp6.out.unreach/4": 1}


def test_a_partial_udp_checksum_is_not_a_missing_one(r):
    # A TAP with udp6csum hands the pseudo-header sum over; even when that
    # field reads zero the datagram has a checksum (the offload's).
    pkt = bytearray(bytes(IPv6(src=H0, dst=R0) / UDP(sport=4, dport=9) / b"p"))
    pkt[46:48] = b"\0\0"
    m = r.stack.pool.from_bytes(bytes(eth(r)) + bytes(pkt))
    m.csum_flags, m.csum_data = M_CSUM_UDPv6, (40 << 16) | 6
    c = Counters(r)
    inject(r.if0, m)
    (f,) = take(r.if0)
    assert f[ICMPv6DestUnreach].code == 4
    assert c.moved() == {"ip6.total": 1, "ip6.delivered": 1, "ip6.localout": 1,
                         "icmp6.out.unreach/4": 1}


def test_a_udp_header_outside_the_first_mbuf_is_not_read_there(r):
    # The checksum check reads only the first mbuf: a UDP header in the
    # second is left to the port-unreachable answer (its checksum 0x1234).
    p = IPv6(src=H0, dst=R0) / UDP(sport=4, dport=9, chksum=0x1234) / b"z"
    frame = bytes(eth(r) / p)
    m = split(r.stack.pool, frame, 14 + 40)
    m.view[m.off + 54:m.off + 54 + 64] = bytes(64)     # stale zeros past its end
    inject(r.if0, m)
    (f,) = take(r.if0)
    assert f[ICMPv6DestUnreach].code == 4 and bytes(f[IPerror6]) == bytes(p)


@pytest.mark.parametrize("n", [4, 7], ids=["no_checksum_field", "half_of_it"])
def test_a_udp_header_cut_short_is_port_unreachable_not_read_past_its_end(r, n):
    # Fewer than 8 bytes of UDP header: no checksum field to find zero in.
    p = bytes(IPv6(src=H0, dst=R0, nh=17, plen=n)) + bytes(UDP(sport=4, dport=9, chksum=0))[:n]
    c = Counters(r)
    inject(r.if0, bytes(eth(r)) + p)
    (f,) = take(r.if0)
    assert f[ICMPv6DestUnreach].code == 4 and bytes(f[IPerror6]) == p
    assert c.moved() == {"ip6.total": 1, "ip6.delivered": 1, "ip6.localout": 1,
                         "icmp6.out.unreach/4": 1}


def test_tcp_to_us_is_port_unreachable(r):
    p = IPv6(src=H0, dst=R0) / TCP(sport=4, dport=22, flags="S")
    c = Counters(r)
    inject(r.if0, eth(r) / p, eth(r) / p)
    assert [f[ICMPv6DestUnreach].code for f in take(r.if0)] == [4, 4]
    assert c.moved() == {"ip6.total": 2, "ip6.delivered": 2, "ip6.localout": 2,
                         "icmp6.out.unreach/4": 2}


@pytest.mark.parametrize("ext,ptr", [
    (b"", 6), (hbh_chain(1, last=253), 40), (hbh_chain(2, last=253), 48),
    (bytes([253, 1]) + bytes(14), 40),
], ids=["no_ext", "after_hbh", "after_two", "after_long_hbh"])
def test_an_unknown_next_header_gets_parameter_problem_pointing_at_its_field(r, ext, ptr):
    body = ext + b"unknown!"
    p = IPv6(bytes(IPv6(src=H0, dst=R0, nh=0 if ext else 253, plen=len(body))) + body)
    c = Counters(r)
    inject(r.if0, eth(r) / p, eth(r) / p)
    out = take(r.if0)
    assert [(f[IPv6].dst, f[ICMPv6ParamProblem].code, f[ICMPv6ParamProblem].ptr) for f in out] \
        == [(H0, 1, ptr)] * 2
    assert c.moved() == {"ip6.total": 2, "ip6.delivered": 2, "ip6.noproto": 2,
                         "ip6.localout": 2, "icmp6.out.paramprob/1": 2}


@pytest.mark.parametrize("body", [hbh_chain(EXT_MAX, last=58) + bytes(8),
                                  bytes([0, 1]) + bytes(6)],
                         ids=["too_many", "cut_short"])
def test_an_extension_chain_too_long_or_cut_short_is_badoptions(r, body):
    p = IPv6(bytes(IPv6(src=H0, dst=R0, nh=0, plen=len(body))) + body)
    c = Counters(r)
    inject(r.if0, eth(r) / p, eth(r) / p)
    assert take(r.if0) == []
    assert c.moved() == {"ip6.total": 2, "ip6.delivered": 2, "ip6.badoptions": 2}


# -- output ---------------------------------------------------------------------------------
def send(r, pkt, ifp=None):
    m = r.stack.pool.from_bytes(bytes(pkt))
    r.stack.ip6.output(m, ifp)


def frame(src_mac, dst_mac, pkt) -> bytes:
    return bytes(Ether(dst=dst_mac, src=src_mac, type=0x86DD)) + bytes(pkt)


def test_output_to_a_global_address_follows_the_route_whatever_ifp_says(r):
    c = Counters(r)
    p = IPv6(src=R1, dst=H1, hlim=64) / ICMPv6EchoRequest(seq=1)
    send(r, p)
    send(r, p, r.if0)
    assert r.if1.sent == [frame(r.MAC1, r.H1_MAC, p)] * 2 and r.if0.sent == []
    assert c.moved() == {"ip6.localout": 2}


def test_output_to_a_destination_the_forwarding_path_cached_takes_the_cache(r, monkeypatch):
    cache_both(r)
    matches = calls(monkeypatch, r.stack.ip6.routes, "match")
    p = IPv6(src=R0, dst=H0, hlim=64) / ICMPv6EchoRequest(seq=3)
    send(r, p)
    assert r.if0.sent == [frame(r.MAC0, r.H0_MAC, p)]
    assert matches == []


def test_output_through_a_gateway_goes_to_the_gateways_mac(r):
    r.stack.ip6.routes.add(aton6("2001:db8::"), 32, aton6(H1))
    p = IPv6(src=R1, dst="2001:db8::7") / ICMPv6EchoRequest()
    send(r, p)
    assert r.if1.sent == [frame(r.MAC1, r.H1_MAC, p)]


@pytest.mark.parametrize("dst,ifp,moved", [
    (R0, None, {"odropped": 2}), (R1, "if1", {"odropped": 2}),
    ("2001:db8::1", None, {"noroute": 2, "odropped": 2}),
    ("fe80::1", None, {"noroute": 2, "odropped": 2}),
    ("ff02::1", None, {"noroute": 2, "odropped": 2}),
    ("ff0e::1", None, {"noroute": 2, "odropped": 2}),
], ids=["our_own", "our_own_with_ifp", "no_route", "link_local_no_ifp", "ll_group_no_ifp",
        "global_group_no_ifp"])
def test_output_that_cannot_leave_is_dropped_and_counted(r, dst, ifp, moved):
    c = Counters(r)
    p = IPv6(src=R0, dst=dst) / ICMPv6EchoRequest()
    for _ in range(2):
        send(r, p, getattr(r, ifp) if ifp else None)
    assert r.if0.sent == [] and r.if1.sent == []
    assert c.moved() == {"ip6." + k: v for k, v in moved.items()}


@pytest.mark.parametrize("group", ["ff02::1", "ff0e::1", "ff05::1:3"])
def test_output_to_a_group_goes_to_its_mac_on_the_interface_named(r, group):
    c = Counters(r)
    p = IPv6(src=R1, dst=group, hlim=1) / ICMPv6EchoRequest(seq=8)
    send(r, p, r.if1)
    mac = "33:33:" + ":".join("%02x" % b for b in aton6(group).to_bytes(16, "big")[-4:])
    assert r.if1.sent == [frame(r.MAC1, mac, p)] and r.if0.sent == []
    assert c.moved() == {"ip6.localout": 1}


def test_output_to_a_link_local_address_solicits_it_on_the_interface_named(r):
    c = Counters(r)
    p = IPv6(src=ntoa6(r.ll0), dst="fe80::77") / ICMPv6EchoRequest()
    send(r, p, r.if0)
    (ns,) = take(r.if0)
    assert (ns[IPv6].dst, ns[ICMPv6ND_NS].tgt) == ("ff02::1:ff00:77", "fe80::77")
    assert r.if1.sent == [] and c.moved() == {"ip6.localout": 1}
    r.stack.nd6.flush(r.if0)


@pytest.mark.parametrize("size,sent", [(1400, True), (1401, False)])
def test_output_larger_than_the_mtu_is_dropped_as_txerror(r, size, sent):
    r.if1.mtu = 1400
    c = Counters(r)
    p = IPv6(src=R1, dst=H1) / ICMPv6EchoRequest(data=b"m" * (size - 48))
    send(r, p)
    send(r, p)
    if sent:
        assert r.if1.sent == [frame(r.MAC1, r.H1_MAC, p)] * 2
        assert c.moved() == {"ip6.localout": 2}
    else:
        assert r.if1.sent == []
        assert c.moved() == {"ip6.odropped": 2, "fk1.out.txerror": 2}
