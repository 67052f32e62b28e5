"""devnp-afpacket's packet_mmap.py alone: the slot alignment, the ring
geometry's choices at their edges, where each slot is, and the offsets of a
v2 and a v3 slot as if_packet.h and af_packet.c place them."""

import struct

import pytest

from devnp_afpacket.packet_mmap import (
    TPACKET_V2,
    TPACKET_V3,
    Geometry,
    Ring,
    ring_layout,
    slot_offsets,
    tpacket_align,
    v3_layout,
)


def test_tpacket_align_rounds_up_to_16():
    assert [tpacket_align(x) for x in (0, 1, 2, 15, 16, 17, 32)] == [0, 16, 16, 16, 16, 32, 32]


@pytest.mark.parametrize("framesize", [0, -16, 8, 2049], ids=["zero", "negative", "8", "odd"])
def test_a_framesize_that_is_not_a_positive_multiple_of_16_is_refused(framesize):
    with pytest.raises(ValueError, match=f"^framesize {framesize}: a positive multiple of 16$"):
        ring_layout(framesize, 8)


def test_a_frame_of_a_whole_page_fits_a_one_page_block():
    """A block is the smallest power of two pages that holds a frame, and
    a frame of exactly a block's size takes a block of its own."""
    assert ring_layout(4096, 4, page=4096, max_block=4096) == (4096, 4, 4)
    assert ring_layout(8192, 2, page=4096, max_block=8192) == (8192, 2, 2)


def test_the_largest_block_is_considered_too():
    """Of 1 KiB frames, 48 need 12 pages in 3 blocks of 16 KiB or 48 KiB in
    blocks of 4 KiB: equal; with max_block 16384 the 16 KiB block is tried
    (and the smaller one wins the tie), and 56 frames are best in 16 KiB
    blocks (4 x 16 KiB = 64 KiB = 16 x 4 KiB)."""
    assert ring_layout(1024, 48, page=4096, max_block=16384) == (4096, 12, 48)
    assert ring_layout(3072, 5, page=4096, max_block=16384) == (16384, 1, 5)


def test_a_v3_ring_has_two_blocks_at_least_and_rounds_the_memory_up():
    assert v3_layout(2048, (4096, 1, 2)) == (256 << 10, 2, 256)
    assert v3_layout(2048, (1 << 20, 3, 1536)) == (1 << 20, 3, 1536)
    assert v3_layout(2048, (4096, 200, 400)) == (256 << 10, 4, 512)     # 800 KiB -> 4 blocks


def test_slots_sit_block_after_block_from_a_base():
    assert slot_offsets((8192, 2, 6), 2560, base=1000) == [
        1000, 3560, 6120, 9192, 11752, 14312]


def test_the_ring_puts_tx_after_rx_and_describes_both():
    rx, tx = (8192, 2, 6), (4096, 1, 1)
    r = Ring(bytearray(2 * 8192 + 4096), Geometry(TPACKET_V2), 2560, rx, tx)
    assert r.rx_offs == [0, 2560, 5120, 8192, 10752, 13312]
    assert r.tx_offs == [16384]
    assert r.describe() == {"rx": "6 x 2560 B in 2 x 8 KB blocks",
                            "tx": "1 x 2560 B in 1 x 4 KB blocks"}
    r.u32[0] = 0xFFFFFFFF                       # status words are unsigned
    assert r.u32[0] == 0xFFFFFFFF and bytes(r.mv[:4]) == b"\xff" * 4
    r.close()


@pytest.mark.parametrize("version, rx_mac, tx_data", [(TPACKET_V2, 76, 32), (TPACKET_V3, 92, 48)],
                         ids=["v2", "v3"])
def test_where_the_frame_is_in_a_slot(version, rx_mac, tx_data):
    g = Geometry(version)
    assert (g.rx_mac, g.tx_data) == (rx_mac, tx_data)
    assert g.tx_room(2048) == 2048 - tx_data - 10
    assert g.rx_room(2048) == 2048 - rx_mac
    # the smallest slot both ways: the RX offset (the larger) plus the frame, aligned
    assert g.framesize_for(1514) == tpacket_align(rx_mac + 1514)
    assert g.framesize_for(0) == tpacket_align(rx_mac)
    # header fields are unsigned: a length or status with the top bit set
    raw = bytearray(64)
    if version == TPACKET_V2:
        struct.pack_into("<IIIH", raw, 0, 0x80000001, 0x80000002, 0x80000003, 0x8004)
        assert g.rx_hdr.unpack_from(raw) == (0x80000001, 0x80000002, 0x80000003, 0x8004)
    else:
        struct.pack_into("<I8xIIIH", raw, 0, 0x80000001, 0x80000002, 0x80000003, 0x80000004,
                         0x8005)
        assert g.rx_hdr.unpack_from(raw) == (0x80000001, 0x80000002, 0x80000003, 0x80000004,
                                             0x8005)
    assert g.tx_lenfmt.unpack(b"\xff\xff\xff\xff") == (0xFFFFFFFF,)


def test_an_unknown_tpacket_version_is_refused_naming_it():
    with pytest.raises(ValueError, match="^TPACKET version 7$"):
        Geometry(7)
