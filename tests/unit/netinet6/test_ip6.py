"""IPv6 through the stack on fake interfaces: addresses and DAD, Neighbour
Discovery both ways, forwarding (hop limit, Packet Too Big, no route,
link-local scope), echo, and the ICMPv6 error rules of RFC 4443 §2.4.
Every frame the stack sends is parsed by scapy, checksums included."""

import logging

import pytest
from net6 import H0, H1, R0, R1, Router6, inject, na, take
from scapy.layers.inet import TCP, UDP
from scapy.layers.inet6 import (
    ICMPv6DestUnreach,
    ICMPv6EchoReply,
    ICMPv6EchoRequest,
    ICMPv6ND_NA,
    ICMPv6ND_NS,
    ICMPv6NDOptSrcLLAddr,
    ICMPv6PacketTooBig,
    ICMPv6ParamProblem,
    ICMPv6TimeExceeded,
    IPerror6,
    IPv6,
    IPv6ExtHdrDestOpt,
    IPv6ExtHdrFragment,
    IPv6ExtHdrHopByHop,
    IPv6ExtHdrRouting,
)
from scapy.layers.l2 import Ether
from scapy.packet import Raw

from iopkt.netinet6.in6 import (
    IN6_IFF_DUPLICATED,
    aton6,
    eui64,
    linklocal,
    multicast_mac,
    ntoa6,
    solicited_node,
)
from iopkt.netinet6.nd6 import MAX_MULTICAST_SOLICIT, ND6_MAXHOLD


@pytest.fixture
def r6(stack, clock):
    return Router6(stack, clock)


def good_cksum(frame) -> bool:
    """scapy recomputes the ICMPv6 checksum of the frame and compares."""
    p = Ether(bytes(frame))
    layer = p[IPv6].payload
    while layer.name in ("IPv6 Extension Header - Hop-by-Hop Options Header",):
        layer = layer.payload
    got = layer.cksum
    del layer.cksum
    return Ether(bytes(p))[type(layer)].cksum == got


# -- addresses -----------------------------------------------------------------
def test_link_local_address_is_the_modified_eui64_of_the_mac():
    assert eui64(bytes.fromhex("020000000001")) == 0x0000_00FF_FE00_0001
    assert ntoa6(linklocal(bytes.fromhex("525400123456"))) == "fe80::5054:ff:fe12:3456"
    assert ntoa6(solicited_node(aton6("2001:2:0:a::1"))) == "ff02::1:ff00:1"
    assert multicast_mac(aton6("ff02::1:ff00:1")) == bytes.fromhex("3333ff000001")


def test_dad_probes_each_address_once_from_the_unspecified_address(stack, clock):
    r6 = Router6(stack, clock)
    probes = [p for p in r6.dad_probes if p.src == r6.MAC0]
    assert [(p[IPv6].src, p[IPv6].dst, p[IPv6].hlim, p[ICMPv6ND_NS].tgt, p.dst) for p in probes] \
        == [("::", "ff02::1:ff00:1", 255, str(ntoa6(r6.ll0)), "33:33:ff:00:00:01"),
            ("::", "ff02::1:ff00:1", 255, R0, "33:33:ff:00:00:01")]
    assert all(ICMPv6NDOptSrcLLAddr not in p and good_cksum(p) for p in probes)
    assert [a.text() for a in r6.if0.in6_addrs] == [f"{ntoa6(r6.ll0)}/64", f"{R0}/64"]
    assert stack.nd6.stats["dad_ok"] == 4


def test_an_address_another_node_advertises_during_dad_is_duplicated(stack, clock, caplog):
    from fakenet import Router
    r = Router(stack, clock)
    ia = stack.ip6.add_address(r.if0, aton6(R0), 64)
    stack.nd6.timer()
    take(r.if0)
    with caplog.at_level(logging.WARNING):
        inject(r.if0, Ether(dst="33:33:00:00:00:01", src=r.H0_MAC)
               / IPv6(src=R0, dst="ff02::1", hlim=255) / ICMPv6ND_NA(tgt=R0, O=1, S=0))
    assert ia.flags & IN6_IFF_DUPLICATED and ia.text() == f"{R0}/64 duplicated"
    assert "DAD detected a duplicate of 2001:2:0:a::1" in caplog.text
    clock.advance(2)
    stack.nd6.timer()
    # Never used: an echo to it is not answered.
    inject(r.if0, Ether(dst=r.MAC0, src=r.H0_MAC) / IPv6(src=H0, dst=R0) / ICMPv6EchoRequest())
    assert take(r.if0) == [] and aton6(R0) not in stack.ip6.local6


# -- Neighbour Discovery ---------------------------------------------------------
def test_a_multicast_ns_is_answered_with_a_solicited_router_na(r6):
    inject(r6.if0, Ether(dst="33:33:ff:00:00:01", src=r6.H0_MAC)
           / IPv6(src=H0, dst="ff02::1:ff00:1", hlim=255) / ICMPv6ND_NS(tgt=R0)
           / ICMPv6NDOptSrcLLAddr(lladdr=r6.H0_MAC))
    (f,) = take(r6.if0)
    assert (f.dst, f[IPv6].src, f[IPv6].dst, f[IPv6].hlim) == (r6.H0_MAC, R0, H0, 255)
    a = f[ICMPv6ND_NA]
    assert (a.R, a.S, a.O, a.tgt, a.lladdr) == (1, 1, 1, R0, r6.MAC0) and good_cksum(f)
    assert [(e["address"], e["state"]) for e in r6.stack.nd6.table()] == [(H0, "STALE")]


@pytest.mark.parametrize("hlim", [254, 64, 1])
def test_nd_with_a_hop_limit_other_than_255_is_dropped_and_counted(r6, hlim):
    inject(r6.if0, Ether(dst="33:33:ff:00:00:01", src=r6.H0_MAC)
           / IPv6(src=H0, dst="ff02::1:ff00:1", hlim=hlim) / ICMPv6ND_NS(tgt=R0)
           / ICMPv6NDOptSrcLLAddr(lladdr=r6.H0_MAC))
    assert take(r6.if0) == []
    assert r6.stack.nd6.stats["badhlim"] == 1 and r6.if0.in_discards["nd6_invalid"] == 1


def test_an_option_of_length_zero_invalidates_the_message(r6):
    inject(r6.if0, Ether(dst="33:33:ff:00:00:01", src=r6.H0_MAC)
           / IPv6(src=H0, dst="ff02::1:ff00:1", hlim=255) / ICMPv6ND_NS(tgt=R0)
           / Raw(b"\x01\x00" + bytes(6)))
    assert take(r6.if0) == [] and r6.stack.nd6.stats["invalid"] == 1


def forward_to_h1(r6, n=1, **kw):
    for i in range(n):
        inject(r6.if0, r6.from_h0(IPv6(src=H0, dst=H1, **kw) / ICMPv6EchoRequest(seq=i)))


def test_forwarding_solicits_holds_then_sends_with_hop_limit_decremented(r6):
    forward_to_h1(r6, 3, hlim=64)
    (ns,) = take(r6.if1)
    assert (ns.dst, ns[IPv6].src, ns[IPv6].dst, ns[IPv6].hlim, ns[ICMPv6ND_NS].tgt,
            ns[ICMPv6NDOptSrcLLAddr].lladdr) == ("33:33:ff:00:00:02", R1, "ff02::1:ff00:2", 255,
                                                 H1, r6.MAC1)
    inject(r6.if1, na(r6, r6.if1, H1, r6.H1_MAC, R1))
    out = take(r6.if1)
    assert [(f.dst, f.src, f[IPv6].hlim, f[ICMPv6EchoRequest].seq) for f in out] == \
        [(r6.H1_MAC, r6.MAC1, 63, 0), (r6.H1_MAC, r6.MAC1, 63, 1), (r6.H1_MAC, r6.MAC1, 63, 2)]
    assert r6.stack.ip6.stats()["forward"] == 3
    assert [e["state"] for e in r6.stack.nd6.table()] == ["REACHABLE"]


@pytest.mark.parametrize("chain", [
    IPv6ExtHdrHopByHop() / IPv6ExtHdrDestOpt() / IPv6ExtHdrRouting(segleft=0),
    IPv6ExtHdrFragment(id=77, m=1, offset=0),
    IPv6ExtHdrFragment(id=77, m=0, offset=3),                  # a later fragment: no UDP header
    IPv6ExtHdrHopByHop() / IPv6ExtHdrFragment(id=9) / IPv6ExtHdrDestOpt(),
], ids=["hbh_dst_rt", "first_fragment", "later_fragment", "hbh_frag_dst"])
def test_extension_headers_are_forwarded_unchanged(r6, chain):
    # RFC 8200 §4: a router forwards the chain as it came; only the hop
    # limit changes (a fragment is forwarded, never reassembled here).
    resolved_h1(r6)
    pkt = IPv6(src=H0, dst=H1, hlim=9) / chain / UDP(sport=1, dport=2) / (b"e" * 40)
    want = bytearray(bytes(pkt))
    want[7] = 8
    inject(r6.if0, r6.from_h0(pkt))
    (f,) = take(r6.if1)
    assert bytes(f[IPv6]) == bytes(want)
    assert r6.stack.ip6.stats()["forward"] == 2     # with resolved_h1's echo


def test_an_unanswered_neighbour_bounces_its_queue_as_address_unreachable(r6, clock):
    forward_to_h1(r6, ND6_MAXHOLD + 2)
    assert r6.if1.out_discards["nd6_holdq_full"] == 2
    for _ in range(MAX_MULTICAST_SOLICIT):
        clock.advance(1.0)
        r6.stack.nd6.timer()
    sent = take(r6.if1)
    assert [f[ICMPv6ND_NS].tgt for f in sent] == [H1] * MAX_MULTICAST_SOLICIT
    # The errors go back to H0, whose address is not resolved yet: one NS,
    # the errors held; answer it and they leave.
    inject(r6.if0, na(r6, r6.if0, H0, r6.H0_MAC, R0))
    errs = [f for f in take(r6.if0) if ICMPv6DestUnreach in f]
    assert len(errs) == ND6_MAXHOLD and {f[ICMPv6DestUnreach].code for f in errs} == {3}
    assert r6.if1.out_discards["nd6_unresolved"] == ND6_MAXHOLD
    assert r6.if1.nd6info == {} and r6.stack.nd6.stats["timeouts"] == 1


def test_reachable_goes_stale_then_delay_then_probe_with_unicast_ns(r6, clock):
    forward_to_h1(r6)
    take(r6.if1)
    inject(r6.if1, na(r6, r6.if1, H1, r6.H1_MAC, R1))
    take(r6.if1)
    ln = r6.if1.nd6info[aton6(H1)]
    clock.advance(30.0)
    r6.stack.nd6.timer()
    assert ln.state == "STALE"
    forward_to_h1(r6)
    assert ln.state == "DELAY" and len(take(r6.if1)) == 1     # sent with the stale MAC
    clock.advance(5.0)
    r6.stack.nd6.timer()
    (probe,) = take(r6.if1)
    assert ln.state == "PROBE" and (probe.dst, probe[IPv6].dst) == (r6.H1_MAC, H1)
    inject(r6.if1, na(r6, r6.if1, H1, r6.H1_MAC, R1))
    assert ln.state == "REACHABLE"


# -- forwarding and its errors -----------------------------------------------------
def test_hop_limit_one_gets_time_exceeded_from_the_incoming_interface(r6):
    forward_to_h1(r6, hlim=1)
    (ns,) = take(r6.if0)                           # H0 is solicited first
    inject(r6.if0, na(r6, r6.if0, H0, r6.H0_MAC, R0))
    (f,) = take(r6.if0)
    assert ns[ICMPv6ND_NS].tgt == H0
    assert (f[IPv6].src, f[IPv6].dst, f[ICMPv6TimeExceeded].code) == (R0, H0, 0)
    assert f[IPerror6].hlim == 1 and good_cksum(f)


def h0_resolved(r6):
    inject(r6.if0, r6.from_h0(IPv6(src=H0, dst=R0) / ICMPv6EchoRequest()))
    take(r6.if0)
    inject(r6.if0, na(r6, r6.if0, H0, r6.H0_MAC, R0))
    take(r6.if0)


def test_packet_too_big_carries_the_next_hop_mtu_and_quotes_up_to_1280(r6):
    h0_resolved(r6)
    r6.if1.mtu = 1400
    inject(r6.if0, r6.from_h0(IPv6(src=H0, dst=H1) / ICMPv6EchoRequest(data=b"y" * 1500)))
    (f,) = take(r6.if0)
    assert f[ICMPv6PacketTooBig].mtu == 1400 and len(f[IPv6]) == 1280 and good_cksum(f)
    assert r6.stack.ip6.stats()["toobig"] == 1


def test_no_route_is_destination_unreachable_code_0(r6):
    h0_resolved(r6)
    inject(r6.if0, r6.from_h0(IPv6(src=H0, dst="2001:db8::1") / ICMPv6EchoRequest()))
    (f,) = take(r6.if0)
    assert f[ICMPv6DestUnreach].code == 0 and r6.stack.ip6.stats()["noroute"] == 1


def test_a_link_local_source_is_never_forwarded(r6):
    h0_resolved(r6)
    inject(r6.if0, r6.from_h0(IPv6(src="fe80::aa", dst=H1) / ICMPv6EchoRequest()))
    inject(r6.if0, r6.from_h0(IPv6(src=H0, dst="fe80::bb") / ICMPv6EchoRequest()))
    assert take(r6.if1) == []
    assert r6.stack.ip6.stats()["badscope"] == 2


def test_the_routes_are_longest_prefix_first_with_a_default(r6):
    rt = r6.stack.ip6.routes
    rt.add(0, 0, aton6(H1))
    assert rt.lookup(aton6("2001:db8::1")).gateway == aton6(H1)
    assert rt.lookup(aton6(H1)).gateway == 0
    assert [d["destination"] for d in rt.to_list()] == \
        ["2001:2:0:a::/64", "2001:2:0:b::/64", "::/0"]


# -- local delivery --------------------------------------------------------------------
def test_echo_to_our_address_and_to_all_nodes_is_answered(r6):
    h0_resolved(r6)
    inject(r6.if0, r6.from_h0(IPv6(src=H0, dst=R0) / ICMPv6EchoRequest(id=7, seq=1, data=b"z")))
    inject(r6.if0, Ether(dst="33:33:00:00:00:01", src=r6.H0_MAC)
           / IPv6(src=H0, dst="ff02::1") / ICMPv6EchoRequest(id=7, seq=2))
    out = take(r6.if0)
    assert [(f[IPv6].src, f[IPv6].dst, f[ICMPv6EchoReply].seq, f[IPv6].hlim) for f in out] == \
        [(R0, H0, 1, 64), (R0, H0, 2, 64)]
    assert all(good_cksum(f) for f in out) and out[0][ICMPv6EchoReply].data == b"z"


def test_udp_to_us_is_port_unreachable_and_an_unknown_header_a_parameter_problem(r6):
    h0_resolved(r6)
    inject(r6.if0, r6.from_h0(IPv6(src=H0, dst=R0) / UDP(dport=9) / b"x"))
    inject(r6.if0, r6.from_h0(IPv6(src=H0, dst=R0) / IPv6ExtHdrHopByHop(nh=253) / (b"x" * 8)))
    a, b = take(r6.if0)
    assert a[ICMPv6DestUnreach].code == 4
    assert (b[ICMPv6ParamProblem].code, b[ICMPv6ParamProblem].ptr) == (1, 40)


def test_no_error_about_an_error_a_multicast_destination_or_a_multicast_source(r6):
    h0_resolved(r6)
    st = r6.stack.icmp6.stats
    inject(r6.if0, r6.from_h0(IPv6(src=H0, dst=H1, hlim=1) / ICMPv6DestUnreach()
                              / IPv6(src=H1, dst=H0)))
    inject(r6.if0, Ether(dst="33:33:00:00:00:09", src=r6.H0_MAC)
           / IPv6(src=H0, dst="ff02::9") / UDP(dport=521))
    assert take(r6.if0) == [] and st["canterror"] == 1
    assert r6.stack.ip6.stats()["notmember"] == 1


def test_errors_are_rate_limited(r6, clock):
    h0_resolved(r6)
    st = r6.stack.icmp6.stats
    for _ in range(60):
        inject(r6.if0, r6.from_h0(IPv6(src=H0, dst="2001:db8::1") / ICMPv6EchoRequest()))
    assert len(take(r6.if0)) == 50 and st["toofreq"] == 10
    clock.advance(0.0501)                           # 100 a second: five more tokens
    for _ in range(6):
        inject(r6.if0, r6.from_h0(IPv6(src=H0, dst="2001:db8::1") / ICMPv6EchoRequest()))
    assert len(take(r6.if0)) == 5


# -- TCP super-frames over IPv6 (TSO6) ---------------------------------------------------
def superframe6(r6, n, mss=1428):
    """A TCPv6 super-frame H0 -> H1 as a TAP with TSO6 hands it over."""

    from iopkt.kern.mbuf import M_CSUM_TCPv6, M_CSUM_TSOv6

    from offload_frames import chain, pseudo_seed
    pkt = bytes(IPv6(src=H0, dst=H1, hlim=64) / TCP(sport=1, dport=2, flags="PA", seq=5)
                / bytes(i & 0xFF for i in range(n)))
    b = bytearray(bytes(Ether(dst=r6.MAC0, src=r6.H0_MAC, type=0x86DD)) + pkt)
    b[14 + 56:14 + 58] = pseudo_seed(pkt, 40).to_bytes(2, "big")
    r6.stack.pool.enable_jumbo(4)
    m = chain(r6.stack.pool, bytes(b), [min(len(b), 1984)])
    m.csum_flags, m.csum_data, m.segsz = M_CSUM_TSOv6 | M_CSUM_TCPv6, (40 << 16) | 16, mss
    return m, pkt


def resolved_h1(r6):
    forward_to_h1(r6)
    take(r6.if1)
    inject(r6.if1, na(r6, r6.if1, H1, r6.H1_MAC, R1))
    take(r6.if1)
    r6.if1.sent_meta.clear()


def test_a_super_frame_leaves_whole_through_an_interface_with_tso6(r6):
    from iopkt.net.ifnet import IFCAP_CSUM_TCPv6_Rx, IFCAP_CSUM_TCPv6_Tx, IFCAP_TSOv6
    resolved_h1(r6)
    r6.if1.set_capenable(IFCAP_TSOv6 | IFCAP_CSUM_TCPv6_Rx | IFCAP_CSUM_TCPv6_Tx)
    m, pkt = superframe6(r6, 10000)
    inject(r6.if0, m)
    (f,) = r6.if1.sent
    assert len(f) == 14 + len(pkt) and f[14 + 7] == 63         # one frame, hop limit - 1
    assert r6.if1.sent_meta[-1][2] == 1428 and r6.stack.ip6.stats()["tso_forward"] == 1


def test_a_super_frame_is_cut_for_an_interface_without_tso6(r6):
    from offload_frames import expected_segments
    resolved_h1(r6)
    m, pkt = superframe6(r6, 5000)
    inject(r6.if0, m)
    got = [IPv6(bytes(f)[14:]) for f in r6.if1.sent]
    want = expected_segments(bytes(IPv6(pkt)), 1428)
    assert len(got) == 4 and r6.if1.sw_tso == 1 and r6.if1.sw_tso_segs == 4
    for g, w in zip(got, want):
        w = IPv6(w)
        w.hlim = 63
        assert bytes(g) == bytes(IPv6(bytes(w)))


def test_segments_for_an_interface_with_tcp6csum_are_left_partial_and_flagged_v6(r6):
    # tcp6csum-tx on, tso6 off: the segments carry the pseudo-header sum and
    # M_CSUM_TCPv6 for the driver to finish (and scapy agrees once it has).
    from iopkt.kern.mbuf import M_CSUM_TCPv6
    from iopkt.net.ifnet import CAP_KEYWORDS
    from iopkt.netinet.in_offload import in_undefer_cksum
    resolved_h1(r6)
    r6.if1.set_capenable(CAP_KEYWORDS["tcp6csum"])
    m, pkt = superframe6(r6, 3000)
    inject(r6.if0, m)
    assert [meta[:2] for meta in r6.if1.sent_meta] == [(M_CSUM_TCPv6, (40 << 16) | 16)] * 3
    for f in r6.if1.sent:
        s = r6.stack.pool.from_bytes(f[14:])
        s.csum_flags, s.csum_data = M_CSUM_TCPv6, (40 << 16) | 16
        in_undefer_cksum(s)
        whole = IPv6(s.tobytes())
        r6.stack.pool.freem(s)
        again = IPv6(bytes(whole))
        del again[TCP].chksum
        assert IPv6(bytes(again))[TCP].chksum == whole[TCP].chksum


@pytest.mark.parametrize("caps,partial", [("tcp6csum", True), ("tcp4csum", False),
                                          ("-", False)])
def test_a_partial_tcpv6_checksum_is_completed_unless_tcp6csum_tx_is_on(r6, caps, partial):
    # The Tx capability of the family decides, not IPv4's: tcp4csum alone
    # does not let a TCPv6 checksum leave partial.
    from iopkt.kern.mbuf import M_CSUM_TCPv6
    from iopkt.net.ifnet import CAP_KEYWORDS

    from offload_frames import pseudo_seed
    resolved_h1(r6)
    r6.if1.set_capenable(CAP_KEYWORDS.get(caps, 0))
    pkt = bytes(IPv6(src=H0, dst=H1, hlim=64) / TCP(sport=1, dport=2, flags="PA")
                / (b"x" * 300))
    b = bytearray(bytes(Ether(dst=r6.MAC0, src=r6.H0_MAC, type=0x86DD)) + pkt)
    b[14 + 56:14 + 58] = pseudo_seed(pkt, 40).to_bytes(2, "big")
    m = r6.stack.pool.from_bytes(bytes(b))
    m.csum_flags, m.csum_data = M_CSUM_TCPv6, (40 << 16) | 16
    inject(r6.if0, m)
    (f,) = r6.if1.sent
    if partial:
        assert r6.if1.sent_meta == [(M_CSUM_TCPv6, (40 << 16) | 16, 0)]
        assert r6.if1.sw_csum == 0 and f[14 + 56:14 + 58] == b[14 + 56:14 + 58]
    else:
        assert r6.if1.sent_meta == [(0, 0, 0)] and r6.if1.sw_csum == 1
        assert IPv6(f[14:])[TCP].chksum == IPv6(pkt)[TCP].chksum   # scapy's, whole


def test_a_super_frame_whose_segments_exceed_the_mtu_gets_packet_too_big(r6):
    h0_resolved(r6)
    resolved_h1(r6)
    r6.if1.mtu = 1400
    m, _ = superframe6(r6, 5000, mss=1428)          # 1488-byte segments
    inject(r6.if0, m)
    (f,) = take(r6.if0)
    assert f[ICMPv6PacketTooBig].mtu == 1400 and r6.if1.sent == []


def test_udp_with_a_zero_checksum_is_dropped_and_counted_not_answered(r6):
    h0_resolved(r6)
    p = IPv6(bytes(IPv6(src=H0, dst=R0) / UDP(dport=9) / b"x"))
    p[UDP].chksum = 0
    inject(r6.if0, r6.from_h0(p))
    assert take(r6.if0) == [] and r6.stack.ip6.stats()["udp_nosum"] == 1


# -- found by mutation testing ------------------------------------------------------------
@pytest.mark.parametrize("total", [208, 216, 224, 1400])
def test_no_error_about_an_icmpv6_error_behind_a_long_extension_chain(r6, total):
    # RFC 4443 §2.4 (e.1) whatever the chain's length: the walk to the
    # upper-layer header does not stop at the first 256 bytes.
    from scapy.layers.inet6 import PadN
    pads, rem = [], total - 2                           # PadN options of at most 257 bytes
    while rem:
        k = min(rem - 2, 255) if rem - 2 - min(rem - 2, 255) != 1 else 254
        pads.append(PadN(optdata=b"\0" * k))
        rem -= k + 2
    opt = IPv6ExtHdrDestOpt(nh=58, options=pads)
    assert len(bytes(opt)) == total
    pkt = IPv6(src=H0, dst=H1, hlim=1) / opt / ICMPv6DestUnreach() / IPv6(src=H1, dst=H0)
    h0_resolved(r6)
    inject(r6.if0, r6.from_h0(pkt))
    assert take(r6.if0) == []
    assert r6.stack.icmp6.stats["canterror"] == 1 and r6.stack.icmp6.stats["error"] == 0


def test_a_neighbour_message_too_long_to_pull_up_is_freed(r6):
    # An NS longer than a cluster arrives as a chain: counted and freed,
    # never left in the pool.
    from offload_frames import chain
    big_opt = Raw(b"\xc8\xff" + bytes(255 * 8 - 2))     # an unknown option, 2040 bytes
    ns = r6.from_h0(IPv6(src=H0, dst=R0, hlim=255) / ICMPv6ND_NS(tgt=R0)
                    / ICMPv6NDOptSrcLLAddr(lladdr=r6.H0_MAC) / big_opt)
    f = bytes(ns)
    assert len(f) > 2048
    before = r6.stack.pool.in_use
    m = chain(r6.stack.pool, f, [1500, len(f) - 1500])
    m.rcvif = r6.if0
    r6.if0.if_input(r6.if0, [m])
    assert r6.stack.pool.in_use == before and r6.if0.in_discards["nobufs"] == 1
    assert take(r6.if0) == []


def test_each_multicast_nd_frame_counts_once_in_omcasts(r6):
    # Two DAD probes per interface (link-local and global), each one frame.
    assert [len([f for f in r6.dad_probes if f.src == mac]) for mac in (r6.MAC0, r6.MAC1)] \
        == [2, 2]
    assert (r6.if0.omcasts, r6.if1.omcasts) == (2, 2)
    assert (r6.if0.opackets_inet6, r6.if1.opackets_inet6) == (2, 2)


def test_invalid_nd_messages_count_as_input_errors(r6):
    # A solicited NA to a group (§7.1.2) is dropped: counted in ierrors too.
    e0 = r6.if0.ierrors
    inject(r6.if0, r6.from_h0(IPv6(src=H0, dst="ff02::1", hlim=255)
                              / ICMPv6ND_NA(tgt=H0, S=1, R=0, O=1)))
    assert r6.if0.in_discards["nd6_invalid"] == 1 and r6.if0.ierrors == e0 + 1


@pytest.mark.parametrize("pad", [0, 6], ids=["exact", "padded"])
def test_an_empty_payload_is_forwarded_padding_or_not(r6, pad):
    # Payload length 0 with No Next Header (59): a valid empty packet; the
    # link's padding is trimmed.
    resolved_h1(r6)
    pkt = bytes(IPv6(src=H0, dst=H1, nh=59, plen=0, hlim=5))
    inject(r6.if0, Ether(dst=r6.MAC0, src=r6.H0_MAC, type=0x86DD) / Raw(pkt + bytes(pad)))
    (f,) = take(r6.if1)
    assert bytes(f[IPv6]) == pkt[:7] + b"\x04" + pkt[8:]


@pytest.mark.parametrize("pad", [0, 6], ids=["exact", "padded"])
def test_a_jumbogram_is_refused_padding_or_not(r6, pad):
    # Payload length 0 before a hop-by-hop header announces a jumbogram
    # (RFC 2675), which no Ethernet carries: too short, whatever follows.
    resolved_h1(r6)
    pkt = bytes(IPv6(src=H0, dst=H1, nh=0, plen=0, hlim=5))
    inject(r6.if0, Ether(dst=r6.MAC0, src=r6.H0_MAC, type=0x86DD) / Raw(pkt + bytes(pad)))
    assert take(r6.if1) == [] and r6.stack.ip6.stats()["tooshort"] == 1
