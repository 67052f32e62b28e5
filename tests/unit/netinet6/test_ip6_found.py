"""IPv6 behaviour that mutation testing found wrong, each pinned by a test: forwarding
turned off while a destination sits in the route cache, IPv4 TSO flags on an IPv6
packet, empty and no-next-header packets, a zero UDP checksum in a second mbuf."""
import pytest
from ip6_net import Counters, resolved, split
from net6 import H0, H1, R0, R1, inject, take
from scapy.layers.inet import UDP
from scapy.layers.inet6 import ICMPv6EchoRequest, IPv6
from scapy.layers.l2 import Ether
from test_ip6_forward import superframe

from iopkt.kern.mbuf import M_CSUM_TCPv4, M_CSUM_TSOv4
from iopkt.net.ifnet import CAP_KEYWORDS


@pytest.fixture
def r(stack, clock):
    return resolved(stack, clock)


def test_forwarding_off_still_forwards_to_a_destination_the_stack_sent_to(r):
    r.stack.ip6.forwarding = False
    inject(r.if1, r.from_h1(IPv6(src=H1, dst=R1) / ICMPv6EchoRequest()))  # reply caches H1
    take(r.if1)
    c = Counters(r)
    inject(r.if0, r.from_h0(IPv6(src=H0, dst=H1) / ICMPv6EchoRequest(seq=7)))
    assert r.if1.sent == []
    assert c.moved() == {"ip6.total": 1, "ip6.cantforward": 1}


def test_an_ipv6_packet_flagged_tsov4_is_bad_offload_whatever_the_egress_can_do(r):
    r.if1.set_capenable(CAP_KEYWORDS["tso4"] | CAP_KEYWORDS["tcp4csum"])
    c = Counters(r)
    m, _ = superframe(r, 600, 200, M_CSUM_TSOv4 | M_CSUM_TCPv4)
    inject(r.if0, m)
    assert r.if1.sent == []
    assert c.moved() == {"ip6.total": 1, "ip6.badoffload": 1, "fk0.in.bad_offload": 1}


def test_a_padded_packet_with_an_empty_payload_is_forwarded_like_its_unpadded_twin(r):
    p = IPv6(src=H0, dst=H1, nh=59, plen=0)
    frame = bytes(Ether(dst=r.MAC0, src=r.H0_MAC, type=0x86DD)) + bytes(p)
    inject(r.if0, frame, frame + bytes(6))          # 54 bytes, and 60 as Ethernet pads it
    assert len(r.if1.sent) == 2


def test_no_next_header_is_discarded_silently_not_parameter_problem(r):
    c = Counters(r)
    inject(r.if0, r.from_h0(IPv6(src=H0, dst=R0, nh=59) / b"ignored"))
    assert take(r.if0) == []
    assert "icmp6.out.paramprob/1" not in c.moved()


def test_a_zero_udp_checksum_in_the_second_mbuf_is_still_refused(r):
    p = IPv6(src=H0, dst=R0) / UDP(sport=4, dport=9, chksum=0) / b"z"
    p = IPv6(bytes(p))
    p[UDP].chksum = 0
    frame = bytes(Ether(dst=r.MAC0, src=r.H0_MAC, type=0x86DD) / p)
    c = Counters(r)
    inject(r.if0, split(r.stack.pool, frame, 14 + 40))
    assert take(r.if0) == []
    assert c.moved() == {"ip6.total": 1, "ip6.delivered": 1, "ip6.udp_nosum": 1}
