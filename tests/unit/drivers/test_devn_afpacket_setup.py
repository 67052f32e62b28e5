"""devn-afpacket from init() to shutdown without root: a stand-in kernel
answers socket(2), the interface ioctls and mmap(2) of the ring, and
records every socket call in order; io-net is a recorder. Checked: the
options, the socket's configuration and ring geometry, the registration
and the receive thread it starts, devctl's answers, link state, kernel
statistics, the netns path of open_socket and shutdown."""

import errno
import mmap
import os
import select
import socket
import struct
import threading
import time
import types

import pytest

from devn_afpacket import devn_afpacket as af
from iopkt.ionet import ionet
from iopkt.ionet.ionet import (
    DCMD_IO_NET_GET_CONFIG,
    DCMD_IO_NET_GET_STATS,
    ENOTSUP,
    EOK,
    NIC_FLAG_LINK_DOWN,
    NicConfig,
)

IFMAC = bytes.fromhex("02aabbccddee")
OURS = "02:00:00:00:00:01"
UP_RUNNING = af.IFF_UP | af.IFF_RUNNING
_real_mmap = mmap.mmap


class PacketSocket:
    """A packet socket as the kernel answers it. `calls` lists what it
    was asked, in order; its fd is an eventfd nobody signals (no frame
    ever arrives through it: the ring is filled by the test)."""

    def __init__(self, kernel, *args):
        self.kernel = kernel
        self.args = args
        self.calls = []
        self.efd = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
        self.so_error = 0
        self.stats = (0, 0)             # tp_packets, tp_drops since the last read
        self.closed = False

    def fileno(self):
        return -1 if self.closed else self.efd

    def setsockopt(self, level, opt, value):
        self.calls.append(("setsockopt", level, opt, value))
        if (opt == af.PACKET_ADD_MEMBERSHIP and self.kernel.no_unicast
                and struct.unpack_from("iH", value)[1] == af.PACKET_MR_UNICAST):
            raise OSError(errno.EINVAL, "Invalid argument")

    def getsockopt(self, level, opt, size=None):
        self.calls.append(("getsockopt", level, opt, size))
        if (level, opt, size) == (socket.SOL_SOCKET, socket.SO_ERROR, None):
            e, self.so_error = self.so_error, 0
            return e
        if (level, opt) == (af.SOL_PACKET, af.PACKET_STATISTICS) and size:
            if self.kernel.gone:
                raise OSError(errno.EBADF, "Bad file descriptor")
            out, self.stats = struct.pack("II", *self.stats)[:size], (0, 0)   # read resets
            return out
        raise OSError(errno.ENOPROTOOPT, "Protocol not available")

    def bind(self, addr):
        self.calls.append(("bind", addr))

    def setblocking(self, flag):
        self.calls.append(("setblocking", flag))

    def close(self):
        if not self.closed:
            os.close(self.efd)
        self.closed = True


class Kernel:
    """The kernel as devn-afpacket meets it, for one interface: socket(2)
    makes PacketSockets, the SIOCGIF* ioctls answer for `ifname` (ENODEV
    for any other name or once `gone`), mmap(2) of the ring gives
    anonymous memory the test can fill. `no_unicast`: the device has no
    unicast filter (PACKET_MR_UNICAST fails)."""

    def __init__(self, monkeypatch, ifname="veth0", index=7, family=af.ARPHRD_ETHER,
                 mac=IFMAC, mtu=1500, flags=UP_RUNNING):
        self.ifname, self.index, self.family, self.mac = ifname, index, family, mac
        self.mtu, self.flags = mtu, flags
        self.gone = False
        self.no_unicast = False
        self.ioctl_errno = None         # every ioctl fails with it
        self.sockets = []
        self.ioctls = []                # (fd, request, the ifreq as the driver passed it)
        self.maps = []                  # (fd, length, flags, prot)
        self.ring = None
        monkeypatch.setattr(af, "socket", types.SimpleNamespace(
            socket=self.socket, AF_PACKET=socket.AF_PACKET, SOCK_RAW=socket.SOCK_RAW,
            SOL_SOCKET=socket.SOL_SOCKET, SO_ERROR=socket.SO_ERROR))
        monkeypatch.setattr(af, "fcntl", types.SimpleNamespace(ioctl=self.ioctl))
        monkeypatch.setattr(af, "mmap", types.SimpleNamespace(
            mmap=self.mmap, MAP_SHARED=mmap.MAP_SHARED, PROT_READ=mmap.PROT_READ,
            PROT_WRITE=mmap.PROT_WRITE))

    def socket(self, *args):
        s = PacketSocket(self, *args)
        self.sockets.append(s)
        return s

    def ioctl(self, fd, req, buf):
        assert isinstance(buf, bytearray) and len(buf) == 40
        self.ioctls.append((fd, req, bytes(buf)))
        if self.ioctl_errno:
            raise OSError(self.ioctl_errno, os.strerror(self.ioctl_errno))
        if self.gone or bytes(buf[:16]).rstrip(b"\0") != self.ifname.encode():
            raise OSError(errno.ENODEV, "No such device")
        if req == af.SIOCGIFINDEX:
            struct.pack_into("i", buf, 16, self.index)
        elif req == af.SIOCGIFHWADDR:
            struct.pack_into("H6s", buf, 16, self.family, self.mac)
        elif req == af.SIOCGIFMTU:
            struct.pack_into("i", buf, 16, self.mtu)
        elif req == af.SIOCGIFFLAGS:
            struct.pack_into("H", buf, 16, self.flags)
        else:
            raise OSError(errno.ENOTTY, "Inappropriate ioctl for device")
        return 0

    def mmap(self, *args):
        self.maps.append(args)
        self.ring = _real_mmap(-1, args[1])
        return self.ring


class Ion(ionet.IoNetSelf):
    """io-net as a recorder: reg answers (5, 6, 7); tx_up_start takes
    every frame (as bytes) and gives each npkt back at once."""

    def __init__(self):
        self.regs = []
        self.up = []
        self.calls = []
        self.drv = None

    def alloc(self, size):
        return bytearray(size)

    def reg(self, dll_hdl, registrant):
        self.regs.append((dll_hdl, registrant))
        return 5, 6, 7

    def tx_up_start(self, reg_hdl, npkt, off, framelen_sub, cell, endpoint, iface, done_hdl):
        self.calls.append((reg_hdl, off, framelen_sub, cell, endpoint, iface, done_hdl))
        while npkt is not None:
            nxt = npkt.next
            self.up.append(bytes(npkt.buffers[0].net_iov[0].base[:npkt.framelen]))
            done_hdl.tx_done(npkt, None)
            npkt = nxt
        return None


@pytest.fixture
def kernel(monkeypatch):
    k = Kernel(monkeypatch)
    yield k
    for s in k.sockets:
        s.close()


def new(kernel, opts=f"ifname=veth0,mac={OURS}", ion=None):
    """A DevnAfpacket made by init(), as io-net makes it."""
    dll = object()
    ion = ion or Ion()
    assert af.init(dll, ion, opts) == EOK
    d = af._instances[id(dll)]
    ion.drv = d
    return d, ion, dll


def stop(d, dll):
    assert d.shutdown1(d.reg_hdl) == EOK
    assert d.shutdown2(d.reg_hdl) == EOK
    assert af.shutdown(dll) == EOK


def mreq(kind, alen, addr):
    return struct.pack("iHH8s", 7, kind, alen, addr)


# -- options -------------------------------------------------------------------------------
@pytest.mark.parametrize("opts,msg", [
    ("", "option ifname: required: the Linux interface to drive (ifname=eth1)"),
    ("ifname=a/b", "option ifname=a/b: an interface name is 1-15 characters, not '.' or "
                   "'..', without '/', ':' or spaces"),
    ("ifname=.", "option ifname=.: an interface name is 1-15 characters, not '.' or "
                 "'..', without '/', ':' or spaces"),
    ("ifname=..", "option ifname=..: an interface name is 1-15 characters, not '.' or "
                  "'..', without '/', ':' or spaces"),
    ("ifname=a234567890123456", "option ifname=a234567890123456: an interface name is "
                                "1-15 characters, not '.' or '..', without '/', ':' or spaces"),
    ("ifname=a:b", "option ifname=a:b: an interface name is 1-15 characters, not '.' or "
                   "'..', without '/', ':' or spaces"),
    ("ifname=x,mac=zz", "option mac=zz: expected six hex bytes like 02:00:00:00:00:01"),
    ("ifname=x,mac=03:00:00:00:00:01", "option mac=03:00:00:00:00:01: a unicast address "
                                       "(first byte even, not all zero), like "
                                       "02:00:00:00:00:01"),
    ("ifname=x,mac=0:0:0:0:0:0", "option mac=0:0:0:0:0:0: a unicast address (first byte "
                                 "even, not all zero), like 02:00:00:00:00:01"),
    ("ifname=x,mtu=67", "option mtu=67: must be 68..2034"),
    ("ifname=x,mtu=2035", "option mtu=2035: must be 68..2034"),
    ("ifname=x,npkts=1", "option npkts=1: must be 2..65536"),
    ("ifname=x,npkts=65537", "option npkts=65537: must be 2..65536"),
    ("ifname=x,burst=0", "option burst=0: must be 1..4096"),
    ("ifname=x,burst=4097", "option burst=4097: must be 1..4096"),
    ("ifname=x,batch=2", "option batch=2: must be 0..1"),
    ("ifname=x,batch=-1", "option batch=-1: must be 0..1"),
], ids=["noname", "slash", "dot", "dotdot", "long", "colon", "badmac", "mcast", "zero", "mtu67",
        "mtu2035", "npkts1", "npkts65537", "burst0", "burst4097", "batch2", "batchm1"])
def test_each_bad_option_is_named_with_its_rule(kernel, opts, msg):
    """Each rule's own message, and no socket is opened for it."""
    with pytest.raises(ValueError) as e:
        af.init(object(), Ion(), opts)
    assert str(e.value) == msg and kernel.sockets == []


@pytest.mark.parametrize("opts", [
    "ifname=veth0,mtu=68", "ifname=veth0,npkts=2,burst=1,batch=0",
    "ifname=veth0,burst=4096,batch=1",
], ids=["mtu68", "lows", "highs"])
def test_options_at_their_limits_are_taken(kernel, opts):
    """The ends of each range are allowed."""
    d, ion, dll = new(kernel, opts)
    assert d.ifname == "veth0" and d.opts == dict(af.OPTIONS, **dict(
        (k, int(v) if v.isdigit() else v) for k, v in (o.split("=") for o in opts.split(","))))
    stop(d, dll)


def test_a_name_of_15_characters_with_an_x_is_an_interface_name(kernel):
    kernel.ifname = "eXt456789012345"
    d, ion, dll = new(kernel, "ifname=eXt456789012345")
    assert d.ifname == "eXt456789012345"
    stop(d, dll)


@pytest.mark.parametrize("mac,want", [
    ("02:AB:cd:10:0F:e1", "02abcd100fe1"), ("2:0:0:0:0:a", "02000000000a"),
], ids=["mixedcase", "short"])
def test_the_mac_option_is_hex_in_either_case(kernel, mac, want):
    d, ion, dll = new(kernel, f"ifname=veth0,mac={mac}")
    assert d.mac == bytes.fromhex(want)
    stop(d, dll)


def test_without_a_mac_ours_is_random_local_unicast(kernel):
    d, ion, dll = new(kernel, "ifname=veth0")
    assert len(d.mac) == 6 and d.mac[0] == 0x02
    stop(d, dll)


def test_mtu_defaults_to_the_interfaces_up_to_what_fits_a_buffer(kernel):
    """mtu=0 takes the interface's (at most 2034); a given one must fit it."""
    kernel.mtu = af.MAX_MTU
    d, ion, dll = new(kernel, "ifname=veth0")
    assert d.mtu == 2034
    stop(d, dll)
    d, ion, dll = new(kernel, "ifname=veth0,mtu=2034")
    assert d.mtu == 2034
    stop(d, dll)
    kernel.mtu = 2035
    with pytest.raises(ValueError) as e:
        af.init(object(), Ion(), "ifname=veth0")
    assert str(e.value) == ("option mtu: veth0 has MTU 2035, more than devn-afpacket takes "
                            "(2034): give mtu=68..2034")
    kernel.mtu = 1500
    with pytest.raises(ValueError) as e:
        af.init(object(), Ion(), "ifname=veth0,mtu=1501")
    assert str(e.value) == "option mtu=1501: more than veth0's MTU 1500"
    assert all(s.closed for s in kernel.sockets)


# -- the socket, in the order that matters ---------------------------------------------------
def test_the_socket_is_configured_then_bound_then_our_mac_added(kernel):
    """protocol 0; IGNORE_OUTGOING, VNET_HDR, the V2 ring, bind, our MAC on
    the unicast filter, non-blocking; the ring mapped whole, shared."""
    d, ion, dll = new(kernel)
    (s,) = kernel.sockets
    assert s.args == (socket.AF_PACKET, socket.SOCK_RAW, 0)
    sp = af.SOL_PACKET
    assert s.calls == [
        ("setsockopt", sp, af.PACKET_IGNORE_OUTGOING, 1),
        ("setsockopt", sp, af.PACKET_VNET_HDR, 1),
        ("setsockopt", sp, af.PACKET_VERSION, af.TPACKET_V2),
        ("setsockopt", sp, af.PACKET_RX_RING, struct.pack("IIII", 1 << 16, 8, 2048, 256)),
        ("bind", ("veth0", af.ETH_P_ALL)),
        ("setsockopt", sp, af.PACKET_ADD_MEMBERSHIP,
         mreq(af.PACKET_MR_UNICAST, 6, bytes.fromhex("020000000001"))),
        ("setblocking", False)]
    assert kernel.maps == [(s.efd, 8 << 16, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)]
    assert (d.ring, d.ring_frame, d.ring_frames) == (kernel.ring, 2048, 256)
    assert (d.fd, d.mtu, d.ifmac, d.where) == (s.efd, 1500, IFMAC, "")
    want = bytearray(b"veth0".ljust(40, b"\0"))
    assert [(fd, req, r) for fd, req, r in kernel.ioctls] == [
        (s.efd, af.SIOCGIFINDEX, want), (s.efd, af.SIOCGIFHWADDR, want),
        (s.efd, af.SIOCGIFMTU, want)]
    stop(d, dll)


def test_a_device_without_a_unicast_filter_goes_promiscuous(kernel):
    kernel.no_unicast = True
    d, ion, dll = new(kernel)
    (s,) = kernel.sockets
    assert s.calls[-3:] == [
        ("setsockopt", af.SOL_PACKET, af.PACKET_ADD_MEMBERSHIP,
         mreq(af.PACKET_MR_UNICAST, 6, bytes.fromhex("020000000001"))),
        ("setsockopt", af.SOL_PACKET, af.PACKET_ADD_MEMBERSHIP,
         mreq(af.PACKET_MR_PROMISC, 0, b"")),
        ("setblocking", False)]
    stop(d, dll)


def test_the_interfaces_own_mac_needs_no_membership(kernel):
    d, ion, dll = new(kernel, "ifname=veth0,mac=02:aa:bb:cc:dd:ee")
    assert [c for c in kernel.sockets[0].calls if c[2:3] == (af.PACKET_ADD_MEMBERSHIP,)] == []
    stop(d, dll)


@pytest.mark.parametrize("mtu,npkts,geometry", [
    (1906, 2, (2048, 1, 32)), (1906, 32, (2048, 1, 32)), (1906, 33, (2048, 2, 64)),
    (1907, 16, (4096, 1, 16)), (1907, 17, (4096, 2, 32)), (2034, 300, (4096, 19, 304)),
], ids=["min", "oneblock", "twoblocks", "bigslot", "bigslot2", "many"])
def test_ring_geometry_whole_blocks_of_slots_that_hold_a_frame(kernel, mtu, npkts, geometry):
    """A slot is 2048 bytes while 128 + 14 + MTU fits, else 4096; as many
    slots as npkts, rounded up to whole 64 KiB blocks."""
    fsz, nblocks, frames = geometry
    kernel.mtu = 2034
    d, ion, dll = new(kernel, f"ifname=veth0,mtu={mtu},npkts={npkts}")
    (s,) = kernel.sockets
    assert ("setsockopt", af.SOL_PACKET, af.PACKET_RX_RING,
            struct.pack("IIII", 1 << 16, nblocks, fsz, frames)) in s.calls
    assert kernel.maps == [(s.efd, nblocks << 16, mmap.MAP_SHARED,
                            mmap.PROT_READ | mmap.PROT_WRITE)]
    assert (d.ring_frame, d.ring_frames, len(d.free)) == (fsz, frames, npkts)
    stop(d, dll)


def test_the_npkts_are_the_drivers_own_buffers(kernel):
    """Each free npkt: one fragment over its own buffer, its "physical
    address" the buffer's id."""
    d, ion, dll = new(kernel, "ifname=veth0,npkts=3")
    assert len(d.free) == 3
    for n in d.free:
        (v,) = n.buffers[0].net_iov
        assert v.base.obj is n.org_data and len(n.org_data) == 2048
        assert v.phys == id(n.org_data) and v.len == 0
    stop(d, dll)


def test_the_stop_eventfd_starts_quiet_nonblocking_and_close_on_exec(kernel):
    d, ion, dll = new(kernel)
    assert not os.get_blocking(d.stopfd) and not os.get_inheritable(d.stopfd)
    assert select.select([d.stopfd], [], [], 0)[0] == []
    stop(d, dll)


# -- the interface cannot be driven ---------------------------------------------------------
def test_no_such_interface_is_afpacket_error_and_the_socket_is_closed(kernel):
    kernel.ifname = "other"
    with pytest.raises(af.AfpacketError) as e:
        af.init(object(), Ion(), "ifname=veth0")
    assert str(e.value) == "no interface veth0 (see 'ip link')" and e.value.errno == errno.ENODEV
    assert kernel.sockets[0].closed and kernel.maps == []


def test_other_ioctl_errors_are_raised_as_they_are(kernel):
    kernel.ioctl_errno = errno.EPERM
    with pytest.raises(OSError) as e:
        af.init(object(), Ion(), "ifname=veth0")
    assert type(e.value) is PermissionError and e.value.errno == errno.EPERM
    assert kernel.sockets[0].closed


@pytest.mark.parametrize("family", [772, 0xFFFE], ids=["loopback", "none"])
def test_a_link_that_is_not_ethernet_is_refused(kernel, family):
    """A loopback (772) or a TUN (ARPHRD_NONE, 0xFFFE) is not Ethernet."""
    kernel.family = family
    with pytest.raises(af.AfpacketError) as e:
        af.init(object(), Ion(), "ifname=veth0")
    assert str(e.value) == f"veth0 is not an Ethernet interface (link type {family})"
    assert e.value.errno == errno.EINVAL and kernel.sockets[0].closed


def test_a_failure_after_the_ring_is_mapped_unmaps_it(kernel):
    kernel.mtu = 1000
    with pytest.raises(ValueError):
        af.init(object(), Ion(), "ifname=veth0,mtu=1001")
    assert kernel.maps == [] and kernel.sockets[0].closed
    d, ion, dll = new(kernel)
    ring = d.ring
    view = memoryview(ring)                 # an exported view: close() cannot unmap yet
    assert d.shutdown2(5) == EOK
    assert d.ring is None and kernel.sockets[0].closed and not ring.closed
    view.release()
    d._close()                              # a second close finds nothing to do
    assert d.ring is None


def test_a_registration_that_fails_releases_everything(kernel):
    ion = Ion()
    ion.reg = lambda dll, r: (_ for _ in ()).throw(RuntimeError("io-net is full"))
    dll = object()
    with pytest.raises(RuntimeError, match="io-net is full"):
        af.init(dll, ion, "ifname=veth0")
    assert kernel.sockets[0].closed and kernel.ring.closed and id(dll) not in af._instances


# -- registration and the receive thread ---------------------------------------------------
def test_registration_hands_io_net_our_functions_and_starts_the_thread(kernel):
    d, ion, dll = new(kernel)
    ((hdl, reg),) = ion.regs
    assert hdl is dll and (d.reg_hdl, d.cell, d.endpoint) == (5, 6, 7)
    assert (reg.name, reg.rx_down, reg.tx_done, reg.shutdown1, reg.shutdown2, reg.dl_advert,
            reg.devctl, reg.flush) == (
        "devn-afpacket", d.rx_down, d.tx_done, d.shutdown1, d.shutdown2, d.dl_advert,
        d.devctl, d.flush)
    assert d.thread.name == "devn-afpacket rx veth0" and d.thread.daemon
    assert d.thread.is_alive() and d.dl_advert(5) == EOK and d.flush(5) == EOK
    assert d.devctl(5, DCMD_IO_NET_GET_STATS, None)[1].extra["rx_thread_alive"] is True
    stop(d, dll)
    assert not d.thread.is_alive()
    assert d.devctl(5, DCMD_IO_NET_GET_STATS, None)[1].extra["rx_thread_alive"] is False


def put(ring, i, data, fsz=2048, mac=76):
    base = i * fsz
    struct.pack_into("IIHH", ring, base + 4, len(data), len(data), mac, mac + 14)
    ring[base + mac:base + mac + len(data)] = data
    struct.pack_into("I", ring, base, af.TP_STATUS_USER)


def test_the_thread_sends_what_the_ring_holds_up_to_io_net(kernel):
    """Frames the kernel put in the ring before the thread ran go up in
    one tx_up_start with our handles; the slots are the kernel's again."""
    frames = [bytes.fromhex("020000000001") + bytes([i]) * 54 for i in range(3)]
    ion = Ion()
    real_reg = ion.reg

    def reg(dll, r):                        # the kernel fills the ring meanwhile
        for i, f in enumerate(frames):
            put(kernel.ring, i, f)
        return real_reg(dll, r)
    ion.reg = reg
    d, ion, dll = new(kernel, ion=ion)
    deadline = time.monotonic() + 5
    while len(ion.up) < 3 and time.monotonic() < deadline:
        time.sleep(0.01)
    stop(d, dll)
    assert ion.up == frames and ion.calls == [(5, 0, 0, 6, 7, 0, d)]
    assert d.stats.rxed_ok == 3 and len(d.free) == 256


def test_shutdown1_returns_once_the_thread_has_ended(kernel, monkeypatch):
    """The thread, slow to leave after its wake-up, is joined."""
    real = select.poll

    class SlowPoll:
        def __init__(self):
            self.p = real()

        def register(self, fd, ev):
            self.p.register(fd, ev)

        def poll(self, *a):
            out = self.p.poll(*a)
            time.sleep(0.3)
            return out
    monkeypatch.setattr(af, "select", types.SimpleNamespace(
        poll=SlowPoll, POLLIN=select.POLLIN, POLLERR=select.POLLERR))
    d, ion, dll = new(kernel)
    assert d.shutdown1(5) == EOK
    assert not d.thread.is_alive()
    stop(d, dll)


def test_shutdown1_before_registration_or_from_the_thread_itself(kernel):
    """Without a thread it only signals; called on the thread, no join."""
    ion = Ion()
    d = af.DevnAfpacket(object(), ion, ionet.parse_options("ifname=veth0", af.OPTIONS))
    assert d.shutdown1(0) == EOK and d.stopping is True
    assert select.select([d.stopfd], [], [], 0)[0] == [d.stopfd]
    d.thread = threading.current_thread()
    assert d.shutdown1(0) == EOK
    assert d.shutdown2(0) == EOK and kernel.sockets[0].closed


def test_init_keeps_the_driver_under_its_handle_and_shutdown_forgets_it(kernel):
    d, ion, dll = new(kernel)
    assert af._instances[id(dll)] is d
    stop(d, dll)
    assert id(dll) not in af._instances
    assert af.shutdown(dll) == EOK          # twice: nothing to forget


# -- devctl -------------------------------------------------------------------------------------
def test_stats_carry_the_drivers_own_counters_and_kernel_drops_summed(kernel):
    d, ion, dll = new(kernel, "ifname=veth0,npkts=4")
    s = kernel.sockets[0]
    d.csum_completed, d.gso_dropped, d.too_long, d.bad_vnet = 1, 2, 3, 4
    d.vlan_dropped, d.link_down_seen = 5, 6
    d.free.pop()
    s.stats = (10, 3_000_000_000)           # a u32 count past 2**31
    rc, st = d.devctl(5, DCMD_IO_NET_GET_STATS, None)
    s.stats = (1, 2)
    rc2, st2 = d.devctl(5, DCMD_IO_NET_GET_STATS, None)
    assert rc == rc2 == EOK and st is st2 is d.stats
    assert st.extra == {"npkts_total": 4, "npkts_free": 3, "rx_thread_alive": True,
                        "rx_kernel_drops": 3_000_000_002, "rx_csum_completed": 1,
                        "rx_gso_dropped": 2, "rx_too_long": 3, "rx_bad_vnet_hdr": 4,
                        "rx_vlan_dropped": 5, "rx_link_down": 6}
    assert [c for c in s.calls if c[0] == "getsockopt"] == [
        ("getsockopt", af.SOL_PACKET, af.PACKET_STATISTICS, 8)] * 2
    stop(d, dll)


def test_stats_before_registration_and_when_the_kernel_cannot_say(kernel):
    d = af.DevnAfpacket(object(), Ion(), ionet.parse_options("ifname=veth0", af.OPTIONS))
    kernel.gone = True
    rc, st = d.devctl(0, DCMD_IO_NET_GET_STATS, None)
    assert rc == EOK and st.extra["rx_thread_alive"] is False and st.extra["rx_kernel_drops"] == 0
    d.shutdown2(0)


@pytest.mark.parametrize("flags,gone,down", [
    (UP_RUNNING, False, False), (af.IFF_UP, False, True), (af.IFF_RUNNING, False, True),
    (UP_RUNNING | 0x1000, False, False), (UP_RUNNING, True, True),
], ids=["up", "norunning", "noup", "otherbits", "gone"])
def test_config_reports_the_link_down_unless_up_and_running(kernel, flags, gone, down):
    kernel.mtu = 9000
    d, ion, dll = new(kernel, f"ifname=veth0,mtu=1400,mac={OURS}")
    kernel.flags, kernel.gone = flags, gone
    assert d.devctl(5, DCMD_IO_NET_GET_CONFIG, None) == (EOK, NicConfig(
        device_name="veth0 (AF_PACKET)", driver_name="devn-afpacket",
        permanent_address=bytes.fromhex("020000000001"),
        current_address=bytes.fromhex("020000000001"), mtu=1400, media_rate=0,
        flags=NIC_FLAG_LINK_DOWN if down else 0))
    assert kernel.ioctls[-1][1:] == (af.SIOCGIFFLAGS, bytes(b"veth0".ljust(40, b"\0")))
    assert d.devctl(5, 0x1234, None) == (ENOTSUP, None)
    stop(d, dll)


def test_ifreq_is_the_name_then_the_data_zero_padded():
    assert af._ifreq("eth1") == bytearray(b"eth1" + bytes(36))
    assert af._ifreq("a", b"\x01\x02") == bytearray(b"a" + bytes(15) + b"\x01\x02" + bytes(22))


# -- a socket error on the thread's poll ------------------------------------------------------
@pytest.mark.parametrize("err,link,failed", [
    (errno.ENETDOWN, 2, 0), (errno.ENODEV, 2, 0), (errno.ENXIO, 2, 0), (errno.EIO, 0, 2),
    (0, 0, 0)], ids=["enetdown", "enodev", "enxio", "eio", "none"])
def test_pollerr_reads_and_counts_the_sockets_error(kernel, err, link, failed):
    """A link that went away is counted as link down, any other error as
    rx_failed; reading SO_ERROR clears it."""
    d, ion, dll = new(kernel)
    s = kernel.sockets[0]
    for _ in range(2):
        s.so_error = err
        d._sock_error()
    assert (d.link_down_seen, d.stats.rx_failed, s.so_error) == (link, failed, 0)
    assert s.calls[-1] == ("getsockopt", socket.SOL_SOCKET, socket.SO_ERROR, None)
    stop(d, dll)


# -- a namespace -----------------------------------------------------------------------------
class Setns:
    """pyroute2's setns(2) as a recorder: what each fd it is given names."""

    def __init__(self):
        self.moves = []

    def __call__(self, fd):
        self.moves.append(os.readlink(f"/proc/self/fd/{fd}"))


@pytest.fixture
def netns(monkeypatch, tmp_path):
    from pyroute2 import netns as pr_netns
    monkeypatch.setattr(pr_netns, "NETNS_RUN_DIR", str(tmp_path))
    setns = Setns()
    monkeypatch.setattr(pr_netns, "setns", setns)
    (tmp_path / "red").write_text("")
    return tmp_path, setns


def test_the_socket_is_made_in_the_namespace_and_the_thread_comes_back(kernel, netns):
    path, setns = netns
    fds = set(os.listdir("/proc/self/fd"))
    d, ion, dll = new(kernel, "ifname=veth0,netns=red")
    assert setns.moves == [str(path / "red"), os.readlink("/proc/thread-self/ns/net")]
    assert kernel.sockets[0].args == (socket.AF_PACKET, socket.SOCK_RAW, 0)
    assert d.where == " in netns red"
    assert d.devctl(5, DCMD_IO_NET_GET_CONFIG, None)[1].device_name == \
        "veth0 (AF_PACKET) in netns red"
    stop(d, dll)
    assert set(os.listdir("/proc/self/fd")) == fds          # both namespace fds closed


def test_an_interface_missing_in_the_namespace_says_where(kernel, netns):
    kernel.ifname = "other"
    with pytest.raises(af.AfpacketError) as e:
        af.init(object(), Ion(), "ifname=veth0,netns=red")
    assert str(e.value) == "no interface veth0 in netns red (see 'ip link')"


@pytest.mark.parametrize("ns", ["a/b", ".", "..", "blue"], ids=["slash", "dot", "dotdot", "no"])
def test_a_namespace_that_is_not_one_is_a_usage_error(kernel, netns, ns):
    path, setns = netns
    (path / "a").mkdir()
    (path / "a" / "b").write_text("")
    with pytest.raises(ValueError) as e:
        af.open_socket(ns)
    assert str(e.value) == f"option netns={ns}: no network namespace '{ns}' (see 'ip netns list')"
    assert setns.moves == [] and kernel.sockets == []


def test_a_failing_setns_leaves_nothing_open(kernel, netns, monkeypatch):
    from pyroute2 import netns as pr_netns
    fds = set(os.listdir("/proc/self/fd"))

    def refuse(fd):
        raise OSError(errno.EPERM, "Operation not permitted")
    monkeypatch.setattr(pr_netns, "setns", refuse)
    with pytest.raises(PermissionError):
        af.open_socket("red")
    assert set(os.listdir("/proc/self/fd")) == fds and kernel.sockets == []
