"""Neighbour Discovery for IPv6 over Ethernet (RFC 4861; BSD's
netinet6/nd6.c and nd6_nbr.c), and Duplicate Address Detection for the
stack's own addresses (RFC 4862 §5.4).

The neighbour cache lives per interface in `ifp.nd6info` (address as int ->
NdEntry), in the states RFC 4861 §7.3.2 names and `iopkt ndp -an` prints:

    INCOMPLETE  solicited (multicast NS, once a second, 3 times); packets
                wait in a bounded queue; no answer: they are dropped and
                their sources get Destination Unreachable, code 3
    REACHABLE   confirmed by a solicited NA; after REACHABLE_TIME: STALE
    STALE       a MAC we have not confirmed lately; the next packet sent
                moves it to DELAY
    DELAY       sent to, waiting DELAY_FIRST_PROBE_TIME for a confirmation
    PROBE       unicast NS once a second, 3 times; no answer: deleted

A usable entry (REACHABLE, DELAY, PROBE) carries the whole Ethernet header,
so ether_output6 copies it in front of the packet as IPv4's path does.

Received ND messages are checked as §7.1 says (hop limit 255, code 0,
lengths, options of length 0); a failure is dropped and counted. The
stack is a router: its NAs set the R flag. Router Advertisements are not
sent (hosts in the lab have static routes, AdvSendAdvertisements' default,
§6.2.1); Router Solicitations, Advertisements and Redirects are counted.
"""

from __future__ import annotations

from iopkt.net.ether import ETHERTYPE_IPV6, ether_header, ether_output_frame, mac_ntoa
from iopkt.net.ifnet import IFF_RUNNING
from iopkt.netinet6.icmp6 import (
    ND_NEIGHBOR_ADVERT,
    ND_NEIGHBOR_SOLICIT,
    ND_REDIRECT,
    ND_ROUTER_ADVERT,
    ND_ROUTER_SOLICIT,
    icmp6_packet,
)
from iopkt.netinet6.in6 import (
    ALLNODES,
    IN6_IFF_DUPLICATED,
    IN6_IFF_TENTATIVE,
    IPV6_MAXHLIM,
    SOLICITED_PREFIX,
    multicast_mac,
    ntoa6,
    solicited_node,
)

ND_INCOMPLETE = "INCOMPLETE"
ND_REACHABLE = "REACHABLE"
ND_STALE = "STALE"
ND_DELAY = "DELAY"
ND_PROBE = "PROBE"
USABLE = (ND_REACHABLE, ND_DELAY, ND_PROBE)

MAX_MULTICAST_SOLICIT = 3   # RFC 4861 §10
MAX_UNICAST_SOLICIT = 3
RETRANS_TIMER = 1.0
REACHABLE_TIME = 30.0
DELAY_FIRST_PROBE_TIME = 5.0
ND6_MAXHOLD = 16            # packets waiting per unresolved neighbour
DUP_ADDR_DETECT_TRANSMITS = 1   # RFC 4862 §5.1

ND_OPT_SOURCE_LINKADDR = 1
ND_OPT_TARGET_LINKADDR = 2
ND_NA_FLAG_ROUTER = 0x80
ND_NA_FLAG_SOLICITED = 0x40
ND_NA_FLAG_OVERRIDE = 0x20
NS_LEN = 24                 # type, code, checksum, reserved, target
UNSPEC = 0


class NdEntry:
    __slots__ = ("addr", "ifp", "mac", "hdr", "state", "usable", "expire", "asked",
                 "holdq", "isrouter")

    def __init__(self, addr: int, ifp):
        self.addr = addr
        self.ifp = ifp
        self.mac = None
        self.hdr = None             # dst + src + 0x86dd, once the MAC is known
        self.state = ND_INCOMPLETE
        self.usable = False         # ether_output6 may send with hdr as it is
        self.expire = 0.0           # when the state's timer runs out
        self.asked = 0              # solicitations sent in this state
        self.holdq: list = []
        self.isrouter = False

    def set_state(self, state: str, expire: float) -> None:
        self.state = state
        self.usable = state in USABLE
        self.expire = expire
        self.asked = 0


def _options(buf, at: int, end: int) -> dict | None:
    """The options of an ND message in buf[at:end] as {type: body}, or
    None when one has length 0 or runs past the end (§4.6: the message is
    then invalid)."""
    opts = {}
    while at < end:
        if at + 2 > end:
            return None
        n = buf[at + 1] << 3
        if n == 0 or at + n > end:
            return None
        opts.setdefault(buf[at], bytes(buf[at + 2:at + n]))
        at += n
    return opts


class Nd6:
    def __init__(self, stack, maxhold: int = ND6_MAXHOLD):
        self.stack = stack
        self.maxhold = maxhold
        self.stats = dict.fromkeys((
            "rx_ns", "rx_na", "rx_rs", "rx_ra", "rx_redirect", "tx_ns", "tx_na",
            "badhlim", "invalid", "held", "holdq_drops", "timeouts", "dad_ok",
            "dad_duplicated"), 0)

    # -- input ---------------------------------------------------------
    def input(self, m, off: int, t: int, src: int, dst: int) -> None:
        """An ND message (checksum already good) at `off`. Consumes `m`."""
        st = self.stats
        ifp = m.rcvif
        buf, o = m.buf, m.off
        st[{ND_ROUTER_SOLICIT: "rx_rs", ND_ROUTER_ADVERT: "rx_ra",
            ND_NEIGHBOR_SOLICIT: "rx_ns", ND_NEIGHBOR_ADVERT: "rx_na",
            ND_REDIRECT: "rx_redirect"}[t]] += 1
        if buf[o + 7] != IPV6_MAXHLIM:         # §7.1.1: only from this link
            st["badhlim"] += 1
            ifp.input_discard(m, "nd6_invalid")
            return
        if t not in (ND_NEIGHBOR_SOLICIT, ND_NEIGHBOR_ADVERT):
            self.stack.pool.freem(m)
            return
        end = m.pkt_len
        if m.len < end:
            m = self.stack.pool.pullup(m, end)      # frees the chain when it cannot
            if m is None:
                ifp.input_discard(None, "nobufs")
                return
            buf, o = m.buf, m.off
        io = o + off
        opts = _options(buf, io + NS_LEN, o + end) if end - off >= NS_LEN else None
        target = int.from_bytes(buf[io + 8:io + 24], "big")
        if buf[io + 1] != 0 or opts is None or target >> 120 == 0xFF:
            st["invalid"] += 1
            ifp.input_discard(m, "nd6_invalid")
            return
        flags = buf[io + 4]
        self.stack.pool.freem(m)
        lladdr = opts.get(ND_OPT_SOURCE_LINKADDR if t == ND_NEIGHBOR_SOLICIT
                          else ND_OPT_TARGET_LINKADDR)
        if lladdr is not None and len(lladdr) != 6:
            st["invalid"] += 1
            ifp.input_discard(None, "nd6_invalid")
            return
        if t == ND_NEIGHBOR_SOLICIT:
            self._ns_input(ifp, src, dst, target, lladdr)
        else:
            self._na_input(ifp, dst, target, lladdr, flags)

    def _own(self, ifp, addr: int):
        for ia in ifp.in6_addrs:
            if ia.addr == addr:
                return ia
        return None

    def _ns_input(self, ifp, src: int, dst: int, target: int, lladdr) -> None:
        """§7.2.3: answer for our addresses; learn the sender (STALE)."""
        if src == UNSPEC and (lladdr is not None or dst >> 24 != SOLICITED_PREFIX >> 24):
            self.stats["invalid"] += 1          # DAD probes: to solicited-node, no SLLAO
            ifp.input_discard(None, "nd6_invalid")
            return
        ia = self._own(ifp, target)
        if ia is None:
            return
        if ia.flags & IN6_IFF_TENTATIVE:
            if src == UNSPEC:                   # another node probes for it too
                self._duplicated(ifp, ia, "a Neighbor Solicitation for it from ::")
            return                              # never answer for a tentative address
        if ia.flags & IN6_IFF_DUPLICATED:
            return
        if src == UNSPEC:                       # answer DAD: to all nodes
            self._send_na(ifp, target, ALLNODES, multicast_mac(ALLNODES), solicited=False)
            return
        if lladdr is not None:
            self._learn(ifp, src, bytes(lladdr), ND_STALE)
        ln = ifp.nd6info.get(src)
        if ln is not None and ln.mac is not None:
            self._send_na(ifp, target, src, ln.mac, solicited=True)

    def _na_input(self, ifp, dst: int, target: int, lladdr, flags: int) -> None:
        """§7.2.5: update the entry for `target`, if we have one."""
        ia = self._own(ifp, target)
        if ia is not None:
            if ia.flags & IN6_IFF_TENTATIVE:
                self._duplicated(ifp, ia, "a Neighbor Advertisement for it")
            else:
                self.stack.log.warning("%s: %s is ours, but another node advertises it",
                                       ifp.name, ntoa6(target))
            return
        if flags & ND_NA_FLAG_SOLICITED and dst >> 120 == 0xFF:
            self.stats["invalid"] += 1          # §7.1.2: solicited NAs are unicast
            ifp.input_discard(None, "nd6_invalid")
            return
        ln = ifp.nd6info.get(target)
        if ln is None:
            return                              # unsolicited news of a stranger
        now = self.stack.clock()
        solicited = flags & ND_NA_FLAG_SOLICITED
        isrouter = bool(flags & ND_NA_FLAG_ROUTER)
        if ln.state == ND_INCOMPLETE:
            if lladdr is None:                  # §7.2.5: silently discarded
                return
            ln.isrouter = isrouter
            self._set_mac(ln, bytes(lladdr))
            ln.set_state(ND_REACHABLE if solicited else ND_STALE,
                         now + REACHABLE_TIME if solicited else 0.0)
            self._release(ln)
            return
        changed = lladdr is not None and bytes(lladdr) != ln.mac
        if changed and not flags & ND_NA_FLAG_OVERRIDE:
            if ln.state == ND_REACHABLE:        # otherwise ignored (§7.2.5)
                ln.set_state(ND_STALE, 0.0)
            return
        ln.isrouter = isrouter
        if changed:
            self._set_mac(ln, bytes(lladdr))
        if solicited:
            ln.set_state(ND_REACHABLE, now + REACHABLE_TIME)
        elif changed:
            ln.set_state(ND_STALE, 0.0)

    def _learn(self, ifp, addr: int, mac: bytes, state: str) -> None:
        ln = ifp.nd6info.get(addr)
        if ln is None:
            ln = ifp.nd6info[addr] = NdEntry(addr, ifp)
        if ln.mac != mac:
            self._set_mac(ln, mac)
            ln.set_state(state, 0.0)
        self._release(ln)

    def _set_mac(self, ln: NdEntry, mac: bytes) -> None:
        ln.mac = mac
        ln.hdr = ether_header(mac, ln.ifp.lladdr, ETHERTYPE_IPV6)

    def _release(self, ln: NdEntry) -> None:
        """The MAC is known: send what waited for it."""
        held, ln.holdq = ln.holdq, []
        for m in held:
            self._send_held(ln, m)

    def _send_held(self, ln: NdEntry, m) -> None:
        if ln.state == ND_STALE:                # §7.3.3: sending starts DELAY
            ln.set_state(ND_DELAY, self.stack.clock() + DELAY_FIRST_PROBE_TIME)
        ether_output_frame(ln.ifp, m, ln.hdr)

    # -- resolution ------------------------------------------------------
    def resolve(self, ifp, m, nexthop: int) -> None:
        """ether_output6 found no usable entry for `nexthop`. Consumes `m`:
        sent (STALE: moving to DELAY), or held while we solicit."""
        ln = ifp.nd6info.get(nexthop)
        if ln is None:
            ln = ifp.nd6info[nexthop] = NdEntry(nexthop, ifp)
        if ln.mac is not None:
            self._send_held(ln, m)
            return
        if len(ln.holdq) >= self.maxhold:
            self.stats["holdq_drops"] += 1
            ifp.output_discard(ln.holdq.pop(0), "nd6_holdq_full")
        ln.holdq.append(m)
        self.stats["held"] += 1
        if ln.asked == 0:
            self._solicit(ln)

    def _solicit(self, ln: NdEntry) -> None:
        """An NS for ln.addr: multicast to its solicited-node group while
        INCOMPLETE, unicast to the cached MAC in PROBE (§7.2.2, §7.3.3)."""
        ifp = ln.ifp
        ln.asked += 1
        ln.expire = self.stack.clock() + RETRANS_TIMER
        src = self.stack.ip6.source_for(ifp, ln.addr)
        if src is None:
            return                              # no usable address yet: times out
        if ln.state == ND_PROBE:
            dst, mac = ln.addr, ln.mac
        else:
            dst = solicited_node(ln.addr)
            mac = multicast_mac(dst)
        self._send_ns(ifp, src, dst, mac, ln.addr)

    def _send_ns(self, ifp, src: int, dst: int, mac: bytes, target: int) -> None:
        msg = bytes((ND_NEIGHBOR_SOLICIT, 0, 0, 0, 0, 0, 0, 0)) + target.to_bytes(16, "big")
        if src != UNSPEC:
            msg += bytes((ND_OPT_SOURCE_LINKADDR, 1)) + ifp.lladdr
        if self._send(ifp, src, dst, mac, msg):
            self.stats["tx_ns"] += 1

    def _send_na(self, ifp, target: int, dst: int, mac: bytes, solicited: bool) -> None:
        flags = ND_NA_FLAG_ROUTER | ND_NA_FLAG_OVERRIDE | (ND_NA_FLAG_SOLICITED if solicited
                                                          else 0)
        msg = (bytes((ND_NEIGHBOR_ADVERT, 0, 0, 0, flags, 0, 0, 0)) + target.to_bytes(16, "big")
               + bytes((ND_OPT_TARGET_LINKADDR, 1)) + ifp.lladdr)
        if self._send(ifp, target, dst, mac, msg):
            self.stats["tx_na"] += 1

    def _send(self, ifp, src: int, dst: int, mac: bytes, msg: bytes) -> bool:
        if not ifp.flags & IFF_RUNNING:
            return False
        m = icmp6_packet(self.stack.pool, src, dst, IPV6_MAXHLIM, msg)
        if m is None:
            ifp.output_discard(None, "txerror")
            return False
        ether_output_frame(ifp, m, ether_header(mac, ifp.lladdr, ETHERTYPE_IPV6))
        return True

    def output_multicast(self, ifp, m, group: int) -> None:
        """Send an IPv6 packet (header in place) to a multicast group on
        `ifp`: no resolution, the MAC is the group's. Consumes `m`."""
        if not ifp.flags & IFF_RUNNING:
            ifp.output_discard(m, "down")
            return
        ether_output_frame(ifp, m, ether_header(multicast_mac(group), ifp.lladdr,
                                                ETHERTYPE_IPV6))

    # -- Duplicate Address Detection -------------------------------------
    def _duplicated(self, ifp, ia, why: str) -> None:
        ia.flags = (ia.flags & ~IN6_IFF_TENTATIVE) | IN6_IFF_DUPLICATED
        self.stats["dad_duplicated"] += 1
        self.stack.log.warning("%s: DAD detected a duplicate of %s (%s); the address "
                               "is not used", ifp.name, ntoa6(ia.addr), why)

    def _dad(self, ifp, now: float) -> None:
        """Probe each tentative address (one NS from ::, RFC 4862 §5.4.2);
        RETRANS_TIMER after the last with no answer, it is ours."""
        for ia in ifp.in6_addrs:
            if not ia.flags & IN6_IFF_TENTATIVE:
                continue
            if ia.dad_sent < DUP_ADDR_DETECT_TRANSMITS:
                if now >= ia.dad_at:
                    group = solicited_node(ia.addr)
                    self._send_ns(ifp, UNSPEC, group, multicast_mac(group), ia.addr)
                    ia.dad_sent += 1
                    ia.dad_at = now + RETRANS_TIMER
            elif now >= ia.dad_at:
                ia.flags &= ~IN6_IFF_TENTATIVE
                self.stats["dad_ok"] += 1
                self.stack.ip6.address_usable(ifp, ia)
                self.stack.log.info("%s: %s: DAD complete, no duplicate", ifp.name,
                                    ntoa6(ia.addr))

    # -- timers ----------------------------------------------------------
    def timer(self) -> None:
        """From the stack's callout: DAD, retries, state timers (§7.3.3)."""
        now = self.stack.clock()
        for ifp in list(self.stack.ifnets.values()):
            if ifp.flags & IFF_RUNNING:
                self._dad(ifp, now)
            for addr, ln in list(ifp.nd6info.items()):
                if now < ln.expire or ln.state == ND_STALE:
                    continue
                if ln.state == ND_REACHABLE:
                    ln.set_state(ND_STALE, 0.0)
                elif ln.state == ND_DELAY:
                    ln.set_state(ND_PROBE, 0.0)
                    self._solicit(ln)
                elif ln.asked < (MAX_MULTICAST_SOLICIT if ln.state == ND_INCOMPLETE
                                 else MAX_UNICAST_SOLICIT):
                    self._solicit(ln)
                else:
                    self.stats["timeouts"] += 1
                    del ifp.nd6info[addr]
                    self._fail(ln)

    def _fail(self, ln: NdEntry) -> None:
        """Nobody answered: the held packets are undeliverable (§7.2.2:
        Destination Unreachable, address unreachable)."""
        icmp6 = self.stack.icmp6
        held, ln.holdq = ln.holdq, []
        for m in held:
            ln.ifp.out_discards["nd6_unresolved"] += 1
            ln.ifp.oerrors += 1
            m.rcvif = m.rcvif or ln.ifp
            icmp6.error(m, 1, 3)

    def flush(self, ifp) -> None:
        """Forget every neighbour of `ifp`; what they held is discarded
        and counted as "down" (the interface is going down or away). The
        entries go with the table: nothing else holds an NdEntry."""
        for ln in ifp.nd6info.values():
            for m in ln.holdq:
                ifp.output_discard(m, "down")
        ifp.nd6info.clear()

    def table(self) -> list[dict]:
        now = self.stack.clock()
        out = []
        for ifp in self.stack.ifnets.values():
            for addr, ln in ifp.nd6info.items():
                out.append({
                    "interface": ifp.name, "address": ntoa6(addr),
                    "mac": mac_ntoa(ln.mac) if ln.mac else None, "state": ln.state,
                    "router": ln.isrouter,
                    "expires_in": round(ln.expire - now, 1) if ln.expire else None,
                    "held": len(ln.holdq)})
        return out

