"""Forwarding with offload (ipv4.py, icmp.py, in_offload.py): super-frames
forwarded as one packet or segmented for an interface without TSO, the MTU
judged per segment, partial checksums completed where the outgoing
interface cannot, ICMP errors quoting a super-frame's first segment. Every
frame that leaves is checked against scapy."""

import pytest
from scapy.compat import raw
from scapy.layers.inet import ICMP, IP, TCP, UDP, IPerror, TCPerror, UDPerror, defragment
from scapy.layers.l2 import Ether

from iopkt.kern.mbuf import (
    M_CSUM_TCPv4,
    M_CSUM_TCPv6,
    M_CSUM_TSOv4,
    M_CSUM_TSOv6,
    M_CSUM_UDPv4,
    M_CSUM_UDPv6,
)
from iopkt.net.ifnet import (
    CAP_KEYWORDS,
    IFCAP_CSUM_L4,
    IFCAP_CSUM_TCPv4_Rx,
    IFCAP_CSUM_TCPv4_Tx,
    IFCAP_CSUM_TCPv6_Rx,
    IFCAP_CSUM_TCPv6_Tx,
    IFCAP_CSUM_UDPv4_Rx,
    IFCAP_CSUM_UDPv4_Tx,
    IFCAP_CSUM_UDPv6_Rx,
    IFCAP_CSUM_UDPv6_Tx,
    IFCAP_TSOv4,
    IFCAP_TSOv6,
    caps_str,
    mount_capenable,
    parse_capwords,
    rx_csum_sw,
)

from fakenet import Router as R
from fakenet import inject, take
from offload_frames import expected_segments, flow, pseudo_seed, received

TCPCSUM = IFCAP_CSUM_TCPv4_Rx | IFCAP_CSUM_TCPv4_Tx
TSO = IFCAP_TSOv4 | TCPCSUM


def minus_ttl(pkt: bytes) -> bytes:
    """`pkt` one hop later (TTL - 1; checksums recomputed by scapy)."""
    p = IP(pkt)
    p.ttl -= 1
    del p.chksum
    return raw(p)


@pytest.fixture
def pool_ok(stack):
    stack.pool.enable_jumbo(8)
    yield
    assert stack.pool.jumbo_in_use == 0


# -- forwarding a super-frame ----------------------------------------------------
def test_superframe_goes_whole_to_an_interface_with_tso(net, stack, pool_ok):
    net.if1.set_capenable(TSO)
    pkt = flow(20000)
    inject(net.if0, received(net, pkt, 1448))
    assert len(net.if1.sent) == 1
    f = Ether(net.if1.sent[0])
    assert f.dst == R.H1_MAC and f.src == R.MAC1
    out = raw(f[IP])
    assert out[:20] == minus_ttl(pkt)[:20]                  # TTL and header checksum
    assert out[36:38] == pseudo_seed(pkt, 20).to_bytes(2, "big")   # still partial
    assert out[20:36] == pkt[20:36] and out[40:] == pkt[40:]       # TCP untouched
    assert net.if1.sent_meta == [(M_CSUM_TSOv4 | M_CSUM_TCPv4, (20 << 16) | 16, 1448)]
    assert stack.ip.ips_tso_forward == 1 and stack.ip.ips_forward == 1
    assert net.if1.sw_tso == 0 and net.if1.sw_csum == 0


def test_superframe_is_segmented_for_an_interface_without_offload(net, stack, pool_ok):
    pkt = flow(20000)
    inject(net.if0, received(net, pkt, 1448))
    want = expected_segments(minus_ttl(pkt), 1448)
    got = [raw(Ether(f)[IP]) for f in net.if1.sent]
    assert len(got) == len(want) == 14
    assert got == want                              # seq, id, lengths, flags, checksums
    assert all(meta == (0, 0, 0) for meta in net.if1.sent_meta)
    assert (net.if1.sw_tso, net.if1.sw_tso_segs) == (1, 14)
    assert stack.ip.ips_forward == 1


def test_segments_stay_partial_for_an_interface_with_checksum_offload(net, stack, pool_ok):
    net.if1.set_capenable(TCPCSUM)
    pkt = flow(5000, flags="FPA")
    inject(net.if0, received(net, pkt, 1448))
    want = expected_segments(minus_ttl(pkt), 1448)
    assert len(net.if1.sent) == len(want) == 4
    for f, meta, w in zip(net.if1.sent, net.if1.sent_meta, want):
        assert meta[:2] == (M_CSUM_TCPv4, (20 << 16) | 16)
        seg = raw(Ether(f)[IP])
        assert seg[36:38] == pseudo_seed(seg, 20).to_bytes(2, "big")     # partial
        assert seg[:36] == w[:36] and seg[38:] == w[38:]               # all but the sum
    assert net.if1.sw_tso == 1


def test_df_superframe_with_segments_too_big_gets_one_frag_needed(net, stack, pool_ok):
    net.if1.set_capenable(TSO)
    net.if1.mtu = 1400
    pkt = flow(20000)
    inject(net.if0, received(net, pkt, 1448), received(net, flow(9000, seq=21000), 1448))
    assert net.if1.sent == []
    errs = take(net.if0)
    assert len(errs) == 2                               # one per super-frame, not per segment
    e = errs[0]
    assert (e[ICMP].type, e[ICMP].code, e[ICMP].nexthopmtu) == (3, 4, 1400)
    q = e[IPerror]
    assert q.len == 20 + 20 + 1448                      # the first segment, not 20040
    assert q.id == 0x4242 and q.ttl == 64
    assert _cksum_ok(raw(q)[:20])                       # its header checksum to match
    assert q[TCPerror].sport == 40000 and q[TCPerror].seq == 1000
    assert stack.icmp.stats["error"] == 2 and stack.ip.ips_cantfrag == 2
    assert net.if1.sw_tso == 0


def _cksum_ok(hdr: bytes) -> bool:
    from iopkt.netinet.cksum import in_cksum
    return in_cksum(hdr) == 0


def test_superframe_without_df_is_segmented_then_fragmented(net, stack, pool_ok):
    net.if1.set_capenable(TSO)
    net.if1.mtu = 1000
    pkt = flow(5000, df=False)
    inject(net.if0, received(net, pkt, 1448))
    frags = [Ether(f)[IP] for f in net.if1.sent]
    assert all(len(raw(f)) <= 1000 for f in frags)
    assert all(meta == (0, 0, 0) for meta in net.if1.sent_meta)    # fragments: complete
    whole = sorted((raw(p) for p in defragment(frags)), key=lambda b: IP(b)[TCP].seq)
    assert whole == expected_segments(minus_ttl(pkt), 1448)
    # Three full segments of 1488 bytes in two fragments each; the last fits.
    assert stack.ip.ips_fragmented == 3 and stack.ip.ips_ofragments == 6
    assert len(frags) == 7
    assert (net.if1.sw_tso, net.if1.sw_tso_segs) == (1, 4)


def test_a_burst_keeps_its_order_around_a_superframe(net, stack, pool_ok):
    a, b, c = flow(100, seq=1), flow(4000, seq=101), flow(100, seq=4101)
    inject(net.if0, received(net, a), received(net, b, 1448), received(net, c))
    seqs = [Ether(f)[TCP].seq for f in net.if1.sent]
    assert seqs == [1, 101, 1549, 2997, 4101]


def test_superframe_that_is_not_tcp_is_dropped_and_counted(net, stack, pool_ok):
    pkt = raw(IP(src=R.H0, dst=R.H1) / UDP(sport=1, dport=2) / (b"u" * 3000))
    m = received(net, pkt, udp=True)
    m.csum_flags |= M_CSUM_TSOv4
    m.segsz = 1448
    inject(net.if0, m)
    assert net.if1.sent == [] and net.if0.sent == []
    assert stack.ip.ips_badoffload == 1
    assert net.if0.in_discards["bad_offload"] == 1


# -- partial checksums ------------------------------------------------------------
@pytest.mark.parametrize("udp", [False, True])
def test_partial_checksum_is_completed_for_an_interface_without_offload(net, stack, udp):
    l4 = UDP(sport=5000, dport=5201) if udp else TCP(sport=1, dport=2, flags="A")
    pkt = raw(IP(src=R.H0, dst=R.H1) / l4 / (b"p" * 999))
    inject(net.if0, received(net, pkt, udp=udp))
    assert raw(Ether(net.if1.sent[0])[IP]) == minus_ttl(pkt)     # scapy's checksums
    assert net.if1.sent_meta == [(0, 0, 0)]
    assert net.if1.sw_csum == 1


def test_partial_checksum_is_left_for_an_interface_that_completes_it(net, stack):
    net.if1.set_capenable(IFCAP_CSUM_UDPv4_Tx)
    pkt = raw(IP(src=R.H0, dst=R.H1) / UDP(sport=5000, dport=5201) / (b"p" * 999))
    inject(net.if0, received(net, pkt, udp=True))
    out = raw(Ether(net.if1.sent[0])[IP])
    assert out[26:28] == pseudo_seed(pkt, 20).to_bytes(2, "big")
    assert net.if1.sent_meta == [(M_CSUM_UDPv4, (20 << 16) | 6, 0)]
    assert net.if1.sw_csum == 0


def test_partial_checksum_is_completed_before_fragmenting(net, stack):
    net.if1.set_capenable(IFCAP_CSUM_UDPv4_Tx)
    pkt = raw(IP(src=R.H0, dst=R.H1) / UDP(sport=5000, dport=5201) / (b"f" * 3000))
    inject(net.if0, received(net, pkt, udp=True))
    frags = [Ether(f)[IP] for f in net.if1.sent]
    assert len(frags) == 3
    assert [raw(p) for p in defragment(frags)] == [minus_ttl(pkt)]
    assert net.if1.sw_csum == 1


# -- ICMP errors and local delivery -------------------------------------------------
def test_time_exceeded_about_a_superframe_quotes_its_first_segment(net, stack, pool_ok):
    inject(net.if0, received(net, flow(20000, ttl=1), 1448))
    (e,) = take(net.if0)
    assert (e[ICMP].type, e[ICMP].code) == (11, 0)
    assert e[IPerror].len == 1488 and _cksum_ok(raw(e[IPerror])[:20])
    assert net.if1.sent == []


def test_superframe_to_the_router_gets_one_port_unreachable(net, stack, pool_ok):
    inject(net.if0, received(net, flow(20000, dst=R.IP0), 1448))
    (e,) = take(net.if0)
    assert (e[ICMP].type, e[ICMP].code) == (3, 3)
    assert e[IPerror].len == 1488 and _cksum_ok(raw(e[IPerror])[:20])
    assert stack.icmp.stats["error"] == 1


def test_udp_with_partial_checksum_to_the_router_is_quoted_complete(net, stack):
    pkt = raw(IP(src=R.H0, dst=R.IP0) / UDP(sport=5000, dport=9) / (b"q" * 100))
    inject(net.if0, received(net, pkt, udp=True))
    (e,) = take(net.if0)
    assert (e[ICMP].type, e[ICMP].code) == (3, 3)
    assert e[UDPerror].chksum == UDP(raw(IP(pkt)[UDP])).chksum     # not the seed


# -- capabilities -----------------------------------------------------------------
def test_capability_words_apply_in_order():
    assert parse_capwords(["tso4", "tcp4csum"], 0) == TSO
    assert parse_capwords(["tcp4csum", "-tcp4csum-tx"], 0) == IFCAP_CSUM_TCPv4_Rx
    assert parse_capwords(["-tso4"], TSO) == TCPCSUM
    assert parse_capwords(["tso6", "tcp4csum", "-tso6"], 0) == TCPCSUM
    with pytest.raises(ValueError, match="unknown capability 'tso7'"):
        parse_capwords(["tso7"], 0)
    assert parse_capwords(["tcp6csum", "udp6csum-rx"], 0) == \
        IFCAP_CSUM_TCPv6_Rx | IFCAP_CSUM_TCPv6_Tx | IFCAP_CSUM_UDPv6_Rx
    assert parse_capwords(["-tcp6csum-tx", "-udp6csum"], IFCAP_CSUM_L4) == (
        IFCAP_CSUM_L4 & ~(IFCAP_CSUM_TCPv6_Tx | IFCAP_CSUM_UDPv6_Rx | IFCAP_CSUM_UDPv6_Tx))


def test_the_v6_checksum_words_are_netbsds_bits_and_names():
    # net/if.h: IFCAP_CSUM_TCPv6_Rx 0x04000 ... IFCAP_CSUM_UDPv6_Tx 0x20000.
    assert (CAP_KEYWORDS["tcp6csum-rx"], CAP_KEYWORDS["tcp6csum-tx"],
            CAP_KEYWORDS["udp6csum-rx"], CAP_KEYWORDS["udp6csum-tx"]) == (
        0x04000, 0x08000, 0x10000, 0x20000)
    assert caps_str(0x3C000) == "3c000<TCP6CSUM_Rx,TCP6CSUM_Tx,UDP6CSUM_Rx,UDP6CSUM_Tx>"


def test_rx_csum_sw_names_the_partial_checksums_a_driver_completes():
    assert rx_csum_sw(IFCAP_CSUM_L4) == 0
    assert rx_csum_sw(0) == M_CSUM_TCPv4 | M_CSUM_UDPv4 | M_CSUM_TCPv6 | M_CSUM_UDPv6
    assert rx_csum_sw(IFCAP_CSUM_L4 & ~IFCAP_CSUM_TCPv6_Rx) == M_CSUM_TCPv6
    assert rx_csum_sw(IFCAP_CSUM_L4 & ~IFCAP_CSUM_UDPv6_Rx) == M_CSUM_UDPv6
    assert rx_csum_sw(IFCAP_CSUM_L4 & ~IFCAP_CSUM_TCPv4_Rx) == M_CSUM_TCPv4
    assert rx_csum_sw(IFCAP_CSUM_L4 & ~IFCAP_CSUM_UDPv4_Rx) == M_CSUM_UDPv4
    assert rx_csum_sw(IFCAP_CSUM_L4 & ~IFCAP_CSUM_TCPv6_Tx) == 0   # Tx says nothing here


@pytest.mark.parametrize("off,left", [
    ({}, IFCAP_CSUM_L4 | IFCAP_TSOv4 | IFCAP_TSOv6),
    ({"tso6": False}, IFCAP_CSUM_L4 | IFCAP_TSOv4),
    ({"tcp6csum": False}, (IFCAP_CSUM_L4 | IFCAP_TSOv4)
     & ~(IFCAP_CSUM_TCPv6_Rx | IFCAP_CSUM_TCPv6_Tx)),
    ({"udp6csum": False}, (IFCAP_CSUM_L4 | IFCAP_TSOv4 | IFCAP_TSOv6)
     & ~(IFCAP_CSUM_UDPv6_Rx | IFCAP_CSUM_UDPv6_Tx)),
    ({"tcp4csum": False, "udp4csum": False}, IFCAP_TSOv6 | IFCAP_CSUM_TCPv6_Rx
     | IFCAP_CSUM_TCPv6_Tx | IFCAP_CSUM_UDPv6_Rx | IFCAP_CSUM_UDPv6_Tx),
], ids=["none", "tso6", "tcp6csum", "udp6csum", "v4csums"])
def test_mount_options_turn_words_off_and_tso_goes_with_its_checksum(off, left):
    caps = IFCAP_CSUM_L4 | IFCAP_TSOv4 | IFCAP_TSOv6
    assert mount_capenable(caps, {"tso4": True, **off}) == left
    # A TSO the driver does not have stays off whatever the options say.
    assert mount_capenable(IFCAP_CSUM_L4, {}) == IFCAP_CSUM_L4


def test_set_capenable_refuses_what_cannot_work(net):
    ifp = net.if1
    ifp.capabilities = TSO
    with pytest.raises(ValueError, match="fk1 cannot do 2000<UDP4CSUM_Tx>"):
        ifp.set_capenable(IFCAP_CSUM_UDPv4_Tx)
    with pytest.raises(ValueError, match="tso4 needs tcp4csum"):
        ifp.set_capenable(IFCAP_TSOv4 | IFCAP_CSUM_TCPv4_Rx)
    assert ifp.capenable == 0 and ifp.if_csum_flags_tx == 0
    ifp.set_capenable(TSO)
    assert ifp.if_csum_flags_tx == M_CSUM_TSOv4 | M_CSUM_TCPv4


def test_tso6_needs_tcp6csum_not_tcp4csum(net):
    ifp = net.if1
    with pytest.raises(ValueError, match="tso6 needs tcp6csum"):
        ifp.set_capenable(IFCAP_TSOv6 | TCPCSUM)
    tcp6 = IFCAP_CSUM_TCPv6_Rx | IFCAP_CSUM_TCPv6_Tx
    ifp.set_capenable(IFCAP_TSOv6 | tcp6 | IFCAP_CSUM_UDPv6_Tx | IFCAP_CSUM_UDPv4_Rx)
    assert ifp.if_csum_flags_tx == M_CSUM_TSOv6 | M_CSUM_TCPv6 | M_CSUM_UDPv6


def test_set_capenable_keeps_the_old_set_when_the_driver_refuses(net):
    ifp = net.if1
    ifp.set_capenable(TCPCSUM)

    def refuse(ifp, cmd, data):
        raise OSError(22, "Invalid argument")

    ifp.if_ioctl = refuse
    with pytest.raises(OSError):
        ifp.set_capenable(TSO)
    assert ifp.capenable == TCPCSUM and ifp.if_csum_flags_tx == M_CSUM_TCPv4
