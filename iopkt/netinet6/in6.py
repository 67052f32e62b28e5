"""IPv6 addresses (BSD's netinet6/in6.c, RFC 4291): text forms, scopes,
the interface identifier from a MAC, multicast groups and their MACs,
the pseudo-header sum, and an address on an interface (in6_ifaddr).

Addresses travel as 128-bit ints inside the stack, as IPv4's do as 32-bit
ints: a dict lookup and a mask are what the forwarding path needs.
"""

from __future__ import annotations

import ipaddress

IPV6_VERSION = 6
IP6_HDR_LEN = 40
IPV6_MMTU = 1280            # the minimum link MTU (RFC 8200 §5)
IPV6_DEFHLIM = 64
IPV6_MAXHLIM = 255

IPPROTO_HOPOPTS = 0
IPPROTO_TCP = 6
IPPROTO_UDP = 17
IPPROTO_ROUTING = 43
IPPROTO_FRAGMENT = 44
IPPROTO_ICMPV6 = 58
IPPROTO_NONE = 59
IPPROTO_DSTOPTS = 60
# Extension headers a router walks over to find the upper layer (RFC 8200 §4).
EXT_HEADERS = (IPPROTO_HOPOPTS, IPPROTO_ROUTING, IPPROTO_FRAGMENT, IPPROTO_DSTOPTS)

ALL128 = (1 << 128) - 1
ALLNODES = 0xFF02 << 112 | 1                    # ff02::1
ALLROUTERS = 0xFF02 << 112 | 2                  # ff02::2
SOLICITED_PREFIX = (0xFF02 << 112) | (1 << 32) | (0xFF << 24)     # ff02::1:ff00:0
LINKLOCAL_PREFIX = 0xFE80 << 112

# in6_ifaddr flags (netinet6/in6_var.h), as ifconfig prints them
IN6_IFF_TENTATIVE = 0x02
IN6_IFF_DUPLICATED = 0x04
IN6_IFF_AUTOCONF = 0x40


def aton6(s: str) -> int:
    """'2001:2:0:a::1' -> int. Raises ValueError naming the text."""
    try:
        return int(ipaddress.IPv6Address(s))
    except ValueError:
        raise ValueError(f"{s or repr(s)}: not an IPv6 address (like 2001:2:0:a::1)") from None


def ntoa6(a: int) -> str:
    return str(ipaddress.IPv6Address(a))


def parse_prefix6(s: str) -> tuple[int, int]:
    """'2001:2:0:a::/64', 'default' or a bare address -> (addr, plen).
    Raises ValueError naming the bad text."""
    if s == "default":
        return 0, 0
    addr, slash, plen = s.partition("/")
    a = aton6(addr)
    if not slash:
        return a, 128
    if not (plen.isdigit() and 0 <= int(plen) <= 128):
        raise ValueError(f"prefix length /{plen}: must be 0..128")
    return a, int(plen)


def mask6(plen: int) -> int:
    return (ALL128 << (128 - plen)) & ALL128 if plen else 0


def is_multicast(a: int) -> bool:
    return a >> 120 == 0xFF


def is_linklocal(a: int) -> bool:
    """fe80::/10, and multicast of link-local scope (ff02::/16)."""
    return a >> 118 == 0x3FA or (a >> 120 == 0xFF and (a >> 112) & 0xF == 2)


def is_loopback_or_unspec(a: int) -> bool:
    return a <= 1


def eui64(mac: bytes) -> int:
    """The modified EUI-64 interface identifier of a MAC (RFC 4291 App. A):
    ff:fe in the middle, the universal/local bit inverted."""
    b = bytes((mac[0] ^ 0x02,)) + mac[1:3] + b"\xff\xfe" + mac[3:6]
    return int.from_bytes(b, "big")


def linklocal(mac: bytes) -> int:
    return LINKLOCAL_PREFIX | eui64(mac)


def solicited_node(a: int) -> int:
    """ff02::1:ffXX:XXXX, the group an address's neighbours solicit (§2.7.1)."""
    return SOLICITED_PREFIX | (a & 0xFFFFFF)


def multicast_mac(group: int) -> bytes:
    """33:33 and the group's low 32 bits (RFC 2464 §7)."""
    return b"\x33\x33" + (group & 0xFFFFFFFF).to_bytes(4, "big")


def pseudo_sum(src: int, dst: int, length: int, nxt: int) -> int:
    """The upper-layer pseudo-header (RFC 8200 §8.1) as a one's-complement
    sum, not folded: source, destination, length, next header."""
    s = length + nxt
    x = src
    for _ in range(8):
        s += x & 0xFFFF
        x >>= 16
    x = dst
    for _ in range(8):
        s += x & 0xFFFF
        x >>= 16
    return s


class In6Ifaddr:
    """An IPv6 address on an interface (BSD's in6_ifaddr). `flags`:
    IN6_IFF_TENTATIVE until Duplicate Address Detection finishes,
    IN6_IFF_DUPLICATED when it found another owner."""

    __slots__ = ("addr", "plen", "mask", "net", "flags", "dad_at", "dad_sent")

    def __init__(self, addr: int, plen: int, flags: int = 0):
        self.addr = addr
        self.plen = plen
        self.mask = mask6(plen)
        self.net = addr & self.mask
        self.flags = flags
        self.dad_at = 0.0           # when the last DAD probe went out
        self.dad_sent = 0

    @property
    def usable(self) -> bool:
        return not self.flags & (IN6_IFF_TENTATIVE | IN6_IFF_DUPLICATED)

    def text(self) -> str:
        s = f"{ntoa6(self.addr)}/{self.plen}"
        if self.flags & IN6_IFF_TENTATIVE:
            s += " tentative"
        if self.flags & IN6_IFF_DUPLICATED:
            s += " duplicated"
        return s
