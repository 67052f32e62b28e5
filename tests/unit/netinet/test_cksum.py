"""iopkt.cksum: RFC 1071 checksum and RFC 1624 incremental update."""

import random
import struct

import pytest
from scapy.compat import raw
from scapy.layers.inet import IP, UDP
from scapy.utils import checksum as scapy_checksum

from iopkt.netinet.cksum import cksum_sum, cksum_update16, fold, in_cksum


def test_in_cksum_matches_scapy_ip_header():
    hdr = bytearray(raw(IP(src="192.0.2.1", dst="198.51.100.7", ttl=17, id=0x1234)
                        / UDP()))[:20]
    want = struct.unpack_from("!H", hdr, 10)[0]
    hdr[10:12] = b"\0\0"
    assert in_cksum(hdr) == want
    hdr[10:12] = want.to_bytes(2, "big")
    assert in_cksum(hdr) == 0               # over a correct header: 0


def test_rfc1071_example():
    # RFC 1071 section 3: bytes 00 01 f2 03 f4 f5 f6 f7 sum to 0xddf2
    data = bytes.fromhex("0001f203f4f5f6f7")
    assert fold(cksum_sum(data, 0, 8)) == 0xDDF2
    assert in_cksum(data) == 0xFFFF & ~0xDDF2


def test_offset_and_length():
    data = b"\xff\xff" + bytes.fromhex("0001f203f4f5f6f7") + b"\xee"
    assert in_cksum(data, 2, 8) == in_cksum(bytes.fromhex("0001f203f4f5f6f7"))


@pytest.mark.parametrize("n", [1, 3, 7, 21, 101])
def test_odd_lengths_pad_with_zero(n):
    data = bytes(random.Random(n).randrange(256) for _ in range(n))
    assert in_cksum(data) == in_cksum(data + b"\0")
    assert in_cksum(data) == scapy_checksum(data)


def test_odd_length_single_byte():
    assert in_cksum(b"\x12") == 0xFFFF & ~0x1200


def test_initial_value_chains_sums():
    a, b = b"\x01\x02\x03\x04", b"\x05\x06\x07\x08"
    assert in_cksum(b, initial=cksum_sum(a, 0, 4)) == in_cksum(a + b)


def test_cksum_update16_equals_recomputation():
    rnd = random.Random(1624)
    for _ in range(2000):
        hdr = bytearray(rnd.randbytes(20))
        hdr[10:12] = b"\0\0"
        c = in_cksum(hdr)
        hdr[10:12] = c.to_bytes(2, "big")
        i = rnd.choice([0, 2, 4, 6, 8, 12, 14, 16, 18])
        old = struct.unpack_from("!H", hdr, i)[0]
        new = rnd.randrange(0x10000)
        struct.pack_into("!H", hdr, i, new)
        hdr[10:12] = b"\0\0"
        assert cksum_update16(c, old, new) == in_cksum(hdr), (hdr.hex(), i)


# RFC 1624's worked example (section 4, on section 3's equations): HC 0xDD2F,
# a word 0x5555 -> 0x3285. RFC 1141's eqn. 2, HC' = HC + m + ~m', gives
# 0xDD2F + 0x5555 + 0xCD7A = 0xFFFF: -0, which no checksum computed from
# scratch holds. Eqn. 3, HC' = ~(~HC + ~m + m') = ~(0x22D0 + 0xAAAA + 0x3285)
# = ~0xFFFF, gives 0x0000, what recomputation writes. Eqn. 3 never gives
# 0xFFFF unless ~HC, ~m and m' are all zero (an end-around-carry sum of
# anything else is never +0); it does give 0x0000, when the true new
# checksum is zero. The TTL rows: a TTL decrement (word 0x4011 -> 0x3F11)
# raises the checksum by 0x0100 with end-around carry.
RFC1624_CASES = [
    (0xDD2F, 0x5555, 0x3285, 0x0000),       # RFC 1624 section 4
    (0xFEFF, 0x4011, 0x3F11, 0x0000),       # TTL: +0, never -0
    (0xFF00, 0x4011, 0x3F11, 0x0001),       # TTL: the carry comes back in
    (0xFFFE, 0x4011, 0x3F11, 0x00FF),
    (0xFFFF, 0x4011, 0x3F11, 0x0100),       # -0 arriving
    (0x0000, 0x4011, 0x3F11, 0x0100),
    (0x1234, 0x4011, 0x3F11, 0x1334),
    (0x0000, 0x3F11, 0x4011, 0xFEFF),       # a word going up: the checksum goes down
    (0x0100, 0x3F11, 0x4011, 0x0000),
    (0x00FF, 0x3F11, 0x4011, 0xFFFE),
    (0x0800, 0x0800, 0x0000, 0x1000),       # ICMP echo -> echo reply (type word 0x0800 -> 0)
    (0xF7FF, 0x0800, 0x0000, 0x0000),       # ... landing on zero
]


@pytest.mark.parametrize("hc, old, new, want", RFC1624_CASES,
                         ids=[f"{a:04x}:{b:04x}->{c:04x}" for a, b, c, _ in RFC1624_CASES])
def test_cksum_update16_rfc1624_corner_case(hc, old, new, want):
    # The same change made to a header (words 0x4500, old, filler, hc; the
    # filler makes hc its checksum) and the checksum recomputed from scratch.
    canon = 0 if hc == 0xFFFF else hc
    filler = ((0xFFFF & ~canon) - 0x4500 - old) % 0xFFFF
    assert in_cksum(struct.pack("!4H", 0x4500, old, filler, hc)) == 0
    recomputed = in_cksum(struct.pack("!4H", 0x4500, new, filler, 0))
    assert cksum_update16(hc, old, new) == recomputed == want


def test_cksum_update16_ttl_decrement_across_the_carry_range():
    """Every header checksum from 0xFE00 up (and the bottom edge), through a
    TTL decrement, against recomputation of the whole header."""
    hdr = bytearray(raw(IP(src="10.0.0.2", dst="10.0.1.2", ttl=64, id=0) / UDP()))[:20]
    hdr[10:12] = b"\0\0"
    s0 = cksum_sum(hdr, 0, 20)
    checked = 0
    for hc in list(range(0xFE00, 0xFFFF)) + [0x0000, 0x0001, 0x00FF, 0x0100]:
        h = bytearray(hdr)
        ident = ((0xFFFF & ~hc) - s0) % 0xFFFF      # makes the checksum hc
        h[4:6] = ident.to_bytes(2, "big")
        assert in_cksum(h) == hc
        h[8] -= 1
        assert cksum_update16(hc, 0x4011, 0x3F11) == in_cksum(h), hex(hc)
        checked += 1
    assert checked == 0x1FF + 4


def test_cksum_update16_ttl_decrement():
    hdr = bytearray(raw(IP(src="10.0.0.2", dst="10.0.1.2", ttl=64) / UDP()))[:20]
    c = struct.unpack_from("!H", hdr, 10)[0]
    old = struct.unpack_from("!H", hdr, 8)[0]
    hdr[8] -= 1
    new = struct.unpack_from("!H", hdr, 8)[0]
    hdr[10:12] = b"\0\0"
    assert cksum_update16(c, old, new) == in_cksum(hdr)


# -- the default region and the first use of a length --------------------------------

def test_in_cksum_without_length_covers_the_rest_of_the_buffer():
    data = b"\xff\xff\xff" + bytes.fromhex("0001f203f4f5f6f7")
    assert in_cksum(data, 3) == 0xFFFF & ~0xDDF2
    assert in_cksum(data, 4) == in_cksum(data[4:])


def test_checksum_right_for_a_length_seen_for_the_first_time(monkeypatch):
    # The word-unpacking helpers are made per length on first use.
    import iopkt.netinet.cksum as ck
    monkeypatch.setattr(ck, "_structs", {})
    data = bytes.fromhex("0001f203f4f5f6f7")
    assert fold(cksum_sum(data, 0, 8)) == 0xDDF2
    assert fold(cksum_sum(data, 0, 8)) == 0xDDF2           # and on the second
    assert in_cksum(data[:7]) == 0xFFFF & ~fold(0x0001 + 0xF203 + 0xF4F5 + 0xF600)


def test_the_unpacking_helper_for_a_length_is_made_once(monkeypatch):
    import iopkt.netinet.cksum as ck
    monkeypatch.setattr(ck, "_structs", {})
    first = ck._words(4)
    assert ck._words(4) is first and ck._structs == {4: first}
