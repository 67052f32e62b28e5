"""Ethernet: frame in, frame out (BSD's net/if_ethersubr.c).

ether_input strips the 14-byte header and hands IPv4, ARP or IPv6 up;
anything else is counted and dropped. ether_output (IPv4) and
ether_output6 put the header back in the leading space the mbuf still has
(no copy of the payload), using a header prebuilt in the ARP or neighbour
cache entry, and queue the frame on the interface.
"""

from __future__ import annotations

from iopkt.kern.mbuf import M_BCAST, M_MCAST
from iopkt.net.bpf import BPF_D_IN, BPF_D_OUT
from iopkt.net.ifnet import IFF_PROMISC, IFF_RUNNING, IFF_UP

ETHER_ADDR_LEN = 6
ETHER_HDR_LEN = 14
ETHER_MIN_LEN = 60           # without FCS, what a TAP gives us at minimum
ETHERTYPE_IP = 0x0800
ETHERTYPE_ARP = 0x0806
ETHERTYPE_IPV6 = 0x86DD
BROADCAST = b"\xff" * 6


def mac_aton(s: str) -> bytes:
    parts = s.split(":")
    if len(parts) != 6:
        raise ValueError(f"bad MAC address {s!r}")
    return bytes(int(p, 16) for p in parts)


def mac_ntoa(b) -> str:
    return ":".join(f"{x:02x}" for x in bytes(b))


def ether_header(dst: bytes, src: bytes, etype: int) -> bytes:
    return bytes(dst) + bytes(src) + etype.to_bytes(2, "big")


def ether_ifattach(ifp, lladdr: bytes) -> None:
    """Make `ifp` an Ethernet interface: set its address and the stack-side
    hooks."""
    ifp.lladdr = bytes(lladdr)
    ifp.if_input = ether_input
    ifp.if_output = ether_output
    ifp.if_output6 = ether_output6


def ether_input(ifp, pkts: list) -> None:
    """if_input for Ethernet. Consumes every mbuf in `pkts`, a burst of
    received frames with m.rcvif set (FreeBSD's ether_input takes a chain
    through m_nextpkt the same way). IPv4 and IPv6 go up as one burst
    each; ARP one by one; anything else is counted and dropped. Captures see the burst
    first, as the driver handed it up (bpf.py: one test per burst)."""
    if ifp.if_bpf is not None:
        ifp.if_bpf.mtap(pkts, BPF_D_IN)
    if not ifp.flags & IFF_UP:
        for m in pkts:
            ifp.ipackets += 1
            ifp.input_discard(m, "down")
        return
    ip = []
    ip6 = None
    lladdr = ifp.lladdr
    nbytes = 0
    for m in pkts:
        if m.len < ETHER_HDR_LEN:
            m = _pullup_header(ifp, m)
            if m is None:
                continue
        buf = m.buf
        off = m.off
        nbytes += m.pkt_len
        if buf[off] & 1:
            m.flags |= M_BCAST if buf.startswith(BROADCAST, off) else M_MCAST
            ifp.imcasts += 1
        elif not buf.startswith(lladdr, off) and not ifp.flags & IFF_PROMISC:
            ifp.input_discard(m, "not_ours")
            continue
        etype = (buf[off + 12] << 8) | buf[off + 13]
        m.off = off + ETHER_HDR_LEN
        m.len -= ETHER_HDR_LEN
        m.pkt_len -= ETHER_HDR_LEN
        if etype == ETHERTYPE_IP:
            ip.append(m)
        elif etype == ETHERTYPE_ARP:
            ifp.ipackets_arp += 1
            ifp.arp_input(m)
        elif etype == ETHERTYPE_IPV6 and ifp.ip6_input is not None:
            if ip6 is None:
                ip6 = []
            ip6.append(m)
        else:
            ifp.input_discard(m, "unknown_ethertype")
    ifp.ipackets += len(pkts)
    ifp.ibytes += nbytes
    if ip:
        ifp.ipackets_inet += len(ip)
        ifp.ip_input(ip)
    if ip6:
        ifp.ipackets_inet6 += len(ip6)
        ifp.ip6_input(ip6)


def _pullup_header(ifp, m):
    if m.pkt_len < ETHER_HDR_LEN:
        ifp.input_discard(m, "runt")
        return None
    m = ifp.stack.pool.pullup(m, ETHER_HDR_LEN)
    if m is None:
        ifp.input_discard(None, "nobufs")
    return m


def ether_output(ifp, pkts: list, nexthop: int) -> None:
    """if_output for IPv4 on Ethernet. Consumes the mbufs in `pkts` (IPv4
    packets, data starting at the IP header), all for `nexthop` (an IPv4
    address as int on this link). If the neighbour is not resolved yet they
    wait in ARP's hold queue. The common case writes the neighbour's
    prebuilt header into each packet's leading space: no allocation, no
    copy of the payload."""
    la = ifp.llinfo.get(nexthop)
    if la is None or la.hdr is None or not ifp.flags & IFF_RUNNING:
        for m in pkts:
            if not ifp.flags & IFF_RUNNING:
                ifp.output_discard(m, "down")
            else:
                ifp.stack.arp.resolve(ifp, m, nexthop)
        return
    ifp.opackets_inet += len(pkts)
    _output_burst(ifp, pkts, la.hdr)


def _output_burst(ifp, pkts: list, hdr: bytes) -> None:
    """Write the 14-byte header `hdr` in front of each packet (in its
    leading space when it has some) and transmit the burst. Consumes
    every mbuf in `pkts`."""
    for i, m in enumerate(pkts):
        off = m.off
        if off < ETHER_HDR_LEN:             # no leading space: slow path
            pkts[i] = _prepend(ifp, m, hdr)
            if pkts[i] is None:
                ifp.output_discard(None, "txerror")
            continue
        off -= ETHER_HDR_LEN
        m.off = off
        m.len += ETHER_HDR_LEN
        m.pkt_len += ETHER_HDR_LEN
        m.buf[off:off + ETHER_HDR_LEN] = hdr
    if None in pkts:
        pkts = [m for m in pkts if m is not None]
    if ifp.if_bpf is not None:
        ifp.if_bpf.mtap(pkts, BPF_D_OUT)
    ifp.if_transmit(ifp, pkts)


def ether_output6(ifp, pkts: list, nexthop: int) -> None:
    """if_output for IPv6 on Ethernet: as ether_output, with the neighbour
    cache (ifp.nd6info, netinet6/nd6.py) for ARP's. An entry that is not
    usable as it stands (none, INCOMPLETE, STALE) sends the packets
    through Neighbour Discovery, which holds, probes or sends them."""
    ln = ifp.nd6info.get(nexthop)
    if ln is None or not ln.usable or not ifp.flags & IFF_RUNNING:
        nd6 = ifp.stack.nd6
        for m in pkts:
            if not ifp.flags & IFF_RUNNING:
                ifp.output_discard(m, "down")
            else:
                nd6.resolve(ifp, m, nexthop)
        return
    ifp.opackets_inet6 += len(pkts)
    _output_burst(ifp, pkts, ln.hdr)


def _prepend(ifp, m, hdr: bytes):
    m = ifp.stack.pool.prepend(m, ETHER_HDR_LEN)
    if m is not None:
        m.buf[m.off:m.off + ETHER_HDR_LEN] = hdr
    return m


def ether_output_frame(ifp, m, hdr: bytes) -> None:
    """Prepend the 14-byte header `hdr` (any type: ARP uses this too) to
    one packet and transmit it. Consumes `m`."""
    if hdr[12] == 0x86:                     # counted by family, as ether_output does
        ifp.opackets_inet6 += 1
    elif hdr[13] == 0x06:
        ifp.opackets_arp += 1
    else:
        ifp.opackets_inet += 1
    m = _prepend(ifp, m, hdr)
    if m is None:
        ifp.output_discard(None, "txerror")
        return
    m.flags &= ~(M_BCAST | M_MCAST)
    if hdr[0] & 1:
        ifp.omcasts += 1
    if ifp.if_bpf is not None:
        ifp.if_bpf.mtap([m], BPF_D_OUT)
    ifp.if_transmit(ifp, [m])
