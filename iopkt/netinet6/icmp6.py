"""ICMPv6 (RFC 4443; BSD's netinet6/icmp6.c): echo replies, error
messages, and Neighbour Discovery's messages passed to nd6.py.

Errors follow RFC 4443 §2.4: they quote as much of the offending packet as
fits in 1280 bytes, come from an address of the interface the packet
arrived on, are never sent about an ICMPv6 error or a Redirect, nor to a
multicast or unspecified source, nor about a packet to a multicast address
or sent as link-layer multicast (Packet Too Big and Parameter Problem
code 2 excepted, §2.4 (e.3)), and are rate limited by a token bucket.
"""

from __future__ import annotations

from iopkt.kern.mbuf import M_BCAST, M_CSUM_L4, M_MCAST
from iopkt.kern.ratecheck import TokenBucket
from iopkt.netinet.in_offload import in_undefer_cksum, m_cksum
from iopkt.netinet6.in6 import (
    IP6_HDR_LEN,
    IPPROTO_ICMPV6,
    IPV6_DEFHLIM,
    IPV6_MMTU,
    is_linklocal,
    pseudo_sum,
)
from iopkt.netinet6.ip6 import build_header6, upper_layer

ICMP6_DST_UNREACH = 1
ICMP6_PACKET_TOO_BIG = 2
ICMP6_TIME_EXCEEDED = 3
ICMP6_PARAM_PROB = 4
ICMP6_ECHO_REQUEST = 128
ICMP6_ECHO_REPLY = 129
ND_ROUTER_SOLICIT = 133
ND_ROUTER_ADVERT = 134
ND_NEIGHBOR_SOLICIT = 135
ND_NEIGHBOR_ADVERT = 136
ND_REDIRECT = 137
ICMP6_HDR_LEN = 8

ICMP6LIM = 100              # errors per second (BSD's icmp6errppslim)
ICMP6LIM_BURST = 50

TYPE_NAMES = {1: "unreach", 2: "toobig", 3: "timxceed", 4: "paramprob",
              128: "echo", 129: "echoreply", 133: "routersol", 134: "routeradv",
              135: "neighborsol", 136: "neighboradv", 137: "redirect"}


def icmp6_cksum(m, off: int, src: int, dst: int) -> int:
    """The checksum to store in the ICMPv6 message at `off` (its field
    zeroed first): over the IPv6 pseudo-header and the message."""
    length = m.pkt_len - off
    s = pseudo_sum(src, dst, length, IPPROTO_ICMPV6) + m_cksum(m, off, length)
    return 0xFFFF - s % 0xFFFF


def icmp6_packet(pool, src: int, dst: int, hlim: int, msg: bytes):
    """A whole IPv6 + ICMPv6 packet (checksum filled in) in a new mbuf,
    or None when the pool is dry. `msg`: the ICMPv6 message, its checksum
    field zero."""
    m = pool.from_bytes(bytes(IP6_HDR_LEN) + msg)
    if m is None:
        return None
    build_header6(m.buf, m.off, len(msg), IPPROTO_ICMPV6, hlim, src, dst)
    c = icmp6_cksum(m, IP6_HDR_LEN, src, dst)
    _store16(m, IP6_HDR_LEN + 2, c)
    return m


def _store16(m, at: int, v: int) -> None:
    b, o = m.buf, m.off
    b[o + at] = v >> 8
    b[o + at + 1] = v & 0xFF


def _addrs(m) -> tuple[int, int]:
    b, o = m.buf, m.off
    return (int.from_bytes(b[o + 8:o + 24], "big"), int.from_bytes(b[o + 24:o + 40], "big"))


class Icmp6:
    def __init__(self, stack, rate: float = ICMP6LIM, burst: int = ICMP6LIM_BURST):
        self.stack = stack
        self.ratelim = TokenBucket(stack.clock, rate, burst)
        # NetBSD's icmp6stat names: error sent, errors not sent (canterror),
        # rate limited (toofreq), too short, bad checksum; echo replies.
        self.stats = dict.fromkeys((
            "error", "canterror", "toofreq", "tooshort", "checksum",
            "reflect", "nobufs"), 0)
        self.inhist: dict[str, int] = {}
        self.outhist: dict[str, int] = {}

    def _count(self, hist: dict, t: int, code: int) -> None:
        k = f"{TYPE_NAMES.get(t, t)}/{code}"
        hist[k] = hist.get(k, 0) + 1

    # -- input -----------------------------------------------------------
    def input(self, m, off: int) -> None:
        """icmp6_input for a message to one of our addresses or groups, at
        `off` from the IPv6 header. Consumes `m`."""
        pool = self.stack.pool
        if m.pkt_len - off < ICMP6_HDR_LEN:
            self.stats["tooshort"] += 1
            pool.freem(m)
            return
        if m.len < off + ICMP6_HDR_LEN:
            m = pool.pullup(m, off + ICMP6_HDR_LEN)
            if m is None:
                self.stats["nobufs"] += 1
                return
        src, dst = _addrs(m)
        length = m.pkt_len - off
        if (pseudo_sum(src, dst, length, IPPROTO_ICMPV6) + m_cksum(m, off, length)) % 0xFFFF:
            self.stats["checksum"] += 1
            pool.freem(m)
            return
        buf, io = m.buf, m.off + off
        t, code = buf[io], buf[io + 1]
        self._count(self.inhist, t, code)
        if t == ICMP6_ECHO_REQUEST:
            self._reflect(m, off, src, dst)
        elif ND_ROUTER_SOLICIT <= t <= ND_REDIRECT:
            self.stack.nd6.input(m, off, t, src, dst)
        else:
            pool.freem(m)

    def _reflect(self, m, off: int, src: int, dst: int) -> None:
        """Echo Reply in place: type 129, addresses swapped (from our address
        on the link when the request went to a group), hop limit 64."""
        ifp = m.rcvif
        ip6 = self.stack.ip6
        if dst >> 120 == 0xFF:
            dst = ip6.source_for(ifp, src)
            if dst is None:
                self.stack.pool.freem(m)
                return
        b, o = m.buf, m.off
        build_header6(b, o, m.pkt_len - IP6_HDR_LEN, b[o + 6], IPV6_DEFHLIM, dst, src)
        b[o + off] = ICMP6_ECHO_REPLY
        _store16(m, off + 2, 0)
        _store16(m, off + 2, icmp6_cksum(m, off, dst, src))
        m.flags &= ~(M_BCAST | M_MCAST)
        self.stats["reflect"] += 1
        self._count(self.outhist, ICMP6_ECHO_REPLY, b[o + off + 1])
        ip6.output(m, ifp)

    # -- errors ----------------------------------------------------------
    def error(self, m, t: int, code: int, param: int = 0) -> None:
        """icmp6_error: send an ICMPv6 error about the packet in `m` (data at
        its IPv6 header, as received) back to its source. Consumes `m`.
        `param`: the MTU of Packet Too Big, the pointer of Parameter
        Problem. Silent where RFC 4443 §2.4 (e) says so (counted as
        canterror)."""
        stack = self.stack
        pool = stack.pool
        try:
            if m.pkt_len < IP6_HDR_LEN:
                return
            hdr = pool.copydata(m, 0, min(m.pkt_len, 256))
            src = int.from_bytes(hdr[8:24], "big")
            dst = int.from_bytes(hdr[24:40], "big")
            nxt, at, _ = upper_layer(hdr, 0, len(hdr))
            if (nxt == -1 or at >= len(hdr)) and len(hdr) < m.pkt_len:
                # A chain longer than the first 256 bytes: walk all of it
                # to know whether the packet is an ICMPv6 error (rare).
                hdr = pool.copydata(m, 0, m.pkt_len)
                nxt, at, _ = upper_layer(hdr, 0, len(hdr))
            excepted = t == ICMP6_PACKET_TOO_BIG or (t == ICMP6_PARAM_PROB and code == 2)
            if (src >> 120 == 0xFF or src <= 1 or src in stack.ip6.local6
                    or (nxt == IPPROTO_ICMPV6 and at < len(hdr)
                        and (hdr[at] < 128 or hdr[at] == ND_REDIRECT))
                    or (not excepted and (dst >> 120 == 0xFF
                                          or m.flags & (M_BCAST | M_MCAST)))):
                self.stats["canterror"] += 1
                return
            if not self.ratelim.allow():
                self.stats["toofreq"] += 1
                return
            ifp = m.rcvif
            me = stack.ip6.source_for(ifp, src)
            if me is None:
                self.stats["canterror"] += 1
                return
            if m.csum_flags & M_CSUM_L4:
                in_undefer_cksum(m)         # the quote shows the checksum whole
            qlen = min(m.pkt_len, IPV6_MMTU - IP6_HDR_LEN - ICMP6_HDR_LEN)
            quote = pool.copydata(m, 0, qlen)
        finally:
            pool.freem(m)
        msg = bytes((t, code, 0, 0)) + param.to_bytes(4, "big") + quote
        n = icmp6_packet(pool, me, src, IPV6_DEFHLIM, msg)
        if n is None:
            self.stats["nobufs"] += 1
            return
        self.stats["error"] += 1
        self._count(self.outhist, t, code)
        stack.ip6.output(n, ifp if is_linklocal(src) else None)
