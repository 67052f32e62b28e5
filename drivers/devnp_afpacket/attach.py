"""devnp-afpacket's attach: its options checked, the socket opened in
the interface's namespace, the rings set up, the softc built and the
interface attached; and the driver's description (DRIVER)."""

from __future__ import annotations

import errno
import mmap
import os
import socket
import struct

from iopkt.dev.autoconf import DeviceError, Driver, DriverError, Option, check_ifname
from iopkt.kern.mbuf import MJUMBYTES
from iopkt.net.ether import ETHER_HDR_LEN, ether_ifattach, mac_aton
from iopkt.net.ifnet import (
    LINK_STATE_DOWN,
    LINK_STATE_UP,
    IFCAP_TSOv4,
    IFCAP_TSOv6,
    Ifnet,
    mount_capenable,
)

from .devnp_afpacket import CSUM_CAPS, MAC_RE, AfpSoftc, log
from .lxif import (
    LX_IFF_RUNNING,
    LX_IFF_UP,
    SIOCGIFHWADDR,
    SIOCGIFINDEX,
    SIOCSIFFLAGS,
    lx_ioctl,
    lx_link,
)
from .packet_mmap import (
    ETH_P_ALL,
    MAX_FRAME,
    MAX_RING_BYTES,
    PACKET_ADD_MEMBERSHIP,
    PACKET_IGNORE_OUTGOING,
    PACKET_LOSS,
    PACKET_MR_PROMISC,
    PACKET_MREQ,
    PACKET_RX_RING,
    PACKET_TX_RING,
    PACKET_VERSION,
    PACKET_VNET_HDR,
    SOL_PACKET,
    TPACKET_ALIGNMENT,
    TPACKET_REQ,
    TPACKET_REQ3,
    TPACKET_V2,
    TPACKET_V3,
    VLAN_SLACK,
    Geometry,
    Ring,
    ring_layout,
    tpacket_align,
    v3_layout,
)

# -- attach ------------------------------------------------------------------
RING_VERSIONS = {"v2": TPACKET_V2, "v3": TPACKET_V3}
DEFAULT_RXFRAMES = 2048         # wire-sized frames: 4 MB of ring (512 dropped
                                # frames under iperf3 TCP: the peer's bursts)
DEFAULT_TXFRAMES = 256
DEFAULT_RXFRAMES_OFFLOAD = 128  # 64 KB frames: about 9 MB of ring
DEFAULT_TXFRAMES_OFFLOAD = 64


def _fail(msg: str):
    raise DriverError(f"devnp-afpacket: {msg}")


def check_options(opts: dict, room: int) -> None:
    """Every value within its range, before anything is opened (a usage
    error names the option)."""
    if not opts["ifname"]:
        _fail("option ifname=... is required: the Linux interface to drive (see 'ip link')")
    check_ifname("devnp-afpacket", "ifname", opts["ifname"])
    ns = opts["netns"]
    if ns and ("/" in ns or ns in (".", "..")):
        _fail(f"option netns={ns}: a namespace name, as 'ip netns list' shows it")
    if opts["ring"] not in RING_VERSIONS:
        _fail(f"option ring={opts['ring']}: v2 or v3")
    for key, lo, hi in (("burst", 1, 4096), ("txqlen", 1, 65536),
                        ("rxframes", 0, 65536), ("txframes", 0, 65536),
                        ("blocktmo", 0, 1000)):
        if not lo <= opts[key] <= hi:
            _fail(f"option {key}={opts[key]}: must be {lo}..{hi}"
                  + (" (0: the default)" if lo == 0 and key != "blocktmo" else
                     " (ms; 0: the kernel's own)" if key == "blocktmo" else ""))
    fs = opts["framesize"]
    top = tpacket_align(Geometry(TPACKET_V3).rx_mac + room + MJUMBYTES) - TPACKET_ALIGNMENT
    if fs and (fs % TPACKET_ALIGNMENT or not 256 <= fs <= top):
        _fail(f"option framesize={fs}: a multiple of {TPACKET_ALIGNMENT} in 256..{top} "
              "(0: the default)")
    if opts["mac"]:
        try:
            mac = mac_aton(opts["mac"])
        except ValueError:
            mac = None
        if mac is None or not MAC_RE.fullmatch(opts["mac"]) or mac[0] & 1 or not any(mac):
            _fail(f"option mac={opts['mac']}: expected xx:xx:xx:xx:xx:xx, six hex bytes "
                  "like 02:00:00:00:00:01 (unicast: first byte even; not all zero)")


def open_socket(ifname: str, ns: str):
    """A packet socket of protocol 0 (it receives nothing until bound),
    made in namespace `ns` if given: only this thread visits it; the
    socket stays there, we come back."""
    if not ns:
        return socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)
    from iopkt.dev import netns  # pyroute2: only when a namespace is asked for
    if not os.path.exists(netns.ns_path(ns)):
        _fail(f"option netns={ns}: no network namespace '{ns}' (see 'ip netns list')")
    with netns.inside(ns):
        return socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)


def _device_error(ifname: str, ns: str, what: str, e: OSError) -> DeviceError:
    where = f" in netns {ns}" if ns else ""
    return DeviceError(f"devnp-afpacket: {ifname}{where}: {what}: "
                       f"{os.strerror(e.errno) if e.errno else e}", e.errno)


def setup_rings(sock, version: int, framesize: int, rx: tuple, tx: tuple,
                blocktmo: int) -> None:
    """PACKET_VERSION, the virtio header, PACKET_LOSS and the two rings
    (the order the kernel insists on: every option before the rings)."""
    so = sock.setsockopt
    so(SOL_PACKET, PACKET_VERSION, version)
    so(SOL_PACKET, PACKET_VNET_HDR, 1)
    so(SOL_PACKET, PACKET_LOSS, 1)
    if version == TPACKET_V3:
        so(SOL_PACKET, PACKET_RX_RING, TPACKET_REQ3.pack(rx[0], rx[1], framesize, rx[2],
                                                         blocktmo, 0, 0))
        so(SOL_PACKET, PACKET_TX_RING, TPACKET_REQ3.pack(tx[0], tx[1], framesize, tx[2],
                                                         0, 0, 0))
    else:
        so(SOL_PACKET, PACKET_RX_RING, TPACKET_REQ.pack(rx[0], rx[1], framesize, rx[2]))
        so(SOL_PACKET, PACKET_TX_RING, TPACKET_REQ.pack(tx[0], tx[1], framesize, tx[2]))


def build(stack, sock, ring: Ring, ifindex: int, lxname: str, lxmtu: int, lxflags: int,
          mac: bytes, opts: dict, description: str = "", promisc: bool = False) -> Ifnet:
    """The afpN interface over a socket whose rings are set up and mapped
    (`ring`): its softc, hooks and capabilities, attached to `stack` and
    up, the link as the Linux interface's flags say. (The unit tests call
    it with a fake socket and a ring in a bytearray.)"""
    pool = stack.pool
    room = pool.mclbytes - pool.headroom
    offload = opts["offload"]
    ifp = Ifnet("afp", stack.next_unit("afp"), "devnp-afpacket")
    ifp.description = description
    ifp.if_devkey = ifp.description
    ifp.if_snd.maxlen = opts["txqlen"]
    ether_ifattach(ifp, mac)
    sc = AfpSoftc(stack, ifp, sock, ring, ifindex, lxname, opts["burst"], offload,
                  opts["blocktmo"])
    sc.promisc = promisc
    ifp.mtu = max(68, min(lxmtu, sc.rx_max - ETHER_HDR_LEN - VLAN_SLACK, 9000))
    sc.lx_mtu = lxmtu
    if offload or sc.rx_max > room:
        pool.enable_jumbo()
    ifp.set_softc(sc)
    caps = 0
    if offload:
        caps = CSUM_CAPS
        if not pool.njumbo:
            log.warning("%s: no jumbo clusters (--nmbjumbo 0): TSO4 and TSO6 are not "
                        "offered", ifp.name)
        elif sc.tx_max < MAX_FRAME:
            log.warning("%s: a %d-byte ring frame cannot carry a 64 KB super-frame: "
                        "TSO4 and TSO6 are not offered", ifp.name, ring.framesize)
        else:
            caps |= IFCAP_TSOv4 | IFCAP_TSOv6
    ifp.capabilities = caps
    ifp.set_capenable(mount_capenable(caps, opts))
    ifp.link_state = LINK_STATE_UP if lxflags & LX_IFF_RUNNING else LINK_STATE_DOWN
    stack.if_attach(ifp)
    stack.interrupt_attach(sc.fd, sc.intr)
    stack.if_up(ifp)
    # The first look soon: a veth just brought up gets its carrier in ms.
    sc._poll_co = stack.timeout(0.1, sc._poll)
    return ifp


def attach(stack, opts: dict) -> Ifnet:
    """Open a packet socket on an existing Linux interface, map its rings
    and attach an afpN interface to `stack`."""
    pool = stack.pool
    room = pool.mclbytes - pool.headroom
    check_options(opts, room)
    ifname, ns, offload = opts["ifname"], opts["netns"], opts["offload"]
    version = RING_VERSIONS[opts["ring"]]
    geom = Geometry(version)
    where = f" in netns {ns}" if ns else ""
    sock = open_socket(ifname, ns)
    ring = None
    try:
        fd = sock.fileno()
        try:
            ifindex = struct.unpack_from("i", lx_ioctl(fd, SIOCGIFINDEX, ifname), 16)[0]
            hw = lx_ioctl(fd, SIOCGIFHWADDR, ifname)
            _, flags, lxmtu = lx_link(fd, ifindex)
        except OSError as e:
            if e.errno == errno.ENODEV:
                raise DeviceError(f"devnp-afpacket: no interface {ifname}{where} "
                                  "(see 'ip link')", e.errno) from None
            raise _device_error(ifname, ns, "cannot read it", e) from None
        hwtype = struct.unpack_from("H", hw, 16)[0]
        if hwtype != 1:                             # ARPHRD_ETHER
            raise DeviceError(f"devnp-afpacket: {ifname}{where} is not an Ethernet "
                              f"interface (ARPHRD {hwtype})")
        lxmac = bytes(hw[18:24])
        # The ring frame: given, or the smallest that carries a whole
        # frame of this MTU (2048 at least), or with offload a 64 KB
        # super-frame.
        fs = opts["framesize"] or max(
            2048, geom.framesize_for(lxmtu + ETHER_HDR_LEN + VLAN_SLACK),
            geom.framesize_for(MAX_FRAME) if offload else 0)
        if geom.rx_room(fs) < lxmtu + ETHER_HDR_LEN:
            _fail(f"option framesize={fs}: a ring frame carries at most "
                  f"{geom.rx_room(fs)} bytes of frame; {ifname}'s MTU is {lxmtu}: give "
                  f"framesize={geom.framesize_for(lxmtu + ETHER_HDR_LEN + VLAN_SLACK)} "
                  "or more")
        if room < lxmtu + ETHER_HDR_LEN and not pool.nmbjumbo:
            _fail(f"{ifname}'s MTU {lxmtu}: frames longer than a cluster ({room} bytes) "
                  "need jumbo clusters: give --nmbjumbo > 0")
        nrx = opts["rxframes"] or (DEFAULT_RXFRAMES_OFFLOAD if offload else DEFAULT_RXFRAMES)
        ntx = opts["txframes"] or (DEFAULT_TXFRAMES_OFFLOAD if offload else DEFAULT_TXFRAMES)
        rx, tx = ring_layout(fs, nrx), ring_layout(fs, ntx)
        if version == TPACKET_V3:
            rx = v3_layout(fs, rx)
        for name, lay in (("rxframes", rx), ("txframes", tx)):
            if lay[0] * lay[1] > MAX_RING_BYTES:
                _fail(f"option {name}={nrx if name == 'rxframes' else ntx}: "
                      f"{lay[2]} frames of {fs} bytes need {lay[0] * lay[1] >> 20} MB of "
                      f"pinned ring memory; at most {MAX_RING_BYTES >> 20} MB a ring")
        try:
            setup_rings(sock, version, fs, rx, tx, opts["blocktmo"])
        except OSError as e:
            raise _device_error(ifname, ns, f"cannot set up the {opts['ring']} rings "
                                f"({(rx[0] * rx[1] + tx[0] * tx[1]) >> 10} KB)", e) from None
        try:
            sock.setsockopt(SOL_PACKET, PACKET_IGNORE_OUTGOING, 1)
        except OSError:                             # before Linux 4.20: we see our own frames
            log.warning("devnp-afpacket: %s: no PACKET_IGNORE_OUTGOING in this kernel", ifname)
        # Writes are limited by the ring, not by the socket's send buffer
        # (each frame in flight is charged to it).
        total = rx[0] * rx[1] + tx[0] * tx[1]
        try:
            # SO_SNDBUFFORCE; a frame copied into a linear skb is charged
            # up to twice its size (a 64 KB one takes a 128 KB allocation).
            sock.setsockopt(socket.SOL_SOCKET, 32, 2 * tx[0] * tx[1] + (1 << 20))
        except OSError:
            pass
        try:
            mem = mmap.mmap(fd, total, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
        except OSError as e:
            raise _device_error(ifname, ns, "cannot map the rings", e) from None
        ring = Ring(mem, geom, fs, rx, tx)
        mac = mac_aton(opts["mac"]) if opts["mac"] else lxmac
        if not flags & LX_IFF_UP:
            # A NIC driver's init brings its link up; afterwards the
            # interface's state is whoever set it last.
            try:
                lx_ioctl(fd, SIOCSIFFLAGS, ifname, struct.pack("H", flags | LX_IFF_UP))
                log.info("devnp-afpacket: %s%s was down: brought it up", ifname, where)
                _, flags, lxmtu = lx_link(fd, ifindex)
            except OSError as e:
                raise _device_error(ifname, ns, "cannot bring it up", e) from None
        promisc = mac != lxmac
        if promisc:
            sock.setsockopt(SOL_PACKET, PACKET_ADD_MEMBERSHIP,
                            PACKET_MREQ.pack(ifindex, PACKET_MR_PROMISC, 0, b""))
        try:
            # Bound last: from here on the ring fills with this interface's frames only.
            sock.bind((ifname, ETH_P_ALL))
        except OSError as e:
            raise _device_error(ifname, ns, "cannot bind to it", e) from None
        sock.setblocking(False)

        ifp = build(stack, sock, ring, ifindex, ifname, lxmtu, flags, mac, opts,
                    f"Linux {ifname}{where}", promisc)
    except BaseException:
        if ring is not None:
            ring.close()
        sock.close()
        raise
    return ifp


DRIVER = Driver(
    name="devnp-afpacket", kind="native",
    description="native AF_PACKET driver on an existing Linux interface: PACKET_MMAP RX "
                "and TX rings read and written in the stack thread; TSO and checksum "
                "offload through the virtio-net header",
    options={
        "ifname": Option(str, "", "the Linux interface to drive (it must exist; required)"),
        "netns": Option(str, "", "network namespace the interface is in; the stack "
                        "stays in its own"),
        "mac": Option(str, "", "our MAC address (default: the interface's own; another "
                      "one puts the interface in promiscuous mode)"),
        "ring": Option(str, "v2", "ring version: v2 (a frame is ours as soon as it is in "
                       "the ring) or v3 (blocks, handed over full or after blocktmo)"),
        "rxframes": Option(int, 0, "RX ring frames, 0..65536 (default: 2048, or 128 with "
                           "offload; rounded up to whole blocks)"),
        "txframes": Option(int, 0, "TX ring frames, 0..65536 (default: 256, or 64 with "
                           "offload; rounded up to whole blocks)"),
        "framesize": Option(int, 0, "ring frame size in bytes, a multiple of 16 (default: "
                            "2048 or what the MTU needs; 65632 with offload, a 64 KB "
                            "super-frame)"),
        "blocktmo": Option(int, 1, "ring=v3 only: ms before a block that is not full is "
                           "handed over, 0..1000 (0: the kernel's own, several ms)"),
        "burst": Option(int, 64, "frames taken from the RX ring per interrupt at most, "
                        "1..4096"),
        "txqlen": Option(int, 256, "send queue (if_snd) length, 1..65536"),
        "offload": Option(bool, True, "1: TSO and checksum offload through the virtio-net "
                          "header; 0: no capabilities (partial checksums completed and "
                          "super-frames segmented here)"),
        "tso4": Option(bool, True, "TCP segmentation offload on at mount (ifconfig tso4)"),
        "tso6": Option(bool, True, "TCP segmentation offload for IPv6 on at mount "
                       "(ifconfig tso6)"),
        "tcp4csum": Option(bool, True, "TCP checksum offload on at mount (ifconfig tcp4csum)"),
        "udp4csum": Option(bool, True, "UDP checksum offload on at mount (ifconfig udp4csum)"),
        "tcp6csum": Option(bool, True, "TCP over IPv6 checksum offload on at mount "
                           "(ifconfig tcp6csum)"),
        "udp6csum": Option(bool, True, "UDP over IPv6 checksum offload on at mount "
                           "(ifconfig udp6csum)"),
    },
    attach=attach,
)
