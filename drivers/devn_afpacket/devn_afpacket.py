"""devn-afpacket: a legacy io-net driver for an existing Linux interface.

Written only against io-net (iopkt.ionet), like devn-tap: it knows npkts,
the `ion` function table and its own device, nothing of mbufs, ifnets or
the stack. The device is a Linux interface that already exists (a veth
end, a real NIC), reached through an AF_PACKET socket bound to it, so the
native devnp-afpacket and this driver under the shim compare on the same
link. Like an io-net driver it runs its own receive thread, created when
it registers; the thread waits on the socket (its "interrupt"), copies
each frame into an npkt of the driver's own preallocated free list and
sends it up.

Options (QNX style, key=value,...): ifname (required), netns (the
namespace the interface is in: the socket is created there, by the
calling thread, which comes straight back), mac (ours, default random
02:..), mtu (default the interface's), npkts, burst, batch (as devn-tap).

The socket, in the order that matters:
  * created with protocol 0 (it receives nothing yet), then
    PACKET_IGNORE_OUTGOING (a packet socket otherwise sees its own sends
    and every other frame leaving the interface) and PACKET_VNET_HDR, and
    only then bound to the interface's index with ETH_P_ALL;
  * our MAC is not the interface's: PACKET_ADD_MEMBERSHIP with
    PACKET_MR_UNICAST adds it to the interface's unicast filter (a device
    without one goes promiscuous), so a real NIC passes frames to us; veth
    delivers everything to a packet socket anyway. It goes with the socket.

Offload. io-net drivers knew none, so this one delivers whole frames with
correct checksums. But a packet socket sees what the interface received:
a veth peer whose sender has TX checksum offload on (the default) passes
frames whose TCP/UDP checksum is still partial (CHECKSUM_PARTIAL: the
field holds only the pseudo-header sum). PACKET_VNET_HDR puts a
virtio-net header in front of each frame that says so (NEEDS_CSUM,
csum_start, csum_offset); the driver then completes the checksum itself
(`complete_csum`), as skb_checksum_help would, and counts it
(rx_csum_completed). A GSO super-frame (gso_type != 0) is dropped and
counted (rx_gso_dropped), said once in the log: it cannot be a frame of
this MTU. It does not happen when the link partner's TSO is off (the
tests turn off tx-tcp-segmentation on the hosts' veth ends and keep
checksum offload on); a sender with TSO on would see its TCP stall.
Transmit needs the header too: each frame goes out behind ten zero bytes
(no offload asked), one sendmsg of the npkt's fragments.

Link state: GET_CONFIG reports NIC_FLAG_LINK_DOWN while the interface is
not UP and RUNNING (SIOCGIFFLAGS on the socket), or is gone; the shim asks
once a second. When the interface goes down the kernel unhooks the socket
(ENETDOWN, counted as rx_link_down) and hooks it again when it comes up.

Receive: a TPACKET_V2 ring (PACKET_RX_RING, mmap), as many slots as the
driver has npkts; the thread copies each frame from its slot into an npkt
(one memcpy), hands the slot back and sends the burst up with one
tx_up_start. Measured against recv_into per frame (the virtio-net header
into the npkt's first bytes, the frame behind it, tx_up's `off` = 10) on
this 2-core VM, veth hosts with TSO off and checksum offload on, two
devn-afpacket under the shim: iperf3 TCP 4 s, stack pinned to one core,
alternated, 3 runs each: ring 0.45 / 0.41 / 0.37 Gbit/s, recv 0.43 / 0.42 /
0.30 Gbit/s -- a tie: the stack thread is the bottleneck (both receive
threads ~0.3 CPU-s/s); the ring dropped 0-350 frames in the kernel per
run, recv 4,000-7,000 (a 208 KB socket queue holds fewer frames than the
256-slot ring). UDP at 150 Mbit/s, 1400-byte datagrams, 40,000 frames:
the receive thread spent 11.7-12.7 us a frame with the ring, 14.2-15.2 us
with recv_into (about 17 % more: a syscall per frame). So the ring.
Against devn-tap (the TAP lab, `lab up --driver devn-tap`), unpinned,
iperf3 TCP 3 s, alternated, 2 runs each: two devn-afpacket 0.31 / 0.42
Gbit/s, two devn-tap 0.51 / 0.45 Gbit/s; ping RTT (30 x 50 ms) avg 0.48 /
0.56 ms against 0.46 / 0.59 ms. Part of the gap is the checksum this
driver completes for nearly every frame (about 3 us for 1,500 bytes).
"""

from __future__ import annotations

import errno
import fcntl
import logging
import mmap
import os
import re
import select
import socket
import struct
import threading
from collections import deque

from iopkt.ionet import ionet
from iopkt.ionet.ionet import (
    _NPKT_NOT_TXED,
    _NPKT_UP,
    DCMD_IO_NET_GET_CONFIG,
    DCMD_IO_NET_GET_STATS,
    ENOTSUP,
    EOK,
    NIC_FLAG_LINK_DOWN,
    TX_DOWN_AGAIN,
    TX_DOWN_FAILED,
    TX_DOWN_OK,
    IoNetRegistrant,
    NicConfig,
    NicStats,
    net_buf_t,
    net_iov_t,
    npkt_t,
)

NAME = "devn-afpacket"
BUFSIZE = 2048
VNET_HDR_LEN = 10                   # struct virtio_net_hdr
ETHER_HDR_LEN = 14
MAX_MTU = BUFSIZE - ETHER_HDR_LEN
OPTIONS = {"ifname": "", "netns": "", "mac": "", "mtu": 0, "npkts": 256, "burst": 32,
           "batch": 1}
OPTION_HELP = {"ifname": "the Linux interface to drive, e.g. eth1 (default: none; required)",
               "netns": "network namespace the interface is in",
               "mac": "our MAC (default: random 02:..)",
               "mtu": f"MTU, 68..{MAX_MTU}, at most the interface's (default: the "
                      "interface's)",
               "npkts": "receive npkts on the free list, 2..65536",
               "burst": "frames per wake-up of the receive thread, 1..4096",
               "batch": "1: tx_up_start per burst, 0: tx_up per frame"}
log = logging.getLogger("iopkt")     # io-net drivers wrote to slogf

# <linux/if_packet.h>, <linux/if_ether.h>, <linux/sockios.h>, <net/if.h>
SOL_PACKET = 263
PACKET_ADD_MEMBERSHIP = 1
PACKET_RX_RING = 5
PACKET_STATISTICS = 6
PACKET_VERSION = 10
PACKET_VNET_HDR = 15
PACKET_IGNORE_OUTGOING = 23
PACKET_MR_PROMISC = 1
PACKET_MR_UNICAST = 3
TPACKET_V2 = 1
TP_STATUS_KERNEL = 0
TP_STATUS_USER = 1
TP_STATUS_VLAN_VALID = 0x10         # the kernel took a VLAN tag off the frame
ETH_P_ALL = 0x0003
ARPHRD_ETHER = 1
SIOCGIFFLAGS = 0x8913
SIOCGIFMTU = 0x8921
SIOCGIFHWADDR = 0x8927
SIOCGIFINDEX = 0x8933
IFF_UP = 0x1
IFF_RUNNING = 0x40
# <linux/virtio_net.h>, host byte order (little-endian hosts)
VNET_HDR = struct.Struct("<BBHHHH")
VIRTIO_NET_HDR_F_NEEDS_CSUM = 1
ZERO_VNET_HDR = bytes(VNET_HDR_LEN)
BROADCAST = b"\xff" * 6
LINK_GONE = (errno.ENODEV, errno.ENXIO, errno.ENETDOWN)

RING_BLOCK = 1 << 16                # ring block: 16 pages
RING_SLACK = 128                    # tpacket2_hdr, sockaddr_ll, alignment, virtio-net header


class AfpacketError(OSError):
    """The interface cannot be driven (the CLI exits 1). str() is the
    one-line reason; .errno is the system's."""

    def __init__(self, msg: str, err: int | None = None):
        super().__init__(msg)
        self.errno = err


def complete_csum(buf, at: int, end: int, start: int, off: int) -> bool:
    """Complete a partial TCP/UDP checksum in the frame buf[at:end], as
    Linux's skb_checksum_help does: `start` (csum_start) and `off`
    (csum_offset) come from the virtio-net header, `start` counted from the
    frame's first byte. The field at start+off holds the pseudo-header sum
    the sender folded in; store the complement of the one's complement sum
    from `start` to the end of the frame there (0 is written as 0xFFFF).
    False if the numbers do not fit the frame (nothing is written)."""
    s = at + start
    f = s + off
    if start < ETHER_HDR_LEN + 20 or off < 0 or f + 2 > end:
        return False
    # The region as one big-endian integer is congruent to its 16-bit word
    # sum modulo 0xFFFF (2**16 == 1 modulo 0xFFFF); an odd tail byte pads.
    v = int.from_bytes(memoryview(buf)[s:end], "big")
    if (end - s) & 1:
        v <<= 8
    c = 0xFFFF - v % 0xFFFF
    buf[f] = c >> 8
    buf[f + 1] = c & 0xFF
    return True


def _ifreq(name: str, data: bytes = b"") -> bytearray:
    return bytearray(struct.pack("16s24s", name.encode(), data))


class DevnAfpacket:
    """One instance: one interface, one socket, one receive thread, one
    io-net registration."""

    def __init__(self, dll_hdl, ion, opts: dict):
        self.ion = ion
        self.dll_hdl = dll_hdl
        self.opts = opts
        mac = opts["mac"]
        if mac and not re.fullmatch(r"[0-9A-Fa-f]{1,2}(:[0-9A-Fa-f]{1,2}){5}", mac):
            raise ValueError(f"option mac={mac}: expected six hex bytes like "
                             "02:00:00:00:00:01")
        self.mac = bytes(int(x, 16) for x in mac.split(":")) if mac else \
            bytes([0x02]) + os.urandom(5)
        if self.mac[0] & 1 or not any(self.mac):
            raise ValueError(f"option mac={mac}: a unicast address (first byte even, "
                             "not all zero), like 02:00:00:00:00:01")
        name = opts["ifname"]
        if not name:
            raise ValueError("option ifname: required: the Linux interface to drive "
                             "(ifname=eth1)")
        if len(name) > 15 or name in (".", "..") or any(c in "/:" or c.isspace() for c in name):
            raise ValueError(f"option ifname={name}: an interface name is 1-15 characters, "
                             "not '.' or '..', without '/', ':' or spaces")
        if opts["mtu"] and not 68 <= opts["mtu"] <= MAX_MTU:
            raise ValueError(f"option mtu={opts['mtu']}: must be 68..{MAX_MTU}")
        for key, lo, hi in (("npkts", 2, 65536), ("burst", 1, 4096), ("batch", 0, 1)):
            if not lo <= opts[key] <= hi:
                raise ValueError(f"option {key}={opts[key]}: must be {lo}..{hi}")
        self.ifname = name
        self.where = f" in netns {opts['netns']}" if opts["netns"] else ""
        self.sock = open_socket(opts["netns"])
        self.ring = None
        try:
            self.mtu = self._setup()
        except BaseException:
            self._close()
            raise
        self.fd = self.sock.fileno()
        self._state(ion, opts)

    def _state(self, ion, opts: dict) -> None:
        """Counters, the stop event and the npkt free list."""
        self.stopfd = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
        self.stopping = False
        self.stats = NicStats()
        self.csum_completed = self.gso_dropped = self.too_long = self.bad_vnet = 0
        self.link_down_seen = self.vlan_dropped = 0
        self.kernel_drops = 0
        self._said: set[str] = set()
        # The free list: npkts with one buffer each, allocated once through
        # io-net. A deque, because the stack side returns them (tx_done)
        # from its thread while ours takes them.
        self.npkts_total = opts["npkts"]
        self.free: deque = deque()
        for _ in range(self.npkts_total):
            buf = ion.alloc(BUFSIZE)
            n = npkt_t()
            n.buffers = [net_buf_t([net_iov_t(memoryview(buf), id(buf), 0)])]
            n.org_data = buf
            self.free.append(n)
        self.reg_hdl = self.cell = self.endpoint = 0
        self.thread: threading.Thread | None = None

    # -- the socket ------------------------------------------------------------
    def _ioctl(self, req: int) -> bytearray:
        """An interface ioctl on our socket: it answers for the socket's
        namespace, wherever the calling thread is."""
        r = _ifreq(self.ifname)
        fcntl.ioctl(self.sock.fileno(), req, r)
        return r

    def _setup(self) -> int:
        """Configure the socket, bind it, return the MTU to use."""
        s, name = self.sock, self.ifname
        try:
            ifindex = struct.unpack_from("i", self._ioctl(SIOCGIFINDEX), 16)[0]
        except OSError as e:
            if e.errno == errno.ENODEV:
                raise AfpacketError(f"no interface {name}{self.where} (see 'ip link')",
                                    e.errno) from None
            raise
        hw = self._ioctl(SIOCGIFHWADDR)
        family = struct.unpack_from("H", hw, 16)[0]
        if family != ARPHRD_ETHER:
            raise AfpacketError(f"{name}{self.where} is not an Ethernet interface "
                                f"(link type {family})", errno.EINVAL)
        self.ifmac = bytes(hw[18:24])
        ifmtu = struct.unpack_from("i", self._ioctl(SIOCGIFMTU), 16)[0]
        mtu = self.opts["mtu"]
        if not mtu:
            if ifmtu > MAX_MTU:
                raise ValueError(f"option mtu: {name} has MTU {ifmtu}, more than "
                                 f"{NAME} takes ({MAX_MTU}): give mtu=68..{MAX_MTU}")
            mtu = ifmtu
        elif mtu > ifmtu:
            raise ValueError(f"option mtu={mtu}: more than {name}'s MTU {ifmtu}")
        s.setsockopt(SOL_PACKET, PACKET_IGNORE_OUTGOING, 1)
        s.setsockopt(SOL_PACKET, PACKET_VNET_HDR, 1)
        self._ring_setup(mtu)
        s.bind((name, ETH_P_ALL))           # frames arrive from here on
        if self.mac != self.ifmac:
            mreq = struct.pack("iHH8s", ifindex, PACKET_MR_UNICAST, 6, self.mac)
            try:
                s.setsockopt(SOL_PACKET, PACKET_ADD_MEMBERSHIP, mreq)
            except OSError:                 # no unicast filter to add to
                s.setsockopt(SOL_PACKET, PACKET_ADD_MEMBERSHIP,
                             struct.pack("iHH8s", ifindex, PACKET_MR_PROMISC, 0, b""))
        s.setblocking(False)
        return mtu

    def _ring_setup(self, mtu: int) -> None:
        """The receive ring (TPACKET_V2, after PACKET_VNET_HDR): as many
        slots as the driver has npkts, rounded up to whole 64 KiB blocks;
        a slot holds the kernel's header, the virtio-net header and one
        frame of our MTU."""
        s = self.sock
        s.setsockopt(SOL_PACKET, PACKET_VERSION, TPACKET_V2)
        fsz = 2048 if RING_SLACK + ETHER_HDR_LEN + mtu <= 2048 else 4096
        per_block = RING_BLOCK // fsz
        nblocks = max(1, -(-self.opts["npkts"] // per_block))
        self.ring_frame, self.ring_frames = fsz, nblocks * per_block
        s.setsockopt(SOL_PACKET, PACKET_RX_RING,
                     struct.pack("IIII", RING_BLOCK, nblocks, fsz, self.ring_frames))
        self.ring = mmap.mmap(s.fileno(), RING_BLOCK * nblocks, mmap.MAP_SHARED,
                              mmap.PROT_READ | mmap.PROT_WRITE)

    def link_is_down(self) -> bool:
        try:
            flags = struct.unpack_from("H", self._ioctl(SIOCGIFFLAGS), 16)[0]
        except OSError:
            return True                     # gone (ENODEV), or the socket is
        return (flags & (IFF_UP | IFF_RUNNING)) != (IFF_UP | IFF_RUNNING)

    def kernel_stats(self) -> None:
        """PACKET_STATISTICS resets what it reads: add it up."""
        try:
            _pk, drops = struct.unpack("II", self.sock.getsockopt(SOL_PACKET,
                                                                   PACKET_STATISTICS, 8))
        except OSError:
            return
        self.kernel_drops += drops

    # -- registration ------------------------------------------------------
    def register(self) -> None:
        reg = IoNetRegistrant(
            name=NAME, rx_down=self.rx_down, tx_done=self.tx_done,
            shutdown1=self.shutdown1, shutdown2=self.shutdown2,
            dl_advert=self.dl_advert, devctl=self.devctl, flush=self.flush)
        self.reg_hdl, self.cell, self.endpoint = self.ion.reg(self.dll_hdl, reg)
        # An io-net driver starts its receive thread once it is registered.
        self.thread = threading.Thread(
            target=self.rx_thread,
            daemon=True, name=f"{NAME} rx {self.ifname}")
        self.thread.start()

    # -- receive: our own thread -------------------------------------------------
    def rx_thread(self) -> None:
        """Wait for the ring, copy each frame the kernel put there into an
        npkt of the free list, give the slot back at once, send the burst
        up. The kernel fills slots in order; we follow with our own index."""
        poller = select.poll()
        poller.register(self.fd, select.POLLIN)
        poller.register(self.stopfd, select.POLLIN)
        free = self.free
        burst, batch = self.opts["burst"], self.opts["batch"]
        st = self.stats
        ring = memoryview(self.ring)
        u32 = ring.cast("I")
        u16 = ring.cast("H")
        nframes, fsz = self.ring_frames, self.ring_frame
        fw32, fw16 = fsz >> 2, fsz >> 1
        hl = VNET_HDR_LEN
        idx = 0
        try:
            while True:
                if not u32[idx * fw32] & TP_STATUS_USER:
                    for fd, ev in poller.poll():
                        if fd == self.fd and ev & select.POLLERR:
                            self._sock_error()
                if self.stopping:
                    return
                head = tail = None
                got = 0
                while got < burst:
                    w = idx * fw32
                    status = u32[w]
                    if not status & TP_STATUS_USER:
                        break
                    tplen, snap = u32[w + 1], u32[w + 2]
                    mac = idx * fsz + u16[idx * fw16 + 6]   # tp_mac
                    idx += 1
                    if idx == nframes:
                        idx = 0
                    vh = mac - hl
                    # The common frame: nothing partial, no GSO (DATA_VALID is fine).
                    odd = (ring[vh] & VIRTIO_NET_HDR_F_NEEDS_CSUM or ring[vh + 1]
                           or snap != tplen or snap > BUFSIZE or status & TP_STATUS_VLAN_VALID)
                    if odd:
                        odd = self._unusual(ring, vh, status, tplen, snap)
                        if odd is None:
                            u32[w] = TP_STATUS_KERNEL
                            continue
                    try:
                        npkt = free.popleft()
                    except IndexError:
                        u32[w] = TP_STATUS_KERNEL
                        st.rx_nobufs += 1
                        continue
                    npkt.buffers[0].net_iov[0].base[:snap] = ring[mac:mac + snap]
                    u32[w] = TP_STATUS_KERNEL           # the slot is the kernel's again
                    buf = npkt.org_data
                    if odd and not self._complete(buf, snap, odd):
                        free.append(npkt)
                        continue
                    self.fill_up(npkt, snap)
                    st.rxed_ok += 1
                    st.octets_rxed_ok += snap
                    if buf[0] & 1:
                        if buf[:6] == BROADCAST:
                            st.rxed_broadcast += 1
                        else:
                            st.rxed_multicast += 1
                    got += 1
                    if batch:
                        if tail is None:
                            head = npkt
                        else:
                            tail.next = npkt
                        tail = npkt
                    else:
                        self.up_one(npkt)
                if head is not None:
                    self.up_chain(head)
        finally:
            del u32, u16, ring                  # no view of the ring outlives us

    def _unusual(self, hbuf, h: int, status: int, tplen: int, snap: int):
        """A slot whose virtio-net header asks for something, or whose frame
        is cut short or had a VLAN tag taken off. Returns None (drop it:
        counted, said once), True (take it as it is) or (csum_start,
        csum_offset) of a partial checksum to complete once copied."""
        flags, gso, _hlen, _gsz, start, off = VNET_HDR.unpack_from(hbuf, h)
        if gso:
            self.gso_dropped += 1
            self._say("%s: %s%s delivers GSO super-frames (gso_type %d): io-net "
                      "drivers know no offload; dropped and counted. Turn TSO off on the "
                      "link partner (its tx-tcp-segmentation)", NAME, self.ifname,
                      self.where, gso)
            return None
        if snap != tplen or snap > BUFSIZE:
            self._too_long(tplen)
            return None
        if status & TP_STATUS_VLAN_VALID:
            self.vlan_dropped += 1
            self._say("%s: %s%s: a frame whose VLAN tag the kernel took off; "
                      "io-net drivers know no VLANs: dropped and counted (turn rx-vlan "
                      "offload off to see tagged frames as they are)", NAME, self.ifname,
                      self.where)
            return None
        if flags & VIRTIO_NET_HDR_F_NEEDS_CSUM:
            return (start, off)
        return True

    def _complete(self, buf, n: int, fix) -> bool:
        if fix is True:
            return True
        start, off = fix
        if not complete_csum(buf, 0, n, start, off):
            self.bad_vnet += 1
            self._say("%s: %s%s: a partial checksum outside its frame "
                      "(csum_start %d, csum_offset %d); dropped and counted",
                      NAME, self.ifname, self.where, start, off)
            return False
        self.csum_completed += 1
        return True

    def _sock_error(self) -> None:
        """POLLERR: the socket's pending error (ENETDOWN when the interface
        went down or away). Reading SO_ERROR clears it."""
        err = self.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        if err in LINK_GONE:
            self.link_down_seen += 1        # the kernel unhooked us; it hooks us again
        elif err:
            self.stats.rx_failed += 1

    def _too_long(self, n: int) -> None:
        self.too_long += 1
        self._say("%s: %s%s: a frame of %d bytes, more than MTU %d allows; "
                  "dropped and counted", NAME, self.ifname, self.where, n, self.mtu)

    def _say(self, fmt: str, *args) -> None:
        """Log one kind of drop (its format is the kind) the first time only."""
        if fmt not in self._said:
            self._said.add(fmt)
            log.warning(fmt + " (said once)", *args)

    def fill_up(self, npkt: npkt_t, n: int) -> None:
        """Describe a received packet of `n` bytes as an up packet."""
        npkt.buffers[0].net_iov[0].len = n
        npkt.framelen = n
        npkt.tot_iov = 1
        npkt.flags = _NPKT_UP
        npkt.ref_cnt = 1
        npkt.next = None

    def up_one(self, npkt: npkt_t) -> None:
        """Send one packet up; if nobody takes it, it stays ours."""
        ion = self.ion
        ion.reg_tx_done(self.reg_hdl, npkt, self)
        if ion.tx_up(self.reg_hdl, npkt, 0, 0, self.cell, self.endpoint, 0) <= 0:
            self._recycle(npkt)

    def up_chain(self, head: npkt_t) -> None:
        """Send a burst up with one tx_up_start; what is not taken stays ours."""
        try:
            left = self.ion.tx_up_start(self.reg_hdl, head, 0, 0, self.cell,
                                        self.endpoint, 0, self)
        except Exception as e:              # io-net's problem, not a reason to die
            log.warning("%s: tx_up_start failed: %s", NAME, e)
            left = None
        while left is not None:
            nxt = left.next
            self._recycle(left)
            left = nxt

    def _recycle(self, npkt: npkt_t) -> None:
        """Nobody took it: back on our free list."""
        self.stats.rx_not_taken += 1
        npkt.next = None
        self.free.append(npkt)

    # -- io-net calls us -------------------------------------------------------
    def tx_done(self, npkt: npkt_t, done_hdl) -> int:
        """An up packet came back from io-net: recycle it."""
        npkt.next = None
        npkt.flags = 0
        self.free.append(npkt)
        return EOK

    def rx_down(self, npkt: npkt_t) -> int:
        """Send a down packet: one sendmsg of an empty virtio-net header and
        the packet's fragments."""
        st = self.stats
        try:
            if npkt.tot_iov == 1:
                v = npkt.buffers[0].net_iov[0]
                base = v.base               # `len` says how much of it is data
                n = self.sock.sendmsg((ZERO_VNET_HDR, base if len(base) == v.len
                                       else base[:v.len]))
            else:
                base = None
                n = self.sock.sendmsg([ZERO_VNET_HDR] + [v.base[:v.len] for v in npkt.iovs()])
        except (BlockingIOError, InterruptedError):
            st.tx_again += 1
            return TX_DOWN_AGAIN            # still ours: io-net retries later
        except OSError as e:
            if e.errno == errno.ENOBUFS:    # the interface's queue is full
                st.tx_again += 1
                return TX_DOWN_AGAIN
            st.tx_failed += 1
            npkt.flags |= _NPKT_NOT_TXED
            self.ion.tx_done(self.reg_hdl, npkt)
            return TX_DOWN_FAILED
        st.txed_ok += 1
        st.octets_txed_ok += n - VNET_HDR_LEN
        if base is None:
            base = npkt.buffers[0].net_iov[0].base
        if base[0] & 1:
            if base[:6] == BROADCAST:
                st.txed_broadcast += 1
            else:
                st.txed_multicast += 1
        self.ion.tx_done(self.reg_hdl, npkt)
        return TX_DOWN_OK

    def devctl(self, reg_hdl: int, dcmd: int, data):
        if dcmd == DCMD_IO_NET_GET_STATS:
            self.kernel_stats()
            self.stats.extra = {
                "npkts_total": self.npkts_total, "npkts_free": len(self.free),
                "rx_thread_alive": bool(self.thread and self.thread.is_alive()),
                "rx_kernel_drops": self.kernel_drops,
                "rx_csum_completed": self.csum_completed,
                "rx_gso_dropped": self.gso_dropped,
                "rx_too_long": self.too_long,
                "rx_bad_vnet_hdr": self.bad_vnet,
                "rx_vlan_dropped": self.vlan_dropped,
                "rx_link_down": self.link_down_seen}
            return EOK, self.stats
        if dcmd == DCMD_IO_NET_GET_CONFIG:
            return EOK, NicConfig(device_name=f"{self.ifname} (AF_PACKET){self.where}",
                                  driver_name=NAME, permanent_address=self.mac,
                                  current_address=self.mac, mtu=self.mtu, media_rate=0,
                                  flags=NIC_FLAG_LINK_DOWN if self.link_is_down() else 0)
        return ENOTSUP, None

    def dl_advert(self, reg_hdl: int) -> int:
        return EOK

    def flush(self, reg_hdl: int) -> int:
        return EOK

    def shutdown1(self, reg_hdl: int) -> int:
        """Stop receiving: end the thread (it owns no packet afterwards)."""
        self.stopping = True
        os.eventfd_write(self.stopfd, 1)
        if self.thread is not None and self.thread is not threading.current_thread():
            self.thread.join(5.0)
        return EOK

    def shutdown2(self, reg_hdl: int) -> int:
        """Release the socket (and with it our MAC on the interface's filter)."""
        self._close()
        os.close(self.stopfd)
        return EOK

    def _close(self) -> None:
        if self.ring is not None:
            try:
                self.ring.close()
            except (BufferError, ValueError):
                pass
            self.ring = None
        try:
            self.sock.close()
        except OSError:
            pass


def open_socket(ns: str) -> socket.socket:
    """A packet socket with protocol 0 (it receives nothing until bound),
    created in network namespace `ns` if given: a socket belongs to the
    namespace it was made in. setns moves only the calling thread, and it
    comes straight back. ValueError if there is no `ns`."""
    if not ns:
        return socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)
    from pyroute2 import netns as pr_netns  # setns(2); only when a namespace is asked for
    path = os.path.join(pr_netns.NETNS_RUN_DIR, ns)
    if "/" in ns or ns in (".", "..") or not os.path.exists(path):
        raise ValueError(f"option netns={ns}: no network namespace '{ns}' (see 'ip netns list')")
    back = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        try:
            pr_netns.setns(fd)          # an fd: never creates a namespace
        finally:
            os.close(fd)
        try:
            return socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)
        finally:
            pr_netns.setns(back)
    finally:
        os.close(back)


_instances: dict = {}


def init(dll_hdl, ion, options: str) -> int:
    """The driver's entry point, as io-net calls it. Raises ValueError for
    bad options (the message names the option), OSError when the interface
    cannot be driven."""
    opts = ionet.parse_options(options, OPTIONS)
    drv = DevnAfpacket(dll_hdl, ion, opts)
    try:
        drv.register()
    except Exception:
        drv.shutdown2(0)
        raise
    _instances[id(dll_hdl)] = drv
    return EOK


def shutdown(dll_hdl) -> int:
    _instances.pop(id(dll_hdl), None)
    return EOK
