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

from iopkt.kern.mbuf import (
    M_CSUM_IPv4,
    M_CSUM_TCPv4,
    M_CSUM_TCPv6,
    M_CSUM_TSOv4,
    M_CSUM_TSOv6,
    M_CSUM_UDPv4,
    M_CSUM_UDPv6,
)

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

# if_capabilities / if_capenable: NetBSD's IFCAP_* values (net/if.h).
IFCAP_TSOv4 = 0x00080           # can do TCPv4 segmentation offload
IFCAP_CSUM_IPv4_Rx = 0x00100    # IPv4 header checksums
IFCAP_CSUM_IPv4_Tx = 0x00200
IFCAP_CSUM_TCPv4_Rx = 0x00400   # IPv4/TCP checksums
IFCAP_CSUM_TCPv4_Tx = 0x00800
IFCAP_CSUM_UDPv4_Rx = 0x01000   # IPv4/UDP checksums
IFCAP_CSUM_UDPv4_Tx = 0x02000
IFCAP_CSUM_TCPv6_Rx = 0x04000   # IPv6/TCP checksums
IFCAP_CSUM_TCPv6_Tx = 0x08000
IFCAP_CSUM_UDPv6_Rx = 0x10000   # IPv6/UDP checksums
IFCAP_CSUM_UDPv6_Tx = 0x20000
IFCAP_TSOv6 = 0x40000           # can do TCPv6 segmentation offload

# As NetBSD's ifconfig prints them (IFCAPBITS).
CAP_NAMES = [
    (IFCAP_TSOv4, "TSO4"), (IFCAP_CSUM_IPv4_Rx, "IP4CSUM_Rx"),
    (IFCAP_CSUM_IPv4_Tx, "IP4CSUM_Tx"), (IFCAP_CSUM_TCPv4_Rx, "TCP4CSUM_Rx"),
    (IFCAP_CSUM_TCPv4_Tx, "TCP4CSUM_Tx"), (IFCAP_CSUM_UDPv4_Rx, "UDP4CSUM_Rx"),
    (IFCAP_CSUM_UDPv4_Tx, "UDP4CSUM_Tx"), (IFCAP_CSUM_TCPv6_Rx, "TCP6CSUM_Rx"),
    (IFCAP_CSUM_TCPv6_Tx, "TCP6CSUM_Tx"), (IFCAP_CSUM_UDPv6_Rx, "UDP6CSUM_Rx"),
    (IFCAP_CSUM_UDPv6_Tx, "UDP6CSUM_Tx"), (IFCAP_TSOv6, "TSO6"),
]

# NetBSD ifconfig's keywords; "-word" clears what "word" sets.
CAP_KEYWORDS = {
    "tso4": IFCAP_TSOv4,
    "tso6": IFCAP_TSOv6,
    "ip4csum": IFCAP_CSUM_IPv4_Rx | IFCAP_CSUM_IPv4_Tx,
    "ip4csum-rx": IFCAP_CSUM_IPv4_Rx, "ip4csum-tx": IFCAP_CSUM_IPv4_Tx,
    "tcp4csum": IFCAP_CSUM_TCPv4_Rx | IFCAP_CSUM_TCPv4_Tx,
    "tcp4csum-rx": IFCAP_CSUM_TCPv4_Rx, "tcp4csum-tx": IFCAP_CSUM_TCPv4_Tx,
    "udp4csum": IFCAP_CSUM_UDPv4_Rx | IFCAP_CSUM_UDPv4_Tx,
    "udp4csum-rx": IFCAP_CSUM_UDPv4_Rx, "udp4csum-tx": IFCAP_CSUM_UDPv4_Tx,
    "tcp6csum": IFCAP_CSUM_TCPv6_Rx | IFCAP_CSUM_TCPv6_Tx,
    "tcp6csum-rx": IFCAP_CSUM_TCPv6_Rx, "tcp6csum-tx": IFCAP_CSUM_TCPv6_Tx,
    "udp6csum": IFCAP_CSUM_UDPv6_Rx | IFCAP_CSUM_UDPv6_Tx,
    "udp6csum-rx": IFCAP_CSUM_UDPv6_Rx, "udp6csum-tx": IFCAP_CSUM_UDPv6_Tx,
}
# Every L4 checksum capability, both ways: what one TUN_F_CSUM (or one
# PACKET_VNET_HDR) offers a driver for both families at once.
IFCAP_CSUM_L4 = (IFCAP_CSUM_TCPv4_Rx | IFCAP_CSUM_TCPv4_Tx | IFCAP_CSUM_UDPv4_Rx
                 | IFCAP_CSUM_UDPv4_Tx | IFCAP_CSUM_TCPv6_Rx | IFCAP_CSUM_TCPv6_Tx
                 | IFCAP_CSUM_UDPv6_Rx | IFCAP_CSUM_UDPv6_Tx)

# What each enabled Tx capability lets the stack leave to the driver
# (NetBSD's if_csum_flags_tx): csum_flags outside it are done in software.
_CAP_TX_CSUM = ((IFCAP_TSOv4, M_CSUM_TSOv4), (IFCAP_TSOv6, M_CSUM_TSOv6),
                (IFCAP_CSUM_IPv4_Tx, M_CSUM_IPv4),
                (IFCAP_CSUM_TCPv4_Tx, M_CSUM_TCPv4), (IFCAP_CSUM_UDPv4_Tx, M_CSUM_UDPv4),
                (IFCAP_CSUM_TCPv6_Tx, M_CSUM_TCPv6), (IFCAP_CSUM_UDPv6_Tx, M_CSUM_UDPv6))
# What each enabled Rx capability lets a driver leave partial on receive
# (the stack forwards a partial checksum; a driver completes the rest).
_CAP_RX_CSUM = ((IFCAP_CSUM_TCPv4_Rx, M_CSUM_TCPv4), (IFCAP_CSUM_UDPv4_Rx, M_CSUM_UDPv4),
                (IFCAP_CSUM_TCPv6_Rx, M_CSUM_TCPv6), (IFCAP_CSUM_UDPv6_Rx, M_CSUM_UDPv6))
IFCAP_CSUM_L4_RX = sum(cap for cap, _ in _CAP_RX_CSUM)    # every L4 Rx checksum bit

SIOCSIFCAP = "SIOCSIFCAP"       # if_ioctl command: set if_capenable

LINK_STATE_UNKNOWN = 0
LINK_STATE_DOWN = 1
LINK_STATE_UP = 2

IFQ_MAXLEN = 256


def flags_str(flags: int) -> str:
    return ",".join(n for bit, n in FLAG_NAMES if flags & bit)


def caps_str(caps: int) -> str:
    """NetBSD ifconfig's form: 3c80<TSO4,TCP4CSUM_Rx,...>."""
    return f"{caps:x}<" + ",".join(n for bit, n in CAP_NAMES if caps & bit) + ">"


def rx_csum_sw(capenable: int) -> int:
    """The M_CSUM_* partial checksums a driver must complete itself on
    receive: those whose Rx capability is off (`-tcp6csum-rx`), as the
    kernel hands partial checksums of every kind under one flag."""
    return sum(f for cap, f in _CAP_RX_CSUM if not capenable & cap)


# The capability words a driver option turns off at mount (tso4=0, ...).
MOUNT_CAPWORDS = ("tso4", "tso6", "tcp4csum", "udp4csum", "tcp6csum", "udp6csum")


def mount_capenable(caps: int, opts: dict) -> int:
    """What a driver enables at mount: its capabilities `caps` less each
    word of MOUNT_CAPWORDS whose option is false; a TSO whose family's TCP
    checksum offload is not on both ways goes too (set_capenable's rule)."""
    want = caps
    for word in MOUNT_CAPWORDS:
        if not opts.get(word, True):
            want &= ~CAP_KEYWORDS[word]
    for tso, csum in (("tso4", "tcp4csum"), ("tso6", "tcp6csum")):
        tcp = CAP_KEYWORDS[csum]
        if want & tcp != tcp:
            want &= ~CAP_KEYWORDS[tso]
    return want


def parse_capwords(words, capenable: int) -> int:
    """Apply ifconfig words (`tso4`, `-tcp4csum`, ...) in order to
    `capenable`; return the new set. ValueError names a word it does not
    know."""
    for w in words:
        bits = CAP_KEYWORDS.get(w.lstrip("-"))
        if bits is None:
            raise ValueError(f"unknown capability '{w}' (known: "
                             f"{', '.join(CAP_KEYWORDS)}, each also as -word)")
        capenable = capenable & ~bits if w.startswith("-") else capenable | bits
    return capenable


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
    "unknown_ethertype",    # neither IPv4, ARP nor IPv6
    "ip_tooshort",          # shorter than an IPv4 header
    "ip_badvers",           # IP version != 4
    "ip_badhlen",           # IHL < 5 or beyond the frame
    "ip_badsum",            # header checksum wrong
    "ip_badlen",            # total length < IHL, or beyond the frame
    "ip_badaddr",           # source is multicast/broadcast/loopback
    "arp_malformed",        # ARP not Ethernet/IPv4 or too short
    "ip6_tooshort",         # shorter than an IPv6 header, or than its payload length
    "ip6_badvers",          # IP version != 6 in an IPv6 frame
    "ip6_badaddr",          # source multicast, unspecified (not DAD) or loopback
    "ip6_notready",         # to an address of ours still tentative or duplicated
    "nd6_invalid",          # ND message failing RFC 4861's validity checks
    "nobufs",               # mbuf pool empty
    "qfull",                # hand-off queue full
    "too_long",             # frame larger than a cluster
    "shim_contract",        # a legacy driver broke the io-net contract
    "down",                 # interface not UP
    "bad_offload",          # vnet header asks for an offload never enabled, or lies
)

OUT_DISCARD_REASONS = (
    "qfull",                # if_snd full
    "down",                 # interface not UP/RUNNING
    "link_lost",            # device went away under us
    "arp_unresolved",       # next hop never answered ARP
    "arp_holdq_full",       # too many packets waiting for one neighbour
    "nd6_unresolved",       # IPv6 next hop never answered Neighbor Solicitations
    "nd6_holdq_full",       # too many IPv6 packets waiting for one neighbour
    "txerror",              # the write itself failed
    "nobufs",               # no mbufs to segment a super-frame into
)


DRIVER_HOOKS = ("init", "start", "transmit", "stop", "detach", "ioctl", "extra_info")


class Ifnet:
    """One interface. Drivers set the hooks; the stack sets if_input and
    if_output at attach time (ether_ifattach)."""

    def __init__(self, name: str, unit: int, dname: str):
        self.name = f"{name}{unit}"     # e.g. tap0, en1
        self.unit = unit
        self.dname = dname              # driver that owns it, e.g. devnp-tap
        self.description = ""           # e.g. the kernel TAP it drives
        # The device behind it, as its driver names it (e.g. "TAP P-a0 in
        # netns P-a"): a remount of the same device gets its config back.
        self.if_devkey = ""
        self.lladdr = b"\x00" * 6
        self.mtu = 1500
        self.flags = IFF_BROADCAST | IFF_SIMPLEX | IFF_MULTICAST
        self.capabilities = 0           # what the driver can do (IFCAP_*)
        self.capenable = 0              # what is turned on: set_capenable()
        self.if_csum_flags_tx = 0       # M_CSUM_* the driver completes on transmit
        self.baudrate = 0               # media rate in bit/s, 0 = unknown
        self.link_state = LINK_STATE_UNKNOWN
        self.stack = None
        self.softc = None               # the driver's private state
        self.if_snd = IfQueue()
        self.in_addrs: list[InIfaddr] = []
        self.llinfo: dict = {}          # ARP entries for this link (arp.py)
        self.in6_addrs: list = []       # In6Ifaddr (netinet6/in6.py), link-local first
        self.in6_groups: set = set()    # IPv6 multicast groups joined (ff02::1, ...)
        self.nd6info: dict = {}         # IPv6 neighbour cache (netinet6/nd6.py)
        # Packet capture (bpf.py): None while nobody captures here, so the
        # taps cost one test per burst; a BpfIf while captures are open.
        self.if_bpf = None
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
        self.ip6_input: Callable = None
        self.if_output6: Callable = None
        self.arp_input: Callable = None
        self.reset_counters()

    def reset_counters(self) -> None:
        self.ipackets = self.ibytes = self.imcasts = 0
        self.opackets = self.obytes = self.omcasts = 0
        self.ierrors = self.oerrors = self.iqdrops = self.noproto = 0
        self.collisions = 0
        # Per family, as Ethernet sorted them on input and was handed them
        # on output (counted per burst: no cost per packet).
        self.ipackets_inet = self.ipackets_inet6 = self.ipackets_arp = 0
        self.opackets_inet = self.opackets_inet6 = self.opackets_arp = 0
        # Offload work the stack did in software because this interface
        # could not: TSO super-frames cut into segments, checksums completed.
        self.sw_tso = self.sw_tso_segs = self.sw_csum = 0
        # Frames copied to captures, and dropped because a reader was slow.
        self.bpf_captured = self.bpf_dropped = 0
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

    def set_capenable(self, capenable: int) -> None:
        """SIOCSIFCAP: turn capabilities on or off. Refuses (ValueError, with
        a sentence for the user) what the driver cannot do and what cannot
        work alone: TSO needs TCP checksum offload both ways, as Linux's
        netdev_fix_features insists. The driver applies it first (its
        if_ioctl may raise); only then does the stack follow."""
        bad = capenable & ~self.capabilities
        if bad:
            raise ValueError(f"{self.name} cannot do {caps_str(bad)}; it can do "
                             f"{caps_str(self.capabilities) if self.capabilities else 'none'}")
        for cap, word, csum in (
                (IFCAP_TSOv4, "tso4", "tcp4csum"), (IFCAP_TSOv6, "tso6", "tcp6csum")):
            tcp = CAP_KEYWORDS[csum]
            if capenable & cap and capenable & tcp != tcp:
                raise ValueError(f"{self.name}: {word} needs {csum} (rx and tx); "
                                 f"turn on {csum}, or turn off {word} as well")
        self.if_ioctl(self, SIOCSIFCAP, capenable)
        self.capenable = capenable
        self.if_csum_flags_tx = sum(f for cap, f in _CAP_TX_CSUM if capenable & cap)

    @property
    def up(self) -> bool:
        return bool(self.flags & IFF_UP)

    def mac_str(self) -> str:
        return ":".join(f"{b:02x}" for b in self.lladdr)

    def set_softc(self, sc) -> None:
        """Bind a driver's softc to this interface, and each of its methods
        named after a hook (init, start, transmit, stop, detach, ioctl,
        extra_info) as that if_ hook; hooks it lacks keep their default."""
        self.softc = sc
        for hook in DRIVER_HOOKS:
            fn = getattr(sc, hook, None)
            if fn is not None:
                setattr(self, "if_" + hook, fn)

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
            "sw_tso": self.sw_tso, "sw_tso_segs": self.sw_tso_segs,
            "sw_csum": self.sw_csum,
            "families": {
                "inet": {"ipackets": self.ipackets_inet, "opackets": self.opackets_inet},
                "inet6": {"ipackets": self.ipackets_inet6, "opackets": self.opackets_inet6},
                "arp": {"ipackets": self.ipackets_arp, "opackets": self.opackets_arp},
            },
            "bpf_captured": self.bpf_captured, "bpf_dropped": self.bpf_dropped,
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
