"""iopkt.ipv4: header checks, forwarding, fragmentation, ICMP errors.

Topology (fixture `net`, neighbours already resolved):

    H0 10.0.0.2 --- fk0 10.0.0.1/24  [stack]  fk1 10.0.1.1/24 --- H1 10.0.1.2
"""

import pytest
from scapy.compat import raw
from scapy.layers.inet import ICMP, IP, TCP, UDP, IPOption_RR, IPOption_Security, defragment
from scapy.layers.l2 import Ether

from iopkt.kern.mbuf import M_CSUM_TCPv4, M_CSUM_TSOv4, M_CSUM_UDPv4
from iopkt.net.ifnet import IFCAP_CSUM_TCPv4_Rx, IFCAP_CSUM_TCPv4_Tx, IFCAP_TSOv4
from iopkt.net.route import ntoa
from iopkt.netinet.cksum import cksum_sum, fold, in_cksum
from iopkt.netinet.ipv4 import GOOD_SRC_MAX, _copied_options_header
from iopkt.stack.stack import Stack

from fakenet import FakeClock, Router, aton, fake_if, inject, ip_of, take
from offload_frames import chain, pseudo_seed
from spy import CountingDict, calls

R = Router


def udp(ttl=64, ident=0x1111, payload=b"hello, router", dst=R.H1, src=R.H0, **kw):
    return IP(src=src, dst=dst, ttl=ttl, id=ident, **kw) / UDP(sport=1234, dport=5678) / payload


def stats(stack, *names):
    return tuple(getattr(stack.ip, "ips_" + n) for n in names)


def discards(ifp):
    return {k: v for k, v in ifp.in_discards.items() if v}


def header_ok(ipbytes: bytes) -> bool:
    ihl = (ipbytes[0] & 0x0F) * 4
    return in_cksum(ipbytes, 0, ihl) == 0


def assert_icmp_error(frame, t, code, orig: bytes, src=R.IP0):
    """`frame` is an ICMP t/code from `src` to H0 quoting `orig`'s header
    and the first 8 bytes of its payload."""
    assert (frame.dst, frame.src) == (R.H0_MAC, R.MAC0)
    ip = ip_of(frame)
    b = raw(ip)
    assert (ip.src, ip.dst, ip.proto, ip.ttl, ip.flags.value, ip.frag) == (src, R.H0, 1, 64, 0, 0)
    assert header_ok(b) and ip.len == len(b)
    icmp = b[20:]
    assert (icmp[0], icmp[1]) == (t, code)
    assert in_cksum(icmp) == 0
    ihl = (orig[0] & 0x0F) * 4
    assert icmp[8:] == orig[:ihl + 8]
    return icmp


# -- forwarding -----------------------------------------------------------------

def test_forward_rewrites_ttl_checksum_and_macs(net, stack):
    pkt = udp(ttl=64)
    orig = raw(pkt)
    before = stats(stack, "total", "forward")
    net.send0(pkt)
    (f,) = take(net.if1)
    assert (f.dst, f.src, f.type) == (R.H1_MAC, R.MAC1, 0x0800)
    out = raw(f)[14:]
    assert len(out) == len(orig)
    assert out[8] == 63                                      # TTL - 1
    assert header_ok(out)
    fixed = IP(out)
    del fixed.chksum
    assert IP(raw(fixed)).chksum == IP(out).chksum          # what scapy computes
    assert out[:8] == orig[:8] and out[9:10] == orig[9:10] and out[12:] == orig[12:]
    assert stats(stack, "total", "forward") == (before[0] + 1, before[1] + 1)
    assert net.if0.sent == []
    assert stack.ip.routes.lookup(aton(R.H1)).use == 1
    assert discards(net.if0) == {} and discards(net.if1) == {}


def test_forward_burst_both_directions(net, stack):
    inject(net.if0, *(net.from_h0(udp(ident=i)) for i in range(1, 6)))
    inject(net.if1, net.from_h1(udp(src=R.H1, dst=R.H0, ident=99)))
    assert [ip_of(f).id for f in take(net.if1)] == [1, 2, 3, 4, 5]
    (back,) = take(net.if0)
    assert back.dst == R.H0_MAC and ip_of(back).id == 99 and ip_of(back).ttl == 63
    assert stack.ip.ips_forward == 6


def test_forward_ttl_2_leaves_with_ttl_1(net):
    net.send0(udp(ttl=2))
    (f,) = take(net.if1)
    assert ip_of(f).ttl == 1 and header_ok(raw(f)[14:])


def test_forward_via_gateway_route(net, stack):
    stack.ip.routes.add(aton("172.16.0.0"), 12, aton(R.H1))
    net.send0(udp(dst="172.20.1.1"))
    (f,) = take(net.if1)
    assert f.dst == R.H1_MAC and ip_of(f).dst == "172.20.1.1"


def test_forward_with_ip_options(net, stack):
    pkt = udp(options=[IPOption_RR(routers=["0.0.0.0"])])
    orig = raw(pkt)
    assert orig[0] == 0x47
    net.send0(pkt)
    (f,) = take(net.if1)
    out = raw(f)[14:]
    assert out[8] == 63 and header_ok(out) and out[20:] == orig[20:]


def udp_with_checksum(hc: int, ttl: int = 64) -> bytes:
    """udp()'s bytes with the IP id chosen to make the header checksum field
    hold `hc`. 0xFFFF (-0) cannot come out of a computation; it is written
    over the 0x0000 such a header computes to, and the header still
    verifies (RFC 1624 section 3)."""
    hdr = bytearray(raw(udp(ident=0, ttl=ttl)))
    hdr[10:12] = b"\0\0"
    want = 0xFFFF & ~(0 if hc == 0xFFFF else hc)          # the folded sum
    ident = (want - cksum_sum(hdr, 0, 20)) % 0xFFFF
    hdr[4:6] = ident.to_bytes(2, "big")
    assert fold(cksum_sum(hdr, 0, 20)) == want
    hdr[10:12] = hc.to_bytes(2, "big")
    assert header_ok(hdr)
    return bytes(hdr)


# (checksum arriving, checksum leaving) for a TTL decrement. The TTL is the
# high byte of its word, so the word drops by 0x0100 and the checksum rises
# by 0x0100 in one's complement: from 0xFF00 up the addition carries out of
# 16 bits and the carry must come back in at the bottom (end-around carry);
# 0xFEFF + 0x0100 is 0xFFFF, -0, which recomputation (and RFC 1624 eqn. 3)
# writes as +0, 0x0000. A checksum field never holds 0xFFFF after
# recomputation, since at least one header word is non-zero.
TTL_CKSUM_CASES = [
    (0x0000, 0x0100),
    (0x0001, 0x0101),
    (0x1234, 0x1334),
    (0x7FFF, 0x80FF),
    (0xFDFF, 0xFEFF),
    (0xFEFE, 0xFFFE),
    (0xFEFF, 0x0000),       # RFC 1624's case: +0, never -0
    (0xFF00, 0x0001),       # the carry comes back in
    (0xFF01, 0x0002),
    (0xFF7F, 0x0080),
    (0xFFFE, 0x00FF),
    (0xFFFF, 0x0100),       # -0 arriving (it verifies): leaves as recomputed
]


@pytest.mark.parametrize("hc_in, hc_out", TTL_CKSUM_CASES,
                         ids=[f"{a:04x}->{b:04x}" for a, b in TTL_CKSUM_CASES])
def test_forward_checksum_rfc1624_corner_case(net, stack, hc_in, hc_out):
    orig = udp_with_checksum(hc_in)
    inject(net.if0, net.eth0() + orig)
    (f,) = take(net.if1)
    out = raw(f)[14:]
    assert len(out) == len(orig) and out[8] == 63
    assert out[:8] == orig[:8] and out[9:10] == orig[9:10] and out[12:] == orig[12:]
    got = int.from_bytes(out[10:12], "big")
    hdr = bytearray(out[:20])
    hdr[10:12] = b"\0\0"
    assert got == in_cksum(hdr) == hc_out        # exactly what recomputation writes
    assert header_ok(out)
    assert stack.ip.ips_forward == 1 and stack.ip.ips_badsum == 0


def test_forward_checksum_every_carry_case_matches_recomputation(net, stack):
    """A dropped end-around carry breaks about one forwarded packet in 256
    (arriving checksum 0xFF00..0xFFFF): forward every one of those, plus
    the values around them, in bursts, and recompute each."""
    his = list(range(0xFE00, 0x10000)) + [0x0000, 0x0001, 0x00FF, 0x0100]
    pkts = [udp_with_checksum(hc) for hc in his]
    eth = net.eth0()
    for i in range(0, len(pkts), 100):              # bursts the 256-cluster pool holds
        inject(net.if0, *(eth + p for p in pkts[i:i + 100]))
    out = [f[14:] for f in net.if1.sent]
    assert len(out) == len(his) and net.if0.sent == []
    for hc, b, p in zip(his, out, pkts):
        assert b[4:6] == p[4:6] and b[8] == 63               # same packet, in order
        hdr = bytearray(b[:20])
        hdr[10:12] = b"\0\0"
        assert int.from_bytes(b[10:12], "big") == in_cksum(hdr), hex(hc)
    assert stack.ip.ips_forward == len(his)


def test_ethernet_padding_trimmed(net, stack):
    pkt = IP(src=R.H0, dst=R.H1, id=7) / UDP(sport=1, dport=2)      # 28 bytes
    frame = raw(net.from_h0(pkt)) + b"\0" * 18                        # 60 on the wire
    assert len(frame) == 60
    inject(net.if0, frame)
    (f,) = take(net.if1)
    assert len(raw(f)) == 14 + 28
    assert ip_of(f).len == 28 and raw(ip_of(f)[UDP]) == raw(pkt[UDP])
    assert stack.ip.ips_forward == 1 and discards(net.if0) == {}


def test_forward_chained_packet(net, stack):
    payload = bytes(range(256)) * 8                          # 2048 + headers: 2 mbufs
    net.if1.mtu = 9000
    net.send0(udp(payload=payload))
    (f,) = take(net.if1)
    assert raw(ip_of(f)[UDP].payload) == payload and ip_of(f).ttl == 63


def test_one_burst_with_interleaved_next_hops(net, stack):
    """Ip.input collects consecutive packets for the same route and next
    hop into one if_output call and flushes the run when either changes.
    One burst whose next hops keep changing: every packet must leave by its
    own route's interface, to its own next hop's MAC, in order, once.

        fk1 10.0.1.0/24: H1 10.0.1.2 (A), G 10.0.1.3 (B)
        fk2 10.0.2.0/24: K 10.0.2.2 (C)
        172.16/16 via A, 172.17/16 via B (both fk1), 172.18/16 via C (fk2);
        10.0.1.2 itself: next hop A by the connected route, not A's route
    """
    G, G_MAC = "10.0.1.3", "02:bb:00:00:01:03"
    K, K_MAC, MAC2 = "10.0.2.2", "02:cc:00:00:02:02", "02:00:00:00:02:01"
    if2 = fake_if(stack, 2, MAC2, "10.0.2.1")
    net.learn(net.if1, G, G_MAC)
    net.learn(if2, K, K_MAC)
    routes = stack.ip.routes
    ra = routes.add(aton("172.16.0.0"), 16, aton(R.H1))
    rb = routes.add(aton("172.17.0.0"), 16, aton(G))
    rc = routes.add(aton("172.18.0.0"), 16, aton(K))
    r1 = routes.lookup(aton(R.H1))                       # the connected 10.0.1.0/24
    order = []                                           # (interface, frame) as sent
    for ifp in (net.if0, net.if1, if2):
        def transmit(ifp, pkts, send=ifp.if_transmit):
            order.extend((ifp.name, m.tobytes()) for m in pkts)
            send(ifp, pkts)
        ifp.if_transmit = transmit

    # (destination, interface, MAC): runs of 1, 2 and 3; a change of route
    # with the same next hop (A by 172.16/16, then A by the connected
    # route); a change of next hop within one route (connected: H1, G).
    A, B, C = ("fk1", R.H1_MAC), ("fk1", G_MAC), ("fk2", K_MAC)
    plan = [("172.16.0.1", *A), ("172.17.0.1", *B), ("172.16.0.2", *A),
            ("172.18.0.1", *C), ("172.17.0.2", *B), ("172.18.0.2", *C),
            ("172.18.0.3", *C), ("172.16.0.3", *A), (R.H1, *A),
            (G, *B), (R.H1, *A), ("172.17.0.3", *B), ("172.17.0.4", *B),
            ("172.17.0.5", *B), ("172.16.0.4", *A), (K, *C)]
    pkts = [udp(dst=d, ident=0x100 + i, payload=b"pkt%02d" % i) for i, (d, _, _) in
            enumerate(plan)]
    # Twice: the first burst fills the route cache, the second runs the
    # cached fast path.
    for _ in range(2):
        order.clear()
        inject(net.if0, *(net.from_h0(p) for p in pkts))
        assert [name for name, _ in order] == [name for _, name, _ in plan]
        for (name, frame), (d, _, mac), p in zip(order, plan, pkts):
            f = Ether(frame)
            assert (f.dst, f.src, f.type) == (mac, R.MAC1 if name == "fk1" else MAC2,
                                              0x0800), d
            ip = ip_of(f)
            assert (ip.dst, ip.id, ip.ttl) == (d, p.id, 63)
            assert raw(ip[UDP].payload) == raw(p[UDP].payload)
        assert len(take(net.if1)) == 12 and len(take(if2)) == 4
        assert net.if0.sent == []
    n = len(plan)
    assert stack.ip.ips_forward == 2 * n and stack.ip.ips_total == 2 * n
    assert (ra.use, rb.use, rc.use, r1.use) == (8, 10, 6, 6)
    assert stack.ip.routes.lookup(aton(K)).use == 2
    assert discards(net.if0) == {} and discards(net.if1) == {} and discards(if2) == {}


# -- ICMP errors from forwarding -------------------------------------------------

@pytest.mark.parametrize("ttl", [1, 0])
def test_ttl_expired_time_exceeded(net, stack, ttl):
    pkt = udp(ttl=ttl)
    net.send0(pkt)
    assert net.if1.sent == []
    (f,) = take(net.if0)
    assert_icmp_error(f, 11, 0, raw(pkt))
    assert stats(stack, "forward", "cantforward") == (0, 1)
    assert stack.icmp.stats["error"] == 1 and stack.icmp.outhist == {"timxceed/0": 1}


def test_no_route_net_unreachable(net, stack):
    pkt = udp(dst="192.0.2.9")
    net.send0(pkt)
    (f,) = take(net.if0)
    assert_icmp_error(f, 3, 0, raw(pkt))
    assert stats(stack, "noroute", "cantforward", "forward") == (1, 1, 0)
    assert net.if1.sent == []


def test_df_too_big_needs_frag_with_mtu(net, stack):
    net.if1.mtu = 1280
    pkt = udp(payload=b"D" * (1400 - 28), flags="DF")
    assert len(pkt) == 1400
    net.send0(pkt)
    assert net.if1.sent == []
    (f,) = take(net.if0)
    icmp = assert_icmp_error(f, 3, 4, raw(pkt))
    assert icmp[4:8] == b"\x00\x00\x05\x00"              # unused 0, next-hop MTU 1280
    assert ip_of(f)[ICMP].nexthopmtu == 1280
    assert stats(stack, "cantfrag", "cantforward", "forward", "fragmented") == (1, 1, 0, 0)


def test_df_exactly_mtu_is_forwarded(net, stack):
    net.if1.mtu = 1280
    net.send0(udp(payload=b"D" * (1280 - 28), flags="DF"))
    (f,) = take(net.if1)
    assert ip_of(f).len == 1280 and net.if0.sent == []


def fragments_of(frames):
    ips = [ip_of(f) for f in frames]
    for ip in ips:
        assert header_ok(raw(ip))
    return ips


def assert_reassembles(ips, orig: bytes, mtu: int):
    """The fragments fit the MTU, have consistent offsets and MF flags, and
    put back together give exactly `orig`'s payload."""
    o = IP(orig)
    ihl = o.ihl * 4
    data = orig[ihl:]
    pos = 0
    for i, ip in enumerate(ips):
        b = raw(ip)
        assert len(b) <= mtu and ip.len == len(b)
        assert ip.id == o.id and ip.ttl == o.ttl - 1 and ip.proto == o.proto
        assert (ip.src, ip.dst) == (o.src, o.dst)
        assert ip.frag * 8 == pos
        last = i == len(ips) - 1
        assert bool(ip.flags.MF) == (not last)
        chunk = b[ip.ihl * 4:]
        if not last:
            assert len(chunk) % 8 == 0
        assert chunk == data[pos:pos + len(chunk)]
        pos += len(chunk)
    assert pos == len(data)
    whole = defragment(ips)
    assert len(whole) == 1
    assert raw(whole[0][IP].payload) == data


def test_fragmentation(net, stack):
    net.if1.mtu = 1280
    pkt = udp(payload=bytes(range(256)) * 5 + b"tail" * 50, ident=0x4242)
    orig = raw(pkt)
    assert len(orig) == 1508
    net.send0(pkt)
    ips = fragments_of(take(net.if1))
    assert [ip.len for ip in ips] == [1276, 252]             # 1256 + 232 payload
    assert [ip.frag for ip in ips] == [0, 157]
    assert_reassembles(ips, orig, 1280)
    assert stats(stack, "forward", "fragmented", "ofragments") == (1, 1, 2)
    assert net.if0.sent == []


def test_fragmentation_small_mtu_many_fragments(net, stack):
    net.if1.mtu = 576
    pkt = udp(payload=bytes(range(200)) * 7)
    orig = raw(pkt)
    net.send0(pkt)
    ips = fragments_of(take(net.if1))
    assert len(ips) == 3
    assert_reassembles(ips, orig, 576)
    assert stack.ip.ips_ofragments == 3


def test_fragmentation_of_chained_input(net, stack):
    net.if1.mtu = 1500
    pkt = udp(payload=bytes(range(251)) * 12)               # 3040 bytes: a chain
    orig = raw(pkt)
    net.send0(pkt)
    ips = fragments_of(take(net.if1))
    assert len(ips) == 3
    assert_reassembles(ips, orig, 1500)


def test_fragmenting_a_fragment_keeps_offset_and_mf(net, stack):
    net.if1.mtu = 576
    pkt = udp(payload=b"F" * 992, flags="MF", frag=100)     # a middle fragment
    pkt = IP(raw(pkt))
    orig = raw(pkt)
    net.send0(pkt)
    ips = fragments_of(take(net.if1))
    assert [ip.frag for ip in ips] == [100, 100 + 552 // 8]
    assert [bool(ip.flags.MF) for ip in ips] == [True, True]    # the original had MF
    assert b"".join(raw(ip)[20:] for ip in ips) == orig[20:]


def test_fragmentation_copies_only_copied_options(net, stack):
    net.if1.mtu = 576
    rr = IPOption_RR(routers=["0.0.0.0"])                   # copy flag clear
    sec = IPOption_Security()                                # copy flag set (130)
    pkt = IP(raw(udp(payload=b"O" * 1000, options=[sec, rr])))
    orig = raw(pkt)
    ihl0 = pkt.ihl * 4
    assert ihl0 == 40
    net.send0(pkt)
    ips = fragments_of(take(net.if1))
    # 1008 bytes of payload: 536 behind the 40-byte header, 472 behind a
    # 32-byte one (the security option, padded)
    assert [(ip.ihl * 4, ip.len) for ip in ips] == [(40, 576), (32, 504)]
    assert raw(ips[0])[20:ihl0] == orig[20:ihl0]             # all options in the first
    for ip in ips[1:]:
        opts = raw(ip)[20:ip.ihl * 4]
        assert opts[0] == 130 and 7 not in opts[:opts[1]] and len(opts) % 4 == 0
    data = orig[ihl0:]
    got = b"".join(raw(ip)[ip.ihl * 4:] for ip in ips)
    assert got == data
    assert [ip.frag * 8 for ip in ips] == [0] + [
        sum(len(raw(x)) - x.ihl * 4 for x in ips[:i]) for i in range(1, len(ips))]


@pytest.mark.parametrize("path", ["forward", "local"])
@pytest.mark.parametrize("free", [0, 1, 2, 3])
def test_fragmentation_when_the_pool_runs_dry(net, stack, path, free):
    """A packet that needs 3 fragments while only `free` clusters are left:
    with fewer than 3 none is sent (fragment() frees the ones it made and
    counts one drop), the pool runs out exactly once, and every cluster
    comes back; with 3 all go. Forwarded, and an echo reply of our own."""
    pool = stack.pool
    if path == "forward":
        out_if, back_if = net.if1, net.if0
        net.if1.mtu = 576
        pkt = udp(payload=bytes(range(200)) * 7, ident=0x5151)     # 1428 bytes
    else:                           # the echo reply leaves by fk0 (MTU 576)
        out_if, back_if = net.if0, net.if1
        net.if0.mtu = 576
        pkt = IP(src=R.H0, dst=R.IP0, id=0x5151) / ICMP(type=8, id=1, seq=1) / (
            bytes(range(200)) * 7)
    assert len(pkt) == 1428         # 552 + 552 + 304 bytes of payload: 3 fragments
    m = pool.from_bytes(raw(net.from_h0(pkt)))
    hold = []
    try:
        while pool.nclusters - pool.in_use > free:
            hold.append(pool.get())
        drops0 = pool.drops
        inject(net.if0, m)
        ip = stack.ip
        sent = fragments_of(take(out_if))
        assert back_if.sent == []
        if free < 3:
            assert sent == []                                   # no partial fragments
            assert (pool.drops - drops0, ip.ips_odropped) == (1, 1)
            assert stats(stack, "fragmented", "ofragments", "forward") == (0, 0, 0)
            assert (out_if.out_discards["nobufs"], out_if.oerrors) == (1, 1)
        else:
            assert [f.len for f in sent] == [572, 572, 324]
            assert (pool.drops - drops0, ip.ips_odropped) == (0, 0)
            assert (out_if.out_discards["nobufs"], out_if.oerrors) == (0, 0)
            fwd = 1 if path == "forward" else 0
            assert stats(stack, "fragmented", "ofragments", "forward") == (1, 3, fwd)
        assert pool.in_use == len(hold)             # the packet and any fragments: back
    finally:
        for h in hold:
            pool.freem(h)
    assert pool.in_use == 0
    assert discards(net.if0) == {}


def test_fragmentation_to_jumbo_mtu():
    clock = FakeClock()
    st = Stack("jumbo", nmbclusters=64, clock=clock)
    try:
        net = Router(st, clock)
        net.learn(net.if0, R.H0, R.H0_MAC)
        net.learn(net.if1, R.H1, R.H1_MAC)
        net.if0.mtu, net.if1.mtu = 9000, 4000
        pkt = udp(payload=bytes(range(250)) * 24)           # 6028 bytes
        net.send0(pkt)
        ips = fragments_of(take(net.if1))
        assert_reassembles(ips, raw(pkt), 4000)
    finally:
        st.shutdown()
        leaked = st.pool.in_use
        st.close()
    assert leaked == 0


# -- bad headers -------------------------------------------------------------------

def send_raw_ip(net, ipbytes: bytes):
    inject(net.if0, raw(Ether(dst=R.MAC0, src=R.H0_MAC, type=0x0800)) + ipbytes)


def with_first_byte(pkt, vhl: int) -> bytes:
    """`pkt` with its version/IHL byte replaced and the checksum of the
    first 20 bytes made right again (so only the byte under test is bad)."""
    b = bytearray(raw(pkt))
    b[0] = vhl
    b[10:12] = b"\0\0"
    b[10:12] = in_cksum(b, 0, 20).to_bytes(2, "big")
    return bytes(b)


def bad_header(case: str) -> bytes:
    pkt = udp()                                          # 41 bytes, IHL 5
    if case == "badsum":
        b = bytearray(raw(pkt))
        b[10] ^= 0x55
        return bytes(b)
    if case == "ihl4":
        return with_first_byte(pkt, 0x44)
    if case == "ihl_beyond":                             # 60-byte header claimed
        return with_first_byte(pkt, 0x4F)
    if case == "len_beyond":
        return raw(udp(len=200))
    if case == "len_below_ihl":
        return raw(udp(len=16))
    if case == "version6":
        return with_first_byte(pkt, 0x65)
    if case == "tooshort":
        return raw(pkt)[:12]
    raise AssertionError(case)


@pytest.mark.parametrize("case, reason, stat", [
    ("badsum", "ip_badsum", "badsum"),
    ("ihl4", "ip_badhlen", "badhlen"),
    ("ihl_beyond", "ip_badhlen", "badhlen"),
    ("len_beyond", "ip_badlen", "badlen"),
    ("len_below_ihl", "ip_badlen", "badlen"),
    ("version6", "ip_badvers", "badvers"),
    ("tooshort", "ip_tooshort", "tooshort"),
])
def test_bad_header_dropped(net, stack, case, reason, stat):
    before = stats(stack, stat, "forward", "total")
    send_raw_ip(net, bad_header(case))
    assert net.if1.sent == [] and net.if0.sent == []     # no forward, no ICMP
    assert discards(net.if0) == {reason: 1}
    assert net.if0.ierrors == 1
    assert stats(stack, stat, "forward", "total") == (before[0] + 1, before[1], before[2] + 1)
    assert stack.icmp.stats["error"] == 0


def test_martian_source_dropped(net, stack):
    for src in ("127.0.0.1", "0.1.2.3", "224.0.0.5", "10.0.1.255"):
        net.send0(udp(src=src))
    assert net.if1.sent == [] and net.if0.sent == []
    assert discards(net.if0) == {"ip_badaddr": 4} and stack.ip.ips_badaddr == 4


def test_broadcast_destination_not_forwarded(net, stack):
    for dst in ("255.255.255.255", "10.0.1.255", "10.0.0.255", "224.0.0.1", "240.0.0.1"):
        net.send0(udp(dst=dst))
    assert net.if1.sent == [] and net.if0.sent == []
    assert stack.ip.ips_bcast == 5 and stack.ip.ips_forward == 0


def test_link_broadcast_not_forwarded_and_no_icmp(net, stack):
    inject(net.if0, Ether(dst="ff:ff:ff:ff:ff:ff", src=R.H0_MAC) / udp())
    inject(net.if0, Ether(dst="ff:ff:ff:ff:ff:ff", src=R.H0_MAC) / udp(ttl=1))
    assert net.if1.sent == [] and net.if0.sent == []
    assert stack.ip.ips_cantforward == 2 and stack.icmp.stats["error"] == 0


def test_forwarding_disabled(net, stack):
    stack.ip.forwarding = False
    net.send0(udp())
    assert net.if1.sent == [] and net.if0.sent == []
    assert stats(stack, "cantforward", "forward") == (1, 0)


@pytest.mark.parametrize("dst", ["127.0.0.1", "0.0.0.7"])
def test_martian_destination_not_forwarded(net, stack, dst):
    # A default route would carry it: only the martian check stops it. It
    # is dropped silently (no ICMP) and counted once in ipstat and once on
    # the receiving interface, each time, and never enters the route cache.
    default = stack.ip.routes.add(0, 0, aton(R.H1))
    names = ("total", "badaddr", "forward", "noroute", "cantforward")
    for n in (1, 2):
        net.send0(udp(dst=dst, ident=n))
        assert net.if1.sent == [] and net.if0.sent == []
        assert stats(stack, *names) == (n, n, 0, 0, 0)
        assert discards(net.if0) == {"ip_badaddr": n} and discards(net.if1) == {}
        assert net.if0.ierrors == n
    assert aton(dst) not in stack.ip.routes.cache
    assert default.use == 0
    assert stack.icmp.stats["error"] == 0


# An error quotes the offending header *with its options* and the first 8
# bytes after it (RFC 792; RFC 1812 4.3.2.3), not the first 28 bytes.
RR4 = IPOption_RR(routers=["0.0.0.0"] * 4)                  # 19 bytes, padded to 20


@pytest.mark.parametrize("case", ["ttl", "noroute", "needfrag", "port"])
def test_icmp_error_quotes_header_with_options_plus_8(net, stack, case):
    payload = bytes(range(40, 80))                          # 40 bytes: more than 8 after
    if case == "ttl":
        pkt, want = udp(ttl=1, payload=payload, options=[RR4]), (11, 0)
    elif case == "noroute":
        pkt, want = udp(dst="192.0.2.9", payload=payload, options=[RR4]), (3, 0)
    elif case == "needfrag":
        net.if1.mtu = 576
        pkt, want = udp(payload=payload * 15, flags="DF", options=[RR4]), (3, 4)
    else:
        pkt, want = udp(dst=R.IP0, payload=payload, options=[RR4]), (3, 3)
    orig = raw(pkt)
    assert orig[0] == 0x4A and len(orig) > 40 + 16          # IHL 10: 40-byte header
    net.send0(pkt)
    (f,) = take(net.if0)
    icmp = assert_icmp_error(f, *want, orig)
    assert len(icmp) == 8 + 40 + 8 and ip_of(f).len == 20 + 8 + 40 + 8
    assert icmp[8:48] == orig[:40]                          # the header, options and all
    assert icmp[48:56] == orig[40:48]                       # UDP ports, length, checksum
    if case == "needfrag":
        assert icmp[4:8] == b"\0\0\x02\x40"                 # next-hop MTU 576
    assert net.if1.sent == []
    assert stack.icmp.stats["error"] == 1


# -- no ICMP about ICMP errors, rate limiting ---------------------------------------

def test_no_icmp_error_about_icmp_error(net, stack):
    quoted = raw(udp())[:28]
    for t in (3, 11, 12):
        net.send0(IP(src=R.H0, dst=R.H1, ttl=1) / ICMP(type=t, code=0) / quoted)
    net.send0(IP(src=R.H0, dst="192.0.2.9") / ICMP(type=3, code=1) / quoted)
    assert net.if0.sent == [] and net.if1.sent == []
    assert stack.icmp.stats["oldicmp"] == 4 and stack.icmp.stats["error"] == 0


def test_icmp_error_about_echo_is_sent(net, stack):
    pkt = IP(src=R.H0, dst=R.H1, ttl=1) / ICMP(type=8, id=5, seq=6) / b"ping"
    net.send0(pkt)
    (f,) = take(net.if0)
    assert_icmp_error(f, 11, 0, raw(pkt))


def test_no_icmp_error_about_non_initial_fragment(net, stack):
    net.send0(udp(ttl=1, frag=10))
    assert net.if0.sent == [] and stack.icmp.stats["error"] == 0
    assert stack.ip.ips_cantforward == 1
    net.send0(udp(ttl=1, flags="MF"))                 # the first fragment: yes
    assert len(take(net.if0)) == 1


def test_icmp_errors_rate_limited(net, stack, clock):
    stack.icmp.ratelim.burst = 3
    inject(net.if0, *(net.from_h0(udp(ttl=1, ident=i)) for i in range(10)))
    errs = take(net.if0)
    assert len(errs) == 3
    assert [ip_of(f)[ICMP].type for f in errs] == [11] * 3
    assert stack.icmp.stats["ratelimited"] == 7 and stack.icmp.stats["error"] == 3
    assert stack.ip.ips_cantforward == 10
    clock.advance(0.025)                               # 100/s: 2.5 tokens back
    inject(net.if0, *(net.from_h0(udp(ttl=1, ident=i)) for i in range(5)))
    assert len(take(net.if0)) == 2
    assert stack.icmp.stats["ratelimited"] == 10 and stack.icmp.stats["error"] == 5


# -- local delivery ------------------------------------------------------------------

def test_udp_to_us_port_unreachable(net, stack):
    pkt = udp(dst=R.IP0)
    net.send0(pkt)
    (f,) = take(net.if0)
    assert_icmp_error(f, 3, 3, raw(pkt))
    assert stack.ip.ips_delivered == 1 and stack.ip.ips_forward == 0


def test_udp_to_far_interface_address_is_local(net, stack):
    pkt = udp(dst=R.IP1)
    net.send0(pkt)
    (f,) = take(net.if0)
    assert_icmp_error(f, 3, 3, raw(pkt))               # source: the arrival interface
    assert net.if1.sent == []


def test_unknown_protocol_to_us(net, stack):
    pkt = IP(src=R.H0, dst=R.IP0, proto=99) / (b"x" * 12)
    net.send0(pkt)
    (f,) = take(net.if0)
    assert_icmp_error(f, 3, 2, raw(pkt))
    assert stack.ip.ips_noproto == 1


def test_fragment_to_us_dropped(net, stack):
    net.send0(IP(src=R.H0, dst=R.IP0, flags="MF") / ICMP() / (b"x" * 16))
    assert net.if0.sent == []
    assert stack.ip.ips_reassfail == 1 and stack.icmp.stats["reflect"] == 0


# -- a header split over mbufs is pulled up; without a cluster, dropped ----------

def split_frame(pool, frame: bytes, first: int, at_end: bool = False):
    """`frame` as a driver may hand it up, in two mbufs: the first `first`
    bytes in one (at the very end of its cluster when `at_end`, so nothing
    can be pulled up behind them in place), the rest in a second."""
    frame = bytes(frame)
    head, tail = pool.get(), pool.get()
    if at_end:
        head.off = head.size - first
    head.view[head.off:head.off + first] = frame[:first]
    head.len = first
    rest = frame[first:]
    tail.flags, tail.off = 0, 0
    tail.view[0:len(rest)] = rest
    tail.len = len(rest)
    head.next = tail
    head.pkt_len = len(frame)
    return head


def with_options(opts: bytes, payload: bytes = b"", dst=R.H1) -> bytes:
    """An IP packet H0 -> `dst` (protocol 99) carrying `opts` (a multiple
    of 4 bytes) and `payload`, its checksum right."""
    return raw(IP(src=R.H0, dst=dst, id=0x2222, proto=99, options=opts) / payload)


@pytest.mark.parametrize("ipkt", [
    raw(udp(ident=0x3001)),                                   # the plain 20-byte header
    raw(IP(src=R.H0, dst=R.H1, id=0x3002, proto=99)),        # 20 bytes: header only
    with_options(b"\x94\x04\x00\x00" * 2, b"opts"),          # IHL 7
], ids=["udp", "header-only", "options"])
def test_header_split_over_two_mbufs_is_pulled_up_and_forwarded(net, stack, ipkt):
    hlen = (ipkt[0] & 0x0F) * 4
    m = split_frame(stack.pool, net.eth0() + ipkt, 14 + hlen - 4)
    inject(net.if0, m)
    (f,) = take(net.if1)
    out = raw(f)[14:]
    assert len(out) == len(ipkt) and out[8] == 63 and header_ok(out)
    assert out[:8] == ipkt[:8] and out[12:] == ipkt[12:]
    assert stack.ip.ips_forward == 1 and discards(net.if0) == {}


@pytest.mark.parametrize("ipkt", [raw(udp()), with_options(b"\x94\x04\x00\x00" * 2, b"opts")],
                         ids=["plain", "options"])
def test_header_split_with_the_pool_empty_is_dropped_as_nobufs(net, stack, ipkt):
    """The first mbuf ends at the end of its cluster, short of the IP
    header: pulling the header up needs a cluster, and there is none."""
    pool = stack.pool
    hlen = (ipkt[0] & 0x0F) * 4
    m = split_frame(pool, net.eth0() + ipkt, 14 + hlen - 4, at_end=True)
    hold = [pool.get() for _ in range(pool.nclusters - pool.in_use)]
    try:
        inject(net.if0, m)
        assert pool.in_use == len(hold)                     # the chain was freed
    finally:
        for h in hold:
            pool.freem(h)
    assert net.if1.sent == [] and net.if0.sent == []
    assert discards(net.if0) == {"nobufs": 1}
    assert (net.if0.iqdrops, net.if0.ierrors) == (1, 0)
    assert stats(stack, "forward", "tooshort", "badhlen") == (0, 0, 0)


# -- every bad packet of a burst is counted, in ipstat and by reason -------------

@pytest.mark.parametrize("case, reason, stat", [
    ("badsum", "ip_badsum", "badsum"),
    ("ihl4", "ip_badhlen", "badhlen"),
    ("len_beyond", "ip_badlen", "badlen"),
    ("version6", "ip_badvers", "badvers"),
    ("tooshort", "ip_tooshort", "tooshort"),
])
def test_each_bad_header_in_a_burst_is_counted(net, stack, case, reason, stat):
    eth = raw(Ether(dst=R.MAC0, src=R.H0_MAC, type=0x0800))
    inject(net.if0, *[eth + bad_header(case)] * 3)
    inject(net.if0, eth + bad_header(case))
    assert discards(net.if0) == {reason: 4} and net.if0.ierrors == 4
    assert stats(stack, stat, "total", "forward") == (4, 4, 0)


# -- lengths at their limits -------------------------------------------------------

def test_header_exactly_as_long_as_the_packet_is_forwarded(net, stack):
    ipkt = with_options(b"\x94\x04\x00\x00")                 # 24 bytes, all header
    assert len(ipkt) == 24 and ipkt[0] == 0x46
    send_raw_ip(net, ipkt)
    (f,) = take(net.if1)
    assert raw(f)[14:][12:] == ipkt[12:] and ip_of(f).ttl == 63
    assert discards(net.if0) == {} and stack.ip.ips_forward == 1


def test_header_only_packet_in_a_padded_frame_is_trimmed_and_forwarded(net, stack):
    ipkt = raw(IP(src=R.H0, dst=R.H1, id=0x3003, proto=99))   # total length 20
    inject(net.if0, net.eth0() + ipkt + b"\0" * 26)           # a 60-byte frame
    (f,) = take(net.if1)
    out = raw(f)[14:]
    assert len(out) == 20 and out[12:] == ipkt[12:] and header_ok(out)
    assert discards(net.if0) == {} and stack.ip.ips_forward == 1


# -- the edges of the multicast range and of the martian sources ---------------------

def test_first_multicast_address_is_not_forwarded(net, stack):
    net.send0(udp(dst="224.0.0.0"))
    assert net.if1.sent == [] and net.if0.sent == []
    assert stats(stack, "bcast", "cantforward", "forward") == (1, 0, 0)
    assert stack.icmp.stats["error"] == 0


@pytest.mark.parametrize("dst", [R.H1, R.IP0], ids=["forward", "local"])
def test_first_multicast_source_is_martian(net, stack, dst):
    net.send0(udp(src="224.0.0.0", dst=dst))
    assert net.if1.sent == [] and net.if0.sent == []
    assert discards(net.if0) == {"ip_badaddr": 1}
    assert stats(stack, "badaddr", "delivered", "forward") == (1, 0, 0)


def test_link_broadcast_is_never_considered_for_an_icmp_error(net, stack):
    # Not even looked at by ICMP: an error it carries is not "an error
    # about an error", it is simply not routed.
    err = IP(src=R.H0, dst=R.H1) / ICMP(type=3, code=1) / raw(udp())[:28]
    inject(net.if0, Ether(dst="ff:ff:ff:ff:ff:ff", src=R.H0_MAC) / err)
    assert net.if1.sent == [] and net.if0.sent == []
    assert stack.ip.ips_cantforward == 1
    assert stack.icmp.stats == dict.fromkeys(stack.icmp.stats, 0)


# -- local delivery counts every packet ----------------------------------------------

def test_local_delivery_counts_each_packet(net, stack):
    for i in range(2):
        net.send0(udp(dst=R.IP0, ident=i))                                # port unreachable
        net.send0(IP(src=R.H0, dst=R.IP0, proto=99, id=i) / b"xx")        # protocol unreachable
        net.send0(IP(src=R.H0, dst=R.IP0, flags="MF", id=i) / ICMP())     # a fragment
    assert stats(stack, "delivered", "noproto", "reassfail") == (6, 2, 2)
    assert stack.icmp.outhist == {"unreach/3": 2, "unreach/2": 2}
    assert len(take(net.if0)) == 4


# -- ip_output: what the stack itself sends ---------------------------------------------

def echo(src=R.H0, dst=R.IP0, size=64, ident=1):
    return IP(src=src, dst=dst, id=ident) / ICMP(type=8, id=7, seq=ident) / (
        b"e" * (size - 28))


def test_output_counts_each_packet_sent(net, stack):
    net.send0(echo(ident=1))
    net.send0(echo(ident=2))
    assert [ip_of(f)[ICMP].seq for f in take(net.if0)] == [1, 2]
    assert stats(stack, "localout", "odropped", "noroute") == (2, 0, 0)


def test_output_never_sends_to_our_own_address(net, stack):
    # An echo request claiming to come from our other address: the reply
    # would go to ourselves; it is dropped, not sent.
    net.send0(echo(src=R.IP1, ident=1))
    net.send0(echo(src=R.IP1, ident=2))
    assert net.if0.sent == [] and net.if1.sent == []
    assert stats(stack, "odropped", "localout", "noroute") == (2, 0, 0)
    assert stack.icmp.stats["reflect"] == 2


def test_output_without_a_route_is_dropped_and_counted(net, stack):
    net.send0(echo(src="192.0.2.5", ident=1))
    net.send0(echo(src="192.0.2.5", ident=2))
    assert net.if0.sent == [] and net.if1.sent == []
    assert stats(stack, "noroute", "odropped", "localout") == (2, 2, 0)


def test_output_exactly_the_mtu_goes_whole(net, stack):
    net.if0.mtu = 600
    net.send0(echo(size=600))
    (f,) = take(net.if0)
    assert ip_of(f).len == 600 and ip_of(f).flags.value == 0 and ip_of(f).frag == 0
    assert stats(stack, "fragmented", "localout") == (0, 1)


def test_output_one_byte_over_the_mtu_is_fragmented(net, stack):
    net.if0.mtu = 599
    net.send0(echo(size=600))
    assert [ip_of(f).len for f in take(net.if0)] == [596, 24]
    assert stats(stack, "fragmented", "ofragments", "localout") == (1, 2, 1)


# -- the IP id of packets the stack makes --------------------------------------------

def test_errors_carry_successive_ip_ids(net, stack):
    for i in range(3):
        net.send0(udp(ttl=1, ident=i))
    assert [ip_of(f).id for f in take(net.if0)] == [2, 3, 4]


def test_ip_id_wraps_at_16_bits(stack):
    stack.ip.ident = 0xFFFE
    assert [stack.ip.next_ident() for _ in range(3)] == [0xFFFF, 0, 1]


def test_error_header_is_plain(net, stack):
    net.send0(udp(ttl=1))
    (f,) = take(net.if0)
    b = raw(f)[14:34]
    assert b[0] == 0x45 and b[1] == 0                          # IHL 5, TOS 0
    assert b[6:8] == b"\0\0" and b[8] == 64 and b[9] == 1      # no DF, TTL 64, ICMP


# -- fragmentation at its limits -----------------------------------------------------

RA = b"\x94\x04\x00\x00"            # router alert: copy flag set, 4 bytes
RR39 = b"\x07\x27\x04" + bytes(36)  # record route, 9 slots: copy flag clear


def test_smallest_mtu_for_a_full_header_carries_8_bytes_per_fragment(net, stack):
    # RFC 791: a 60-byte header and 8 bytes of data, 68 bytes, must go
    # through every link. Every option is copied, so every fragment has
    # the whole header.
    net.if1.mtu = 68
    ipkt = with_options(RA * 10, bytes(range(20)))
    assert (ipkt[0] & 0x0F) * 4 == 60
    send_raw_ip(net, ipkt)
    ips = fragments_of(take(net.if1))
    assert [(ip.ihl * 4, ip.len, ip.frag, ip.flags.MF) for ip in ips] == [
        (60, 68, 0, 1), (60, 68, 1, 1), (60, 64, 2, 0)]
    assert b"".join(raw(ip)[60:] for ip in ips) == bytes(range(20))
    assert stats(stack, "fragmented", "ofragments", "cantfrag") == (1, 3, 0)


@pytest.mark.parametrize("opts, mtu", [(RA * 10, 67), (RR39 + b"\0", 64)],
                         ids=["all-copied", "first-only"])
def test_no_room_for_8_bytes_in_a_fragment_cannot_fragment(net, stack, opts, mtu):
    # first-only: later fragments would have room (their header is 20
    # bytes), the first, with all 60, has not.
    net.if1.mtu = mtu
    for _ in range(2):
        send_raw_ip(net, with_options(opts, bytes(range(40))))
    assert net.if1.sent == [] and net.if0.sent == []
    assert stats(stack, "cantfrag", "fragmented", "odropped", "forward") == (2, 0, 0, 0)


def test_fragments_after_the_first_carry_more_when_options_are_not_copied(net, stack):
    net.if1.mtu = 576
    rr = IPOption_RR(routers=["0.0.0.0"])                   # copy flag clear
    sec = IPOption_Security()                                # copy flag set
    pkt = IP(raw(udp(payload=b"P" * 1172, options=[sec, rr])))   # 1180 bytes of data
    net.send0(pkt)
    ips = fragments_of(take(net.if1))
    # 536 behind the 40-byte header, then 544 behind 32-byte ones, then 100
    assert [(ip.ihl * 4, ip.len, ip.frag * 8) for ip in ips] == [
        (40, 576, 0), (32, 576, 536), (32, 132, 1080)]
    assert stats(stack, "fragmented", "ofragments") == (1, 3)


def test_each_fragmentation_that_runs_out_of_clusters_is_counted(net, stack):
    pool = stack.pool
    net.if1.mtu = 576
    for i in (1, 2):
        m = pool.from_bytes(raw(net.from_h0(udp(payload=bytes(range(200)) * 7))))
        hold = []
        while pool.nclusters - pool.in_use > 1:
            hold.append(pool.get())
        inject(net.if0, m)
        for h in hold:
            pool.freem(h)
        assert stack.ip.ips_odropped == i and net.if1.out_discards["nobufs"] == i
    assert net.if1.sent == [] and stats(stack, "fragmented", "forward") == (0, 0)


def test_error_about_an_undeliverable_fragment_comes_from_the_arrival_subnet(
        router, stack, clock):
    """fk0 has two addresses; the sender is on the second one's subnet.
    The packet is fragmented towards H1, who never answers ARP: the host
    unreachable about the first fragment comes from fk0's address on the
    sender's subnet, as for any packet received on fk0."""
    H5, H5_MAC = "10.0.5.9", "02:aa:00:00:05:09"
    stack.ip.add_address(router.if0, aton("10.0.5.1"), 24)
    router.learn(router.if0, H5, H5_MAC)
    router.if1.mtu = 576
    pkt = udp(src=H5, payload=bytes(range(200)) * 7)
    router.send0(pkt)
    for _ in range(stack.arp.maxtries + 1):
        clock.advance(1.0)
        stack.arp.timer()
    assert router.if1.out_discards["arp_unresolved"] == 3
    (f,) = take(router.if0)                  # only the first fragment gets an error
    ip = ip_of(f)
    assert (f.dst, ip.src, ip.dst) == (H5_MAC, "10.0.5.1", H5)
    assert (ip[ICMP].type, ip[ICMP].code) == (3, 1)


# -- which options the later fragments carry -----------------------------------------

def options_header(opts: bytes) -> bytes:
    """A 20-byte header (any fields) followed by `opts`."""
    base = raw(IP(src=R.H0, dst=R.H1, id=0x77, proto=17))[:20]
    h = bytearray(base + opts)
    h[0] = 0x40 | (len(h) >> 2)
    return bytes(h)


def test_copied_options_header_without_options_is_the_header():
    h = options_header(b"")
    assert _copied_options_header(h) == h


@pytest.mark.parametrize("opts, copied", [
    # one no-op, then a copied option; the end-of-list padding is dropped
    (b"\x01" + RA + b"\0\0\0", RA),
    # no-ops, a copied option, and one of just type and length at the very end
    (b"\x01\x01" + RA + b"\x99\x02", RA + b"\x99\x02\0\0"),
    # record route (not copied) between copied options
    (RA + b"\x82\x0b" + bytes(9) + b"\x07\x07\x04" + bytes(4) + RA + b"\x01\x00",
     RA + b"\x82\x0b" + bytes(9) + RA + b"\0"),
    # a copied option filling the list to its last byte
    (b"\x07\x08\x04" + bytes(5) + RA, RA),
    # the list ends in a type byte with no length: stop there
    (RA + b"\x01\x01\x01\x83", RA),
    # a length below 2 is malformed: stop there
    (RA + b"\x83\x01" + RA[:2], RA),
    (RA + b"\x83\x00" + RA[:2], RA),
], ids=["nop", "length-2-at-end", "mixed", "full", "truncated", "length-1", "length-0"])
def test_copied_options_header_keeps_only_copied_options(opts, copied):
    h = options_header(opts)
    out = _copied_options_header(h)
    assert out[20:] == copied
    assert out[0] == 0x40 | (len(out) >> 2) and out[1:20] == h[1:20]


# -- offload: the MTU judged per segment, the work counted per packet ------------------

TSO_CAPS = IFCAP_TSOv4 | IFCAP_CSUM_TCPv4_Rx | IFCAP_CSUM_TCPv4_Tx


def tcp_pkt(n: int, df: bool = True, ident: int = 7, seq: int = 1000) -> bytes:
    """A TCP packet H0 -> H1 with `n` bytes of payload."""
    return raw(IP(src=R.H0, dst=R.H1, id=ident, flags="DF" if df else 0)
               / TCP(sport=40000, dport=5201, seq=seq, ack=77, flags="PA")
               / bytes((i * 7 + 3) & 0xFF for i in range(n)))


def offloaded(net, pkt: bytes, mss: int = 0, l4: str = "tcp"):
    """`pkt` as a driver with offload hands it up from H0: its TCP or UDP
    checksum partial (the pseudo-header sum in the field), a super-frame
    of `mss`-byte segments when `mss` is given."""
    b = bytearray(pkt)
    off = 6 if l4 == "udp" else 16
    b[20 + off:22 + off] = pseudo_seed(pkt, 20).to_bytes(2, "big")
    m = chain(net.stack.pool, net.eth0() + bytes(b), [])
    m.csum_flags = (M_CSUM_UDPv4 if l4 == "udp" else M_CSUM_TCPv4) | (
        M_CSUM_TSOv4 if mss else 0)
    m.csum_data = (20 << 16) | off
    m.segsz = mss
    return m


@pytest.mark.parametrize("df", [True, False], ids=["DF", "no-DF"])
def test_superframe_whose_segments_are_the_mtu_goes_whole(net, stack, df):
    # Three segments of 40 + 500 bytes on a 540-byte MTU: they fit.
    net.if1.mtu = 540
    net.if1.set_capenable(TSO_CAPS)
    inject(net.if0, offloaded(net, tcp_pkt(1500, df=df), 500))
    assert len(net.if1.sent) == 1 and net.if0.sent == []
    assert net.if1.sent_meta == [(M_CSUM_TSOv4 | M_CSUM_TCPv4, (20 << 16) | 16, 500)]
    assert stats(stack, "tso_forward", "forward", "cantfrag", "fragmented") == (1, 1, 0, 0)
    assert net.if1.sw_tso == 0


@pytest.mark.parametrize("df", [True, False], ids=["DF", "no-DF"])
def test_superframe_shorter_than_one_segment_is_judged_by_its_length(net, stack, df):
    # 40 + 560 bytes with a 1448-byte MSS: one segment of 600 bytes, which
    # fits the 600-byte MTU of an interface that completes TCP checksums
    # but cannot segment: it leaves as one packet, its checksum partial.
    net.if1.mtu = 600
    net.if1.set_capenable(IFCAP_CSUM_TCPv4_Rx | IFCAP_CSUM_TCPv4_Tx)
    pkt = tcp_pkt(560, df=df)
    inject(net.if0, offloaded(net, pkt, 1448))
    (f,) = take(net.if1)
    out = raw(ip_of(f))
    assert len(out) == 600 and out[20:36] == pkt[20:36] and out[40:] == pkt[40:]
    assert net.if1.sent_meta == [(M_CSUM_TCPv4, (20 << 16) | 16, 0)]
    assert stats(stack, "tso_forward", "forward", "cantfrag", "fragmented") == (1, 1, 0, 0)
    assert (net.if1.sw_tso, net.if1.sw_tso_segs) == (1, 1) and net.if0.sent == []


def test_df_superframe_too_big_per_segment_gets_frag_needed(net, stack):
    # Small IP ids and a total length far above them: only the segment
    # size decides.
    net.if1.mtu = 1000
    net.if1.set_capenable(TSO_CAPS)
    inject(net.if0, offloaded(net, tcp_pkt(3000, ident=7), 1448),
           offloaded(net, tcp_pkt(3000, ident=1), 1448))
    errs = take(net.if0)
    assert [(ip_of(e)[ICMP].type, ip_of(e)[ICMP].code, ip_of(e)[ICMP].nexthopmtu)
            for e in errs] == [(3, 4, 1000)] * 2
    assert net.if1.sent == []
    assert stats(stack, "cantfrag", "cantforward", "tso_forward", "forward") == (2, 2, 0, 0)


def test_offload_work_is_counted_per_packet(net, stack):
    # Two super-frames segmented in software, two checksums completed, two
    # super-frames forwarded whole: each counted where it happened.
    inject(net.if0, offloaded(net, tcp_pkt(1200, seq=1), 400),
           offloaded(net, tcp_pkt(1200, seq=1201), 400))
    assert (net.if1.sw_tso, net.if1.sw_tso_segs) == (2, 6)
    assert len(take(net.if1)) == 6
    udp_pkt = raw(IP(src=R.H0, dst=R.H1) / UDP(sport=5000, dport=5201) / (b"p" * 300))
    inject(net.if0, offloaded(net, udp_pkt, l4="udp"), offloaded(net, udp_pkt, l4="udp"))
    assert net.if1.sw_csum == 2
    assert len(take(net.if1)) == 2
    net.if1.set_capenable(TSO_CAPS)
    inject(net.if0, offloaded(net, tcp_pkt(2000), 400), offloaded(net, tcp_pkt(2000), 400))
    assert len(take(net.if1)) == 2
    assert stats(stack, "tso_forward", "forward") == (4, 6)
    assert (net.if1.sw_tso, net.if1.sw_tso_segs, net.if1.sw_csum) == (2, 6, 2)


def test_each_superframe_that_is_not_tcp_is_counted(net, stack):
    pkt = raw(IP(src=R.H0, dst=R.H1) / UDP(sport=1, dport=2) / (b"u" * 1000))
    for _ in range(2):
        m = offloaded(net, pkt, l4="udp")
        m.csum_flags |= M_CSUM_TSOv4
        m.segsz = 400
        inject(net.if0, m)
    assert net.if1.sent == [] and net.if0.sent == []
    assert stack.ip.ips_badoffload == 2 and discards(net.if0) == {"bad_offload": 2}


def test_superframe_that_fits_the_mtu_is_counted_and_checked(net, stack):
    # Super-frames no longer than the MTU, towards an interface with TSO:
    # the one that is plain TCP goes whole and counts as a super-frame
    # forwarded; the one that is UDP is refused as bad offload, as a long
    # one would be (a TSO interface must never get a super-frame it
    # cannot segment).
    net.if1.set_capenable(TSO_CAPS)
    inject(net.if0, offloaded(net, tcp_pkt(560), 1448))
    assert net.if1.sent_meta == [(M_CSUM_TSOv4 | M_CSUM_TCPv4, (20 << 16) | 16, 1448)]
    assert len(take(net.if1)) == 1
    assert stats(stack, "tso_forward", "forward", "badoffload") == (1, 1, 0)
    m = offloaded(net, raw(IP(src=R.H0, dst=R.H1) / UDP(sport=1, dport=2) / (b"u" * 500)),
                  l4="udp")
    m.csum_flags |= M_CSUM_TSOv4
    m.segsz = 400
    inject(net.if0, m)
    assert net.if1.sent == [] and net.if0.sent == []
    assert stats(stack, "tso_forward", "forward", "badoffload") == (1, 1, 1)
    assert discards(net.if0) == {"bad_offload": 1}


@pytest.mark.parametrize("df", [True, False], ids=["DF", "no-DF"])
def test_partial_checksum_packet_of_exactly_the_mtu_goes_whole(net, stack, df):
    net.if1.mtu = 600
    pkt = raw(IP(src=R.H0, dst=R.H1, flags="DF" if df else 0)
              / UDP(sport=5000, dport=5201) / (b"m" * 572))
    assert len(pkt) == 600
    inject(net.if0, offloaded(net, pkt, l4="udp"))
    (f,) = take(net.if1)
    out = IP(raw(ip_of(f)))
    assert out.len == 600 and out.frag == 0 and not out.flags.MF
    want = IP(pkt)
    want.ttl -= 1
    del want.chksum, want[UDP].chksum                   # what scapy computes
    assert raw(out) == raw(IP(raw(want)))
    assert net.if1.sw_csum == 1 and net.if0.sent == []
    assert stats(stack, "fragmented", "cantfrag", "forward") == (0, 0, 1)


def test_partial_checksum_packet_of_exactly_the_mtu_is_left_to_an_interface_that_can(
        net, stack):
    # At exactly the MTU the packet takes the fast path as any other that
    # fits: its checksum stays partial for the interface to complete.
    net.if1.set_capenable(IFCAP_CSUM_TCPv4_Tx)
    net.if1.mtu = 600
    pkt = tcp_pkt(560)
    assert len(pkt) == 600
    inject(net.if0, offloaded(net, pkt))
    (f,) = take(net.if1)
    out = raw(ip_of(f))
    assert out[:8] == pkt[:8] and out[8] == 63 and header_ok(out)
    assert out[36:38] == pseudo_seed(pkt, 20).to_bytes(2, "big")     # still partial
    assert out[12:36] == pkt[12:36] and out[38:] == pkt[38:]
    assert net.if1.sent_meta == [(M_CSUM_TCPv4, (20 << 16) | 16, 0)]
    assert net.if1.sw_csum == 0
    assert stats(stack, "fragmented", "forward") == (0, 1)


def test_superframe_segmented_without_clusters_is_dropped_and_counted(net, stack):
    pool = stack.pool
    for i in (1, 2):
        m = offloaded(net, tcp_pkt(1200), 400)             # three segments' worth
        hold = []
        while pool.nclusters - pool.in_use > 1:            # room for one segment
            hold.append(pool.get())
        inject(net.if0, m)
        for h in hold:
            pool.freem(h)
        assert stack.ip.ips_odropped == i
        assert net.if1.out_discards["nobufs"] == i and net.if1.oerrors == i
    assert net.if1.sent == [] and (net.if1.sw_tso, net.if1.sw_tso_segs) == (0, 0)


def test_last_segment_of_exactly_the_mtu_is_not_fragmented(net, stack):
    # DF clear, segments of 1040 bytes on a 600-byte MTU: the first is cut
    # in two fragments, the last segment (40 + 560) fits as it is.
    net.if1.mtu = 600
    inject(net.if0, offloaded(net, tcp_pkt(1560, df=False), 1000))
    ips = fragments_of(take(net.if1))
    assert [(ip.len, ip.id, ip.frag, ip.flags.MF) for ip in ips] == [
        (596, 7, 0, 1), (464, 7, 72, 0), (600, 8, 0, 0)]
    assert stats(stack, "fragmented", "ofragments", "tso_forward") == (1, 2, 1)
    assert (net.if1.sw_tso, net.if1.sw_tso_segs) == (1, 2)


# -- addresses: removing one removes exactly it, and its route when it was the last ---

def addrs(ifp):
    return [(ntoa(ia.addr), ia.plen) for ia in ifp.in_addrs]


def test_delete_address_removes_exactly_that_address(stack):
    ifp = fake_if(stack, 0, "02:00:00:00:00:01", "10.0.0.1", 24)
    ip = stack.ip
    ip.add_address(ifp, aton("10.0.0.9"), 24)
    ip.add_address(ifp, aton("10.0.5.1"), 24)
    ip.del_address(ifp, aton("10.0.0.9"))
    assert addrs(ifp) == [("10.0.0.1", 24), ("10.0.5.1", 24)]
    assert sorted(ip.local_addrs) == [aton("10.0.0.1"), aton("10.0.5.1")]
    assert [r["destination"] for r in ip.routes.to_list()] == ["10.0.0.0/24", "10.0.5.0/24"]
    # the last address of 10.0.5.0/24 goes, and its route with it, though
    # another /24 remains
    ip.del_address(ifp, aton("10.0.5.1"))
    assert addrs(ifp) == [("10.0.0.1", 24)]
    assert [r["destination"] for r in ip.routes.to_list()] == ["10.0.0.0/24"]
    assert ip.routes.lookup(aton("10.0.5.7")) is None


def test_delete_address_not_on_the_interface_names_both(stack):
    ifp = fake_if(stack, 0, "02:00:00:00:00:01", "10.0.0.1", 24)
    with pytest.raises(ValueError) as ei:
        stack.ip.del_address(ifp, aton("10.0.0.7"))
    assert str(ei.value) == "10.0.0.7 is not an address of fk0"
    assert addrs(ifp) == [("10.0.0.1", 24)]


# -- a discarded or diverted packet never stops the rest of its burst -----------------

def test_every_packet_of_a_burst_is_handled_whatever_comes_before_it(net, stack):
    net.if1.mtu = 576
    eth = net.eth0()
    good = [raw(udp(ident=100 + i, payload=b"good%d" % i)) for i in range(9)]
    others = [
        raw(udp())[:12],                                         # too short
        bad_header("badsum"),
        raw(udp(dst=R.IP0)),                                     # for us: port unreachable
        raw(udp(dst="127.0.0.1")),                               # martian destination
        raw(udp(dst="192.0.2.9")),                               # no route
        raw(udp(ttl=1)),                                         # time exceeded
        raw(udp(payload=b"D" * 600, flags="DF")),                # needs fragmenting, DF
        raw(udp(dst="224.0.0.9")),                               # multicast: not routed
    ]
    burst = [good[0]]
    for bad, g in zip(others, good[1:]):
        burst += [bad, g]
    inject(net.if0, *(eth + p for p in burst))
    assert [ip_of(f).id for f in take(net.if1)] == [100 + i for i in range(9)]
    errs = [(ip_of(f)[ICMP].type, ip_of(f)[ICMP].code) for f in take(net.if0)]
    assert errs == [(3, 3), (3, 0), (11, 0), (3, 4)]
    assert stats(stack, "total", "forward", "tooshort", "badsum", "delivered",
                 "badaddr", "noroute", "cantforward", "cantfrag", "bcast") == (
        17, 9, 1, 1, 1, 1, 1, 3, 1, 1)


def test_a_packet_that_cannot_be_fragmented_for_lack_of_clusters_stops_nothing(net, stack):
    pool = stack.pool
    net.if1.mtu = 576
    burst = [pool.from_bytes(raw(net.from_h0(p))) for p in (
        udp(ident=1), udp(ident=2, payload=bytes(range(200)) * 7), udp(ident=3))]
    hold = []
    while pool.nclusters - pool.in_use > 1:
        hold.append(pool.get())
    try:
        inject(net.if0, *burst)
    finally:
        for h in hold:
            pool.freem(h)
    assert [ip_of(f).id for f in take(net.if1)] == [1, 3]
    assert stats(stack, "forward", "odropped", "fragmented") == (2, 1, 0)


# -- the fast path: a cached destination vouches for nothing else ---------------------

def test_cached_destination_still_checks_source_link_broadcast_and_ttl(net, stack):
    net.send0(udp(ident=1))                                  # caches H1, vouches for H0
    assert len(take(net.if1)) == 1 and aton(R.H1) in stack.ip.routes.cache
    inject(net.if0,
           net.from_h0(udp(src="127.0.0.1", ident=2)),       # martian source
           Ether(dst="ff:ff:ff:ff:ff:ff", src=R.H0_MAC) / udp(ident=3),
           net.from_h0(udp(ttl=1, ident=4)),
           net.from_h0(udp(ttl=0, ident=5)),
           net.from_h0(udp(src="10.0.0.3", ident=6)))        # a new source, fine
    assert [ip_of(f).id for f in take(net.if1)] == [6]
    assert [ip_of(f)[ICMP].type for f in take(net.if0)] == [11, 11]
    assert stats(stack, "forward", "badaddr", "cantforward") == (2, 1, 3)
    assert discards(net.if0) == {"ip_badaddr": 1}


def test_ttl_2_is_forwarded_whatever_the_protocol_number(net, stack):
    # TTL and protocol share a header word: TTL 2 with protocol 0 is the
    # smallest word that still goes on.
    for _ in range(2):                          # route lookup, then cached
        send_raw_ip(net, raw(IP(src=R.H0, dst=R.H1, ttl=2, proto=0) / b"zero"))
    assert [(ip_of(f).ttl, ip_of(f).proto) for f in take(net.if1)] == [(1, 0)] * 2
    assert net.if0.sent == [] and stats(stack, "forward", "cantforward") == (2, 0)


def test_bad_checksum_caught_even_when_the_words_sum_to_a_multiple_of_2_16(net, stack):
    """A correct header's words sum to a multiple of 0xFFFF. A wrong
    checksum field that makes them sum to a multiple of 0x10000 instead is
    still wrong."""
    b = bytearray(raw(udp()))
    s = sum(int.from_bytes(b[i:i + 2], "big") for i in range(0, 20, 2))
    c = int.from_bytes(b[10:12], "big")
    c2 = c + (-s % 0x10000)
    if c2 > 0xFFFF:
        c2 -= 0x10000
    b[10:12] = c2.to_bytes(2, "big")
    s2 = sum(int.from_bytes(b[i:i + 2], "big") for i in range(0, 20, 2))
    assert s2 % 0x10000 == 0 and s2 % 0xFFFF != 0
    send_raw_ip(net, bytes(b))
    assert net.if1.sent == [] and discards(net.if0) == {"ip_badsum": 1}


def test_padding_trimmed_whatever_the_ip_id(net, stack):
    # The IP id happens to equal the padded length: only the total length
    # field says where the packet ends.
    pkt = raw(IP(src=R.H0, dst=R.H1, id=46) / UDP(sport=1, dport=2))      # 28 bytes
    inject(net.if0, net.eth0() + pkt + bytes(18))
    (f,) = take(net.if1)
    assert len(raw(f)) == 14 + 28 and raw(f)[14 + 12:] == pkt[12:]


def test_no_route_counted_for_each_packet(net, stack):
    inject(net.if0, net.from_h0(udp(dst="192.0.2.9", ident=1)),
           net.from_h0(udp(dst="192.0.2.10", ident=2)))
    assert stats(stack, "noroute", "cantforward", "forward") == (2, 2, 0)
    assert [ip_of(f)[ICMP].code for f in take(net.if0)] == [0, 0]


# -- addresses: what may be configured, and what it does to broadcasts -----------------

@pytest.mark.parametrize("plen, route, flags", [
    (1, "0.0.0.0/1", "UC"), (8, "10.0.0.0/8", "UC"), (31, "10.128.0.0/31", "UC"),
    (32, "10.128.0.1/32", "UHC")])
def test_any_prefix_length_1_to_32_can_be_configured(stack, plen, route, flags):
    ifp = fake_if(stack, 0, "02:00:00:00:00:01")
    stack.ip.add_address(ifp, aton("10.128.0.1"), plen)
    assert addrs(ifp) == [("10.128.0.1", plen)]
    assert [(r["destination"], r["flags"]) for r in stack.ip.routes.to_list()] == [
        (route, flags)]


@pytest.mark.parametrize("plen", [0, 33])
def test_prefix_length_outside_1_to_32_is_refused(stack, plen):
    ifp = fake_if(stack, 0, "02:00:00:00:00:01")
    with pytest.raises(ValueError) as ei:
        stack.ip.add_address(ifp, aton("10.128.0.1"), plen)
    assert str(ei.value) == f"prefix length {plen}: must be 1..32"
    assert ifp.in_addrs == [] and stack.ip.local_addrs == {} and stack.ip.routes.routes == []


def test_address_already_configured_names_its_interface(net, stack):
    with pytest.raises(ValueError) as ei:
        stack.ip.add_address(net.if1, aton(R.IP0), 24)
    assert str(ei.value) == "address 10.0.0.1 is already on fk0"
    assert addrs(net.if1) == [(R.IP1, 24)]


def test_point_to_point_31_has_no_broadcast_address(net, stack):
    # RFC 3021: on a /31 both addresses are hosts; neither is a broadcast.
    PEER, PEER_MAC = "10.0.9.1", "02:cc:00:00:09:01"
    if2 = fake_if(stack, 2, "02:00:00:00:09:00", "10.0.9.0", 31)
    net.learn(if2, PEER, PEER_MAC)
    assert aton(PEER) not in stack.ip.bcast_addrs
    net.send0(udp(dst=PEER))
    (f,) = take(if2)
    assert f.dst == PEER_MAC and ip_of(f).dst == PEER
    inject(if2, Ether(dst="02:00:00:00:09:00", src=PEER_MAC) / udp(src=PEER, ident=9))
    assert [ip_of(f).id for f in take(net.if1)] == [9]
    assert stats(stack, "forward", "bcast", "badaddr") == (2, 0, 0)


def test_stack_without_any_address_drops_what_it_cannot_route(stack):
    # An interface up before anything is configured on it.
    ifp = fake_if(stack, 0, "02:00:00:00:00:01")
    for dst in ("10.0.0.5", "255.255.255.255"):
        inject(ifp, Ether(dst="02:00:00:00:00:01", src=R.H0_MAC) / udp(dst=dst))
    assert ifp.sent == []
    assert stats(stack, "total", "noroute", "bcast", "forward") == (2, 1, 1, 0)


# -- the header checks look at the whole header, whatever the other fields say --------

def first_20_sum_ok(b: bytearray) -> bytes:
    """`b` with its checksum field made right over the first 20 bytes only."""
    b[10:12] = b"\0\0"
    b[10:12] = in_cksum(b, 0, 20).to_bytes(2, "big")
    return bytes(b)


def test_options_are_covered_by_the_header_checksum(net, stack):
    b = bytearray(with_options(RA, b"data"))                 # IHL 6
    send_raw_ip(net, first_20_sum_ok(b))
    assert net.if1.sent == [] and discards(net.if0) == {"ip_badsum": 1}


def test_other_ip_versions_are_dropped_whatever_their_header_length(net, stack):
    # Version 8 with IHL 10 shares its top 7 bits with 0x45 shifted left.
    b = bytearray(with_options(RA * 5, b"data"))             # 40-byte header
    b[0] = 0x8A
    send_raw_ip(net, first_20_sum_ok(b))
    assert net.if1.sent == [] and discards(net.if0) == {"ip_badvers": 1}


def test_other_ip_versions_are_dropped_whatever_their_total_length(net, stack):
    # A total length of 0x45xx: its high byte reads like version 4, IHL 5.
    b = bytearray(raw(udp(payload=bytes(0x4500 - 28))))
    assert b[2] == 0x45 and len(b) == 0x4500
    b[0] = 0x65
    send_raw_ip(net, first_20_sum_ok(b))
    assert net.if1.sent == [] and discards(net.if0) == {"ip_badvers": 1}
    assert stats(stack, "badvers", "forward", "fragmented") == (1, 0, 0)


# -- the work the fast path spares ----------------------------------------------------
# A plain packet to a cached route from a vouched source is forwarded with no
# full header check, no route lookup, no look at our addresses and no pullup:
# that is what makes it the fast path, so the tests count those calls.

@pytest.mark.parametrize("ipkt", [
    raw(udp(ident=0x3101)),                                   # IHL 5
    with_options(RA * 2, b"opts"),                            # IHL 7
], ids=["plain", "options"])
def test_a_header_whole_in_the_first_mbuf_is_not_pulled_up(net, stack, monkeypatch, ipkt):
    hlen = (ipkt[0] & 0x0F) * 4
    m = split_frame(stack.pool, net.eth0() + ipkt, 14 + hlen)     # exactly the header
    pullups = calls(monkeypatch, stack.pool, "pullup")
    inject(net.if0, m)
    (f,) = take(net.if1)
    out = raw(f)[14:]
    assert len(out) == len(ipkt) and out[8] == 63 and header_ok(out)
    assert pullups == [] and stats(stack, "forward") == (1,)


def test_only_a_header_out_of_the_plain_kind_gets_the_full_check(net, stack, monkeypatch):
    slow = calls(monkeypatch, stack.ip, "_check_slow")
    inject(net.if0, net.from_h0(udp(ident=1)), net.from_h0(udp(ident=2)))
    assert slow == []
    send_raw_ip(net, with_options(RA, b"x"))                 # IHL 6
    assert len(slow) == 1
    assert len(take(net.if1)) == 3


def test_the_second_packet_takes_the_cached_route_and_the_vouched_source(
        net, stack, monkeypatch):
    lookups = calls(monkeypatch, stack.ip.routes, "lookup")
    net.send0(udp(ident=1))
    assert lookups == [(aton(R.H1),)]
    assert stack.ip.good_src == {aton(R.H0)}
    stack.ip.local_addrs = mine = CountingDict(stack.ip.local_addrs)
    # TTL 2 protocol 0 is the smallest TTL/protocol word the fast path takes.
    inject(net.if0, net.from_h0(udp(ident=2)),
           net.eth0() + raw(IP(src=R.H0, dst=R.H1, id=3, ttl=2, proto=0) / b"zero"))
    assert [(ip_of(f).id, ip_of(f).ttl) for f in take(net.if1)] == [(1, 63), (2, 63), (3, 1)]
    assert lookups == [(aton(R.H1),)] and mine.asked == 0
    assert stats(stack, "forward") == (3,)


def test_the_vouched_sources_are_forgotten_once_there_are_good_src_max(net, stack):
    good = stack.ip.good_src
    good.update(range(1, GOOD_SRC_MAX))                      # one short of full
    net.send0(udp(ident=1))
    assert len(good) == GOOD_SRC_MAX and aton(R.H0) in good
    net.send0(udp(src="10.0.0.3", ident=2))                  # a new source: full, forget
    assert good == {aton("10.0.0.3")}
    assert [ip_of(f).id for f in take(net.if1)] == [1, 2]


def test_the_stacks_own_packets_take_a_route_the_forwarding_path_cached(
        net, stack, monkeypatch):
    net.send1(udp(src=R.H1, dst=R.H0))                       # forwarded: H0 cached
    assert len(take(net.if0)) == 1 and aton(R.H0) in stack.ip.routes.cache
    matches = calls(monkeypatch, stack.ip.routes, "match")
    net.send0(IP(src=R.H0, dst=R.IP0) / ICMP(id=7, seq=1))   # the echo reply goes to H0
    (f,) = take(net.if0)
    assert (ip_of(f).dst, f[ICMP].type) == (R.H0, 0)
    assert matches == []
