"""iopkt.netinet6.icmp6 on its own: echo replies, the dispatch of what
arrives, and the error messages of RFC 4443 with the rules of its §2.4
(what never gets an error, the quote of at most 1280 - 48 bytes, the rate
limit), with the counters and histograms each case moves.

Every frame the stack sends is compared byte for byte with what scapy
builds for it (so scapy's checksum is checked too); hypothesis varies the
packet sizes, payloads and addresses where a rule holds for every input.
"""

from contextlib import contextmanager

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from net6 import H0, H1, R0, R1, Router6, inject, na, take
from scapy.layers.inet import TCP, UDP
from scapy.layers.inet6 import (
    ICMPv6DestUnreach,
    ICMPv6EchoReply,
    ICMPv6EchoRequest,
    ICMPv6ND_NS,
    ICMPv6NDOptSrcLLAddr,
    ICMPv6PacketTooBig,
    ICMPv6ParamProblem,
    ICMPv6TimeExceeded,
    IPv6,
    IPv6ExtHdrDestOpt,
    IPv6ExtHdrHopByHop,
    in6_chksum,
)
from scapy.layers.l2 import Ether
from scapy.packet import Raw

from iopkt.kern.mbuf import M_BCAST, M_MCAST, M_PKTHDR, M_CSUM_TCPv6, M_CSUM_UDPv6
from iopkt.netinet.in_offload import m_cksum
from iopkt.netinet6.icmp6 import ICMP6LIM_BURST, Icmp6, icmp6_cksum, icmp6_packet
from iopkt.netinet6.in6 import aton6, ntoa6, pseudo_sum
from iopkt.stack.stack import Stack

from fakenet import FakeClock
from offload_frames import chain, pseudo_seed
from spy import calls

LL = "fe80::aa"                      # a link-local host on fk0 (H0's MAC)
NOWHERE = "2001:db8::1"              # no route
QMAX = 1280 - 40 - 8                 # the most an error quotes
SETTINGS = settings(max_examples=60, deadline=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture,
                                           HealthCheck.too_slow])


# -- helpers ---------------------------------------------------------------------
@pytest.fixture
def r6(stack, clock):
    return Router6(stack, clock)


@contextmanager
def fresh():
    """A Router6 of its own (a hypothesis example each), checked for leaks."""
    clock = FakeClock()
    st_ = Stack("unit", nmbclusters=256, clock=clock)
    try:
        r = Router6(st_, clock)
        yield r
        st_.shutdown()
        assert st_.pool.in_use == 0 and st_.pool.ext_in_use == 0
    finally:
        st_.close()


def sent(ifp) -> list[bytes]:
    """The IPv6 packets `ifp` sent since the last call (Ethernet header off)."""
    out = [f[14:] for f in ifp.sent]
    ifp.sent.clear()
    return out


def learn(r6, ifp, host, mac):
    """Make `host` a REACHABLE neighbour on `ifp` (its NS, then its NA)."""
    ours = R0 if ifp is r6.if0 else R1
    sn = ntoa6((0xFF02 << 112) | (1 << 32) | (0xFF << 24) | (aton6(ours) & 0xFFFFFF))
    inject(ifp, Ether(dst="33:33:ff:00:00:01", src=mac) / IPv6(src=host, dst=sn, hlim=255)
           / ICMPv6ND_NS(tgt=ours) / ICMPv6NDOptSrcLLAddr(lladdr=mac))
    inject(ifp, na(r6, ifp, host, mac, ours))
    ifp.sent.clear()
    assert ifp.nd6info[aton6(host)].state == "REACHABLE"


def both(r6):
    learn(r6, r6.if0, H0, r6.H0_MAC)
    learn(r6, r6.if1, H1, r6.H1_MAC)
    return r6


@pytest.fixture
def rr(r6):
    """Router6 with H0 and H1 resolved."""
    return both(r6)


def counts(icmp6) -> dict:
    d = dict(icmp6.stats)
    d.update({"in " + k: v for k, v in icmp6.inhist.items()})
    d.update({"out " + k: v for k, v in icmp6.outhist.items()})
    return d


class Watch:
    """What moved in icmp6's counters and histograms since it was made."""

    def __init__(self, icmp6):
        self.icmp6 = icmp6
        self.before = counts(icmp6)

    def delta(self) -> dict:
        now = counts(self.icmp6)
        return {k: v - self.before.get(k, 0) for k, v in now.items()
                if v != self.before.get(k, 0)}


def error_of(src, dst, layer, offending: bytes, hlim=64) -> bytes:
    """The ICMPv6 error scapy builds: `layer` quoting `offending` whole."""
    return bytes(IPv6(src=src, dst=dst, hlim=hlim) / layer / Raw(offending))


def udp(src=H0, dst=R0, n=1, sport=1000, dport=9, **kw) -> bytes:
    return bytes(IPv6(src=src, dst=dst, **kw) / UDP(sport=sport, dport=dport)
                 / bytes(i & 0xFF for i in range(n)))


def icmp(src, dst, t, code=0, body=b"\0" * 4 + bytes(40), **kw) -> bytes:
    """An ICMPv6 message of any type, its checksum right."""
    p = IPv6(src=src, dst=dst, nh=58, **kw) / Raw(bytes((t, code, 0, 0)) + body)
    b = bytearray(bytes(p))
    c = in6_chksum(58, IPv6(bytes(p)), bytes(b[40:]))
    b[42:44] = c.to_bytes(2, "big")
    return bytes(b)


def mbuf(r6, pkt: bytes, ifp=None, flags=0):
    m = r6.stack.pool.from_bytes(pkt)
    m.rcvif = ifp or r6.if0
    m.flags |= flags
    return m


def eth0(r6, pkt: bytes, dst=None) -> bytes:
    return bytes(Ether(dst=dst or r6.MAC0, src=r6.H0_MAC, type=0x86DD)) + pkt


def eth1(r6, pkt: bytes) -> bytes:
    return bytes(Ether(dst=r6.MAC1, src=r6.H1_MAC, type=0x86DD)) + pkt


def record_flags(ifp) -> list:
    """Wrap `ifp`'s transmit to record each mbuf's flags as it leaves."""
    flags = []
    tx = ifp.if_transmit

    def transmit(ifp, pkts):
        flags.extend(m.flags for m in pkts)
        tx(ifp, pkts)
    ifp.if_transmit = transmit
    return flags


# -- the counters -----------------------------------------------------------------
def test_a_new_icmp6_has_netbsds_counters_at_zero_and_empty_histograms(stack):
    ic = stack.icmp6
    assert ic.stats == {"error": 0, "canterror": 0, "toofreq": 0, "tooshort": 0,
                        "checksum": 0, "reflect": 0, "nobufs": 0}
    assert ic.inhist == {} and ic.outhist == {}
    assert ic.stack is stack


def test_every_type_is_counted_in_by_its_netstat_name_and_code(r6):
    w = Watch(r6.stack.icmp6)
    for t in (1, 2, 3, 4, 129, 200):
        inject(r6.if0, eth0(r6, icmp(H0, R0, t, code=t & 7)))
    for t in (133, 134, 137):
        inject(r6.if0, eth0(r6, icmp(H0, R0, t, hlim=255)))
    assert sent(r6.if0) == []
    assert w.delta() == {"in unreach/1": 1, "in toobig/2": 1, "in timxceed/3": 1,
                         "in paramprob/4": 1, "in echoreply/1": 1, "in 200/0": 1,
                         "in routersol/0": 1, "in routeradv/0": 1, "in redirect/0": 1}


# -- echo ---------------------------------------------------------------------------
def test_an_echo_request_is_answered_in_place_byte_for_byte(rr):
    w = Watch(rr.stack.icmp6)
    req = IPv6(src=H0, dst=R0, hlim=7) / ICMPv6EchoRequest(id=0x1234, seq=77, data=b"hello!!")
    inject(rr.if0, rr.from_h0(req))
    inject(rr.if0, rr.from_h0(req))
    assert sent(rr.if0) == [bytes(IPv6(src=R0, dst=H0, hlim=64)
                                  / ICMPv6EchoReply(id=0x1234, seq=77, data=b"hello!!"))] * 2
    assert w.delta() == {"reflect": 2, "in echo/0": 2, "out echoreply/0": 2}


def test_an_echo_request_of_eight_bytes_is_answered_and_its_code_kept(rr, monkeypatch):
    w = Watch(rr.stack.icmp6)
    pullups = calls(monkeypatch, rr.stack.pool, "pullup")
    inject(rr.if0, eth0(rr, icmp(H0, R0, 128, code=5, body=b"\x00\x01\x00\x02")))
    (got,) = sent(rr.if0)
    assert got == icmp(R0, H0, 129, code=5, body=b"\x00\x01\x00\x02", hlim=64)
    assert w.delta() == {"reflect": 1, "in echo/5": 1, "out echoreply/5": 1}
    assert pullups == []                    # the 8 bytes are whole in the one mbuf


@SETTINGS
@given(data=st.binary(max_size=1400), ident=st.integers(0, 0xFFFF),
       seq=st.integers(0, 0xFFFF), hlim=st.integers(2, 255), host=st.integers(2, 0xFFFF))
def test_any_echo_request_gets_the_reply_scapy_builds(data, ident, seq, hlim, host):
    # The checksum of the reply (scapy's) holds for every payload, odd or even.
    with fresh() as r6:
        h = ntoa6(aton6(H0) - 2 + host)
        learn(r6, r6.if0, h, r6.H0_MAC)
        inject(r6.if0, r6.from_h0(IPv6(src=h, dst=R0, hlim=hlim)
                                  / ICMPv6EchoRequest(id=ident, seq=seq, data=data)))
        assert sent(r6.if0) == [bytes(IPv6(src=R0, dst=h, hlim=64)
                                      / ICMPv6EchoReply(id=ident, seq=seq, data=data))]


def test_an_echo_behind_a_hop_by_hop_header_is_answered_with_the_header_kept(rr):
    hbh = IPv6ExtHdrHopByHop(options=[])
    inject(rr.if0, rr.from_h0(IPv6(src=H0, dst=R0, hlim=9) / hbh
                              / ICMPv6EchoRequest(id=3, seq=4, data=b"abc")))
    assert sent(rr.if0) == [bytes(IPv6(src=R0, dst=H0, hlim=64) / IPv6ExtHdrHopByHop(options=[])
                                  / ICMPv6EchoReply(id=3, seq=4, data=b"abc"))]
    assert rr.stack.icmp6.outhist == {"echoreply/0": 1}


def test_an_echo_to_all_nodes_is_answered_from_our_address_as_unicast(rr):
    flags = record_flags(rr.if1)
    w = Watch(rr.stack.icmp6)
    inject(rr.if1, Ether(dst="33:33:00:00:00:01", src=rr.H1_MAC)
           / IPv6(src=H1, dst="ff02::1") / ICMPv6EchoRequest(id=1, seq=2))
    assert sent(rr.if1) == [bytes(IPv6(src=R1, dst=H1, hlim=64) / ICMPv6EchoReply(id=1, seq=2))]
    # it leaves as a unicast frame: the link-level multicast mark is gone
    assert flags == [M_PKTHDR]
    assert w.delta() == {"reflect": 1, "in echo/0": 1, "out echoreply/0": 1}


@pytest.mark.parametrize("dst", ["ff02::1", "ll0"])
def test_an_echo_from_a_link_local_address_is_answered_from_ours_on_that_link(r6, dst):
    ll0 = ntoa6(r6.ll0)
    to = ll0 if dst == "ll0" else dst
    mac = "33:33:00:00:00:01" if dst == "ff02::1" else r6.MAC0
    inject(r6.if0, Ether(dst=mac, src=r6.H0_MAC) / IPv6(src=LL, dst=to)
           / ICMPv6EchoRequest(id=5, seq=6, data=b"ll"))
    (ns,) = take(r6.if0)                            # the reply waits for LL's address
    assert (ns[IPv6].src, ns[ICMPv6ND_NS].tgt) == (ll0, LL)
    inject(r6.if0, na(r6, r6.if0, LL, r6.H0_MAC, ll0))
    assert sent(r6.if0) == [bytes(IPv6(src=ll0, dst=LL, hlim=64)
                                  / ICMPv6EchoReply(id=5, seq=6, data=b"ll"))]
    assert r6.stack.icmp6.stats["reflect"] == 1


def test_an_echo_to_a_group_from_a_link_we_have_no_address_on_is_dropped(r6):
    r6.stack.ip6.del_address(r6.if0, r6.ll0)
    w = Watch(r6.stack.icmp6)
    inject(r6.if0, Ether(dst="33:33:00:00:00:01", src=r6.H0_MAC)
           / IPv6(src=LL, dst="ff02::1") / ICMPv6EchoRequest())
    assert sent(r6.if0) == [] and w.delta() == {"in echo/0": 1}


@pytest.mark.parametrize("cut", [40, 41, 42, 44, 47])
def test_an_echo_split_inside_its_icmp6_header_is_pulled_up_and_answered(rr, cut):
    pkt = bytes(IPv6(src=H0, dst=R0) / ICMPv6EchoRequest(id=9, seq=cut, data=b"q" * 100))
    m = chain(rr.stack.pool, eth0(rr, pkt), [14 + cut])
    assert m.len == 14 + cut and m.next is not None
    inject(rr.if0, m)
    assert sent(rr.if0) == [bytes(IPv6(src=R0, dst=H0, hlim=64)
                                  / ICMPv6EchoReply(id=9, seq=cut, data=b"q" * 100))]


def split_ext(rr, pkt: bytes, cut: int, freed: list):
    """`pkt` in two: its first `cut` bytes in external storage, the rest in
    a cluster."""
    pool = rr.stack.pool
    tail = pool.get()
    tail.off, tail.flags = 0, 0
    tail.view[:len(pkt) - cut] = pkt[cut:]
    tail.len = len(pkt) - cut
    m = pool.get_ext(bytearray(pkt[:cut]), 0, cut, freed.append, "ext")
    m.next, m.pkt_len, m.rcvif = tail, len(pkt), rr.if0
    return m


@contextmanager
def dry(pool):
    """Every cluster of `pool` taken for the time of the block."""
    held = []
    while (x := pool.get()) is not None:
        held.append(x)
    try:
        yield
    finally:
        for x in held:
            pool.freem(x)


def test_a_split_message_with_no_cluster_for_the_pullup_is_counted_nobufs(rr):
    pool = rr.stack.pool
    pkt = bytes(IPv6(src=H0, dst=R0) / ICMPv6EchoRequest(data=b"n" * 30))
    freed = []
    ms = [split_ext(rr, pkt, 42, freed) for _ in range(2)]
    w = Watch(rr.stack.icmp6)
    for m in ms:
        with dry(pool):                             # (a chain freed gives its tail back)
            rr.stack.icmp6.input(m, 40)
    assert freed == ["ext", "ext"] and pool.in_use == 0 and sent(rr.if0) == []
    assert w.delta() == {"nobufs": 2}


@pytest.mark.parametrize("n", [0, 1, 7])
def test_a_message_shorter_than_eight_bytes_is_counted_tooshort(rr, n):
    w = Watch(rr.stack.icmp6)
    for _ in range(2):
        inject(rr.if0, eth0(rr, bytes(IPv6(src=H0, dst=R0, nh=58) / Raw(b"\x80" * n))))
    assert sent(rr.if0) == []
    assert w.delta() == {"tooshort": 2}


@SETTINGS
@given(bit=st.integers(0, 8 * 40 - 1))
def test_any_bit_flipped_in_an_echo_request_fails_the_checksum(bit):
    with fresh() as r6:
        learn(r6, r6.if0, H0, r6.H0_MAC)
        b = bytearray(bytes(IPv6(src=H0, dst=R0) / ICMPv6EchoRequest(id=1, seq=2,
                                                                     data=b"x" * 32)))
        b[40 + bit // 8] ^= 0x80 >> (bit % 8)
        w = Watch(r6.stack.icmp6)
        inject(r6.if0, eth0(r6, bytes(b)))
        assert sent(r6.if0) == [] and w.delta() == {"checksum": 1}


def test_a_checksum_over_the_message_alone_without_the_pseudo_header_fails(rr):
    b = bytearray(bytes(IPv6(src=H0, dst=R0) / ICMPv6EchoRequest(data=b"p")))
    b[42:44] = b"\0\0"
    s = 0
    for i in range(40, len(b), 2):
        s += int.from_bytes(b[i:i + 2].ljust(2, b"\0"), "big")
    b[42:44] = (0xFFFF - s % 0xFFFF).to_bytes(2, "big")
    w = Watch(rr.stack.icmp6)
    inject(rr.if0, eth0(rr, bytes(b)), eth0(rr, bytes(b)))
    assert sent(rr.if0) == [] and w.delta() == {"checksum": 2}


# -- what goes to Neighbour Discovery -------------------------------------------------
@pytest.mark.parametrize("t,key", [(133, "rx_rs"), (134, "rx_ra"), (137, "rx_redirect")])
def test_router_messages_and_redirects_go_to_nd6(r6, t, key):
    nd = r6.stack.nd6.stats
    before = dict(nd)
    inject(r6.if0, eth0(r6, icmp(H0, R0, t, hlim=255)))
    assert {k: v - before[k] for k, v in nd.items() if v != before[k]} == {key: 1}


@pytest.mark.parametrize("t", [127, 130, 132, 138, 255])
def test_types_around_nd_are_neither_nd_nor_echo(r6, t):
    nd = dict(r6.stack.nd6.stats)
    w = Watch(r6.stack.icmp6)
    inject(r6.if0, eth0(r6, icmp(H0, R0, t, hlim=255)))
    assert r6.stack.nd6.stats == nd and sent(r6.if0) == []
    assert w.delta() == {f"in {t}/0": 1}


def test_a_neighbour_solicitation_is_answered_by_nd6_to_its_sender(r6):
    inject(r6.if0, Ether(dst="33:33:ff:00:00:01", src=r6.H0_MAC)
           / IPv6(src=H0, dst="ff02::1:ff00:1", hlim=255) / ICMPv6ND_NS(tgt=R0)
           / ICMPv6NDOptSrcLLAddr(lladdr=r6.H0_MAC))
    (f,) = take(r6.if0)
    assert (f[IPv6].src, f[IPv6].dst, f.dst) == (R0, H0, r6.H0_MAC)
    assert r6.stack.icmp6.inhist == {"neighborsol/0": 1}
    inject(r6.if0, na(r6, r6.if0, H0, r6.H0_MAC, R0))
    assert r6.if0.nd6info[aton6(H0)].state == "REACHABLE"
    inject(r6.if0, na(r6, r6.if0, H0, r6.H0_MAC, "ff02::1"))      # solicited to a group
    assert r6.stack.nd6.stats["invalid"] == 1


# -- errors: the message -------------------------------------------------------------
def test_port_unreachable_is_the_message_scapy_builds_quoting_the_packet(rr):
    w = Watch(rr.stack.icmp6)
    pkt = udp(n=33)
    inject(rr.if0, eth0(rr, pkt))
    assert sent(rr.if0) == [error_of(R0, H0, ICMPv6DestUnreach(code=4), pkt)]
    assert w.delta() == {"error": 1, "out unreach/4": 1}


def test_an_error_about_a_packet_from_the_other_side_comes_from_that_sides_address(rr):
    pkt = udp(src=H1, dst=NOWHERE, n=5)
    inject(rr.if1, eth1(rr, pkt))
    assert sent(rr.if1) == [error_of(R1, H1, ICMPv6DestUnreach(code=0), pkt)]
    assert rr.stack.icmp6.outhist == {"unreach/0": 1}


def test_time_exceeded_packet_too_big_and_parameter_problem(rr):
    ic = rr.stack.icmp6
    hop = bytes(IPv6(src=H0, dst=H1, hlim=1) / ICMPv6EchoRequest(seq=1))
    inject(rr.if0, eth0(rr, hop))
    rr.if1.mtu = 1300
    big = bytes(IPv6(src=H0, dst=H1) / ICMPv6EchoRequest(seq=2, data=b"b" * 1300))
    inject(rr.if0, eth0(rr, big))
    unk = bytes(IPv6(src=H0, dst=R0) / IPv6ExtHdrDestOpt(nh=253) / (b"u" * 8))
    inject(rr.if0, eth0(rr, unk))
    assert sent(rr.if0) == [
        error_of(R0, H0, ICMPv6TimeExceeded(code=0), hop),
        error_of(R0, H0, ICMPv6PacketTooBig(mtu=1300), big[:QMAX]),
        error_of(R0, H0, ICMPv6ParamProblem(code=1, ptr=40), unk)]
    assert ic.outhist == {"timxceed/0": 1, "toobig/0": 1, "paramprob/1": 1}
    assert ic.stats["error"] == 3


@pytest.mark.parametrize("param", [0, 1, 1280, 0x01020304, 0xFFFFFFFF])
def test_the_parameter_fills_the_four_bytes_after_the_checksum(rr, param):
    pkt = udp()
    rr.stack.icmp6.error(mbuf(rr, pkt), 4, 0, param)
    assert sent(rr.if0) == [error_of(R0, H0, ICMPv6ParamProblem(code=0, ptr=param), pkt)]


@pytest.mark.parametrize("nh", [59, 58])
def test_a_packet_of_a_bare_ipv6_header_is_quoted_and_a_shorter_one_ignored(rr, nh):
    # nh 58 with no byte of ICMPv6 behind: nothing says it is an error.
    w = Watch(rr.stack.icmp6)
    hdr = bytes(IPv6(src=H0, dst=R0, nh=nh, plen=0))
    rr.stack.icmp6.error(mbuf(rr, hdr), 4, 1, 6)
    rr.stack.icmp6.error(mbuf(rr, hdr[:39]), 4, 1, 6)
    assert sent(rr.if0) == [error_of(R0, H0, ICMPv6ParamProblem(code=1, ptr=6), hdr)]
    assert w.delta() == {"error": 1, "out paramprob/1": 1}


@pytest.mark.parametrize("nh,n,decide", [
    (17, 1400, [256]),          # the upper layer within the first 256 bytes
    (1, 1400, [256]),           # whatever its number (1: ICMP for IPv4)
    (17, 0, [40]),              # a bare header, read whole once: nothing more to find
], ids=["udp", "nh_1", "bare_header"])
def test_an_error_reads_at_most_256_bytes_to_decide_then_its_quote(rr, monkeypatch,
                                                                   nh, n, decide):
    # Whether a packet is an ICMPv6 error shows in its first 256 bytes but
    # for a long extension chain: a 1400-byte packet is not copied whole.
    pkt = bytes(IPv6(src=H0, dst=R0, nh=nh) / (b"\x80" * n))
    copies = calls(monkeypatch, rr.stack.pool, "copydata")
    rr.stack.icmp6.error(mbuf(rr, pkt), 1, 4)
    assert [a[1:] for a in copies] == [(0, k) for k in decide + [min(len(pkt), QMAX)]]
    assert sent(rr.if0) == [error_of(R0, H0, ICMPv6DestUnreach(code=4), pkt[:QMAX])]


@SETTINGS
@given(n=st.integers(0, 9000), code=st.integers(0, 255))
def test_an_error_quotes_min_len_and_1232_bytes_and_is_never_over_1280(n, code):
    with fresh() as r6:
        learn(r6, r6.if0, H0, r6.H0_MAC)
        pkt = udp(n=n)
        r6.stack.icmp6.error(mbuf(r6, pkt), 1, code)
        (got,) = sent(r6.if0)
        assert len(got) == 48 + min(len(pkt), QMAX) <= 1280
        assert got == error_of(R0, H0, ICMPv6DestUnreach(code=code), pkt[:QMAX])


@pytest.mark.parametrize("flag,proto,dport", [(M_CSUM_UDPv6, UDP, 9), (M_CSUM_TCPv6, TCP, 80)])
def test_a_partial_checksum_is_completed_in_the_quote(rr, flag, proto, dport):
    pkt = bytes(IPv6(src=H0, dst=R0) / proto(sport=1000, dport=dport) / (b"c" * 21))
    at = 6 if proto is UDP else 16
    b = bytearray(pkt)
    b[40 + at:42 + at] = pseudo_seed(pkt, 40).to_bytes(2, "big")
    m = rr.stack.pool.from_bytes(eth0(rr, bytes(b)))
    m.csum_flags, m.csum_data = flag, (40 << 16) | at
    inject(rr.if0, m)
    assert sent(rr.if0) == [error_of(R0, H0, ICMPv6DestUnreach(code=4), pkt)]


def test_an_error_to_a_link_local_source_leaves_by_the_link_it_came_from(r6):
    ll0 = ntoa6(r6.ll0)
    pkt = bytes(IPv6(src=LL, dst=H1) / ICMPv6EchoRequest(seq=3))
    inject(r6.if0, eth0(r6, pkt))
    (ns,) = take(r6.if0)
    assert ns[ICMPv6ND_NS].tgt == LL
    inject(r6.if0, na(r6, r6.if0, LL, r6.H0_MAC, ll0))
    assert sent(r6.if0) == [error_of(ll0, LL, ICMPv6DestUnreach(code=2), pkt)]
    assert r6.stack.icmp6.outhist == {"unreach/2": 1}


def test_no_link_local_address_to_answer_a_link_local_source_is_canterror(r6):
    r6.stack.ip6.del_address(r6.if0, r6.ll0)
    w = Watch(r6.stack.icmp6)
    inject(r6.if0, eth0(r6, bytes(IPv6(src=LL, dst=H1) / ICMPv6EchoRequest(seq=1))))
    inject(r6.if0, eth0(r6, bytes(IPv6(src=LL, dst=H1) / ICMPv6EchoRequest(seq=2))))
    assert sent(r6.if0) == [] and sent(r6.if1) == []
    assert w.delta() == {"canterror": 2}


def test_no_cluster_for_the_error_is_counted_nobufs(rr):
    pool = rr.stack.pool
    pkt = udp(n=20)
    freed = []
    ms = [pool.get_ext(bytearray(pkt), 0, len(pkt), freed.append, "ext") for _ in range(2)]
    w = Watch(rr.stack.icmp6)
    with dry(pool):
        for m in ms:
            m.rcvif = rr.if0
            rr.stack.icmp6.error(m, 1, 4)
    assert freed == ["ext", "ext"] and sent(rr.if0) == []
    assert w.delta() == {"nobufs": 2}


# -- errors: when none is sent (RFC 4443 §2.4 (e)) -------------------------------------
@pytest.mark.parametrize("t", [0, 1, 2, 3, 4, 100, 127, 128, 129, 133, 135, 136, 137, 138, 255])
def test_no_error_about_an_icmp6_error_or_a_redirect(rr, t):
    w = Watch(rr.stack.icmp6)
    pkt = icmp(H0, H1, t, hlim=1)
    inject(rr.if0, eth0(rr, pkt))
    if t < 128 or t == 137:
        assert sent(rr.if0) == [] and w.delta() == {"canterror": 1}
    else:
        assert sent(rr.if0) == [error_of(R0, H0, ICMPv6TimeExceeded(), pkt)]
        assert w.delta() == {"error": 1, "out timxceed/0": 1}


@pytest.mark.parametrize("t", [1, 128])
def test_an_icmp6_error_behind_extension_headers_is_still_one(rr, t):
    w = Watch(rr.stack.icmp6)
    body = icmp(H0, H1, t)[40:]                     # (its checksum is not looked at)
    pkt = bytes(IPv6(src=H0, dst=H1, hlim=1) / IPv6ExtHdrHopByHop(nh=60)
                / IPv6ExtHdrDestOpt(nh=58) / Raw(body))
    inject(rr.if0, eth0(rr, pkt))
    if t == 1:
        assert sent(rr.if0) == [] and w.delta() == {"canterror": 1}
    else:
        assert sent(rr.if0) == [error_of(R0, H0, ICMPv6TimeExceeded(), pkt)]


def test_udp_whose_first_byte_looks_like_an_error_type_is_answered(rr):
    # The type check is for ICMPv6 only: a UDP source port 0x0100 is no error.
    pkt = udp(sport=0x0100)
    inject(rr.if0, eth0(rr, pkt))
    assert sent(rr.if0) == [error_of(R0, H0, ICMPv6DestUnreach(code=4), pkt)]


@pytest.mark.parametrize("src", ["ff0e::1", "ff02::1", "ff00::", "fff0::5", "::", "::1",
                                 R1, R0])
def test_no_error_to_a_multicast_unspecified_loopback_or_own_source(rr, src):
    w = Watch(rr.stack.icmp6)
    inject(rr.if0, eth0(rr, bytes(IPv6(src=src, dst=H1, hlim=1) / ICMPv6EchoRequest())))
    assert sent(rr.if0) == [] and sent(rr.if1) == []
    assert w.delta() == {"canterror": 1}


@pytest.mark.parametrize("src", ["::2", "::ffff", "fe00::1", "feff::1"])
def test_sources_next_to_the_forbidden_ones_get_their_error(rr, src):
    # Nowhere to send it (no route), but it is made and counted.
    w = Watch(rr.stack.icmp6)
    inject(rr.if0, eth0(rr, bytes(IPv6(src=src, dst=H1, hlim=1) / ICMPv6EchoRequest())))
    assert w.delta() == {"error": 1, "out timxceed/0": 1}
    assert rr.stack.ip6.stats()["noroute"] == 1


@pytest.mark.parametrize("t,code,param,sent_", [
    (1, 0, 0, False), (1, 4, 0, False), (3, 0, 0, False), (4, 0, 0, False),
    (4, 1, 40, False), (4, 3, 0, False),
    (2, 0, 1280, True), (2, 1, 1280, True), (2, 2, 0, True), (4, 2, 42, True)])
@pytest.mark.parametrize("how", ["group", "mcast", "bcast"])
def test_no_error_about_a_multicast_packet_but_packet_too_big_and_param_problem_2(
        rr, t, code, param, sent_, how):
    # RFC 4443 §2.4 (e.3): Packet Too Big (any code) and Parameter Problem
    # code 2 are sent about a packet to a group or in a link multicast frame.
    pkt = udp(dst="ff0e::1234" if how == "group" else R0)
    flags = {"group": 0, "mcast": M_MCAST, "bcast": M_BCAST}[how]
    w = Watch(rr.stack.icmp6)
    rr.stack.icmp6.error(mbuf(rr, pkt, flags=flags), t, code, param)
    name = {1: "unreach", 2: "toobig", 3: "timxceed", 4: "paramprob"}[t]
    if sent_:
        layer = (ICMPv6PacketTooBig(code=code, mtu=param) if t == 2
                 else ICMPv6ParamProblem(code=code, ptr=param))
        assert sent(rr.if0) == [error_of(R0, H0, layer, pkt)]
        assert w.delta() == {"error": 1, f"out {name}/{code}": 1}
    else:
        assert sent(rr.if0) == [] and w.delta() == {"canterror": 1}


def test_udp_to_all_nodes_or_in_a_link_multicast_frame_is_not_answered(rr):
    w = Watch(rr.stack.icmp6)
    inject(rr.if0, eth0(rr, udp(dst="ff02::1"), dst="33:33:00:00:00:01"))
    inject(rr.if0, eth0(rr, udp(), dst="33:33:00:00:00:01"))
    inject(rr.if0, eth0(rr, udp(), dst="ff:ff:ff:ff:ff:ff"))
    assert sent(rr.if0) == [] and w.delta() == {"canterror": 3}
    inject(rr.if0, eth0(rr, udp()))                  # the same, unicast: answered
    assert len(sent(rr.if0)) == 1


# -- errors: the rate limit --------------------------------------------------------------
def noroute(rr, n):
    for i in range(n):
        inject(rr.if0, eth0(rr, udp(dst=NOWHERE, sport=i + 1)))
    return len(sent(rr.if0))


def test_errors_come_in_a_burst_of_50_then_100_a_second(rr, clock):
    w = Watch(rr.stack.icmp6)
    assert noroute(rr, ICMP6LIM_BURST + 3) == 50
    assert w.delta() == {"error": 50, "toofreq": 3, "out unreach/0": 50}
    clock.advance(0.0101)                            # one token back
    assert noroute(rr, 3) == 1
    clock.advance(0.0301)
    assert noroute(rr, 5) == 3
    clock.advance(3600)                              # idle: never more than the burst
    assert noroute(rr, 60) == 50
    assert rr.stack.icmp6.stats["toofreq"] == 3 + 2 + 2 + 10


def test_packets_that_get_no_error_take_no_token(rr):
    assert noroute(rr, 49) == 49
    for _ in range(5):
        inject(rr.if0, eth0(rr, udp(src="ff0e::1", dst=NOWHERE)))
    assert noroute(rr, 2) == 1
    assert rr.stack.icmp6.stats == dict(rr.stack.icmp6.stats, error=50, canterror=5, toofreq=1)


def test_the_limit_is_the_rate_and_burst_given(rr, clock):
    rr.stack.icmp6 = Icmp6(rr.stack, rate=10, burst=2)
    assert noroute(rr, 3) == 2
    clock.advance(0.05)
    assert noroute(rr, 1) == 0
    clock.advance(0.0501)
    assert noroute(rr, 2) == 1
    assert rr.stack.icmp6.stats["toofreq"] == 3


# -- icmp6_packet and icmp6_cksum ---------------------------------------------------------
addr = st.integers(0, (1 << 128) - 1)


@SETTINGS
@given(src=addr, dst=addr, hlim=st.integers(0, 255), t=st.integers(0, 255),
       body=st.binary(max_size=1500), cuts=st.lists(st.integers(1, 1547), max_size=3))
def test_icmp6_packet_is_the_packet_scapy_builds_and_its_checksum_holds_chained(
        stack, src, dst, hlim, t, body, cuts):
    msg = bytes((t, 0, 0, 0)) + body
    m = icmp6_packet(stack.pool, src, dst, hlim, msg)
    got = m.tobytes()
    stack.pool.freem(m)
    want = bytes(IPv6(src=ntoa6(src), dst=ntoa6(dst), hlim=hlim, nh=58) / Raw(msg))
    c = in6_chksum(58, IPv6(want), msg)
    assert got == want[:42] + (c or 0xFFFF).to_bytes(2, "big") + want[44:]
    # the same checksum over the packet cut in pieces, odd ones too
    x = chain(stack.pool, got[:42] + b"\0\0" + got[44:], cuts)
    assert icmp6_cksum(x, 40, src, dst) == int.from_bytes(got[42:44], "big")
    stack.pool.freem(x)


def test_a_zero_sum_gives_checksum_0xffff_never_0(stack):
    src, dst = aton6(R0), aton6(H0)
    msg = bytearray(b"\x01\x00\x00\x00\x00\x00\x00\x00" + b"z" * 9)
    m = stack.pool.from_bytes(bytes(40) + bytes(msg))
    s = (pseudo_sum(src, dst, len(msg), 58) + m_cksum(m, 40, len(msg))) % 0xFFFF
    stack.pool.freem(m)
    msg[4:6] = (0xFFFF - s).to_bytes(2, "big")      # now the sum is 0 (mod 0xFFFF)
    m = icmp6_packet(stack.pool, src, dst, 64, bytes(msg))
    assert m.tobytes()[42:44] == b"\xff\xff"
    stack.pool.freem(m)


def test_icmp6_packet_from_a_dry_pool_is_none(stack):
    with dry(stack.pool):
        assert icmp6_packet(stack.pool, 1 << 127, 2, 64, bytes(8)) is None
