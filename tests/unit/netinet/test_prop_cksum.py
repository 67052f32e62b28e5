"""Properties of the Internet checksum (cksum.py) and of the forwarding
path's TTL decrement (ipv4.py), each against a plain recomputation.

Why exhaustive: an incremental update that drops the end-around carry, or
writes -0 (0xFFFF) where recomputation writes 0, is wrong for only a few
of the 65536 checksum values (0xFF00..0xFFFF, 0xFEFF); random headers hit
them about once in 256 tries. So every checksum value a header can carry,
0x0000..0xFFFF, goes through cksum_update16 and through the stack's own
forwarding loop (where the TTL update is written inline); hypothesis adds
random headers, data, offsets, lengths and initial sums on top.
"""

import random
import struct

from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from iopkt.netinet.cksum import cksum_bulk, cksum_sum, cksum_update16, fold, in_cksum

from fakenet import Router as R
from fakenet import aton, inject

SETTINGS = settings(max_examples=150, deadline=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture,
                                           HealthCheck.too_slow])
H10 = struct.Struct("!10H")


# -- a plain RFC 1071 reference ---------------------------------------------------

def ref_words(data: bytes) -> list:
    """The 16-bit big-endian words of `data`, an odd last byte padded with 0."""
    if len(data) & 1:
        data = data + b"\0"
    return [(data[i] << 8) | data[i + 1] for i in range(0, len(data), 2)]


def ones_add(a: int, b: int) -> int:
    """16-bit one's-complement addition, end-around carry at each step."""
    s = a + b
    return (s & 0xFFFF) + (s >> 16)


def ref_sum(data: bytes, start: int = 0) -> int:
    """The folded one's-complement sum of `data` (0 only when everything is 0)."""
    s = start
    for w in ref_words(data):
        s = ones_add(s, w)
    return s


def ref_cksum(data: bytes, start: int = 0) -> int:
    return ~ref_sum(data, start) & 0xFFFF


def ref_fold(x: int) -> int:
    """What folding a non-negative sum must give: 0 for 0, else the
    representative of x mod 0xFFFF in 1..0xFFFF."""
    return 0 if x == 0 else (x - 1) % 0xFFFF + 1


def hdr_sum(hdr: bytes) -> int:
    """ref_sum for an even-length header, faster (the loops run 65536
    times): the words' integer sum, folded by ref_fold."""
    return ref_fold(sum(struct.unpack(f"!{len(hdr) >> 1}H", hdr)))


def header_with_cksum(hc: int, words: list, free: int = 2) -> bytearray:
    """A 20-byte header made of `words` (ten 16-bit values) whose word
    `free` is chosen so that `hc`, stored as word 5, is a valid checksum:
    0x0000..0xFFFE as recomputation writes them, and 0xFFFF as the other
    form of -0 (valid when the rest sums to 0 modulo 0xFFFF)."""
    w = list(words)
    w[5] = 0
    w[free] = 0
    t = ~hc & 0xFFFF
    w[free] = (t - fold(sum(w))) % 0xFFFF
    w[5] = hc
    hdr = bytearray(H10.pack(*w))
    assert hdr_sum(hdr) == 0xFFFF               # it checks
    return hdr


def recomputed(hdr: bytes) -> int:
    """The header checksum recomputation writes for `hdr` (any length)."""
    b = bytearray(hdr)
    b[10:12] = b"\0\0"
    return ~hdr_sum(b) & 0xFFFF


# -- cksum_sum, fold, in_cksum, cksum_bulk against the reference -------------

@st.composite
def regions(draw, max_size=300):
    """(data, start, length): a region inside some bytes."""
    data = draw(st.binary(max_size=max_size))
    start = draw(st.integers(0, len(data)))
    length = draw(st.integers(0, len(data) - start))
    return data, start, length


@SETTINGS
@given(region=regions(),
       initial=st.one_of(st.just(0), st.integers(0, 0xFFFF), st.integers(0, 2 ** 40)))
def test_cksum_sum_is_the_plain_word_sum(region, initial):
    """cksum_sum: `initial` plus the 16-bit words of the region, unfolded,
    an odd last byte padded with zero; in_cksum: its folded complement."""
    data, start, length = region
    region = data[start:start + length]
    s = cksum_sum(data, start, length, initial)
    assert s == initial + sum(ref_words(region))
    assert fold(s) == ref_sum(region, ref_fold(initial))
    assert in_cksum(data, start, length, initial) == ref_cksum(region, ref_fold(initial))
    assert in_cksum(bytearray(data), start, length, initial) == \
        in_cksum(memoryview(data), start, length, initial)


@SETTINGS
@given(region=regions(200))
def test_in_cksum_default_length_is_the_rest(region):
    data, start, _ = region
    assert in_cksum(data, start) == ref_cksum(data[start:])
    if start == 0:
        assert in_cksum(data) == ref_cksum(data)


@SETTINGS
@given(x=st.one_of(st.integers(0, 0x1FFFF), st.integers(0, 2 ** 64),
                   st.sampled_from([0, 0xFFFF, 0x10000, 0x1FFFE, 0xFFFF0000, 0xFFFEFFFF + 1])))
def test_fold_is_the_residue_mod_ffff_in_1_to_ffff(x):
    """fold keeps a sum's value modulo 0xFFFF in 16 bits and never turns a
    non-zero sum into 0: 0xFFFF stands for -0."""
    f = fold(x)
    assert f == ref_fold(x)
    assert fold(f) == f
    if x <= 0xFFFF:
        assert f == x


@SETTINGS
@given(a=st.binary(max_size=200), b=st.binary(max_size=200))
def test_sums_chain_over_even_pieces(a, b):
    """A running sum (initial=) over an even-length first piece equals the
    sum over both pieces at once."""
    a = a[:len(a) & ~1]
    assert in_cksum(b, initial=cksum_sum(a, 0, len(a))) == in_cksum(a + b) == ref_cksum(a + b)


@SETTINGS
@given(data=st.binary(max_size=400), at=st.integers(0, 200))
def test_a_stored_checksum_makes_the_region_sum_to_zero(data, at):
    """Store in_cksum at an even offset in a region (the field zero
    first): in_cksum over the region is then 0."""
    buf = bytearray(data) + bytearray(2)
    at = min(at & ~1, (len(buf) - 2) & ~1)
    buf[at:at + 2] = b"\0\0"
    c = in_cksum(buf)
    buf[at:at + 2] = c.to_bytes(2, "big")
    assert in_cksum(buf) == 0


@settings(max_examples=100, deadline=None)
@given(data=st.one_of(st.binary(max_size=300), st.binary(min_size=300, max_size=3000),
                      st.sampled_from([b"", b"\0", b"\xff", b"\xff\xff", b"\xff" * 7,
                                       b"\xff\xff" * 200, b"\0\0" * 9])))
def test_cksum_bulk_is_the_sum_mod_ffff(data):
    """cksum_bulk: the one's-complement sum modulo 0xFFFF (0..0xFFFE), so
    fold() leaves it alone and it checksums like the word sum; an odd
    last byte padded with zero."""
    b = cksum_bulk(data)
    assert 0 <= b <= 0xFFFE and fold(b) == b
    assert b == ref_sum(data) % 0xFFFF
    assert b == cksum_sum(data, 0, len(data)) % 0xFFFF
    assert cksum_bulk(memoryview(bytearray(data))) == b
    if data:
        assert (0xFFFF - b) % 0xFFFF == in_cksum(data) % 0xFFFF


# -- cksum_update16: every checksum value ------------------------------------------

BASE = [0x4500, 84, 0, 0x4000, 0x4011, 0, 0x0A00, 0x0002, 0x0A00, 0x0102]


def test_ttl_decrement_update_for_every_checksum_value():
    """RFC 1624 eqn. 3 for TTL - 1 over headers carrying each of the 65536
    checksum values (the TTL cycling through 1..255), against
    recomputation: exactly what recomputation writes."""
    w = list(BASE)
    for hc in range(0x10000):
        w[4] = ((1 + hc % 255) << 8) | 17
        hdr = header_with_cksum(hc, w)
        old = w[4]
        new = old - 0x100
        struct.pack_into("!H", hdr, 8, new)
        got = cksum_update16(hc, old, new)
        assert got == recomputed(hdr), f"checksum {hc:#06x}: {got:#06x}"


def test_any_word_update_for_every_checksum_value():
    """Any one word (not the version/IHL word, so the header never becomes
    all zero) changed to any value, for each of the 65536 checksum values:
    a valid checksum, and exactly the recomputed one unless the input held
    the -0 form 0xFFFF and the change takes a 0xFFFF word to 0 (then eqn. 3
    keeps -0 as 0xFFFF, recomputation writes 0: both valid)."""
    rnd = random.Random(1624)
    for hc in range(0x10000):
        w = (0x4500,) + struct.unpack("!9H", rnd.randbytes(18))
        hdr = header_with_cksum(hc, w, free=rnd.choice([1, 2, 3, 4, 6, 7, 8, 9]))
        i = rnd.choice([1, 2, 3, 4, 6, 7, 8, 9])
        old = struct.unpack_from("!H", hdr, 2 * i)[0]
        new = rnd.choice([rnd.randrange(0x10000), 0, 0xFFFF, old, (old + 1) & 0xFFFF])
        struct.pack_into("!H", hdr, 2 * i, new)
        got = cksum_update16(hc, old, new)
        check = bytearray(hdr)
        check[10:12] = got.to_bytes(2, "big")
        assert hdr_sum(check) == 0xFFFF, (hc, i, old, new)
        if not (hc == 0xFFFF and old == 0xFFFF and new == 0):
            assert got == recomputed(hdr), (hc, i, old, new, got)


@SETTINGS
@given(words=st.lists(st.integers(0, 0xFFFF), min_size=9, max_size=29),
       i=st.integers(0, 27), new=st.integers(0, 0xFFFF))
def test_update_of_a_longer_header_equals_recomputation(words, i, new):
    """Headers with options (up to 60 bytes), a recomputed checksum, any
    word but the first and the checksum itself changed."""
    hdr = bytearray(struct.pack(f"!{len(words) + 1}H", 0x4500 | len(words), *words))
    i = [k for k in range(1, len(words) + 1) if k != 5][i % (len(words) - 1)]
    hdr[10:12] = b"\0\0"
    c = ref_cksum(hdr)
    hdr[10:12] = c.to_bytes(2, "big")
    old = struct.unpack_from("!H", hdr, 2 * i)[0]
    struct.pack_into("!H", hdr, 2 * i, new)
    assert cksum_update16(c, old, new) == recomputed(hdr)


# -- the forwarding path: TTL - 1 and the header checksum, inline in Ip.input ------

SRC, DST = aton(R.H0), aton(R.H1)


def frames(net, pkts) -> list:
    """The Ethernet frames H0 -> router carrying IP packets `pkts`."""
    eth = net.eth0()
    return [eth + p for p in pkts]


def check_forwarded(out: bytes, sent: bytes, hlen: int) -> None:
    """`out` (an Ethernet frame) is `sent` (an IP packet) one hop later:
    TTL - 1, the checksum recomputation writes, nothing else changed."""
    ip = out[14:]
    assert len(ip) == len(sent)
    assert ip[8] == sent[8] - 1
    want = bytearray(sent[:hlen])
    want[8] -= 1
    want[10:12] = b"\0\0"
    c = ~hdr_sum(want) & 0xFFFF
    got = (ip[10] << 8) | ip[11]
    assert got == c, f"checksum {sent[10]:02x}{sent[11]:02x} -> {got:#06x}, want {c:#06x}"
    assert ip[:8] == sent[:8] and ip[9] == sent[9] and ip[12:] == sent[12:]


def test_forwarding_ttl_update_for_every_checksum_value(net, stack):
    """Through the stack: 65536 packets H0 -> H1 whose headers carry each
    checksum value 0x0000..0xFFFF (0xFFFF as the -0 form, which is valid
    too), TTL 2..255: each leaves with TTL - 1 and exactly the recomputed
    checksum."""
    w = list(BASE)
    w[1] = 28
    w[6:10] = SRC >> 16, SRC & 0xFFFF, DST >> 16, DST & 0xFFFF
    udp = bytes(8)
    sent = []
    for hc in range(0x10000):
        w[4] = ((2 + hc % 254) << 8) | 17
        w[3] = 0x4000 if hc & 1 else 0
        sent.append(bytes(header_with_cksum(hc, w)) + udp)
    burst = 128
    for i in range(0, len(sent), burst):
        chunk = sent[i:i + burst]
        inject(net.if0, *frames(net, chunk))
        assert len(net.if1.sent) == len(chunk)
        for out, p in zip(net.if1.sent, chunk):
            check_forwarded(out, p, 20)
        net.if1.sent.clear()
    assert stack.ip.ips_forward == 0x10000 and net.if0.sent == []


ipv4_options = st.integers(0, 10).flatmap(
    lambda n: st.binary(min_size=4 * n, max_size=4 * n))


@settings(max_examples=200, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture,
                                 HealthCheck.too_slow])
@given(hc=st.integers(0, 0xFFFF), ttl=st.integers(2, 255), tos=st.integers(0, 255),
       proto=st.integers(0, 255), frag=st.integers(0, 0xFFFF) | st.just(0x4000),
       src=st.integers(0x01000000, 0xDFFFFFFF), opts=ipv4_options,
       payload=st.binary(max_size=64))
def test_forwarding_random_headers(net, stack, hc, ttl, tos, proto, frag, src, opts, payload):
    """Random headers (options too: the slow header check, same update),
    any checksum value: forwarded with TTL - 1 and the recomputed checksum."""
    frag &= ~0x8000                             # the reserved bit: leave it clear
    assume(src >> 24 != 127 and src not in (aton(R.IP0), aton(R.IP1))
           and src not in (aton("10.0.0.255"), aton("10.0.1.255")))
    hlen = 20 + len(opts)
    tlen = hlen + len(payload)
    w = [((0x40 | hlen >> 2) << 8) | tos, tlen, 0, frag, (ttl << 8) | proto, 0,
         src >> 16, src & 0xFFFF, DST >> 16, DST & 0xFFFF]
    if opts:
        # The options take part in the sum: fold them into the free word.
        osum = fold(sum(ref_words(opts)))
        hdr = header_with_cksum(hc, w)
        ident = (struct.unpack_from("!H", hdr, 4)[0] - osum) % 0xFFFF
        struct.pack_into("!H", hdr, 4, ident)
        hdr += opts
        assert ref_sum(hdr) == 0xFFFF
    else:
        hdr = header_with_cksum(hc, w)
    assert (hdr[10] << 8 | hdr[11]) == hc
    pkt = bytes(hdr) + payload
    inject(net.if0, *frames(net, [pkt]))
    (out,) = net.if1.sent
    net.if1.sent.clear()
    check_forwarded(out, pkt, hlen)
