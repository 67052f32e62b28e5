"""Helpers for the ip6.py tests (test_ip6_*.py): net6's Router6 with both
hosts' neighbour entries REACHABLE, a third host on fk1, the counters a
test moved, and frames split across mbufs.

    H0 2001:2:0:a::2 --- fk0 [stack] fk1 --- H1 2001:2:0:b::2
                                          \\-- H2 2001:2:0:b::3
"""

from net6 import H0, H1, R0, R1, Router6, inject, na, take
from scapy.layers.inet6 import ICMPv6EchoRequest, IPv6
from scapy.layers.l2 import Ether

H2 = "2001:2:0:b::3"
H2_MAC = "02:bb:00:00:01:03"


def resolved(stack, clock, h2: bool = False) -> Router6:
    """Router6 whose neighbours H0 and H1 (and H2 if asked) are REACHABLE:
    each host pings the router, the router solicits it, the host answers.
    Every frame sent so far is taken."""
    r = Router6(stack, clock)
    hosts = [(r.if0, H0, r.H0_MAC, R0), (r.if1, H1, r.H1_MAC, R1)]
    if h2:
        hosts.append((r.if1, H2, H2_MAC, R1))
    for ifp, host, mac, ours in hosts:
        mymac = r.MAC0 if ifp is r.if0 else r.MAC1
        inject(ifp, Ether(dst=mymac, src=mac) / IPv6(src=host, dst=ours) / ICMPv6EchoRequest())
        inject(ifp, na(r, ifp, host, mac, ours))
    take(r.if0)
    take(r.if1)
    r.if0.sent_meta.clear()
    r.if1.sent_meta.clear()
    return r


def cache_both(r) -> None:
    """Put H0 and H1 in the route cache as the forwarding path does (the
    stack's own replies do not fill it): one packet across each way,
    taken, the sources seen forgotten again."""
    inject(r.if0, Ether(dst=r.MAC0, src=r.H0_MAC) / IPv6(src=H0, dst=H1) / ICMPv6EchoRequest())
    inject(r.if1, Ether(dst=r.MAC1, src=r.H1_MAC) / IPv6(src=H1, dst=H0) / ICMPv6EchoRequest())
    take(r.if0)
    take(r.if1)
    r.if0.sent_meta.clear()
    r.if1.sent_meta.clear()
    r.stack.ip6.good_src.clear()


class Counters:
    """What moved since it was made: ip6.stats(), the interfaces' discard
    reasons and software offload counters, icmp6's sent histogram."""

    def __init__(self, r):
        self.r = r
        self.before = self._now()

    def _now(self) -> dict:
        st = self.r.stack
        now = {f"ip6.{k}": v for k, v in st.ip6.stats().items()}
        for ifp in (self.r.if0, self.r.if1):
            for k, v in ifp.in_discards.items():
                now[f"{ifp.name}.in.{k}"] = v
            for k, v in ifp.out_discards.items():
                now[f"{ifp.name}.out.{k}"] = v
            for k in ("sw_tso", "sw_tso_segs", "sw_csum"):
                now[f"{ifp.name}.{k}"] = getattr(ifp, k)
        for k, v in st.icmp6.outhist.items():
            now[f"icmp6.out.{k}"] = v
        return now

    def moved(self) -> dict:
        now = self._now()
        d = {k: v - self.before.get(k, 0) for k, v in now.items()}
        return {k: v for k, v in d.items() if v}


def hop_limit_less(pkt, by: int = 1) -> bytes:
    """The bytes of IPv6 packet `pkt` with its hop limit `by` lower."""
    b = bytearray(bytes(pkt))
    b[7] -= by
    return bytes(b)


def split(pool, frame: bytes, at: int):
    """`frame` as a chain of two cluster mbufs cut after byte `at`."""
    head, tail = pool.get(), pool.get()
    head.view[head.off:head.off + at] = frame[:at]
    head.len = at
    tail.off, tail.flags = 0, 0
    tail.view[0:len(frame) - at] = frame[at:]
    tail.len = len(frame) - at
    head.next = tail
    head.pkt_len = len(frame)
    return head
