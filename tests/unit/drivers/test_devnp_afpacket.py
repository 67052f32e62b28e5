"""drivers/devnp_afpacket/devnp_afpacket.py without a packet socket: the rings
live in a bytearray with the kernel's own slot layout (if_packet.h), and
the test plays the kernel: it fills RX slots (v2) or blocks (v3) as
tpacket_rcv does and takes SEND_REQUEST slots from the TX ring as
tpacket_snd does. The socket is a stand-in that counts kicks."""

import ctypes
import errno
import logging
import os
import socket
import struct

import pytest
from scapy.compat import raw
from scapy.layers.inet import IP, TCP, UDP

from devnp_afpacket import attach as afa
from devnp_afpacket import devnp_afpacket as afp
from devnp_afpacket import lxif
from devnp_afpacket import packet_mmap as pm
from devnp_afpacket.attach import DRIVER, RING_VERSIONS
from devnp_afpacket.packet_mmap import (
    TP_STATUS_AVAILABLE,
    TP_STATUS_CSUMNOTREADY,
    TP_STATUS_SEND_REQUEST,
    TP_STATUS_SENDING,
    TP_STATUS_USER,
    TP_STATUS_VLAN_VALID,
    Geometry,
    Ring,
    ring_layout,
    slot_offsets,
    v3_layout,
)
from iopkt.dev.autoconf import DriverError
from iopkt.kern.loop import EPOLLIN, EPOLLOUT
from iopkt.kern.mbuf import M_CSUM_TCPv4, M_CSUM_TCPv6, M_CSUM_TSOv4, M_CSUM_TSOv6, M_CSUM_UDPv4
from iopkt.net import vnet
from iopkt.net.ifnet import (
    IFCAP_CSUM_L4,
    IFF_OACTIVE,
    IFF_RUNNING,
    LINK_STATE_DOWN,
    LINK_STATE_UP,
    IFCAP_CSUM_TCPv4_Rx,
    IFCAP_CSUM_TCPv4_Tx,
    IFCAP_TSOv4,
    IFCAP_TSOv6,
)
from iopkt.netinet.in_offload import in_undefer_cksum

from offload_frames import expected_segments, pseudo_seed

MAC = bytes.fromhex("020000000001")
PEER = bytes.fromhex("02aa00000002")
ETH = MAC + PEER + b"\x08\x00"
UP = lxif.LX_IFF_UP | lxif.LX_IFF_RUNNING
ALL = IFCAP_TSOv4 | IFCAP_TSOv6 | IFCAP_CSUM_L4
NEEDS = vnet.VIRTIO_NET_HDR_F_NEEDS_CSUM
BIG = Geometry(pm.TPACKET_V2).framesize_for(pm.MAX_FRAME)       # 65632


# -- the C layouts, from include/uapi/linux/if_packet.h --------------------------
class Tpacket2Hdr(ctypes.Structure):
    _fields_ = [("tp_status", ctypes.c_uint32), ("tp_len", ctypes.c_uint32),
                ("tp_snaplen", ctypes.c_uint32), ("tp_mac", ctypes.c_uint16),
                ("tp_net", ctypes.c_uint16), ("tp_sec", ctypes.c_uint32),
                ("tp_nsec", ctypes.c_uint32), ("tp_vlan_tci", ctypes.c_uint16),
                ("tp_vlan_tpid", ctypes.c_uint16), ("tp_padding", ctypes.c_uint8 * 4)]


class TpacketHdrVariant1(ctypes.Structure):
    _fields_ = [("tp_rxhash", ctypes.c_uint32), ("tp_vlan_tci", ctypes.c_uint32),
                ("tp_vlan_tpid", ctypes.c_uint16), ("tp_padding", ctypes.c_uint16)]


class Tpacket3Hdr(ctypes.Structure):
    _fields_ = [("tp_next_offset", ctypes.c_uint32), ("tp_sec", ctypes.c_uint32),
                ("tp_nsec", ctypes.c_uint32), ("tp_snaplen", ctypes.c_uint32),
                ("tp_len", ctypes.c_uint32), ("tp_status", ctypes.c_uint32),
                ("tp_mac", ctypes.c_uint16), ("tp_net", ctypes.c_uint16),
                ("hv1", TpacketHdrVariant1), ("tp_padding", ctypes.c_uint8 * 8)]


class TpacketBdTs(ctypes.Structure):
    _fields_ = [("ts_sec", ctypes.c_uint32), ("ts_nsec", ctypes.c_uint32)]


class TpacketHdrV1(ctypes.Structure):
    _fields_ = [("block_status", ctypes.c_uint32), ("num_pkts", ctypes.c_uint32),
                ("offset_to_first_pkt", ctypes.c_uint32), ("blk_len", ctypes.c_uint32),
                ("seq_num", ctypes.c_uint64), ("ts_first_pkt", TpacketBdTs),
                ("ts_last_pkt", TpacketBdTs)]


class TpacketBlockDesc(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("offset_to_priv", ctypes.c_uint32),
                ("hdr", TpacketHdrV1)]


def test_slot_layouts_match_the_c_structures():
    assert ctypes.sizeof(Tpacket2Hdr) == pm.TPACKET2_HDR_LEN == 32
    assert ctypes.sizeof(Tpacket3Hdr) == pm.TPACKET3_HDR_LEN == 48
    assert ctypes.sizeof(TpacketBlockDesc) == pm.BLOCK_DESC_LEN == 48
    g2, g3 = Geometry(pm.TPACKET_V2), Geometry(pm.TPACKET_V3)
    # What getsockopt(PACKET_HDRLEN) says: TPACKET_ALIGN(hdr) + sizeof(sockaddr_ll).
    assert (g2.hdrlen, g3.hdrlen) == (52, 68)
    # RX: the frame at TPACKET_ALIGN(hdrlen + 16) + vnet - 14 (tpacket_rcv's macoff).
    assert (g2.rx_mac, g3.rx_mac) == (76, 92)
    # TX: data at hdrlen - sizeof(sockaddr_ll) (tpacket_parse_header without TX_HAS_OFF).
    assert (g2.tx_data, g3.tx_data) == (32, 48)
    assert (g2.tx_status, g2.tx_len) == (Tpacket2Hdr.tp_status.offset, Tpacket2Hdr.tp_len.offset)
    assert (g3.tx_status, g3.tx_len) == (Tpacket3Hdr.tp_status.offset, Tpacket3Hdr.tp_len.offset)
    h = Tpacket2Hdr(tp_status=5, tp_len=1514, tp_snaplen=1500, tp_mac=76)
    assert g2.rx_hdr.unpack_from(bytes(h)) == (5, 1514, 1500, 76)
    h3 = Tpacket3Hdr(tp_next_offset=1600, tp_snaplen=60, tp_len=64, tp_status=9, tp_mac=92)
    assert g3.rx_hdr.unpack_from(bytes(h3)) == (1600, 60, 64, 9, 92)
    d = TpacketBlockDesc
    assert d.hdr.offset + TpacketHdrV1.block_status.offset == 8
    assert d.hdr.offset + TpacketHdrV1.num_pkts.offset == 12
    assert d.hdr.offset + TpacketHdrV1.offset_to_first_pkt.offset == 16
    # One pack writes tp_len and the whole virtio header, hdr_len the frame's length.
    for g in (g2, g3):
        b = bytearray(256)
        g.tx_plain.pack_into(b, 0, 70, 60)
        assert struct.unpack_from("<I", b, g.tx_len)[0] == 70
        assert vnet.HDR.unpack_from(b, g.tx_data) == (0, 0, 60, 0, 0, 0)


@pytest.mark.parametrize("fs,frames", [(2048, 1), (2048, 512), (2048, 2048), (1600, 100),
                                       (BIG, 1), (BIG, 64), (BIG, 128), (4096 + 16, 33)])
def test_ring_layout_whole_frames_in_power_of_two_blocks(fs, frames):
    bs, nb, nf = ring_layout(fs, frames)
    assert bs % pm.PAGE == 0 and bs & (bs - 1) == 0       # 2^order pages
    assert nf == (bs // fs) * nb >= frames                  # what the kernel checks
    # No other block size needs less memory for these frames.
    b = pm.PAGE
    while b <= pm.MAX_BLOCK:
        if b >= fs:
            assert -(-frames // (b // fs)) * b >= bs * nb
        b *= 2
    offs = slot_offsets((bs, nb, nf), fs, base=1000)
    assert len(offs) == nf and len(set(offs)) == nf
    for o in offs:                                          # never across a block
        assert (o - 1000) // bs == (o - 1000 + fs - 1) // bs


def test_ring_layout_examples():
    assert ring_layout(2048, 2048) == (4096, 1024, 2048)    # 4 MB
    assert ring_layout(BIG, 128) == (1 << 20, 9, 135)       # 15 a 1 MB block
    assert v3_layout(2048, ring_layout(2048, 2048)) == (256 << 10, 16, 2048)
    with pytest.raises(ValueError):
        ring_layout(2050, 4)


# -- the rig ---------------------------------------------------------------------
class FakeSock:
    """What the driver uses of its packet socket. send() is the kick: the
    kernel (`mode` "send") sends every SEND_REQUEST slot and answers the
    bytes it sent, as tpacket_snd does; "hold" leaves them in flight
    (SENDING), "none" sends nothing (its send buffer is full); `errors`
    raises the next errno instead."""

    def __init__(self):
        self.a, self.b = socket.socketpair()        # a real fd for the epoll set
        self.kernel = None
        self.mode = "send"
        self.kicks = 0
        self.errors = []
        self.stats = [0, 0, 0]
        self.so_error = 0
        self.closed = False

    def fileno(self):
        return self.a.fileno()

    def send(self, data, flags=0):
        assert data == b"" and flags & socket.MSG_DONTWAIT
        self.kicks += 1
        if self.errors:
            e = self.errors.pop(0)
            raise OSError(e, os.strerror(e))
        if self.mode == "none":
            return 0
        before = self.kernel.sent_bytes
        self.kernel.tx(hold=self.mode == "hold")
        return self.kernel.sent_bytes - before

    def getsockopt(self, level, opt, size=None):
        if level == socket.SOL_SOCKET:
            assert opt == socket.SO_ERROR
            e, self.so_error = self.so_error, 0
            return e
        assert (level, opt) == (pm.SOL_PACKET, pm.PACKET_STATISTICS)
        out = struct.pack("3I", *self.stats)[:size]
        self.stats = [0, 0, 0]                       # the kernel resets them when read
        return out

    def close(self):
        self.closed = True
        self.a.close()
        self.b.close()


class Kernel:
    """The kernel's side of both rings."""

    def __init__(self, ring: Ring):
        self.ring = ring
        self.g = ring.geom
        self.rx_i = self.tx_i = 0
        self.blk = 0
        self.block = []             # v3: frames for the block being filled
        self.drops = 0
        self.sent = []              # TX: (virtio header, frame) the kernel sent
        self.sent_bytes = 0
        self.refuse = lambda h, f: False

    # RX -------------------------------------------------------------------
    def rx(self, frame: bytes, hdr: bytes = vnet.ZERO_HDR, status: int = 0,
           tp_len: int | None = None) -> bool:
        """tpacket_rcv: the frame into the next slot (v2, cut at the
        slot's end) or into the block being filled (v3)."""
        if self.g.version == pm.TPACKET_V3:
            self.block.append((frame, hdr, status, tp_len))
            return True
        r = self.ring
        off = r.rx_offs[self.rx_i]
        if r.u32[off >> 2] != pm.TP_STATUS_KERNEL:
            self.drops += 1
            return False
        mac = self.g.rx_mac
        snap = min(len(frame), r.framesize - mac)
        r.mv[off + mac - 10:off + mac] = hdr
        r.mv[off + mac:off + mac + snap] = frame[:snap]
        struct.pack_into("<IIIHH", r.mv, off, 0, tp_len or len(frame), snap, mac, mac + 14)
        r.u32[off >> 2] = TP_STATUS_USER | status
        self.rx_i = (self.rx_i + 1) % len(r.rx_offs)
        return True

    def close_block(self) -> bool:
        """v3: the block is full or its timer ran out: hand it over."""
        r = self.ring
        b = r.rx_blocks[self.blk]
        if r.u32[(b + 8) >> 2] != pm.TP_STATUS_KERNEL:
            self.drops += len(self.block)
            self.block = []
            return False
        bs = r.rx_layout[0]
        pos = pm.BLOCK_DESC_LEN
        mac = self.g.rx_mac
        for k, (frame, hdr, status, tp_len) in enumerate(self.block):
            snap = min(len(frame), bs - pos - mac)
            last = k == len(self.block) - 1
            step = 0 if last else pm.tpacket_align(mac + snap)
            h = Tpacket3Hdr(tp_next_offset=step, tp_snaplen=snap, tp_len=tp_len or len(frame),
                            tp_status=TP_STATUS_USER | status, tp_mac=mac, tp_net=mac + 14)
            p = b + pos
            r.mv[p:p + 48] = bytes(h)
            r.mv[p + mac - 10:p + mac] = hdr
            r.mv[p + mac:p + mac + snap] = frame[:snap]
            pos += step
        struct.pack_into("<III", r.mv, b + 12, len(self.block), pm.BLOCK_DESC_LEN, pos)
        r.u32[(b + 8) >> 2] = TP_STATUS_USER
        self.block = []
        self.blk = (self.blk + 1) % len(r.rx_blocks)
        return True

    def rx_slots_ours(self) -> int:
        r = self.ring
        if self.g.version == pm.TPACKET_V3:
            return sum(1 for b in r.rx_blocks if r.u32[(b + 8) >> 2] == pm.TP_STATUS_KERNEL)
        return sum(1 for o in r.rx_offs if r.u32[o >> 2] == pm.TP_STATUS_KERNEL)

    # TX -------------------------------------------------------------------
    def tx(self, hold: bool = False) -> list:
        """tpacket_snd: every SEND_REQUEST slot from the head, in order,
        onto `sent` as (virtio header, frame); one that `refuse` says no
        to is skipped (PACKET_LOSS). `hold` leaves the slots SENDING (the
        skbs still in flight)."""
        r, g = self.ring, self.g
        out = []
        while True:
            slot = r.tx_offs[self.tx_i]
            si = (slot + g.tx_status) >> 2
            if r.u32[si] != TP_STATUS_SEND_REQUEST:
                self.sent.extend(out)
                return out
            tlen = struct.unpack_from("<I", r.mv, slot + g.tx_len)[0]
            d = slot + g.tx_data
            h, f = bytes(r.mv[d:d + 10]), bytes(r.mv[d + 10:d + tlen])
            if self.refuse(h, f):
                r.u32[si] = TP_STATUS_AVAILABLE
            else:
                out.append((h, f))
                self.sent_bytes += len(f)
                r.u32[si] = TP_STATUS_SENDING if hold else TP_STATUS_AVAILABLE
            self.tx_i = (self.tx_i + 1) % len(r.tx_offs)

    def tx_done(self) -> None:
        """Every skb in flight freed: SENDING slots AVAILABLE again."""
        r, g = self.ring, self.g
        for slot in r.tx_offs:
            si = (slot + g.tx_status) >> 2
            if r.u32[si] == TP_STATUS_SENDING:
                r.u32[si] = TP_STATUS_AVAILABLE


class Nic:
    """An afpN interface on `stack` over a ring in a bytearray."""

    def __init__(self, stack, ring="v2", framesize=2048, rxframes=8, txframes=4, opts="",
                 flags=UP, mtu=1500, page=4096, sock=None):
        o = DRIVER.parse_options(f"ifname=veth1,ring={ring}" + (f",{opts}" if opts else ""))
        geom = Geometry(RING_VERSIONS[ring])
        rx = ring_layout(framesize, rxframes, page=page)
        tx = ring_layout(framesize, txframes, page=page)
        if ring == "v3":
            rx = v3_layout(framesize, rx)
        mem = bytearray(rx[0] * rx[1] + tx[0] * tx[1])
        self.ring = Ring(mem, geom, framesize, rx, tx)
        self.sock = sock or FakeSock()
        self.kernel = self.sock.kernel = Kernel(self.ring)
        self.stack = stack
        self.ifp = afa.build(stack, self.sock, self.ring, 7, "veth1", mtu, flags, MAC, o,
                             "Linux veth1")
        self.sc = self.ifp.softc
        self.link = ["veth1", flags, mtu]
        self.sc.query_link = self._link
        self.bursts = []
        self.meta = []

        def record(ifp, pkts):
            burst = []
            for m in pkts:
                assert m.rcvif is ifp and m.pkt_len == m.chain_len()
                burst.append(m.tobytes())
                self.meta.append((m.csum_flags, m.csum_data, m.segsz) if m.csum_flags
                                 else (0, 0, 0))
                stack.pool.freem(m)
            self.bursts.append(burst)

        self.ifp.if_input = record

    def _link(self):
        if isinstance(self.link, OSError):
            raise self.link
        return tuple(self.link)

    def frames(self):
        return [f for b in self.bursts for f in b]

    def send(self, *frames):
        pool = self.stack.pool
        ms = [pool.from_bytes(f) if not hasattr(f, "pkt_len") else f for f in frames]
        self.ifp.if_transmit(self.ifp, ms)


def frame(i: int, size: int = 60) -> bytes:
    body = i.to_bytes(2, "big") * ((size - 14) // 2 + 1)
    return ETH + body[:size - 14]


def tcp_frame(n: int, seq: int = 1000, partial: bool = True) -> bytes:
    """Ethernet + IPv4 + TCP with `n` payload bytes; the checksum left
    partial (the pseudo-header sum) as CHECKSUM_PARTIAL frames have it."""
    pkt = bytearray(raw(IP(src="198.18.0.2", dst="198.19.0.2", id=7, flags="DF")
                         / TCP(sport=4000, dport=5201, seq=seq, flags="PA")
                         / bytes(i & 0xFF for i in range(n))))
    if partial:
        pkt[36:38] = pseudo_seed(bytes(pkt), 20).to_bytes(2, "big")
    return ETH + bytes(pkt)


def udp_frame(n: int) -> bytes:
    pkt = bytearray(raw(IP(src="198.18.0.2", dst="198.19.0.2") / UDP(sport=9, dport=9)
                         / bytes(n)))
    pkt[26:28] = pseudo_seed(bytes(pkt), 20).to_bytes(2, "big")
    return ETH + bytes(pkt)


def hdr(flags=0, gso=0, hdr_len=0, gso_size=0, start=0, off=0):
    return vnet.HDR.pack(flags, gso, hdr_len, gso_size, start, off)


def l4_csum_ok(frame: bytes) -> bool:
    p = IP(frame[14:])
    l4 = p[TCP] if TCP in p else p[UDP]
    c = l4.chksum
    del l4.chksum
    return IP(raw(p))[l4.__class__].chksum == c


# -- receive ---------------------------------------------------------------------
def test_attach_state(stack, caplog):
    n = Nic(stack, framesize=BIG, rxframes=2, txframes=2)
    ifp = n.ifp
    assert ifp.name == "afp0" and ifp.lladdr == MAC and ifp.mtu == 1500
    assert ifp.flags & IFF_RUNNING and ifp.link_state == LINK_STATE_UP
    assert ifp.capabilities == ALL and ifp.capenable == ALL     # offload=1: as devnp-tap
    assert stack.pool.njumbo                                    # for super-frames
    # A slot too small for a 64 KB super-frame: checksum offload only, said.
    small = Nic(stack, framesize=2048).ifp
    assert small.name == "afp1" and small.capabilities == ALL & ~(IFCAP_TSOv4 | IFCAP_TSOv6)
    assert "cannot carry a 64 KB super-frame" in caplog.text


def test_receive_in_bursts_and_around_the_ring(stack):
    n = Nic(stack, rxframes=8, opts="burst=3")
    sent = [frame(i, 60 + i) for i in range(30)]                # more than the ring's 8
    for k in range(0, 30, 5):
        for f in sent[k:k + 5]:
            assert n.kernel.rx(f)
        while n.kernel.rx_slots_ours() < 8:
            n.sc.intr(EPOLLIN)
    assert [len(b) for b in n.bursts][:2] == [3, 2]             # burst=3, then the rest
    assert n.frames() == sent and n.kernel.drops == 0
    assert n.sc.rx_intrs == len(n.bursts)
    n.sc.intr(EPOLLIN)                                          # nothing: no call
    assert len(n.bursts) == n.sc.rx_intrs - 1
    assert stack.pool.in_use == 0


def test_a_full_ring_drops_in_the_kernel_and_goes_on(stack):
    n = Nic(stack, rxframes=8)
    assert all(n.kernel.rx(frame(i)) for i in range(8))
    assert not n.kernel.rx(frame(99))                           # no slot: the kernel drops
    n.sc.intr(EPOLLIN)
    assert n.kernel.rx(frame(8))
    n.sc.intr(EPOLLIN)
    assert n.frames() == [frame(i) for i in range(9)]


def test_a_frame_cut_short_is_too_long_and_the_ring_goes_on(stack):
    n = Nic(stack, opts="offload=0")
    big = frame(1, 1900) + bytes(3000)                          # longer than a slot
    n.kernel.rx(frame(1))
    n.kernel.rx(big)
    n.kernel.rx(frame(2))
    n.sc.intr(EPOLLIN)
    assert n.frames() == [frame(1), frame(2)]
    assert n.ifp.in_discards["too_long"] == 1 and n.sc.rx_too_long == 1
    assert n.kernel.rx_slots_ours() == 8                        # every slot back


def test_a_vlan_tagged_frame_is_not_ours(stack):
    n = Nic(stack)
    n.kernel.rx(frame(1), status=TP_STATUS_VLAN_VALID)
    n.kernel.rx(frame(2))
    n.sc.intr(EPOLLIN)
    assert n.frames() == [frame(2)]
    assert n.ifp.in_discards["unknown_ethertype"] == 1


def test_pool_empty_drops_counted_and_gives_the_slot_back(stack):
    n = Nic(stack)
    hog = [stack.pool.get() for _ in range(stack.pool.nclusters)]
    n.kernel.rx(frame(1))
    n.sc.intr(EPOLLIN)
    assert n.frames() == [] and n.ifp.in_discards["nobufs"] == 1
    assert n.kernel.rx_slots_ours() == 8
    for m in hog:
        stack.pool.free(m)


def test_partial_checksums_go_up_partial_with_offload(stack):
    n = Nic(stack)
    f, u = tcp_frame(100), udp_frame(50)
    n.kernel.rx(f, hdr(NEEDS, 0, 0, 0, 34, 16), TP_STATUS_CSUMNOTREADY)
    n.kernel.rx(u, hdr(NEEDS, 0, 0, 0, 34, 6), TP_STATUS_CSUMNOTREADY)
    n.kernel.rx(frame(3), hdr(vnet.VIRTIO_NET_HDR_F_DATA_VALID))
    n.sc.intr(EPOLLIN)
    assert n.frames() == [f, u, frame(3)]
    assert n.meta == [(M_CSUM_TCPv4, (20 << 16) | 16, 0), (M_CSUM_UDPv4, (20 << 16) | 6, 0),
                      (0, 0, 0)]
    assert n.sc.rx_partial == 2 and n.ifp.sw_csum == 0


def test_partial_checksums_are_completed_without_offload(stack):
    n = Nic(stack, opts="offload=0")
    assert n.ifp.capabilities == 0
    f, u = tcp_frame(100), udp_frame(50)
    n.kernel.rx(f, hdr(NEEDS, 0, 0, 0, 34, 16), TP_STATUS_CSUMNOTREADY)
    n.kernel.rx(u, hdr(NEEDS, 0, 0, 0, 34, 6), TP_STATUS_CSUMNOTREADY)
    n.sc.intr(EPOLLIN)
    got = n.frames()
    assert [len(x) for x in got] == [len(f), len(u)] and all(map(l4_csum_ok, got))
    assert got[0][:50] == f[:50] and n.meta == [(0, 0, 0), (0, 0, 0)]
    assert n.ifp.sw_csum == 2


def test_a_lying_vnet_header_is_bad_offload(stack):
    n = Nic(stack)
    n.kernel.rx(tcp_frame(100), hdr(NEEDS, 0, 0, 0, 34, 4000), TP_STATUS_CSUMNOTREADY)
    n.kernel.rx(frame(2))
    n.sc.intr(EPOLLIN)
    assert n.frames() == [frame(2)] and n.ifp.in_discards["bad_offload"] == 1


def superframe(n=20000, mss=1448):
    f = tcp_frame(n)
    return f, hdr(NEEDS, vnet.VIRTIO_NET_HDR_GSO_TCPV4, 54, mss, 34, 16)


def test_a_superframe_goes_up_whole_in_a_cluster_and_a_jumbo(stack):
    n = Nic(stack, framesize=BIG, rxframes=2, txframes=2)
    f, h = superframe(60000)
    n.kernel.rx(f, h, TP_STATUS_CSUMNOTREADY)
    n.sc.intr(EPOLLIN)
    assert n.frames() == [f]
    assert n.meta == [(M_CSUM_TSOv4 | M_CSUM_TCPv4, (20 << 16) | 16, 1448)]
    assert n.sc.rx_super == 1 and stack.pool.jumbo_in_use == 0


@pytest.mark.parametrize("opts", ["offload=0", "tso4=0"])
def test_a_superframe_is_segmented_here_without_tso4(stack, opts):
    n = Nic(stack, framesize=BIG, rxframes=2, txframes=2, opts=opts)
    f, h = superframe(5000, 1000)
    n.kernel.rx(f, h, TP_STATUS_CSUMNOTREADY)
    n.sc.intr(EPOLLIN)
    segs = n.frames()
    want = expected_segments(f[14:], 1000)
    assert len(segs) == len(want) == 5
    if opts == "offload=0":                     # complete checksums, as scapy makes them
        assert [s[14:] for s in segs] == want
        assert all(m == (0, 0, 0) for m in n.meta)
    else:                                       # tcp4csum-rx on: left partial
        assert all(m[0] == M_CSUM_TCPv4 for m in n.meta)
    assert all(s[:14] == ETH for s in segs)
    assert n.ifp.sw_tso == 1 and n.ifp.sw_tso_segs == 5


def superframe6(n=5000, mss=1000):
    """A TCPv6 super-frame as the peer's GSO hands it: its TCP checksum
    field holds the pseudo-header sum."""
    from scapy.layers.inet6 import IPv6
    ip = raw(IPv6(src="2001:2:0:a::2", dst="2001:2:0:b::2") / TCP(sport=1, dport=2, flags="A")
             / bytes(i & 0xFF for i in range(n)))
    b = bytearray(ETH[:12] + b"\x86\xdd" + ip)
    b[14 + 56:14 + 58] = pseudo_seed(ip, 40).to_bytes(2, "big")
    return bytes(b), ip, hdr(NEEDS, vnet.VIRTIO_NET_HDR_GSO_TCPV6, 74, mss, 54, 16)


def test_an_ipv6_superframe_goes_up_whole_with_tso6(stack):
    n = Nic(stack, framesize=BIG, rxframes=2, txframes=2)
    f, _, h = superframe6(60000, 1428)
    n.kernel.rx(f, h, TP_STATUS_CSUMNOTREADY)
    n.sc.intr(EPOLLIN)
    assert n.frames() == [f]
    assert n.meta == [(M_CSUM_TSOv6 | M_CSUM_TCPv6, (40 << 16) | 16, 1428)]
    assert n.sc.rx_super == 1


@pytest.mark.parametrize("opts,cut", [("tso6=0", True), ("tso4=0", False)],
                         ids=["notso6", "notso4"])
def test_an_ipv6_superframe_is_cut_here_only_without_tso6(stack, opts, cut):
    n = Nic(stack, framesize=BIG, rxframes=2, txframes=2, opts=opts)
    f, ip, h = superframe6()
    n.kernel.rx(f, h, TP_STATUS_CSUMNOTREADY)
    n.sc.intr(EPOLLIN)
    got = n.frames()
    if cut:
        assert len(got) == 5 and n.ifp.sw_tso_segs == 5
        for g, w in zip(got, expected_segments(ip, 1000)):
            m = stack.pool.from_bytes(g[14:])       # complete the partial checksum
            m.csum_flags, m.csum_data = M_CSUM_TCPv4, (40 << 16) | 16
            in_undefer_cksum(m)
            assert m.tobytes() == w
            stack.pool.freem(m)
    else:
        assert got == [f] and n.ifp.sw_tso == 0


@pytest.mark.parametrize("family,opts,whole", [
    ("v4", "tso4=0,tcp4csum=0", True), ("v4", "tso4=0,tso6=0,tcp6csum=0", False),
    ("v6", "tso6=0,tcp6csum=0", True), ("v6", "tso4=0,tso6=0,tcp4csum=0", False),
], ids=["v4-tcp4off", "v4-tcp6off", "v6-tcp6off", "v6-tcp4off"])
def test_segments_cut_here_are_completed_by_their_own_familys_rx_offload(stack, family, opts,
                                                                         whole):
    """Cut here, a super-frame's segments get complete checksums when its
    own family's TCP Rx checksum offload is off, and stay partial when only
    the other family's is."""
    n = Nic(stack, framesize=BIG, rxframes=2, txframes=2, opts=opts)
    if family == "v4":
        f, h = superframe(5000, 1000)
        ip, flag, cdata = f[14:], M_CSUM_TCPv4, (20 << 16) | 16
    else:
        f, ip, h = superframe6()
        flag, cdata = M_CSUM_TCPv6, (40 << 16) | 16
    n.kernel.rx(f, h, TP_STATUS_CSUMNOTREADY)
    n.sc.intr(EPOLLIN)
    want = expected_segments(ip, 1000)
    got = n.frames()
    assert len(got) == len(want) == 5 and n.ifp.sw_tso_segs == 5
    if whole:
        assert [g[14:] for g in got] == want and n.meta == [(0, 0, 0)] * 5
    else:
        assert n.meta == [(flag, cdata, 0)] * 5
        for g, w in zip(got, want):
            m = stack.pool.from_bytes(g[14:])
            m.csum_flags, m.csum_data = flag, cdata
            in_undefer_cksum(m)
            assert m.tobytes() == w
            stack.pool.freem(m)


def test_a_superframe_without_offload_is_too_long_and_said_once(stack, caplog):
    n = Nic(stack, opts="offload=0")
    f, h = superframe(7000)
    for _ in range(2):
        n.kernel.rx(f, h, TP_STATUS_CSUMNOTREADY)
    n.kernel.rx(frame(1))
    n.sc.intr(EPOLLIN)
    assert n.frames() == [frame(1)] and n.sc.rx_too_long == 2
    said = [r.message for r in caplog.records if "too_long" in r.message]
    assert len(said) == 1 and "tso off gso off" in said[0] and "offload=1" in said[0]


def test_v3_blocks_read_across_bursts(stack):
    n = Nic(stack, ring="v3", rxframes=8, opts="burst=4")
    sent = [frame(i, 60 + 7 * i) for i in range(10)]
    for f in sent[:6]:
        n.kernel.rx(f)
    n.kernel.close_block()
    for f in sent[6:]:
        n.kernel.rx(f)
    n.kernel.close_block()
    n.sc.intr(EPOLLIN)                          # 4 of the first block's 6
    assert n.kernel.rx_slots_ours() == len(n.ring.rx_blocks) - 2     # still ours
    n.sc.intr(EPOLLIN)                          # its last 2, 2 of the next block
    assert n.kernel.rx_slots_ours() == len(n.ring.rx_blocks) - 1
    n.sc.intr(EPOLLIN)
    assert n.frames() == sent and [len(b) for b in n.bursts] == [4, 4, 2]
    assert n.kernel.rx_slots_ours() == len(n.ring.rx_blocks) and n.sc.rx_blocks == 2


def test_v3_offload_and_truncation(stack):
    n = Nic(stack, ring="v3", framesize=2048, rxframes=8, opts="offload=0")
    f = tcp_frame(100)
    n.kernel.rx(f, hdr(NEEDS, 0, 0, 0, 34, 16), TP_STATUS_CSUMNOTREADY)
    n.kernel.rx(frame(2), tp_len=70000)         # cut short by the kernel
    n.kernel.close_block()
    n.sc.intr(EPOLLIN)
    assert len(n.frames()) == 1 and l4_csum_ok(n.frames()[0])
    assert n.sc.rx_too_long == 1


# -- transmit --------------------------------------------------------------------
def test_a_burst_is_one_kick_and_lands_in_order(stack):
    n = Nic(stack, txframes=8)
    sent = [frame(i, 60 + i) for i in range(5)]
    n.send(*sent)
    assert n.sock.kicks == 1
    out = n.kernel.sent
    assert [f for _, f in out] == sent
    # Zero virtio header but hdr_len: the kernel copies the whole frame.
    assert [h for h, _ in out] == [hdr(0, 0, len(f)) for f in sent]
    assert (n.ifp.opackets, n.ifp.obytes) == (5, sum(map(len, sent)))
    assert stack.pool.in_use == 0 and n.sc.tx_refused == 0


def test_transmit_wraps_around_the_ring(stack):
    n = Nic(stack, txframes=4)
    sent = [frame(i) for i in range(11)]
    for f in sent:
        n.send(f)
    assert n.sock.kicks == 11 and n.sc.tx_ring_full == 0
    assert [f for _, f in n.kernel.sent] == sent


def test_a_full_ring_queues_waits_for_epollout_and_keeps_the_order(stack):
    n = Nic(stack, txframes=4)
    n.sock.mode = "hold"                        # in flight, not freed yet
    sent = [frame(i) for i in range(10)]
    n.send(*sent)
    assert len(n.kernel.sent) == 4 and n.ifp.flags & IFF_OACTIVE
    assert n.ifp.if_snd.len == 6 and n.sc.tx_ring_full == 1
    n.send(frame(10))                           # behind the queue, never before it
    assert n.ifp.if_snd.len == 7
    for _ in range(3):
        n.kernel.tx_done()                      # skbs freed: EPOLLOUT
        n.sc.intr(EPOLLOUT)
    assert [f for _, f in n.kernel.sent] == sent + [frame(10)]
    assert not n.ifp.flags & IFF_OACTIVE and n.ifp.if_snd.len == 0
    assert n.ifp.opackets == 11


def test_a_full_ring_is_kicked_once_before_queueing(stack):
    n = Nic(stack, txframes=4)                  # slots come back at every kick
    n.send(*[frame(i) for i in range(10)])      # 4, kick, 4, kick, 2, kick
    assert n.sc.tx_ring_full == 0 and n.ifp.opackets == 10 and n.sock.kicks == 3


def test_offload_frames_carry_their_vnet_header(stack):
    n = Nic(stack, framesize=BIG, rxframes=2, txframes=4)
    pool = stack.pool
    part = pool.from_bytes(tcp_frame(300))
    part.csum_flags, part.csum_data = M_CSUM_TCPv4, (20 << 16) | 16
    big = pool.from_bytes(tcp_frame(8000))                    # a chain
    big.csum_flags, big.csum_data, big.segsz = M_CSUM_TSOv4 | M_CSUM_TCPv4, (20 << 16) | 16, 1448
    n.send(part, big, frame(1))
    out = n.kernel.sent
    assert out[0] == (hdr(NEEDS, 0, len(tcp_frame(300)), 0, 34, 16), tcp_frame(300))
    assert out[1] == (hdr(NEEDS, vnet.VIRTIO_NET_HDR_GSO_TCPV4, len(tcp_frame(8000)), 1448,
                          34, 16), tcp_frame(8000))
    assert out[2] == (hdr(0, 0, 60), frame(1))
    assert n.sc.tx_super == 1 and pool.in_use == 0


def test_a_frame_the_kernel_skips_is_counted_once_said(stack, caplog):
    n = Nic(stack, framesize=BIG, rxframes=2, txframes=4)
    n.kernel.refuse = lambda h, f: h[1] != 0                  # GSO: some kernels say EINVAL
    big = stack.pool.from_bytes(tcp_frame(8000))
    big.csum_flags, big.csum_data, big.segsz = M_CSUM_TSOv4 | M_CSUM_TCPv4, (20 << 16) | 16, 1448
    n.send(frame(1), big, frame(2))
    assert [f for _, f in n.kernel.sent] == [frame(1), frame(2)]
    assert n.sc.tx_refused == 1 and n.sc._kick_co is None
    n.send(frame(3))
    assert n.sc.tx_refused == 1
    assert caplog.text.count("would not send") == 1


def test_a_kick_stopped_by_the_send_buffer_is_kicked_again(stack, clock):
    n = Nic(stack)
    n.sock.mode = "none"                        # sent nothing, the slots still wait
    n.send(frame(1), frame(2))
    assert n.kernel.sent == [] and n.sc.tx_refused == 0 and n.sc._kick_co is not None
    n.sock.mode = "send"
    clock.advance(0.01)
    stack._run_callouts()
    assert [f for _, f in n.kernel.sent] == [frame(1), frame(2)]


def test_a_frame_longer_than_a_slot_is_dropped_not_written(stack):
    n = Nic(stack, txframes=4)
    n.send(frame(1, 3000), frame(2))
    assert [f for _, f in n.kernel.sent] == [frame(2)]
    assert n.ifp.out_discards["txerror"] == 1 and n.sc.tx_too_long == 1
    assert n.sc.tx_refused == 0


def test_a_kick_the_kernel_cannot_finish_is_tried_again(stack, clock):
    n = Nic(stack)
    n.sock.errors = [errno.ENOBUFS]             # the peer dropped one: it stays at the head
    n.send(frame(1))
    assert n.sc.tx_kick_errors == 1 and n.sock.kicks == 1 and n.kernel.sent == []
    clock.advance(0.01)
    stack._run_callouts()
    assert n.sock.kicks == 2
    assert [f for _, f in n.kernel.sent] == [frame(1)] and n.sc.tx_refused == 0


# -- link ------------------------------------------------------------------------
def test_link_follows_the_linux_interface(stack, clock, caplog):
    caplog.set_level(logging.INFO, "iopkt")
    n = Nic(stack)
    ifp = n.ifp
    n.link[1] = lxif.LX_IFF_UP                   # carrier lost
    clock.advance(1.1)
    stack._run_callouts()
    assert ifp.link_state == LINK_STATE_DOWN and not ifp.flags & IFF_RUNNING
    assert "no carrier" in caplog.text
    n.link[1] = UP
    n.link[2] = 1400                            # and its MTU changed
    clock.advance(1.1)
    stack._run_callouts()
    assert ifp.link_state == LINK_STATE_UP and ifp.flags & IFF_RUNNING and ifp.mtu == 1400
    assert n.sc.link_changes == 2
    n.link[2] = 9000                            # more than a 2048-byte frame carries
    clock.advance(1.1)
    stack._run_callouts()
    assert ifp.mtu == 2048 - 76 - 14 - 4


def test_enetdown_on_the_socket_takes_the_link_down(stack):
    n = Nic(stack)
    n.link[1] = 0                               # ip link set down
    n.sock.so_error = errno.ENETDOWN
    n.sc.intr(afp.EPOLLERR)
    assert n.sock.so_error == 0                 # read, so cleared
    assert n.ifp.link_state == LINK_STATE_DOWN and n.sc.sock_errors == 1


def test_a_kick_that_says_enetdown_looks_at_the_link(stack):
    n = Nic(stack)
    n.link[1] = 0
    n.sock.errors = [errno.ENETDOWN]
    n.send(frame(1))
    assert n.ifp.link_state == LINK_STATE_DOWN
    n.send(frame(2))                            # (ether_output would not even try)
    assert n.ifp.if_snd.len == 0


def test_an_interface_that_disappears_is_link_lost(stack, clock):
    n = Nic(stack)
    n.link = OSError(errno.ENODEV, "No such device")
    clock.advance(1.1)
    stack._run_callouts()
    assert n.ifp.link_state == LINK_STATE_DOWN and not n.ifp.flags & (IFF_RUNNING | 1)
    assert n.sc._lost


def test_kick_enxio_is_link_lost(stack):
    n = Nic(stack)
    n.sock.errors = [errno.ENXIO]
    n.send(frame(1), frame(2))
    assert n.sc._lost and n.ifp.link_state == LINK_STATE_DOWN


def test_ring_statistics_are_summed(stack):
    n = Nic(stack, ring="v3")
    n.sock.stats = [10, 2, 1]
    n.sc.read_stats()
    n.sock.stats = [5, 1, 0]
    info = n.ifp.if_extra_info(n.ifp)
    assert (info["ring_packets"], info["ring_drops"], info["ring_freezes"]) == (15, 3, 1)
    assert info["ring_bytes"] == len(n.ring.mem) and info["ring"] == "v3"


def test_capabilities_turned_off_are_done_here(stack):
    n = Nic(stack, framesize=BIG, rxframes=2, txframes=2)
    n.ifp.set_capenable(ALL & ~(IFCAP_CSUM_TCPv4_Rx | IFCAP_CSUM_TCPv4_Tx | IFCAP_TSOv4
                                | IFCAP_TSOv6))
    f = tcp_frame(100)
    n.kernel.rx(f, hdr(NEEDS, 0, 0, 0, 34, 16), TP_STATUS_CSUMNOTREADY)
    n.sc.intr(EPOLLIN)
    assert l4_csum_ok(n.frames()[0]) and n.ifp.sw_csum == 1


def test_detach_unmaps_and_closes(stack):
    n = Nic(stack)
    n.kernel.rx(frame(1))
    stack.if_detach(n.ifp)
    assert n.sock.closed and n.sc.fd == -1
    with pytest.raises(ValueError):
        n.ring.mv[0]                            # the views are released
    assert stack.pool.in_use == 0


def test_small_frames_need_no_jumbo_clusters(stack):
    Nic(stack, opts="offload=0")
    assert stack.pool.njumbo == 0


# -- options -----------------------------------------------------------------------
@pytest.mark.parametrize("text,words", [
    ("", "ifname=... is required"),
    ("ifname=a/b", "interface name"),
    ("ifname=veth1,ring=v1", "ring=v1: v2 or v3"),
    ("ifname=veth1,framesize=2050", "multiple of 16"),
    ("ifname=veth1,framesize=128", "256.."),
    ("ifname=veth1,rxframes=100000", "rxframes=100000: must be 0..65536"),
    ("ifname=veth1,burst=0", "burst=0"),
    ("ifname=veth1,blocktmo=5000", "blocktmo=5000"),
    ("ifname=veth1,mac=01:00:00:00:00:01", "unicast"),
    ("ifname=veth1,netns=..", "netns=.."),
])
def test_bad_options_are_usage_errors(text, words):
    from iopkt.kern.mbuf import MbufPool
    with pytest.raises(DriverError) as e:
        afa.check_options(DRIVER.parse_options(text), MbufPool(4).mclbytes - 64)
    assert words in str(e.value)


def test_a_missing_namespace_is_a_usage_error():
    with pytest.raises(DriverError, match="no network namespace 'nope-afp'"):
        afa.open_socket("veth1", "nope-afp")
