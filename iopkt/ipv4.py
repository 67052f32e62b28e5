"""IPv4 input, forwarding and output (BSD's ip_input.c / ip_output.c).

The forwarding path is the product, so it is written for speed: a received
packet is checked (version, IHL, checksum, total length), looked up in the
route cache, its TTL decremented with an incremental checksum update
(RFC 1141/1624), and handed to the outgoing interface in the same mbuf it
was read into. No buffer is allocated or copied.

The slow paths (ICMP errors, local delivery, fragmentation) may allocate.
"""

from __future__ import annotations

import struct

from .cksum import cksum_sum, in_cksum
from .ifnet import InIfaddr
from .mbuf import M_BCAST, M_MCAST
from .route import RTF_CONNECTED, RouteTable

IPVERSION = 4
IP_HDR_LEN = 20
IP_DF = 0x4000
IP_MF = 0x2000
IP_OFFMASK = 0x1FFF
IPDEFTTL = 64
MAXTTL = 255

IPPROTO_ICMP = 1
IPPROTO_TCP = 6
IPPROTO_UDP = 17

_H10 = struct.Struct("!10H")
_SRCDST = struct.Struct("!II")
_HDR = struct.Struct("!BBHHHBBHII")

IPSTAT_NAMES = (
    "total", "badsum", "tooshort", "badhlen", "badlen", "badvers", "badaddr",
    "delivered", "forward", "cantforward", "noroute", "fragmented",
    "ofragments", "cantfrag", "localout", "odropped", "noproto", "bcast",
    "reassfail",
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
        self.forwarding = True
        self.local_addrs: dict[int, object] = {}     # addr -> ifp
        self.bcast_addrs: set[int] = {0xFFFFFFFF}
        self.ident = 1
        for n in IPSTAT_NAMES:
            setattr(self, "ips_" + n, 0)

    def stats(self) -> dict:
        return {n: getattr(self, "ips_" + n) for n in IPSTAT_NAMES}

    # -- addresses -------------------------------------------------------
    def add_address(self, ifp, addr: int, plen: int) -> None:
        """SIOCAIFADDR: put an address on `ifp` and its connected route."""
        if addr in self.local_addrs:
            raise ValueError(f"address {_ntoa(addr)} is already on "
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
        raise ValueError(f"{_ntoa(addr)} is not an address of {ifp.name}")

    def purge_ifp(self, ifp) -> None:
        for ia in list(ifp.in_addrs):
            self.local_addrs.pop(ia.addr, None)
        ifp.in_addrs.clear()
        self._rebuild_bcast()
        self.routes.purge_ifp(ifp)

    def _rebuild_bcast(self) -> None:
        b = {0xFFFFFFFF}
        for ifp in self.local_addrs.values():
            for ia in ifp.in_addrs:
                if ia.plen < 31:
                    b.add(ia.broadcast)
        self.bcast_addrs = b

    # -- input -----------------------------------------------------------
    def input(self, m) -> None:
        """ip_input. Consumes `m`: an IPv4 packet, link header stripped,
        m.rcvif set. Every discard is counted twice: in ipstat by BSD name
        and on the receiving interface by reason."""
        ifp = m.rcvif
        self.ips_total += 1
        if m.len < IP_HDR_LEN:
            if m.pkt_len < IP_HDR_LEN:
                self.ips_tooshort += 1
                ifp.input_discard(m, "ip_tooshort")
                return
            m = self.pool.pullup(m, IP_HDR_LEN)
            if m is None:
                ifp.input_discard(None, "nobufs")
                return
        buf = m.buf
        o = m.off
        vhl = buf[o]
        if vhl == 0x45:
            hlen = IP_HDR_LEN
            s = sum(_H10.unpack_from(buf, o))
        else:
            if vhl >> 4 != IPVERSION:
                self.ips_badvers += 1
                ifp.input_discard(m, "ip_badvers")
                return
            hlen = (vhl & 0x0F) << 2
            if hlen < IP_HDR_LEN or hlen > m.pkt_len:
                self.ips_badhlen += 1
                ifp.input_discard(m, "ip_badhlen")
                return
            if hlen > m.len:
                m = self.pool.pullup(m, hlen)
                if m is None:
                    ifp.input_discard(None, "nobufs")
                    return
                buf = m.buf
                o = m.off
            s = cksum_sum(buf, o, hlen)
        s = (s & 0xFFFF) + (s >> 16)
        s = (s & 0xFFFF) + (s >> 16)
        if s != 0xFFFF:
            self.ips_badsum += 1
            ifp.input_discard(m, "ip_badsum")
            return
        tlen = (buf[o + 2] << 8) | buf[o + 3]
        if tlen != m.pkt_len:
            if tlen < hlen or tlen > m.pkt_len:
                self.ips_badlen += 1
                ifp.input_discard(m, "ip_badlen")
                return
            self.pool.adj(m, tlen - m.pkt_len)      # Ethernet padding
        src, dst = _SRCDST.unpack_from(buf, o + 12)

        local = self.local_addrs.get(dst)
        if local is not None:
            self.deliver(m, hlen)
            return
        if dst in self.bcast_addrs or dst >= 0xE0000000:
            self.ips_bcast += 1                     # nothing listens here
            self.pool.freem(m)
            return
        # -- forward ------------------------------------------------------
        if (src >> 24) in (0, 127) or src >= 0xE0000000 or src in self.bcast_addrs:
            self.ips_badaddr += 1
            ifp.input_discard(m, "ip_badaddr")
            return
        if m.flags & (M_BCAST | M_MCAST) or not self.forwarding:
            self.ips_cantforward += 1
            self.pool.freem(m)
            return
        ttl = buf[o + 8]
        if ttl <= 1:
            self.ips_cantforward += 1
            self.stack.icmp.error(m, 11, 0)          # time exceeded in transit
            return
        rt = self.routes.cache.get(dst)
        if rt is None:
            rt = self.routes.lookup(dst)
            if rt is None:
                self.ips_noroute += 1
                self.ips_cantforward += 1
                self.stack.icmp.error(m, 3, 0)       # net unreachable
                return
        oifp = rt.ifp
        if tlen > oifp.mtu and buf[o + 6] & 0x40:
            self.ips_cantfrag += 1
            self.ips_cantforward += 1
            self.stack.icmp.error(m, 3, 4, oifp.mtu)  # fragmentation needed
            return
        # TTL - 1 and the checksum + 0x0100 with end-around carry (RFC 1141)
        buf[o + 8] = ttl - 1
        c = ((buf[o + 10] << 8) | buf[o + 11]) + 0x100
        c = (c & 0xFFFF) + (c >> 16)
        buf[o + 10] = c >> 8
        buf[o + 11] = c & 0xFF
        self.ips_forward += 1
        rt.use += 1
        if tlen > oifp.mtu:
            self.fragment(m, oifp, rt.gateway or dst, hlen, tlen)
        else:
            oifp.if_output(oifp, m, rt.gateway or dst)

    def deliver(self, m, hlen: int) -> None:
        """A packet for one of our addresses. Consumes `m`. Fragments are
        not reassembled (nothing here needs them): they are dropped."""
        buf = m.buf
        o = m.off
        self.ips_delivered += 1
        if ((buf[o + 6] << 8) | buf[o + 7]) & (IP_MF | IP_OFFMASK):
            self.ips_reassfail += 1
            self.pool.freem(m)
            return
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
        rt = self.routes.cache.get(dst) or self.routes.lookup(dst)
        if rt is None:
            self.ips_noroute += 1
            self.ips_odropped += 1
            self.pool.freem(m)
            return
        self.ips_localout += 1
        ifp = rt.ifp
        tlen = (buf[o + 2] << 8) | buf[o + 3]
        if tlen > ifp.mtu:
            self.fragment(m, ifp, rt.gateway or dst, (buf[o] & 0x0F) << 2, tlen)
        else:
            ifp.if_output(ifp, m, rt.gateway or dst)

    def next_ident(self) -> int:
        self.ident = (self.ident + 1) & 0xFFFF
        return self.ident

    def fragment(self, m, ifp, nexthop: int, hlen: int, tlen: int) -> None:
        """ip_fragment: send `m` (DF clear, longer than ifp.mtu) as
        fragments of at most ifp.mtu bytes, each in a new cluster. Options
        without the copy bit go in the first fragment only (RFC 791).
        Consumes `m`."""
        pool = self.pool
        hdr = bytes(pool.copydata(m, 0, hlen))
        fhdr = _copied_options_header(hdr)
        chunk0 = (ifp.mtu - hlen) & ~7
        chunkn = (ifp.mtu - len(fhdr)) & ~7
        if chunk0 < 8 or chunkn < 8:
            self.ips_cantfrag += 1
            pool.freem(m)
            return
        orig_frag = (hdr[6] << 8) | hdr[7]
        base_off = orig_frag & IP_OFFMASK
        last_mf = orig_frag & IP_MF
        payload = tlen - hlen
        pos = 0
        frags = []
        while pos < payload:
            h = hdr if pos == 0 else fhdr
            n = min(chunk0 if pos == 0 else chunkn, payload - pos)
            more = (pos + n < payload) or last_mf
            f = pool.get()
            if f is None:
                for x in frags:
                    pool.freem(x)
                self.ips_odropped += 1
                pool.freem(m)
                return
            hl = len(h)
            f.view[f.off:f.off + hl] = h
            pool.copydata(m, hlen + pos, n, f.view[f.off + hl:f.off + hl + n])
            b, o = f.buf, f.off
            flen = hl + n
            b[o + 2] = flen >> 8
            b[o + 3] = flen & 0xFF
            fo = (base_off + (pos >> 3)) | (IP_MF if more else 0) | (orig_frag & IP_DF)
            b[o + 6] = fo >> 8
            b[o + 7] = fo & 0xFF
            b[o + 10] = b[o + 11] = 0
            c = in_cksum(b, o, hl)
            b[o + 10] = c >> 8
            b[o + 11] = c & 0xFF
            f.len = f.pkt_len = flen
            frags.append(f)
            pos += n
        pool.freem(m)
        self.ips_fragmented += 1
        for f in frags:
            self.ips_ofragments += 1
            ifp.if_output(ifp, f, nexthop)


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


def _ntoa(a: int) -> str:
    return f"{a >> 24}.{(a >> 16) & 255}.{(a >> 8) & 255}.{a & 255}"
