"""iopkt.mbuf: the bounded pool and the BSD mbuf operations."""

import pytest

from iopkt.kern import mbuf as mbuf_mod
from iopkt.kern.mbuf import (
    M_BCAST,
    M_EXT,
    M_MCAST,
    M_PKTHDR,
    MBUF_OVERHEAD,
    MJUMBYTES,
    MT_DATA,
    Mbuf,
    MbufPool,
    pool_bytes,
)


@pytest.fixture
def pool():
    p = MbufPool(nclusters=8, mclbytes=256)     # headroom 64: 192 bytes after it
    yield p
    assert p.in_use == 0, f"{p.in_use} clusters leaked"
    assert p.ext_in_use == 0


def chain(pool, *parts: bytes):
    """A packet whose mbufs hold exactly `parts` (one mbuf each)."""
    head = prev = None
    for p in parts:
        m = pool.get()
        m.view[m.off:m.off + len(p)] = p
        m.len = len(p)
        if head is None:
            head = m
        else:
            m.flags &= ~M_PKTHDR
            prev.next = m
        prev = m
    head.pkt_len = sum(len(p) for p in parts)
    return head


def lens(m) -> list:
    out = []
    while m is not None:
        out.append(m.len)
        m = m.next
    return out


# -- allocation ---------------------------------------------------------------

def test_get_free_counts_and_hiwat(pool):
    ms = [pool.get() for _ in range(3)]
    assert pool.in_use == 3 and pool.hiwat == 3
    m = ms[0]
    assert (m.off, m.len, m.flags) == (64, 0, M_PKTHDR)
    for m in ms:
        pool.free(m)
    assert pool.in_use == 0
    assert pool.hiwat == 3                  # high-water mark remembers
    pool.freem(pool.get())
    assert pool.hiwat == 3
    s = pool.stats()
    assert (s["clusters_total"], s["clusters_in_use"], s["clusters_free"],
            s["clusters_hiwat"], s["cluster_drops"]) == (8, 0, 8, 3, 0)


def test_empty_pool_returns_none_and_counts_drops(pool):
    ms = [pool.get() for _ in range(8)]
    assert None not in ms and pool.in_use == 8
    assert pool.get() is None
    assert pool.get() is None
    assert pool.drops == 2
    assert pool.hiwat == 8
    for m in ms:
        pool.free(m)
    assert pool.in_use == 0
    m = pool.get()                          # usable again once freed
    assert m is not None and pool.drops == 2
    pool.free(m)


def test_freed_mbuf_is_reset(pool):
    m = pool.from_bytes(b"abc")
    m.rcvif = object()
    m.csum_flags = 7
    pool.freem(m)
    m2 = pool.get()
    assert m2 is m
    assert (m2.off, m2.len, m2.pkt_len, m2.rcvif, m2.csum_flags, m2.next) == \
        (64, 0, 0, None, 0, None)
    pool.free(m2)


def test_pool_parameter_checks():
    with pytest.raises(ValueError, match="mclbytes"):
        MbufPool(nclusters=1, mclbytes=128)
    with pytest.raises(ValueError, match="headroom"):
        MbufPool(nclusters=1, mclbytes=256, headroom=128)
    with pytest.raises(ValueError, match="nmbclusters"):
        MbufPool(nclusters=0)


# -- prepend ------------------------------------------------------------------

def test_prepend_uses_headroom(pool):
    m = pool.from_bytes(b"payload")
    m2 = pool.prepend(m, 14)
    assert m2 is m and pool.in_use == 1
    assert (m.off, m.len, m.pkt_len) == (50, 21, 21)
    m.view[m.off:m.off + 14] = b"H" * 14
    assert m.tobytes() == b"H" * 14 + b"payload"
    pool.freem(m)


def test_prepend_without_leading_space_links_new_mbuf(pool):
    m = pool.from_bytes(b"payload", headroom=0)
    assert m.leadingspace() == 0
    m2 = pool.prepend(m, 14)
    assert m2 is not m and m2.next is m and pool.in_use == 2
    assert m2.flags & M_PKTHDR and not m.flags & M_PKTHDR
    assert (m2.len, m2.pkt_len) == (14, 21)
    assert m2.off == 256 - 14               # at the end: room for more in front
    m2.view[m2.off:m2.off + 14] = b"H" * 14
    assert m2.tobytes() == b"H" * 14 + b"payload"
    pool.freem(m2)


def test_prepend_fails_cleanly_when_pool_empty(pool):
    m = pool.from_bytes(b"x", headroom=0)
    others = [pool.get() for _ in range(7)]
    assert pool.prepend(m, 14) is None      # consumed: the chain was freed
    assert pool.in_use == 7 and pool.drops == 1
    for o in others:
        pool.free(o)


# -- adj ------------------------------------------------------------------------

def test_adj_head_and_tail_single(pool):
    m = pool.from_bytes(b"0123456789")
    pool.adj(m, 3)
    assert m.tobytes() == b"3456789" and m.pkt_len == 7 and m.off == 67
    pool.adj(m, -2)
    assert m.tobytes() == b"34567" and m.pkt_len == 5
    pool.freem(m)


def test_adj_across_chain(pool):
    m = chain(pool, b"aaaa", b"bbbb", b"cccc")
    pool.adj(m, 6)                          # all of the first, half the second
    assert lens(m) == [0, 2, 4] and m.pkt_len == 6
    assert m.tobytes() == b"bbcccc"
    pool.adj(m, -5)                         # all of the third, 1 of the second
    assert lens(m) == [0, 1, 0] and m.pkt_len == 1
    assert m.tobytes() == b"b"
    pool.freem(m)


# -- pullup -------------------------------------------------------------------

def test_pullup_noop_when_contiguous(pool):
    m = chain(pool, b"0123456789", b"abc")
    assert pool.pullup(m, 10) is m and lens(m) == [10, 3]
    pool.freem(m)


def test_pullup_across_chain(pool):
    m = chain(pool, b"abc", b"defg", b"hijkl")
    assert pool.in_use == 3
    m2 = pool.pullup(m, 9)
    assert m2 is m
    assert bytes(m.data()) == b"abcdefghi"
    assert lens(m) == [9, 3]                # the emptied middle mbuf was freed
    assert pool.in_use == 2
    assert m.tobytes() == b"abcdefghijkl" and m.pkt_len == 12
    pool.freem(m)


def test_pullup_needs_new_mbuf_when_no_trailing_room(pool):
    # first mbuf's data ends at the end of its cluster: no room to pull into
    first = b"x" * 10
    m = pool.get()
    m.off = 256 - 10
    m.view[m.off:] = first
    m.len = 10
    n = pool.get()
    n.flags &= ~M_PKTHDR
    n.view[n.off:n.off + 20] = b"y" * 20
    n.len = 20
    m.next = n
    m.pkt_len = 30
    h = pool.pullup(m, 25)
    assert h is not m and h.flags & M_PKTHDR
    assert bytes(h.data()) == b"x" * 10 + b"y" * 15
    assert h.pkt_len == 30 and h.tobytes() == b"x" * 10 + b"y" * 20
    assert pool.in_use == 2                 # new head + the y's tail; m freed
    pool.freem(h)


def test_pullup_too_short_frees_chain(pool):
    m = chain(pool, b"abc", b"de")
    assert pool.pullup(m, 6) is None
    assert pool.in_use == 0


# -- copydata / cat / from_bytes --------------------------------------------------

def test_copydata_across_chain(pool):
    m = chain(pool, b"abc", b"", b"defg", b"hij")
    assert pool.copydata(m, 0, 10) == bytearray(b"abcdefghij")
    assert pool.copydata(m, 2, 6) == bytearray(b"cdefgh")
    assert pool.copydata(m, 7, 3) == bytearray(b"hij")
    out = bytearray(b"........")
    pool.copydata(m, 1, 4, memoryview(out)[2:6])
    assert out == bytearray(b"..bcde..")
    with pytest.raises(ValueError):
        pool.copydata(m, 5, 6)
    pool.freem(m)


def test_cat(pool):
    a = pool.from_bytes(b"head-")
    b = chain(pool, b"tail", b"-end")
    pool.cat(a, b)
    assert a.pkt_len == 13 and a.tobytes() == b"head-tail-end"
    assert not b.flags & M_PKTHDR
    assert pool.in_use == 3
    pool.freem(a)


def test_from_bytes_single(pool):
    m = pool.from_bytes(b"hello")
    assert (m.off, m.len, m.pkt_len, m.next) == (64, 5, 5, None)
    pool.freem(m)


def test_from_bytes_makes_chain_when_bigger_than_cluster(pool):
    data = bytes(range(256)) * 2            # 512 bytes: 192 + 256 + 64
    m = pool.from_bytes(data)
    assert lens(m) == [192, 256, 64]
    assert m.pkt_len == 512 and m.tobytes() == data
    assert m.flags & M_PKTHDR and not m.next.flags & M_PKTHDR
    assert m.next.off == 0                  # followers use the whole cluster
    assert pool.in_use == 3
    pool.freem(m)
    assert pool.in_use == 0


def test_from_bytes_pool_dry_frees_partial_chain(pool):
    keep = [pool.get() for _ in range(6)]
    assert pool.from_bytes(b"z" * 512) is None  # needs 3, only 2 free
    assert pool.in_use == 6
    for k in keep:
        pool.free(k)


# -- external storage -------------------------------------------------------------

def test_get_ext_free_callback_once(pool):
    calls = []
    storage = bytearray(b"..ext data..")
    m = pool.get_ext(storage, 2, 8, calls.append, "token")
    assert m.flags & M_EXT and m.flags & M_PKTHDR
    assert m.tobytes() == b"ext data" and m.pkt_len == 8
    assert pool.ext_in_use == 1 and pool.in_use == 0
    pool.freem(m)
    assert calls == ["token"]
    assert pool.ext_in_use == 0
    assert pool.stats()["ext_hiwat"] == 1


def test_get_ext_in_a_chain_freed_once(pool):
    calls = []
    head = pool.from_bytes(b"hdr")
    ext = pool.get_ext(bytearray(b"body"), 0, 4, calls.append, 1)
    pool.cat(head, ext)
    assert head.tobytes() == b"hdrbody"
    pool.freem(head)
    assert calls == [1]
    assert pool.ext_in_use == 0 and pool.in_use == 0


def test_get_ext_exhausted():
    p = MbufPool(nclusters=1, mclbytes=256, nexthdrs=1)
    m = p.get_ext(bytearray(4), 0, 4, lambda a: None, None)
    assert p.get_ext(bytearray(4), 0, 4, lambda a: None, None) is None
    assert p.ext_drops == 1
    p.freem(m)
    assert p.ext_in_use == 0


def test_jumbo_pool_is_made_once_when_asked_and_bounded():
    pool = MbufPool(8, nmbjumbo=3)
    assert pool.njumbo == 0 and pool.get_jumbo() is None     # nobody asked yet
    assert pool.jumbo_drops == 1
    pool.enable_jumbo()
    pool.enable_jumbo(100)                                   # once only
    assert pool.njumbo == 3
    js = [pool.get_jumbo() for _ in range(4)]
    assert js[3] is None and pool.jumbo_drops == 2
    assert all(j.off == 0 and not j.flags and len(j.view) == 65536 for j in js[:3])
    st = pool.stats()
    assert (st["jumbo_in_use"], st["jumbo_hiwat"], st["jumbo_total"]) == (3, 3, 3)
    for j in js[:3]:
        pool.free(j)
    assert pool.jumbo_in_use == 0 and pool.in_use == 0       # back to its own pool
    with pytest.raises(ValueError, match="nmbjumbo=5000: must be 0..4096"):
        MbufPool(8, nmbjumbo=5000)


# -- sizing a pool before building it -------------------------------------------
# pool_bytes is what the command line checks against free memory: every
# cluster and every jumbo with its Python overhead.

def test_pool_bytes_counts_clusters_jumbos_and_overhead():
    assert pool_bytes(10) == 10 * (2048 + MBUF_OVERHEAD)        # no jumbos unless asked
    assert pool_bytes(4, 256, 2) == 4 * (256 + MBUF_OVERHEAD) + 2 * (65536 + MBUF_OVERHEAD)
    assert pool_bytes(0, 2048, 3) == 3 * (MJUMBYTES + MBUF_OVERHEAD)


# -- the pool's limits: inclusive bounds, and what the user is told -------------------

def test_pool_limits_are_inclusive_and_errors_name_the_value(monkeypatch):
    assert MbufPool(1, mclbytes=256).mclbytes == 256
    assert MbufPool(1, mclbytes=65536).mclbytes == 65536
    with pytest.raises(ValueError, match=r"^mclbytes=255: must be 256\.\.65536$"):
        MbufPool(1, mclbytes=255)
    with pytest.raises(ValueError, match=r"^mclbytes=65537: must be 256\.\.65536$"):
        MbufPool(1, mclbytes=65537)
    assert MbufPool(1, mclbytes=256, headroom=127).headroom == 127
    with pytest.raises(ValueError, match=r"^headroom=128: must be below half of mclbytes \(128\)$"):
        MbufPool(1, mclbytes=256, headroom=128)
    # Odd sizes: half, rounded down.
    assert MbufPool(1, mclbytes=257, headroom=127).headroom == 127
    with pytest.raises(ValueError, match=r"^headroom=128: must be below half of mclbytes \(128\)$"):
        MbufPool(1, mclbytes=257, headroom=128)
    with pytest.raises(ValueError, match=r"^nmbclusters=0: must be 1\.\.1048576$"):
        MbufPool(0)
    # The upper bound, with a smaller limit so the test builds no 2 GB pool.
    monkeypatch.setattr(mbuf_mod, "MAX_NMBCLUSTERS", 3)
    assert MbufPool(3, mclbytes=256).nclusters == 3
    with pytest.raises(ValueError, match=r"^nmbclusters=4: must be 1\.\.3$"):
        MbufPool(4, mclbytes=256)


def test_jumbo_count_bounds_are_inclusive():
    assert MbufPool(1, mclbytes=256, nmbjumbo=0).nmbjumbo == 0
    assert MbufPool(1, mclbytes=256, nmbjumbo=4096).nmbjumbo == 4096    # made only when asked
    with pytest.raises(ValueError, match=r"^nmbjumbo=4097: must be 0\.\.4096 \(64 KB each\)$"):
        MbufPool(1, mclbytes=256, nmbjumbo=4097)
    with pytest.raises(ValueError, match=r"^nmbjumbo=-1: must be 0\.\.4096 \(64 KB each\)$"):
        MbufPool(1, mclbytes=256, nmbjumbo=-1)


# -- netstat -m: every counter, by name -------------------------------------------------

def test_stats_of_a_new_pool():
    p = MbufPool(nclusters=4, mclbytes=256, nexthdrs=2, nmbjumbo=2)
    assert p.stats() == {
        "mclbytes": 256, "headroom": 64,
        "clusters_total": 4, "clusters_in_use": 0, "clusters_free": 4, "clusters_hiwat": 0,
        "cluster_drops": 0,
        "ext_total": 2, "ext_in_use": 0, "ext_hiwat": 0, "ext_drops": 0,
        "jumbo_bytes": 65536, "jumbo_total": 0, "jumbo_in_use": 0, "jumbo_hiwat": 0,
        "jumbo_drops": 0,
    }


def test_stats_count_use_high_water_and_denials_of_each_kind():
    p = MbufPool(nclusters=4, mclbytes=256, nexthdrs=2, nmbjumbo=2)
    p.enable_jumbo()
    cl = [p.get() for _ in range(4)]
    assert p.get() is None
    ext = [p.get_ext(bytearray(8), 0, 8, lambda a: None, None) for _ in range(2)]
    assert p.get_ext(bytearray(8), 0, 8, lambda a: None, None) is None
    jb = [p.get_jumbo() for _ in range(2)]
    assert p.get_jumbo() is None
    p.free(cl.pop())
    p.free(ext.pop())
    p.free(jb.pop())
    assert p.stats() == {
        "mclbytes": 256, "headroom": 64,
        "clusters_total": 4, "clusters_in_use": 3, "clusters_free": 1, "clusters_hiwat": 4,
        "cluster_drops": 1,
        "ext_total": 2, "ext_in_use": 1, "ext_hiwat": 2, "ext_drops": 1,
        "jumbo_bytes": 65536, "jumbo_total": 2, "jumbo_in_use": 1, "jumbo_hiwat": 2,
        "jumbo_drops": 1,
    }
    for m in cl + ext + jb:
        p.free(m)
    assert (p.in_use, p.ext_in_use, p.jumbo_in_use) == (0, 0, 0)


def test_external_headers_are_as_many_as_clusters_unless_told():
    assert MbufPool(3, mclbytes=256).stats()["ext_total"] == 3
    p = MbufPool(8, mclbytes=256, nexthdrs=2)
    got = [p.get_ext(bytearray(4), 0, 4, lambda a: None, None) for _ in range(3)]
    assert got[2] is None and p.ext_drops == 1 and p.ext_in_use == 2
    assert p.get_ext(bytearray(4), 0, 4, lambda a: None, None) is None
    assert p.ext_drops == 2                 # each denial counts
    for m in got[:2]:
        p.free(m)


# -- what get() hands out: an empty packet header over a whole cluster ------------------

def test_a_new_mbuf_is_an_empty_packet_header(pool):
    m = pool.get()
    assert (m.off, m.len, m.pkt_len, m.flags, m.type) == (64, 0, 0, M_PKTHDR, MT_DATA)
    assert (m.rcvif, m.csum_flags, m.next, m.nextpkt) == (None, 0, None, None)
    assert (m.size, m.leadingspace(), m.trailingspace()) == (256, 64, 192)
    pool.free(m)


def test_rxbuf_is_the_cluster_after_the_headroom(pool):
    """A driver reads a frame straight into m.rxbuf and sets m.len: the
    bytes are then the mbuf's data."""
    m = pool.get()
    assert len(m.rxbuf) == 256 - 64
    m.rxbuf[:5] = b"frame"
    m.len = m.pkt_len = 5
    assert bytes(m.data()) == b"frame" and m.tobytes() == b"frame"
    pool.free(m)


def test_a_reused_mbuf_carries_nothing_of_its_last_packet(pool):
    a = pool.from_bytes(b"first packet")
    b = pool.from_bytes(b"second")
    a.nextpkt = b                           # they were on a queue
    a.flags |= M_BCAST | M_MCAST
    a.rcvif = "fk0"
    pool.freem(b)
    pool.freem(a)
    m = pool.get()
    assert m is a
    assert (m.off, m.len, m.pkt_len, m.flags, m.rcvif, m.csum_flags, m.next, m.nextpkt) == \
        (64, 0, 0, M_PKTHDR, None, 0, None, None)
    pool.free(m)


# -- views over the data -----------------------------------------------------------------

def test_trailingspace_chain_len_and_tobytes(pool):
    m = pool.from_bytes(b"hello")
    assert (m.leadingspace(), m.trailingspace(), m.chain_len()) == (64, 256 - 64 - 5, 5)
    pool.freem(m)
    m = chain(pool, b"aaaa", b"", b"bbbbbb", b"cc")
    assert m.chain_len() == 12 and m.next.chain_len() == 8
    assert m.tobytes() == b"aaaabbbbbbcc"
    pool.freem(m)


def test_repr_shows_offsets_header_and_chain(pool):
    m = pool.from_bytes(b"hello")
    assert repr(m) == "<Mbuf off=64 len=5 pkt_len=5 flags=0x2>"
    pool.freem(m)
    m = chain(pool, b"abcd", b"efgh")
    assert repr(m) == "<Mbuf off=64 len=4 pkt_len=8 flags=0x2 chain>"
    assert repr(m.next) == "<Mbuf off=64 len=4 pkt_len=0 flags=0x0>"
    pool.freem(m)


# -- jumbo clusters: made once, on request, of the size asked --------------------------

def test_enable_jumbo_makes_the_count_asked_once():
    p = MbufPool(4, mclbytes=256, nmbjumbo=3)
    p.enable_jumbo(0)                       # nothing made: a later call still can
    assert p.njumbo == 0
    p.enable_jumbo(1)
    assert p.njumbo == 1 and p.stats()["jumbo_total"] == 1
    p.enable_jumbo()
    assert p.njumbo == 1
    p2 = MbufPool(4, mclbytes=256, nmbjumbo=3)
    p2.enable_jumbo(2)                      # the count given wins over nmbjumbo
    assert p2.njumbo == 2
    p3 = MbufPool(4, mclbytes=256, nmbjumbo=0)
    p3.enable_jumbo()                       # nmbjumbo=0: no jumbos at all
    assert p3.njumbo == 0 and p3.get_jumbo() is None and p3.jumbo_drops == 1


def test_a_jumbo_continues_a_chain_from_offset_0_empty():
    p = MbufPool(4, mclbytes=256, nmbjumbo=1)
    p.enable_jumbo()
    j = p.get_jumbo()
    assert (j.off, j.len, j.flags, j.size, j.trailingspace()) == (0, 0, 0, 65536, 65536)
    j.len = 1000
    p.free(j)
    j2 = p.get_jumbo()                      # the same one, empty again
    assert j2 is j and (j2.off, j2.len, j2.flags) == (0, 0, 0)
    p.free(j2)
    assert p.jumbo_in_use == 0 and p.in_use == 0


# -- external storage: the owner's buffer, lent ----------------------------------------

def test_get_ext_describes_the_owners_buffer(pool):
    storage = bytearray(b"....payload...")
    m = pool.get_ext(storage, 4, 7, lambda a: None, None)
    assert m.buf is storage                 # the input path calls its methods
    assert (m.off, m.len, m.pkt_len, m.size) == (4, 7, 7, 14)
    assert (m.flags, m.type, m.rcvif, m.csum_flags, m.next) == \
        (M_PKTHDR | M_EXT, MT_DATA, None, 0, None)
    assert m.trailingspace() == 14 - 4 - 7
    assert bytes(m.data()) == b"payload"
    pool.freem(m)


def test_get_ext_refuses_anything_but_a_bytearray(pool):
    with pytest.raises(TypeError, match=r"^get_ext: storage must be a bytearray, not bytes$"):
        pool.get_ext(b"abc", 0, 3, lambda a: None, None)
    with pytest.raises(TypeError, match=r"^get_ext: storage must be a bytearray, not memoryview$"):
        pool.get_ext(memoryview(bytearray(3)), 0, 3, lambda a: None, None)
    assert pool.ext_in_use == 0


def test_an_external_header_is_reused_clean():
    p = MbufPool(nclusters=1, mclbytes=256, nexthdrs=1)
    calls = []
    m = p.get_ext(bytearray(b"first"), 0, 5, calls.append, "a")
    m.rcvif, m.csum_flags = "fk0", 0x101
    p.freem(m)
    m2 = p.get_ext(bytearray(b"second!"), 1, 6, calls.append, "b")
    assert m2 is m                          # the one header, back in the stock
    assert (m2.rcvif, m2.csum_flags, m2.pkt_len, m2.tobytes()) == (None, 0, 6, b"econd!")
    p.freem(m2)
    assert calls == ["a", "b"]
    assert p.stats()["ext_hiwat"] == 1


# -- prepend: the boundaries of the leading space, and the packet header -------------------

def test_prepend_exactly_the_leading_space_stays_in_place(pool):
    m = pool.from_bytes(b"payload", headroom=14)
    assert pool.prepend(m, 14) is m and pool.in_use == 1
    assert (m.off, m.len, m.pkt_len) == (0, 21, 21)
    pool.freem(m)


def test_prepend_in_a_new_mbuf_moves_the_packet_header(pool):
    m = pool.from_bytes(b"payload", headroom=0)
    m.rcvif, m.csum_flags, m.csum_data, m.segsz = "fk0", 0x101, (20 << 16) | 16, 1448
    m.flags |= M_BCAST
    h = pool.prepend(m, 14)
    assert h.next is m
    assert (h.rcvif, h.csum_flags, h.csum_data, h.segsz, h.pkt_len) == \
        ("fk0", 0x101, (20 << 16) | 16, 1448, 21)
    assert h.flags == M_PKTHDR | M_BCAST    # the link-level flag goes with the header
    assert m.flags == M_BCAST               # m is no longer a packet's first mbuf
    pool.freem(h)
    m = pool.from_bytes(b"x", headroom=0)
    m.flags |= M_MCAST
    h = pool.prepend(m, 14)
    assert h.flags == M_PKTHDR | M_MCAST
    pool.freem(h)



def test_prepend_of_at_most_a_cluster(pool):
    """A new first mbuf holds at most a cluster: a whole one is fine (the
    data then starts at its very beginning), one byte more fails cleanly."""
    m = pool.from_bytes(b"payload", headroom=0)
    h = pool.prepend(m, 256)
    assert h is not None and h.next is m
    assert (h.off, h.len, h.pkt_len) == (0, 256, 263)
    pool.freem(h)
    m = pool.from_bytes(b"payload", headroom=0)
    assert pool.prepend(m, 257) is None     # consumed: the chain was freed
    assert pool.in_use == 0 and pool.drops == 0

# -- adj: trimming by exactly n bytes, up to everything -----------------------------------

def test_adj_one_byte_from_each_end(pool):
    m = pool.from_bytes(b"0123456789")
    pool.adj(m, 1)
    assert (m.tobytes(), m.pkt_len, m.off, m.len) == (b"123456789", 9, 65, 9)
    pool.adj(m, -1)
    assert (m.tobytes(), m.pkt_len, m.len) == (b"12345678", 8, 8)
    pool.adj(m, 0)
    assert (m.tobytes(), m.pkt_len) == (b"12345678", 8)
    pool.freem(m)


def test_adj_the_whole_packet_or_more_empties_it(pool):
    for n in (12, 50, -12, -50):
        m = chain(pool, b"aaaa", b"bbbb", b"cccc")
        pool.adj(m, n)
        assert lens(m) == [0, 0, 0] and m.pkt_len == 0 and m.tobytes() == b""
        pool.freem(m)


def test_adj_tail_ending_on_an_mbuf_boundary(pool):
    m = chain(pool, b"aaaa", b"bbbb", b"cccc")
    pool.adj(m, -4)
    assert lens(m) == [4, 4, 0] and m.pkt_len == 8 and m.tobytes() == b"aaaabbbb"
    pool.freem(m)


# -- pullup: the boundaries, and external storage left as its owner lent it -----------------

def test_pullup_the_whole_packet(pool):
    m = chain(pool, b"abc", b"defg")
    m = pool.pullup(m, 7)
    assert m is not None and lens(m) == [7] and m.pkt_len == 7
    assert bytes(m.data()) == b"abcdefg" and pool.in_use == 1
    pool.freem(m)


def test_pullup_filling_the_cluster_to_its_end_stays_in_place(pool):
    m = chain(pool, b"h" * 10, b"t" * 150, b"u" * 50)
    assert m.off + 192 == m.size
    h = pool.pullup(m, 192)
    assert h is m and (h.off, h.len) == (64, 192) and lens(h) == [192, 18]
    assert h.tobytes() == b"h" * 10 + b"t" * 150 + b"u" * 50
    assert pool.in_use == 2                 # the emptied middle one went back
    pool.freem(h)


def test_pullup_of_a_whole_cluster_uses_all_of_a_new_one(pool):
    m = chain(pool, b"h" * 100, b"t" * 190)
    h = pool.pullup(m, 256)
    assert h is not m and (h.off, h.len) == (0, 256) and lens(h) == [256, 34]
    assert h.tobytes() == b"h" * 100 + b"t" * 190 and h.pkt_len == 290
    assert pool.in_use == 2
    pool.freem(h)
    m = chain(pool, b"h" * 100, b"t" * 190)
    assert pool.pullup(m, 257) is None      # more than any cluster holds: refused, freed
    assert pool.in_use == 0


def test_pullup_of_what_external_storage_already_holds_is_a_noop(pool):
    calls = []
    m = pool.get_ext(bytearray(b"e" * 50), 0, 50, calls.append, "ext")
    assert pool.pullup(m, 50) is m and pool.in_use == 0
    pool.freem(m)
    assert calls == ["ext"]


def test_pullup_never_writes_into_external_storage(pool):
    """The owner lent its buffer for the bytes it holds: pulling more in
    front goes into a cluster of ours, even when the buffer has room."""
    calls = []
    storage = bytearray(b"E" * 40 + b"." * 960)
    m = pool.get_ext(storage, 0, 40, calls.append, "ext")
    tail = pool.get()
    tail.flags &= ~M_PKTHDR
    tail.view[tail.off:tail.off + 100] = b"t" * 100
    tail.len = 100
    m.next = tail
    m.pkt_len = 140
    m.rcvif = "fk0"
    h = pool.pullup(m, 60)
    assert h is not m and h.flags == M_PKTHDR and h.rcvif == "fk0"
    assert bytes(h.data()) == b"E" * 40 + b"t" * 20 and h.pkt_len == 140
    assert h.tobytes() == b"E" * 40 + b"t" * 100
    assert storage == bytearray(b"E" * 40 + b"." * 960)
    assert calls == ["ext"] and pool.ext_in_use == 0   # emptied, given back
    pool.freem(h)


def test_copydata_says_why_it_fails(pool):
    m = pool.from_bytes(b"0123456789")
    with pytest.raises(ValueError, match=r"^copydata: chain shorter than requested$"):
        pool.copydata(m, 8, 3)
    pool.freem(m)


def test_pullup_that_needs_a_new_mbuf_with_the_pool_dry_frees_the_chain(pool):
    m = chain(pool, b"h" * 100, b"t" * 190)
    held = [pool.get() for _ in range(6)]
    assert pool.get() is None
    assert pool.pullup(m, 256) is None      # consumed: both of its clusters back
    assert pool.in_use == 6 and pool.drops == 2
    for h in held:
        pool.free(h)


# -- cat: appending to the end of a chain ---------------------------------------------------

def test_cat_appends_after_the_last_mbuf_of_a_chain(pool):
    a = chain(pool, b"one-", b"two-")
    b = chain(pool, b"three-", b"four")
    pool.cat(a, b)
    assert lens(a) == [4, 4, 6, 4] and a.pkt_len == 18
    assert a.tobytes() == b"one-two-three-four"
    pool.freem(a)


# -- work not done: what an operation leaves alone ----------------------------------------
# Doing more than needed is invisible in the bytes but costs every packet:
# these count it. watch(m) logs each field of `m` read or written.

def watch(m) -> list:
    touched = []

    class Watched(Mbuf):
        __slots__ = ()

        def __getattribute__(self, name):
            touched.append(name)
            return object.__getattribute__(self, name)

        def __setattr__(self, name, value):
            touched.append(name + "=")
            object.__setattr__(self, name, value)

    m.__class__ = Watched
    return touched


def unwatch(*ms) -> None:
    for m in ms:
        object.__setattr__(m, "__class__", Mbuf)


def test_adj_of_0_bytes_walks_no_mbuf(pool):
    # The IPv6 input trims Ethernet padding with adj(m, tlen - pkt_len):
    # 0 for nearly every packet.
    m = chain(pool, b"abcd", b"efgh")
    tail = m.next
    head_seen, tail_seen = watch(m), watch(tail)
    pool.adj(m, 0)
    unwatch(m, tail)
    assert tail_seen == [] and set(head_seen) == {"pkt_len", "pkt_len="}
    assert lens(m) == [4, 4] and m.pkt_len == 8
    pool.freem(m)


def test_adj_stops_at_the_mbuf_where_the_trim_ends(pool):
    m = chain(pool, b"abcd", b"efgh")
    tail = m.next
    tail_seen = watch(tail)
    pool.adj(m, 4)                          # all of the first mbuf, none of the next
    unwatch(tail)
    assert tail_seen == []
    assert lens(m) == [0, 4] and m.pkt_len == 4 and m.tobytes() == b"efgh"
    pool.freem(m)


def test_copydata_from_an_mbuf_boundary_reads_nothing_of_the_mbuf_before(pool):
    m = chain(pool, b"abcd", b"efgh")
    head_seen = watch(m)
    assert pool.copydata(m, 4, 4) == bytearray(b"efgh")
    unwatch(m)
    assert "view" not in head_seen and "off" not in head_seen
    pool.freem(m)


class StoreCountingPool(MbufPool):
    """Records the name of every attribute the pool writes on itself."""

    def __setattr__(self, name, value):
        self.__dict__.setdefault("stores", []).append(name)
        object.__setattr__(self, name, value)


def test_the_high_water_marks_are_written_only_when_they_move():
    p = StoreCountingPool(4, mclbytes=256, nmbjumbo=2)
    p.enable_jumbo()
    p.stores.clear()
    m, j = p.get(), p.get_jumbo()
    e = p.get_ext(bytearray(8), 0, 8, lambda a: None, None)
    assert p.stores == ["_lowat", "_jlowat", "ext_hiwat"]   # each a new low (high) mark
    p.free(m), p.free(j), p.free(e)
    p.stores.clear()
    m, j = p.get(), p.get_jumbo()           # as many out as before: no mark moves
    e = p.get_ext(bytearray(8), 0, 8, lambda a: None, None)
    assert p.stores == []
    assert (p.hiwat, p.stats()["jumbo_hiwat"], p.ext_hiwat) == (1, 1, 1)
    p.free(m), p.free(j), p.free(e)


def test_enabling_no_jumbos_writes_nothing():
    p = StoreCountingPool(4, mclbytes=256, nmbjumbo=0)
    p.stores.clear()
    p.enable_jumbo()
    p.enable_jumbo(0)
    assert p.stores == [] and p.njumbo == 0


def test_a_new_jumbo_shows_an_empty_header_less_mbuf():
    p = MbufPool(4, mclbytes=256, nmbjumbo=1)
    p.enable_jumbo()
    j = p.get_jumbo()
    assert repr(j) == "<Mbuf off=0 len=0 pkt_len=0 flags=0x0>"
    p.free(j)
