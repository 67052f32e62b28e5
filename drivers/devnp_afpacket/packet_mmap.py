"""PACKET_MMAP, as include/uapi/linux/if_packet.h has it: the socket
options and slot states, and the rings' geometry (blocks, frames, the
slots' offsets) for TPACKET_V2 and TPACKET_V3; Ring maps one."""

from __future__ import annotations

import mmap
import struct

from iopkt.net import vnet
from iopkt.net.ether import ETHER_HDR_LEN

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
