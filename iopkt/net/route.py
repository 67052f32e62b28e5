"""The routing table: longest-prefix match with a per-destination cache.
One table per family: IPv4's of 32-bit ints, IPv6's (width=128) of 128-bit.

Connected routes appear when an address is configured on an interface;
static routes (including the default, 0.0.0.0/0) are added by hand. The
table is small, so lookup is a linear scan in prefix-length order; what
makes forwarding fast is the cache (destination -> entry), flushed whenever
the table changes, like BSD's route cache.
"""

from __future__ import annotations

import ipaddress

RTF_UP = 0x1
RTF_GATEWAY = 0x2
RTF_HOST = 0x4
RTF_STATIC = 0x800
RTF_CONNECTED = 0x80000

RT_CACHE_MAX = 8192


class RouteError(ValueError):
    pass


class Rtentry:
    __slots__ = ("dst", "plen", "mask", "gateway", "ifp", "flags", "use")

    def __init__(self, dst: int, plen: int, gateway: int, ifp, flags: int, width: int):
        self.plen = plen
        self.mask = _mask(plen, width)
        self.dst = dst & self.mask
        self.gateway = gateway          # 0 for a connected route
        self.ifp = ifp
        self.flags = flags | RTF_UP | (RTF_HOST if plen == width else 0)
        self.use = 0

    def to_dict(self, fmt=None) -> dict:
        """`fmt`: the family's address to text (IPv4's by default)."""
        fmt = fmt or ntoa
        f = ""
        for bit, ch in ((RTF_UP, "U"), (RTF_GATEWAY, "G"), (RTF_HOST, "H"),
                        (RTF_STATIC, "S"), (RTF_CONNECTED, "C")):
            if self.flags & bit:
                f += ch
        return {"destination": f"{fmt(self.dst)}/{self.plen}",
                "gateway": fmt(self.gateway) if self.gateway else "link#" + self.ifp.name,
                "flags": f, "interface": self.ifp.name, "use": self.use}


def _mask(plen: int, width: int) -> int:
    full = (1 << width) - 1
    return (full << (width - plen)) & full if plen else 0


class RouteTable:
    def __init__(self, width: int = 32, fmt=None):
        self.width = width              # 32 for IPv4, 128 for IPv6
        self.ntoa = fmt or ntoa         # address to text, for messages
        self.routes: list[Rtentry] = []
        self.cache: dict[int, Rtentry] = {}

    def lookup(self, dst: int) -> Rtentry | None:
        """Longest-prefix match, remembered in self.cache. The forwarding
        path checks the cache first and calls this only on a miss, once it
        has decided `dst` may be forwarded to: a hit needs no more checks."""
        rt = self.match(dst)
        if rt is not None:
            cache = self.cache
            if len(cache) >= RT_CACHE_MAX:
                cache.clear()
            cache[dst] = rt
        return rt

    def match(self, dst: int) -> Rtentry | None:
        """Longest-prefix match, not cached: for packets the stack itself
        sends, whose destinations the forwarding path has not vetted."""
        for rt in self.routes:                  # sorted longest first
            if dst & rt.mask == rt.dst:
                return rt
        return None

    def add(self, dst: int, plen: int, gateway: int = 0, ifp=None,
            flags: int = RTF_STATIC) -> Rtentry:
        ntoa = self.ntoa
        if not 0 <= plen <= self.width:
            raise RouteError(f"prefix length {plen}: must be 0..{self.width}")
        if gateway:
            gw_rt = self._connected_for(gateway)
            # An IPv6 gateway may be link-local: then the interface is named.
            if gw_rt is None and (ifp is None or self.width == 32):
                raise RouteError(f"gateway {ntoa(gateway)} is not on a connected network")
            if ifp is None:
                ifp = gw_rt.ifp
            flags |= RTF_GATEWAY
        elif ifp is None:
            raise RouteError("a route needs a gateway or an interface")
        rt = Rtentry(dst, plen, gateway, ifp, flags, self.width)
        for old in self.routes:
            if old.dst == rt.dst and old.plen == plen:
                raise RouteError(f"route {ntoa(rt.dst)}/{plen} exists")
        self.routes.append(rt)
        self.routes.sort(key=lambda r: -r.plen)
        self.cache.clear()
        return rt

    def delete(self, dst: int, plen: int) -> Rtentry:
        mask = _mask(plen, self.width)
        for rt in self.routes:
            if rt.dst == dst & mask and rt.plen == plen:
                self.routes.remove(rt)
                self.cache.clear()
                return rt
        raise RouteError(f"no route {self.ntoa(dst & mask)}/{plen}")

    def purge_ifp(self, ifp) -> None:
        """Drop every route through `ifp` (it went away)."""
        self.routes = [rt for rt in self.routes if rt.ifp is not ifp]
        self.cache.clear()

    def _connected_for(self, addr: int) -> Rtentry | None:
        for rt in self.routes:
            if rt.flags & RTF_CONNECTED and addr & rt.mask == rt.dst:
                return rt
        return None

    def to_list(self) -> list[dict]:
        return [rt.to_dict(self.ntoa) for rt in self.routes]


def aton(s: str) -> int:
    """'198.18.0.1' -> int. Raises ValueError naming the text."""
    try:
        return int(ipaddress.IPv4Address(s))
    except ValueError:
        raise ValueError(f"{s or repr(s)}: not an IPv4 address (four numbers 0..255, "
                         "like 198.18.0.1)") from None


def ntoa(a: int) -> str:
    return str(ipaddress.IPv4Address(a))


def parse_prefix(s: str) -> tuple[int, int]:
    """'198.18.0.0/24', 'default' or a bare host address -> (addr, plen).
    Raises ValueError naming the bad text."""
    if s == "default":
        return 0, 0
    try:
        if "/" in s:
            iface = ipaddress.IPv4Interface(s)
            return int(iface.ip), iface.network.prefixlen
        return int(ipaddress.IPv4Address(s)), 32
    except ValueError as e:
        raise ValueError(f"{s!r} is not an IPv4 address or prefix") from e


def prefix_problem(s: str) -> str | None:
    """Why `s` is not what parse_prefix takes, naming the bad part and what
    is allowed ('prefix length /33: must be 0..32'), or None if it is fine.
    For messages to a user before anything is sent."""
    try:
        parse_prefix(s)
        return None
    except ValueError:
        pass
    addr, slash, plen = s.partition("/")
    if slash and not (plen.isdigit() and 0 <= int(plen) <= 32) and "." not in plen:
        return f"prefix length /{plen}: must be 0..32"
    try:
        aton(addr)
    except ValueError:
        return (f"{addr or repr(addr)} is not an IPv4 address (four numbers 0..255, "
                "like 198.18.0.1)")
    if slash:
        return f"/{plen} is neither a prefix length 0..32 nor a netmask"
    return "not an IPv4 address or prefix (like 198.18.0.0/24, or default)"
