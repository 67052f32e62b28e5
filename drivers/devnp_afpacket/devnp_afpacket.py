"""devnp-afpacket: a native io-pkt style driver whose "NIC" is an existing
Linux interface (a veth end, a real NIC), driven through an AF_PACKET
socket with PACKET_MMAP rings.

    -d afpacket ifname=veth1[,netns=NS]

The socket is made inside the interface's namespace (netns.inside: only
the attaching thread visits it, the stack stays in its own) and bound to
that one interface. It is the driver's "interrupt", so receive runs in the
stack thread: frames are taken from the RX ring, each copied straight into
a pooled mbuf cluster (the slot goes back to the kernel at once), and
handed to if_input in bursts of at most `burst` frames. Transmit copies
each frame of a burst into the next free slot of the TX ring and kicks the
ring with one send() per burst; the kernel then sends every slot marked
SEND_REQUEST. Nothing here blocks: the socket is non-blocking, the kick is
MSG_DONTWAIT, and a full TX ring puts the rest on if_snd (IFF_OACTIVE) and
waits for EPOLLOUT.

Ring version (ring=v2|v3). A TPACKET_V2 RX slot is handed to us as soon as
its frame is in it. A TPACKET_V3 ring packs variable-sized frames into
blocks, but hands a block over only when it is full or its timeout
(blocktmo, ms) expires: that timeout is latency. Measured through two
interfaces (iperf3 TCP 3 s each way, ping every 20 ms, stack on one core):
v3 with a 1 ms timeout gave ping RTTs of 1.2-1.8 ms (5-9 ms with the
kernel's default timeout, in the prototype) against 0.33 ms for v2, and
the same throughput
within this VM's noise (offload on: 5.9-8.3 against 5.5-6.7 Gbit/s; off:
1.02-1.18 against 1.04-1.36), so v2 is the default. TX slots are
fixed-size frames in both versions.

Ring sizes. v2 frames are fixed-size, so one frame size serves every
frame: wire-sized (framesize 2048) without offload, a 64 KB TCP
super-frame with it (65632: 76 bytes of slot header and virtio header in
front of 65549). The ring is kernel memory, pinned: nicinfo shows its
size (ring_bytes) and layout. Blocks are powers of two pages holding
whole frames, as few bytes in all as the frame count allows (ring_layout).
Defaults, measured the same way: rxframes 2048 without offload (4 MB; with
512 the ring dropped about 10,000 frames in 3 s of iperf3, as many as TCP
retransmitted, since a veth peer's bursts arrive all at once; 2048 and
8192 dropped none), 128 with offload (135 after rounding to 1 MB blocks: 9
MB, no drops); txframes 256 (512 KB) and 64 (70: 5 MB). A frame longer
than a ring frame is cut short by the kernel (tp_snaplen < tp_len):
counted as too_long and dropped, and the ring goes on.

The virtio-net header (PACKET_VNET_HDR) is always on, whatever `offload`
says, because veth and most NICs hand AF_PACKET frames whose TCP/UDP
checksum is still partial (CHECKSUM_PARTIAL: the link partner's TX
checksum offload, or GSO): without the header we could not tell them from
good frames and would forward wrong checksums. With offload=1 (the
default, as devnp-tap) the header's facts become the packet header's
csum_flags/csum_data/segsz (vnet.py) and the interface advertises TSO4 and
TCP/UDP checksum offload, so 64 KB super-frames cross whole in both
directions (TX writes the header into the slot too). With offload=0 the
interface advertises nothing: a partial checksum is completed here on
receive (nicinfo: "Checksums completed in software"), and a super-frame
the peer sends (its TSO/GSO is on) cannot be refused: it is cut into
segments here when it fits a ring frame (framesize >= 65632; counted as
"Super-frames segmented in software"), else it is truncated by the
kernel and dropped as too_long (said once in the log: turn TSO/GSO off on
the peer, or use offload=1). The same rules apply to one capability
turned off with ifconfig (-tso4, -tcp4csum, ...).

The TX ring is set up with PACKET_LOSS: a malformed slot is skipped
instead of wedging the ring in TP_STATUS_WRONG_FORMAT. We never write one
knowingly (a frame longer than a slot is dropped before, as txerror); one
the kernel skips anyway, such as a GSO header some kernels refuse, shows
as a kick that sent fewer bytes than were written (nicinfo: "Transmit
kicks with frames refused"). The socket has PACKET_IGNORE_OUTGOING (it
does not see what it sent), and is bound to the interface only after the
rings exist (made with protocol 0, bound with ETH_P_ALL), so no other
interface's traffic ever lands in the ring.

Each TX frame is copied by the kernel into the skb it builds (the virtio
header's hdr_len says the whole frame is header) rather than referenced as
page fragments of the ring: a referenced slot is handed back (AVAILABLE)
when the skb is orphaned, and veth hands skbs to the peer's IP layer,
which orphans them while TCP may still hold the pages; the slot written
again would change bytes already received. We could not make that happen
(SHA-256 checked TCP streams through a 2-slot TX ring and a slow reader
arrived intact either way), but the copy costs nothing we can measure:
iperf3 through two interfaces gave 4.2-5.2 Gbit/s referenced and 5.2-10.1
copied (offload on), 0.6-1.0 against 0.8-1.2 (offload off).

Link state and MTU follow the Linux interface: a 1 s callout reads its
flags and MTU (SIOCGIFNAME/SIOCGIFFLAGS/SIOCGIFMTU on the socket, which
answers in the socket's namespace). IFF_UP and IFF_RUNNING (carrier) make
ifp.link_state up; down, the interface stops transmitting (ether_output
drops as "down") until it is up again. The kernel also reports a downed
interface on the socket (EPOLLERR, ENETDOWN), which triggers the same
check at once. An interface that disappears (deleted, moved to another
namespace: SIOCGIFNAME says ENODEV, send() ENXIO) is link loss:
stack.link_lost. PACKET_STATISTICS (tp_packets, tp_drops and, with v3,
tp_freeze_q_cnt: the kernel resets them when read) are summed by the same
callout and shown in nicinfo.
"""

from __future__ import annotations

import errno
import fcntl
import logging
import mmap
import os
import re
import socket
import struct

from iopkt.dev.autoconf import DeviceError, Driver, DriverError, Option, check_ifname
from iopkt.kern.loop import EPOLLIN, EPOLLOUT
from iopkt.kern.mbuf import MJUMBYTES, M_CSUM_TCPv4, M_CSUM_TSOv4, M_CSUM_UDPv4
from iopkt.net import vnet
from iopkt.net.ether import ETHER_HDR_LEN, ether_ifattach, mac_aton
from iopkt.net.ifnet import (
    IFF_OACTIVE,
    IFF_RUNNING,
    IFF_UP,
    LINK_STATE_DOWN,
    LINK_STATE_UP,
    SIOCSIFCAP,
    IFCAP_CSUM_TCPv4_Rx,
    IFCAP_CSUM_TCPv4_Tx,
    IFCAP_CSUM_UDPv4_Rx,
    IFCAP_CSUM_UDPv4_Tx,
    IFCAP_TSOv4,
    Ifnet,
    if_transmit,
)
from iopkt.netinet.in_offload import in_undefer_cksum, tcp4_segment, tso_header_len

log = logging.getLogger("iopkt")
MAC_RE = re.compile(r"[0-9A-Fa-f]{1,2}(:[0-9A-Fa-f]{1,2}){5}")

# -- include/uapi/linux/if_packet.h ------------------------------------------
SOL_PACKET = 263
PACKET_ADD_MEMBERSHIP = 1
PACKET_RX_RING = 5
PACKET_STATISTICS = 6
PACKET_VERSION = 10
PACKET_TX_RING = 13
PACKET_LOSS = 14
PACKET_VNET_HDR = 15
PACKET_IGNORE_OUTGOING = 23
PACKET_MR_PROMISC = 1
TPACKET_V2 = 1
TPACKET_V3 = 2
ETH_P_ALL = 0x0003

# tp_status, RX (the kernel gives a slot to us with USER, we give it back with KERNEL)
TP_STATUS_KERNEL = 0
TP_STATUS_USER = 0x1
TP_STATUS_COPY = 0x2
TP_STATUS_LOSING = 0x4
TP_STATUS_CSUMNOTREADY = 0x8        # CHECKSUM_PARTIAL: the vnet header says where
TP_STATUS_VLAN_VALID = 0x10         # a VLAN tag was taken off into tp_vlan_tci
TP_STATUS_BLK_TMO = 0x20
# tp_status, TX (we hand a slot to the kernel with SEND_REQUEST; it is ours
# again when it is AVAILABLE)
TP_STATUS_AVAILABLE = 0
TP_STATUS_SEND_REQUEST = 0x1
TP_STATUS_SENDING = 0x2
TP_STATUS_WRONG_FORMAT = 0x4
TX_BUSY = TP_STATUS_SEND_REQUEST | TP_STATUS_SENDING | TP_STATUS_WRONG_FORMAT

TPACKET_ALIGNMENT = 16
SOCKADDR_LL_LEN = 20
TPACKET2_HDR_LEN = 32               # struct tpacket2_hdr
TPACKET3_HDR_LEN = 48               # struct tpacket3_hdr
BLOCK_DESC_LEN = 48                 # struct tpacket_block_desc (v3 RX), 8-aligned
TPACKET_REQ = struct.Struct("IIII")             # block_size, block_nr, frame_size, frame_nr
TPACKET_REQ3 = struct.Struct("IIIIIII")         # + retire_blk_tov, sizeof_priv, feature_req_word
PACKET_MREQ = struct.Struct("iHH8s")            # ifindex, type, alen, address

PAGE = mmap.PAGESIZE
MAX_BLOCK = 4 << 20                 # largest ring block we ask for (order-10 pages)
MAX_RING_BYTES = 256 << 20          # per ring
V3_BLOCK = 256 << 10                # v3 RX blocks at least this big
VNET_HDR_LEN = vnet.VNET_HDR_LEN
MAX_FRAME = ETHER_HDR_LEN + 65535   # an IPv4 super-frame at most
VLAN_SLACK = 4

# -- linux/sockios.h, linux/if.h ----------------------------------------------
SIOCGIFNAME = 0x8910
SIOCGIFFLAGS = 0x8913
SIOCSIFFLAGS = 0x8914
SIOCGIFMTU = 0x8921
SIOCGIFHWADDR = 0x8927
SIOCGIFINDEX = 0x8933
LX_IFF_UP = 0x1
LX_IFF_RUNNING = 0x40               # up and carrier (netif_oper_up)
IFREQ = 40

LINK_LOST_ERRNOS = (errno.ENXIO, errno.ENODEV, errno.EBADFD)
CSUM_CAPS = IFCAP_CSUM_TCPv4_Rx | IFCAP_CSUM_TCPv4_Tx | IFCAP_CSUM_UDPv4_Rx | IFCAP_CSUM_UDPv4_Tx
EPOLLERR = 0x008
KICK_RETRY = 0.002                  # s: a kick the kernel could not finish is tried again


def tpacket_align(x: int) -> int:
    return (x + TPACKET_ALIGNMENT - 1) & ~(TPACKET_ALIGNMENT - 1)


class Geometry:
    """Where things are in one ring version's slots (if_packet.h,
    net/packet/af_packet.c), with the virtio-net header on.

    RX: the kernel puts an Ethernet frame at tp_mac = TPACKET_ALIGN(hdrlen
    + 16) + 10 - 14 from the slot's start (76 in v2, 92 in v3), the vnet
    header in the 10 bytes before it. TX: a frame (with its vnet header
    first) starts at hdrlen - sizeof(sockaddr_ll) (32 in v2, 48 in v3) and
    tp_len counts the header too."""

    def __init__(self, version: int):
        self.version = version
        if version == TPACKET_V2:
            hdr = TPACKET2_HDR_LEN
            # tp_status, tp_len, tp_snaplen, tp_mac
            self.rx_hdr = struct.Struct("<IIIH")
            self.tx_status, self.tx_len = 0, 4
        elif version == TPACKET_V3:
            hdr = TPACKET3_HDR_LEN
            # tp_next_offset, (sec, nsec), tp_snaplen, tp_len, tp_status, tp_mac
            self.rx_hdr = struct.Struct("<I8xIIIH")
            self.tx_status, self.tx_len = 20, 16
        else:
            raise ValueError(f"TPACKET version {version}")
        self.hdrlen = tpacket_align(hdr) + SOCKADDR_LL_LEN      # what PACKET_HDRLEN says
        self.rx_mac = tpacket_align(self.hdrlen + 16) + VNET_HDR_LEN - ETHER_HDR_LEN
        self.tx_data = self.hdrlen - SOCKADDR_LL_LEN
        # One pack_into per plain TX frame: tp_len and the virtio header
        # (all zero but hdr_len = the frame's length: copy it all, above).
        self.tx_plain = struct.Struct(f"<{self.tx_len}xI{self.tx_data - self.tx_len - 4}x2xH6x")
        self.tx_lenfmt = struct.Struct("<I")

    def rx_room(self, framesize: int) -> int:
        """The longest frame an RX slot (v2) holds whole."""
        return framesize - self.rx_mac

    def tx_room(self, framesize: int) -> int:
        """The longest frame a TX slot holds (after its vnet header)."""
        return framesize - self.tx_data - VNET_HDR_LEN

    def framesize_for(self, length: int) -> int:
        """The smallest ring frame that carries a `length`-byte Ethernet
        frame both ways."""
        return tpacket_align(max(self.rx_mac, self.tx_data + VNET_HDR_LEN) + length)


def ring_layout(framesize: int, frames: int, page: int = PAGE,
                max_block: int = MAX_BLOCK) -> tuple[int, int, int]:
    """(block_size, block_nr, frame_nr) for at least `frames` frames of
    `framesize` bytes. Blocks are whole powers of two pages (the kernel
    allocates 2^order pages for each, so any other size wastes the rest)
    holding whole frames; of those, the one that needs the least memory in
    all, the smaller block on a tie (easier to allocate)."""
    if framesize % TPACKET_ALIGNMENT or framesize <= 0:
        raise ValueError(f"framesize {framesize}: a positive multiple of {TPACKET_ALIGNMENT}")
    bs = page
    while bs < framesize:
        bs *= 2
    best = None
    while bs <= max(max_block, framesize):
        fpb = bs // framesize
        nb = -(-frames // fpb)
        if best is None or nb * bs < best[0] * best[1]:
            best = (bs, nb, nb * fpb)
        bs *= 2
    return best


def v3_layout(framesize: int, layout: tuple[int, int, int]) -> tuple[int, int, int]:
    """A v3 RX ring of about the same memory as `layout` (the v2 one) in
    blocks of V3_BLOCK at least: v3 packs frames of any size into a block,
    so small blocks would only add block switches."""
    bs, nb, _ = layout
    big = max(bs, V3_BLOCK)
    nb = max(2, -(-(bs * nb) // big))
    return big, nb, (big // framesize) * nb


def slot_offsets(layout: tuple[int, int, int], framesize: int, base: int = 0) -> list[int]:
    """Where each frame of a ring starts in the mapping (frames never
    cross a block boundary)."""
    bs, nb, nf = layout
    fpb = nf // nb
    return [base + b * bs + k * framesize for b in range(nb) for k in range(fpb)]


class Ring:
    """The RX and TX rings in one mapping (RX first, as packet_mmap lays
    them out), with the views the hot paths use: `mv` (bytes) and `u32`
    (status words). `mem` is the mmap of the socket, or a bytearray in the
    unit tests (they play the kernel's part)."""

    def __init__(self, mem, geom: Geometry, framesize: int, rx: tuple, tx: tuple):
        self.mem = mem
        self.geom = geom
        self.framesize = framesize
        self.rx_layout, self.tx_layout = rx, tx
        self.rx_bytes = rx[0] * rx[1]
        self.tx_bytes = tx[0] * tx[1]
        self.nbytes = self.rx_bytes + self.tx_bytes
        self.rx_offs = slot_offsets(rx, framesize)
        self.tx_offs = slot_offsets(tx, framesize, self.rx_bytes)
        self.rx_blocks = [b * rx[0] for b in range(rx[1])]      # v3: block starts
        self.mv = memoryview(mem)
        self.u32 = self.mv.cast("B").cast("I")

    def close(self) -> None:
        """Release the views and unmap (the mapping refuses while a view
        of it exists: every view the driver made is gone by now)."""
        for v in (self.u32, self.mv):
            try:
                v.release()
            except (ValueError, BufferError):
                pass
        if isinstance(self.mem, mmap.mmap):
            self.mem.close()

    def describe(self) -> dict:
        def one(lay):
            bs, nb, nf = lay
            return f"{nf} x {self.framesize} B in {nb} x {bs // 1024} KB blocks"
        return {"rx": one(self.rx_layout), "tx": one(self.tx_layout)}


# -- the interface's facts, through the socket --------------------------------
def _ifreq(name: str = "", data: bytes = b"") -> bytearray:
    b = bytearray(IFREQ)
    n = name.encode()
    b[:len(n)] = n
    b[16:16 + len(data)] = data
    return b


def lx_ioctl(fd: int, req: int, name: str = "", data: bytes = b"") -> bytearray:
    b = _ifreq(name, data)
    fcntl.ioctl(fd, req, b)
    return b


def lx_name(fd: int, ifindex: int) -> str:
    b = lx_ioctl(fd, SIOCGIFNAME, "", struct.pack("i", ifindex))
    return bytes(b[:16]).split(b"\0")[0].decode()


def lx_link(fd: int, ifindex: int) -> tuple[str, int, int]:
    """(name, flags, mtu) of the interface, by index (it may be renamed).
    OSError ENODEV when it is gone."""
    name = lx_name(fd, ifindex)
    flags = struct.unpack_from("H", lx_ioctl(fd, SIOCGIFFLAGS, name), 16)[0]
    mtu = struct.unpack_from("i", lx_ioctl(fd, SIOCGIFMTU, name), 16)[0]
    return name, flags, mtu


class AfpSoftc:
    """The driver's private state for one interface (BSD's softc)."""

    def __init__(self, stack, ifp: Ifnet, sock, ring: Ring, ifindex: int, lxname: str,
                 burst: int, offload: bool, blocktmo: int = 0):
        self.stack = stack
        self.ifp = ifp
        self.sock = sock
        self.fd = sock.fileno()
        self.ring = ring
        self.geom = ring.geom
        self.v3 = ring.geom.version == TPACKET_V3
        self.ifindex = ifindex
        self.lxname = lxname
        self.lx_mtu = ifp.mtu
        self.burst = burst
        self.offload = offload
        self.blocktmo = blocktmo
        self.pool = pool = stack.pool
        self.room = pool.mclbytes - pool.headroom
        self.rx_max = ring.geom.rx_room(ring.framesize)
        self.tx_max = ring.geom.tx_room(ring.framesize)
        self.query_link = lambda: lx_link(self.fd, self.ifindex)     # tests replace it
        # Ring positions: the next RX slot (v2) or block (v3) we look at,
        # and for v3 where we are in the block being read; the next TX slot.
        self._rx_i = 0
        self._blk_left = 0
        self._pkt_off = 0
        self._tx_i = 0
        # Counters (nicinfo).
        self.rx_intrs = 0
        self.tx_kicks = self.tx_kick_errors = self.tx_ring_full = self.tx_blocked = 0
        self.rx_too_long = self.tx_too_long = 0
        self.tx_refused = 0             # kicks that sent less than we wrote (PACKET_LOSS)
        self._unkicked = 0              # bytes written since the last kick (-1: unknown)
        self.rx_super = self.rx_partial = self.tx_super = 0
        self.rx_blocks = 0
        self.tp_packets = self.tp_drops = self.tp_freeze = 0
        self.sock_errors = 0
        self.link_changes = 0
        self.promisc = False
        # Offload work to do here on receive (ioctl sets them from capenable).
        self.rx_sw = M_CSUM_TCPv4 | M_CSUM_UDPv4
        self.rx_seg = True
        self.rx_seg_partial = False
        self._said = set()
        self._poll_co = None
        self._kick_co = None
        self._lost = False

    # -- receive: the "interrupt" ----------------------------------------
    def intr(self, events: int) -> None:
        if events & EPOLLERR:
            self._sock_error()
            if self.fd < 0 or self._lost:
                return
        if events & EPOLLOUT:
            self._tx_ready()
        if events & EPOLLIN:
            self.rx_intrs += 1
            if self.v3:
                self._rx_v3()
            else:
                self._rx_v2()

    def _rx_v2(self) -> None:
        """Take up to `burst` frames from the RX ring. The common frame (no
        offload work, no VLAN tag, whole, fitting a cluster) is one unpack
        of the slot header, one copy into the cluster and the slot handed
        back; anything else goes through _rx_slow.

        Copy, not lend: measured in a loop (get, fill, free; one core of
        this VM), copying a frame from its slot into a pooled cluster costs
        0.50-0.72 us against 0.52-0.56 us for lending the slot as external
        storage (get_ext, and the free callback handing the slot back):
        about 0.15 us more for 1514 bytes, nothing for 60, 3.3 us more for
        a 64 KB super-frame (3.8 against 0.5; about 4 % of a core at 7
        Gbit/s). What lending would cost instead: the kernel fills the v2
        ring strictly in order, so one slot lent to a packet that waits
        (ARP hold queue, a full if_snd) stops reception for the whole ring
        until it is freed (the frames behind it are dropped); detach would
        have to wait for every slot to come back before unmapping; and
        get_ext and ether_input take only bytearray storage, not the
        mapping. A copied slot goes back at once."""
        ring = self.ring
        mv, st = ring.mv, ring.u32
        unpack = self.geom.rx_hdr.unpack_from
        offs = ring.rx_offs
        nslots = len(offs)
        i = self._rx_i
        ifp = self.ifp
        get = self.pool.get
        h = self.pool.headroom
        room = self.room
        slow = self._rx_slow
        pkts = []
        for _ in range(self.burst):
            off = offs[i]
            status, tlen, snap, mac = unpack(mv, off)
            if not status & TP_STATUS_USER:
                break
            d = off + mac
            m = get()
            if m is not None:
                if snap <= room and snap == tlen and not status & (
                        TP_STATUS_CSUMNOTREADY | TP_STATUS_VLAN_VALID):
                    m.buf[h:h + snap] = mv[d:d + snap]
                    m.len = m.pkt_len = snap
                    m.rcvif = ifp
                    pkts.append(m)
                else:
                    slow(m, d, status, tlen, snap, pkts)
            else:
                ifp.ipackets += 1
                ifp.input_discard(None, "nobufs")
            st[off >> 2] = TP_STATUS_KERNEL
            i += 1
            if i == nslots:
                i = 0
        self._rx_i = i
        if pkts:
            ifp.if_input(ifp, pkts)

    def _rx_v3(self) -> None:
        """The same from v3 blocks: a block is ours while its block_status
        has TP_STATUS_USER; its num_pkts frames follow one another through
        tp_next_offset; the whole block goes back when all are read. A
        burst may end inside a block: we go on from there next time."""
        ring = self.ring
        mv, st = ring.mv, ring.u32
        unpack = self.geom.rx_hdr.unpack_from
        blocks = ring.rx_blocks
        ifp = self.ifp
        get = self.pool.get
        h = self.pool.headroom
        room = self.room
        slow = self._rx_slow
        left, poff = self._blk_left, self._pkt_off
        pkts = []
        n = self.burst
        while n:
            if not left:
                b = blocks[self._rx_i]
                if not st[(b + 8) >> 2] & TP_STATUS_USER:
                    break
                self.rx_blocks += 1
                left = st[(b + 12) >> 2]                # num_pkts
                poff = b + st[(b + 16) >> 2]            # offset_to_first_pkt
                if not left:
                    self._release_block()
                    continue
            nxt, snap, tlen, status, mac = unpack(mv, poff)
            d = poff + mac
            m = get()
            if m is not None:
                if snap <= room and snap == tlen and not status & (
                        TP_STATUS_CSUMNOTREADY | TP_STATUS_VLAN_VALID):
                    m.buf[h:h + snap] = mv[d:d + snap]
                    m.len = m.pkt_len = snap
                    m.rcvif = ifp
                    pkts.append(m)
                else:
                    slow(m, d, status, tlen, snap, pkts)
            else:
                ifp.ipackets += 1
                ifp.input_discard(None, "nobufs")
            n -= 1
            left -= 1
            poff += nxt
            if not left:
                self._release_block()
        self._blk_left, self._pkt_off = left, poff
        if pkts:
            ifp.if_input(ifp, pkts)

    def _release_block(self) -> None:
        ring = self.ring
        b = ring.rx_blocks[self._rx_i]
        ring.u32[(b + 8) >> 2] = TP_STATUS_KERNEL
        self._rx_i = (self._rx_i + 1) % len(ring.rx_blocks)

    def _rx_slow(self, m, d: int, status: int, tlen: int, snap: int, pkts: list) -> None:
        """A frame that is cut short, carries a VLAN tag, does not fit a
        cluster or comes with offload facts. Consumes `m`; appends what
        goes up (one frame, or its segments) to `pkts`."""
        ifp = self.ifp
        pool = self.pool
        mv = self.ring.mv
        m.rcvif = ifp
        if snap < tlen or snap > self.room + MJUMBYTES:
            self.rx_too_long += 1
            ifp.ipackets += 1
            ifp.input_discard(m, "too_long")
            self._say_too_long(tlen, status)
            return
        if status & TP_STATUS_VLAN_VALID:
            # The kernel took an 802.1Q tag off into tp_vlan_tci: a VLAN
            # frame, which this router does not do (on the wire its type is
            # 0x8100).
            ifp.ipackets += 1
            ifp.input_discard(m, "unknown_ethertype")
            return
        h = pool.headroom
        room = self.room
        if snap <= room:
            m.buf[h:h + snap] = mv[d:d + snap]
            m.len = snap
        else:
            j = pool.get_jumbo()
            if j is None:
                ifp.ipackets += 1
                ifp.input_discard(m, "nobufs")
                return
            m.buf[h:h + room] = mv[d:d + room]
            m.len = room
            rest = snap - room
            j.buf[0:rest] = mv[d + room:d + snap]
            j.len = rest
            m.next = j
        m.pkt_len = snap
        if status & TP_STATUS_CSUMNOTREADY:
            if not vnet.decode(m, mv, d - VNET_HDR_LEN):
                ifp.ipackets += 1
                ifp.input_discard(m, "bad_offload")
                return
            cf = m.csum_flags
            if cf & M_CSUM_TSOv4:
                self.rx_super += 1
                if self.rx_seg:
                    self._rx_segment(m, pkts)
                    return
            elif cf:
                self.rx_partial += 1
                if cf & self.rx_sw:             # that Rx checksum offload is off
                    in_undefer_cksum(m, ETHER_HDR_LEN)
                    ifp.sw_csum += 1
        pkts.append(m)

    def _rx_segment(self, m, pkts: list) -> None:
        """A super-frame came in while tso4 is off (offload=0 among
        others): cut it into segments here, each with its own complete
        checksum (or left partial while tcp4csum-rx is on), as the kernel
        would have before handing it to a TAP. Consumes `m`."""
        ifp, pool = self.ifp, self.pool
        eh = bytes(m.view[m.off:m.off + ETHER_HDR_LEN])
        pool.adj(m, ETHER_HDR_LEN)
        hl = tso_header_len(m)
        if not hl:
            ifp.ipackets += 1
            ifp.input_discard(m, "bad_offload")
            return
        segs = tcp4_segment(pool, m, hl, self.rx_seg_partial)
        if segs is None:
            ifp.ipackets += 1
            ifp.input_discard(None, "nobufs")
            return
        ifp.sw_tso += 1
        ifp.sw_tso_segs += len(segs)
        for s in segs:
            s = pool.prepend(s, ETHER_HDR_LEN)
            if s is None:
                ifp.ipackets += 1
                ifp.input_discard(None, "nobufs")
                continue
            s.buf[s.off:s.off + ETHER_HDR_LEN] = eh
            s.rcvif = ifp
            pkts.append(s)

    def _say_too_long(self, tlen: int, status: int) -> None:
        if "too_long" in self._said:
            return
        self._said.add("too_long")
        gso = tlen > self.lx_mtu + ETHER_HDR_LEN + VLAN_SLACK
        log.warning("%s: a %d-byte frame does not fit a %d-byte ring frame (%d bytes of "
                    "data): dropped as too_long%s (said once)", self.ifp.name, tlen,
                    self.ring.framesize, self.rx_max,
                    "; it is a super-frame from the peer's TSO/GSO: turn that off on "
                    "the peer (ethtool -K PEER tso off gso off) or mount with offload=1"
                    if gso and not self.offload else
                    "; give a larger framesize" if gso or tlen > self.rx_max else "")

    # -- transmit --------------------------------------------------------
    def transmit(self, ifp: Ifnet, pkts: list) -> None:
        """if_transmit: with nothing queued and the ring not full, copy the
        burst into the TX ring and kick it once. What does not fit goes on
        if_snd in order and start() waits for EPOLLOUT. Consumes the mbufs
        in `pkts`."""
        if ifp.if_snd.len or ifp.flags & IFF_OACTIVE:
            if_transmit(ifp, pkts)
            return
        k = self._txfill(pkts)
        if k < len(pkts):
            if not ifp.flags & IFF_RUNNING:     # the kick found the link down or gone
                for m in pkts[k:]:
                    ifp.output_discard(m, "link_lost" if self._lost else "down")
                return
            self._tx_full()
            if_transmit(ifp, pkts[k:])          # queued: OACTIVE, start() waits

    def _txfill(self, pkts: list) -> int:
        """Copy frames into free TX slots, in order, then kick the ring
        once. Returns how many of `pkts` were consumed (written, or dropped
        and counted); the rest are still the caller's."""
        ring = self.ring
        mv, st = ring.mv, ring.u32
        offs = ring.tx_offs
        nslots = len(offs)
        j = self._tx_i
        geom = self.geom
        sto = geom.tx_status
        dat = geom.tx_data + VNET_HDR_LEN
        plain = geom.tx_plain.pack_into
        free = self.pool.free
        cap = self.tx_max
        ifp = self.ifp
        pending = sent = nbytes = pbytes = 0
        k = 0
        for m in pkts:
            slot = offs[j]
            if st[(slot + sto) >> 2] & TX_BUSY:
                # Full. If we wrote frames since the last kick, kick now
                # (the kernel sends them and may hand slots back at once)
                # and look again; otherwise the ring is really full.
                if not pending:
                    break
                pending = 0
                if self._unkicked >= 0:
                    self._unkicked += pbytes
                pbytes = 0
                if not self._kick() or st[(slot + sto) >> 2] & TX_BUSY:
                    break
            n = m.pkt_len
            if m.next is None and not m.csum_flags and n <= cap:
                d = slot + dat
                o = m.off
                mv[d:d + n] = m.view[o:o + n]
                plain(mv, slot, n + VNET_HDR_LEN, n)
                free(m)
            elif not self._put_slow(m, slot, n):
                k += 1
                continue
            st[(slot + sto) >> 2] = TP_STATUS_SEND_REQUEST
            j += 1
            if j == nslots:
                j = 0
            pending += 1
            sent += 1
            nbytes += n
            pbytes += n
            k += 1
        self._tx_i = j
        ifp.opackets += sent
        ifp.obytes += nbytes
        if pending:
            if self._unkicked >= 0:
                self._unkicked += pbytes
            self._kick()
        return k

    def _put_slow(self, m, slot: int, n: int) -> bool:
        """Write a chain or a frame with offload work into `slot`. False
        (frame dropped and counted) when it does not fit a slot. Consumes
        `m` either way."""
        ifp = self.ifp
        if n > self.tx_max:
            self.tx_too_long += 1
            ifp.output_discard(m, "txerror")
            return False
        mv = self.ring.mv
        geom = self.geom
        at = slot + geom.tx_data
        d = at + VNET_HDR_LEN
        x = m
        while x is not None:
            if x.len:
                mv[d:d + x.len] = x.view[x.off:x.off + x.len]
                d += x.len
            x = x.next
        if m.csum_flags:
            vnet.encode(m, mv, at)
            if m.csum_flags & M_CSUM_TSOv4:
                self.tx_super += 1
            geom.tx_lenfmt.pack_into(mv, slot + geom.tx_len, n + VNET_HDR_LEN)
            struct.pack_into("<H", mv, at + 2, n)      # hdr_len: the kernel copies it all
        else:
            geom.tx_plain.pack_into(mv, slot, n + VNET_HDR_LEN, n)
        self.pool.freem(m)
        return True

    def _kick(self) -> bool:
        """One send() that makes the kernel send every slot marked
        SEND_REQUEST. False when it failed (what is left is sent by a
        later kick: a callout tries again shortly).

        send() answers the bytes it sent. Fewer than we wrote since the
        last kick means the kernel skipped a slot it would not send
        (PACKET_LOSS: a frame it found malformed, e.g. a GSO header some
        kernels refuse, OFFLOAD.md) or stopped early at the socket's send
        buffer; the ring tells which: in the second case slots are still
        SEND_REQUEST, and are kicked again."""
        self.tx_kicks += 1
        try:
            sent = self.sock.send(b"", socket.MSG_DONTWAIT)
        except OSError as e:
            self.tx_kick_errors += 1
            self._unkicked = -1                 # unknown now: frames wait in the ring
            err = e.errno
        else:
            want, self._unkicked = self._unkicked, 0
            if 0 <= sent < want:
                if self._tx_waiting():
                    self._retry_kick()
                else:
                    self.tx_refused += 1
                    if "refused" not in self._said:
                        self._said.add("refused")
                        log.warning("%s: the kernel skipped %d bytes of frames it would not "
                                    "send from the TX ring (counted in nicinfo; said once)",
                                    self.ifp.name, want - sent)
            return True
        if err in LINK_LOST_ERRNOS:
            self._link_lost(err)
        elif err == errno.ENETDOWN:
            self._check_link()
        else:
            # EAGAIN/ENOBUFS: the peer dropped one (it is down, or its
            # queue is full) and the kernel keeps it at the ring's head.
            self._retry_kick()
        return False

    def _tx_waiting(self) -> bool:
        """Is any TX slot still waiting for the kernel (SEND_REQUEST)?"""
        st = self.ring.u32
        sto = self.geom.tx_status
        return any(st[(o + sto) >> 2] == TP_STATUS_SEND_REQUEST for o in self.ring.tx_offs)

    def _retry_kick(self) -> None:
        if self._kick_co is None and self.fd >= 0 and not self._lost:
            self._kick_co = self.stack.timeout(KICK_RETRY, self._kick_retry)

    def _kick_retry(self) -> None:
        self._kick_co = None
        if self.fd < 0 or not self.ifp.flags & IFF_RUNNING:
            return
        if self._kick() and self.ifp.flags & IFF_OACTIVE:
            self._tx_ready()

    def _tx_full(self) -> None:
        """The TX ring is full: if_snd holds the rest until the kernel
        hands a slot back (EPOLLOUT)."""
        self.tx_ring_full += 1
        ifp = self.ifp
        if not ifp.flags & IFF_OACTIVE and self.fd >= 0 and not self._lost:
            ifp.flags |= IFF_OACTIVE
            self.tx_blocked += 1
            self.stack.interrupt_modify(self.fd, EPOLLIN | EPOLLOUT)

    def start(self, ifp: Ifnet) -> None:
        """if_start: move what waits on if_snd into the ring, in order, a
        ring's worth at a time."""
        ifq = ifp.if_snd
        nslots = len(self.ring.tx_offs)
        while ifq.len and ifp.flags & IFF_RUNNING and not ifp.flags & IFF_OACTIVE:
            batch = []
            while len(batch) < nslots:
                m = ifq.dequeue()
                if m is None:
                    break
                batch.append(m)
            k = self._txfill(batch)
            if k < len(batch):
                if not ifp.flags & IFF_RUNNING:
                    for m in batch[k:]:
                        ifp.output_discard(m, "link_lost" if self._lost else "down")
                    return
                for m in reversed(batch[k:]):
                    ifq.prepend(m)
                self._tx_full()
                return

    def _tx_ready(self) -> None:
        ifp = self.ifp
        if ifp.flags & IFF_OACTIVE:
            ifp.flags &= ~IFF_OACTIVE
            if self.fd >= 0 and not self._lost:
                self.stack.interrupt_modify(self.fd, EPOLLIN)
        if ifp.flags & IFF_RUNNING:
            self.start(ifp)

    # -- link ----------------------------------------------------------------
    def _sock_error(self) -> None:
        """EPOLLERR: read (and so clear) the socket's error. ENETDOWN is
        the interface going down or away: look at it now."""
        try:
            err = self.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        except OSError as e:
            err = e.errno
        self.sock_errors += 1
        if err in LINK_LOST_ERRNOS:
            self._link_lost(err)
        elif err:
            self._check_link()

    def _poll(self) -> None:
        """The 1 s callout: the interface's flags and MTU, the ring's
        statistics."""
        self._poll_co = None
        if self.fd < 0 or self._lost:
            return
        self._poll_co = self.stack.timeout(1.0, self._poll)
        self.read_stats()
        self._check_link()

    def _check_link(self) -> None:
        try:
            name, flags, mtu = self.query_link()
        except OSError as e:
            if e.errno in LINK_LOST_ERRNOS:
                self._link_lost(e.errno)
            return
        ifp = self.ifp
        self.lxname = name
        if mtu != self.lx_mtu:
            self.lx_mtu = mtu
            new = min(mtu, self.rx_max - ETHER_HDR_LEN - VLAN_SLACK, 9000)
            log.info("%s: %s's MTU is now %d%s", ifp.name, name, mtu,
                     f"; ours {new}, what a {self.ring.framesize}-byte ring frame carries"
                     if new != mtu else "")
            ifp.mtu = max(68, new)
        self.set_link(bool(flags & LX_IFF_UP and flags & LX_IFF_RUNNING), flags)

    def set_link(self, up: bool, flags: int = 0) -> None:
        """Follow the Linux interface: up (admin up and carrier) or down."""
        ifp = self.ifp
        if up and ifp.link_state != LINK_STATE_UP:
            if ifp.link_state == LINK_STATE_DOWN:
                log.info("%s: link up (%s)", ifp.name, self.lxname)
                self.link_changes += 1
            ifp.link_state = LINK_STATE_UP
            if ifp.flags & IFF_UP:
                ifp.flags |= IFF_RUNNING
                self._kick()                    # what waited in the ring
                self._tx_ready()
        elif not up and ifp.link_state != LINK_STATE_DOWN:
            log.info("%s: link down (%s %s)", ifp.name, self.lxname,
                     "is down" if not flags & LX_IFF_UP else "has no carrier")
            self.link_changes += 1
            ifp.link_state = LINK_STATE_DOWN
            ifp.flags &= ~IFF_RUNNING
            self._tx_ready()                    # (clears OACTIVE; sends nothing)
            ifp.if_purge("down")

    def _link_lost(self, err: int | None) -> None:
        if self._lost:
            return
        self._lost = True
        self.stack.interrupt_detach(self.fd)
        self._cancel()
        self.stack.link_lost(self.ifp, f"{self.lxname}: "
                             f"{os.strerror(err) if err else 'error'} (the interface is gone)")

    def read_stats(self) -> None:
        """Add PACKET_STATISTICS to our sums (reading resets them)."""
        if self.fd < 0:
            return
        size = 12 if self.v3 else 8
        try:
            raw = self.sock.getsockopt(SOL_PACKET, PACKET_STATISTICS, size)
        except OSError:
            return
        vals = struct.unpack(f"{size // 4}I", raw[:size])
        self.tp_packets += vals[0]
        self.tp_drops += vals[1]
        if self.v3:
            self.tp_freeze += vals[2]

    # -- offload -----------------------------------------------------------
    def ioctl(self, ifp: Ifnet, cmd, data):
        """if_ioctl: SIOCSIFCAP. The kernel cannot be told what to hand an
        AF_PACKET socket, so what is turned off is done here on receive:
        partial checksums completed, super-frames segmented."""
        if cmd != SIOCSIFCAP:
            raise OSError(f"{ifp.name}: ioctl {cmd} not supported")
        self.rx_sw = (0 if data & IFCAP_CSUM_TCPv4_Rx else M_CSUM_TCPv4) | \
            (0 if data & IFCAP_CSUM_UDPv4_Rx else M_CSUM_UDPv4)
        self.rx_seg = not data & IFCAP_TSOv4
        self.rx_seg_partial = bool(data & IFCAP_CSUM_TCPv4_Rx)

    # -- control -----------------------------------------------------------
    def init(self, ifp: Ifnet) -> None:
        if self.fd >= 0 and not self._lost and ifp.link_state == LINK_STATE_UP:
            ifp.flags |= IFF_RUNNING

    def stop(self, ifp: Ifnet) -> None:
        if ifp.flags & IFF_OACTIVE and self.fd >= 0 and not self._lost:
            self.stack.interrupt_modify(self.fd, EPOLLIN)
        ifp.flags &= ~(IFF_RUNNING | IFF_OACTIVE)
        ifp.if_purge("down")

    def _cancel(self) -> None:
        for co in (self._poll_co, self._kick_co):
            if co is not None:
                co.cancel()
        self._poll_co = self._kick_co = None

    def detach(self, ifp: Ifnet) -> None:
        """Unmap the rings and close the socket. Nothing of the ring is
        lent to the stack (frames are copied out), so nothing needs to
        come back first."""
        if self.fd >= 0:
            self.read_stats()
            self.stack.interrupt_detach(self.fd)
        self._cancel()
        self.ring.close()
        try:
            self.sock.close()
        except OSError:
            pass
        self.fd = -1

    def extra_info(self, ifp: Ifnet) -> dict:
        self.read_stats()
        ring = self.ring
        d = ring.describe()
        return {"driver": "devnp-afpacket (native, PACKET_MMAP rings, stack thread)",
                "linux_if": self.lxname, "linux_ifindex": self.ifindex,
                "linux_mtu": self.lx_mtu,
                "ring": "v3" if self.v3 else "v2", "rx_ring": d["rx"], "tx_ring": d["tx"],
                "ring_bytes": ring.nbytes, "frame_size": ring.framesize,
                "rx_frame_max": self.rx_max, "tx_frame_max": self.tx_max,
                **({"block_timeout_ms": self.blocktmo, "rx_blocks": self.rx_blocks}
                   if self.v3 else {}),
                "rx_burst": self.burst, "rx_interrupts": self.rx_intrs,
                "vnet_hdr": True, "offload": self.offload, "promisc": self.promisc,
                "ring_packets": self.tp_packets, "ring_drops": self.tp_drops,
                **({"ring_freezes": self.tp_freeze} if self.v3 else {}),
                "rx_frames_too_long": self.rx_too_long, "tx_frames_too_long": self.tx_too_long,
                "rx_superframes": self.rx_super, "rx_partial_csum": self.rx_partial,
                "tx_superframes": self.tx_super,
                "tx_kicks": self.tx_kicks, "tx_kick_errors": self.tx_kick_errors,
                "tx_kicks_with_frames_refused": self.tx_refused,
                "tx_ring_full": self.tx_ring_full, "tx_waits_for_slots": self.tx_blocked,
                "socket_errors": self.sock_errors, "link_changes": self.link_changes}


# -- attach ------------------------------------------------------------------
RING_VERSIONS = {"v2": TPACKET_V2, "v3": TPACKET_V3}
DEFAULT_RXFRAMES = 2048         # wire-sized frames: 4 MB of ring (512 dropped
                                # frames under iperf3 TCP: the peer's bursts)
DEFAULT_TXFRAMES = 256
DEFAULT_RXFRAMES_OFFLOAD = 128  # 64 KB frames: about 9 MB of ring
DEFAULT_TXFRAMES_OFFLOAD = 64


def _fail(msg: str):
    raise DriverError(f"devnp-afpacket: {msg}")


def check_options(opts: dict, room: int) -> None:
    """Every value within its range, before anything is opened (a usage
    error names the option)."""
    if not opts["ifname"]:
        _fail("option ifname=... is required: the Linux interface to drive (see 'ip link')")
    check_ifname("devnp-afpacket", "ifname", opts["ifname"])
    ns = opts["netns"]
    if ns and ("/" in ns or ns in (".", "..")):
        _fail(f"option netns={ns}: a namespace name, as 'ip netns list' shows it")
    if opts["ring"] not in RING_VERSIONS:
        _fail(f"option ring={opts['ring']}: v2 or v3")
    for key, lo, hi in (("burst", 1, 4096), ("txqlen", 1, 65536),
                        ("rxframes", 0, 65536), ("txframes", 0, 65536),
                        ("blocktmo", 0, 1000)):
        if not lo <= opts[key] <= hi:
            _fail(f"option {key}={opts[key]}: must be {lo}..{hi}"
                  + (" (0: the default)" if lo == 0 and key != "blocktmo" else
                     " (ms; 0: the kernel's own)" if key == "blocktmo" else ""))
    fs = opts["framesize"]
    top = tpacket_align(Geometry(TPACKET_V3).rx_mac + room + MJUMBYTES) - TPACKET_ALIGNMENT
    if fs and (fs % TPACKET_ALIGNMENT or not 256 <= fs <= top):
        _fail(f"option framesize={fs}: a multiple of {TPACKET_ALIGNMENT} in 256..{top} "
              "(0: the default)")
    if opts["mac"]:
        try:
            mac = mac_aton(opts["mac"])
        except ValueError:
            mac = None
        if mac is None or not MAC_RE.fullmatch(opts["mac"]) or mac[0] & 1 or not any(mac):
            _fail(f"option mac={opts['mac']}: expected xx:xx:xx:xx:xx:xx, six hex bytes "
                  "like 02:00:00:00:00:01 (unicast: first byte even; not all zero)")


def open_socket(ifname: str, ns: str):
    """A packet socket of protocol 0 (it receives nothing until bound),
    made in namespace `ns` if given: only this thread visits it; the
    socket stays there, we come back."""
    if not ns:
        return socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)
    from iopkt.dev import netns  # pyroute2: only when a namespace is asked for
    if not os.path.exists(netns.ns_path(ns)):
        _fail(f"option netns={ns}: no network namespace '{ns}' (see 'ip netns list')")
    with netns.inside(ns):
        return socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)


def _device_error(ifname: str, ns: str, what: str, e: OSError) -> DeviceError:
    where = f" in netns {ns}" if ns else ""
    return DeviceError(f"devnp-afpacket: {ifname}{where}: {what}: "
                       f"{os.strerror(e.errno) if e.errno else e}", e.errno)


def setup_rings(sock, version: int, framesize: int, rx: tuple, tx: tuple,
                blocktmo: int) -> None:
    """PACKET_VERSION, the virtio header, PACKET_LOSS and the two rings
    (the order the kernel insists on: every option before the rings)."""
    so = sock.setsockopt
    so(SOL_PACKET, PACKET_VERSION, version)
    so(SOL_PACKET, PACKET_VNET_HDR, 1)
    so(SOL_PACKET, PACKET_LOSS, 1)
    if version == TPACKET_V3:
        so(SOL_PACKET, PACKET_RX_RING, TPACKET_REQ3.pack(rx[0], rx[1], framesize, rx[2],
                                                         blocktmo, 0, 0))
        so(SOL_PACKET, PACKET_TX_RING, TPACKET_REQ3.pack(tx[0], tx[1], framesize, tx[2],
                                                         0, 0, 0))
    else:
        so(SOL_PACKET, PACKET_RX_RING, TPACKET_REQ.pack(rx[0], rx[1], framesize, rx[2]))
        so(SOL_PACKET, PACKET_TX_RING, TPACKET_REQ.pack(tx[0], tx[1], framesize, tx[2]))


def build(stack, sock, ring: Ring, ifindex: int, lxname: str, lxmtu: int, lxflags: int,
          mac: bytes, opts: dict, description: str = "", promisc: bool = False) -> Ifnet:
    """The afpN interface over a socket whose rings are set up and mapped
    (`ring`): its softc, hooks and capabilities, attached to `stack` and
    up, the link as the Linux interface's flags say. (The unit tests call
    it with a fake socket and a ring in a bytearray.)"""
    pool = stack.pool
    room = pool.mclbytes - pool.headroom
    offload = opts["offload"]
    ifp = Ifnet("afp", stack.next_unit("afp"), "devnp-afpacket")
    ifp.description = description
    ifp.if_devkey = ifp.description
    ifp.if_snd.maxlen = opts["txqlen"]
    ether_ifattach(ifp, mac)
    sc = AfpSoftc(stack, ifp, sock, ring, ifindex, lxname, opts["burst"], offload,
                  opts["blocktmo"])
    sc.promisc = promisc
    ifp.mtu = max(68, min(lxmtu, sc.rx_max - ETHER_HDR_LEN - VLAN_SLACK, 9000))
    sc.lx_mtu = lxmtu
    if offload or sc.rx_max > room:
        pool.enable_jumbo()
    ifp.set_softc(sc)
    caps = 0
    if offload:
        caps = CSUM_CAPS
        if not pool.njumbo:
            log.warning("%s: no jumbo clusters (--nmbjumbo 0): TSO4 is not offered",
                        ifp.name)
        elif sc.tx_max < MAX_FRAME:
            log.warning("%s: a %d-byte ring frame cannot carry a 64 KB super-frame: "
                        "TSO4 is not offered", ifp.name, ring.framesize)
        else:
            caps |= IFCAP_TSOv4
    ifp.capabilities = caps
    want = caps
    for key, bits in (("tso4", IFCAP_TSOv4),
                      ("tcp4csum", IFCAP_CSUM_TCPv4_Rx | IFCAP_CSUM_TCPv4_Tx),
                      ("udp4csum", IFCAP_CSUM_UDPv4_Rx | IFCAP_CSUM_UDPv4_Tx)):
        if not opts[key]:
            want &= ~bits
    if not want & IFCAP_CSUM_TCPv4_Tx:
        want &= ~IFCAP_TSOv4                # TSO needs TCP checksum offload
    ifp.set_capenable(want)
    ifp.link_state = LINK_STATE_UP if lxflags & LX_IFF_RUNNING else LINK_STATE_DOWN
    stack.if_attach(ifp)
    stack.interrupt_attach(sc.fd, sc.intr)
    stack.if_up(ifp)
    # The first look soon: a veth just brought up gets its carrier in ms.
    sc._poll_co = stack.timeout(0.1, sc._poll)
    return ifp


def attach(stack, opts: dict) -> Ifnet:
    """Open a packet socket on an existing Linux interface, map its rings
    and attach an afpN interface to `stack`."""
    pool = stack.pool
    room = pool.mclbytes - pool.headroom
    check_options(opts, room)
    ifname, ns, offload = opts["ifname"], opts["netns"], opts["offload"]
    version = RING_VERSIONS[opts["ring"]]
    geom = Geometry(version)
    where = f" in netns {ns}" if ns else ""
    sock = open_socket(ifname, ns)
    ring = None
    try:
        fd = sock.fileno()
        try:
            ifindex = struct.unpack_from("i", lx_ioctl(fd, SIOCGIFINDEX, ifname), 16)[0]
            hw = lx_ioctl(fd, SIOCGIFHWADDR, ifname)
            _, flags, lxmtu = lx_link(fd, ifindex)
        except OSError as e:
            if e.errno == errno.ENODEV:
                raise DeviceError(f"devnp-afpacket: no interface {ifname}{where} "
                                  "(see 'ip link')", e.errno) from None
            raise _device_error(ifname, ns, "cannot read it", e) from None
        hwtype = struct.unpack_from("H", hw, 16)[0]
        if hwtype != 1:                             # ARPHRD_ETHER
            raise DeviceError(f"devnp-afpacket: {ifname}{where} is not an Ethernet "
                              f"interface (ARPHRD {hwtype})")
        lxmac = bytes(hw[18:24])
        # The ring frame: given, or the smallest that carries a whole
        # frame of this MTU (2048 at least), or with offload a 64 KB
        # super-frame.
        fs = opts["framesize"] or max(
            2048, geom.framesize_for(lxmtu + ETHER_HDR_LEN + VLAN_SLACK),
            geom.framesize_for(MAX_FRAME) if offload else 0)
        if geom.rx_room(fs) < lxmtu + ETHER_HDR_LEN:
            _fail(f"option framesize={fs}: a ring frame carries at most "
                  f"{geom.rx_room(fs)} bytes of frame; {ifname}'s MTU is {lxmtu}: give "
                  f"framesize={geom.framesize_for(lxmtu + ETHER_HDR_LEN + VLAN_SLACK)} "
                  "or more")
        if room < lxmtu + ETHER_HDR_LEN and not pool.nmbjumbo:
            _fail(f"{ifname}'s MTU {lxmtu}: frames longer than a cluster ({room} bytes) "
                  "need jumbo clusters: give --nmbjumbo > 0")
        nrx = opts["rxframes"] or (DEFAULT_RXFRAMES_OFFLOAD if offload else DEFAULT_RXFRAMES)
        ntx = opts["txframes"] or (DEFAULT_TXFRAMES_OFFLOAD if offload else DEFAULT_TXFRAMES)
        rx, tx = ring_layout(fs, nrx), ring_layout(fs, ntx)
        if version == TPACKET_V3:
            rx = v3_layout(fs, rx)
        for name, lay in (("rxframes", rx), ("txframes", tx)):
            if lay[0] * lay[1] > MAX_RING_BYTES:
                _fail(f"option {name}={nrx if name == 'rxframes' else ntx}: "
                      f"{lay[2]} frames of {fs} bytes need {lay[0] * lay[1] >> 20} MB of "
                      f"pinned ring memory; at most {MAX_RING_BYTES >> 20} MB a ring")
        try:
            setup_rings(sock, version, fs, rx, tx, opts["blocktmo"])
        except OSError as e:
            raise _device_error(ifname, ns, f"cannot set up the {opts['ring']} rings "
                                f"({(rx[0] * rx[1] + tx[0] * tx[1]) >> 10} KB)", e) from None
        try:
            sock.setsockopt(SOL_PACKET, PACKET_IGNORE_OUTGOING, 1)
        except OSError:                             # before Linux 4.20: we see our own frames
            log.warning("devnp-afpacket: %s: no PACKET_IGNORE_OUTGOING in this kernel", ifname)
        # Writes are limited by the ring, not by the socket's send buffer
        # (each frame in flight is charged to it).
        total = rx[0] * rx[1] + tx[0] * tx[1]
        try:
            # SO_SNDBUFFORCE; a frame copied into a linear skb is charged
            # up to twice its size (a 64 KB one takes a 128 KB allocation).
            sock.setsockopt(socket.SOL_SOCKET, 32, 2 * tx[0] * tx[1] + (1 << 20))
        except OSError:
            pass
        try:
            mem = mmap.mmap(fd, total, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
        except OSError as e:
            raise _device_error(ifname, ns, "cannot map the rings", e) from None
        ring = Ring(mem, geom, fs, rx, tx)
        mac = mac_aton(opts["mac"]) if opts["mac"] else lxmac
        if not flags & LX_IFF_UP:
            # A NIC driver's init brings its link up; afterwards the
            # interface's state is whoever set it last.
            try:
                lx_ioctl(fd, SIOCSIFFLAGS, ifname, struct.pack("H", flags | LX_IFF_UP))
                log.info("devnp-afpacket: %s%s was down: brought it up", ifname, where)
                _, flags, lxmtu = lx_link(fd, ifindex)
            except OSError as e:
                raise _device_error(ifname, ns, "cannot bring it up", e) from None
        promisc = mac != lxmac
        if promisc:
            sock.setsockopt(SOL_PACKET, PACKET_ADD_MEMBERSHIP,
                            PACKET_MREQ.pack(ifindex, PACKET_MR_PROMISC, 0, b""))
        try:
            # Bound last: from here on the ring fills with this interface's frames only.
            sock.bind((ifname, ETH_P_ALL))
        except OSError as e:
            raise _device_error(ifname, ns, "cannot bind to it", e) from None
        sock.setblocking(False)

        ifp = build(stack, sock, ring, ifindex, ifname, lxmtu, flags, mac, opts,
                    f"Linux {ifname}{where}", promisc)
    except BaseException:
        if ring is not None:
            ring.close()
        sock.close()
        raise
    return ifp


DRIVER = Driver(
    name="devnp-afpacket", kind="native",
    description="native AF_PACKET driver on an existing Linux interface: PACKET_MMAP RX "
                "and TX rings read and written in the stack thread; TSO and checksum "
                "offload through the virtio-net header",
    options={
        "ifname": Option(str, "", "the Linux interface to drive (it must exist; required)"),
        "netns": Option(str, "", "network namespace the interface is in; the stack "
                        "stays in its own"),
        "mac": Option(str, "", "our MAC address (default: the interface's own; another "
                      "one puts the interface in promiscuous mode)"),
        "ring": Option(str, "v2", "ring version: v2 (a frame is ours as soon as it is in "
                       "the ring) or v3 (blocks, handed over full or after blocktmo)"),
        "rxframes": Option(int, 0, "RX ring frames, 0..65536 (default: 2048, or 128 with "
                           "offload; rounded up to whole blocks)"),
        "txframes": Option(int, 0, "TX ring frames, 0..65536 (default: 256, or 64 with "
                           "offload; rounded up to whole blocks)"),
        "framesize": Option(int, 0, "ring frame size in bytes, a multiple of 16 (default: "
                            "2048 or what the MTU needs; 65632 with offload, a 64 KB "
                            "super-frame)"),
        "blocktmo": Option(int, 1, "ring=v3 only: ms before a block that is not full is "
                           "handed over, 0..1000 (0: the kernel's own, several ms)"),
        "burst": Option(int, 64, "frames taken from the RX ring per interrupt at most, "
                        "1..4096"),
        "txqlen": Option(int, 256, "send queue (if_snd) length, 1..65536"),
        "offload": Option(bool, True, "1: TSO and checksum offload through the virtio-net "
                          "header; 0: no capabilities (partial checksums completed and "
                          "super-frames segmented here)"),
        "tso4": Option(bool, True, "TCP segmentation offload on at mount (ifconfig tso4)"),
        "tcp4csum": Option(bool, True, "TCP checksum offload on at mount (ifconfig tcp4csum)"),
        "udp4csum": Option(bool, True, "UDP checksum offload on at mount (ifconfig udp4csum)"),
    },
    attach=attach,
)
