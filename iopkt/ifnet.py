"""ifnet: one network interface as the stack sees it (BSD's struct ifnet).

A driver fills in an Ifnet (name, link address, MTU, its hooks) and attaches
it to the stack. From then on:

    receive   driver -> ifp.if_input(ifp, pkts)            ether_input
    transmit  stack  -> ifp.if_output(ifp, pkts, nexthop)  ether_output
                     -> ifp.if_transmit(ifp, pkts)         driver, or if_snd + if_start

Packets move in bursts: `pkts` is a list of mbufs (VPP's vectors, the
batches FreeBSD links through m_nextpkt). One Python call per layer per
burst instead of per packet is what makes a Python router affordable.

The counters are the ones nicinfo shows; every discard is counted by reason
in `in_discards` / `out_discards`, so a test can assert exactly why a frame
went missing.
"""

from __future__ import annotations

from typing import Callable

# if_flags, BSD values
IFF_UP = 0x1
IFF_BROADCAST = 0x2
IFF_DEBUG = 0x4
IFF_LOOPBACK = 0x8
IFF_POINTOPOINT = 0x10
IFF_RUNNING = 0x40
IFF_NOARP = 0x80
IFF_PROMISC = 0x100
IFF_ALLMULTI = 0x200
IFF_OACTIVE = 0x400      # transmitter busy: wait for the driver to say go
IFF_SIMPLEX = 0x800
IFF_MULTICAST = 0x8000

FLAG_NAMES = [
    (IFF_UP, "UP"), (IFF_BROADCAST, "BROADCAST"), (IFF_DEBUG, "DEBUG"),
    (IFF_LOOPBACK, "LOOPBACK"), (IFF_POINTOPOINT, "POINTOPOINT"),
    (IFF_RUNNING, "RUNNING"), (IFF_NOARP, "NOARP"), (IFF_PROMISC, "PROMISC"),
    (IFF_ALLMULTI, "ALLMULTI"), (IFF_OACTIVE, "OACTIVE"),
    (IFF_SIMPLEX, "SIMPLEX"), (IFF_MULTICAST, "MULTICAST"),
]

# if_capabilities (a subset of NetBSD's IFCAP_*); none are offered yet.
IFCAP_CSUM_IPv4_Rx = 0x0001
IFCAP_CSUM_IPv4_Tx = 0x0002
IFCAP_TSOv4 = 0x0080

LINK_STATE_UNKNOWN = 0
LINK_STATE_DOWN = 1
LINK_STATE_UP = 2

IFQ_MAXLEN = 256


def flags_str(flags: int) -> str:
    return ",".join(n for bit, n in FLAG_NAMES if flags & bit)


class IfQueue:
    """A bounded FIFO of packets linked through m.nextpkt (BSD's ifqueue),
    with Snabb-style counters. Not thread-safe: stack thread only."""

    __slots__ = ("head", "tail", "len", "maxlen", "enqueued", "dequeued",
                 "drops", "hiwat")

    def __init__(self, maxlen: int = IFQ_MAXLEN):
        self.head = self.tail = None
        self.len = 0
        self.maxlen = maxlen
        self.enqueued = self.dequeued = self.drops = self.hiwat = 0

    def enqueue(self, m) -> None:
        """IF_ENQUEUE. Consumes `m`; the caller checks full() first (and
        counts its own drop) because only it knows how to free."""
        m.nextpkt = None
        if self.tail is None:
            self.head = m
        else:
            self.tail.nextpkt = m
        self.tail = m
        self.len += 1
        self.enqueued += 1
        if self.len > self.hiwat:
            self.hiwat = self.len

    def prepend(self, m) -> None:
        """IF_PREPEND: put back a packet the driver could not send yet."""
        m.nextpkt = self.head
        self.head = m
        if self.tail is None:
            self.tail = m
        self.len += 1
        self.dequeued -= 1

    def dequeue(self):
        """IF_DEQUEUE: the oldest packet (now the caller's) or None."""
        m = self.head
        if m is not None:
            self.head = m.nextpkt
            if self.head is None:
                self.tail = None
            m.nextpkt = None
            self.len -= 1
            self.dequeued += 1
        return m

    def stats(self) -> dict:
        return {"len": self.len, "maxlen": self.maxlen,
                "enqueued": self.enqueued, "dequeued": self.dequeued,
                "drops": self.drops, "hiwat": self.hiwat}


class InIfaddr:
    """An IPv4 address on an interface (BSD's in_ifaddr)."""

    __slots__ = ("addr", "plen", "mask", "net", "broadcast")

    def __init__(self, addr: int, plen: int):
        self.addr = addr
        self.plen = plen
        self.mask = (0xFFFFFFFF << (32 - plen)) & 0xFFFFFFFF if plen else 0
        self.net = addr & self.mask
        self.broadcast = self.net | (~self.mask & 0xFFFFFFFF)


# Reasons an input frame can be discarded; pre-created so counters exist at 0.
IN_DISCARD_REASONS = (
    "runt",                 # shorter than an Ethernet header
    "not_ours",             # unicast to another MAC, not promiscuous
    "unknown_ethertype",    # neither IPv4 nor ARP
    "ip_tooshort",          # shorter than an IPv4 header
    "ip_badvers",           # IP version != 4
    "ip_badhlen",           # IHL < 5 or beyond the frame
    "ip_badsum",            # header checksum wrong
    "ip_badlen",            # total length < IHL, or beyond the frame
    "ip_badaddr",           # source is multicast/broadcast/loopback
    "arp_malformed",        # ARP not Ethernet/IPv4 or too short
    "nobufs",               # mbuf pool empty
    "qfull",                # hand-off queue full
    "too_long",             # frame larger than a cluster
    "shim_contract",        # a legacy driver broke the io-net contract
    "down",                 # interface not UP
)

OUT_DISCARD_REASONS = (
    "qfull",                # if_snd full
    "down",                 # interface not UP/RUNNING
    "link_lost",            # device went away under us
    "arp_unresolved",       # next hop never answered ARP
    "arp_holdq_full",       # too many packets waiting for one neighbour
    "txerror",              # the write itself failed
)


class Ifnet:
    """One interface. Drivers set the hooks; the stack sets if_input and
    if_output at attach time (ether_ifattach)."""

    def __init__(self, name: str, unit: int, dname: str):
        self.name = f"{name}{unit}"     # e.g. tap0, en1
        self.unit = unit
        self.dname = dname              # driver that owns it, e.g. devnp-tap
        self.description = ""           # e.g. the kernel TAP it drives
        self.lladdr = b"\x00" * 6
        self.mtu = 1500
        self.flags = IFF_BROADCAST | IFF_SIMPLEX | IFF_MULTICAST
        self.capabilities = 0
        self.capenable = 0
        self.baudrate = 0               # media rate in bit/s, 0 = unknown
        self.link_state = LINK_STATE_UNKNOWN
        self.stack = None
        self.softc = None               # the driver's private state
        self.if_snd = IfQueue()
        self.in_addrs: list[InIfaddr] = []
        self.llinfo: dict = {}          # ARP entries for this link (arp.py)
        # Hooks (driver side)
        self.if_transmit: Callable = if_transmit
        self.if_init: Callable = _nop
        self.if_start: Callable = _nop
        self.if_stop: Callable = _nop
        self.if_ioctl: Callable = _nop_ioctl
        self.if_detach: Callable = _nop
        self.if_extra_info: Callable = _no_info   # driver-specific nicinfo
        # Hooks (stack side)
        self.if_input: Callable = _drop_input
        self.if_output: Callable = None
        self.ip_input: Callable = None      # protocol input, set at attach
        self.arp_input: Callable = None
        self.reset_counters()

    def reset_counters(self) -> None:
        self.ipackets = self.ibytes = self.imcasts = 0
        self.opackets = self.obytes = self.omcasts = 0
        self.ierrors = self.oerrors = self.iqdrops = self.noproto = 0
        self.collisions = 0
        self.in_discards = dict.fromkeys(IN_DISCARD_REASONS, 0)
        self.out_discards = dict.fromkeys(OUT_DISCARD_REASONS, 0)

    # -- discards (never on the fast path of a good packet) ------------
    def input_discard(self, m, reason: str) -> None:
        """Count and free an input packet. Consumes `m` (may be None)."""
        self.in_discards[reason] += 1
        if reason == "unknown_ethertype":
            self.noproto += 1
        elif reason in ("nobufs", "qfull"):
            self.iqdrops += 1
        else:
            self.ierrors += 1
        if m is not None:
            self.stack.pool.freem(m)

    def output_discard(self, m, reason: str) -> None:
        """Count and free an output packet. Consumes `m` (may be None)."""
        self.out_discards[reason] += 1
        if reason == "qfull":
            self.if_snd.drops += 1
        else:
            self.oerrors += 1
        if m is not None:
            self.stack.pool.freem(m)

    def if_purge(self, reason: str) -> None:
        """IFQ_PURGE: discard everything waiting on if_snd, counted as
        `reason` (drivers on stop, the stack on detach)."""
        m = self.if_snd.dequeue()
        while m is not None:
            self.output_discard(m, reason)
            m = self.if_snd.dequeue()

    @property
    def up(self) -> bool:
        return bool(self.flags & IFF_UP)

    def mac_str(self) -> str:
        return ":".join(f"{b:02x}" for b in self.lladdr)

    def counters(self) -> dict:
        return {
            "ipackets": self.ipackets, "ibytes": self.ibytes,
            "imcasts": self.imcasts, "ierrors": self.ierrors,
            "iqdrops": self.iqdrops, "noproto": self.noproto,
            "opackets": self.opackets, "obytes": self.obytes,
            "omcasts": self.omcasts, "oerrors": self.oerrors,
            "oqdrops": self.if_snd.drops, "collisions": self.collisions,
            "in_discards": dict(self.in_discards),
            "out_discards": dict(self.out_discards),
        }

    def __repr__(self) -> str:
        return f"<Ifnet {self.name} {self.dname} {flags_str(self.flags)}>"


def if_transmit(ifp, pkts: list) -> None:
    """The default ifp.if_transmit (BSD's if_snd model): queue a burst of
    finished frames on if_snd and kick the driver unless its transmitter
    is busy (IFF_OACTIVE: it calls if_start itself when the device can take
    more). A driver may install its own if_transmit that writes at once
    when nothing is queued (FreeBSD's if_transmit model). Consumes the
    mbufs in `pkts`."""
    ifq = ifp.if_snd
    for m in pkts:
        if ifq.len >= ifq.maxlen:
            ifp.output_discard(m, "qfull")
        else:
            ifq.enqueue(m)
    if not ifp.flags & IFF_OACTIVE:
        ifp.if_start(ifp)


def _nop(*_a, **_k):
    return None


def _nop_ioctl(ifp, cmd, data):
    raise OSError(f"{ifp.name}: ioctl {cmd} not supported")


def _no_info(ifp) -> dict:
    return {}


def _drop_input(ifp, pkts):
    for m in pkts:
        ifp.input_discard(m, "down")
