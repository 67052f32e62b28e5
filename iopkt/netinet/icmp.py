"""ICMP (RFC 792, RFC 1812 4.3): echo replies and error messages.

Errors quote the offending IP header plus 8 bytes of its payload (BSD's
default), come from the address of the interface the packet arrived on, and
are rate limited by a token bucket (BSD's icmplim), so a flood of bad
packets cannot turn the router into a flood of ICMP.

A TCP super-frame gets one error, counted once by the rate limit, quoting
its header as its first segment would carry it (that segment's total
length and header checksum): that is the packet the sender's kernel knows.
A partial checksum is completed before it is quoted.
"""

from __future__ import annotations

from iopkt.kern.mbuf import M_BCAST, M_MCAST, M_CSUM_TCPv4, M_CSUM_TSOv4, M_CSUM_UDPv4
from iopkt.kern.ratecheck import TokenBucket
from iopkt.netinet.cksum import cksum_update16, in_cksum
from iopkt.netinet.in_offload import in_undefer_cksum, m_cksum, tso_header_len
from iopkt.netinet.ipv4 import IP_HDR_LEN, IP_OFFMASK, IPDEFTTL, IPPROTO_ICMP, build_header

ICMP_ECHOREPLY = 0
ICMP_UNREACH = 3
ICMP_UNREACH_NET = 0
ICMP_UNREACH_HOST = 1
ICMP_UNREACH_PROTOCOL = 2
ICMP_UNREACH_PORT = 3
ICMP_UNREACH_NEEDFRAG = 4
ICMP_ECHO = 8
ICMP_TIMXCEED = 11
ICMP_TIMXCEED_INTRANS = 0
ICMP_PARAMPROB = 12
ERROR_TYPES = (3, 4, 5, 11, 12)
ICMP_MINLEN = 8
ICMP_QUOTE = 8              # payload bytes quoted after the IP header

ICMPLIM = 100               # errors per second
ICMPLIM_BURST = 50

TYPE_NAMES = {0: "echoreply", 3: "unreach", 4: "sourcequench", 5: "redirect",
              8: "echo", 11: "timxceed", 12: "paramprob"}


class Icmp:
    def __init__(self, stack, rate: float = ICMPLIM, burst: int = ICMPLIM_BURST):
        self.stack = stack
        self.ratelim = TokenBucket(stack.clock, rate, burst)
        self.stats = dict.fromkeys((
            "error", "oldicmp", "ratelimited", "badsum", "tooshort",
            "reflect", "nobufs"), 0)
        self.inhist: dict[str, int] = {}
        self.outhist: dict[str, int] = {}

    def _count(self, hist: dict, t: int, code: int) -> None:
        k = f"{TYPE_NAMES.get(t, t)}/{code}"
        hist[k] = hist.get(k, 0) + 1

    # -- input -----------------------------------------------------------
    def input(self, m, hlen: int) -> None:
        """icmp_input for a packet to one of our addresses. Consumes `m`."""
        pool = self.stack.pool
        tlen = m.pkt_len
        if tlen - hlen < ICMP_MINLEN:
            self.stats["tooshort"] += 1
            pool.freem(m)
            return
        if m.next is None:
            bad = in_cksum(m.buf, m.off + hlen, tlen - hlen) != 0
        else:
            # A chain (a request longer than a cluster, or a driver's
            # pieces) is answered in place like one mbuf, whatever its
            # length (RFC 1812 4.3.3.6): only the headers are rewritten,
            # so only they must sit in the first mbuf.
            m = pool.pullup(m, hlen + ICMP_MINLEN)
            if m is None:                   # the pool ran dry; m is freed
                self.stats["nobufs"] += 1
                return
            bad = m_cksum(m, hlen, tlen - hlen) != 0     # 0 modulo 0xFFFF
        buf, o = m.buf, m.off
        io = o + hlen
        if bad:
            self.stats["badsum"] += 1
            pool.freem(m)
            return
        t, code = buf[io], buf[io + 1]
        self._count(self.inhist, t, code)
        if t != ICMP_ECHO:
            pool.freem(m)
            return
        # Reflect in place: type 8 -> 0, swap addresses, fresh TTL.
        old = (buf[io] << 8) | buf[io + 1]
        buf[io] = ICMP_ECHOREPLY
        c = cksum_update16((buf[io + 2] << 8) | buf[io + 3], old, ICMP_ECHOREPLY << 8 | code)
        buf[io + 2], buf[io + 3] = c >> 8, c & 0xFF
        src = bytes(buf[o + 12:o + 16])
        buf[o + 12:o + 16] = buf[o + 16:o + 20]
        buf[o + 16:o + 20] = src
        buf[o + 8] = IPDEFTTL
        buf[o + 10] = buf[o + 11] = 0
        c = in_cksum(buf, o, hlen)
        buf[o + 10], buf[o + 11] = c >> 8, c & 0xFF
        m.flags &= ~(M_BCAST | M_MCAST)
        self.stats["reflect"] += 1
        self._count(self.outhist, ICMP_ECHOREPLY, code)
        self.stack.ip.output(m)

    # -- errors ----------------------------------------------------------
    def error(self, m, t: int, code: int, mtu: int = 0) -> None:
        """icmp_error: send an ICMP error about the IP packet in `m` (data
        at its IP header, as received) back to its source. Consumes `m`.
        Silent, as RFC 1812 4.3.2.7 requires, for errors about errors,
        non-initial fragments, and link or IP broadcasts."""
        stack = self.stack
        pool = stack.pool
        try:
            hdr = pool.copydata(m, 0, min(m.pkt_len, IP_HDR_LEN))
            if len(hdr) < IP_HDR_LEN:
                return
            hlen = (hdr[0] & 0x0F) << 2
            src = int.from_bytes(hdr[12:16], "big")
            dst = int.from_bytes(hdr[16:20], "big")
            frag = ((hdr[6] << 8) | hdr[7]) & IP_OFFMASK
            if hdr[9] == IPPROTO_ICMP and m.pkt_len >= hlen + 1:
                inner = pool.copydata(m, hlen, 1)[0]
                if inner in ERROR_TYPES:
                    self.stats["oldicmp"] += 1
                    return
            if (frag or m.flags & (M_BCAST | M_MCAST) or src == 0
                    or src >= 0xE0000000 or (src >> 24) == 127
                    or src in stack.ip.bcast_addrs or dst >= 0xE0000000
                    or src in stack.ip.local_addrs):    # never an error to ourselves
                return
            if not self.ratelim.allow():
                self.stats["ratelimited"] += 1
                return
            ifp = m.rcvif
            me = _source_addr(stack, ifp, src)
            if me is None:
                return
            cf = m.csum_flags
            qlen = min(m.pkt_len, hlen + ICMP_QUOTE)
            cd = m.csum_data
            if (cf & (M_CSUM_TCPv4 | M_CSUM_UDPv4) and not cf & M_CSUM_TSOv4
                    and (cd >> 16) + (cd & 0xFFFF) + 2 <= qlen):
                in_undefer_cksum(m)         # the quote holds the checksum: make it whole
            quote = pool.copydata(m, 0, qlen)
            if cf & M_CSUM_TSOv4:
                _first_segment(quote, m, hlen)
        finally:
            pool.freem(m)
        n = pool.get()
        if n is None:
            self.stats["nobufs"] += 1
            return
        tlen = IP_HDR_LEN + ICMP_MINLEN + qlen
        b, o = n.buf, n.off
        build_header(b, o, tlen, stack.ip.next_ident(), 0, IPDEFTTL,
                     IPPROTO_ICMP, me, src)
        io = o + IP_HDR_LEN
        b[io:io + 8] = bytes((t, code, 0, 0, 0, 0, (mtu >> 8) & 0xFF, mtu & 0xFF))
        b[io + 8:io + 8 + qlen] = quote
        c = in_cksum(b, io, ICMP_MINLEN + qlen)
        b[io + 2], b[io + 3] = c >> 8, c & 0xFF
        n.len = n.pkt_len = tlen
        self.stats["error"] += 1
        self._count(self.outhist, t, code)
        stack.ip.output(n)

    def error_unreach_host(self, m) -> None:
        self.error(m, ICMP_UNREACH, ICMP_UNREACH_HOST)


def _first_segment(quote: bytearray, m, hlen: int) -> None:
    """Make the quoted IP header of super-frame `m` the one its first
    segment carries: its total length, and the header checksum to match."""
    hl = tso_header_len(m)
    if not hl:
        return
    tlen = hl + min(m.segsz, m.pkt_len - hl)
    quote[2], quote[3] = tlen >> 8, tlen & 0xFF
    quote[10] = quote[11] = 0
    c = in_cksum(quote, 0, hlen)
    quote[10], quote[11] = c >> 8, c & 0xFF


def _source_addr(stack, ifp, dst: int) -> int | None:
    """The source of an ICMP error: the address of the interface the packet
    came in on, preferring one on the same subnet as its sender."""
    if ifp is not None and ifp.in_addrs:
        for ia in ifp.in_addrs:
            if dst & ia.mask == ia.net:
                return ia.addr
        return ifp.in_addrs[0].addr
    rt = stack.ip.routes.match(dst)
    if rt is not None and rt.ifp.in_addrs:
        return rt.ifp.in_addrs[0].addr
    return None
