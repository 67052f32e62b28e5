"""The virtio-net header and the tun ioctls that turn TAP offload on.

A TAP opened with IFF_VNET_HDR puts a 10-byte `struct virtio_net_hdr`
(include/uapi/linux/virtio_net.h) in front of every frame read or written:

    u8 flags; u8 gso_type; u16 hdr_len, gso_size, csum_start, csum_offset

in the host's byte order (little-endian on x86 and arm64). It is how the
kernel hands a driver a TCP super-frame (gso_type TCPV4, gso_size = MSS)
(TCPV6 for IPv6) or a frame whose L4 checksum is still partial (flags NEEDS_CSUM: the
checksum field holds the pseudo-header sum; whoever sends the frame on
must sum from csum_start to the end and store the result at
csum_start + csum_offset).

Inside the stack the same facts travel in the packet header with NetBSD's
names (mbuf.py): csum_flags (M_CSUM_TCPv4 / UDPv4 / TSOv4, and their v6
twins for a frame whose EtherType is IPv6), csum_data
(L4 offset from the IP header << 16 | checksum offset in the L4 header)
and segsz. `decode` and `encode` translate between the two; a driver calls
them only for frames whose header is not all zero.

What TUNSETOFFLOAD accepts (drivers/net/tun.c, set_offload): TSO bits only
together with TUN_F_CSUM, unknown bits are EINVAL. The mask governs what
the kernel may hand us on read; a vnet-header TAP accepts GSO frames on
write whatever its mask. The mask belongs to the device and outlives the
file descriptor on a persistent TAP, so a driver resets it to 0 when it
detaches or runs without offload.
"""

from __future__ import annotations

import errno
import fcntl
import struct

from iopkt.kern.mbuf import (
    M_CSUM_L4,
    M_CSUM_TSO,
    M_CSUM_TCPv4,
    M_CSUM_TCPv6,
    M_CSUM_TSOv4,
    M_CSUM_TSOv6,
    M_CSUM_UDPv4,
    M_CSUM_UDPv6,
)

VNET_HDR_LEN = 10
HDR = struct.Struct("<BBHHHH")
ZERO_HDR = bytes(VNET_HDR_LEN)

# flags
VIRTIO_NET_HDR_F_NEEDS_CSUM = 1
VIRTIO_NET_HDR_F_DATA_VALID = 2
# gso_type
VIRTIO_NET_HDR_GSO_NONE = 0
VIRTIO_NET_HDR_GSO_TCPV4 = 1
VIRTIO_NET_HDR_GSO_UDP = 3
VIRTIO_NET_HDR_GSO_TCPV6 = 4
VIRTIO_NET_HDR_GSO_UDP_L4 = 5
VIRTIO_NET_HDR_GSO_ECN = 0x80

# include/uapi/linux/if_tun.h (the generic _IOW/_IOR encodings)
IFF_VNET_HDR = 0x4000
TUNSETOFFLOAD = 0x400454D0          # takes an int by value
TUNSETVNETHDRSZ = 0x400454D8        # takes a pointer to int
TUNGETFEATURES = 0x800454CF
TUN_F_CSUM = 0x01
TUN_F_TSO4 = 0x02
TUN_F_TSO6 = 0x04
TUN_F_TSO_ECN = 0x08
TUN_F_UFO = 0x10
TUN_F_NAMES = ((TUN_F_CSUM, "CSUM"), (TUN_F_TSO4, "TSO4"), (TUN_F_TSO6, "TSO6"),
               (TUN_F_TSO_ECN, "TSO_ECN"), (TUN_F_UFO, "UFO"))

ETHER_HDR_LEN = 14
ETHERTYPE_IP = 0x0800
ETHERTYPE_IPV6 = 0x86DD
TCP_CSUM_OFF = 16                   # th_sum in the TCP header
UDP_CSUM_OFF = 6                    # uh_sum in the UDP header
TH_CWR = 0x80


def tun_f_str(mask: int) -> str:
    return ",".join(n for bit, n in TUN_F_NAMES if mask & bit) or "none"


# -- ioctls -------------------------------------------------------------------
def set_vnet_hdr_sz(fd: int, size: int = VNET_HDR_LEN) -> None:
    fcntl.ioctl(fd, TUNSETVNETHDRSZ, struct.pack("i", size))


def set_offload(fd: int, mask: int) -> None:
    """TUNSETOFFLOAD: raises OSError(EINVAL) when the kernel refuses a bit."""
    fcntl.ioctl(fd, TUNSETOFFLOAD, mask)


def negotiate_offload(fd: int, want: int) -> tuple[int, int]:
    """Set `want`, or if the kernel refuses it, checksum offload alone, or
    nothing: what a driver probing unknown hardware does. Returns (the mask
    set, the bits refused)."""
    tries = []
    for mask in (want, want & TUN_F_CSUM, 0):
        if mask not in tries:
            tries.append(mask)
    for mask in tries:
        try:
            set_offload(fd, mask)
            return mask, want & ~mask
        except OSError as e:
            if e.errno != errno.EINVAL or mask == 0:
                raise
    raise AssertionError("unreachable: mask 0 either works or raises")


# -- header <-> packet header --------------------------------------------------
def decode(m, buf, at: int) -> bool:
    """Read the virtio-net header at buf[at:at+10] (wherever the driver read it)
    into `m`'s csum_flags, csum_data and segsz. Returns False if the header
    asks for something we never enabled or points outside the frame; the
    caller drops the frame. The frame must already be in `m` (its data at
    the Ethernet header, `m.pkt_len` its length)."""
    flags, gso, _hdr_len, gso_size, start, off = HDR.unpack_from(buf, at)
    if not flags & VIRTIO_NET_HDR_F_NEEDS_CSUM:
        if gso:                             # GSO always comes with a partial checksum
            return False
        m.csum_flags = 0
        return True
    if start < ETHER_HDR_LEN + 20 or start + off + 2 > m.pkt_len:
        return False
    # The family from the EtherType: the stack keeps one flag per family and
    # protocol, as an interface may complete TCPv4 checksums but not TCPv6.
    b, o = m.buf, m.off
    et = (b[o + 12] << 8) | b[o + 13]
    v6 = et == ETHERTYPE_IPV6
    if off == TCP_CSUM_OFF:
        cf = M_CSUM_TCPv6 if v6 else M_CSUM_TCPv4
    elif off == UDP_CSUM_OFF:
        cf = M_CSUM_UDPv6 if v6 else M_CSUM_UDPv4
    else:
        return False
    gso &= ~VIRTIO_NET_HDR_GSO_ECN
    if gso != VIRTIO_NET_HDR_GSO_NONE:
        # A super-frame of the family its EtherType says, TCP, with an MSS.
        if not gso_size:
            return False
        if gso == VIRTIO_NET_HDR_GSO_TCPV4 and cf == M_CSUM_TCPv4 and et == ETHERTYPE_IP:
            cf |= M_CSUM_TSOv4
        elif gso == VIRTIO_NET_HDR_GSO_TCPV6 and cf == M_CSUM_TCPv6:
            cf |= M_CSUM_TSOv6
        else:
            return False
        m.segsz = gso_size
    m.csum_flags = cf
    m.csum_data = ((start - ETHER_HDR_LEN) << 16) | off
    return True


def encode(m, buf, at: int) -> None:
    """Write the virtio-net header for `m` (data at its Ethernet header)
    into buf[at:at+10]. A frame with nothing partial gets ten zero bytes:
    the kernel then checks every checksum it delivers."""
    cf = m.csum_flags
    if not cf & M_CSUM_L4:
        buf[at:at + VNET_HDR_LEN] = ZERO_HDR
        return
    cd = m.csum_data
    start = ETHER_HDR_LEN + (cd >> 16)
    off = cd & 0xFFFF
    if cf & M_CSUM_TSO:
        d = m.off + start                   # the TCP header, in the first mbuf
        b = m.buf
        gso = VIRTIO_NET_HDR_GSO_TCPV4 if cf & M_CSUM_TSOv4 else VIRTIO_NET_HDR_GSO_TCPV6
        if b[d + 13] & TH_CWR:
            gso |= VIRTIO_NET_HDR_GSO_ECN
        HDR.pack_into(buf, at, VIRTIO_NET_HDR_F_NEEDS_CSUM, gso,
                      start + ((b[d + 12] >> 4) << 2), m.segsz, start, off)
    else:
        HDR.pack_into(buf, at, VIRTIO_NET_HDR_F_NEEDS_CSUM, VIRTIO_NET_HDR_GSO_NONE,
                      start + off + 2, 0, start, off)
