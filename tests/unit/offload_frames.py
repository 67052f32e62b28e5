"""Frames for the offload tests: TCP packets, super-frames as the TAP
driver receives them (a cluster plus a jumbo, checksum left partial), and
the segments Linux's tcp_gso_segment makes of them, built by scapy."""

import struct

from scapy.compat import raw
from scapy.layers.inet import IP, TCP
from scapy.layers.inet6 import IPv6

from iopkt.kern.mbuf import M_CSUM_TCPv4, M_CSUM_TSOv4, M_CSUM_TSOv6, M_CSUM_UDPv4
from iopkt.netinet.cksum import fold

from fakenet import Router as R


def pseudo_seed(pkt: bytes, iphl: int) -> int:
    """What the kernel leaves in a partial TCP/UDP checksum field: the
    folded pseudo-header sum over the L4 length (IPv4 or IPv6; for IPv6
    the next header is the upper layer's: no extension headers)."""
    l4len = len(pkt) - iphl
    if pkt[0] >> 4 == 6:
        return fold(sum(struct.unpack("!16H", pkt[8:40])) + pkt[6] + l4len)
    src, dst = pkt[12:16], pkt[16:20]
    words = struct.unpack("!4H", src + dst)
    return fold(sum(words) + pkt[9] + l4len)


def as_superframe(pool, pkt: bytes, mss: int):
    """`pkt` (IP/TCP) as the TAP driver receives a super-frame: the first
    part in a cluster, the rest in a jumbo; TCP checksum left partial."""
    b = bytearray(pkt)
    v6 = b[0] >> 4 == 6
    iphl = 40 if v6 else (b[0] & 0x0F) << 2
    b[iphl + 16:iphl + 18] = pseudo_seed(pkt, iphl).to_bytes(2, "big")
    m = chain(pool, bytes(b), [min(len(b), 1984)])
    m.csum_flags = (M_CSUM_TSOv6 if v6 else M_CSUM_TSOv4) | M_CSUM_TCPv4
    m.csum_data = (iphl << 16) | 16
    m.segsz = mss
    return m


def chain(pool, data: bytes, cuts: list[int]):
    """`data` as a chain cut after each offset in `cuts` (ascending); the
    first piece in a cluster, the others in clusters or one jumbo."""
    room = pool.mclbytes - pool.headroom
    cuts = sorted({c for c in cuts if 0 < c < len(data)} | ({room} if len(data) > room else set()))
    bounds = [0] + cuts + [len(data)]
    head = prev = None
    for a, z in zip(bounds, bounds[1:]):
        m = pool.get() if head is None or z - a <= 2048 else pool.get_jumbo()
        if head is not None:
            m.off, m.flags = 0, 0
        m.view[m.off:m.off + z - a] = data[a:z]
        m.len = z - a
        if head is None:
            head = m
        else:
            prev.next = m
        prev = m
    head.pkt_len = len(data)
    return head


def expected_segments(pkt: bytes, mss: int) -> list[bytes]:
    """What Linux's tcp_gso_segment makes of `pkt` (IPv4 or IPv6), built by
    scapy."""
    v6 = pkt[0] >> 4 == 6
    p = IPv6(pkt) if v6 else IP(pkt)
    payload = bytes(p[TCP].payload)
    n = max(1, -(-len(payload) // mss))
    out = []
    for i in range(n):
        q = p.copy()
        if v6:
            del q.plen, q[TCP].chksum
        else:
            q.id = (p.id + i) & 0xFFFF
            del q.len, q.chksum, q[TCP].chksum
        q[TCP].seq = (p[TCP].seq + i * mss) & 0xFFFFFFFF
        fl = int(p[TCP].flags)
        if i:
            fl &= ~0x80                 # CWR only on the first
        if i != n - 1:
            fl &= ~(0x01 | 0x08)        # FIN and PSH only on the last
        q[TCP].flags = fl
        q[TCP].remove_payload()
        q = q / payload[i * mss:(i + 1) * mss]
        out.append(raw(IPv6(raw(q)) if v6 else IP(raw(q))))
    return out


def tcp6_pkt(n, flags="PA", seq=1000):
    """An IPv6 TCP packet with `n` bytes of payload (addresses with no zero
    halfword: a pseudo-header word dropped would show)."""
    return raw(IPv6(src="2001:2:5:a::12", dst="2001:2:7:b::13", hlim=64)
               / TCP(sport=40000, dport=5201, seq=seq, ack=77, flags=flags)
               / bytes((i * 7 + 3) & 0xFF for i in range(n)))


def tcp_pkt(n, flags="PA", options=None, tcp_options=(), seq=1000, ident=0x4242):
    # Addresses with no zero byte: a pseudo-header byte dropped would show.
    return raw(IP(src="198.18.5.2", dst="198.19.7.3", id=ident, flags="DF",
                  options=options or [])
               / TCP(sport=40000, dport=5201, seq=seq, ack=77, flags=flags,
                     options=list(tcp_options))
               / bytes((i * 7 + 3) & 0xFF for i in range(n)))


def flow(n, flags="PA", seq=1000, df=True, ttl=64, dst=R.H1):
    """A TCP packet H0 -> `dst` with `n` bytes of payload."""
    return raw(IP(src=R.H0, dst=dst, id=0x4242, ttl=ttl, flags="DF" if df else 0)
               / TCP(sport=40000, dport=5201, seq=seq, ack=77, flags=flags)
               / bytes((i * 7 + 3) & 0xFF for i in range(n)))


def received(net, pkt: bytes, mss: int = 0, udp: bool = False):
    """`pkt` as devnp-tap hands it up from H0: Ethernet header, checksum
    partial (the pseudo-header sum in its field), a super-frame when
    `mss` is given (a cluster plus a jumbo)."""
    pool = net.stack.pool
    b = bytearray(pkt)
    off = 6 if udp else 16
    b[20 + off:22 + off] = pseudo_seed(pkt, 20).to_bytes(2, "big")
    m = chain(pool, net.eth0() + bytes(b), [])
    m.csum_flags = (M_CSUM_UDPv4 if udp else M_CSUM_TCPv4) | (M_CSUM_TSOv4 if mss else 0)
    m.csum_data = (20 << 16) | off
    m.segsz = mss
    return m
