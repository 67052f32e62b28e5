"""ip6.py's header checks on input (RFC 8200 §3): the version, a payload
length that must fit the frame (Ethernet padding trimmed, jumbograms not
taken), a header split across mbufs pulled up, a frame shorter than a
header refused; each with the counter and the interface's discard reason
it moves."""

import pytest
from ip6_net import Counters, hop_limit_less, resolved, split
from net6 import H0, H1, R0, inject, take
from scapy.layers.inet import UDP
from scapy.layers.inet6 import ICMPv6EchoReply, ICMPv6EchoRequest, IPv6
from scapy.layers.l2 import Ether

from spy import calls


@pytest.fixture
def r(stack, clock):
    return resolved(stack, clock)


def eth(r) -> bytes:
    return bytes(Ether(dst=r.MAC0, src=r.H0_MAC, type=0x86DD))


def out_frame(r, pkt) -> bytes:
    return bytes(Ether(dst=r.H1_MAC, src=r.MAC1, type=0x86DD)) + hop_limit_less(pkt)


def with_byte0(pkt, v: int) -> bytes:
    b = bytearray(bytes(pkt))
    b[0] = v
    return bytes(b)


def with_plen(pkt, plen: int) -> bytes:
    b = bytearray(bytes(pkt))
    b[4:6] = plen.to_bytes(2, "big")
    return bytes(b)


# -- version -------------------------------------------------------------------------
# 0xc0 and 0xd0 (versions 12 and 13) share their top three bits with 6.
@pytest.mark.parametrize("byte0", [0x40, 0x70, 0x00, 0xF0, 0x30, 0xC0, 0xD0])
def test_a_version_other_than_6_is_dropped_as_badvers(r, byte0):
    p = with_byte0(IPv6(src=H0, dst=H1) / ICMPv6EchoRequest(), byte0)
    c = Counters(r)
    inject(r.if0, eth(r) + p, eth(r) + p)
    assert r.if1.sent == [] and r.if0.sent == []
    assert c.moved() == {"ip6.total": 2, "ip6.badvers": 2, "fk0.in.ip6_badvers": 2}


@pytest.mark.parametrize("byte0", [0x60, 0x6F, 0x68])
def test_any_traffic_class_is_version_6_and_forwarded_as_it_is(r, byte0):
    # Padded too, so the slow path's version check sees it as well.
    p = with_byte0(IPv6(src=H0, dst=H1) / ICMPv6EchoRequest(), byte0)
    c = Counters(r)
    inject(r.if0, eth(r) + p, eth(r) + p + bytes(6))
    assert r.if1.sent == [out_frame(r, p)] * 2
    assert c.moved() == {"ip6.total": 2, "ip6.forward": 2}


# -- payload length ----------------------------------------------------------------------
@pytest.mark.parametrize("payload,pad", [(b"a", 5), (b"abc", 1), (b"x" * 100, 40)])
def test_ethernet_padding_is_trimmed_before_forwarding(r, payload, pad):
    p = IPv6(src=H0, dst=H1, nh=59) / payload
    c = Counters(r)
    inject(r.if0, eth(r) + bytes(p) + b"\xee" * pad)
    assert r.if1.sent == [out_frame(r, p)]
    assert c.moved() == {"ip6.total": 1, "ip6.forward": 1}


def test_a_padded_echo_to_us_is_answered_without_the_padding(r):
    p = IPv6(src=H0, dst=R0) / ICMPv6EchoRequest(seq=6, data=b"q")
    inject(r.if0, eth(r) + bytes(p) + bytes(9))
    (f,) = take(r.if0)
    assert (f[ICMPv6EchoReply].seq, f[ICMPv6EchoReply].data, f[IPv6].plen) == (6, b"q", 9)


# 80: a payload length of the frame's length plus a header's.
@pytest.mark.parametrize("plen_delta", [1, 2, 80, 100])
def test_a_payload_length_beyond_the_frame_is_tooshort(r, plen_delta):
    p = IPv6(src=H0, dst=H1) / ICMPv6EchoRequest(data=b"d" * 20)
    b = with_plen(p, len(p) - 40 + plen_delta)
    c = Counters(r)
    inject(r.if0, eth(r) + b, eth(r) + b)
    assert r.if1.sent == [] and r.if0.sent == []
    assert c.moved() == {"ip6.total": 2, "ip6.tooshort": 2, "fk0.in.ip6_tooshort": 2}


def test_a_jumbogram_is_refused_as_tooshort(r):
    # Payload length 0 and a Hop-by-Hop Jumbo Payload option (RFC 2675):
    # not taken here.
    hbh = bytes([59, 0, 0xC2, 4]) + (70000).to_bytes(4, "big")
    p = bytes(IPv6(src=H0, dst=H1, nh=0, plen=0)) + hbh + bytes(16)
    c = Counters(r)
    inject(r.if0, eth(r) + p, eth(r) + p)
    assert r.if1.sent == []
    assert c.moved() == {"ip6.total": 2, "ip6.tooshort": 2, "fk0.in.ip6_tooshort": 2}


def test_an_empty_payload_that_fills_the_frame_is_forwarded(r):
    p = IPv6(src=H0, dst=H1, nh=59, plen=0)
    inject(r.if0, eth(r) + bytes(p))
    assert r.if1.sent == [out_frame(r, p)]


# -- short frames, split headers ------------------------------------------------------------
@pytest.mark.parametrize("n", [0, 1, 39])
def test_a_frame_shorter_than_an_ipv6_header_is_tooshort(r, n):
    p = bytes(IPv6(src=H0, dst=H1) / ICMPv6EchoRequest())[:n]
    c = Counters(r)
    inject(r.if0, eth(r) + p, eth(r) + p)
    assert r.if1.sent == [] and r.if0.sent == []
    assert c.moved() == {"ip6.total": 2, "ip6.tooshort": 2, "fk0.in.ip6_tooshort": 2}


@pytest.mark.parametrize("cut", [15, 14 + 20, 14 + 39, 14 + 40, 14 + 41])
def test_a_header_split_across_mbufs_is_pulled_up_and_forwarded(r, cut):
    p = IPv6(src=H0, dst=H1, hlim=9) / UDP(sport=3, dport=4) / (b"s" * 30)
    c = Counters(r)
    inject(r.if0, split(r.stack.pool, eth(r) + bytes(p), cut))
    assert r.if1.sent == [out_frame(r, p)]
    assert c.moved() == {"ip6.total": 1, "ip6.forward": 1}


@pytest.mark.parametrize("cut", [14 + 40, 14 + 41])
def test_a_header_whole_in_the_first_mbuf_is_not_pulled_up(r, monkeypatch, cut):
    p = IPv6(src=H0, dst=H1, hlim=9) / UDP(sport=3, dport=4) / (b"s" * 30)
    pullups = calls(monkeypatch, r.stack.pool, "pullup")
    inject(r.if0, split(r.stack.pool, eth(r) + bytes(p), cut))
    assert r.if1.sent == [out_frame(r, p)]
    assert pullups == []


def test_a_split_echo_to_us_is_answered(r):
    p = IPv6(src=H0, dst=R0) / ICMPv6EchoRequest(seq=11, data=b"split")
    inject(r.if0, split(r.stack.pool, eth(r) + bytes(p), 14 + 12))
    (f,) = take(r.if0)
    assert (f[ICMPv6EchoReply].seq, f[ICMPv6EchoReply].data) == (11, b"split")


def test_a_split_header_of_another_version_is_badvers_not_tooshort(r):
    # Exactly 40 bytes, split: pulled up whole, then refused for its version.
    p = with_byte0(IPv6(src=H0, dst=H1, nh=59, plen=0), 0x40)
    c = Counters(r)
    inject(r.if0, split(r.stack.pool, eth(r) + p, 14 + 20))
    assert c.moved() == {"ip6.total": 1, "ip6.badvers": 1, "fk0.in.ip6_badvers": 1}


def test_a_split_header_without_a_cluster_to_pull_it_into_is_dropped_as_nobufs(r):
    # The first mbuf's bytes sit at the end of its cluster: pulling the
    # header up needs a new cluster, and the pool has none left.
    pool = r.stack.pool
    p = bytes(IPv6(src=H0, dst=H1) / ICMPv6EchoRequest())
    frame = eth(r) + p
    head = split(pool, frame, 14 + 16)
    data = bytes(head.view[head.off:head.off + head.len])
    head.off = head.size - len(data)
    head.view[head.off:head.size] = data
    held = []
    while pool._free:
        held.append(pool.get())
    c = Counters(r)
    try:
        inject(r.if0, head)
    finally:
        for h in held:
            pool.freem(h)
    assert r.if1.sent == [] and r.if0.sent == []
    assert c.moved() == {"ip6.total": 1, "fk0.in.nobufs": 1}


def test_a_burst_mixing_good_and_bad_frames_counts_each(r):
    good = IPv6(src=H0, dst=H1) / ICMPv6EchoRequest(seq=1)
    c = Counters(r)
    inject(r.if0, eth(r) + bytes(good), eth(r) + bytes(good)[:30],
           eth(r) + with_byte0(good, 0x50), eth(r) + bytes(good) + bytes(3),
           eth(r) + with_plen(good, 200))
    assert r.if1.sent == [out_frame(r, good)] * 2
    assert c.moved() == {"ip6.total": 5, "ip6.forward": 2, "ip6.tooshort": 2,
                         "ip6.badvers": 1, "fk0.in.ip6_tooshort": 2, "fk0.in.ip6_badvers": 1}
