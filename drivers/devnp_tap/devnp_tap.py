"""devnp-tap: a native io-pkt style driver whose "NIC" is a Linux TAP.

The TAP file descriptor is the wire side of the NIC; the kernel's netdev is
the link partner. The fd is registered with the stack as this driver's
interrupt, so receive runs in the stack thread: read each frame straight
into a pooled mbuf cluster (one read(2) into one buffer; readv when the
virtio-net header and a jumbo spill join it, below) and pass it to
if_input, in bursts until the TAP is empty or `burst` frames were taken
(so one busy interface cannot starve the others).

Offload (offload=1, the default, as on a modern NIC): the TAP is opened
with IFF_VNET_HDR, so a 10-byte virtio-net header (vnet.py) travels with
every frame, and TUNSETOFFLOAD lets the kernel hand us TCP super-frames of
up to 64 KB and partial checksums. The driver advertises what the kernel
accepted as NetBSD capabilities (TSO4, TSO6, TCP4CSUM, UDP4CSUM, TCP6CSUM
and UDP6CSUM, Rx and Tx; the header has no IPv4 header checksum offload) and `ifconfig` turns them
on and off while traffic flows. A frame is read as [header | cluster |
spill]: the header into a small buffer of ours, up to a cluster's worth
into the cluster, the rest of a super-frame into a jumbo cluster held ready
for it. On transmit the header is written into the frame's leading space.
A GSO write the kernel refuses (EINVAL: some kernels did) is segmented in
software and counted, never lost.

Transmit is if_start: dequeue from if_snd and write. When the TAP would
block, the frame is put back, IFF_OACTIVE set and the driver waits for
EPOLLOUT instead of losing the frame.

A TAP whose netdev disappears (namespace deleted, link removed) answers
EBADFD: that is link loss, said once, and the interface goes down.
"""

from __future__ import annotations

import errno
import io
import logging
import os
import re

import pytun

from iopkt.dev.autoconf import Driver, DriverError, Option, check_ifname
from iopkt.dev.tap import tap_open_error
from iopkt.kern.loop import EPOLLIN, EPOLLOUT
from iopkt.kern.mbuf import M_CSUM_TSO, M_CSUM_TCPv4, M_CSUM_TCPv6, M_CSUM_TSOv6
from iopkt.kern.pacer import Pacer
from iopkt.net import vnet
from iopkt.net.ether import ETHER_HDR_LEN, ether_ifattach, mac_aton
from iopkt.net.ifnet import (
    IFCAP_CSUM_L4,
    IFCAP_CSUM_L4_RX,
    IFF_OACTIVE,
    IFF_RUNNING,
    LINK_STATE_UP,
    SIOCSIFCAP,
    IFCAP_TSOv4,
    IFCAP_TSOv6,
    Ifnet,
    if_transmit,
    mount_capenable,
    rx_csum_sw,
)
from iopkt.netinet.in_offload import in_undefer_cksum, tcp_segment, tso_header_len, tso_wire

LINK_LOST_ERRNOS = (errno.EBADFD, errno.EIO, errno.ENODEV, errno.ENXIO)
VNET_HDR_LEN = vnet.VNET_HDR_LEN
ZERO_HDR = vnet.ZERO_HDR
TUN_WANT = vnet.TUN_F_CSUM | vnet.TUN_F_TSO4 | vnet.TUN_F_TSO6
CSUM_CAPS = IFCAP_CSUM_L4           # TCP and UDP checksums, both families, both ways

log = logging.getLogger("iopkt")
MAC_RE = re.compile(r"[0-9A-Fa-f]{1,2}(:[0-9A-Fa-f]{1,2}){5}")


def random_mac() -> bytes:
    """A locally administered unicast address (02:...)."""
    return bytes([0x02]) + os.urandom(5)


def tun_mask(capenable: int) -> int:
    """The TUNSETOFFLOAD mask for enabled capabilities: what the kernel may
    hand us. One TUN_F_CSUM serves TCP and UDP of both families alike; a
    kind whose Rx offload is off is completed on receive (rx_csum_sw)."""
    mask = 0
    if capenable & IFCAP_CSUM_L4_RX:
        mask |= vnet.TUN_F_CSUM
    if capenable & IFCAP_TSOv4:
        mask |= vnet.TUN_F_TSO4
    if capenable & IFCAP_TSOv6:
        mask |= vnet.TUN_F_TSO6
    return mask


class TapSoftc:
    """The driver's private state for one interface (BSD's softc)."""

    def __init__(self, stack, ifp: Ifnet, tap, burst: int, speed: int = 0,
                 vnet_hdr: bool = False):
        self.stack = stack
        # Link-speed emulation: pace transmissions to `speed` Mbit/s.
        self.pacer = Pacer(speed) if speed else None
        self._pace_co = None
        self.ifp = ifp
        self.tap = tap
        self.fd = tap.fileno()
        self.burst = burst
        self.pool = pool = stack.pool
        self.rx_intrs = 0
        self.tx_blocked = 0
        self.vnet = vnet_hdr
        self.hlen = VNET_HDR_LEN if vnet_hdr else 0
        self.tun_offload = 0            # the mask the kernel accepted
        self.tun_refused = 0            # bits it refused when we probed
        self.rx_super = self.rx_partial = 0     # super-frames / partial checksums read
        self.tx_super = 0                       # super-frames written as they are
        self.gso_refused = 0                    # GSO writes the kernel refused (EINVAL)
        self.rx_sw = 0          # partial checksums to complete here (that Rx cap is off)
        self._scratch = bytearray(65536 + VNET_HDR_LEN)     # frames we must discard
        self._scratch_iov = [memoryview(self._scratch)]
        self.room = pool.mclbytes - pool.headroom
        # A frame longer than a cluster (a super-frame, or an MTU beyond
        # the cluster size) spills into a jumbo cluster held ready.
        self.rx_spill = vnet_hdr or self.room < ifp.mtu + ETHER_HDR_LEN
        self._hdr = bytearray(VNET_HDR_LEN)
        self._txhdr = memoryview(bytearray(VNET_HDR_LEN))
        self._spill = None
        iov = [memoryview(self._hdr)] if vnet_hdr else []
        self._ci = len(iov)             # where the cluster goes in the read iovec
        iov.append(None)
        if self.rx_spill:
            pool.enable_jumbo()
            self._spill = pool.get_jumbo()
            iov.append(self._spill.view if self._spill else self._scratch_iov[0])
        self._iov = iov
        # Without a header or a spill a frame is one read into one buffer.
        self._readinto = io.FileIO(self.fd, "r", closefd=False).readinto

    # -- receive: the "interrupt" ----------------------------------------
    def intr(self, events: int) -> None:
        if events & EPOLLOUT:
            self._tx_ready()
        if not events & EPOLLIN and events & ~EPOLLOUT:
            # EPOLLERR / EPOLLHUP without data: the device is gone.
            self._link_lost(errno.EBADFD)
            return
        if not events & EPOLLIN:
            return
        self.rx_intrs += 1
        if not self.rx_spill:
            return self._intr_plain()
        if self._spill is None:
            self._rearm_spill()             # jumbos may have come back since
        ifp = self.ifp
        pool = self.pool
        get = pool.get
        readv = os.readv
        fd = self.fd
        iov = self._iov
        ci = self._ci
        hl = self.hlen
        room = self.room
        hdr = self._hdr
        pkts = []
        for _ in range(self.burst):
            m = get()
            if m is None:
                if not self._discard_one():
                    break
                continue
            iov[ci] = m.rxbuf
            try:
                n = readv(fd, iov) - hl
            except BlockingIOError:
                pool.free(m)
                break
            except OSError as e:
                pool.free(m)
                self._link_lost(e.errno)
                break
            m.pkt_len = n
            m.rcvif = ifp
            if 0 <= n <= room:
                m.len = n
            elif not self._spilled(m, n):
                continue
            if hl and (hdr[0] or hdr[1]) and not self._rx_offload(m):
                continue
            pkts.append(m)
        if pkts:
            ifp.if_input(ifp, pkts)

    def _intr_plain(self) -> None:
        """Receive without a virtio-net header, every frame fitting a
        cluster: one readinto per frame (a plain read(2), cheaper from
        Python than readv with a list), None when the TAP is empty."""
        ifp = self.ifp
        pool = self.pool
        get = pool.get
        readinto = self._readinto
        room = self.room
        pkts = []
        for _ in range(self.burst):
            m = get()
            if m is None:
                if not self._discard_one():
                    break
                continue
            try:
                n = readinto(m.rxbuf)
            except OSError as e:
                pool.free(m)
                self._link_lost(e.errno)
                break
            if n is None:                   # EAGAIN
                pool.free(m)
                break
            m.len = m.pkt_len = n
            m.rcvif = ifp
            if n > room:                    # tun reports a frame it cut short whole
                m.len = room
                ifp.ipackets += 1
                ifp.input_discard(m, "too_long")
                continue
            pkts.append(m)
        if pkts:
            ifp.if_input(ifp, pkts)

    def _spilled(self, m, n: int) -> bool:
        """The frame did not fit the cluster: the rest went to the spill.
        Chain the jumbo behind the cluster and hold a new one ready. False
        (frame dropped and counted) when it is a runt or when the rest went
        to scratch (no jumbo was free)."""
        ifp = self.ifp
        spill = self._spill
        if n < 0 or spill is None:
            ifp.ipackets += 1
            ifp.input_discard(m, "runt" if n < 0 else "nobufs")
            return False
        m.len = self.room
        spill.len = n - self.room
        m.next = spill
        self._rearm_spill()
        return True

    def _rearm_spill(self) -> None:
        """Hold a jumbo ready for the next long frame, or point the spill
        at scratch (that frame is then dropped) when none is free."""
        spill = self._spill = self.pool.get_jumbo()
        self._iov[-1] = spill.view if spill is not None else self._scratch_iov[0]

    def _rx_offload(self, m) -> bool:
        """The frame came with a virtio-net header that is not all zero:
        take its offload facts into the packet header. False when the
        header is invalid (frame dropped and counted)."""
        if not vnet.decode(m, self._hdr, 0):
            self.ifp.ipackets += 1
            self.ifp.input_discard(m, "bad_offload")
            return False
        cf = m.csum_flags
        if cf & M_CSUM_TSO:
            self.rx_super += 1
        elif cf:
            self.rx_partial += 1
            if cf & self.rx_sw:             # Rx checksum offload is off for it
                in_undefer_cksum(m, ETHER_HDR_LEN)
                self.ifp.sw_csum += 1
        return True

    def _discard_one(self) -> bool:
        """The pool is empty: read and drop one frame so the TAP does not
        stay readable forever. False when there was nothing to read."""
        try:
            os.readv(self.fd, self._scratch_iov)
        except BlockingIOError:
            return False
        except OSError as e:
            self._link_lost(e.errno)
            return False
        self.ifp.ipackets += 1
        self.ifp.input_discard(None, "nobufs")
        return True

    # -- transmit --------------------------------------------------------
    def transmit(self, ifp: Ifnet, pkts: list) -> None:
        """if_transmit: with nothing queued and the TAP not busy, write the
        burst now (the common case: no queueing at all). When the TAP would
        block, the rest goes on if_snd in order and start() waits for
        EPOLLOUT. Consumes the mbufs in `pkts`."""
        if ifp.if_snd.len or ifp.flags & IFF_OACTIVE or self.pacer is not None:
            if_transmit(ifp, pkts)
            return
        fd = self.fd
        write = os.write
        free = self.pool.free
        xmit = self._xmit
        plain = not self.vnet
        nbytes = 0
        ok = 0
        for i, m in enumerate(pkts):
            try:
                off = m.off
                if m.next is not None:
                    n = xmit(m)
                    if not n:
                        continue            # dropped, counted as an error
                    nbytes += n
                elif plain:
                    nbytes += write(fd, m.view[off:off + m.len])
                    free(m)
                elif off >= VNET_HDR_LEN and not m.csum_flags:
                    # A whole frame: ten zero bytes in its leading space, one write.
                    at = off - VNET_HDR_LEN
                    m.buf[at:off] = ZERO_HDR
                    nbytes += write(fd, m.view[at:off + m.len]) - VNET_HDR_LEN
                    free(m)
                else:
                    n = xmit(m)
                    if not n:
                        continue            # dropped, counted as an error
                    nbytes += n
                ok += 1
            except BlockingIOError:
                if_transmit(ifp, pkts[i:])      # queued; start() blocks and waits
                break
            except OSError as e:
                self._tx_error(ifp, m, e)
                if not ifp.flags & IFF_RUNNING:
                    for x in pkts[i + 1:]:
                        ifp.output_discard(x, "link_lost")
                    break
        ifp.opackets += ok
        ifp.obytes += nbytes

    def _xmit(self, m) -> int:
        """Write one frame (any chain, any offload) and free it. Returns
        the frame's length, 0 if it was dropped (and counted). Raises
        OSError with the frame still ours (the caller queues it again or
        discards it)."""
        fd = self.fd
        if not self.vnet:
            n = os.writev(fd, _iov(m)) if m.next is not None else \
                os.write(fd, m.view[m.off:m.off + m.len])
            self.pool.freem(m)
            return n
        try:
            if m.next is None and m.off >= VNET_HDR_LEN:
                # The header goes into the leading space: one buffer, one write.
                at = m.off - VNET_HDR_LEN
                vnet.encode(m, m.buf, at)
                n = os.write(fd, m.view[at:m.off + m.len])
            else:
                vnet.encode(m, self._txhdr, 0)
                n = os.writev(fd, [self._txhdr, *_iov(m)])
        except OSError as e:
            if e.errno != errno.EINVAL or not m.csum_flags & M_CSUM_TSO:
                raise
            return self._gso_refused(m)
        if m.csum_flags & M_CSUM_TSO:
            self.tx_super += 1
        self.pool.freem(m)
        return n - VNET_HDR_LEN

    def _gso_refused(self, m) -> int:
        """The kernel said EINVAL to a GSO write (tailscale#13041 met such
        kernels): cut the super-frame here and write the segments, and turn
        tso4 (tso6 for an IPv6 one) off so that from now on the IP layer
        segments before queueing (said once; `ifconfig tso4` tries again).
        Consumes `m`. Returns the bytes written."""
        ifp, pool = self.ifp, self.pool
        self.gso_refused += 1
        cap, word = ((IFCAP_TSOv6, "tso6") if m.csum_flags & M_CSUM_TSOv6
                     else (IFCAP_TSOv4, "tso4"))
        if ifp.capenable & cap:
            log.warning("%s: the kernel refused a GSO write (EINVAL); %s turned off, "
                        "super-frames are segmented in software", ifp.name, word)
            try:
                ifp.set_capenable(ifp.capenable & ~cap)
            except (OSError, ValueError):
                pass
        eh = bytes(m.view[m.off:m.off + ETHER_HDR_LEN])
        pool.adj(m, ETHER_HDR_LEN)
        hl = tso_header_len(m)
        if not hl:
            ifp.output_discard(m, "txerror")
            return 0
        tcp = M_CSUM_TCPv6 if m.csum_flags & M_CSUM_TSOv6 else M_CSUM_TCPv4
        segs = tcp_segment(pool, m, hl, bool(ifp.if_csum_flags_tx & tcp))
        if segs is None:
            ifp.output_discard(None, "nobufs")
            return 0
        ifp.sw_tso += 1
        ifp.sw_tso_segs += len(segs)
        n = 0
        for s in segs:
            s = pool.prepend(s, ETHER_HDR_LEN)
            if s is None:
                ifp.output_discard(None, "nobufs")
                continue
            s.buf[s.off:s.off + ETHER_HDR_LEN] = eh
            try:
                n += self._xmit(s)
            except OSError:
                ifp.output_discard(s, "txerror")
        return n

    def _tx_error(self, ifp: Ifnet, m, e: OSError) -> None:
        if e.errno in LINK_LOST_ERRNOS:
            ifp.output_discard(m, "link_lost")
            self._link_lost(e.errno)
        else:
            ifp.output_discard(m, "txerror")

    def start(self, ifp: Ifnet) -> None:
        """if_start: write everything queued on if_snd, in order."""
        ifq = ifp.if_snd
        xmit = self._xmit
        pacer = self.pacer
        while True:
            m = ifq.dequeue()
            if m is None:
                return
            if pacer is not None:
                frames, wire = tso_wire(m)
                delay = pacer.wait(wire, frames)
                if delay:                   # the emulated wire is busy
                    ifq.prepend(m)
                    ifp.flags |= IFF_OACTIVE
                    self._pace_co = self.stack.timeout(delay, self._pace_ready)
                    return
            try:
                n = xmit(m)
            except BlockingIOError:
                ifq.prepend(m)
                ifp.flags |= IFF_OACTIVE
                self.tx_blocked += 1
                self.stack.interrupt_modify(self.fd, EPOLLIN | EPOLLOUT)
                return
            except OSError as e:
                self._tx_error(ifp, m, e)
                if not ifp.flags & IFF_RUNNING:
                    return
                continue
            if n:                           # 0: dropped, counted as an error
                ifp.opackets += 1
                ifp.obytes += n

    def _pace_ready(self) -> None:
        self._pace_co = None
        self.ifp.flags &= ~IFF_OACTIVE
        self.start(self.ifp)

    def _tx_ready(self) -> None:
        self.ifp.flags &= ~IFF_OACTIVE
        self.stack.interrupt_modify(self.fd, EPOLLIN)
        self.start(self.ifp)

    # -- offload -----------------------------------------------------------
    def probe(self, ifp: Ifnet) -> None:
        """At attach: ask the kernel for every offload we can use and
        advertise what it accepted. A refusal is said once, here."""
        if not self.vnet:
            vnet.set_offload(self.fd, 0)    # a persistent TAP may remember a mask
            return
        vnet.set_vnet_hdr_sz(self.fd, VNET_HDR_LEN)
        got, refused = vnet.negotiate_offload(self.fd, TUN_WANT)
        self.tun_offload, self.tun_refused = got, refused
        if refused:
            log.warning("%s: the kernel refused TAP offload %s; using %s (said once)",
                        ifp.name, vnet.tun_f_str(refused), vnet.tun_f_str(got))
        caps = 0
        if got & vnet.TUN_F_CSUM:
            caps |= CSUM_CAPS
            if got & vnet.TUN_F_TSO4 and self.pool.njumbo:
                caps |= IFCAP_TSOv4
            if got & vnet.TUN_F_TSO6 and self.pool.njumbo:
                caps |= IFCAP_TSOv6
            if got & (vnet.TUN_F_TSO4 | vnet.TUN_F_TSO6) and not self.pool.njumbo:
                log.warning("%s: no jumbo clusters (--nmbjumbo 0): TSO is not offered",
                            ifp.name)
        ifp.capabilities = caps

    def ioctl(self, ifp: Ifnet, cmd, data):
        """if_ioctl: SIOCSIFCAP sets the TAP's offload mask for the new
        capabilities (the kernel may refuse: OSError, nothing changed)."""
        if cmd != SIOCSIFCAP:
            raise OSError(f"{ifp.name}: ioctl {cmd} not supported")
        if self.vnet and self.fd >= 0:
            mask = tun_mask(data)
            if mask != self.tun_offload:
                vnet.set_offload(self.fd, mask)
                self.tun_offload = mask
        # Partial checksums of a kind whose Rx offload is off (all kinds
        # share TUN_F_CSUM) are completed here on receive.
        self.rx_sw = rx_csum_sw(data)

    # -- control -----------------------------------------------------------
    def init(self, ifp: Ifnet) -> None:
        if self.fd >= 0:
            ifp.flags |= IFF_RUNNING
            ifp.link_state = LINK_STATE_UP

    def stop(self, ifp: Ifnet) -> None:
        ifp.flags &= ~(IFF_RUNNING | IFF_OACTIVE)
        if self._pace_co is not None:
            self._pace_co.cancel()
            self._pace_co = None
        ifp.if_purge("down")

    def release(self) -> None:
        """Give back the jumbo held ready (detach, or an attach that failed)."""
        if self._spill is not None:
            self.pool.free(self._spill)
            self._spill = None

    def detach(self, ifp: Ifnet) -> None:
        self.stack.interrupt_detach(self.fd)
        self.release()
        if self.fd >= 0:
            try:
                vnet.set_offload(self.fd, 0)    # the mask outlives us on a persistent TAP
            except OSError:
                pass
        try:
            self.tap.close()
        except OSError:
            pass
        self.fd = -1

    def _link_lost(self, err: int | None) -> None:
        self.stack.interrupt_detach(self.fd)
        self.stack.link_lost(self.ifp, f"TAP {self.tap.name}: "
                             f"{os.strerror(err) if err else 'error'}")

    def extra_info(self, ifp: Ifnet) -> dict:
        return {"driver": "devnp-tap (native, stack thread)",
                "tap": self.tap.name, "rx_burst": self.burst,
                "paced_waits": self.pacer.waits if self.pacer else 0,
                "rx_interrupts": self.rx_intrs, "tx_blocked": self.tx_blocked,
                "rx_spill": self.rx_spill, "vnet_hdr": self.vnet,
                "tun_offload": vnet.tun_f_str(self.tun_offload),
                "tun_offload_refused": vnet.tun_f_str(self.tun_refused),
                "rx_superframes": self.rx_super, "rx_partial_csum": self.rx_partial,
                "tx_superframes": self.tx_super, "tx_gso_refused": self.gso_refused}


def _iov(m) -> list:
    out = []
    while m is not None:
        if m.len:
            out.append(m.view[m.off:m.off + m.len])
        m = m.next
    return out


def open_tap(name: str, flags: int, ns: str, mtu: int):
    """Open TAP `name` (a new one, or an existing persistent one), in
    namespace `ns` if given: the kernel looks the name up, or creates the
    TAP, in the namespace the tun fd is opened in. Only this thread visits
    `ns`; the stack stays where it is. DriverError if there is no `ns`."""
    if not ns:
        tap = _tun_open(name, flags)
        _set_mtu(tap, mtu)
        return tap
    from iopkt.dev import netns  # pyroute2: only when a namespace is asked for
    if "/" in ns or ns in (".", "..") or not os.path.exists(netns.ns_path(ns)):
        raise DriverError(f"devnp-tap: option netns={ns}: no network namespace '{ns}' "
                          "(see 'ip netns list')")
    with netns.inside(ns):
        tap = _tun_open(name, flags)
        _set_mtu(tap, mtu)              # through a socket: in the TAP's namespace too
    return tap


def _tun_open(name: str, flags: int):
    """pytun.TunTapDevice; its error names the TAP and what is in the way
    (DeviceError: a run-time failure, not a usage error)."""
    try:
        return pytun.TunTapDevice(name=name, flags=flags)
    except OSError as e:
        raise tap_open_error("devnp-tap", name, e) from None


def _set_mtu(tap, mtu: int) -> None:
    try:
        tap.mtu = mtu
    except BaseException:
        tap.close()
        raise


def attach(stack, opts: dict) -> Ifnet:
    """Open the TAP and attach a tapN interface to `stack`."""
    mtu = opts["mtu"]
    if not 68 <= mtu <= 9000:
        raise DriverError(f"devnp-tap: option mtu={mtu}: must be 68..9000")
    if opts["speed"] not in (0, 10, 100, 1000, 10000):
        raise DriverError(f"devnp-tap: option speed={opts['speed']}: one of 10, 100, "
                          "1000, 10000 (Mbit/s) or 0 for no limit")
    if opts["burst"] < 1:
        raise DriverError(f"devnp-tap: option burst={opts['burst']}: must be >= 1")
    for key, hi in (("burst", 4096), ("txqlen", 65536)):
        if not 1 <= opts[key] <= hi:
            raise DriverError(f"devnp-tap: option {key}={opts[key]}: must be 1..{hi}")
    mac = random_mac()
    if opts["mac"]:
        try:
            mac = mac_aton(opts["mac"])
        except ValueError:
            mac = None
        if mac is None or not MAC_RE.fullmatch(opts["mac"]) or mac[0] & 1 or not any(mac):
            raise DriverError(f"devnp-tap: option mac={opts['mac']}: expected "
                              "xx:xx:xx:xx:xx:xx, six hex bytes like 02:00:00:00:00:01 "
                              "(unicast: first byte even; not all zero)")
    if len(opts["name"]) > 15:
        raise DriverError(f"devnp-tap: option name={opts['name']}: at most 15 characters")
    check_ifname("devnp-tap", "name", opts["name"])
    offload = opts["offload"]
    room = stack.pool.mclbytes - stack.pool.headroom
    if room < mtu + ETHER_HDR_LEN and not stack.pool.nmbjumbo:
        raise DriverError(f"devnp-tap: option mtu={mtu}: frames longer than a cluster "
                          f"({room} bytes of data) need jumbo clusters: give --nmbjumbo > 0")
    sc = None
    tap = open_tap(opts["name"], pytun.IFF_TAP | pytun.IFF_NO_PI
                   | (pytun.IFF_VNET_HDR if offload else 0), opts["netns"], mtu)
    try:
        os.set_blocking(tap.fileno(), False)
        ifp = Ifnet("tap", stack.next_unit("tap"), "devnp-tap")
        ifp.description = f"TAP {tap.name}" + (f" in netns {opts['netns']}"
                                               if opts["netns"] else "")
        ifp.if_devkey = ifp.description         # the device, whichever driver drives it
        ifp.mtu = mtu
        ifp.if_snd.maxlen = opts["txqlen"]
        ether_ifattach(ifp, mac)
        sc = TapSoftc(stack, ifp, tap, opts["burst"], opts["speed"], vnet_hdr=offload)
        ifp.baudrate = opts["speed"] * 1_000_000
        ifp.set_softc(sc)
        sc.probe(ifp)
        ifp.set_capenable(mount_capenable(ifp.capabilities, opts))
        stack.if_attach(ifp)
        stack.interrupt_attach(sc.fd, sc.intr)
        stack.if_up(ifp)
    except Exception:
        if sc is not None:
            sc.release()
        tap.close()
        raise
    return ifp


DRIVER = Driver(
    name="devnp-tap", kind="native",
    description="native TAP driver: receives in the stack thread, no hand-off; "
                "TSO and checksum offload through the TAP's virtio-net header",
    options={
        "name": Option(str, "", "kernel TAP name (default: the kernel picks tapN)"),
        "netns": Option(str, "", "network namespace the TAP is in (or is made in); "
                        "the stack stays in its own"),
        "mac": Option(str, "", "our MAC address (default: random 02:xx:..)"),
        "mtu": Option(int, 1500, "MTU of both sides, 68..9000"),
        "burst": Option(int, 64, "frames read per interrupt at most, 1..4096"),
        "txqlen": Option(int, 256, "send queue (if_snd) length, 1..65536"),
        "speed": Option(int, 0, "media rate to emulate, Mbit/s (10, 100, 1000, 10000; 0: none)"),
        "offload": Option(bool, True, "1: virtio-net header, TSO and checksum offload "
                          "as the kernel allows; 0: plain frames, no capabilities"),
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
