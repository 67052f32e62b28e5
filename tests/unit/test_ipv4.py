"""iopkt.ipv4: header checks, forwarding, fragmentation, ICMP errors.

Topology (fixture `net`, neighbours already resolved):

    H0 10.0.0.2 --- fk0 10.0.0.1/24  [stack]  fk1 10.0.1.1/24 --- H1 10.0.1.2
"""

import pytest
from scapy.compat import raw
from scapy.layers.inet import ICMP, IP, UDP, IPOption_RR, IPOption_Security, defragment
from scapy.layers.l2 import Ether

from fakenet import FakeClock, Router, aton, fake_if, inject, ip_of, take
from iopkt.cksum import cksum_sum, fold, in_cksum
from iopkt.stack import Stack

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
        else:
            assert [f.len for f in sent] == [572, 572, 324]
            assert (pool.drops - drops0, ip.ips_odropped) == (0, 0)
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
    stack.icmp.burst = 3
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
