"""IPv6 input, forwarding and output (BSD's netinet6/ip6_input.c,
ip6_forward.c, ip6_output.c; RFC 8200).

The forwarding path is IPv4's without the checksum: check the header
(version, payload length), look the destination up (route cache first),
decrement the hop limit, hand the packet to the outgoing interface in the
mbuf it was read into. A router never fragments: a packet larger than the
next hop's MTU is answered with Packet Too Big (RFC 8200 §5). Packets with
a link-local source or destination never leave their link (RFC 4291
§2.5.6). Extension headers are forwarded as they are (§4).

Partial checksums (a TAP with checksum offload hands IPv6 TCP and UDP
with the pseudo-header sum in the field: M_CSUM_TCPv6, M_CSUM_UDPv6) are
completed here when the outgoing interface cannot (`-tcp6csum`); the sum
is the same for both families from the L4 header on
(in_offload.in_undefer_cksum).
"""

from __future__ import annotations

import struct

from iopkt.kern.mbuf import (
    M_BCAST,
    M_CSUM_L4,
    M_CSUM_TSO,
    M_MCAST,
    M_CSUM_TCPv6,
    M_CSUM_TSOv4,
    M_CSUM_TSOv6,
)
from iopkt.net.route import RTF_CONNECTED, RouteTable
from iopkt.netinet.in_offload import in_undefer_cksum, tcp_segment, tso_header_len
from iopkt.netinet6.in6 import (
    ALLNODES,
    ALLROUTERS,
    EXT_HEADERS,
    IN6_IFF_AUTOCONF,
    IN6_IFF_TENTATIVE,
    IP6_HDR_LEN,
    IPPROTO_FRAGMENT,
    IPPROTO_HOPOPTS,
    IPPROTO_ICMPV6,
    IPPROTO_NONE,
    IPPROTO_TCP,
    IPPROTO_UDP,
    In6Ifaddr,
    is_linklocal,
    linklocal,
    ntoa6,
    solicited_node,
)

GOOD_SRC_MAX = 4096
EXT_MAX = 8                 # extension headers walked before giving up

# Source and destination as four 64-bit words: one call, small ints.
_ADDRS = struct.Struct("!QQQQ")
_HDR = struct.Struct("!IHBB16s16s")

# NetBSD's ip6stat names (netinet6/ip6_var.h), those this stack counts.
IP6STAT_NAMES = (
    "total", "tooshort", "toosmall", "badvers", "badscope", "notmember",
    "delivered", "forward", "cantforward", "noroute", "localout", "odropped",
    "toobig", "timeexceed", "fragments", "badoptions", "noproto", "badaddr",
    "badoffload", "tso_forward", "udp_nosum", "notready",
)


def build_header6(buf, off: int, plen: int, nxt: int, hlim: int, src: int, dst: int) -> None:
    """Write a 40-byte IPv6 header (traffic class and flow label 0)."""
    _HDR.pack_into(buf, off, 6 << 28, plen, nxt, hlim, src.to_bytes(16, "big"),
                   dst.to_bytes(16, "big"))


def upper_layer(buf, off: int, length: int) -> tuple[int, int, int]:
    """Walk the extension headers of the IPv6 packet in buf[off:off+length]:
    (next header value, offset of that header, offset of the field that
    named it), offsets from `off`. A fragment header stops the walk (what
    follows is not whole); a chain cut short, or longer than EXT_MAX
    headers, gives next header -1."""
    nxt = buf[off + 6]
    at, ptr = IP6_HDR_LEN, 6
    for _ in range(EXT_MAX):
        if nxt not in EXT_HEADERS or nxt == IPPROTO_FRAGMENT:
            return nxt, at, ptr
        if at + 8 > length:
            return -1, at, ptr
        nxt, ptr, at = buf[off + at], at, at + ((buf[off + at + 1] + 1) << 3)
    return -1, at, ptr


class Ip6:
    def __init__(self, stack):
        self.stack = stack
        self.pool = stack.pool
        self.routes = RouteTable(width=128, fmt=ntoa6)
        self._forwarding = True
        self.local6: dict[int, object] = {}      # usable unicast address -> ifp
        self.good_src: set[int] = set()
        for n in IP6STAT_NAMES:
            setattr(self, "ip6s_" + n, 0)

    def stats(self) -> dict:
        return {n: getattr(self, "ip6s_" + n) for n in IP6STAT_NAMES}

    @property
    def forwarding(self) -> bool:
        return self._forwarding

    @forwarding.setter
    def forwarding(self, on: bool) -> None:
        self._forwarding = bool(on)
        self.routes.cache.clear()

    # -- addresses -------------------------------------------------------
    def ifattach(self, ifp) -> None:
        """An interface joins IPv6: its link-local address from its MAC
        (tentative until DAD, nd6.py, clears it) and the groups every node
        and every router listens on."""
        ifp.in6_groups.update((ALLNODES, ALLROUTERS))
        self.add_address(ifp, linklocal(ifp.lladdr), 64, IN6_IFF_AUTOCONF)

    def add_address(self, ifp, addr: int, plen: int, flags: int = 0) -> In6Ifaddr:
        """SIOCAIFADDR_IN6: put an address on `ifp` (tentative: DAD runs
        first), join its solicited-node group, add its connected route
        (none for the link-local one: link-local destinations name their
        interface)."""
        # A link-local address need only be unique on its link.
        others = [ifp] if is_linklocal(addr) else self.stack.ifnets.values()
        for other in others:
            for ia in other.in6_addrs:
                if ia.addr == addr:
                    raise ValueError(f"address {ntoa6(addr)} is already on {other.name}")
        if not 1 <= plen <= 128:
            raise ValueError(f"prefix length {plen}: must be 1..128")
        ia = In6Ifaddr(addr, plen, flags | IN6_IFF_TENTATIVE)
        ifp.in6_addrs.append(ia)
        ifp.in6_groups.update((ALLNODES, ALLROUTERS, solicited_node(addr)))
        if not is_linklocal(addr):
            try:
                self.routes.add(ia.net, plen, 0, ifp, RTF_CONNECTED)
            except ValueError:
                pass        # a second address in the same prefix shares the route
        self._changed()
        return ia

    def address_usable(self, ifp, ia) -> None:
        """DAD found no other owner: the address can be used and answered."""
        self.local6[ia.addr] = ifp
        self._changed()

    def del_address(self, ifp, addr: int) -> None:
        for ia in ifp.in6_addrs:
            if ia.addr == addr:
                ifp.in6_addrs.remove(ia)
                self.local6.pop(addr, None)
                if not any(solicited_node(o.addr) == solicited_node(addr)
                           for o in ifp.in6_addrs):
                    ifp.in6_groups.discard(solicited_node(addr))
                if not is_linklocal(addr) and not any(
                        o.net == ia.net and o.plen == ia.plen for o in ifp.in6_addrs):
                    try:
                        self.routes.delete(ia.net, ia.plen)
                    except ValueError:
                        pass
                self._changed()
                return
        raise ValueError(f"{ntoa6(addr)} is not an address of {ifp.name}")

    def purge_ifp(self, ifp) -> None:
        for ia in ifp.in6_addrs:
            self.local6.pop(ia.addr, None)
        ifp.in6_addrs.clear()
        ifp.in6_groups.clear()
        self.routes.purge_ifp(ifp)
        self._changed()

    def _changed(self) -> None:
        """Addresses changed: forget what the fast path vouched for."""
        self.routes.cache.clear()
        self.good_src.clear()

    def source_for(self, ifp, dst: int) -> int | None:
        """The source address for a packet to `dst` leaving through `ifp`
        (a simple RFC 6724): link-local for a link-local destination, else
        a usable address of `ifp` in the destination's prefix, else any
        global one of `ifp`, else any global one of the stack."""
        usable = [ia for ia in ifp.in6_addrs if ia.usable] if ifp is not None else []
        if is_linklocal(dst):
            for ia in usable:
                if is_linklocal(ia.addr):
                    return ia.addr
            return None
        for ia in usable:
            if dst & ia.mask == ia.net and not is_linklocal(ia.addr):
                return ia.addr
        for ia in usable:
            if not is_linklocal(ia.addr):
                return ia.addr
        for a in self.local6:
            if not is_linklocal(a):
                return a
        return None

    # -- input -----------------------------------------------------------
    def input(self, pkts: list) -> None:
        """ip6_input for a burst. Consumes every mbuf in `pkts`: IPv6
        packets, link header stripped, m.rcvif set. Forwarding stays in the
        loop; local delivery, multicast and errors leave it."""
        unpack = _ADDRS.unpack_from
        local6 = self.local6
        cache = self.routes.cache
        good_src = self.good_src
        self.ip6s_total += len(pkts)
        nfwd = 0
        run_rt = None           # route and next hop of the run being collected
        run_nh = -1
        run: list = []
        for m in pkts:
            if m.len < IP6_HDR_LEN:
                m = self._pullup_header(m)
                if m is None:
                    continue
            buf = m.buf
            o = m.off
            plen = (buf[o + 4] << 8) | buf[o + 5]
            if buf[o] >> 4 != 6 or plen + IP6_HDR_LEN != m.pkt_len or not plen:
                m = self._check_slow(m, plen)
                if m is None:
                    continue
                buf = m.buf
                o = m.off
            w = unpack(buf, o + 8)
            dst = (w[2] << 64) | w[3]
            rt = cache.get(dst)
            if rt is None or m.flags & (M_BCAST | M_MCAST) or buf[o + 7] <= 1:
                if dst in local6 or w[2] >> 56 == 0xFF:
                    self.deliver(m, dst, w)
                    continue
                rt = self._forward_check(m, dst, w, buf[o + 7])
                if rt is None:
                    continue
            src = (w[0] << 64) | w[1]
            if src not in good_src:
                if not self._src_ok(m, src, w):
                    continue
                if len(good_src) >= GOOD_SRC_MAX:
                    good_src.clear()
                good_src.add(src)
            ifp = rt.ifp
            # Plain packets that fit and ask nothing ifp cannot do go as
            # they are; a super-frame is checked per segment (_check_out).
            if plen + IP6_HDR_LEN > ifp.mtu or m.csum_flags & (M_CSUM_TSO |
                                                              ~ifp.if_csum_flags_tx):
                out = self._check_out(m, ifp, plen)
                if not out:
                    continue
            else:
                buf[o + 7] -= 1
                out = None
            nfwd += 1
            nh = rt.gateway or dst
            if nh != run_nh or rt is not run_rt:
                if run:
                    run_rt.use += len(run)
                    run_rt.ifp.if_output6(run_rt.ifp, run, run_nh)
                    run = []
                run_rt = rt
                run_nh = nh
            if out is None:
                run.append(m)
            else:
                run.extend(out)
        if run:
            run_rt.use += len(run)
            run_rt.ifp.if_output6(run_rt.ifp, run, run_nh)
        self.ip6s_forward += nfwd

    def _pullup_header(self, m):
        ifp = m.rcvif
        if m.pkt_len < IP6_HDR_LEN:
            self.ip6s_tooshort += 1
            ifp.input_discard(m, "ip6_tooshort")
            return None
        m = self.pool.pullup(m, IP6_HDR_LEN)
        if m is None:
            ifp.input_discard(None, "nobufs")
        return m

    def _check_slow(self, m, plen: int):
        """Version or length is not the plain case. Returns `m` (trailing
        link padding trimmed) or None after discarding it."""
        ifp = m.rcvif
        if m.buf[m.off] >> 4 != 6:
            self.ip6s_badvers += 1
            ifp.input_discard(m, "ip6_badvers")
            return None
        tlen = plen + IP6_HDR_LEN
        # Payload length 0 is an empty packet (padded by the link) unless a
        # hop-by-hop header follows: a jumbogram (RFC 2675), never on
        # Ethernet; as Linux's ipv6_rcv, only that one is refused.
        if tlen > m.pkt_len or (plen == 0 and m.buf[m.off + 6] == IPPROTO_HOPOPTS):
            self.ip6s_tooshort += 1
            ifp.input_discard(m, "ip6_tooshort")
            return None
        self.pool.adj(m, tlen - m.pkt_len)      # Ethernet padding
        return m

    def _src_ok(self, m, src: int, w) -> bool:
        """A source never seen by the fast path: not multicast, not
        unspecified, not loopback (RFC 4291 §2.5.2, §2.5.3, §2.7)."""
        if w[0] >> 56 == 0xFF or src <= 1:
            self.ip6s_badaddr += 1
            m.rcvif.input_discard(m, "ip6_badaddr")
            return False
        if w[0] >> 54 == 0x3FA:             # fe80::/10 never leaves its link
            self.ip6s_badscope += 1
            self.ip6s_cantforward += 1
            self.stack.icmp6.error(m, 1, 2)         # beyond scope of source address
            return False
        return True

    def _forward_check(self, m, dst: int, w, hlim: int):
        """The route cache missed, or the packet is not plain: decide.
        Returns the route, or None after answering or dropping `m`."""
        if m.flags & (M_BCAST | M_MCAST) or not self._forwarding or dst <= 1:
            self.ip6s_cantforward += 1
            self.pool.freem(m)
            return None
        if w[2] >> 54 == 0x3FA:
            self.ip6s_badscope += 1
            self.ip6s_cantforward += 1
            self.pool.freem(m)
            return None
        if self._notready(dst):
            # Ours but tentative or duplicated: not ours yet, and not to be
            # forwarded either (RFC 4862 §5.4; NetBSD's ip6_input drops it).
            self.ip6s_notready += 1
            m.rcvif.input_discard(m, "ip6_notready")
            return None
        if hlim <= 1:
            self.ip6s_timeexceed += 1
            self.ip6s_cantforward += 1
            self.stack.icmp6.error(m, 3, 0)         # hop limit exceeded in transit
            return None
        rt = self.routes.lookup(dst)
        if rt is None:
            self.ip6s_noroute += 1
            self.ip6s_cantforward += 1
            self.stack.icmp6.error(m, 1, 0)         # no route to destination
        return rt

    def _notready(self, dst: int) -> bool:
        """Is `dst` an address of ours that DAD has not made usable (still
        tentative, or found duplicated)?"""
        return dst not in self.local6 and any(
            ia.addr == dst for ifp in self.stack.ifnets.values() for ia in ifp.in6_addrs)

    def _check_out(self, m, ifp, plen: int) -> list | None:
        """Too big for `ifp`, a super-frame, or offload work `ifp` cannot
        do: what goes to the next hop (hop limit decremented), or None
        when nothing does (answered with Packet Too Big, dropped, counted;
        `m` consumed). A super-frame is judged by its segments, as Linux's
        skb_gso_validate_network_len does, and cut here when `ifp` cannot
        cut it."""
        cf = m.csum_flags
        if cf & M_CSUM_TSOv4:                   # IPv4 segmentation asked of IPv6
            self.ip6s_badoffload += 1
            m.rcvif.input_discard(m, "bad_offload")
            return None
        if cf & M_CSUM_TSOv6:
            hl = tso_header_len(m)
            if not hl or not m.segsz:
                self.ip6s_badoffload += 1
                m.rcvif.input_discard(m, "bad_offload")
                return None
            size = hl + min(m.segsz, plen + IP6_HDR_LEN - hl)
        else:
            hl = 0
            size = plen + IP6_HDR_LEN
        if size > ifp.mtu:
            self.ip6s_toobig += 1
            self.ip6s_cantforward += 1
            self.stack.icmp6.error(m, 2, 0, ifp.mtu)   # Packet Too Big
            return None
        m.buf[m.off + 7] -= 1
        if hl:
            self.ip6s_tso_forward += 1
            if ifp.if_csum_flags_tx & M_CSUM_TSOv6:
                return [m]
            segs = tcp_segment(self.pool, m, hl, bool(ifp.if_csum_flags_tx & M_CSUM_TCPv6))
            if segs is None:
                self.ip6s_odropped += 1
                ifp.output_discard(None, "nobufs")
                return None
            ifp.sw_tso += 1
            ifp.sw_tso_segs += len(segs)
            return segs
        if cf & M_CSUM_L4 & ~ifp.if_csum_flags_tx:
            in_undefer_cksum(m)
            ifp.sw_csum += 1
        return [m]

    def deliver(self, m, dst: int, w) -> None:
        """A packet for one of our addresses or a multicast group. Consumes
        `m`. Multicast we have not joined is dropped; fragments are not
        reassembled (nothing here needs them)."""
        ifp = m.rcvif
        if w[2] >> 56 == 0xFF and dst not in ifp.in6_groups:
            self.ip6s_notmember += 1
            self.pool.freem(m)
            return
        if w[0] >> 56 == 0xFF or ((w[0] << 64) | w[1]) == 1:
            self.ip6s_badaddr += 1
            ifp.input_discard(m, "ip6_badaddr")
            return
        self.ip6s_delivered += 1
        nxt, at, ptr = upper_layer(m.buf, m.off, m.len)
        if nxt == IPPROTO_ICMPV6:
            self.stack.icmp6.input(m, at)
        elif nxt == IPPROTO_FRAGMENT:
            self.ip6s_fragments += 1
            self.pool.freem(m)
        elif nxt == IPPROTO_UDP and at + 8 <= m.pkt_len and not m.csum_flags \
                and self.pool.copydata(m, at + 6, 2) == b"\0\0":
            self.ip6s_udp_nosum += 1                # RFC 8200 §8.1: zero is invalid
            self.pool.freem(m)
        elif nxt in (IPPROTO_TCP, IPPROTO_UDP):
            self.stack.icmp6.error(m, 1, 4)         # port unreachable
        elif nxt == IPPROTO_NONE:                  # nothing follows (RFC 8200 §4.7)
            self.pool.freem(m)
        elif nxt < 0:
            self.ip6s_badoptions += 1
            self.pool.freem(m)
        else:
            self.ip6s_noproto += 1
            # Parameter Problem, unrecognized Next Header, pointing at it.
            self.stack.icmp6.error(m, 4, 1, ptr)

    # -- output ----------------------------------------------------------
    def output(self, m, ifp=None) -> None:
        """ip6_output for packets the stack originates (header in place).
        `ifp`: the interface of a link-local destination (its scope), or
        of a multicast one. Consumes `m`."""
        w = _ADDRS.unpack_from(m.buf, m.off + 8)
        dst = (w[2] << 64) | w[3]
        if dst in self.local6:
            self.ip6s_odropped += 1
            self.pool.freem(m)
            return
        if is_linklocal(dst) or w[2] >> 56 == 0xFF:
            # Link scope, or multicast: the caller names the interface.
            # Never the routing table, whose cache the forwarding path trusts.
            if ifp is None:
                self.ip6s_noroute += 1
                self.ip6s_odropped += 1
                self.pool.freem(m)
                return
            nexthop = dst
        else:
            rt = self.routes.cache.get(dst) or self.routes.match(dst)
            if rt is None:
                self.ip6s_noroute += 1
                self.ip6s_odropped += 1
                self.pool.freem(m)
                return
            ifp, nexthop = rt.ifp, rt.gateway or dst
        if m.pkt_len > ifp.mtu:
            self.ip6s_odropped += 1
            ifp.output_discard(m, "txerror")
            return
        self.ip6s_localout += 1
        if w[2] >> 56 == 0xFF:
            self.stack.nd6.output_multicast(ifp, m, dst)
        else:
            ifp.if_output6(ifp, [m], nexthop)
