"""Properties of IPv4 fragmentation (ipv4.py Ip.fragment), through the
stack: a packet forwarded H0 -> H1 (or an echo reply the router sends)
that does not fit the outgoing MTU leaves as fragments that scapy's
defragment puts back together into exactly the original.

Why: fragmentation is a slow path few packets take, with arithmetic
(offsets in 8-byte units, the MF flag, the options copied into later
fragments, each header's own checksum) where an off-by-one still yields
plausible packets. So for random payload sizes, MTUs from the minimum 68
up, IP options of any length and copy flag, and input that is itself a
fragment, every fragment is checked field by field and the whole
reassembled; the pool must be empty after each packet.
"""

import struct

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scapy.compat import raw
from scapy.layers.inet import ICMP, IP, defragment

from fakenet import Router as R
from fakenet import aton, inject, ip_of, take

SETTINGS = settings(max_examples=80, deadline=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture,
                                           HealthCheck.too_slow])
PROTO = 253                 # RFC 3692 experimental: scapy leaves the payload alone
MAX_FRAGS = 150             # the stack's pool has 256 clusters


def ones_cksum(hdr: bytes) -> int:
    """The RFC 1071 checksum over `hdr` (even length), computed plainly."""
    s = sum(struct.unpack(f"!{len(hdr) // 2}H", hdr))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


@st.composite
def ip_options(draw):
    """Well-formed IPv4 options (0..40 bytes, padded with EOL to a 4-byte
    boundary): NOPs and type-length-value options whose copy flag (0x80)
    is set or clear, e.g. security (130) copied, record route (7) not."""
    out = bytearray()
    while True:
        room = 40 - len(out)
        kind = draw(st.sampled_from(["end", "nop", "opt", "opt", "opt"]))
        if kind == "end" or room < 1:
            break
        if kind == "nop":
            out.append(1)
            continue
        if room < 2:
            break
        t = draw(st.sampled_from([0x07, 0x44, 0x82, 0x83, 0x89, 0x94, 0x1E, 0x9E]))
        ln = draw(st.integers(2, min(room, 12)))
        out += bytes([t, ln]) + draw(st.binary(min_size=ln - 2, max_size=ln - 2))
    while len(out) % 4:
        out.append(0)
    return bytes(out)


def copied_options(opts: bytes) -> bytes:
    """What fragments after the first carry (RFC 791): the options with the
    copy flag, in order, padded with zeros to a 4-byte boundary."""
    out = bytearray()
    i = 0
    while i < len(opts):
        t = opts[i]
        if t == 0:
            break
        if t == 1:
            i += 1
            continue
        ln = opts[i + 1]
        if t & 0x80:
            out += opts[i:i + ln]
        i += ln
    while len(out) % 4:
        out.append(0)
    return bytes(out)


def packet(opts: bytes, payload: bytes, ident: int, ttl: int, tos: int,
           frag: int = 0, src: str = R.H0, dst: str = R.H1, proto: int = PROTO) -> bytes:
    """An IPv4 packet with a correct header checksum, built by hand so
    that the options are exactly `opts`."""
    hlen = 20 + len(opts)
    hdr = bytearray(struct.pack("!BBHHHBBHII", 0x40 | hlen >> 2, tos, hlen + len(payload),
                                ident, frag, ttl, proto, 0, aton(src), aton(dst)))
    hdr += opts
    struct.pack_into("!H", hdr, 10, ones_cksum(hdr))
    return bytes(hdr) + payload


def check_fragments(ips: list, orig: bytes, mtu: int, ttl_drop: int = 1) -> None:
    """Every fragment of `orig` (scapy IP layers, in the order sent):
    fits the MTU, carries a valid header checksum, the original's fields
    (TTL - `ttl_drop`), the options it must, an offset that continues the
    previous fragment, MF on all but the last (the last: the original's),
    a payload that is a multiple of 8 and as long as the MTU allows on
    all but the last, and the original payload's bytes at its offset."""
    ohlen = (orig[0] & 0x0F) << 2
    opts = orig[20:ohlen]
    later = copied_options(opts)
    data = orig[ohlen:]
    ofrag = struct.unpack_from("!H", orig, 6)[0]
    base, omf = ofrag & 0x1FFF, ofrag & 0x2000
    pos = 0
    for i, ip in enumerate(ips):
        b = raw(ip)
        hlen = (b[0] & 0x0F) << 2
        last = i == len(ips) - 1
        assert len(b) <= mtu, f"fragment {i}: {len(b)} bytes, MTU {mtu}"
        assert struct.unpack_from("!H", b, 2)[0] == len(b)
        assert ones_cksum(b[:hlen]) == 0, f"fragment {i}: bad header checksum"
        assert b[0] >> 4 == 4 and b[1] == orig[1] and b[4:6] == orig[4:6]
        assert b[8] == orig[8] - ttl_drop and b[9] == orig[9] and b[12:20] == orig[12:20]
        assert b[20:hlen] == (opts if i == 0 else later), f"fragment {i}: options"
        fo = struct.unpack_from("!H", b, 6)[0]
        assert not fo & 0x8000 and not fo & 0x4000          # reserved, DF: clear
        assert fo & 0x1FFF == base + pos // 8, f"fragment {i}: offset"
        assert bool(fo & 0x2000) == (not last or bool(omf)), f"fragment {i}: MF"
        chunk = b[hlen:]
        assert chunk, f"fragment {i}: empty"
        if not last:
            assert len(chunk) % 8 == 0
            assert len(chunk) == (mtu - hlen) & ~7, f"fragment {i}: not full"
        assert chunk == data[pos:pos + len(chunk)], f"fragment {i}: payload"
        pos += len(chunk)
    assert pos == len(data)


@st.composite
def oversized(draw, max_mtu=1500):
    """(mtu, options, payload length): a packet longer than the MTU (up to
    9000 bytes), cut into at most MAX_FRAGS fragments."""
    mtu = draw(st.one_of(st.integers(68, 120), st.integers(68, max_mtu),
                         st.sampled_from([68, 69, 75, 76, 576, 1280, 1500])))
    opts = draw(ip_options())
    hlen = 20 + len(opts)
    per = (mtu - 20 - len(copied_options(opts))) & ~7
    top = min(9000, MAX_FRAGS * per) - hlen
    lo = max(0, mtu - hlen + 1)
    n = draw(st.one_of(st.integers(lo, min(top, lo + 64)), st.integers(lo, top)))
    return mtu, opts, n


@SETTINGS
@given(case=oversized(), ident=st.integers(0, 0xFFFF), ttl=st.integers(2, 255),
       tos=st.integers(0, 255), seed=st.integers(0, 255))
def test_forwarded_packet_fragments_and_reassembles(net, stack, case, ident, ttl, tos, seed):
    """DF clear, longer than the outgoing MTU: fragments that fit, each
    checked, and scapy reassembles exactly the original (TTL - 1)."""
    mtu, opts, n = case
    net.if0.mtu = 9000
    net.if1.mtu = mtu
    payload = bytes((seed + i * 131) & 0xFF for i in range(n))
    orig = packet(opts, payload, ident, ttl, tos)
    before = stack.ip.ips_fragmented, stack.ip.ips_ofragments, stack.ip.ips_forward
    inject(net.if0, net.eth0() + orig)
    frames = take(net.if1)
    assert all(f.dst == R.H1_MAC and f.src == R.MAC1 for f in frames)
    ips = [ip_of(f) for f in frames]
    check_fragments(ips, orig, mtu)
    per0 = (mtu - len(orig) + n) & ~7
    pern = (mtu - 20 - len(copied_options(opts))) & ~7
    assert len(ips) == 1 + -(-max(0, n - per0) // pern)     # no more than needed
    whole = defragment(ips)
    assert len(whole) == 1
    w = raw(whole[0][IP])
    ohlen = 20 + len(opts)
    assert w[ohlen:] == payload and w[20:ohlen] == opts
    assert (IP(w).id, IP(w).ttl, IP(w).tos, IP(w).proto) == (ident, ttl - 1, tos, PROTO)
    assert (stack.ip.ips_fragmented, stack.ip.ips_ofragments, stack.ip.ips_forward) == \
        (before[0] + 1, before[1] + len(ips), before[2] + 1)
    assert stack.pool.in_use == 0 and net.if0.sent == []


@SETTINGS
@given(case=oversized(), off=st.integers(0, 0x1FFF - 1200), mf=st.booleans(),
       ident=st.integers(0, 0xFFFF), seed=st.integers(0, 255))
def test_a_fragment_fragmented_again_keeps_its_place(net, stack, case, off, mf, ident, seed):
    """Input that is itself a fragment (offset `off` * 8, MF or not): its
    pieces continue from its offset and the last keeps its MF flag."""
    mtu, opts, n = case
    off = min(off, 0x1FFF - (n >> 3) - 1)
    net.if0.mtu = 9000
    net.if1.mtu = mtu
    if mf:
        n = max(8, n & ~7)          # a fragment with MF carries a multiple of 8
        if n + 20 + len(opts) <= mtu:
            n += 8
    payload = bytes((seed + i * 37) & 0xFF for i in range(n))
    orig = packet(opts, payload, ident, 64, 0, frag=off | (0x2000 if mf else 0))
    inject(net.if0, net.eth0() + orig)
    ips = [ip_of(f) for f in take(net.if1)]
    check_fragments(ips, orig, mtu)
    assert stack.pool.in_use == 0


@SETTINGS
@given(n=st.integers(8, 1900), mtu=st.integers(68, 1500), opts=ip_options(),
       ident=st.integers(0, 0xFFFF))
def test_echo_reply_the_router_sends_is_fragmented(net, stack, n, mtu, opts, ident):
    """ip_output's path: an echo reply longer than the MTU leaves in
    fragments (TTL 64, the addresses swapped, the options reflected) that
    reassemble into the reply."""
    net.if1.mtu = mtu
    echo = raw(ICMP(type=8, id=0x77, seq=ident) / bytes(i & 0xFF for i in range(n)))
    req = packet(opts, echo, ident, 30, 0, src=R.H1, dst=R.IP1, proto=1)
    inject(net.if1, raw(net.from_h1(IP()))[:14] + req)
    ips = [ip_of(f) for f in take(net.if1)]
    assert ips, "no reply"
    reply = bytearray(req)
    reply[8] = 64
    reply[12:20] = req[16:20] + req[12:16]
    hlen = 20 + len(opts)
    reply[hlen] = 0                                             # echo reply
    reply[hlen + 2:hlen + 4] = b"\0\0"
    struct.pack_into("!H", reply, hlen + 2, ones_cksum(bytes(reply[hlen:]) + b"\0" * (n & 1)))
    reply[10:12] = b"\0\0"
    struct.pack_into("!H", reply, 10, ones_cksum(bytes(reply[:hlen])))
    reply = bytes(reply)
    if len(reply) <= mtu:
        assert len(ips) == 1 and raw(ips[0]) == reply
    else:
        check_fragments(ips, reply, mtu, ttl_drop=0)
        whole = defragment(ips)
        assert len(whole) == 1 and raw(whole[0][IP])[hlen:] == reply[hlen:]
    assert stack.pool.in_use == 0
