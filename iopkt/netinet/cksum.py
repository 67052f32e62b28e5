"""The Internet checksum (RFC 1071) and its incremental update (RFC 1624)."""

from __future__ import annotations

import struct

_structs: dict[int, struct.Struct] = {}


def _words(n: int) -> struct.Struct:
    s = _structs.get(n)
    if s is None:
        s = _structs[n] = struct.Struct(f"!{n}H")
    return s


def cksum_sum(buf, off: int, length: int, initial: int = 0) -> int:
    """One's-complement sum of `length` bytes of `buf` at `off`, not yet
    folded or inverted. An odd trailing byte is padded with zero."""
    s = initial + sum(_words(length >> 1).unpack_from(buf, off))
    if length & 1:
        s += buf[off + length - 1] << 8
    return s


def fold(s: int) -> int:
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return s


def in_cksum(buf, off: int = 0, length: int | None = None, initial: int = 0) -> int:
    """The checksum to store in a header: ~sum, folded to 16 bits. Over a
    region that already holds a correct checksum the result is 0."""
    if length is None:
        length = len(buf) - off
    return ~fold(cksum_sum(buf, off, length, initial)) & 0xFFFF


def cksum_update16(hc: int, old: int, new: int) -> int:
    """RFC 1624 eqn. 3: the new header checksum after one 16-bit word of
    the covered data changes from `old` to `new`: HC' = ~(~HC + ~m + m')."""
    s = (~hc & 0xFFFF) + (~old & 0xFFFF) + new
    return ~fold(s) & 0xFFFF


def cksum_bulk(view) -> int:
    """The one's-complement sum of a long region (a bytes-like object), as
    an integer congruent to it modulo 0xFFFF (0..0xFFFE; fold() is a no-op
    on it). Reading the region as one big-endian integer works because
    2**16 == 1 modulo 0xFFFF; it is about five times faster than summing
    16-bit words one by one. An odd trailing byte is padded with zero."""
    s = int.from_bytes(view, "big")
    if len(view) & 1:
        s <<= 8
    return s % 0xFFFF
