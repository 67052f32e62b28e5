"""Ethernet: frame in, frame out (BSD's net/if_ethersubr.c).

ether_input strips the 14-byte header and hands IPv4 or ARP up; anything
else is counted and dropped. ether_output puts the header back in the
leading space the mbuf still has (no copy of the payload), using a header
prebuilt in the ARP entry, and queues the frame on the interface.
"""

from __future__ import annotations

from .ifnet import IFF_PROMISC, IFF_UP, IFF_RUNNING, if_transmit
from .mbuf import M_BCAST, M_MCAST

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


def ether_input(ifp, m) -> None:
    """if_input for Ethernet. Consumes `m`, a whole received frame with
    m.rcvif set; hands the payload (header stripped) to IPv4 or ARP."""
    if m.len < ETHER_HDR_LEN:
        if m.pkt_len < ETHER_HDR_LEN:
            ifp.ipackets += 1
            ifp.input_discard(m, "runt")
            return
        m = ifp.stack.pool.pullup(m, ETHER_HDR_LEN)
        if m is None:
            ifp.input_discard(None, "nobufs")
            return
    ifp.ipackets += 1
    ifp.ibytes += m.pkt_len
    if not ifp.flags & IFF_UP:
        ifp.input_discard(m, "down")
        return
    buf = m.buf
    off = m.off
    if buf[off] & 1:
        m.flags |= M_BCAST if buf.startswith(BROADCAST, off) else M_MCAST
        ifp.imcasts += 1
    elif not buf.startswith(ifp.lladdr, off) and not ifp.flags & IFF_PROMISC:
        ifp.input_discard(m, "not_ours")
        return
    etype = (buf[off + 12] << 8) | buf[off + 13]
    m.off = off + ETHER_HDR_LEN
    m.len -= ETHER_HDR_LEN
    m.pkt_len -= ETHER_HDR_LEN
    if etype == ETHERTYPE_IP:
        ifp.stack.ip.input(m)
    elif etype == ETHERTYPE_ARP:
        ifp.stack.arp.input(m)
    else:
        ifp.input_discard(m, "unknown_ethertype")


def ether_output(ifp, m, nexthop: int) -> None:
    """if_output for IPv4 on Ethernet. Consumes `m` (an IPv4 packet, data
    starting at the IP header) and `nexthop` (an IPv4 address as int on
    this link). If the neighbour is not resolved yet the packet waits in
    ARP's hold queue."""
    if ifp.flags & (IFF_UP | IFF_RUNNING) != (IFF_UP | IFF_RUNNING):
        ifp.output_discard(m, "down")
        return
    la = ifp.llinfo.get(nexthop)
    if la is None or la.hdr is None:
        ifp.stack.arp.resolve(ifp, m, nexthop)
        return
    ether_output_frame(ifp, m, la.hdr)


def ether_output_frame(ifp, m, hdr: bytes) -> None:
    """Prepend the prebuilt 14-byte header `hdr` and transmit. Consumes `m`."""
    off = m.off
    if off >= ETHER_HDR_LEN:
        off -= ETHER_HDR_LEN
        m.off = off
        m.len += ETHER_HDR_LEN
        m.pkt_len += ETHER_HDR_LEN
    else:
        m = ifp.stack.pool.prepend(m, ETHER_HDR_LEN)
        if m is None:
            ifp.output_discard(None, "txerror")
            return
        off = m.off
    m.buf[off:off + ETHER_HDR_LEN] = hdr
    if m.flags & (M_BCAST | M_MCAST):
        m.flags &= ~(M_BCAST | M_MCAST)
    if hdr[0] & 1:
        ifp.omcasts += 1
    if_transmit(ifp, m)
