"""iopkt.in_offload: software TSO and checksum completion, checked against
scapy: every segment byte for byte against the segment scapy builds from
Linux's tcp_gso_segment rules, and every completed checksum against
scapy's own."""

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from scapy.compat import raw
from scapy.layers.inet import IP, TCP, UDP, IPOption_NOP, IPOption_RR
from scapy.utils import checksum as scapy_checksum

from iopkt.kern.mbuf import M_CSUM_TCPv4, M_CSUM_TCPv6, M_CSUM_TSOv4, M_CSUM_UDPv4, MbufPool
from iopkt.netinet.in_offload import (
    in_undefer_cksum,
    m_cksum,
    tcp_segment,
    tso_header_len,
    tso_segments,
    tso_wire,
)

from offload_frames import as_superframe, chain, expected_segments, pseudo_seed, tcp6_pkt, tcp_pkt

SETTINGS = settings(max_examples=60, deadline=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture,
                                           HealthCheck.too_slow])


@pytest.fixture
def pool():
    p = MbufPool(1024, 2048)
    p.enable_jumbo(16)
    yield p
    assert p.in_use == 0, f"{p.in_use} clusters leaked"
    assert p.jumbo_in_use == 0, f"{p.jumbo_in_use} jumbo clusters leaked"


def segment(pool, pkt, mss, partial=False):
    m = as_superframe(pool, pkt, mss)
    hl = tso_header_len(m)
    assert hl
    segs = tcp_segment(pool, m, hl, partial)
    try:
        return [s.tobytes() for s in segs], [(s.csum_flags, s.csum_data) for s in segs]
    finally:
        for s in segs:
            pool.freem(s)


# -- segmentation --------------------------------------------------------------
@pytest.mark.parametrize("n,mss", [(65000 - 52, 1448), (4000, 1448), (2896, 1448),
                                   (100, 1448), (1449, 1448), (9000, 536)])
def test_segments_match_scapy_byte_for_byte(pool, n, mss):
    pkt = tcp_pkt(n, tcp_options=[("NOP", None), ("NOP", None), ("Timestamp", (1, 2))])
    got, flags = segment(pool, pkt, mss)
    want = expected_segments(pkt, mss)
    assert len(got) == len(want) == max(1, -(-n // mss))
    for i, (g, w) in enumerate(zip(got, want)):
        assert g == w, f"segment {i} differs"
    assert all(cf == 0 for cf, _ in flags)         # complete: nothing left partial


def test_each_segment_carries_its_own_seq_id_length_and_flags(pool):
    pkt = tcp_pkt(3000, flags="FPAC")               # FIN, PSH, ACK, CWR
    got, _ = segment(pool, pkt, 1000)
    segs = [IP(g) for g in got]
    assert [s[TCP].seq for s in segs] == [1000, 2000, 3000]
    assert [s.id for s in segs] == [0x4242, 0x4243, 0x4244]
    assert [s.len for s in segs] == [1040, 1040, 1040]
    assert [str(s[TCP].flags) for s in segs] == ["AC", "A", "FPA"]
    for s in segs:                                   # scapy recomputes both checksums
        again = s.copy()
        del again.chksum, again[TCP].chksum
        again = IP(raw(again))
        assert (again.chksum, again[TCP].chksum) == (s.chksum, s[TCP].chksum)


def test_ip_options_go_into_every_segment(pool):
    pkt = tcp_pkt(2500, options=[IPOption_RR(routers=["10.0.0.1"]), IPOption_NOP()])
    got, _ = segment(pool, pkt, 1200)
    want = expected_segments(pkt, 1200)
    assert got == want
    assert all(IP(g).ihl == IP(pkt).ihl for g in got)


def test_sequence_number_wraps(pool):
    pkt = tcp_pkt(3000, seq=0xFFFFFC00)
    got, _ = segment(pool, pkt, 1448)
    assert [IP(g)[TCP].seq for g in got] == [0xFFFFFC00, (0xFFFFFC00 + 1448) & 0xFFFFFFFF,
                                             (0xFFFFFC00 + 2896) & 0xFFFFFFFF]
    assert got == expected_segments(pkt, 1448)


def test_ip_id_wraps(pool):
    pkt = tcp_pkt(3000, ident=0xFFFF)
    got, _ = segment(pool, pkt, 1448)
    assert [IP(g).id for g in got] == [0xFFFF, 0, 1]


def test_partial_segments_complete_to_the_right_checksum(pool):
    pkt = tcp_pkt(5000)
    got, flags = segment(pool, pkt, 1448, partial=True)
    want = expected_segments(pkt, 1448)
    for g, w, (cf, cd) in zip(got, want, flags):
        assert cf == M_CSUM_TCPv4 and cd == (20 << 16) | 16
        # The field holds the pseudo-header seed; completing it gives scapy's.
        assert g[36:38] == pseudo_seed(g, 20).to_bytes(2, "big")
        m = pool.from_bytes(g)
        m.csum_flags, m.csum_data = cf, cd
        in_undefer_cksum(m)
        assert m.tobytes() == w
        assert m.csum_flags == 0
        pool.freem(m)


def test_segments_larger_than_a_cluster_become_chains(pool):
    pkt = tcp_pkt(20000)
    m = as_superframe(pool, pkt, 8948)               # a 9000-byte MTU
    segs = tcp_segment(pool, m, tso_header_len(m), False)
    assert all(s.next is not None and s.pkt_len == s.chain_len() for s in segs)
    assert [s.tobytes() for s in segs] == expected_segments(pkt, 8948)
    for s in segs:
        pool.freem(s)


def test_pool_running_dry_frees_everything(pool):
    pkt = tcp_pkt(60000)
    m = as_superframe(pool, pkt, 1448)
    hold = []
    while pool.in_use < pool.nclusters - 5:           # leave five clusters
        hold.append(pool.get())
    assert tcp_segment(pool, m, tso_header_len(m), False) is None
    for h in hold:
        pool.free(h)
    assert pool.in_use == 0 and pool.jumbo_in_use == 0


@SETTINGS
@given(n=st.integers(1, 64000), mss=st.integers(88, 9000),
       flags=st.sampled_from(["A", "PA", "FA", "FPA", "AC", "FPAC", "AE", "PAU"]),
       seq=st.integers(0, 0xFFFFFFFF), ident=st.integers(0, 0xFFFF),
       partial=st.booleans())
def test_segmentation_property(pool, n, mss, flags, seq, ident, partial):
    """For any payload length, MSS, flags, sequence number and IP id: the
    segments are those scapy builds by Linux's rules (after completing the
    checksum where it was left partial)."""
    pkt = tcp_pkt(n, flags=flags, seq=seq, ident=ident)
    m = as_superframe(pool, pkt, mss)
    segs = tcp_segment(pool, m, tso_header_len(m), partial)
    out = []
    for s in segs:
        if partial:
            in_undefer_cksum(s)
        out.append(s.tobytes())
        pool.freem(s)
    want = expected_segments(pkt, mss)
    if partial:
        # Completed as skb_checksum_help does, a zero sum is written 0xFFFF
        # where the segmenter (and scapy) write 0: the same checksum.
        out = [o[:36] + (b"\0\0" if o[36:38] == b"\xff\xff" and w[36:38] == b"\0\0"
                         else o[36:38]) + o[38:] for o, w in zip(out, want)]
    assert out == want


def test_tso_header_len_refuses_what_is_not_tcp(pool):
    m = pool.from_bytes(raw(IP(dst="1.2.3.4") / UDP() / (b"x" * 100)))
    assert tso_header_len(m) == 0
    pool.freem(m)


def test_wire_size_of_a_plain_frame_is_its_length(pool):
    m = pool.from_bytes(tcp_pkt(1000))
    eth = pool.prepend(m, 14)
    assert tso_wire(eth) == (1, 14 + 1040)
    pool.freem(eth)


def test_wire_size_counts_every_segment_s_headers(pool):
    pkt = tcp_pkt(3000, tcp_options=[("NOP", None), ("NOP", None), ("Timestamp", (1, 2))])
    m = as_superframe(pool, pkt, 1000)               # 52 bytes of headers, 3 segments
    eth = pool.prepend(m, 14)
    off, ln = eth.off, eth.len
    assert tso_wire(eth) == (3, 3 * (14 + 52) + 3000)
    assert (eth.off, eth.len, eth.pkt_len) == (off, ln, len(pkt) + 14)   # left as it was
    pool.freem(eth)


def test_in_undefer_cksum_when_the_field_is_split_between_mbufs(pool):
    want = raw(IP(src="198.18.0.2", dst="198.19.0.2") / TCP(sport=1, dport=2, flags="A")
               / bytes(range(200)))
    for cuts in ([37], [30, 37], [36], [20, 38]):
        pkt = bytearray(want)
        pkt[36:38] = pseudo_seed(want, 20).to_bytes(2, "big")
        m = chain(pool, bytes(pkt), cuts)
        m.csum_flags, m.csum_data = M_CSUM_TCPv4, (20 << 16) | 16
        in_undefer_cksum(m)
        assert m.tobytes() == want, cuts
        pool.freem(m)


def test_tso_segments_and_wire_size(pool):
    pkt = tcp_pkt(4000)                             # 3 segments of 1448 / 1448 / 1104
    m = as_superframe(pool, pkt, 1448)
    assert tso_segments(m, 40) == 3
    eth = pool.prepend(m, 14)
    frames, wire = tso_wire(eth)
    assert frames == 3
    assert wire == 3 * (14 + 40) + 4000           # each segment's headers, payload once
    assert eth.pkt_len == len(pkt) + 14          # left as it was
    pool.freem(eth)


# -- checksum completion ----------------------------------------------------------
@SETTINGS
@given(data=st.binary(min_size=1, max_size=5000), cuts=st.lists(st.integers(1, 5000),
                                                                 max_size=6),
       start=st.integers(0, 5000), length=st.integers(0, 5000))
def test_m_cksum_over_any_chain_equals_the_plain_sum(pool, data, cuts, start, length):
    start = min(start, len(data))
    length = min(length, len(data) - start)
    m = chain(pool, data, sorted(set(cuts)))
    want = scapy_checksum(data[start:start + length])          # ~sum, folded
    assert (0xFFFF - m_cksum(m, start, length)) % 0xFFFF == want % 0xFFFF
    with pytest.raises(ValueError):
        m_cksum(m, start, len(data) - start + 1)                # beyond the chain
    pool.freem(m)


@SETTINGS
@given(n=st.integers(0, 3000), cuts=st.lists(st.integers(1, 3100), max_size=5),
       udp=st.booleans())
def test_in_undefer_cksum_matches_scapy(pool, n, cuts, udp):
    l4 = UDP(sport=5000, dport=5201) if udp else TCP(sport=1, dport=2, flags="A")
    want = raw(IP(src="198.18.0.2", dst="198.19.0.2") / l4
               / bytes((i * 31 + 5) & 0xFF for i in range(n)))   # checksums by scapy
    pkt = bytearray(want)
    off = 6 if udp else 16
    pkt[20 + off:22 + off] = pseudo_seed(bytes(pkt), 20).to_bytes(2, "big")
    m = chain(pool, bytes(pkt), sorted(set(cuts)))
    m.csum_flags = M_CSUM_UDPv4 if udp else M_CSUM_TCPv4
    m.csum_data = (20 << 16) | off
    in_undefer_cksum(m)
    got = m.tobytes()
    pool.freem(m)
    c = int.from_bytes(got[20 + off:22 + off], "big")
    w = int.from_bytes(want[20 + off:22 + off], "big")
    assert c == w or {c, w} == {0, 0xFFFF}
    assert c != 0                                   # 0 is written as 0xFFFF
    assert got[:20 + off] == want[:20 + off] and got[22 + off:] == want[22 + off:]


def test_in_undefer_cksum_udp_zero_is_written_as_ffff(pool):
    # A payload word chosen so the datagram sums to zero: its checksum
    # computes as 0, which UDP must send as 0xFFFF (0 means "none").
    def dgram(word):
        return raw(IP(src="10.0.0.1", dst="10.0.0.2") / UDP(sport=1, dport=2)
                   / word.to_bytes(2, "big"))
    c0 = int.from_bytes(dgram(0)[26:28], "big")
    p = dgram(c0 % 0xFFFF)
    assert p[26:28] == b"\xff\xff"                # scapy agrees: computed 0, sent 0xFFFF
    pkt = bytearray(p)
    pkt[26:28] = pseudo_seed(bytes(pkt), 20).to_bytes(2, "big")
    m = pool.from_bytes(bytes(pkt))
    m.csum_flags, m.csum_data = M_CSUM_UDPv4, (20 << 16) | 6
    in_undefer_cksum(m)
    assert m.tobytes()[26:28] == b"\xff\xff"
    pool.freem(m)


def test_a_segment_whose_sum_is_zero_gets_checksum_zero_as_in_linux(pool):
    # Move the sequence number until scapy's checksum of the one segment is 0.
    c0 = IP(expected_segments(tcp_pkt(100, seq=0), 1448)[0])[TCP].chksum
    pkt = tcp_pkt(100, seq=c0)          # seq's low word adds c0 to the sum
    (want,) = expected_segments(pkt, 1448)
    assert IP(want)[TCP].chksum == 0
    got, _ = segment(pool, pkt, 1448)
    assert got == [want]


def test_every_segment_keeps_the_receiving_interface(pool):
    m = as_superframe(pool, tcp_pkt(5000), 1448)
    m.rcvif = rcvif = object()
    segs = tcp_segment(pool, m, tso_header_len(m), True)
    assert [s.rcvif for s in segs] == [rcvif] * 4
    for s in segs:
        pool.freem(s)


def test_a_segment_that_fills_its_cluster_exactly_stays_in_it(pool):
    room = pool.mclbytes - pool.headroom
    mss = room - 40                                 # header + payload == the cluster's room
    pkt = tcp_pkt(2 * mss)
    m = as_superframe(pool, pkt, mss)
    segs = tcp_segment(pool, m, tso_header_len(m), False)
    assert [(s.next, s.len) for s in segs] == [(None, room), (None, room)]
    assert [s.tobytes() for s in segs] == expected_segments(pkt, mss)
    for s in segs:
        pool.freem(s)


@pytest.mark.parametrize("case,want", [
    ("ok", 40), ("udp", 0), ("short_first_mbuf", 0), ("doff_4", 0),
    ("doff_beyond_first_mbuf", 0), ("doff_beyond_packet", 0), ("exact", 40),
    ("ihl_0", 0), ("ihl_1", 0), ("ihl_4", 0)])
def test_tso_header_len_checks_the_headers_are_whole_in_the_first_mbuf(pool, case, want):
    pkt = bytearray(tcp_pkt(100))
    cuts = {"short_first_mbuf": [39], "doff_beyond_first_mbuf": [43], "exact": [40]}
    if case == "udp":
        pkt[9] = 17
    elif case.startswith("ihl_"):
        # No IPv4 header shorter than 20 bytes: IHL 0 or 1 would read a
        # "data offset" of 12 in the addresses (0xc6 = 198) and pass.
        pkt[0] = 0x40 | int(case[4:])
    elif case == "doff_4":
        pkt[32] = 0x40                              # 16 bytes: shorter than a TCP header
    elif case == "doff_beyond_first_mbuf":
        pkt[32] = 0x60                              # 24 bytes; the first mbuf has 43 - 20
    elif case == "doff_beyond_packet":
        pkt = pkt[:44]
        pkt[32] = 0x70                              # 28 bytes of 24 there
    m = chain(pool, bytes(pkt), cuts.get(case, []))
    assert tso_header_len(m) == want
    pool.freem(m)


def test_tso_segments_counts_a_short_super_frame_as_one(pool):
    m = as_superframe(pool, tcp_pkt(100), 1448)
    assert tso_segments(m, 40) == 1
    pool.freem(m)


# -- edges: which path ran, sums at their bounds, failures half-way -------------
def test_m_cksum_names_a_chain_shorter_than_asked(pool):
    m = chain(pool, bytes(100), [40])
    with pytest.raises(ValueError, match="^m_cksum: chain shorter than requested$"):
        m_cksum(m, 30, 71)
    pool.freem(m)


def test_in_undefer_cksum_stores_in_place_a_field_ending_the_first_mbuf(pool, monkeypatch):
    """The two bytes that end the first mbuf are written there directly:
    the walk over the chain (_store16) is for a field in a later mbuf."""
    import iopkt.netinet.in_offload as ino
    walks = []
    real = ino._store16
    monkeypatch.setattr(ino, "_store16", lambda *a: walks.append(a) or real(*a))
    want = raw(IP(src="198.18.0.2", dst="198.19.0.2") / TCP(sport=1, dport=2, flags="A")
               / bytes(range(200)))
    for cut, walked in ((38, 0), (37, 1), (39, 0)):
        pkt = bytearray(want)
        pkt[36:38] = pseudo_seed(want, 20).to_bytes(2, "big")
        m = chain(pool, bytes(pkt), [cut])
        m.csum_flags, m.csum_data = M_CSUM_TCPv4, (20 << 16) | 16
        del walks[:]
        in_undefer_cksum(m)
        assert (m.tobytes(), len(walks)) == (want, walked), cut
        pool.freem(m)


def test_a_segment_whose_pseudo_header_sum_is_zero_leaves_ffff_partial(pool):
    """A folded one's-complement sum is never 0: a pseudo-header sum of 0
    (mod 0xFFFF) is left as 0xFFFF, and completing it gives scapy's checksum."""
    mss = 1448
    rest = (0xC612 + 0xC613 + 0x0703 + 6 + 20 + mss) % 0xFFFF   # all but src's low word
    lo = (0xFFFF - rest) % 0xFFFF
    pkt = raw(IP(src=f"198.18.{lo >> 8}.{lo & 0xFF}", dst="198.19.7.3", flags="DF")
              / TCP(sport=40000, dport=5201, seq=1000, ack=77, flags="PA")
              / bytes((i * 7 + 3) & 0xFF for i in range(2 * mss)))
    got, flags = segment(pool, pkt, mss, partial=True)
    assert [g[36:38] for g in got] == [b"\xff\xff", b"\xff\xff"]
    for g, w, (cf, cd) in zip(got, expected_segments(pkt, mss), flags):
        m = pool.from_bytes(g)
        m.csum_flags, m.csum_data = cf, cd
        in_undefer_cksum(m)
        assert m.tobytes() == w
        pool.freem(m)


def test_a_segment_that_fills_its_cluster_exactly_is_not_copied_aside(pool, monkeypatch):
    """Built in place: no second copy through from_bytes for a segment of
    exactly the cluster's room (one more byte and it is built aside)."""
    room = pool.mclbytes - pool.headroom
    copies = []
    real = pool.from_bytes
    monkeypatch.setattr(pool, "from_bytes", lambda d, *a: copies.append(len(d)) or real(d, *a))
    for mss, want in ((room - 40, []), (room - 39, [room + 1])):
        pkt = tcp_pkt(mss)
        m = as_superframe(pool, pkt, mss)
        segs = tcp_segment(pool, m, tso_header_len(m), False)
        assert [s.tobytes() for s in segs] == expected_segments(pkt, mss)
        assert copies == want, mss
        del copies[:]
        for s in segs:
            pool.freem(s)


def test_pool_running_dry_while_copying_a_jumbo_segment_frees_everything(pool):
    """The second 9000-byte segment finds a cluster to build in but not the
    five to copy it into: the first segment and the super-frame are freed."""
    pkt = tcp_pkt(2 * 8948)
    m = as_superframe(pool, pkt, 8948)
    per_seg = -(-(8948 + 40) // (pool.mclbytes - pool.headroom))
    hold = []
    while pool.nclusters - pool.in_use > per_seg + 2:
        hold.append(pool.get())
    assert tcp_segment(pool, m, tso_header_len(m), False) is None
    for h in hold:
        pool.free(h)
    assert (pool.in_use, pool.jumbo_in_use) == (0, 0)


def test_tso_header_len_reads_nothing_past_the_first_mbuf(pool):
    """A 30-byte TCP fragment in storage of exactly 30 bytes: refused
    without reading where the TCP header's data offset would be."""
    pkt = bytearray(tcp_pkt(100)[:30])
    m = pool.get_ext(pkt, 0, 30, lambda a: None, None)
    assert tso_header_len(m) == 0
    pool.freem(m)


def test_wire_size_of_a_super_frame_without_tcp_headers_assumes_40_bytes(pool):
    """A TSO-flagged frame whose headers cannot be read is counted with
    the smallest IPv4 + TCP header (40 bytes) copied into every segment."""
    pkt = bytearray(tcp_pkt(3000 - 40))
    pkt[9] = 17                                     # not TCP: no header length to read
    eth = pool.from_bytes(b"\x02" * 12 + b"\x08\x00" + bytes(pkt))
    eth.csum_flags, eth.segsz = M_CSUM_TSOv4, 1000
    assert tso_wire(eth) == (3, 14 + 3000 + 2 * (14 + 40))
    pool.freem(eth)


# -- IPv6 super-frames (tcp_segment as Linux's ipv6_gso_segment + tcp_gso_segment) ----
@SETTINGS
@given(n=st.integers(1, 64000), mss=st.integers(88, 9000),
       flags=st.sampled_from(["A", "PA", "FA", "FPA", "AC", "FPAC"]),
       seq=st.integers(0, 2**32 - 1), partial=st.booleans())
@example(n=236, mss=1000, flags="PA", seq=1, partial=False)      # payload length 256:
@example(n=2000, mss=236, flags="A", seq=7, partial=True)        # its high byte moves
def test_ipv6_segmentation_property(pool, n, mss, flags, seq, partial):
    """Every IPv6 segment is scapy's byte for byte (its payload length, no
    header checksum, seq, flags, the TCP checksum over the IPv6
    pseudo-header), or completes to it when left partial."""
    pkt = tcp6_pkt(n, flags, seq)
    m = as_superframe(pool, pkt, mss)
    hl = tso_header_len(m)
    assert hl == 60
    segs = tcp_segment(pool, m, hl, partial)
    want = expected_segments(pkt, mss)
    got = []
    for s in segs:
        if partial:
            assert (s.csum_flags, s.csum_data) == (M_CSUM_TCPv6, (40 << 16) | 16)
            in_undefer_cksum(s)
        got.append(s.tobytes())
        pool.freem(s)
    assert got == want


@pytest.mark.parametrize("case,want", [("ok", 60), ("udp", 0), ("ext_header", 0),
                                       ("short", 0), ("exact", 60)])
def test_tso_header_len_of_ipv6(pool, case, want):
    pkt = bytearray(tcp6_pkt(100))
    if case == "udp":
        pkt[6] = 17
    elif case == "ext_header":
        pkt[6] = 0                                  # hop-by-hop first: not what GSO makes
    cuts = {"short": [59], "exact": [60]}           # the headers, less or exactly
    m = chain(pool, bytes(pkt), cuts.get(case, []))
    assert tso_header_len(m) == want
    pool.freem(m)
