"""10,000 damaged IPv6 frames into the stack: lying payload lengths, cut
extension-header chains, ND messages with bad options or hop limits,
random bytes anywhere. Afterwards every mbuf is back in the pool and the
stack still forwards, answers echo and resolves neighbours. A fixed seed:
the same frames on every run, so a failure is reproducible."""

import random

from net6 import H0, H1, R0, R1, Router6, inject, na, take
from scapy.layers.inet import UDP
from scapy.layers.inet6 import (
    ICMPv6EchoRequest,
    ICMPv6ND_NA,
    ICMPv6ND_NS,
    ICMPv6NDOptSrcLLAddr,
    IPv6,
    IPv6ExtHdrDestOpt,
    IPv6ExtHdrFragment,
    IPv6ExtHdrHopByHop,
    IPv6ExtHdrRouting,
)
from scapy.layers.l2 import Ether

SEED = 20261207


def seeds(r6):
    """Well-formed frames of every kind the fuzzer damages."""
    e0 = dict(dst=r6.MAC0, src=r6.H0_MAC)
    return [bytes(f) for f in (
        Ether(**e0) / IPv6(src=H0, dst=H1) / ICMPv6EchoRequest(data=b"x" * 40),
        Ether(**e0) / IPv6(src=H0, dst=R0) / ICMPv6EchoRequest(data=b"y" * 20),
        Ether(**e0) / IPv6(src=H0, dst=H1) / IPv6ExtHdrHopByHop() / IPv6ExtHdrDestOpt()
        / IPv6ExtHdrRouting() / UDP(dport=7) / (b"z" * 30),
        Ether(**e0) / IPv6(src=H0, dst=R0) / IPv6ExtHdrFragment(m=1) / UDP() / (b"f" * 16),
        Ether(dst="33:33:ff:00:00:01", src=r6.H0_MAC) / IPv6(src=H0, dst="ff02::1:ff00:1",
                                                             hlim=255)
        / ICMPv6ND_NS(tgt=R0) / ICMPv6NDOptSrcLLAddr(lladdr=r6.H0_MAC),
        na(r6, r6.if0, H0, r6.H0_MAC, R0),
        Ether(**e0) / IPv6(src=H0, dst=R0, hlim=255) / ICMPv6ND_NA(tgt=H0, S=1),
    )]


def damage(rng, frame: bytes) -> bytes:
    b = bytearray(frame)
    kind = rng.randrange(6)
    if kind == 0:                                       # lying payload length
        v = rng.choice([0, 1, 39, len(b) - 54, len(b) - 53, 0xFFFF, rng.randrange(65536)])
        b[18:20] = (v % 65536).to_bytes(2, "big")
    elif kind == 1:                                     # cut short anywhere
        b = b[:rng.randrange(15, len(b) + 1)]
    elif kind == 2:                                     # a next header of any value
        b[20] = rng.randrange(256)
    elif kind == 3:                                     # an extension header's length
        if len(b) > 55:
            b[55] = rng.randrange(256)
    elif kind == 4:                                     # hop limit and ND option lengths
        b[21] = rng.choice([0, 1, 2, 254, 255])
        if len(b) > 80:
            b[rng.randrange(78, len(b))] = rng.choice([0, 1, 2, 0xFF])
    for _ in range(rng.randrange(4)):                   # and a few random bytes
        b[rng.randrange(14, len(b))] = rng.randrange(256)
    return bytes(b)


def test_ten_thousand_damaged_frames_leave_the_stack_working(stack, clock):
    r6 = Router6(stack, clock)
    rng = random.Random(SEED)
    base = seeds(r6)
    for i in range(10_000):
        inject(rng.choice((r6.if0, r6.if1)), damage(rng, rng.choice(base)))
        if i % 500 == 0:
            clock.advance(1.0)
            stack.nd6.timer()                           # retries, timeouts, DAD
    for _ in range(5):                                  # let every neighbour state end
        clock.advance(10.0)
        stack.nd6.timer()
    stack.nd6.flush(r6.if0)
    stack.nd6.flush(r6.if1)
    take(r6.if0)
    take(r6.if1)
    assert stack.pool.in_use == 0, stack.pool.stats()
    # Still a router: echo from H0 answered, H0 -> H1 forwarded once resolved.
    inject(r6.if0, r6.from_h0(IPv6(src=H0, dst=R0) / ICMPv6EchoRequest(seq=9)))
    inject(r6.if0, na(r6, r6.if0, H0, r6.H0_MAC, R0))
    inject(r6.if0, r6.from_h0(IPv6(src=H0, dst=H1) / ICMPv6EchoRequest(seq=10)))
    inject(r6.if1, na(r6, r6.if1, H1, r6.H1_MAC, R1))
    replies = [f for f in take(r6.if0) if f.haslayer("ICMPv6 Echo Reply")]
    fwd = [f for f in take(r6.if1) if f.haslayer(ICMPv6EchoRequest)]
    assert [f["ICMPv6 Echo Reply"].seq for f in replies] == [9]
    assert [f[ICMPv6EchoRequest].seq for f in fwd] == [10]
    assert stack.pool.in_use == 0
