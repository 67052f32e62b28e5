"""Properties of software TSO (in_offload.py tcp_segment), checked field
by field with scapy, beyond test_in_offload.py's byte-for-byte property.

Why: that property compares with segments built by the same rules
(offload_frames.expected_segments), over one header shape and one chain
shape. Here the rules themselves are checked on each segment as parsed by
scapy, for any IP and TCP option lengths (headers of 40..120 bytes), any
MSS down to 1 byte, any TCP flags byte, sequence numbers near the 2**32
wrap, any chain the super-frame arrives in (the headers in the first mbuf,
the payload cut anywhere) and any value left in its checksum field: the
lengths, IP ids one apart, sequence numbers one MSS apart, FIN and PSH on
the last segment only and CWR on the first only (Linux's tcp_gso_segment,
as the module documents), everything else copied, both checksums valid per
scapy, and the payloads put end to end give the original. Then the same
through the router: a super-frame for an interface without TSO, its DF
clear or set, the outgoing MTU from 68 up.
"""

import struct

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scapy.layers.inet import ICMP, IP, TCP, IPerror, defragment, in4_chksum
from scapy.utils import checksum

from iopkt.kern.mbuf import M_PKTHDR, M_CSUM_TCPv4, M_CSUM_TSOv4, MbufPool
from iopkt.netinet.in_offload import in_undefer_cksum, tcp_segment, tso_header_len

from fakenet import Router as R
from fakenet import aton, inject, take
from offload_frames import chain

SETTINGS = settings(max_examples=80, deadline=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture,
                                           HealthCheck.too_slow])
FIN, PSH, CWR = 0x01, 0x08, 0x80
MAX_SEGS = 120


@pytest.fixture
def pool():
    p = MbufPool(1024, 2048)
    p.enable_jumbo(16)
    yield p
    assert p.in_use == 0, f"{p.in_use} clusters leaked"
    assert p.jumbo_in_use == 0, f"{p.jumbo_in_use} jumbo clusters leaked"


@st.composite
def options(draw, kinds, nop: int):
    """0..40 bytes of options of type-length-value `kinds` and `nop`
    (kinds scapy decodes as opaque), padded with NOP to 4 bytes."""
    out = bytearray()
    while len(out) < 40 and draw(st.booleans()):
        room = 40 - len(out)
        if room < 2 or draw(st.integers(0, 3)) == 0:
            out.append(nop)
            continue
        ln = draw(st.integers(2, min(room, 10)))
        out += bytes([draw(st.sampled_from(kinds)), ln]) + draw(
            st.binary(min_size=ln - 2, max_size=ln - 2))
    while len(out) % 4:
        out.append(nop)
    return bytes(out)


ip_options = options([0x1E, 0x5E, 0x9E, 0xDE], 1)        # RFC 4727 experiments
tcp_options = options([253, 254], 1)                      # RFC 4727 experiments
seqs = st.one_of(st.integers(0, 0xFFFFFFFF), st.integers(0xFFFFFFFF - 70000, 0xFFFFFFFF))
idents = st.one_of(st.integers(0, 0xFFFF), st.integers(0xFFF0, 0xFFFF), st.just(0xFFFF))


@st.composite
def superframes(draw, max_payload=64000, min_mss=1, mtu=None, max_segs=MAX_SEGS):
    """(packet bytes, mss): an IPv4/TCP super-frame with a correct IP
    header checksum and garbage in the TCP checksum field, no more than
    `max_segs` segments; with `mtu`, segments and their fragments."""
    ipo, tcpo = draw(ip_options), draw(tcp_options)
    hl = 40 + len(ipo) + len(tcpo)
    iphl = 20 + len(ipo)
    max_mss = 9000 if mtu is None else max(min_mss, 20 * (mtu - iphl - 40))
    mss = draw(st.one_of(st.integers(min_mss, max_mss),
                         st.sampled_from([x for x in (536, 1448, 8948) if x <= max_mss]
                                         or [min_mss])))
    per_seg = 1
    if mtu is not None and hl + mss > mtu:
        per_seg = -(-(hl - iphl + mss) // ((mtu - iphl) & ~7))   # its fragments
    n = draw(st.integers(0, min(max_payload, 65535 - hl, mss * (max_segs // per_seg))))
    ip = bytearray(struct.pack(
        "!BBHHHBBHII", 0x40 | iphl >> 2, draw(st.integers(0, 255)), hl + n,
        draw(idents), draw(st.sampled_from([0, 0x4000])),
        draw(st.integers(1, 255)), 6, 0, aton(R.H0), aton(R.H1))) + ipo
    struct.pack_into("!H", ip, 10, checksum(bytes(ip)))
    tcp = struct.pack("!HHIIBBHHH", draw(st.integers(0, 0xFFFF)), draw(st.integers(0, 0xFFFF)),
                      draw(seqs), draw(st.integers(0, 0xFFFFFFFF)),
                      ((20 + len(tcpo)) >> 2) << 4, draw(st.integers(0, 255)),
                      draw(st.integers(0, 0xFFFF)), draw(st.integers(0, 0xFFFF)),
                      draw(st.integers(0, 0xFFFF))) + tcpo
    seed = draw(st.integers(0, 255))
    payload = bytes((seed + i * 7 + (i >> 8)) & 0xFF for i in range(n))
    return bytes(ip) + tcp + payload, mss


def check_segments(segs: list, pkt: bytes, mss: int, ttl_drop: int = 0) -> None:
    """`segs` (IP packets as bytes) are what TSO must make of `pkt`."""
    iphl = (pkt[0] & 0x0F) << 2
    hl = iphl + ((pkt[iphl + 12] >> 4) << 2)
    payload = pkt[hl:]
    n = max(1, -(-len(payload) // mss))
    assert len(segs) == n
    id0 = struct.unpack_from("!H", pkt, 4)[0]
    seq0 = struct.unpack_from("!I", pkt, iphl + 4)[0]
    flags0 = pkt[iphl + 13]
    got = b""
    for i, s in enumerate(segs):
        ip = IP(s)
        t = ip[TCP]
        data = s[hl:]
        assert data == payload[i * mss:(i + 1) * mss], f"segment {i}: payload"
        assert len(s) == hl + len(data) == ip.len
        assert ip.id == (id0 + i) & 0xFFFF
        assert t.seq == (seq0 + i * mss) & 0xFFFFFFFF
        want = flags0
        if i:
            want &= ~CWR
        if i != n - 1:
            want &= ~(FIN | PSH)
        assert s[iphl + 13] == want, f"segment {i}: flags {s[iphl + 13]:#04x}"
        # Everything else as in the super-frame's headers.
        assert s[0:2] == pkt[0:2] and s[6:8] == pkt[6:8] and s[9:10] == pkt[9:10]
        assert s[8] == pkt[8] - ttl_drop and s[12:iphl] == pkt[12:iphl]
        assert s[iphl:iphl + 4] == pkt[iphl:iphl + 4]                    # ports
        assert s[iphl + 8:iphl + 13] == pkt[iphl + 8:iphl + 13]          # ack, offset
        assert s[iphl + 14:iphl + 16] == pkt[iphl + 14:iphl + 16]        # window
        assert s[iphl + 18:hl] == pkt[iphl + 18:hl]                      # urgent, options
        # Both checksums, as scapy verifies them.
        assert checksum(s[:iphl]) == 0, f"segment {i}: IP header checksum"
        assert in4_chksum(6, ip, s[iphl:]) == 0, f"segment {i}: TCP checksum"
        got += data
    assert got == payload


def as_chain(pool, pkt: bytes, mss: int, cuts: list, partial_in: bool):
    """`pkt` as a super-frame arriving in a chain cut at `cuts` (offsets
    past its headers), the headers whole in the first mbuf."""
    iphl = (pkt[0] & 0x0F) << 2
    hl = iphl + ((pkt[iphl + 12] >> 4) << 2)
    m = chain(pool, pkt, [hl + c for c in cuts])
    m.csum_flags = M_CSUM_TSOv4 | (M_CSUM_TCPv4 if partial_in else 0)
    m.csum_data = (iphl << 16) | 16
    m.segsz = mss
    return m


@SETTINGS
@given(frame=superframes(), cuts=st.lists(st.integers(1, 64000), max_size=4),
       partial=st.booleans(), partial_in=st.booleans())
def test_every_segment_follows_the_rules(pool, frame, cuts, partial, partial_in):
    """Any super-frame, in any chain, whatever its checksum field holds:
    segments by the rules (check_segments); with `partial`, each TCP
    checksum left as its own pseudo-header sum, flagged for the interface,
    completing to a valid one."""
    pkt, mss = frame
    m = as_chain(pool, pkt, mss, cuts, partial_in)
    hl = tso_header_len(m)
    iphl = (pkt[0] & 0x0F) << 2
    assert hl == iphl + ((pkt[iphl + 12] >> 4) << 2)
    segs = tcp_segment(pool, m, hl, partial)
    assert segs is not None
    out = []
    for s in segs:
        assert s.pkt_len == s.chain_len() and s.flags & M_PKTHDR
        if partial:
            # The field holds the pseudo-header sum for the segment's own
            # length, for the interface to complete.
            assert (s.csum_flags, s.csum_data) == (M_CSUM_TCPv4, (iphl << 16) | 16)
            b = s.tobytes()
            ph = sum(struct.unpack("!4H", b[12:20])) + 6 + len(b) - iphl
            while ph >> 16:
                ph = (ph & 0xFFFF) + (ph >> 16)
            assert struct.unpack_from("!H", b, iphl + 16)[0] == ph
            in_undefer_cksum(s)
        else:
            assert s.csum_flags == 0
        out.append(s.tobytes())
        pool.freem(s)
    check_segments(out, pkt, mss)


# -- through the router ------------------------------------------------------------


@settings(max_examples=40, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture,
                                 HealthCheck.too_slow])
@given(data=st.data(), mtu=st.integers(68, 1500) | st.sampled_from([68, 576, 1500]),
       df=st.booleans(), edge=st.sampled_from([None, -1, 0, 1]))
def test_forwarded_superframe_is_segmented_then_fragmented(net, stack, data, mtu, df, edge):
    """To an interface without offload: segments (TTL - 1) that, where
    they do not fit the MTU, are fragmented (DF clear) or refused with one
    frag-needed (DF set) that gives the MTU. `edge`: the MTU one byte
    short of a segment, just right, or one byte more."""
    if edge is None:
        pkt, mss = data.draw(superframes(max_payload=30000, min_mss=8, mtu=mtu))
    else:                               # at most two fragments a segment
        pkt, mss = data.draw(superframes(max_payload=30000, min_mss=8, max_segs=60))
    stack.pool.enable_jumbo(8)
    pkt = bytearray(pkt)
    iphl = (pkt[0] & 0x0F) << 2
    hl = iphl + ((pkt[iphl + 12] >> 4) << 2)
    pkt[8] = max(2, pkt[8])
    pkt[6] = (pkt[6] & ~0x40) | (0x40 if df else 0)
    pkt[10:12] = b"\0\0"
    pkt[10:12] = checksum(bytes(pkt[:iphl])).to_bytes(2, "big")
    pkt = bytes(pkt)
    seg = hl + min(mss, len(pkt) - hl)
    if edge is not None:
        mtu = max(68, seg + edge)
    net.if1.mtu = mtu
    m = chain(stack.pool, net.eth0() + pkt, [])
    m.csum_flags = M_CSUM_TSOv4 | M_CSUM_TCPv4
    m.csum_data = (iphl << 16) | 16
    m.segsz = mss
    inject(net.if0, m)
    out = take(net.if1)
    back = take(net.if0)
    if seg > mtu and df:
        assert out == [] and len(back) == 1
        icmp = back[0][ICMP]
        assert (icmp.type, icmp.code, icmp.nexthopmtu) == (3, 4, mtu)
        assert bytes(back[0][IPerror])[:iphl][12:] == pkt[12:iphl]     # quoting it
        return
    assert back == []
    frags = [f[IP] for f in out]
    assert all(len(bytes(f)) <= mtu for f in frags)
    assert all(checksum(bytes(f)[:f.ihl * 4]) == 0 for f in frags)
    if seg > mtu:
        id0 = struct.unpack_from("!H", pkt, 4)[0]
        segs = sorted((bytes(p[IP]) for p in defragment(frags)),
                      key=lambda b: (struct.unpack_from("!H", b, 4)[0] - id0) & 0xFFFF)
    else:
        segs = [bytes(f) for f in frags]
    check_segments(segs, pkt, mss, ttl_drop=1)
    assert stack.pool.in_use == 0 and stack.pool.jumbo_in_use == 0
