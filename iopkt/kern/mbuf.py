"""mbufs: the stack's packet buffers, after NetBSD's sys/kern/uipc_mbuf.c.

An mbuf is a small header object pointing into storage. Storage is either a
*cluster* from a preallocated pool (2048 bytes by default, io-pkt's
`mclbytes`) or *external* storage owned by somebody else (the shim's
zero-copy mode) with a free callback that gives it back.

    m.buf[m.off : m.off + m.len]    the bytes this mbuf holds
    m.next                          next mbuf of the same packet (a chain)
    m.nextpkt                       next packet on a queue
    m.pkt_len / m.rcvif                   packet header, valid on the first mbuf
    m.csum_flags / m.csum_data / m.segsz  offload work still to do (below)

Every cluster starts with `headroom` bytes free in front, so a link header can
be prepended without a copy (M_PREPEND's leading space).

A TCP super-frame (up to 64 KB, from a TAP with offload on) is a chain: the
first 2 KB in an ordinary cluster, so every header is contiguous there, the
rest in one *jumbo* cluster (64 KB) from a second bounded pool, the idea of
FreeBSD's MJUMPAGESIZE/MJUM16BYTES zones. Jumbos are made only when a driver
that can receive super-frames asks for them (`enable_jumbo`).

Offload, with NetBSD's names and meaning on output (sys/mbuf.h): csum_flags
M_CSUM_TCPv4 or M_CSUM_UDPv4 (M_CSUM_TCPv6 / M_CSUM_UDPv6 for IPv6) means
the L4 checksum is still partial (its field holds the pseudo-header sum)
and csum_data says where it is (L4 offset from the IP header << 16 |
checksum offset in the L4 header); M_CSUM_TSOv4 (IPv4) or M_CSUM_TSOv6
(IPv6) means the packet is a TCP super-frame to be cut into segments of
`segsz` bytes of payload. Whoever cannot do that work in "hardware" does
it in software before the packet leaves (in_offload.py); an interface
says which it does in if_csum_flags_tx, one bit per family and protocol,
as NetBSD's ifconfig tcp4csum / tcp6csum words set them.

Ownership rule, as in BSD: whoever holds an mbuf pointer owns it and must
either pass it on (enqueue, hand to the next layer) or free it. Each function
below says what it consumes and what the caller still owns.

The pool never grows. When it is empty, `get` returns None and counts a
failure; the caller drops the packet. That is the only allocation policy a
router can afford.
"""

from __future__ import annotations

MCLBYTES = 2048         # default cluster size, io-pkt's mclbytes
MAX_LINKHDR = 64        # headroom kept in front of received data
DEFAULT_NMBCLUSTERS = 4096

# m.flags
M_PKTHDR = 0x0002       # first mbuf of a packet: pkt_len/rcvif are valid
M_EXT = 0x0001          # storage is external (not a pool cluster)
M_BCAST = 0x0100        # received as link-level broadcast
M_MCAST = 0x0200        # received as link-level multicast

# m.csum_flags (NetBSD's values)
M_CSUM_TCPv4 = 0x0001       # TCP checksum partial: complete it before the wire
M_CSUM_UDPv4 = 0x0002       # UDP checksum partial
M_CSUM_TCPv6 = 0x0010       # the same over IPv6
M_CSUM_UDPv6 = 0x0020
M_CSUM_IPv4 = 0x0040        # IPv4 header checksum to compute (never set here)
M_CSUM_TSOv4 = 0x0100       # TCP super-frame: segment into segsz-byte payloads
M_CSUM_TSOv6 = 0x0200       # the same for TCP over IPv6
# Not NetBSD's: the masks the code asks most ("is any L4 checksum partial?").
M_CSUM_TCP = M_CSUM_TCPv4 | M_CSUM_TCPv6
M_CSUM_UDP = M_CSUM_UDPv4 | M_CSUM_UDPv6
M_CSUM_L4 = M_CSUM_TCP | M_CSUM_UDP
M_CSUM_TSO = M_CSUM_TSOv4 | M_CSUM_TSOv6

MJUMBYTES = 65536           # a jumbo cluster: the rest of a 64 KB super-frame
DEFAULT_NMBJUMBO = 256
MAX_NMBJUMBO = 4096         # 256 MB
MAX_NMBCLUSTERS = 1 << 20   # 2 GB of 2 KB clusters; a second to build per 150,000
MBUF_OVERHEAD = 1024        # Python bytes per cluster besides its data: the
                            # Mbuf, its views and its external-storage twin


def pool_bytes(nclusters: int, mclbytes: int = MCLBYTES, nmbjumbo: int = 0) -> int:
    """About the memory an MbufPool of this size takes once every cluster
    (and every jumbo, if made) exists; checked against free memory before
    a pool is built, as allocating it is what would fail."""
    return nclusters * (mclbytes + MBUF_OVERHEAD) + nmbjumbo * (MJUMBYTES + MBUF_OVERHEAD)

# m.type
MT_FREE = 0
MT_DATA = 1
MT_HEADER = 2


class Mbuf:
    """One buffer header. Never construct directly: use MbufPool.get()."""

    __slots__ = (
        "next", "nextpkt", "buf", "view", "off", "len", "flags", "type",
        "pkt_len", "rcvif", "csum_flags", "csum_data", "segsz", "pool", "cluster",
        "rxbuf", "ext_free", "ext_arg", "size", "zone",
    )

    def __init__(self, pool: "MbufPool", cluster: bytearray | None, zone: list | None = None):
        self.pool = pool
        self.zone = zone                # the free list this cluster goes back to
        self.cluster = cluster
        self.buf = cluster
        self.view = memoryview(cluster) if cluster is not None else None
        self.size = len(cluster) if cluster is not None else 0
        # The receive buffer: the whole cluster after the headroom. Built
        # once so the receive path allocates nothing.
        self.rxbuf = self.view[pool.headroom:] if cluster is not None else None
        self.next = None
        self.nextpkt = None
        self.off = 0
        self.len = 0
        self.flags = 0
        self.type = MT_FREE
        self.pkt_len = 0
        self.rcvif = None
        self.csum_flags = 0
        self.csum_data = 0
        self.segsz = 0
        self.ext_free = None
        self.ext_arg = None

    # -- views ---------------------------------------------------------
    def data(self) -> memoryview:
        """A view of this mbuf's bytes (not the chain's). Allocates a view."""
        return self.view[self.off:self.off + self.len]

    def leadingspace(self) -> int:
        return self.off

    def trailingspace(self) -> int:
        return self.size - self.off - self.len

    def chain_len(self) -> int:
        n, m = 0, self
        while m is not None:
            n += m.len
            m = m.next
        return n

    def tobytes(self) -> bytes:
        """The whole chain's data as bytes (a copy: tests and slow paths)."""
        parts = []
        m = self
        while m is not None:
            parts.append(m.view[m.off:m.off + m.len])
            m = m.next
        return b"".join(parts)

    def __repr__(self) -> str:
        return (f"<Mbuf off={self.off} len={self.len} pkt_len={self.pkt_len} "
                f"flags={self.flags:#x}{' chain' if self.next else ''}>")


class MbufPool:
    """A bounded, preallocated set of cluster mbufs plus a stock of bare
    headers for external storage.

    Counters (what `netstat -m` shows): total clusters, in use, high-water
    mark, allocation failures, and the same for external headers.
    """

    def __init__(self, nclusters: int = DEFAULT_NMBCLUSTERS,
                 mclbytes: int = MCLBYTES, headroom: int = MAX_LINKHDR,
                 nexthdrs: int | None = None, nmbjumbo: int = DEFAULT_NMBJUMBO):
        if mclbytes < 256 or mclbytes > 65536:
            raise ValueError(f"mclbytes={mclbytes}: must be 256..65536")
        if headroom >= mclbytes // 2:
            raise ValueError(f"headroom={headroom}: must be below half of mclbytes "
                             f"({mclbytes // 2})")
        if not 1 <= nclusters <= MAX_NMBCLUSTERS:
            raise ValueError(f"nmbclusters={nclusters}: must be 1..{MAX_NMBCLUSTERS}")
        if not 0 <= nmbjumbo <= MAX_NMBJUMBO:
            raise ValueError(f"nmbjumbo={nmbjumbo}: must be 0..{MAX_NMBJUMBO} "
                             f"({MJUMBYTES // 1024} KB each)")
        self.nmbjumbo = nmbjumbo        # jumbo clusters to make when first asked
        self.mclbytes = mclbytes
        self.headroom = headroom
        self.nclusters = nclusters
        self._free: list[Mbuf] = []
        self._free.extend(Mbuf(self, bytearray(mclbytes), self._free) for _ in range(nclusters))
        self.nexthdrs = nclusters if nexthdrs is None else nexthdrs
        self._free_ext = [Mbuf(self, None) for _ in range(self.nexthdrs)]
        self.drops = 0          # get() failed: pool empty
        self._lowat = nclusters  # fewest ever free: hiwat = total - lowat
        self.ext_drops = 0
        self.ext_hiwat = 0
        self.njumbo = 0                 # jumbo clusters made so far (enable_jumbo)
        self._free_jumbo: list[Mbuf] = []
        self._jlowat = 0
        self.jumbo_drops = 0
        for m in self._free:
            self._reset(m)

    def enable_jumbo(self, count: int | None = None) -> None:
        """Make the jumbo clusters (`count`, default nmbjumbo), once: a
        driver that can receive frames longer than a cluster calls this
        when it attaches. Later calls change nothing (the pool never grows
        after that)."""
        count = self.nmbjumbo if count is None else count
        if self.njumbo or count <= 0:
            return
        zone = self._free_jumbo
        zone.extend(Mbuf(self, bytearray(MJUMBYTES), zone) for _ in range(count))
        self.njumbo = self._jlowat = count

    def _reset(self, m: Mbuf) -> None:
        m.off = self.headroom
        m.len = 0
        m.flags = M_PKTHDR
        m.type = MT_DATA
        m.pkt_len = 0
        m.csum_flags = 0
        m.csum_data = 0
        m.segsz = 0

    # -- counters --------------------------------------------------------
    @property
    def hiwat(self) -> int:
        """Most clusters ever out at once."""
        return self.nclusters - self._lowat

    @property
    def in_use(self) -> int:
        return self.nclusters - len(self._free)

    @property
    def ext_in_use(self) -> int:
        return self.nexthdrs - len(self._free_ext)

    @property
    def jumbo_in_use(self) -> int:
        return self.njumbo - len(self._free_jumbo)

    def stats(self) -> dict:
        return {
            "mclbytes": self.mclbytes, "headroom": self.headroom,
            "clusters_total": self.nclusters, "clusters_in_use": self.in_use,
            "clusters_free": len(self._free), "clusters_hiwat": self.hiwat,
            "cluster_drops": self.drops,
            "ext_total": self.nexthdrs, "ext_in_use": self.ext_in_use,
            "ext_hiwat": self.ext_hiwat, "ext_drops": self.ext_drops,
            "jumbo_bytes": MJUMBYTES, "jumbo_total": self.njumbo,
            "jumbo_in_use": self.jumbo_in_use, "jumbo_hiwat": self.njumbo - self._jlowat,
            "jumbo_drops": self.jumbo_drops,
        }

    # -- allocation --------------------------------------------------------
    def get(self) -> Mbuf | None:
        """m_getcl(M_PKTHDR): a packet-header mbuf with a cluster, data
        starting after the headroom, len 0. Returns None (and counts a drop)
        when the pool is empty. The caller owns the result. (free() leaves
        every field ready, so getting is one pop.) Safe to call from a
        driver thread as well as the stack thread: list.pop is atomic."""
        free = self._free
        try:
            m = free.pop()
        except IndexError:
            self.drops += 1
            return None
        if len(free) < self._lowat:
            self._lowat = len(free)
        return m

    def get_jumbo(self) -> Mbuf | None:
        """m_getjcl: a jumbo-cluster mbuf to continue a chain (no packet
        header, data from offset 0, len 0), or None (counted) when none is
        free. The caller owns the result."""
        free = self._free_jumbo
        try:
            m = free.pop()
        except IndexError:
            self.jumbo_drops += 1
            return None
        if len(free) < self._jlowat:
            self._jlowat = len(free)
        m.off = 0
        m.flags = 0
        return m

    def get_ext(self, buf, off: int, length: int, free_fn, arg) -> Mbuf | None:
        """MEXTADD: a packet-header mbuf over storage owned elsewhere.
        `buf` must be a bytearray (the input path uses its startswith);
        anything else raises TypeError.
        When the mbuf is freed, `free_fn(arg)` is called exactly once: that
        is how the owner gets its buffer back. Returns None when no header
        is free (the caller still owns `buf`)."""
        if not isinstance(buf, bytearray):
            raise TypeError(f"get_ext: storage must be a bytearray, not {type(buf).__name__}")
        free = self._free_ext
        try:
            m = free.pop()
        except IndexError:
            self.ext_drops += 1
            return None
        out = self.nexthdrs - len(free)
        if out > self.ext_hiwat:
            self.ext_hiwat = out
        m.buf = buf
        m.view = memoryview(buf)
        m.size = len(m.view)
        m.off = off
        m.len = length
        m.flags = M_PKTHDR | M_EXT
        m.type = MT_DATA
        m.pkt_len = length
        m.rcvif = None
        m.csum_flags = 0
        m.csum_data = 0
        m.segsz = 0
        m.ext_free = free_fn
        m.ext_arg = arg
        return m

    # -- release -----------------------------------------------------------
    def free(self, m: Mbuf) -> Mbuf | None:
        """m_free: release one mbuf, return its successor in the chain
        (which the caller now owns). Resets the header for the next get()."""
        n = m.next
        m.next = None
        m.nextpkt = None
        m.rcvif = None
        m.pkt_len = 0
        m.len = 0
        m.csum_flags = 0            # csum_data and segsz mean nothing without it
        if m.flags & M_EXT:
            fn, arg = m.ext_free, m.ext_arg
            m.ext_free = m.ext_arg = None
            m.buf = m.view = None
            m.flags = 0
            m.type = MT_FREE
            self._free_ext.append(m)
            fn(arg)
        else:
            m.off = self.headroom
            m.flags = M_PKTHDR
            m.zone.append(m)            # its own pool: ordinary or jumbo
        return n

    def freem(self, m: Mbuf | None) -> None:
        """m_freem: release a whole chain. Consumes `m`."""
        free = self.free
        while m is not None:
            m = free(m)

    # -- building packets ------------------------------------------------
    def from_bytes(self, data, headroom: int | None = None) -> Mbuf | None:
        """Copy `data` into a new packet (a chain of clusters if it does not
        fit one). Slow path: tests, ICMP errors, fragments. Returns None,
        freeing any partial chain, if the pool runs dry."""
        mv = memoryview(data)
        total = len(mv)
        head = self.get()
        if head is None:
            return None
        if headroom is not None:
            head.off = headroom
        m, pos = head, 0
        while True:
            n = min(total - pos, m.size - m.off)
            m.view[m.off:m.off + n] = mv[pos:pos + n]
            m.len = n
            pos += n
            if pos >= total:
                break
            nm = self.get()
            if nm is None:
                self.freem(head)
                return None
            nm.flags &= ~M_PKTHDR
            nm.off = 0
            m.next = nm
            m = nm
        head.pkt_len = total
        return head

    # -- the usual operations ----------------------------------------------
    def prepend(self, m: Mbuf, n: int) -> Mbuf | None:
        """M_PREPEND: make room for `n` bytes in front of the packet and
        return the (possibly new) first mbuf. Uses the leading space when
        there is enough (the normal case: no copy); otherwise links a new
        mbuf in front. Consumes `m`; on failure (the pool is empty, or `n`
        is more than a cluster holds) frees the chain and returns None."""
        if m.off >= n:
            m.off -= n
            m.len += n
            m.pkt_len += n
            return m
        nm = self.get() if n <= self.mclbytes else None
        if nm is None:
            self.freem(m)
            return None
        nm.off = nm.size - n
        nm.len = n
        copy_pkthdr(nm, m)
        nm.pkt_len = m.pkt_len + n
        m.flags &= ~M_PKTHDR
        nm.next = m
        return nm

    def adj(self, m: Mbuf, n: int) -> None:
        """m_adj: trim `n` bytes from the head (n > 0) or the tail (n < 0)
        of the packet. Mbufs emptied stay in the chain with len 0. The
        caller still owns `m`."""
        if n >= 0:
            m.pkt_len -= min(n, m.pkt_len)
            x = m
            while x is not None and n > 0:
                k = min(n, x.len)
                x.off += k
                x.len -= k
                n -= k
                x = x.next
        else:
            keep = max(0, m.chain_len() + n)
            m.pkt_len = keep
            x = m
            while x is not None:
                if x.len >= keep:
                    x.len = keep
                    keep = 0
                else:
                    keep -= x.len
                x = x.next

    def pullup(self, m: Mbuf, n: int) -> Mbuf | None:
        """m_pullup: make the first `n` bytes of the packet contiguous in
        the first mbuf. Consumes `m`; returns the new head, or None (chain
        freed) if the packet is shorter than `n`, if `n` bytes fit neither
        the first mbuf's storage nor a cluster, or if the pool is empty."""
        if m.len >= n:
            return m
        # The bytes go where the first mbuf's are, if it is ours and has
        # room behind them; else into a new cluster in front of it.
        here = not m.flags & M_EXT and m.off + n <= m.size
        if m.pkt_len < n or (not here and n > self.mclbytes):
            self.freem(m)
            return None
        if not here:
            nm = self.get()
            if nm is None:
                self.freem(m)
                return None
            copy_pkthdr(nm, m)
            nm.off = min(nm.off, nm.size - n)
            nm.len = 0
            m.flags &= ~M_PKTHDR
            nm.next = m
            m = nm
        x = m.next
        while m.len < n and x is not None:
            k = min(n - m.len, x.len)
            m.view[m.off + m.len:m.off + m.len + k] = x.view[x.off:x.off + k]
            m.len += k
            x.off += k
            x.len -= k
            if x.len == 0:
                x = self.free(x)
                m.next = x
        return m

    def copydata(self, m: Mbuf, off: int, length: int, out=None):
        """m_copydata: copy `length` bytes starting `off` bytes into the
        packet into `out` (a writable buffer) or a new bytearray. The caller
        still owns `m`. Raises ValueError if the chain is too short."""
        if out is None:
            out = bytearray(length)
        dst = memoryview(out)
        pos = 0
        x = m
        while x is not None and off >= x.len:
            off -= x.len
            x = x.next
        while pos < length:
            if x is None:
                raise ValueError("copydata: chain shorter than requested")
            k = min(length - pos, x.len - off)
            dst[pos:pos + k] = x.view[x.off + off:x.off + off + k]
            pos += k
            off = 0
            x = x.next
        return out

    @staticmethod
    def cat(m: Mbuf, n: Mbuf) -> None:
        """m_cat: append chain `n` to chain `m` (no copy). Consumes `n`;
        its packet-header fields are dropped and m.pkt_len grows by its
        length. The caller still owns `m`."""
        m.pkt_len += n.chain_len()
        x = m
        while x.next is not None:
            x = x.next
        n.flags &= ~M_PKTHDR
        x.next = n


def copy_pkthdr(to: Mbuf, frm: Mbuf) -> None:
    """M_COPY_PKTHDR: give `to` the packet header of `frm` (length,
    interface, offload fields, link-level broadcast flags). Neither mbuf
    changes hands."""
    to.pkt_len = frm.pkt_len
    to.rcvif = frm.rcvif
    to.csum_flags = frm.csum_flags
    to.csum_data = frm.csum_data
    to.segsz = frm.segsz
    to.flags = M_PKTHDR | (frm.flags & (M_BCAST | M_MCAST))
