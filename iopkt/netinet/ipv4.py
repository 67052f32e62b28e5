"""IPv4 input, forwarding and output (BSD's ip_input.c / ip_output.c).

The forwarding path is the product, so it is written for speed: a received
packet is checked (version, IHL, checksum, total length), looked up in the
route cache, its TTL decremented with an incremental checksum update
(RFC 1141/1624), and handed to the outgoing interface in the same mbuf it
was read into. No buffer is allocated or copied.

The slow paths (ICMP errors, local delivery, fragmentation, offload the
outgoing interface cannot do) may allocate.

Offload (in_offload.py): a packet may arrive as a TCP super-frame or with a
partial checksum. Forwarding a super-frame is forwarding one packet (TTL,
header checksum, Ethernet rewrite); its MTU is judged per segment, as
Linux's skb_gso_validate_network_len does. Whatever the outgoing interface
cannot do itself (its if_csum_flags_tx) is done here first: segmentation,
checksum completion. Packets made on a slow path join the burst's run for
their route, so a flow's packets leave in the order they came.
"""

from __future__ import annotations

import struct

from iopkt.kern.mbuf import M_BCAST, M_MCAST, M_CSUM_TCPv4, M_CSUM_TSOv4, M_CSUM_UDPv4
from iopkt.net.ifnet import InIfaddr
from iopkt.net.route import RTF_CONNECTED, RouteTable, ntoa
from iopkt.netinet.cksum import in_cksum
from iopkt.netinet.in_offload import in_undefer_cksum, tcp_segment, tso_header_len

IPVERSION = 4
IP_HDR_LEN = 20
IP_DF = 0x4000
IP_MF = 0x2000
IP_OFFMASK = 0x1FFF
IPDEFTTL = 64
GOOD_SRC_MAX = 4096         # sources remembered as not martian
MAXTTL = 255

IPPROTO_ICMP = 1
IPPROTO_TCP = 6
IPPROTO_UDP = 17

# The fixed header as ten 16-bit words (w): w[0] version/IHL and TOS, w[1]
# total length, w[2] id, w[3] flags and offset, w[4] TTL and protocol,
# w[5] checksum, w[6:8] source, w[8:10] destination. Halfwords stay small
# ints, on which CPython's arithmetic is several times faster than on the
# two-digit ints 32-bit words become.
_H10 = struct.Struct("!10H")
_TTL_SUM = struct.Struct("!HH")         # TTL and protocol; header checksum
_SRCDST = struct.Struct("!II")
_HDR = struct.Struct("!BBHHHBBHII")

IPSTAT_NAMES = (
    "total", "badsum", "tooshort", "badhlen", "badlen", "badvers", "badaddr",
    "delivered", "forward", "cantforward", "noroute", "fragmented",
    "ofragments", "cantfrag", "localout", "odropped", "noproto", "bcast",
    "reassfail", "tso_forward", "badoffload",
)


def build_header(buf, off: int, tlen: int, ident: int, frag: int, ttl: int,
                 proto: int, src: int, dst: int) -> None:
    """Write a 20-byte IPv4 header with a correct checksum."""
    _HDR.pack_into(buf, off, 0x45, 0, tlen, ident, frag, ttl, proto, 0, src, dst)
    c = in_cksum(buf, off, IP_HDR_LEN)
    buf[off + 10] = c >> 8
    buf[off + 11] = c & 0xFF


class Ip:
    def __init__(self, stack):
        self.stack = stack
        self.pool = stack.pool
        self.routes = RouteTable()
        self._forwarding = True
        self.local_addrs: dict[int, object] = {}     # addr -> ifp
        # Directed broadcasts of our subnets. 255.255.255.255 is not in it:
        # every reader tests `>= 0xE0000000` (multicast and up) first.
        self.bcast_addrs: set[int] = set()
        self.good_src: set[int] = set()     # sources already found not martian
        self.ident = 1
        for n in IPSTAT_NAMES:
            setattr(self, "ips_" + n, 0)

    def stats(self) -> dict:
        return {n: getattr(self, "ips_" + n) for n in IPSTAT_NAMES}

    @property
    def forwarding(self) -> bool:
        return self._forwarding

    @forwarding.setter
    def forwarding(self, on: bool) -> None:
        self._forwarding = bool(on)
        self.routes.cache.clear()           # the fast path trusts the cache

    # -- addresses -------------------------------------------------------
    def add_address(self, ifp, addr: int, plen: int) -> None:
        """SIOCAIFADDR: put an address on `ifp` and its connected route."""
        if addr in self.local_addrs:
            raise ValueError(f"address {ntoa(addr)} is already on "
                             f"{self.local_addrs[addr].name}")
        if not 1 <= plen <= 32:
            raise ValueError(f"prefix length {plen}: must be 1..32")
        ia = InIfaddr(addr, plen)
        ifp.in_addrs.append(ia)
        self.local_addrs[addr] = ifp
        self._rebuild_bcast()
        try:
            self.routes.add(ia.net, plen, 0, ifp, RTF_CONNECTED)
        except ValueError:
            pass        # a second address in the same subnet shares the route

    def del_address(self, ifp, addr: int) -> None:
        for ia in ifp.in_addrs:
            if ia.addr == addr:
                ifp.in_addrs.remove(ia)
                del self.local_addrs[addr]
                self._rebuild_bcast()
                if not any(o.net == ia.net and o.plen == ia.plen for o in ifp.in_addrs):
                    try:
                        self.routes.delete(ia.net, ia.plen)
                    except ValueError:
                        pass
                return
        raise ValueError(f"{ntoa(addr)} is not an address of {ifp.name}")

    def purge_ifp(self, ifp) -> None:
        """The interface is going away: drop its addresses and routes."""
        for ia in ifp.in_addrs:
            del self.local_addrs[ia.addr]   # add_address put each one there
        ifp.in_addrs.clear()
        self._rebuild_bcast()
        self.routes.purge_ifp(ifp)

    def _rebuild_bcast(self) -> None:
        """Addresses changed: recompute the broadcast addresses and forget
        every destination and source the fast path had vouched for."""
        b = set()
        for ifp in self.local_addrs.values():
            for ia in ifp.in_addrs:
                if ia.plen < 31:
                    b.add(ia.broadcast)
        self.bcast_addrs = b
        self.routes.cache.clear()
        self.good_src.clear()

    # -- input -----------------------------------------------------------
    def input(self, pkts: list) -> None:
        """ip_input for a burst. Consumes every mbuf in `pkts`: IPv4
        packets, link header stripped, m.rcvif set.

        The loop is the forwarding fast path: check the header, find the
        route (cache first), decrement the TTL, and collect runs of packets
        bound for the same route so the output side also works in bursts.
        Anything unusual leaves the loop for a slow path. Every discard is
        counted twice: in ipstat by BSD name and on the receiving interface
        by reason."""
        unpack = _H10.unpack_from
        ttl_sum = _TTL_SUM.pack_into
        local_addrs = self.local_addrs
        bcast = self.bcast_addrs
        cache = self.routes.cache
        lookup = self.routes.lookup
        good_src = self.good_src
        run_rt = None           # route and next hop of the run being collected
        run_nh = -1
        run: list = []
        nfwd = 0
        self.ips_total += len(pkts)
        for m in pkts:
            buf = m.buf
            o = m.off
            if m.len < IP_HDR_LEN:
                m = self._pullup_header(m)
                if m is None:
                    continue
                buf = m.buf
                o = m.off
            w = unpack(buf, o)
            # A correct header sums to 0xFFFF once folded (RFC 1071), that
            # is to a multiple of 0xFFFF before (2**16 == 1 mod 0xFFFF).
            if w[0] >> 8 != 0x45 or sum(w) % 0xFFFF or w[1] != m.pkt_len:
                m, hlen = self._check_slow(m, w)
                if m is None:
                    continue
                buf = m.buf
                o = m.off
                w = unpack(buf, o)
            else:
                hlen = IP_HDR_LEN
            src = (w[6] << 16) | w[7]
            dst = (w[8] << 16) | w[9]
            # Only forwardable unicast destinations ever enter the route
            # cache (checked below on a miss, flushed whenever addresses,
            # routes or `forwarding` change), so a hit needs no more checks
            # on the destination; sources are vouched for the same way.
            rt = cache.get(dst)
            if rt is None or src not in good_src or m.flags & (M_BCAST | M_MCAST) \
                    or w[4] < 0x200:
                if dst in local_addrs:
                    self.deliver(m, hlen)
                    continue
                if (dst >= 0xE0000000 or dst in bcast or src >= 0xE0000000
                        or (src >> 24) in (0, 127) or src in bcast
                        or m.flags & (M_BCAST | M_MCAST) or w[4] < 0x200
                        or not self._forwarding):
                    self._forward_slow(m, w, src, dst)
                    continue
                if len(good_src) >= GOOD_SRC_MAX:
                    good_src.clear()
                good_src.add(src)
                if rt is None:
                    if (dst >> 24) in (0, 127):         # martian: never routed,
                        self.ips_badaddr += 1           # never cached (RFC 1812 5.3.7)
                        m.rcvif.input_discard(m, "ip_badaddr")
                        continue
                    rt = lookup(dst)
                    if rt is None:
                        self.ips_noroute += 1
                        self.ips_cantforward += 1
                        self.stack.icmp.error(m, 3, 0)       # net unreachable
                        continue
            ifp = rt.ifp
            # Plain packets that fit and ask nothing ifp cannot do take the
            # fast path; a super-frame never does, even one that fits: it
            # is checked and counted like any other.
            if w[1] > ifp.mtu or m.csum_flags & (M_CSUM_TSOv4 | ~ifp.if_csum_flags_tx):
                hl = self._check_out(m, w, ifp)     # None: answered or dropped
                if hl is None:
                    continue
            else:
                hl = -1
            # TTL - 1 and the checksum + 0x0100 with end-around carry
            # (RFC 1141); 0xFFFF is -0, which recomputation writes as 0
            # (RFC 1624). TTL, protocol and checksum go back in one call.
            c = w[5] + 0x100
            c = (c & 0xFFFF) + (c >> 16)
            if c == 0xFFFF:
                c = 0
            ttl_sum(buf, o + 8, w[4] - 0x100, c)
            if hl < 0:
                out = None
            else:
                out = self._forward_slow_out(m, ifp, hl, hlen, w[1])
                if not out:
                    continue
            nfwd += 1
            nh = rt.gateway or dst
            if nh != run_nh or rt is not run_rt:
                if run:
                    run_rt.use += len(run)
                    run_rt.ifp.if_output(run_rt.ifp, run, run_nh)
                    run = []
                run_rt = rt
                run_nh = nh
            if out is None:
                run.append(m)
            else:
                run.extend(out)
        if run:
            run_rt.use += len(run)
            run_rt.ifp.if_output(run_rt.ifp, run, run_nh)
        self.ips_forward += nfwd

    def _pullup_header(self, m):
        ifp = m.rcvif
        if m.pkt_len < IP_HDR_LEN:
            self.ips_tooshort += 1
            ifp.input_discard(m, "ip_tooshort")
            return None
        m = self.pool.pullup(m, IP_HDR_LEN)
        if m is None:
            ifp.input_discard(None, "nobufs")
        return m

    def _check_slow(self, m, w):
        """The header is not the plain 20-byte kind with matching lengths:
        check it fully. Returns (m, hlen), or (None, 0) after discarding."""
        ifp = m.rcvif
        vhl = w[0] >> 8
        if vhl >> 4 != IPVERSION:
            self.ips_badvers += 1
            ifp.input_discard(m, "ip_badvers")
            return None, 0
        hlen = (vhl & 0x0F) << 2
        if hlen < IP_HDR_LEN or hlen > m.pkt_len:
            self.ips_badhlen += 1
            ifp.input_discard(m, "ip_badhlen")
            return None, 0
        if hlen > m.len:
            m = self.pool.pullup(m, hlen)
            if m is None:
                ifp.input_discard(None, "nobufs")
                return None, 0
        if in_cksum(m.buf, m.off, hlen) != 0:
            self.ips_badsum += 1
            ifp.input_discard(m, "ip_badsum")
            return None, 0
        tlen = w[1]
        if tlen != m.pkt_len:
            if tlen < hlen or tlen > m.pkt_len:
                self.ips_badlen += 1
                ifp.input_discard(m, "ip_badlen")
                return None, 0
            self.pool.adj(m, tlen - m.pkt_len)      # Ethernet padding
        return m, hlen

    def _forward_slow(self, m, w, src: int, dst: int) -> None:
        """Not for us and not plainly forwardable: broadcast or multicast,
        a martian source, TTL running out, forwarding off. Consumes `m`."""
        if dst >= 0xE0000000 or dst in self.bcast_addrs:
            self.ips_bcast += 1                     # nothing listens here
            self.pool.freem(m)
        elif src >= 0xE0000000 or (src >> 24) in (0, 127) or src in self.bcast_addrs:
            self.ips_badaddr += 1
            m.rcvif.input_discard(m, "ip_badaddr")
        elif m.flags & (M_BCAST | M_MCAST) or not self._forwarding:
            self.ips_cantforward += 1               # link broadcast: never routed
            self.pool.freem(m)
        else:
            self.ips_cantforward += 1
            self.stack.icmp.error(m, 11, 0)          # time exceeded in transit

    def _check_out(self, m, w, ifp) -> int | None:
        """A packet longer than the outgoing MTU, or with offload work
        `ifp` cannot do, before its TTL changes (an ICMP error quotes it as
        it came). Consumes `m` and returns None when it cannot go: DF set
        and too big (one frag-needed; for a super-frame when a *segment* is
        too big, as Linux's skb_gso_validate_network_len judges it), or a
        super-frame that is not plain TCP. Otherwise returns the IP + TCP
        header length of a super-frame, or 0."""
        mtu = ifp.mtu
        if m.csum_flags & M_CSUM_TSOv4:
            hl = tso_header_len(m)
            if not hl or not m.segsz:
                self.ips_badoffload += 1
                m.rcvif.input_discard(m, "bad_offload")
                return None
            too_big = hl + min(m.segsz, w[1] - hl) > mtu
        else:
            hl = 0
            too_big = w[1] > mtu
        if too_big and w[3] & IP_DF:
            self.ips_cantfrag += 1
            self.ips_cantforward += 1
            self.stack.icmp.error(m, 3, 4, mtu)         # fragmentation needed
            return None
        return hl

    def _forward_slow_out(self, m, ifp, hl: int, hlen: int, tlen: int) -> list | None:
        """The rest of forwarding for a packet _check_out let through (TTL
        already decremented): what to send to the next hop, or None when
        the pool ran dry (counted). Consumes `m`.

          super-frame (hl > 0)  fits: one packet, or its segments when
                                `ifp` has no TSO; segments too big (DF
                                clear): segment, then fragment each
          plain                 too big: fragment (the checksum completed
                                first: fragments cannot carry a partial
                                one); fits: complete its checksum"""
        mtu = ifp.mtu
        if hl:
            self.ips_tso_forward += 1
            if hl + min(m.segsz, tlen - hl) > mtu:
                return self._segment_and_fragment(m, ifp, hl)
            if ifp.if_csum_flags_tx & M_CSUM_TSOv4:
                return [m]
            return self._segment(m, ifp, hl)
        if m.csum_flags & (M_CSUM_TCPv4 | M_CSUM_UDPv4):
            in_undefer_cksum(m)
            ifp.sw_csum += 1
        if tlen > mtu:
            return self.fragment(m, ifp, hlen, tlen)
        return [m]

    def _segment(self, m, ifp, hl: int, partial: bool | None = None) -> list | None:
        """tcp_segment for `ifp`, counted there. Consumes `m`."""
        if partial is None:
            partial = bool(ifp.if_csum_flags_tx & M_CSUM_TCPv4)
        segs = tcp_segment(self.pool, m, hl, partial)
        if segs is None:
            self.ips_odropped += 1
            ifp.output_discard(None, "nobufs")
            return None
        ifp.sw_tso += 1
        ifp.sw_tso_segs += len(segs)
        return segs

    def _segment_and_fragment(self, m, ifp, hl: int) -> list | None:
        """DF clear and the segments do not fit: segment (checksums whole,
        fragments cannot carry partial ones), then fragment each segment
        that is too long. Consumes `m`."""
        segs = self._segment(m, ifp, hl, partial=False)
        if segs is None:
            return None
        out = []
        mtu = ifp.mtu
        for s in segs:
            if s.pkt_len <= mtu:
                out.append(s)
                continue
            frags = self.fragment(s, ifp, (s.buf[s.off] & 0x0F) << 2, s.pkt_len)
            if frags:
                out.extend(frags)
        return out or None

    def deliver(self, m, hlen: int) -> None:
        """A packet for one of our addresses. Consumes `m`. Fragments are
        not reassembled (nothing here needs them): they are dropped."""
        buf = m.buf
        o = m.off
        src = _SRCDST.unpack_from(buf, o + 12)[0]
        if (src >> 24) in (0, 127) or src >= 0xE0000000 or src in self.bcast_addrs:
            self.ips_badaddr += 1               # a martian source: silently
            m.rcvif.input_discard(m, "ip_badaddr")      # (RFC 1122 3.2.1.3)
            return
        self.ips_delivered += 1
        if ((buf[o + 6] << 8) | buf[o + 7]) & (IP_MF | IP_OFFMASK):
            self.ips_reassfail += 1
            self.pool.freem(m)
            return
        # Nothing here reads a TCP or UDP checksum but icmp.error, which
        # completes a partial one when its quote holds it.
        proto = buf[o + 9]
        if proto == IPPROTO_ICMP:
            self.stack.icmp.input(m, hlen)
        elif proto in (IPPROTO_UDP, IPPROTO_TCP):
            self.stack.icmp.error(m, 3, 3)           # port unreachable
        else:
            self.ips_noproto += 1
            self.stack.icmp.error(m, 3, 2)           # protocol unreachable

    # -- output ----------------------------------------------------------
    def output(self, m) -> None:
        """ip_output for packets the stack itself originates (a complete
        header already in place). Consumes `m`."""
        buf = m.buf
        o = m.off
        dst = _SRCDST.unpack_from(buf, o + 12)[1]
        if dst in self.local_addrs:         # never put our own address on a wire
            self.ips_odropped += 1
            self.pool.freem(m)
            return
        rt = self.routes.cache.get(dst) or self.routes.match(dst)
        if rt is None:
            self.ips_noroute += 1
            self.ips_odropped += 1
            self.pool.freem(m)
            return
        self.ips_localout += 1
        ifp = rt.ifp
        tlen = (buf[o + 2] << 8) | buf[o + 3]
        if tlen > ifp.mtu:
            frags = self.fragment(m, ifp, (buf[o] & 0x0F) << 2, tlen)
            if frags:
                ifp.if_output(ifp, frags, rt.gateway or dst)
        else:
            ifp.if_output(ifp, [m], rt.gateway or dst)

    def next_ident(self) -> int:
        self.ident = (self.ident + 1) & 0xFFFF
        return self.ident

    def fragment(self, m, ifp, hlen: int, tlen: int) -> list | None:
        """ip_fragment: cut `m` (DF clear, longer than the MTU of `ifp`, its
        way out, checksums complete) into fragments that fit, each in a new
        cluster. Options without the copy bit go in the first fragment
        only (RFC 791). Consumes `m`; returns the fragments (the caller
        owns them), or None when it could not (counted: a pool running dry
        also as an output discard of `ifp`)."""
        pool = self.pool
        mtu = ifp.mtu
        hdr = bytes(pool.copydata(m, 0, hlen))
        fhdr = _copied_options_header(hdr)
        chunk0 = (mtu - hlen) & ~7
        chunkn = (mtu - len(fhdr)) & ~7
        if chunk0 < 8 or chunkn < 8:
            self.ips_cantfrag += 1
            pool.freem(m)
            return None
        orig_frag = (hdr[6] << 8) | hdr[7]
        base_off = orig_frag & IP_OFFMASK
        last_mf = orig_frag & IP_MF
        payload = tlen - hlen
        pos = 0
        frags = []
        while pos < payload:
            h = bytearray(hdr if pos == 0 else fhdr)
            n = min(chunk0 if pos == 0 else chunkn, payload - pos)
            more = (pos + n < payload) or last_mf
            hl = len(h)
            flen = hl + n
            h[2], h[3] = flen >> 8, flen & 0xFF
            fo = (base_off + (pos >> 3)) | (IP_MF if more else 0) | (orig_frag & IP_DF)
            h[6], h[7] = fo >> 8, fo & 0xFF
            h[10] = h[11] = 0
            c = in_cksum(h, 0, hl)
            h[10], h[11] = c >> 8, c & 0xFF
            # A chain when the MTU is larger than a cluster holds.
            f = pool.from_bytes(h + pool.copydata(m, hlen + pos, n))
            if f is None:
                for x in frags:
                    pool.freem(x)
                self.ips_odropped += 1
                ifp.output_discard(None, "nobufs")
                pool.freem(m)
                return None
            f.rcvif = m.rcvif
            frags.append(f)
            pos += n
        pool.freem(m)
        self.ips_fragmented += 1
        self.ips_ofragments += len(frags)
        return frags


def _copied_options_header(hdr: bytes) -> bytes:
    """The header for fragments after the first: only options whose copy
    flag (0x80) is set, padded to a 4-byte boundary."""
    if len(hdr) == IP_HDR_LEN:
        return hdr
    opts = hdr[IP_HDR_LEN:]
    out = bytearray()
    i = 0
    while i < len(opts):
        t = opts[i]
        if t == 0:              # end of options
            break
        if t == 1:              # no-op
            i += 1
            continue
        if i + 1 >= len(opts) or opts[i + 1] < 2:
            break
        ln = opts[i + 1]
        if t & 0x80:
            out += opts[i:i + ln]
        i += ln
    while len(out) % 4:
        out.append(0)
    h = bytearray(hdr[:IP_HDR_LEN]) + out
    h[0] = 0x40 | (len(h) >> 2)
    return bytes(h)
