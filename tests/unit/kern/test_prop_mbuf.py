"""Properties of the mbuf chain operations (mbuf.py) against a plain
`bytes` model, by hypothesis's stateful testing.

Why: each operation walks a chain of mbufs with their own offsets and
lengths, and the bugs that matter (a byte lost between two mbufs, a
packet-header length not kept, a cluster never given back or given back
twice) show only for some shapes of chain. So a state machine builds
chains of random pieces (small clusters, so chains are the rule; empty
mbufs in the middle; leading and trailing space; sometimes a jumbo or
external storage), applies prepend, adj both ways, pullup, copydata and
cat in any order, sometimes with the pool dry, and after every step checks
the chain against the model: its bytes, its packet header, its shape, and
exactly as many clusters out of the pool as the chain holds. At the end
everything is freed and the pool is full again.
"""

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from iopkt.kern.mbuf import M_BCAST, M_EXT, M_MCAST, M_PKTHDR, MbufPool, copy_pkthdr

MCL = 256           # cluster size: headroom 64, so 192 bytes after it
NCL = 48


def mbufs(m) -> list:
    out = []
    while m is not None:
        out.append(m)
        m = m.next
    return out


def fill(n: int, tag: int) -> bytes:
    """`n` bytes unlikely to repeat across pieces (a lost or duplicated
    piece shows)."""
    return bytes((tag * 7 + i * 13 + (i >> 8)) & 0xFF for i in range(n))


pieces = st.lists(st.tuples(st.integers(0, MCL), st.integers(0, MCL)), min_size=1, max_size=6)


class MbufChain(RuleBasedStateMachine):
    """One packet (`head`) and its model; `held` clusters kept out of the
    pool to make it run dry; external storage handed out and given back."""

    def __init__(self):
        super().__init__()
        self.pool = MbufPool(nclusters=NCL, mclbytes=MCL, nexthdrs=4, nmbjumbo=2)
        self.pool.enable_jumbo()
        self.head = None
        self.model = b""
        self.hdr = None             # (rcvif, csum_flags, csum_data, segsz, bcast flags)
        self.held = []
        self.ext_out = {}           # token -> times its free callback ran
        self.tag = 0

    # -- building ------------------------------------------------------------
    def _ext_freed(self, token) -> None:
        self.ext_out[token] += 1

    def _chain(self, shape, ext: int, jumbo_at: int):
        """A packet whose mbufs hold pieces of the lengths in `shape`, each
        at an offset inside its storage; the first in external storage
        `ext` bytes larger than it needs when `ext` >= 0, piece `jumbo_at`
        (not the first) in a jumbo cluster. None if the pool is dry
        (nothing taken)."""
        pool = self.pool
        got, data = [], b""
        for i, (n, off) in enumerate(shape):
            self.tag += 1
            if i == 0 and ext >= 0:
                # At least a cluster's worth: see test_pullup_contract for
                # smaller external storage.
                size = max(MCL, n + off + ext)
                storage = bytearray(size)
                piece = fill(min(n, size), self.tag)
                off = min(off, size - len(piece))
                storage[off:off + len(piece)] = piece
                self.ext_out[self.tag] = 0
                m = pool.get_ext(storage, off, len(piece), self._ext_freed, self.tag)
            elif i and i == jumbo_at:
                m = pool.get_jumbo()
                piece = fill(n * 20, self.tag)       # longer than a cluster
            else:
                m = pool.get()
                piece = fill(min(n, MCL), self.tag)
            if m is None:
                for x in got:
                    pool.free(x)
                return None, b""
            if not m.flags & M_EXT:
                m.off = min(off, m.size - len(piece))
                m.view[m.off:m.off + len(piece)] = piece
                m.len = len(piece)
            if got:
                m.flags &= ~M_PKTHDR
                got[-1].next = m
            got.append(m)
            data += piece
        head = got[0]
        head.pkt_len = len(data)
        return head, data

    @precondition(lambda self: self.head is None)
    @rule(shape=pieces, ext=st.integers(-1, 600) | st.just(-1), jumbo_at=st.integers(-1, 8),
          rcvif=st.sampled_from([None, "fk0", "fk1"]), csum=st.integers(0, 0x1FF),
          cdata=st.integers(0, 0xFFFFFFFF), segsz=st.integers(0, 9000),
          bflags=st.sampled_from([0, M_BCAST, M_MCAST]))
    def build(self, shape, ext, jumbo_at, rcvif, csum, cdata, segsz, bflags):
        head, data = self._chain(shape, ext if self.pool.ext_in_use < 4 else -1, jumbo_at)
        if head is None:
            assert self.held                        # the pool ran dry
            return
        head.rcvif, head.csum_flags, head.csum_data, head.segsz = rcvif, csum, cdata, segsz
        head.flags |= bflags
        self.head, self.model = head, data
        self.hdr = (rcvif, csum, cdata, segsz, bflags)

    @precondition(lambda self: self.head is None)
    @rule(n=st.integers(0, 1200), headroom=st.none() | st.integers(0, MCL))
    def from_bytes(self, n, headroom):
        """from_bytes: a chain of clusters holding `data` after `headroom`."""
        self.tag += 1
        data = fill(n, self.tag)
        m = self.pool.from_bytes(data, headroom)
        if m is None:
            assert self.held                        # the pool ran dry
            return
        assert m.off == (self.pool.headroom if headroom is None else headroom)
        self.head, self.model = m, data
        self.hdr = (None, 0, None, None, 0)

    # -- starving the pool ---------------------------------------------------
    @rule(k=st.integers(1, NCL))
    def hold(self, k):
        """Take up to `k` clusters out of the pool (the next allocations
        may fail)."""
        for _ in range(k):
            m = self.pool.get()
            if m is None:
                break
            self.held.append(m)

    @precondition(lambda self: self.held)
    @rule()
    def release(self):
        for m in self.held:
            self.pool.free(m)
        self.held = []

    # -- the operations --------------------------------------------------------
    def _consumed(self, result):
        """An operation that consumes the chain returned None: the chain is
        gone, all of it back in the pool (the invariant checks the count)."""
        assert result is None
        self.head, self.model, self.hdr = None, b"", None

    @precondition(lambda self: self.head is not None)
    @rule(n=st.integers(0, MCL) | st.sampled_from([0, 14, "lead", "lead+1"]),
          pattern=st.integers(0, 255))
    def prepend(self, n, pattern):
        """M_PREPEND: room for n bytes in front, contiguous in the first
        mbuf: in place when the leading space allows (exactly, too), else
        a new mbuf in front; on failure the chain is freed and None
        returned. `n` may be the leading space or one more."""
        old = self.head
        if isinstance(n, str):
            n = min(MCL, old.off + (n == "lead+1"))
        room = old.off >= n
        dry = self.pool.in_use == NCL
        m = self.pool.prepend(old, n)
        if m is None or (dry and not room):
            assert dry and not room and m is None
            return self._consumed(m)
        if room:
            assert m is old
        else:
            assert m is not old and m.next is old and not old.flags & M_PKTHDR
        assert m.len >= n
        hdr = bytes([pattern]) * n
        m.view[m.off:m.off + n] = hdr
        self.head, self.model = m, hdr + self.model

    @precondition(lambda self: self.head is not None)
    @rule(n=st.integers(-1300, 1300))
    def adj(self, n):
        """m_adj: trim n bytes from the head (n > 0) or the tail (n < 0);
        the chain keeps its mbufs (emptied ones stay with len 0)."""
        before = mbufs(self.head)
        self.pool.adj(self.head, n)
        assert mbufs(self.head) == before
        self.model = self.model[n:] if n >= 0 else self.model[:max(0, len(self.model) + n)]

    @precondition(lambda self: self.head is not None)
    @rule(n=st.integers(0, MCL) | st.integers(0, 20) | st.sampled_from(["room", "room+1"]))
    def pullup(self, n):
        """m_pullup: the first n bytes contiguous in the first mbuf; None
        (the chain freed) when the packet is shorter than n or the pool is
        empty. (At most a cluster: see test_pullup_contract for more.)
        `n` may be all the room after the head's offset, or one more."""
        old = self.head
        if isinstance(n, str):
            n = min(MCL, old.size - old.off + (n == "room+1"))
        was_contiguous = old.len >= n
        dry = self.pool.in_use == NCL
        m = self.pool.pullup(old, n)
        if was_contiguous:
            assert m is old
        if n > len(self.model):
            assert m is None
        if m is None:
            assert n > len(self.model) or dry
            return self._consumed(m)
        assert m.len >= n
        assert bytes(m.view[m.off:m.off + n]) == self.model[:n]
        self.head = m

    @precondition(lambda self: self.head is not None)
    @rule(off=st.integers(0, 1300), length=st.integers(0, 1300), into=st.booleans())
    def copydata(self, off, length, into):
        """m_copydata: `length` bytes from `off` into a new bytearray (or
        the caller's buffer); ValueError when the chain is too short. The
        chain is not touched."""
        before = [(x.off, x.len) for x in mbufs(self.head)]
        out = bytearray(b"\xee" * (length + 3)) if into else None
        if off + length > len(self.model) and length:
            with pytest.raises(ValueError):
                self.pool.copydata(self.head, off, length, out)
        else:
            got = self.pool.copydata(self.head, off, length, out)
            want = self.model[off:off + length]
            if into:
                assert got is out and out == want + b"\xee" * 3
            else:
                assert isinstance(got, bytearray) and got == want
        assert [(x.off, x.len) for x in mbufs(self.head)] == before

    @precondition(lambda self: self.head is not None)
    @rule(shape=pieces, jumbo_at=st.integers(-1, 8))
    def cat(self, shape, jumbo_at):
        """m_cat: append another chain; its header dropped, ours grown by
        its length."""
        tail, data = self._chain(shape, -1, jumbo_at)
        if tail is None:
            return
        tail.pkt_len = 12345                        # must not matter
        tail.rcvif = "other"
        self.pool.cat(self.head, tail)
        assert not tail.flags & M_PKTHDR
        self.model += data

    @precondition(lambda self: self.head is not None)
    @rule()
    def freem(self):
        """m_freem: the whole chain back (external storage to its owner)."""
        self.pool.freem(self.head)
        self.head, self.model, self.hdr = None, b"", None

    # -- after every step -------------------------------------------------------
    @invariant()
    def chain_matches_model(self):
        pool = self.pool
        chain = mbufs(self.head)
        if self.head is not None:
            m = self.head
            assert m.tobytes() == self.model
            assert m.pkt_len == len(self.model) == m.chain_len()
            assert m.flags & M_PKTHDR
            # csum_data and segsz mean something only with csum_flags
            # (from_bytes may hand out stale ones: None in the model).
            got = (m.rcvif, m.csum_flags, m.csum_data, m.segsz, m.flags & (M_BCAST | M_MCAST))
            assert got == tuple(g if w is None and i in (2, 3) else w
                                for i, (g, w) in enumerate(zip(got, self.hdr)))
            pos = 0
            for x in chain:
                assert 0 <= x.off and x.len >= 0 and x.off + x.len <= x.size
                assert x.leadingspace() == x.off
                assert x.trailingspace() == x.size - x.off - x.len
                assert bytes(x.data()) == self.model[pos:pos + x.len]
                pos += x.len
                if x is not m:
                    assert not x.flags & M_PKTHDR
        clusters = sum(1 for x in chain if not x.flags & M_EXT and x.size == MCL)
        jumbos = sum(1 for x in chain if not x.flags & M_EXT and x.size != MCL)
        ext = sum(1 for x in chain if x.flags & M_EXT)
        assert pool.in_use == clusters + len(self.held)
        assert pool.jumbo_in_use == jumbos
        assert pool.ext_in_use == ext
        assert sorted(self.ext_out.values()) == [0] * ext + [1] * (len(self.ext_out) - ext)

    def teardown(self):
        self.release()
        if self.head is not None:
            self.pool.freem(self.head)
        assert self.pool.in_use == 0
        assert self.pool.jumbo_in_use == 0 and self.pool.ext_in_use == 0
        assert all(v == 1 for v in self.ext_out.values())


MbufChain.TestCase.settings = settings(max_examples=150, stateful_step_count=30,
                                       deadline=None)
test_mbuf_chain_operations = MbufChain.TestCase


# -- pullup, whatever the first mbuf's storage ----------------------------------------

@settings(max_examples=300, deadline=None)
@given(head_len=st.integers(0, MCL), head_off=st.integers(0, MCL),
       ext=st.none() | st.integers(0, 1200), tail=st.lists(st.integers(0, MCL), max_size=5),
       n=st.integers(0, 700) | st.integers(0, 40), dry=st.booleans())
@example(head_len=100, head_off=0, ext=900, tail=[200, 100], n=300, dry=False)
@example(head_len=40, head_off=0, ext=10, tail=[200, 60], n=100, dry=False)
def test_pullup_contract(head_len, head_off, ext, tail, n, dry):
    """m_pullup on a chain whose first mbuf is a cluster or external
    storage of any size (`ext`: bytes to spare after the data): it never
    raises; it returns None (the chain freed) only when the packet is
    shorter than n, the pool is empty, or n is more than a cluster can
    hold (as BSD's m_pullup refuses more than MHLEN); otherwise the first
    n bytes are contiguous in the head and the packet is unchanged."""
    pool = MbufPool(nclusters=16, mclbytes=MCL, nexthdrs=2)
    freed = []
    data = fill(head_len, 1)
    if ext is None:
        head = pool.get()
        head.off = min(head_off, MCL - head_len)
        head.view[head.off:head.off + head_len] = data
        head.len = head_len
    else:
        storage = bytearray(head_off + head_len + ext)
        storage[head_off:head_off + head_len] = data
        head = pool.get_ext(storage, head_off, head_len, freed.append, "ext")
    head.segsz, head.csum_flags, head.csum_data, head.rcvif = 1448, 0x100, 7, "fk0"
    prev = head
    for i, k in enumerate(tail):
        x = pool.get()
        x.flags &= ~M_PKTHDR
        x.off = 0
        piece = fill(k, i + 2)
        x.view[:k] = piece
        x.len = k
        prev.next = x
        prev = x
        data += piece
    head.pkt_len = len(data)
    held = []
    while dry and (h := pool.get()) is not None:
        held.append(h)
    try:
        m = pool.pullup(head, n)
    finally:
        for h in held:
            pool.free(h)
    if m is None:
        assert n > len(data) or dry or n > MCL, f"refused: pullup({n}) of {len(data)} bytes"
    else:
        assert n <= len(data)
        assert m.len >= n and m.flags & M_PKTHDR
        assert 0 <= m.off and m.off + m.len <= m.size
        assert m.tobytes() == data and m.pkt_len == len(data)
        assert (m.segsz, m.csum_flags, m.csum_data, m.rcvif) == (1448, 0x100, 7, "fk0")
        pool.freem(m)
    assert pool.in_use == 0 and pool.ext_in_use == 0
    assert freed == ([] if ext is None else ["ext"])


# -- copy_pkthdr ----------------------------------------------------------------------

@settings(max_examples=50, deadline=None)
@given(rcvif=st.sampled_from([None, "fk0"]), csum=st.integers(0, 0x1FF),
       cdata=st.integers(0, 0xFFFFFFFF), segsz=st.integers(0, 9000),
       bflags=st.sampled_from([0, M_BCAST, M_MCAST, M_BCAST | M_MCAST]),
       plen=st.integers(0, 100000), ext=st.booleans())
def test_copy_pkthdr_copies_the_header_and_only_the_link_flags(rcvif, csum, cdata, segsz,
                                                                bflags, plen, ext):
    pool = MbufPool(nclusters=2, mclbytes=MCL)
    frm = pool.get_ext(bytearray(8), 0, 8, lambda a: None, None) if ext else pool.get()
    frm.rcvif, frm.csum_flags, frm.csum_data, frm.segsz = rcvif, csum, cdata, segsz
    frm.pkt_len = plen
    frm.flags |= bflags
    to = pool.get()
    copy_pkthdr(to, frm)
    assert (to.rcvif, to.csum_flags, to.csum_data, to.segsz, to.pkt_len) == \
        (rcvif, csum, cdata, segsz, plen)
    assert to.flags == M_PKTHDR | bflags            # never M_EXT: its storage is its own
    assert frm.flags & M_PKTHDR                     # neither changes hands
    pool.free(to)
    pool.free(frm)
    assert pool.in_use == 0 and pool.ext_in_use == 0
