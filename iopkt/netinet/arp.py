"""ARP for IPv4 over Ethernet (RFC 826; BSD's netinet/if_arp.c).

Neighbour entries live per interface in `ifp.llinfo` (IPv4 address as int ->
LlEntry). A resolved entry carries the whole 14-byte Ethernet header for
frames to that neighbour, so ether_output only copies it in front of the
packet. An unresolved entry holds a small bounded queue of packets waiting
for the answer; requests are retried once a second, and after `maxtries`
unanswered requests the waiting packets are dropped with ICMP host
unreachable sent back to their sources. Resolved entries age out after
`keep` seconds and are resolved afresh on next use. An entry set by hand
(arp -s) is "permanent": it never ages, ARP traffic does not change it,
and it outlives the interface going down; arp -s ... temp sets one that
ages as a learned one does.
"""

from __future__ import annotations

import struct

from iopkt.net.bpf import BPF_D_OUT
from iopkt.net.ether import (
    BROADCAST,
    ETHERTYPE_ARP,
    ETHERTYPE_IP,
    ether_header,
    ether_output_frame,
    mac_ntoa,
)
from iopkt.net.ifnet import IFF_NOARP, IFF_RUNNING
from iopkt.net.route import ntoa

ARPHRD_ETHER = 1
ARPOP_REQUEST = 1
ARPOP_REPLY = 2
ARP_LEN = 28

ARPT_KEEP = 1200.0      # seconds a resolved entry lives (BSD arpt_keep)
ARPT_RETRY = 1.0        # seconds between requests for an unresolved entry
ARP_MAXTRIES = 5        # requests before giving up (BSD arp_maxtries)
ARP_MAXHOLD = 16        # packets waiting per unresolved neighbour

LLE_INCOMPLETE = "incomplete"
LLE_REACHABLE = "reachable"
LLE_PERMANENT = "permanent"

_ARP = struct.Struct("!HHBBH6sI6sI")


class LlEntry:
    __slots__ = ("addr", "ifp", "mac", "hdr", "state", "expire", "asked",
                 "next_try", "holdq")

    def __init__(self, addr: int, ifp):
        self.addr = addr
        self.ifp = ifp
        self.mac = None
        self.hdr = None          # dst+src+type for IPv4 frames, once resolved
        self.state = LLE_INCOMPLETE
        self.expire = 0.0
        self.asked = 0
        self.next_try = 0.0
        self.holdq: list = []


class Arp:
    def __init__(self, stack, keep: float = ARPT_KEEP, retry: float = ARPT_RETRY,
                 maxtries: int = ARP_MAXTRIES, maxhold: int = ARP_MAXHOLD):
        self.stack = stack
        self.keep = keep
        self.retry = retry
        self.maxtries = maxtries
        self.maxhold = maxhold
        self._dup_said: set = set()
        self.stats = dict.fromkeys((
            "rxrequests", "rxreplies", "txrequests", "txreplies",
            "received", "badlen", "badtype", "dupips", "timeouts",
            "held", "holdq_drops", "expired", "txannounce"), 0)

    # -- input ---------------------------------------------------------
    def input(self, m) -> None:
        """Consumes `m`: an ARP packet, Ethernet header already stripped."""
        ifp = m.rcvif
        st = self.stats
        st["received"] += 1
        if m.pkt_len < ARP_LEN:
            st["badlen"] += 1
            ifp.input_discard(m, "arp_malformed")
            return
        if m.len < ARP_LEN:
            m = self.stack.pool.pullup(m, ARP_LEN)
            if m is None:
                ifp.input_discard(None, "nobufs")
                return
        htype, ptype, hlen, plen, op, sha, spa, tha, tpa = _ARP.unpack_from(m.buf, m.off)
        if htype != ARPHRD_ETHER or ptype != ETHERTYPE_IP or hlen != 6 or plen != 4:
            st["badtype"] += 1
            ifp.input_discard(m, "arp_malformed")
            return
        if sha == ifp.lladdr:
            self.stack.pool.freem(m)       # our own, looped back
            return
        mine = any(ia.addr == tpa for ia in ifp.in_addrs)
        if any(ia.addr == spa for ia in ifp.in_addrs):
            st["dupips"] += 1
            if (ifp.name, sha) not in self._dup_said:     # once per claimant
                self._dup_said.add((ifp.name, sha))
                self.stack.log.warning("%s: %s claims our address %s", ifp.name,
                                       mac_ntoa(sha), ntoa(spa))
            self.stack.pool.freem(m)
            return
        if op == ARPOP_REQUEST:
            st["rxrequests"] += 1
        elif op == ARPOP_REPLY:
            st["rxreplies"] += 1
        # RFC 826 merge: update a known sender; learn it if we are the target.
        la = ifp.llinfo.get(spa)
        if la is not None or (mine and spa != 0):
            self._update(ifp, spa, sha, la)
        if mine and op == ARPOP_REQUEST:
            self._reply_in_place(ifp, m, sha, spa, tpa)
            return
        self.stack.pool.freem(m)

    def _update(self, ifp, addr: int, mac: bytes, la: LlEntry | None) -> None:
        """What ARP traffic teaches: `addr` is at `mac`, unless its entry
        was set by hand."""
        if la is None or la.state != LLE_PERMANENT:
            self._set(ifp, addr, mac, la)

    def _set(self, ifp, addr: int, mac: bytes, la: LlEntry | None) -> None:
        """`addr` is at `mac` (`la` its entry, or None for a new one), for
        `keep` seconds; what it held goes now."""
        if la is None:
            la = ifp.llinfo[addr] = LlEntry(addr, ifp)
        la.mac = mac
        la.hdr = ether_header(mac, ifp.lladdr, ETHERTYPE_IP)
        la.state = LLE_REACHABLE
        la.expire = self.stack.clock() + self.keep
        la.asked = 0
        held, la.holdq = la.holdq, []
        for m in held:
            ether_output_frame(ifp, m, la.hdr)

    def _reply_in_place(self, ifp, m, sha, spa, tpa) -> None:
        """Turn the request in `m` into our reply and send it. Consumes `m`."""
        _ARP.pack_into(m.buf, m.off, ARPHRD_ETHER, ETHERTYPE_IP, 6, 4,
                       ARPOP_REPLY, ifp.lladdr, tpa, sha, spa)
        m.len = m.pkt_len = ARP_LEN
        if m.next is not None:          # padding in a chained mbuf
            self.stack.pool.freem(m.next)
            m.next = None
        self.stats["txreplies"] += 1
        ether_output_frame(ifp, m, ether_header(sha, ifp.lladdr, ETHERTYPE_ARP))

    # -- resolution ------------------------------------------------------
    def resolve(self, ifp, m, nexthop: int) -> None:
        """Called by ether_output when `nexthop` has no resolved entry.
        Consumes `m`: it waits in the entry's hold queue (the oldest is
        dropped when the queue is full) until the reply comes."""
        if ifp.flags & IFF_NOARP:
            ifp.output_discard(m, "arp_unresolved")
            return
        la = ifp.llinfo.get(nexthop)
        if la is None:
            la = ifp.llinfo[nexthop] = LlEntry(nexthop, ifp)
        if la.hdr is not None:          # resolved meanwhile
            ether_output_frame(ifp, m, la.hdr)
            return
        if len(la.holdq) >= self.maxhold:
            self.stats["holdq_drops"] += 1
            ifp.output_discard(la.holdq.pop(0), "arp_holdq_full")
        la.holdq.append(m)
        self.stats["held"] += 1
        if la.asked == 0:
            self._request(la)

    def _request(self, la: LlEntry) -> None:
        ifp = la.ifp
        la.asked += 1
        la.next_try = self.stack.clock() + self.retry
        if not ifp.in_addrs:
            return                  # nothing to ask from: times out like silence
        if self._send_request(ifp, _source_for(ifp, la.addr), la.addr):
            self.stats["txrequests"] += 1

    def announce(self, ifp) -> None:
        """Gratuitous ARP for each address of `ifp` (BSD's arp_ifinit), so
        the neighbours' entries for it move to its current MAC: a driver
        mounted again may have a new one."""
        for ia in ifp.in_addrs:
            if self._send_request(ifp, ia.addr, ia.addr):
                self.stats["txannounce"] += 1

    def _send_request(self, ifp, spa: int, tpa: int) -> bool:
        if not ifp.flags & IFF_RUNNING:
            return False            # a stopped device sends nothing (as nd6's _send)
        frame = ether_header(BROADCAST, ifp.lladdr, ETHERTYPE_ARP) + _ARP.pack(
            ARPHRD_ETHER, ETHERTYPE_IP, 6, 4, ARPOP_REQUEST, ifp.lladdr,
            spa, b"\x00" * 6, tpa)
        m = self.stack.pool.from_bytes(frame)
        if m is None:
            ifp.output_discard(None, "txerror")
            return False
        ifp.omcasts += 1
        ifp.opackets_arp += 1               # nicinfo's per-family count, as ether_output's
        if ifp.if_bpf is not None:
            ifp.if_bpf.mtap([m], BPF_D_OUT)
        ifp.if_transmit(ifp, [m])
        return True

    # -- timers ----------------------------------------------------------
    def timer(self) -> None:
        """Once a second from the stack's callout: retry, give up, age."""
        now = self.stack.clock()
        for ifp in list(self.stack.ifnets.values()):
            for addr, la in list(ifp.llinfo.items()):
                if la.state == LLE_PERMANENT:
                    continue
                if la.state == LLE_REACHABLE:
                    if now >= la.expire:
                        self.stats["expired"] += 1
                        del ifp.llinfo[addr]
                elif now >= la.next_try:
                    if la.asked < self.maxtries:
                        self._request(la)
                    else:
                        self.stats["timeouts"] += 1
                        del ifp.llinfo[addr]
                        self._fail(la)

    def _fail(self, la: LlEntry) -> None:
        """Nobody answered: the held packets are undeliverable (RFC 1812
        4.3.3.1: host unreachable)."""
        icmp = self.stack.icmp
        held, la.holdq = la.holdq, []
        for m in held:
            la.ifp.out_discards["arp_unresolved"] += 1
            la.ifp.oerrors += 1
            icmp.error_unreach_host(m)

    def flush(self, ifp) -> None:
        """Forget every neighbour of `ifp` but those set by hand; what they
        held is discarded and counted as "down" (the interface is going
        down or away; a detached one takes its table along)."""
        for addr, la in list(ifp.llinfo.items()):
            if la.state != LLE_PERMANENT:
                for m in la.holdq:
                    ifp.output_discard(m, "down")
                del ifp.llinfo[addr]

    # -- arp -s and arp -d -------------------------------------------------
    def set_static(self, addr: int, mac: bytes, permanent: bool, ifp=None) -> None:
        """arp -s: `addr` is at `mac`, on `ifp` or on the interface whose
        network holds `addr`; `permanent`, or learned-like (temp). Packets
        waiting for it go now. Raises ValueError when no interface's network
        holds it."""
        if ifp is None:
            ifp = next((i for i in self.stack.ifnets.values()
                        if any(addr & ia.mask == ia.net for ia in i.in_addrs)), None)
            if ifp is None:
                raise ValueError(f"arp -s {ntoa(addr)}: on no interface's network")
        self._set(ifp, addr, mac, ifp.llinfo.get(addr))
        if permanent:
            ifp.llinfo[addr].state = LLE_PERMANENT

    def delete(self, addr: int | None) -> None:
        """arp -d: forget `addr`'s entry (None: every entry, arp -d -a);
        what it held is discarded as "down". Raises ValueError for an
        address with no entry, and then forgets nothing."""
        gone = [(ifp, a) for ifp in self.stack.ifnets.values() for a in ifp.llinfo
                if addr is None or a == addr]
        if addr is not None and not gone:
            raise ValueError(f"arp -d {ntoa(addr)}: no entry")
        for ifp, a in gone:
            for m in ifp.llinfo.pop(a).holdq:
                ifp.output_discard(m, "down")

    def table(self) -> list[dict]:
        now = self.stack.clock()
        out = []
        for ifp in self.stack.ifnets.values():
            for addr, la in ifp.llinfo.items():
                out.append({
                    "interface": ifp.name, "address": ntoa(addr),
                    "mac": mac_ntoa(la.mac) if la.mac else None, "state": la.state,
                    "expires_in": round(la.expire - now, 1)
                    if la.mac and la.state != LLE_PERMANENT else None,
                    "held": len(la.holdq)})
        return out


def _source_for(ifp, dst: int) -> int:
    for ia in ifp.in_addrs:
        if dst & ia.mask == ia.net:
            return ia.addr
    return ifp.in_addrs[0].addr
