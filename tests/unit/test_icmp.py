"""iopkt.icmp: echo replies (and what is not answered)."""

import pytest
from scapy.compat import raw
from scapy.layers.inet import ICMP, IP
from scapy.layers.l2 import ARP, Ether

from fakenet import FakeClock, Router, inject, ip_of, take
from iopkt.cksum import in_cksum
from iopkt.stack import Stack

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
