"""Helpers for the IPv6 unit tests: the fake router of fakenet.py with IPv6
on both sides, DAD done, and the hosts' frames built by scapy.

    H0 2001:2:0:a::2 --- fk0 2001:2:0:a::1/64 [stack] fk1 2001:2:0:b::1/64 --- H1 2001:2:0:b::2
"""

from scapy.layers.inet6 import ICMPv6ND_NA, ICMPv6NDOptDstLLAddr, IPv6
from scapy.layers.l2 import Ether

from iopkt.net.ether import mac_aton
from iopkt.netinet6.in6 import aton6, linklocal

from fakenet import Router, inject, take

A_NET, B_NET = "2001:2:0:a::", "2001:2:0:b::"
R0, R1 = A_NET + "1", B_NET + "1"
H0, H1 = A_NET + "2", B_NET + "2"


class Router6(Router):
    """fakenet's Router with IPv6: link-local and global addresses on both
    interfaces, through DAD (one probe each, nothing answered)."""

    def __init__(self, stack, clock):
        super().__init__(stack, clock)
        for ifp, addr in ((self.if0, R0), (self.if1, R1)):
            stack.ip6.ifattach(ifp)
            stack.ip6.add_address(ifp, aton6(addr), 64)
        stack.nd6.timer()                   # the DAD probes
        self.dad_probes = take(self.if0) + take(self.if1)
        clock.advance(1.0)
        stack.nd6.timer()                   # RETRANS_TIMER later: ours
        self.ll0 = linklocal(mac_aton(self.MAC0))

    def from_h0(self, pkt):
        return Ether(dst=self.MAC0, src=self.H0_MAC) / pkt

    def from_h1(self, pkt):
        return Ether(dst=self.MAC1, src=self.H1_MAC) / pkt


def na(router, ifp, host, host_mac, dst, solicited=True, override=True, hlim=255):
    """An NA from `host` for itself, sent to `dst`."""
    mac = router.MAC0 if ifp is router.if0 else router.MAC1
    return Ether(dst=mac, src=host_mac) / IPv6(src=host, dst=dst, hlim=hlim) / ICMPv6ND_NA(
        tgt=host, S=int(solicited), O=int(override), R=0) / ICMPv6NDOptDstLLAddr(lladdr=host_mac)


__all__ = ["Router6", "na", "inject", "take", "H0", "H1", "R0", "R1"]
