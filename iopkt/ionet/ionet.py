"""io-net, as a legacy driver sees it (QNX's <sys/io-net.h>, in Python).

This module is the "header" a legacy driver is written against: the packet
structures (npkt_t, net_buf_t, net_iov_t), their flag values, the function
table io-net hands the driver (`IoNetSelf`, the `ion` argument of init),
the registrant the driver gives back, and the devctl data behind nicinfo.
It imports nothing of the stack: a legacy driver that imports only this
module cannot tell whether io-net or the shim is on the other side.

Packet direction uses io-net's words: *up* is from the driver towards the
stack (receive), *down* is from the stack to the driver (transmit). So the
driver's receive path calls `ion.tx_up()`, and the stack's transmit calls
the driver's `rx_down()`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

# npkt_t.flags (io-net values)
_NPKT_NOT_TXED = 0x0001     # the driver could not send this down packet
_NPKT_NO_RES = 0x0002       # no resources: do not hold on to this packet
_NPKT_UP = 0x0004           # travelling up (receive)
_NPKT_MSG = 0x0008          # a message, not data
_NPKT_BCAST = 0x0020
_NPKT_MCAST = 0x0040
_NPKT_PROMISC = 0x0200
_NPKT_TX_WAIT = 0x0400

# rx_down() return codes
TX_DOWN_OK = 0
TX_DOWN_AGAIN = 1           # cannot take it now; the caller keeps the packet
TX_DOWN_FAILED = -1         # not sent; _NPKT_NOT_TXED set and tx_done called

# devctl commands (after <sys/dcmd_io-net.h>)
DCMD_IO_NET_GET_STATS = 0x0201
DCMD_IO_NET_GET_CONFIG = 0x0202
EOK = 0
ENOTSUP = 48

# nic_config_t.flags
NIC_FLAG_LINK_DOWN = 0x0001


class net_iov_t:
    """One fragment: `base` is the buffer (a bytearray or a memoryview of
    exactly the fragment's bytes), `len` how many bytes of it are data,
    `phys` the "physical address" a DMA engine would use (here: an id)."""

    __slots__ = ("base", "phys", "len")

    def __init__(self, base=None, phys: int = 0, length: int = 0):
        self.base = base
        self.phys = phys
        self.len = length


class net_buf_t:
    """A group of fragments (io-net's net_buf_t: niov + net_iov[])."""

    __slots__ = ("net_iov",)

    def __init__(self, iovs: list[net_iov_t] | None = None):
        self.net_iov = iovs if iovs is not None else []

    @property
    def niov(self) -> int:
        return len(self.net_iov)


class npkt_t:
    """An io-net packet. `buffers` is a list of net_buf_t; `framelen` must
    equal the sum of the fragment lengths and `tot_iov` their count. An up
    packet starts with ref_cnt == 1 and _NPKT_UP set."""

    __slots__ = ("buffers", "next", "org_data", "flags", "framelen", "tot_iov",
                 "csum_flags", "ref_cnt", "cell", "endpoint", "iface",
                 "req_complete", "inter_module", "_done")

    def __init__(self):
        self.buffers: list[net_buf_t] = []
        self.next: npkt_t | None = None
        self.org_data: Any = None         # the owner's cookie
        self.flags = 0
        self.framelen = 0
        self.tot_iov = 0
        self.csum_flags = 0
        self.ref_cnt = 0
        self.cell = 0
        self.endpoint = 0
        self.iface = 0
        self.req_complete = 0
        self.inter_module = None
        self._done: list = []             # (reg_hdl, done_hdl) pushed by reg_tx_done

    def iovs(self):
        for nb in self.buffers:
            yield from nb.net_iov


@dataclass
class IoNetRegistrant:
    """What a driver registers with io-net (io_net_registrant_t plus its
    io_net_registrant_funcs_t). Every function is the driver's own."""
    name: str
    rx_down: Callable[[npkt_t], int]
    tx_done: Callable[[npkt_t, Any], int]
    shutdown1: Callable[[int], int]
    shutdown2: Callable[[int], int]
    dl_advert: Callable[[int], int]
    devctl: Callable[[int, int, Any], tuple[int, Any]]
    flush: Callable[[int], int]
    func_hdl: Any = None
    top_type: str = ""
    bot_type: str = "en"                # a bottom (hardware) driver for Ethernet


@dataclass
class NicConfig:
    """nic_config_t: what DCMD_IO_NET_GET_CONFIG answers (nicinfo's top)."""
    device_name: str = ""
    driver_name: str = ""
    permanent_address: bytes = b"\x00" * 6
    current_address: bytes = b"\x00" * 6
    mtu: int = 1500
    media_rate: int = 0               # kbit/s, as io-net reports it
    duplex: int = 1
    flags: int = 0
    revision: int = 0
    extra: dict = field(default_factory=dict)


@dataclass
class NicStats:
    """nic_stats_t: what DCMD_IO_NET_GET_STATS answers (nicinfo's counters)."""
    txed_ok: int = 0
    octets_txed_ok: int = 0
    tx_failed: int = 0
    tx_again: int = 0
    rxed_ok: int = 0
    octets_rxed_ok: int = 0
    rx_failed: int = 0
    rx_nobufs: int = 0                # frames dropped: free list empty
    rx_not_taken: int = 0             # tx_up returned <= 0: recycled by the driver
    txed_broadcast: int = 0
    rxed_broadcast: int = 0
    txed_multicast: int = 0
    rxed_multicast: int = 0
    extra: dict = field(default_factory=dict)


class IoNetSelf:
    """io_net_self_t: the function table io-net gives a driver's init().
    The shim implements it; this class only names the calls and their
    contracts (see DESIGN.md, "The io-net function table")."""

    def alloc(self, size: int) -> bytearray: ...
    def free(self, buf) -> None: ...
    def alloc_up_npkt(self, size: int) -> npkt_t: ...
    def alloc_down_npkt(self, reg_hdl: int, size: int) -> npkt_t: ...
    def reg(self, dll_hdl: Any, registrant: IoNetRegistrant) -> tuple[int, int, int]: ...
    def dereg(self, reg_hdl: int) -> int: ...
    def tx_up(self, reg_hdl: int, npkt: npkt_t, off: int, framelen_sub: int,
              cell: int, endpoint: int, iface: int) -> int: ...
    def tx_up_start(self, reg_hdl: int, npkt: npkt_t, off: int, framelen_sub: int,
                    cell: int, endpoint: int, iface: int, done_hdl: Any) -> npkt_t | None: ...
    def tx_down(self, reg_hdl: int, npkt: npkt_t) -> int: ...
    def tx_done(self, reg_hdl: int, npkt: npkt_t) -> int: ...
    def reg_tx_done(self, reg_hdl: int, npkt: npkt_t, done_hdl: Any) -> int: ...
    def devctl(self, reg_hdl: int, dcmd: int, data: Any) -> tuple[int, Any]: ...


def parse_options(text: str | None, known: dict[str, Any]) -> dict:
    """QNX-style 'key=value,key' options against `known` (name -> default;
    the default's type converts the value). Raises ValueError naming an
    unknown option or a bad value. For legacy drivers, which parse their
    own options as io-net drivers did."""
    opts = dict(known)
    for item in (p.strip() for p in (text or "").split(",")):
        if not item:
            continue
        key, eq, value = item.partition("=")
        if key not in known:
            raise ValueError(f"unknown option '{key}' (options: {', '.join(sorted(known))})")
        typ = type(known[key])
        if typ is bool:
            opts[key] = (value or "1").lower() in ("1", "yes", "on", "true")
        else:
            try:
                opts[key] = typ(value) if eq else typ()
            except ValueError:
                raise ValueError(f"option {key}={value}: expected {typ.__name__}") from None
    return opts
