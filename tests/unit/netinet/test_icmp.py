"""iopkt.icmp: echo replies (and what is not answered), errors and their rate limit."""

import pytest
from scapy.compat import raw
from scapy.layers.inet import ICMP, IP, TCP, UDP
from scapy.layers.l2 import ARP, Ether

from iopkt.kern.mbuf import M_BCAST, M_MCAST, M_PKTHDR, M_CSUM_TSOv4, M_CSUM_UDPv4
from iopkt.netinet.cksum import in_cksum
from iopkt.stack.stack import Stack

from fakenet import FakeClock, Router, aton, fake_if, inject, ip_of, take

R = Router


def echo(dst=R.IP0, ident=0x1234, seq=7, payload=b"abcdefghijklmnopqrstuvwxyz", ttl=64):
    return IP(src=R.H0, dst=dst, ttl=ttl, id=0x77) / ICMP(type=8, id=ident, seq=seq) / payload


def assert_echo_reply(frame, req, src):
    assert (frame.dst, frame.src, frame.type) == (R.H0_MAC, R.MAC0, 0x0800)
    ip = ip_of(frame)
    b = raw(ip)
    assert in_cksum(b, 0, 20) == 0
    assert (ip.src, ip.dst, ip.ttl, ip.proto, ip.len) == (src, R.H0, 64, 1, len(raw(req)))
    icmp = b[20:]
    assert in_cksum(icmp) == 0                         # valid ICMP checksum
    r = ip[ICMP]
    assert (r.type, r.code, r.id, r.seq) == (0, 0, req[ICMP].id, req[ICMP].seq)
    assert icmp[8:] == raw(req[ICMP].payload)          # payload unchanged
    fixed = ICMP(icmp)
    del fixed.chksum
    assert ICMP(raw(fixed)).chksum == r.chksum         # as scapy computes it


def test_echo_reply(net, stack):
    req = echo()
    net.send0(req)
    (f,) = take(net.if0)
    assert_echo_reply(f, req, R.IP0)
    assert net.if1.sent == []
    assert stack.icmp.stats["reflect"] == 1
    assert stack.icmp.inhist == {"echo/0": 1} and stack.icmp.outhist == {"echoreply/0": 1}
    assert stack.ip.ips_delivered == 1 and stack.ip.ips_localout == 1


@pytest.mark.parametrize("size", [0, 1, 7, 1000, 1472])
def test_echo_reply_sizes(net, size):
    req = echo(payload=bytes(i & 0xFF for i in range(size)), ident=size, seq=size + 1)
    net.send0(req)
    (f,) = take(net.if0)
    assert_echo_reply(f, req, R.IP0)


def test_echo_to_far_interface_address(net):
    req = echo(dst=R.IP1)
    net.send0(req)
    (f,) = take(net.if0)
    assert_echo_reply(f, req, R.IP1)
    assert net.if1.sent == []


def test_echo_ttl_1_to_us_is_answered(net):
    req = echo(ttl=1)
    net.send0(req)
    (f,) = take(net.if0)
    assert_echo_reply(f, req, R.IP0)


def test_echo_padded_frame(net):
    req = echo(payload=b"")                         # 28 bytes of IP
    inject(net.if0, raw(net.from_h0(req)) + b"\xaa" * 18)
    (f,) = take(net.if0)
    assert_echo_reply(f, req, R.IP0)


@pytest.mark.parametrize("size", [26, 1472])
def test_echo_split_over_two_mbufs(net, stack, size):
    req = echo(payload=bytes((7 * i) & 0xFF for i in range(size)))
    frame = raw(net.from_h0(req))
    m = stack.pool.from_bytes(frame[:40])        # IP header in the first, ICMP split
    stack.pool.cat(m, stack.pool.from_bytes(frame[40:]))
    m.rcvif = net.if0
    net.if0.if_input(net.if0, [m])
    (f,) = take(net.if0)
    assert_echo_reply(f, req, R.IP0)
    assert len(raw(f)) == 14 + 28 + size
    assert (stack.icmp.stats["reflect"], stack.icmp.stats["nobufs"]) == (1, 0)
    assert net.if1.sent == []


def test_echo_longer_than_a_cluster_is_answered_in_full():
    """A 1028-byte echo request on a stack of 512-byte clusters arrives as
    a chain of 3 mbufs. RFC 1812 4.3.3.6: a router MUST echo a request of
    up to the largest MTU of its networks (1500 here), with all of its
    data; the pool has clusters to spare. And nothing may leak."""
    clock = FakeClock()
    st = Stack("small", nmbclusters=64, mclbytes=512, clock=clock)
    try:
        net = Router(st, clock)
        net.learn(net.if0, R.H0, R.H0_MAC)
        req = echo(payload=bytes((i * 13) & 0xFF for i in range(1000)), ident=0x4C4C, seq=9)
        assert len(req) == 1028 and net.if0.mtu >= 1028
        net.send0(req)
        frames = take(net.if0)
        icmp_stats = dict(st.icmp.stats)
        other = list(net.if1.sent)
    finally:
        st.shutdown()
        left = st.pool.in_use
        st.close()
    assert left == 0
    assert other == []
    assert (icmp_stats["reflect"], icmp_stats["nobufs"]) == (1, 0), icmp_stats
    (f,) = frames
    assert len(raw(f)) == 14 + 1028
    assert_echo_reply(f, req, R.IP0)             # every byte of the payload back


def test_echo_reply_waits_for_arp_then_goes(router, stack):
    req = echo()
    router.send0(req)
    (arp,) = take(router.if0)                    # the reply waits for H0's MAC
    assert arp.dst == "ff:ff:ff:ff:ff:ff" and arp[ARP].pdst == R.H0
    assert stack.pool.in_use == 1
    inject(router.if0, Ether(dst=R.MAC0, src=R.H0_MAC) / ARP(
        op=2, hwsrc=R.H0_MAC, psrc=R.H0, hwdst=R.MAC0, pdst=R.IP0))
    (f,) = take(router.if0)
    assert_echo_reply(f, req, R.IP0)
    assert stack.pool.in_use == 0


def test_bad_icmp_checksum_not_answered(net, stack):
    req = echo()
    b = bytearray(raw(req))
    b[22] ^= 0xFF
    inject(net.if0, raw(Ether(dst=R.MAC0, src=R.H0_MAC, type=0x0800)) + bytes(b))
    assert net.if0.sent == []
    assert stack.icmp.stats["badsum"] == 1 and stack.icmp.stats["reflect"] == 0


def test_short_icmp_not_answered(net, stack):
    net.send0(IP(src=R.H0, dst=R.IP0, proto=1) / b"\x08\x00\xf7")
    assert net.if0.sent == [] and stack.icmp.stats["tooshort"] == 1


def test_non_echo_not_answered(net, stack):
    net.send0(IP(src=R.H0, dst=R.IP0) / ICMP(type=0, id=1, seq=1))
    net.send0(IP(src=R.H0, dst=R.IP0) / ICMP(type=13))
    assert net.if0.sent == []
    assert stack.icmp.inhist == {"echoreply/0": 1, "13/0": 1}
    assert stack.icmp.stats["reflect"] == 0


def test_echo_to_broadcast_not_answered(net, stack):
    net.send0(echo(dst="10.0.0.255"))
    net.send0(echo(dst="255.255.255.255"))
    assert net.if0.sent == [] and stack.ip.ips_bcast == 2


def test_no_echo_reply_to_a_martian_source(net, stack):
    from scapy.layers.inet import ICMP, IP

    from fakenet import take
    for src in ("127.0.0.1", "0.1.2.3", "224.0.0.5"):
        net.send0(IP(src=src, dst=net.IP0) / ICMP(id=7, seq=1))
    assert take(net.if0) == []
    assert stack.ip.stats()["badaddr"] == 3
    assert net.if0.in_discards["ip_badaddr"] == 3


# -- the counters netstat shows ---------------------------------------------------------

def test_icmp_counters_exist_from_the_start_at_zero(stack):
    assert stack.icmp.stats == dict.fromkeys(
        ("error", "oldicmp", "ratelimited", "badsum", "tooshort", "reflect", "nobufs"), 0)
    assert stack.icmp.inhist == {} and stack.icmp.outhist == {}


def test_every_echo_is_counted_once(net, stack):
    for seq in (1, 2, 3):
        net.send0(echo(seq=seq))
    assert len(take(net.if0)) == 3
    assert stack.icmp.stats["reflect"] == 3
    assert stack.icmp.inhist == {"echo/0": 3} and stack.icmp.outhist == {"echoreply/0": 3}


def test_every_bad_or_short_message_is_counted_once(net, stack):
    b = bytearray(raw(echo()))
    b[22] ^= 0xFF
    for _ in range(2):
        inject(net.if0, raw(Ether(dst=R.MAC0, src=R.H0_MAC, type=0x0800)) + bytes(b))
        net.send0(IP(src=R.H0, dst=R.IP0, proto=1) / b"\x08\x00\xf7\xff\x00\x00\x00")
    assert net.if0.sent == []
    assert (stack.icmp.stats["badsum"], stack.icmp.stats["tooshort"]) == (2, 2)
    assert stack.icmp.inhist == {}


def test_echo_with_a_nonzero_code_is_answered_with_the_same_code(net, stack):
    req = IP(src=R.H0, dst=R.IP0, id=0x77) / ICMP(type=8, code=3, id=9, seq=4) / b"coded"
    net.send0(req)
    (f,) = take(net.if0)
    b = raw(ip_of(f))
    assert in_cksum(b, 0, 20) == 0 and in_cksum(b[20:]) == 0
    assert b[20:22] == b"\x00\x03" and b[24:] == raw(req)[24:]
    assert stack.icmp.inhist == {"echo/3": 1} and stack.icmp.outhist == {"echoreply/3": 1}


def test_echo_reply_keeps_the_request_s_fields_but_addresses_and_ttl(net):
    req = IP(src=R.H0, dst=R.IP0, id=0x4321, tos=0x10, ttl=9) / ICMP(id=1, seq=2) / b"keep"
    net.send0(req)
    (f,) = take(net.if0)
    want = IP(src=R.IP0, dst=R.H0, id=0x4321, tos=0x10, ttl=64) / ICMP(
        type=0, id=1, seq=2) / b"keep"
    assert raw(ip_of(f)) == raw(want)


def test_echo_received_as_link_broadcast_is_answered_unicast(net, stack):
    flags = []

    def transmit(ifp, pkts):
        for m in pkts:
            flags.append(m.flags)
            ifp.sent.append(m.tobytes())
            stack.pool.freem(m)

    net.if0.if_transmit = transmit
    req = echo()
    inject(net.if0, Ether(dst="ff:ff:ff:ff:ff:ff", src=R.H0_MAC) / req)
    (f,) = take(net.if0)
    assert_echo_reply(f, req, R.IP0)
    assert flags == [M_PKTHDR]                  # no longer marked as received broadcast


def test_echo_split_over_two_mbufs_with_the_pool_empty_is_dropped(net, stack):
    # The ICMP header straddles the two mbufs and the first one ends its
    # cluster: reading it needs a cluster there is none of.
    pool = stack.pool
    pkt = raw(echo())
    chains = []
    for _ in range(2):
        m = pool.from_bytes(pkt[:22])
        m.off = m.size - 22
        m.buf[m.off:m.size] = pkt[:22]
        pool.cat(m, pool.from_bytes(pkt[22:]))
        m.rcvif = net.if0
        chains.append(m)
    held = []
    while (x := pool.get()) is not None:
        held.append(x)
    try:
        for m in chains:
            stack.icmp.input(m, 20)
            while (x := pool.get()) is not None:    # what freeing it gave back
                held.append(x)
    finally:
        for x in held:
            pool.freem(x)
    assert net.if0.sent == []
    assert stack.icmp.stats["nobufs"] == 2 and stack.icmp.stats["reflect"] == 0
    assert pool.in_use == 0


def test_echo_with_its_icmp_header_split_over_two_mbufs(net, stack):
    req = echo(payload=bytes(range(60)))
    frame = raw(net.from_h0(req))
    m = stack.pool.from_bytes(frame[:14 + 22])     # type, code and half the checksum
    stack.pool.cat(m, stack.pool.from_bytes(frame[14 + 22:]))
    m.rcvif = net.if0
    net.if0.if_input(net.if0, [m])
    (f,) = take(net.if0)
    assert_echo_reply(f, req, R.IP0)


def test_echo_in_a_cluster_that_held_a_longer_packet_is_answered(net, stack):
    # Only the request's own bytes count for its checksum, not what the
    # cluster still holds from the packet before.
    big = echo(payload=bytes(range(256)) * 5, seq=1)
    net.send0(big)
    small = echo(payload=b"tiny", seq=2)
    net.send0(small)
    first, second = take(net.if0)
    assert_echo_reply(first, big, R.IP0)
    assert_echo_reply(second, small, R.IP0)
    assert stack.icmp.stats["badsum"] == 0


def test_bad_checksum_in_a_chain_is_not_answered(net, stack):
    b = bytearray(raw(echo(payload=bytes(range(200)))))
    b[100] ^= 0x5A
    m = stack.pool.from_bytes(bytes(b[:40]))
    stack.pool.cat(m, stack.pool.from_bytes(bytes(b[40:])))
    m.rcvif = net.if0
    stack.icmp.input(m, 20)
    assert net.if0.sent == [] and stack.icmp.stats["badsum"] == 1
    assert stack.icmp.inhist == {}


# -- icmp_error: exactly what is sent --------------------------------------------------------

def udp(src=R.H0, dst=R.H1, ttl=64, payload=b"0123456789abcdef", sport=1000, **kw):
    return raw(IP(src=src, dst=dst, ttl=ttl, id=0x99, **kw) / UDP(sport=sport, dport=2000)
               / payload)


def error_about(net, stack, pkt: bytes, t=3, code=0, mtu=None, rcvif="if0", flags=0):
    """Hand `pkt` (an IP packet, as received on `rcvif`) to icmp_error."""
    m = stack.pool.from_bytes(pkt)
    m.rcvif = getattr(net, rcvif) if rcvif else None
    m.flags |= flags
    if mtu is None:
        stack.icmp.error(m, t, code)
    else:
        stack.icmp.error(m, t, code, mtu)


def expected_error(t, code, src, dst, quote: bytes, ident: int, mtu: int = 0) -> bytes:
    icmp = bytearray([t, code, 0, 0, 0, 0, mtu >> 8, mtu & 0xFF]) + quote
    c = in_cksum(bytes(icmp))
    icmp[2:4] = c.to_bytes(2, "big")
    return raw(IP(src=src, dst=dst, id=ident, ttl=64, proto=1, flags=0) / bytes(icmp))


def test_error_exact_bytes(net, stack):
    pkt = udp()
    ident = stack.ip.ident + 1
    error_about(net, stack, pkt, 3, 1)
    (f,) = take(net.if0)
    assert (f.dst, f.src, f.type) == (R.H0_MAC, R.MAC0, 0x0800)
    assert raw(f.payload) == expected_error(3, 1, R.IP0, R.H0, pkt[:28], ident)
    assert stack.icmp.stats["error"] == 1 and stack.icmp.outhist == {"unreach/1": 1}


def test_error_carries_the_next_hop_mtu_in_its_last_two_bytes(net, stack):
    pkt = udp()
    ident = stack.ip.ident + 1
    error_about(net, stack, pkt, 3, 4, mtu=0x1234)
    (f,) = take(net.if0)
    assert raw(f.payload) == expected_error(3, 4, R.IP0, R.H0, pkt[:28], ident, mtu=0x1234)
    assert raw(f.payload)[24:28] == b"\x00\x00\x12\x34"


def test_error_about_a_packet_shorter_than_header_plus_8_quotes_it_whole(net, stack):
    pkt = raw(IP(src=R.H0, dst=R.H1, proto=99) / b"abc")
    ident = stack.ip.ident + 1
    error_about(net, stack, pkt, 3, 2)
    (f,) = take(net.if0)
    assert raw(f.payload) == expected_error(3, 2, R.IP0, R.H0, pkt, ident)


def test_error_about_plain_tcp_quotes_its_header_as_it_came(net, stack):
    pkt = raw(IP(src=R.H0, dst=R.H1, id=5) / TCP(sport=40000, dport=80, seq=77) / (b"t" * 300))
    ident = stack.ip.ident + 1
    error_about(net, stack, pkt, 11, 0)
    (f,) = take(net.if0)
    assert raw(f.payload) == expected_error(11, 0, R.IP0, R.H0, pkt[:28], ident)


def test_error_about_a_superframe_shorter_than_one_segment_quotes_it_as_is(net, stack):
    pkt = raw(IP(src=R.H0, dst=R.H1, id=6) / TCP(sport=40000, dport=80) / (b"s" * 1000))
    m = stack.pool.from_bytes(pkt)
    m.rcvif = net.if0
    m.csum_flags = M_CSUM_TSOv4
    m.segsz = 1448
    ident = stack.ip.ident + 1
    stack.icmp.error(m, 3, 4, 1400)
    (f,) = take(net.if0)
    assert raw(f.payload) == expected_error(3, 4, R.IP0, R.H0, pkt[:28], ident, mtu=1400)


def test_error_about_an_error_sized_icmp_of_one_byte(net, stack):
    # One byte of ICMP is enough to see it is an error: no error about it.
    error_about(net, stack, raw(IP(src=R.H0, dst=R.H1, proto=1) / b"\x03"), 11, 0)
    assert net.if0.sent == [] and stack.icmp.stats["oldicmp"] == 1
    # No ICMP byte at all: nothing says it is an error, so it gets one.
    empty = raw(IP(src=R.H0, dst=R.H1, proto=1))
    ident = stack.ip.ident + 1
    error_about(net, stack, empty, 11, 0)
    (f,) = take(net.if0)
    assert raw(f.payload) == expected_error(11, 0, R.IP0, R.H0, empty, ident)
    assert stack.icmp.stats["oldicmp"] == 1 and stack.icmp.stats["error"] == 1


def test_udp_whose_first_byte_looks_like_an_error_type_gets_an_error(net, stack):
    pkt = udp(sport=0x0B00)                     # first byte 11, as ICMP time exceeded
    error_about(net, stack, pkt, 11, 0)
    assert len(take(net.if0)) == 1
    assert stack.icmp.stats["oldicmp"] == 0 and stack.icmp.stats["error"] == 1


def test_each_error_about_an_error_is_counted(net, stack):
    for t in (3, 4, 5, 11, 12):
        error_about(net, stack, raw(IP(src=R.H0, dst=R.H1) / ICMP(type=t) / (b"q" * 28)), 11, 0)
    assert net.if0.sent == [] and stack.icmp.stats["oldicmp"] == 5
    assert stack.icmp.stats["error"] == 0


@pytest.mark.parametrize("frag, flags", [(0, "DF"), (0, "MF")])
def test_error_about_a_first_fragment_or_df_packet(net, stack, frag, flags):
    error_about(net, stack, udp(frag=frag, flags=flags), 11, 0)
    assert len(take(net.if0)) == 1


@pytest.mark.parametrize("frag", [1, 10, 0x100, 0x1000, 0x1FFF])
def test_no_error_about_a_later_fragment(net, stack, frag):
    error_about(net, stack, udp(frag=frag, ttl=1), 11, 0)
    assert net.if0.sent == [] and stack.icmp.stats["error"] == 0


@pytest.mark.parametrize("case", [
    "link_bcast", "link_mcast", "src_zero", "src_multicast", "src_class_e", "src_limited_bcast",
    "src_loopback", "src_loopback_net", "src_subnet_bcast", "src_ours", "dst_multicast",
    "dst_class_e"])
def test_no_error_where_rfc_1812_forbids_one(net, stack, case):
    pkt, flags = udp(), 0
    if case == "link_bcast":
        flags = M_BCAST
    elif case == "link_mcast":
        flags = M_MCAST
    elif case.startswith("src_"):
        src = {"src_zero": "0.0.0.0", "src_multicast": "224.0.0.0", "src_class_e": "240.1.2.3",
               "src_limited_bcast": "255.255.255.255", "src_loopback": "127.0.0.1",
               "src_loopback_net": "127.255.255.254", "src_subnet_bcast": "10.0.0.255",
               "src_ours": R.IP1}[case]
        pkt = udp(src=src)
    else:
        pkt = udp(dst={"dst_multicast": "224.0.0.0", "dst_class_e": "240.0.0.1"}[case])
    error_about(net, stack, pkt, 3, 0, flags=flags)
    assert net.if0.sent == [] and net.if1.sent == []
    assert stack.icmp.stats["error"] == 0 and stack.icmp.stats["ratelimited"] == 0
    assert stack.icmp.outhist == {}


def test_errors_to_sources_just_outside_the_forbidden_ranges_are_sent(net, stack):
    stack.ip.routes.add(0, 0, aton(R.H0))            # a default route back to H0
    for src in ("126.255.255.255", "128.0.0.1", "223.255.255.255"):
        error_about(net, stack, udp(src=src, dst=R.H1), 11, 0)
    error_about(net, stack, udp(dst="223.255.255.255"), 11, 0)
    assert [ip_of(f).dst for f in take(net.if0)] == \
        ["126.255.255.255", "128.0.0.1", "223.255.255.255", R.H0]
    assert stack.icmp.stats["error"] == 4


def test_partial_checksum_outside_the_packet_is_left_alone(net, stack):
    # A UDP packet cut short before its checksum field: there is nothing
    # to complete, the quote is the packet as it is.
    pkt = raw(IP(src=R.H0, dst=R.H1, proto=17) / b"\x03\xe8\x07\xd0\x00\x0e")
    m = stack.pool.from_bytes(pkt)
    m.rcvif = net.if0
    m.csum_flags = M_CSUM_UDPv4
    m.csum_data = (20 << 16) | 6
    ident = stack.ip.ident + 1
    stack.icmp.error(m, 11, 0)
    (f,) = take(net.if0)
    assert raw(f.payload) == expected_error(11, 0, R.IP0, R.H0, pkt, ident)


# -- icmp_error: which of our addresses it comes from ---------------------------------------

def test_error_comes_from_the_arrival_interface_not_the_way_back(net, stack):
    # H1's packet arrives on fk0 (asymmetric routing): the error is from
    # fk0's address even though it leaves by fk1.
    pkt = udp(src=R.H1, dst="10.0.0.9")
    ident = stack.ip.ident + 1
    error_about(net, stack, pkt, 3, 1)
    (f,) = take(net.if1)
    assert raw(f.payload) == expected_error(3, 1, R.IP0, R.H1, pkt[:28], ident)
    assert net.if0.sent == []


def test_error_comes_from_the_arrival_address_on_the_sender_s_subnet(net, stack):
    stack.ip.add_address(net.if0, aton("10.5.0.1"), 24)
    stack.ip.routes.add(aton("192.0.2.0"), 24, aton(R.H0))
    net.learn(net.if0, "10.5.0.9", "02:aa:00:00:05:09")
    srcs = []
    for sender in ("10.5.0.9", "192.0.2.7"):
        error_about(net, stack, udp(src=sender), 11, 0)
        (f,) = take(net.if0)
        srcs.append((ip_of(f).src, ip_of(f).dst))
    assert srcs == [("10.5.0.1", "10.5.0.9"), (R.IP0, "192.0.2.7")]


def test_error_about_a_packet_of_no_interface_comes_from_the_route_s(net, stack):
    pkt = udp(src=R.H1, dst="10.0.0.9")
    ident = stack.ip.ident + 1
    error_about(net, stack, pkt, 3, 1, rcvif=None)
    (f,) = take(net.if1)
    assert raw(f.payload) == expected_error(3, 1, R.IP1, R.H1, pkt[:28], ident)


def test_error_about_a_packet_of_an_unnumbered_interface_comes_from_the_route_s(net, stack):
    if2 = fake_if(stack, 2, "02:00:00:00:02:01")       # no address
    m = stack.pool.from_bytes(udp(src=R.H1, dst="10.0.0.9"))
    m.rcvif = if2
    stack.icmp.error(m, 3, 1)
    (f,) = take(net.if1)
    assert ip_of(f).src == R.IP1 and ip_of(f).dst == R.H1
    assert if2.sent == []


def test_no_error_when_no_address_can_be_its_source(net, stack):
    error_about(net, stack, udp(src="192.0.2.7"), 3, 1, rcvif=None)    # no route back
    assert net.if0.sent == [] and net.if1.sent == []
    assert stack.icmp.stats["error"] == 0 and stack.pool.in_use == 0


def test_error_without_a_cluster_is_counted_as_nobufs(net, stack):
    # The offending packet lives in a driver's buffer, not a cluster, so
    # freeing it does not give a cluster back.
    pool = stack.pool
    given_back = []
    ms = [pool.get_ext(bytearray(udp()), 0, len(udp()), given_back.append, i) for i in (1, 2)]
    held = []
    while (x := pool.get()) is not None:
        held.append(x)
    try:
        for m in ms:
            m.rcvif = net.if0
            stack.icmp.error(m, 11, 0)
    finally:
        for x in held:
            pool.freem(x)
    assert given_back == [1, 2]
    assert net.if0.sent == []
    assert stack.icmp.stats["nobufs"] == 2 and stack.icmp.stats["error"] == 0
    assert stack.icmp.outhist == {}


# -- the rate limit: a token bucket --------------------------------------------------------

def test_rate_limit_refills_at_rate_up_to_burst(net, stack, clock):
    icmp = stack.icmp
    icmp.ratelim.rate, icmp.ratelim.burst, icmp.ratelim.tokens = 64.0, 2, 2.0
    icmp.ratelim.last = clock()

    def burst(n):
        for _ in range(n):
            error_about(net, stack, udp(), 11, 0)
        return len(take(net.if0))

    assert burst(3) == 2                        # the bucket holds 2
    clock.advance(1 / 64)                       # exactly one token back
    assert burst(2) == 1
    clock.advance(1 / 128)                      # half a token: not enough
    assert burst(1) == 0
    clock.advance(1 / 128)                      # the other half
    assert burst(1) == 1
    clock.advance(10.0)                         # never more than the burst
    assert burst(4) == 2
    assert icmp.stats["ratelimited"] == 1 + 1 + 1 + 2
    assert icmp.stats["error"] == 2 + 1 + 1 + 2


def test_rate_limit_defaults(stack, clock):
    r = stack.icmp.ratelim
    assert (r.rate, r.burst, r.tokens) == (100, 50, 50.0)
    assert r.last == clock()
