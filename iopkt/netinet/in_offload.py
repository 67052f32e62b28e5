"""Offload done in software, after NetBSD's netinet/in_offload.c.

A packet may carry work for the "hardware" (mbuf.py): a partial L4
checksum (M_CSUM_TCPv4 / M_CSUM_UDPv4, M_CSUM_TCPv6 / M_CSUM_UDPv6) or a TCP
super-frame to cut into segments (M_CSUM_TSOv4, M_CSUM_TSOv6). When it
must leave through an interface that cannot do that work (the shim's enN,
which never has offload, as io-net never had; a native interface with
-tso4, -tso6 or -tcp4csum; a write the kernel refused), the IP layer does
it here first:

  tcp_segment       cut a super-frame into segments as Linux's
                    tcp_gso_segment does: per segment the IPv4 total length,
                    id = id0 + i and header checksum, or the IPv6 payload
                    length; TCP seq = seq0 + i *
                    segsz; FIN and PSH only on the last segment, CWR only
                    on the first; each TCP checksum over the segment's own
                    pseudo-header (complete, or left partial for an
                    interface that completes checksums itself)
  in_undefer_cksum  complete a partial TCP or UDP checksum in place

Both work on packets whose data starts at the IP header (the IP layer's
view) and may be chains (a super-frame is a cluster plus a jumbo).
"""

from __future__ import annotations

import struct

from iopkt.kern.mbuf import M_CSUM_L4, M_CSUM_TSO, M_PKTHDR, M_CSUM_TCPv4, M_CSUM_TCPv6
from iopkt.netinet.cksum import cksum_bulk, in_cksum

IPPROTO_TCP = 6
TH_FIN = 0x01
TH_PSH = 0x08
TH_CWR = 0x80
TCP_CSUM_OFF = 16
ETHER_HDR_LEN = 14
_WORDS = {4: struct.Struct("!4H"), 16: struct.Struct("!16H")}     # addresses as halfwords


def m_cksum(m, off: int, length: int) -> int:
    """One's-complement sum of `length` bytes of the chain `m` from `off`,
    as cksum_bulk returns it (modulo 0xFFFF). A piece of odd length shifts
    the next one into the other byte lane, which the multiplication by 256
    accounts for (256 * 256 == 1 modulo 0xFFFF). The caller still owns
    `m`. Raises ValueError when the chain is shorter than asked."""
    x = m
    while x is not None and off >= x.len:
        off -= x.len
        x = x.next
    s = 0
    total = length
    while length > 0:
        if x is None:
            raise ValueError("m_cksum: chain shorter than requested")
        k = min(length, x.len - off)
        a = x.off + off
        v = int.from_bytes(x.view[a:a + k], "big")
        s = ((s << 8) + v if k & 1 else s + v) % 0xFFFF
        length -= k
        off = 0
        x = x.next
    if total & 1:                       # pad the last byte to a word
        s = (s << 8) % 0xFFFF
    return s


def in_undefer_cksum(m, off: int = 0) -> None:
    """Complete the partial TCP or UDP checksum of `m` in place: sum from
    the L4 header to the end (the field holds the pseudo-header sum) and
    store the complement; a result of 0 is written as 0xFFFF, as Linux's
    skb_checksum_help does (for UDP, 0 would mean "no checksum"). `off`:
    bytes in front of the IP header (14 while a driver still sees the
    Ethernet header). Clears the partial flags. The caller still owns `m`."""
    cd = m.csum_data
    l4 = off + (cd >> 16)
    at = l4 + (cd & 0xFFFF)
    c = 0xFFFF - m_cksum(m, l4, m.pkt_len - l4)     # never 0: the sum is < 0xFFFF
    if at + 2 <= m.len:
        b = m.buf
        b[m.off + at] = c >> 8
        b[m.off + at + 1] = c & 0xFF
    else:                               # the field lies in a later mbuf
        _store16(m, at, c)
    m.csum_flags &= ~M_CSUM_L4


def _store16(m, off: int, v: int) -> None:
    for byte in (v >> 8, v & 0xFF):
        x, o = m, off
        while o >= x.len:
            o -= x.len
            x = x.next
        x.buf[x.off + o] = byte
        off += 1


def tso_header_len(m) -> int:
    """IP + TCP header length of a super-frame (data at its IP header, IPv4
    or IPv6), or 0 if it is not a TCP packet whose headers sit in the first
    mbuf (an IPv4 one whose IHL is below 5, or an IPv6 one with extension
    headers, neither: Linux's GSO never makes one)."""
    b, o = m.buf, m.off
    if b[o] >> 4 == 6:
        iphl = 40
        if b[o + 6] != IPPROTO_TCP or m.len < 60:
            return 0
    elif b[o + 9] != IPPROTO_TCP or m.len < ((b[o] & 0x0F) << 2) + 20:
        return 0
    else:
        iphl = (b[o] & 0x0F) << 2
        if iphl < 20:               # IHL < 5, as Linux's inet_gso_segment refuses
            return 0
    hl = iphl + ((b[o + iphl + 12] >> 4) << 2)
    return hl if hl - iphl >= 20 and hl <= m.len and hl <= m.pkt_len else 0


def tso_segments(m, hdrlen: int) -> int:
    """How many segments super-frame `m` makes (at least one)."""
    seg = m.segsz
    return max(1, -(-(m.pkt_len - hdrlen) // seg))


def tso_wire(m) -> tuple[int, int]:
    """(frames, bytes) that frame `m` (data at its Ethernet header) puts
    on a real wire: a super-frame becomes its segments, each with its own
    copy of the headers. For link-speed emulation."""
    if not m.csum_flags & M_CSUM_TSO:
        return 1, m.pkt_len
    m.off += ETHER_HDR_LEN
    m.len -= ETHER_HDR_LEN
    m.pkt_len -= ETHER_HDR_LEN
    try:
        hl = tso_header_len(m) or 40
        n = tso_segments(m, hl)
        wire = m.pkt_len + ETHER_HDR_LEN + (n - 1) * (hl + ETHER_HDR_LEN)
    finally:
        m.off -= ETHER_HDR_LEN
        m.len += ETHER_HDR_LEN
        m.pkt_len += ETHER_HDR_LEN
    return n, wire


def tcp_segment(pool, m, hdrlen: int, partial: bool) -> list | None:
    """Cut the TCP super-frame `m` (data at its IP header, IPv4 or IPv6,
    csum_flags with M_CSUM_TSOv4 or M_CSUM_TSOv6, segsz the payload per
    segment, headers `hdrlen` bytes in the first mbuf: see tso_header_len)
    into ordinary packets, each in a new cluster (a chain if one cluster
    cannot hold it), as Linux's tcp_gso_segment and ipv6_gso_segment do:
    IPv4 segments get their own total length, id and header checksum;
    IPv6 ones their payload length (no header checksum).

    `partial`: leave each TCP checksum partial (the pseudo-header sum, with
    M_CSUM_TCPv4 or M_CSUM_TCPv6 set) for an interface that completes checksums; otherwise
    compute it whole.

    Consumes `m`. Returns the segments in order (the caller owns them), or
    None when the pool ran dry (everything made so far is freed)."""
    b, o = m.buf, m.off
    v6 = b[o] >> 4 == 6
    iphl = 40 if v6 else (b[o] & 0x0F) << 2
    thl = hdrlen - iphl
    hdr = bytes(b[o:o + hdrlen])                # the template every segment starts from
    id0 = (hdr[4] << 8) | hdr[5]
    seq0 = int.from_bytes(hdr[iphl + 4:iphl + 8], "big")
    flags0 = hdr[iphl + 13]
    # The pseudo-header without its length: source, destination, protocol
    # (addresses at 12..20 in IPv4, 8..40 in IPv6).
    a0, a1 = (8, 40) if v6 else (12, 20)
    ph = sum(_WORDS[(a1 - a0) >> 1].unpack_from(hdr, a0)) + IPPROTO_TCP
    mss = m.segsz
    payload = m.pkt_len - hdrlen
    nseg = max(1, -(-payload // mss))
    cdata = (iphl << 16) | TCP_CSUM_OFF
    cflag = M_CSUM_TCPv6 if v6 else M_CSUM_TCPv4
    rcvif = m.rcvif
    segs = []
    x, xo = m, hdrlen                           # where the payload is read from
    for i in range(nseg):
        n = min(mss, payload - i * mss)
        need = hdrlen + n
        s = pool.get()
        if s is None:
            for f in segs:
                pool.freem(f)
            pool.freem(m)
            return None
        aside = need > s.size - s.off
        if aside:
            sb, so = bytearray(need), 0         # jumbo MTU: built aside, copied below
            sv = memoryview(sb)
        else:
            sb, so, sv = s.buf, s.off, s.view   # built in place
        sv[so:so + hdrlen] = hdr
        p, left = so + hdrlen, n
        while left:
            while xo >= x.len:
                x = x.next
                xo = 0
            k = min(left, x.len - xo)
            a = x.off + xo
            sv[p:p + k] = x.view[a:a + k]
            p += k
            xo += k
            left -= k
        if v6:                                  # IPv6: payload length
            sb[so + 4] = (need - 40) >> 8
            sb[so + 5] = (need - 40) & 0xFF
        else:                                   # IPv4: total length, id, header checksum
            sb[so + 2] = need >> 8
            sb[so + 3] = need & 0xFF
            ident = (id0 + i) & 0xFFFF
            sb[so + 4] = ident >> 8
            sb[so + 5] = ident & 0xFF
            sb[so + 10] = sb[so + 11] = 0
            c = in_cksum(sb, so, iphl)
            sb[so + 10] = c >> 8
            sb[so + 11] = c & 0xFF
        # TCP: sequence number, flags, checksum.
        t = so + iphl
        sb[t + 4:t + 8] = ((seq0 + i * mss) & 0xFFFFFFFF).to_bytes(4, "big")
        fl = flags0
        if i:
            fl &= ~TH_CWR
        if i != nseg - 1:
            fl &= ~(TH_FIN | TH_PSH)
        sb[t + 13] = fl
        s0 = (ph + thl + n) % 0xFFFF
        if partial:
            c = s0 or 0xFFFF                    # the pseudo-header sum, folded
        else:
            sb[t + 16] = sb[t + 17] = 0
            # A sum of 0 (mod 0xFFFF) is written 0, as Linux's csum_fold does.
            c = (0xFFFF - (s0 + cksum_bulk(sv[t:t + thl + n])) % 0xFFFF) % 0xFFFF
        sb[t + 16] = c >> 8
        sb[t + 17] = c & 0xFF
        if aside:                               # into a chain of clusters now
            pool.free(s)
            s = pool.from_bytes(sb)
            if s is None:
                for f in segs:
                    pool.freem(f)
                pool.freem(m)
                return None
        else:
            s.len = need
        s.pkt_len = need
        s.rcvif = rcvif
        s.flags = M_PKTHDR
        if partial:
            s.csum_flags = cflag
            s.csum_data = cdata
        segs.append(s)
    pool.freem(m)
    return segs
