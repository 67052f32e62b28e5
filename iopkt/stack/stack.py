"""The stack: io-pkt's stack context assembled: the loop (kern/loop.py),
the mbuf pool, the interfaces, IPv4, ARP and ICMP, IPv6, ND and ICMPv6.

    stack = Stack("iopkt")
    attach drivers (they call interrupt_attach and if_attach)
    stack.run()          # until stop() or SIGINT/SIGTERM
"""

from __future__ import annotations

import logging
import time
from typing import Callable

from iopkt.kern.loop import EventLoop
from iopkt.kern.mbuf import DEFAULT_NMBJUMBO, MbufPool
from iopkt.net.bpf import bpf_ifdetach
from iopkt.net.ifnet import IFF_RUNNING, IFF_UP, LINK_STATE_DOWN, Ifnet
from iopkt.net.route import RTF_CONNECTED, ntoa
from iopkt.netinet.arp import Arp
from iopkt.netinet.icmp import Icmp
from iopkt.netinet.ipv4 import Ip
from iopkt.netinet6.icmp6 import Icmp6
from iopkt.netinet6.in6 import IN6_IFF_AUTOCONF, ntoa6
from iopkt.netinet6.ip6 import Ip6
from iopkt.netinet6.nd6 import Nd6


class Stack(EventLoop):
    # NetBSD's net.inet6.ip6.auto_linklocal: an interface gets its link-local
    # address (and starts DAD, which sends a Neighbor Solicitation) when it
    # is attached. Off, it has no IPv6 until an address is configured.
    auto_linklocal = True

    def __init__(self, name: str = "iopkt", nmbclusters: int = 4096,
                 mclbytes: int = 2048, clock: Callable[[], float] = time.monotonic,
                 log: logging.Logger | None = None, nmbjumbo: int = DEFAULT_NMBJUMBO):
        super().__init__(clock, log)
        self.name = name
        self.pool = MbufPool(nmbclusters, mclbytes, nmbjumbo=nmbjumbo)
        self.ifnets: dict[str, Ifnet] = {}
        self.ip = Ip(self)
        self.arp = Arp(self)
        self.icmp = Icmp(self)
        self.ip6 = Ip6(self)
        self.nd6 = Nd6(self)
        self.icmp6 = Icmp6(self)
        # What unmounted interfaces had configured, by device (if_devkey):
        # (addresses, mtu set since the mount or 0, static routes), given
        # back when the device is mounted again.
        self._unmounted: dict[str, tuple] = {}
        self._mount_mtu: dict[str, int] = {}    # each interface's MTU from its driver
        self._periodic(1.0, self.arp.timer)
        self._periodic(1.0, self.nd6.timer)

    # -- interfaces ------------------------------------------------------
    def next_unit(self, prefix: str) -> int:
        unit = 0
        while f"{prefix}{unit}" in self.ifnets:
            unit += 1
        return unit

    def if_attach(self, ifp: Ifnet) -> None:
        """Make `ifp` known to the stack. The driver calls this after
        filling in the Ifnet and ether_ifattach."""
        if ifp.name in self.ifnets:
            raise ValueError(f"interface {ifp.name} exists")
        ifp.stack = self
        ifp.ip_input = self.ip.input
        ifp.arp_input = self.arp.input
        ifp.ip6_input = self.ip6.input
        self.ifnets[ifp.name] = ifp
        if self.auto_linklocal:
            self.ip6.ifattach(ifp)
        self.log.info("%s: attached (%s%s)", ifp.name, ifp.dname,
                      f", {ifp.description}" if ifp.description else "")
        self._mount_mtu[ifp.name] = ifp.mtu
        cfg = self._unmounted.pop(ifp.if_devkey, None) if ifp.if_devkey else None
        if cfg is not None:
            self._restore(ifp, *cfg)

    def if_detach(self, ifp: Ifnet) -> None:
        """Remove `ifp`: stop it, drop its routes, addresses and neighbours,
        free everything queued on it, let the driver release its device.
        Captures on it end first (BSD's bpfdetach), and their clients are told."""
        if ifp.if_bpf is not None:
            bpf_ifdetach(ifp)
        self.if_down(ifp)
        mount_mtu = self._mount_mtu.pop(ifp.name, None)
        # Saved once per mount: a retry (the driver's detach raised) finds
        # the addresses gone already and must not save that over them.
        if ifp.if_devkey and not self._stopping and mount_mtu is not None:
            self._unmounted[ifp.if_devkey] = (
                [(ia.addr, ia.plen) for ia in ifp.in_addrs],
                ifp.mtu if ifp.mtu != mount_mtu else 0,
                [(rt.dst, rt.plen, rt.gateway) for rt in self.ip.routes.routes
                 if rt.ifp is ifp and not rt.flags & RTF_CONNECTED],
                # IPv6: the configured addresses (the link-local one comes
                # from the new MAC) and static routes.
                [(ia.addr, ia.plen) for ia in ifp.in6_addrs if not ia.flags & IN6_IFF_AUTOCONF],
                [(rt.dst, rt.plen, rt.gateway) for rt in self.ip6.routes.routes
                 if rt.ifp is ifp and not rt.flags & RTF_CONNECTED])
        self.ip.purge_ifp(ifp)
        self.ip6.purge_ifp(ifp)
        self.arp.flush(ifp)
        self.nd6.flush(ifp)
        ifp.if_purge("down")
        ifp.if_detach(ifp)
        self.ifnets.pop(ifp.name, None)
        self.log.info("%s: detached", ifp.name)

    def _restore(self, ifp: Ifnet, addrs: list, mtu: int, routes: list,
                 addrs6: list = (), routes6: list = ()) -> None:
        """The device behind `ifp` was unmounted before: give back its
        addresses, the MTU ifconfig set (never above what the driver set
        now) and static routes, as a NIC keeps its configuration across a
        driver reload.
        What no longer fits (an address taken meanwhile) is said and left."""
        got = []
        for addr, plen in addrs:
            try:
                self.ip.add_address(ifp, addr, plen)
                got.append(f"{ntoa(addr)}/{plen}")
            except ValueError as e:
                self.log.warning("%s: not restoring %s/%d: %s", ifp.name, ntoa(addr), plen, e)
        for addr, plen in addrs6:
            try:
                self.ip6.add_address(ifp, addr, plen)       # through DAD again
                got.append(f"{ntoa6(addr)}/{plen}")
            except ValueError as e:
                self.log.warning("%s: not restoring %s/%d: %s", ifp.name, ntoa6(addr), plen, e)
        if mtu:
            ifp.mtu = min(ifp.mtu, mtu)
        nrt = 0
        for table, fmt, entries in ((self.ip.routes, ntoa, routes),
                                    (self.ip6.routes, ntoa6, routes6)):
            for dst, plen, gw in entries:
                try:
                    table.add(dst, plen, gw, ifp)
                    nrt += 1
                except ValueError as e:
                    self.log.warning("%s: not restoring route %s/%d: %s", ifp.name, fmt(dst),
                                     plen, e)
        if got or nrt:
            self.log.info("%s: restored %s%s from before its umount", ifp.name,
                          ", ".join(got) or "no address",
                          f" and {nrt} route{'s' if nrt != 1 else ''}" if nrt else "")
        if got:
            # The new mount may have a new MAC: tell the hosts (once it is running).
            self.timeout(0.0, lambda: self._announce(ifp))

    def _announce(self, ifp: Ifnet) -> None:
        if self.ifnets.get(ifp.name) is ifp:     # not detached meanwhile (ARP itself
            self.arp.announce(ifp)              # sends nothing through a stopped device)

    def if_up(self, ifp: Ifnet) -> None:
        if not ifp.flags & IFF_UP:
            ifp.flags |= IFF_UP
            ifp.if_init(ifp)

    def if_down(self, ifp: Ifnet) -> None:
        """Stop `ifp` and forget its neighbours (NetBSD's in_if_down and
        in6_if_down purge the link-layer tables): a neighbour being
        resolved is not asked again through a stopped device, and the
        packets it held are counted as discarded ("down")."""
        if ifp.flags & IFF_UP:
            ifp.flags &= ~IFF_UP
            ifp.if_stop(ifp)
            ifp.flags &= ~IFF_RUNNING
            self.arp.flush(ifp)
            self.nd6.flush(ifp)

    def link_lost(self, ifp: Ifnet, why: str) -> None:
        """A driver lost its device (e.g. EBADFD: the TAP's netdev is gone).
        Said once; the interface goes down and stays attached so nicinfo
        can still show what happened."""
        if ifp.link_state != LINK_STATE_DOWN:
            self.log.warning("%s: link lost: %s; interface marked down", ifp.name, why)
        ifp.link_state = LINK_STATE_DOWN
        self.if_down(ifp)

    def shutdown(self, quiet: bool = False) -> None:
        """Detach every interface; say whether every mbuf came back. All
        interfaces go down (flushing their queues and ARP hold queues)
        before any is detached, so no mbuf lent by one driver is still
        queued on another when its driver is unmounted."""
        self._stopping = True
        for ifp in list(self.ifnets.values()):
            self.if_down(ifp)
        for ifp in list(self.ifnets.values()):
            try:
                self.if_detach(ifp)
            except Exception:
                self.log.exception("%s: detach failed", ifp.name)
        super().shutdown()
        pool = self.pool
        left, jleft = pool.in_use, pool.jumbo_in_use
        if quiet and not left and not jleft:
            return
        if left or jleft:
            self.log.warning("shutdown: %d mbuf clusters and %d jumbo clusters still out",
                             left, jleft)
        else:
            self.log.info("shutdown: all %d mbuf clusters%s back in the pool", pool.nclusters,
                          f" and {pool.njumbo} jumbo clusters" if pool.njumbo else "")
