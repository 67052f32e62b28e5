"""drivers/devnp_afpacket/attach.py without Linux: attach() runs against
stand-ins for what it asks of the kernel -- the packet socket (every
setsockopt, bind and setblocking recorded with its exact value), mmap, the
interface ioctls (fcntl.ioctl answered as dev_ioctl does) and entering a
namespace -- so the ring geometry, the socket options, the capabilities and
every error message are checked exactly. check_options is checked at the
edges of every range."""

import errno
import logging
import mmap
import os
import socket
import struct
from contextlib import contextmanager
from types import SimpleNamespace

import pytest

from devnp_afpacket import attach as afa
from devnp_afpacket import lxif
from devnp_afpacket.attach import DRIVER
from devnp_afpacket.packet_mmap import (
    ETH_P_ALL,
    PACKET_ADD_MEMBERSHIP,
    PACKET_IGNORE_OUTGOING,
    PACKET_LOSS,
    PACKET_MR_PROMISC,
    PACKET_MREQ,
    PACKET_RX_RING,
    PACKET_STATISTICS,
    PACKET_TX_RING,
    PACKET_VERSION,
    PACKET_VNET_HDR,
    SOL_PACKET,
    TP_STATUS_USER,
    TPACKET_REQ,
    TPACKET_REQ3,
    TPACKET_V2,
    TPACKET_V3,
    Geometry,
    Ring,
    ring_layout,
)
from iopkt.dev import netns
from iopkt.dev.autoconf import DeviceError, DriverError
from iopkt.kern.mbuf import MbufPool
from iopkt.net.ifnet import (
    LINK_STATE_DOWN,
    LINK_STATE_UP,
    IFCAP_CSUM_TCPv4_Rx,
    IFCAP_CSUM_TCPv4_Tx,
    IFCAP_CSUM_TCPv6_Rx,
    IFCAP_CSUM_TCPv6_Tx,
    IFCAP_CSUM_UDPv4_Rx,
    IFCAP_CSUM_UDPv4_Tx,
    IFCAP_CSUM_UDPv6_Rx,
    IFCAP_CSUM_UDPv6_Tx,
    IFCAP_TSOv4,
    IFCAP_TSOv6,
)
from iopkt.stack.stack import Stack

LXMAC = bytes.fromhex("02aabbccdd01")          # the Linux interface's own address
UP = lxif.LX_IFF_UP | lxif.LX_IFF_RUNNING
BCAST_MCAST = 0x1002                            # IFF_BROADCAST | IFF_MULTICAST
ARPHRD_ETHER, ARPHRD_NONE = 1, 0xFFFE           # ARPHRD_NONE: a tun device
SO_SNDBUFFORCE = 32
TCP4 = IFCAP_CSUM_TCPv4_Rx | IFCAP_CSUM_TCPv4_Tx
UDP4 = IFCAP_CSUM_UDPv4_Rx | IFCAP_CSUM_UDPv4_Tx
TCP6 = IFCAP_CSUM_TCPv6_Rx | IFCAP_CSUM_TCPv6_Tx
UDP6 = IFCAP_CSUM_UDPv6_Rx | IFCAP_CSUM_UDPv6_Tx
TCP, UDP = TCP4 | TCP6, UDP4 | UDP6
TSO = IFCAP_TSOv4 | IFCAP_TSOv6
ALL = TSO | TCP | UDP
ROOM = 2048 - 64                                # a cluster's room for a frame
TOP = 67600                                     # the largest framesize, for ROOM
BIG = 65632                                     # a v2 frame for a 64 KB super-frame


# -- the stand-ins -----------------------------------------------------------------
class Netdev:
    """One Linux interface as the kernel's interface ioctls see it
    (net/core/dev_ioctl.c), reached through fcntl.ioctl on a socket: by name
    SIOCGIFINDEX, SIOCGIFHWADDR (family, then the address and zeros),
    SIOCGIFFLAGS, SIOCGIFMTU and SIOCSIFFLAGS, by index SIOCGIFNAME. A
    socket sees only the interfaces of the namespace it was made in; any
    other name or index is ENODEV. Brought up, it gets its carrier (a veth
    whose peer is up). `fail` makes a request answer an errno instead."""

    def __init__(self, linux, name="veth1", index=7, mac=LXMAC, hwtype=ARPHRD_ETHER,
                 flags=UP | BCAST_MCAST, mtu=1500, ns=None):
        self.linux = linux
        self.name, self.index, self.mac, self.hwtype = name, index, mac, hwtype
        self.flags, self.mtu, self.ns = flags, mtu, ns
        self.fail = {}
        self.asked = []                 # (request, name) as asked
        self.set_flags = []             # what SIOCSIFFLAGS was given

    def ioctl(self, fd, req, buf):
        if not isinstance(fd, int) or not isinstance(req, int):
            raise TypeError("an integer is required")
        sock = self.linux.by_fd.get(fd)
        if sock is None:
            raise OSError(errno.EBADF, os.strerror(errno.EBADF))
        name = bytes(buf[:16]).split(b"\0")[0].decode()
        self.asked.append((req, name))
        if req in self.fail:
            raise OSError(self.fail[req], os.strerror(self.fail[req]))
        here = sock.ns == self.ns
        if req == lxif.SIOCGIFNAME:
            if not here or struct.unpack_from("i", buf, 16)[0] != self.index:
                raise OSError(errno.ENODEV, os.strerror(errno.ENODEV))
            buf[:16] = self.name.encode().ljust(16, b"\0")
            return 0
        if not here or name != self.name:
            raise OSError(errno.ENODEV, os.strerror(errno.ENODEV))
        if req == lxif.SIOCGIFINDEX:
            struct.pack_into("i", buf, 16, self.index)
        elif req == lxif.SIOCGIFHWADDR:
            struct.pack_into("H6s8x", buf, 16, self.hwtype, self.mac)
        elif req == lxif.SIOCGIFFLAGS:
            struct.pack_into("H", buf, 16, self.flags)
        elif req == lxif.SIOCGIFMTU:
            struct.pack_into("i", buf, 16, self.mtu)
        elif req == lxif.SIOCSIFFLAGS:
            self.flags = struct.unpack_from("H", buf, 16)[0]
            self.set_flags.append(self.flags)
            if self.flags & lxif.LX_IFF_UP:
                self.flags |= lxif.LX_IFF_RUNNING
        else:
            raise OSError(errno.ENOTTY, os.strerror(errno.ENOTTY))
        return 0


class PacketSock:
    """An AF_PACKET socket as attach() uses it: setsockopt, bind and
    setblocking are recorded in order with their exact arguments
    (setblocking takes an int, a bool being one, as the real one); `fail` maps
    (level, option) or "bind" to the errno the kernel answers, or to the
    OSError to raise. fileno is a real fd (one end of a socketpair) for the
    stack's epoll set; PACKET_STATISTICS reads zeros."""

    def __init__(self, ns):
        self.ns = ns
        self.a, self.b = socket.socketpair()
        self.calls = []
        self.fail = {}
        self.closed = False

    def fileno(self):
        return self.a.fileno()

    def _maybe_fail(self, key):
        e = self.fail.get(key)
        if isinstance(e, OSError):
            raise e
        if e:
            raise OSError(e, os.strerror(e))

    def setsockopt(self, level, opt, value):
        self.calls.append(("setsockopt", level, opt, value))
        self._maybe_fail((level, opt))

    def getsockopt(self, level, opt, size):
        assert (level, opt) == (SOL_PACKET, PACKET_STATISTICS)
        return bytes(size)

    def bind(self, addr):
        self.calls.append(("bind", addr))
        self._maybe_fail("bind")

    def setblocking(self, flag):
        if not isinstance(flag, int):
            raise TypeError("'NoneType' object cannot be interpreted as an integer")
        self.calls.append(("setblocking", bool(flag)))

    def close(self):
        self.closed = True
        self.a.close()
        self.b.close()


class Linux:
    """The Linux side of attach(), patched into the modules that reach it:
    socket.socket makes a PacketSock in the namespace the thread is in
    (recording family, type, protocol and that namespace), mmap.mmap maps
    anonymous memory of the length asked (recording its arguments, or
    raising `map_error`), lxif's fcntl.ioctl is the Netdev's, and namespace
    "blue" exists (netns.inside moves the thread there and back)."""

    def __init__(self, monkeypatch, tmp_path):
        self.netdev = Netdev(self)
        self.ns = None
        self.opened = []                # (family, type, proto, namespace)
        self.socks = []
        self.by_fd = {}
        self.maps = []                  # (fd, length, flags, prot)
        self.mems = []
        self.map_error = None
        self.fail = {}                  # copied into each new socket's `fail`
        self.nsdir = tmp_path
        (tmp_path / "blue").touch()
        monkeypatch.setattr(afa, "socket", SimpleNamespace(
            socket=self._socket, AF_PACKET=socket.AF_PACKET, SOCK_RAW=socket.SOCK_RAW,
            SOL_SOCKET=socket.SOL_SOCKET))
        monkeypatch.setattr(afa, "mmap", SimpleNamespace(
            mmap=self._mmap, MAP_SHARED=mmap.MAP_SHARED, PROT_READ=mmap.PROT_READ,
            PROT_WRITE=mmap.PROT_WRITE))
        monkeypatch.setattr(lxif, "fcntl", SimpleNamespace(ioctl=self.netdev.ioctl))
        monkeypatch.setattr(netns, "ns_path", lambda name: str(tmp_path / name))
        monkeypatch.setattr(netns, "inside", self._inside)

    def _socket(self, family=socket.AF_INET, type=socket.SOCK_STREAM, proto=0):
        self.opened.append((family, type, proto, self.ns))
        s = PacketSock(self.ns)
        s.fail = dict(self.fail)
        self.socks.append(s)
        self.by_fd[s.fileno()] = s
        return s

    def _mmap(self, fileno, length, flags=mmap.MAP_SHARED,
              prot=mmap.PROT_WRITE | mmap.PROT_READ):
        self.maps.append((fileno, length, flags, prot))
        if self.map_error:
            raise OSError(self.map_error, os.strerror(self.map_error))
        mem = mmap.mmap(-1, length)
        self.mems.append(mem)
        return mem

    @contextmanager
    def _inside(self, name):
        back, self.ns = self.ns, name
        try:
            yield
        finally:
            self.ns = back

    @property
    def sock(self) -> PacketSock:
        (s,) = self.socks
        return s


@pytest.fixture
def lx(monkeypatch, tmp_path):
    return Linux(monkeypatch, tmp_path)


@pytest.fixture
def stack0(clock):
    """A stack without jumbo clusters (--nmbjumbo 0)."""
    st = Stack("unit", nmbclusters=64, clock=clock, nmbjumbo=0)
    yield st
    st.shutdown()
    try:
        assert st.pool.in_use == 0
    finally:
        st.close()


def attach(stack, text=""):
    return afa.attach(stack, DRIVER.parse_options("ifname=veth1" + (f",{text}" if text else "")))


def attach_error(stack, text="", kind=DeviceError):
    with pytest.raises(kind) as e:
        attach(stack, text)
    return e.value


def rings(version, rx_req, tx_req):
    """The socket options before the rings, then the rings."""
    return [("setsockopt", SOL_PACKET, PACKET_VERSION, version),
            ("setsockopt", SOL_PACKET, PACKET_VNET_HDR, 1),
            ("setsockopt", SOL_PACKET, PACKET_LOSS, 1),
            ("setsockopt", SOL_PACKET, PACKET_RX_RING, rx_req),
            ("setsockopt", SOL_PACKET, PACKET_TX_RING, tx_req)]


def after_rings(sndbuf):
    return [("setsockopt", SOL_PACKET, PACKET_IGNORE_OUTGOING, 1),
            ("setsockopt", socket.SOL_SOCKET, SO_SNDBUFFORCE, sndbuf)]


BOUND = [("bind", ("veth1", ETH_P_ALL)), ("setblocking", False)]
MAPPED = mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE


def messages(caplog, level=logging.INFO):
    return [(r.levelname, r.getMessage()) for r in caplog.records
            if r.name == "iopkt" and r.levelno >= level]


# -- the socket, where it is made --------------------------------------------------
def test_the_socket_is_a_packet_socket_of_protocol_0(stack, lx):
    """A raw AF_PACKET socket of protocol 0 (nothing received until bound)."""
    attach(stack, "offload=0")
    assert lx.opened == [(socket.AF_PACKET, socket.SOCK_RAW, 0, None)]


def test_in_a_namespace_the_socket_is_made_there_and_we_come_back(stack, lx):
    """netns=: the socket is made inside the namespace, which then sees the
    interface; the thread is back in its own namespace afterwards."""
    lx.netdev.ns = "blue"
    ifp = attach(stack, "netns=blue,offload=0")
    assert lx.opened == [(socket.AF_PACKET, socket.SOCK_RAW, 0, "blue")]
    assert lx.ns is None
    assert ifp.description == ifp.if_devkey == "Linux veth1 in netns blue"


def test_a_missing_namespace_is_a_usage_error_and_opens_nothing(stack, lx):
    e = attach_error(stack, "netns=red", DriverError)
    assert str(e) == "devnp-afpacket: option netns=red: no network namespace 'red' " \
        "(see 'ip netns list')"
    assert lx.opened == []


# -- what attach sets up -------------------------------------------------------------
def test_v2_without_offload_wire_sized_frames_and_default_counts(stack, lx):
    """offload=0: 2048-byte frames, 2048 RX and 256 TX, every option before
    the rings, the send buffer forced to twice the TX ring plus 1 MB, the
    ring mapped shared read-write, bound last, non-blocking."""
    ifp = attach(stack, "offload=0")
    s = lx.sock
    assert s.calls == rings(TPACKET_V2, TPACKET_REQ.pack(4096, 1024, 2048, 2048),
                            TPACKET_REQ.pack(4096, 128, 2048, 256)) \
        + after_rings(2 * (512 << 10) + (1 << 20)) + BOUND
    assert lx.maps == [(s.fileno(), (4 << 20) + (512 << 10), *MAPPED)]
    assert lx.netdev.asked == [(lxif.SIOCGIFINDEX, "veth1"), (lxif.SIOCGIFHWADDR, "veth1"),
                               (lxif.SIOCGIFNAME, ""), (lxif.SIOCGIFFLAGS, "veth1"),
                               (lxif.SIOCGIFMTU, "veth1")]         # it was up: left alone
    assert (ifp.name, ifp.dname, ifp.lladdr, ifp.mtu) == ("afp0", "devnp-afpacket", LXMAC, 1500)
    assert ifp.description == ifp.if_devkey == "Linux veth1"
    assert ifp.link_state == LINK_STATE_UP
    assert ifp.capabilities == ifp.capenable == 0
    assert ifp.if_snd.maxlen == 256
    info = ifp.if_extra_info(ifp)
    assert (info["linux_if"], info["linux_ifindex"], info["linux_mtu"]) == ("veth1", 7, 1500)
    assert (info["ring"], info["frame_size"], info["ring_bytes"]) == ("v2", 2048, 4718592)
    assert info["rx_burst"] == 64
    assert info["offload"] is False and info["promisc"] is False
    assert stack.pool.njumbo == 0                   # wire-sized frames fit a cluster


def test_v2_with_offload_superframe_slots_and_fewer_frames(stack, lx):
    """offload=1 (the default): 65632-byte frames for a 64 KB super-frame,
    128 RX and 64 TX rounded up to whole 1 MB / 512 KB blocks; TSO and
    checksum offload offered and on."""
    ifp = attach(stack)
    s = lx.sock
    assert s.calls == rings(TPACKET_V2, TPACKET_REQ.pack(1 << 20, 9, BIG, 135),
                            TPACKET_REQ.pack(512 << 10, 10, BIG, 70)) \
        + after_rings(2 * (5 << 20) + (1 << 20)) + BOUND
    assert lx.maps == [(s.fileno(), (9 << 20) + (5 << 20), *MAPPED)]
    assert ifp.capabilities == ifp.capenable == ALL
    assert ifp.if_extra_info(ifp)["offload"] is True
    assert stack.pool.njumbo


def test_v3_rings_blocks_and_block_timeout(stack, lx):
    """ring=v3: TPACKET_REQ3 for both rings, the RX one in 256 KB blocks
    with the block timeout, the TX one without."""
    ifp = attach(stack, "ring=v3,offload=0,blocktmo=5,burst=9,txqlen=33")
    assert lx.sock.calls == rings(TPACKET_V3,
                                  TPACKET_REQ3.pack(256 << 10, 16, 2048, 2048, 5, 0, 0),
                                  TPACKET_REQ3.pack(4096, 128, 2048, 256, 0, 0, 0)) \
        + after_rings(2 * (512 << 10) + (1 << 20)) + BOUND
    assert lx.maps[0][1] == (4 << 20) + (512 << 10)
    info = ifp.if_extra_info(ifp)
    assert (info["ring"], info["block_timeout_ms"], info["rx_burst"]) == ("v3", 5, 9)
    assert ifp.if_snd.maxlen == 33


def test_framesize_and_frame_counts_given(stack, lx):
    attach(stack, "offload=0,framesize=4096,rxframes=100,txframes=10")
    assert lx.sock.calls[3:5] == [
        ("setsockopt", SOL_PACKET, PACKET_RX_RING, TPACKET_REQ.pack(4096, 100, 4096, 100)),
        ("setsockopt", SOL_PACKET, PACKET_TX_RING, TPACKET_REQ.pack(4096, 10, 4096, 10))]
    assert lx.maps[0][1] == 110 * 4096


def test_a_jumbo_mtu_gets_the_frame_it_needs(stack, lx):
    """MTU 9000: the smallest frame for 9000 + 14 + a VLAN tag (9104)."""
    lx.netdev.mtu = 9000
    ifp = attach(stack, "offload=0,rxframes=1,txframes=1")
    assert lx.sock.calls[3][3] == TPACKET_REQ.pack(16384, 1, 9104, 1)
    assert ifp.mtu == 9000
    assert stack.pool.njumbo                        # frames longer than a cluster


def test_our_mtu_is_what_a_ring_frame_carries(stack, lx):
    """An MTU the frame carries only without a VLAN tag: ours is 4 less."""
    lx.netdev.mtu = 1958                            # 1972 = 2048 - 76: just fits
    ifp = attach(stack, "offload=0,framesize=2048")
    assert ifp.mtu == 2048 - 76 - 14 - 4
    assert ifp.if_extra_info(ifp)["linux_mtu"] == 1958


def test_the_mtu_is_68_at_least_and_9000_at_most(stack, lx):
    lx.netdev.mtu = 68
    assert attach(stack, "offload=0").mtu == 68
    lx.netdev.mtu = 9001
    assert attach(stack).mtu == 9000


def test_a_frame_longer_than_a_cluster_turns_jumbo_clusters_on(stack, lx):
    """framesize 2080: a 2004-byte frame, longer than a cluster's 1984."""
    attach(stack, "offload=0,framesize=2080")
    assert stack.pool.njumbo


def test_an_interface_without_carrier_attaches_link_down(stack, lx):
    lx.netdev.flags = lxif.LX_IFF_UP | BCAST_MCAST
    ifp = attach(stack, "offload=0")
    assert ifp.link_state == LINK_STATE_DOWN
    assert lx.netdev.set_flags == []


def test_the_link_is_first_looked_at_after_100_ms(stack, lx, clock):
    """The first poll soon (a veth just brought up gets its carrier in ms)."""
    ifp = attach(stack, "offload=0")
    lx.netdev.flags &= ~lxif.LX_IFF_RUNNING
    clock.advance(0.1)
    stack._run_callouts()
    assert ifp.link_state == LINK_STATE_DOWN


def test_the_socket_is_the_interfaces_interrupt(stack, lx):
    """A frame in the RX ring and the socket readable: the stack's loop
    calls the driver, which hands the frame up."""
    ifp = attach(stack, "offload=0")
    got = []

    def record(ifp_, pkts):
        for m in pkts:
            got.append(m.tobytes())
            stack.pool.freem(m)

    ifp.if_input = record
    frame = LXMAC + bytes.fromhex("02aa00000002") + b"\x08\x00" + bytes(46)
    mac = Geometry(TPACKET_V2).rx_mac
    mem = lx.mems[0]
    mem[mac:mac + 60] = frame
    struct.pack_into("<IIIHH", mem, 0, TP_STATUS_USER, 60, 60, mac, mac + 14)
    lx.sock.b.send(b"!")
    stack.timeout(0, stack.stop)
    stack.run()
    assert got == [frame]


def test_build_alone_has_no_description_and_is_not_promiscuous(stack):
    """build's defaults, as the unit tests call it."""
    fs = 2048
    rx = tx = ring_layout(fs, 2)
    ring = Ring(bytearray(2 * 4096), Geometry(TPACKET_V2), fs, rx, tx)
    ifp = afa.build(stack, PacketSock(None), ring, 7, "veth1", 1500, UP, LXMAC,
                    DRIVER.parse_options("ifname=veth1"))
    assert ifp.description == ifp.if_devkey == ""
    assert ifp.if_extra_info(ifp)["promisc"] is False


def _build(stack, fs, opts):
    """build over a hand-made ring of one `fs`-byte frame each way (a size
    the kernel would refuse: this checks build's bounds)."""
    bs = (fs + 15) & ~15
    ring = Ring(bytearray(2 * bs), Geometry(TPACKET_V2), fs, (bs, 1, 1), (bs, 1, 1))
    return afa.build(stack, PacketSock(None), ring, 7, "veth1", 1500, UP, LXMAC,
                     DRIVER.parse_options("ifname=veth1" + (f",{opts}" if opts else "")))


def test_a_frame_exactly_a_cluster_long_needs_no_jumbo_cluster(stack):
    _build(stack, ROOM + 76, "offload=0")           # RX room 1984: a cluster's
    assert stack.pool.njumbo == 0


def test_a_tx_slot_exactly_a_superframe_long_offers_tso4(stack):
    ifp = _build(stack, 65549 + 32 + 10, "")         # TX room 65549: MAX_FRAME
    assert ifp.capabilities == ALL


# -- capabilities ----------------------------------------------------------------------
@pytest.mark.parametrize("opts,want", [
    ("tso4=0", IFCAP_TSOv6 | TCP | UDP),
    ("tso6=0", IFCAP_TSOv4 | TCP | UDP),
    ("tso4=0,tso6=0", TCP | UDP),
    ("tcp4csum=0", IFCAP_TSOv6 | TCP6 | UDP),       # and TSO4, which needs it
    ("tcp4csum=0,tso4=0", IFCAP_TSOv6 | TCP6 | UDP),
    ("udp4csum=0", TSO | TCP | UDP6),
    ("tcp6csum=0", IFCAP_TSOv4 | TCP4 | UDP),       # and TSO6, which needs it
    ("udp6csum=0", TSO | TCP | UDP4),
    ("tcp4csum=0,udp4csum=0", IFCAP_TSOv6 | TCP6 | UDP6),
    ("tcp4csum=0,udp4csum=0,tcp6csum=0,udp6csum=0", 0),
], ids=["tso4", "tso6", "tso4_tso6", "tcp4csum", "tcp4csum_tso4", "udp4csum", "tcp6csum",
        "udp6csum", "v4_csums", "all_csums"])
def test_capabilities_turned_off_at_mount(stack, lx, opts, want):
    ifp = attach(stack, opts)
    assert ifp.capabilities == ALL and ifp.capenable == want


def test_without_jumbo_clusters_no_tso4_and_said(stack0, lx, caplog):
    ifp = attach(stack0)
    assert ifp.capabilities == ifp.capenable == TCP | UDP
    assert messages(caplog, logging.WARNING) == [
        ("WARNING", "afp0: no jumbo clusters (--nmbjumbo 0): TSO4 and TSO6 are not offered")]


def test_a_frame_too_small_for_a_superframe_no_tso4_and_said(stack, lx, caplog):
    ifp = attach(stack, "framesize=2048")
    assert ifp.capabilities == ifp.capenable == TCP | UDP
    assert messages(caplog, logging.WARNING) == [
        ("WARNING", "afp0: a 2048-byte ring frame cannot carry a 64 KB super-frame: "
                    "TSO4 and TSO6 are not offered")]


# -- the Linux interface -------------------------------------------------------------
def test_a_missing_interface_is_named(stack, lx):
    """No such interface (ENODEV): said as such; the socket is closed."""
    lx.netdev.name = "veth9"
    e = attach_error(stack)
    assert str(e) == "devnp-afpacket: no interface veth1 (see 'ip link')"
    assert e.errno == errno.ENODEV
    assert lx.sock.closed and lx.maps == []


def test_an_interface_in_another_namespace_is_missing_here(stack, lx):
    lx.netdev.ns = "blue"
    e = attach_error(stack, "netns=")
    assert str(e) == "devnp-afpacket: no interface veth1 (see 'ip link')"
    lx.netdev.ns = None
    e = attach_error(stack, "netns=blue")
    assert str(e) == "devnp-afpacket: no interface veth1 in netns blue (see 'ip link')"


def test_an_interface_that_cannot_be_read(stack, lx):
    """Any other errno: the system's words for it, and its errno."""
    lx.netdev.fail[lxif.SIOCGIFHWADDR] = errno.EPERM
    e = attach_error(stack)
    assert str(e) == "devnp-afpacket: veth1: cannot read it: Operation not permitted"
    assert e.errno == errno.EPERM
    assert lx.sock.closed
    lx.netdev.ns = "blue"
    e = attach_error(stack, "netns=blue")
    assert str(e) == "devnp-afpacket: veth1 in netns blue: cannot read it: " \
        "Operation not permitted"


def test_only_an_ethernet_interface(stack, lx):
    """A tun device (ARPHRD_NONE, 65534) is refused, its type said."""
    lx.netdev.hwtype = ARPHRD_NONE
    e = attach_error(stack)
    assert str(e) == "devnp-afpacket: veth1 is not an Ethernet interface (ARPHRD 65534)"
    assert e.errno is None
    assert lx.sock.closed and lx.maps == []
    lx.netdev.ns = "blue"
    e = attach_error(stack, "netns=blue")
    assert str(e) == "devnp-afpacket: veth1 in netns blue is not an Ethernet interface " \
        "(ARPHRD 65534)"


def test_an_interface_that_is_down_is_brought_up(stack, lx, caplog):
    """Not up: SIOCSIFFLAGS with its flags and IFF_UP (all 16 bits of them,
    IFF_DYNAMIC 0x8000 too), said; the link as it is afterwards."""
    caplog.set_level(logging.INFO, "iopkt")
    lx.netdev.flags = 0x8000 | BCAST_MCAST
    ifp = attach(stack, "offload=0")
    assert lx.netdev.set_flags == [0x8000 | BCAST_MCAST | lxif.LX_IFF_UP]
    assert ifp.link_state == LINK_STATE_UP
    assert messages(caplog) == [("INFO", "devnp-afpacket: veth1 was down: brought it up"),
                                ("INFO", "afp0: attached (devnp-afpacket, Linux veth1)")]
    assert lx.sock.calls[-2:] == BOUND


def test_an_interface_in_a_namespace_brought_up_is_said_so(stack, lx, caplog):
    caplog.set_level(logging.INFO, "iopkt")
    lx.netdev.flags, lx.netdev.ns = BCAST_MCAST, "blue"
    attach(stack, "offload=0,netns=blue")
    assert messages(caplog) == [
        ("INFO", "devnp-afpacket: veth1 in netns blue was down: brought it up"),
        ("INFO", "afp0: attached (devnp-afpacket, Linux veth1 in netns blue)")]


def test_an_interface_that_cannot_be_brought_up(stack, lx):
    """Refused: said; the ring unmapped and the socket closed."""
    lx.netdev.flags = BCAST_MCAST
    lx.netdev.fail[lxif.SIOCSIFFLAGS] = errno.EPERM
    e = attach_error(stack, "offload=0")
    assert str(e) == "devnp-afpacket: veth1: cannot bring it up: Operation not permitted"
    assert e.errno == errno.EPERM
    assert lx.mems[0].closed and lx.sock.closed
    lx.netdev.ns = "blue"
    e = attach_error(stack, "offload=0,netns=blue")
    assert str(e) == "devnp-afpacket: veth1 in netns blue: cannot bring it up: " \
        "Operation not permitted"


# -- the frame size against the MTU and the clusters ---------------------------------
def test_a_frame_size_too_small_for_the_mtu(stack, lx):
    """MTU 1962 + 14 > 1972, what a 2048-byte frame carries: the frame
    size it needs is said (with room for a VLAN tag)."""
    lx.netdev.mtu = 1962
    e = attach_error(stack, "offload=0,framesize=2048", DriverError)
    assert str(e) == "devnp-afpacket: option framesize=2048: a ring frame carries at most " \
        "1972 bytes of frame; veth1's MTU is 1962: give framesize=2064 or more"
    assert lx.sock.closed and lx.maps == []


def test_an_mtu_longer_than_a_cluster_needs_jumbo_clusters(stack0, lx):
    lx.netdev.mtu = ROOM - 14 + 1
    e = attach_error(stack0, "offload=0", DriverError)
    assert str(e) == "devnp-afpacket: veth1's MTU 1971: frames longer than a cluster " \
        "(1984 bytes) need jumbo clusters: give --nmbjumbo > 0"
    assert lx.sock.closed


def test_an_mtu_that_fits_a_cluster_needs_no_jumbo_clusters(stack0, lx):
    lx.netdev.mtu = ROOM - 14
    assert attach(stack0, "offload=0").mtu == ROOM - 14
    lx.netdev.mtu = 1500
    assert attach(stack0, "offload=0").mtu == 1500


def test_a_jumbo_mtu_with_jumbo_clusters(stack, lx):
    lx.netdev.mtu = 9000
    assert attach(stack, "offload=0").mtu == 9000


# -- how much ring memory --------------------------------------------------------------
def test_an_rx_ring_over_256_mb_is_refused(stack, lx):
    e = attach_error(stack, "framesize=65632,rxframes=65536,txframes=10", DriverError)
    assert str(e) == "devnp-afpacket: option rxframes=65536: 65583 frames of 65632 bytes " \
        "need 4164 MB of pinned ring memory; at most 256 MB a ring"
    assert lx.sock.closed and lx.sock.calls == []


def test_a_tx_ring_over_256_mb_is_refused(stack, lx):
    e = attach_error(stack, "offload=0,framesize=8192,rxframes=10,txframes=65536", DriverError)
    assert str(e) == "devnp-afpacket: option txframes=65536: 65536 frames of 8192 bytes " \
        "need 512 MB of pinned ring memory; at most 256 MB a ring"


def test_a_ring_of_256_mb_is_allowed(stack, lx):
    """Exactly 256 MB: 65536 one-page blocks."""
    attach(stack, "offload=0,framesize=4096,rxframes=65536,txframes=1")
    assert lx.sock.calls[3][3] == TPACKET_REQ.pack(4096, 65536, 4096, 65536)


def test_the_ring_bytes_are_its_blocks_not_its_frames(stack, lx):
    """772 blocks of 256 KB (202 MB) hold 65620 3072-byte frames: allowed,
    although 65620 frames times a block would be far more."""
    attach(stack, "offload=0,framesize=3072,rxframes=65536,txframes=1")
    assert lx.sock.calls[3][3] == TPACKET_REQ.pack(256 << 10, 772, 3072, 65620)


# -- when the kernel says no -----------------------------------------------------------
def test_rings_the_kernel_refuses(stack, lx):
    """The ring version and the whole size in the message."""
    lx.fail[(SOL_PACKET, PACKET_TX_RING)] = errno.ENOMEM
    e = attach_error(stack, "offload=0")
    assert str(e) == "devnp-afpacket: veth1: cannot set up the v2 rings (4608 KB): " \
        "Cannot allocate memory"
    assert e.errno == errno.ENOMEM
    assert lx.sock.closed and lx.maps == []
    lx.netdev.ns = "blue"
    e = attach_error(stack, "offload=0,ring=v3,netns=blue,rxframes=1,txframes=1")
    assert str(e) == "devnp-afpacket: veth1 in netns blue: cannot set up the v3 rings " \
        "(516 KB): Cannot allocate memory"


def test_a_kernel_without_ignore_outgoing_is_said_and_goes_on(stack, lx, caplog):
    """Before Linux 4.20 there is no PACKET_IGNORE_OUTGOING: a warning."""
    lx.fail[(SOL_PACKET, PACKET_IGNORE_OUTGOING)] = errno.ENOPROTOOPT
    ifp = attach(stack, "offload=0")
    assert messages(caplog, logging.WARNING) == [
        ("WARNING", "devnp-afpacket: veth1: no PACKET_IGNORE_OUTGOING in this kernel")]
    assert ifp.name == "afp0" and lx.sock.calls[-2:] == BOUND


def test_a_send_buffer_that_cannot_be_forced_is_no_matter(stack, lx, caplog):
    """SO_SNDBUFFORCE needs CAP_NET_ADMIN: without it, nothing said."""
    lx.fail[(socket.SOL_SOCKET, SO_SNDBUFFORCE)] = errno.EPERM
    ifp = attach(stack, "offload=0")
    assert messages(caplog, logging.WARNING) == [] and ifp.name == "afp0"
    assert lx.sock.calls[-2:] == BOUND


def test_rings_that_cannot_be_mapped(stack, lx):
    lx.map_error = errno.ENOMEM
    e = attach_error(stack, "offload=0")
    assert str(e) == "devnp-afpacket: veth1: cannot map the rings: Cannot allocate memory"
    assert e.errno == errno.ENOMEM
    assert lx.sock.closed
    lx.netdev.ns = "blue"
    e = attach_error(stack, "offload=0,netns=blue")
    assert str(e) == "devnp-afpacket: veth1 in netns blue: cannot map the rings: " \
        "Cannot allocate memory"


def test_a_socket_that_cannot_be_bound(stack, lx):
    """Refused at the last step: the ring unmapped, the socket closed,
    nothing attached."""
    lx.fail["bind"] = errno.ENETDOWN
    e = attach_error(stack, "offload=0")
    assert str(e) == "devnp-afpacket: veth1: cannot bind to it: Network is down"
    assert e.errno == errno.ENETDOWN
    assert lx.mems[0].closed and lx.sock.closed
    assert stack.ifnets == {}
    lx.netdev.ns = "blue"
    e = attach_error(stack, "offload=0,netns=blue")
    assert str(e) == "devnp-afpacket: veth1 in netns blue: cannot bind to it: Network is down"


def test_an_error_without_errno_is_said_in_its_own_words(stack, lx):
    lx.fail["bind"] = OSError("AF_PACKET interface name too long")
    e = attach_error(stack, "offload=0")
    assert str(e) == "devnp-afpacket: veth1: cannot bind to it: " \
        "AF_PACKET interface name too long"
    assert e.errno is None


# -- our own MAC address -----------------------------------------------------------------
def test_another_mac_puts_the_interface_in_promiscuous_mode(stack, lx):
    """mac=: ours; the socket joins PACKET_MR_PROMISC on the interface
    (by its index) before it is bound."""
    ifp = attach(stack, "offload=0,mac=02:00:00:00:00:05")
    assert ifp.lladdr == bytes.fromhex("020000000005")
    assert lx.sock.calls[-3:] == [
        ("setsockopt", SOL_PACKET, PACKET_ADD_MEMBERSHIP,
         PACKET_MREQ.pack(7, PACKET_MR_PROMISC, 0, b""))] + BOUND
    assert ifp.if_extra_info(ifp)["promisc"] is True


def test_the_interfaces_own_mac_given_is_not_promiscuous(stack, lx):
    ifp = attach(stack, "offload=0,mac=02:AA:BB:CC:DD:01")
    assert ifp.lladdr == LXMAC
    assert lx.sock.calls[-3] == after_rings(2 * (512 << 10) + (1 << 20))[-1]
    assert ifp.if_extra_info(ifp)["promisc"] is False


# -- check_options -----------------------------------------------------------------------
def check(text):
    afa.check_options(DRIVER.parse_options(text), MbufPool(4).mclbytes - 64)


NAME = "an interface name is 1-15 characters, not '.' or '..', without '/', ':' or spaces"
NS = "a namespace name, as 'ip netns list' shows it"
MAC = "expected xx:xx:xx:xx:xx:xx, six hex bytes like 02:00:00:00:00:01 " \
    "(unicast: first byte even; not all zero)"
FS = f"a multiple of 16 in 256..{TOP} (0: the default)"


@pytest.mark.parametrize("text,msg", [
    ("", "option ifname=... is required: the Linux interface to drive (see 'ip link')"),
    ("ifname=a/b", f"option ifname=a/b: {NAME}"),
    ("ifname=veth1,netns=a/b", f"option netns=a/b: {NS}"),
    ("ifname=veth1,netns=.", f"option netns=.: {NS}"),
    ("ifname=veth1,netns=..", f"option netns=..: {NS}"),
    ("ifname=veth1,ring=v1", "option ring=v1: v2 or v3"),
    ("ifname=veth1,burst=0", "option burst=0: must be 1..4096"),
    ("ifname=veth1,burst=4097", "option burst=4097: must be 1..4096"),
    ("ifname=veth1,txqlen=0", "option txqlen=0: must be 1..65536"),
    ("ifname=veth1,txqlen=65537", "option txqlen=65537: must be 1..65536"),
    ("ifname=veth1,rxframes=65537", "option rxframes=65537: must be 0..65536 (0: the default)"),
    ("ifname=veth1,txframes=65537", "option txframes=65537: must be 0..65536 (0: the default)"),
    ("ifname=veth1,txframes=-1", "option txframes=-1: must be 0..65536 (0: the default)"),
    ("ifname=veth1,blocktmo=1001",
     "option blocktmo=1001: must be 0..1000 (ms; 0: the kernel's own)"),
    ("ifname=veth1,blocktmo=-1", "option blocktmo=-1: must be 0..1000 (ms; 0: the kernel's own)"),
    ("ifname=veth1,framesize=2050", f"option framesize=2050: {FS}"),
    ("ifname=veth1,framesize=240", f"option framesize=240: {FS}"),
    (f"ifname=veth1,framesize={TOP + 16}", f"option framesize={TOP + 16}: {FS}"),
    ("ifname=veth1,mac=01:00:00:00:00:01", f"option mac=01:00:00:00:00:01: {MAC}"),
    ("ifname=veth1,mac=00:00:00:00:00:00", f"option mac=00:00:00:00:00:00: {MAC}"),
    ("ifname=veth1,mac=02:00:00:00:00", f"option mac=02:00:00:00:00: {MAC}"),
    ("ifname=veth1,mac=02:00:00:00:00:zz", f"option mac=02:00:00:00:00:zz: {MAC}"),
    ("ifname=veth1,mac=0x2:0:0:0:0:1", f"option mac=0x2:0:0:0:0:1: {MAC}"),
], ids=["no_ifname", "ifname", "netns_slash", "netns_dot", "netns_dotdot", "ring",
        "burst_0", "burst_4097", "txqlen_0", "txqlen_65537", "rxframes_65537",
        "txframes_65537", "txframes_neg", "blocktmo_1001", "blocktmo_neg", "framesize_2050",
        "framesize_240", "framesize_top16", "mac_multicast", "mac_zero", "mac_five",
        "mac_not_hex", "mac_0x"])
def test_bad_options_are_usage_errors_that_say_why(text, msg):
    with pytest.raises(DriverError) as e:
        check(text)
    assert str(e.value) == f"devnp-afpacket: {msg}"


@pytest.mark.parametrize("text", [
    "netns=blue", "burst=1", "burst=4096", "txqlen=1", "txqlen=65536", "rxframes=65536",
    "txframes=0", "txframes=65536", "blocktmo=0", "blocktmo=1000", "framesize=256",
    "framesize=2048", f"framesize={TOP}", "mac=02:00:00:00:00:01", "mac=2:0:0:0:0:1",
    "ring=v3",
], ids=["netns", "burst_1", "burst_4096", "txqlen_1", "txqlen_65536", "rxframes_65536",
        "txframes_0", "txframes_65536", "blocktmo_0", "blocktmo_1000", "framesize_256",
        "framesize_2048", "framesize_top", "mac", "mac_short_bytes", "ring_v3"])
def test_options_at_the_edges_of_their_ranges_are_taken(text):
    assert check(f"ifname=veth1,{text}") is None
