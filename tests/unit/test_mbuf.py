"""iopkt.mbuf: the bounded pool and the BSD mbuf operations."""

import pytest

from iopkt.mbuf import M_EXT, M_PKTHDR, MbufPool


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
