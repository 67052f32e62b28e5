"""devnp-tap: a native io-pkt style driver whose "NIC" is a Linux TAP.

The TAP file descriptor is the wire side of the NIC; the kernel's netdev is
the link partner. The fd is registered with the stack as this driver's
interrupt, so receive runs in the stack thread: read each frame with
os.readv straight into a pooled mbuf cluster and pass it to if_input,
in bursts until the TAP is empty or `burst` frames were taken (so one busy
interface cannot starve the others).

Transmit is if_start: dequeue from if_snd and write. When the TAP would
block, the frame is put back, IFF_OACTIVE set and the driver waits for
EPOLLOUT instead of losing the frame.

A TAP whose netdev disappears (namespace deleted, link removed) answers
EBADFD: that is link loss, said once, and the interface goes down.
"""

from __future__ import annotations

import errno
import os

import pytun

from iopkt.drvload import Driver, DriverError, Option
from iopkt.ether import ETHER_HDR_LEN, ether_ifattach, mac_aton
from iopkt.ifnet import IFF_OACTIVE, IFF_RUNNING, LINK_STATE_UP, Ifnet, if_transmit
from iopkt.pacer import Pacer
from iopkt.stack import EPOLLIN, EPOLLOUT

LINK_LOST_ERRNOS = (errno.EBADFD, errno.EIO, errno.ENODEV, errno.ENXIO)


def random_mac() -> bytes:
    """A locally administered unicast address (02:...)."""
    return bytes([0x02]) + os.urandom(5)


class TapSoftc:
    """The driver's private state for one interface (BSD's softc)."""

    def __init__(self, stack, ifp: Ifnet, tap, burst: int, speed: int = 0):
        self.stack = stack
        # Link-speed emulation: pace transmissions to `speed` Mbit/s.
        self.pacer = Pacer(speed) if speed else None
        self._pace_co = None
        self.ifp = ifp
        self.tap = tap
        self.fd = tap.fileno()
        self.burst = burst
        self.pool = stack.pool
        self.rx_intrs = 0
        self.tx_blocked = 0
        self._scratch = bytearray(65536)       # for frames we must discard
        self._scratch_iov = [memoryview(self._scratch)]
        hdrroom = self.pool.mclbytes - self.pool.headroom
        # A frame that does not fit one cluster is read into a chain.
        self.rx_chain = hdrroom < ifp.mtu + ETHER_HDR_LEN

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
        if self.rx_chain:
            return self._intr_chain()
        ifp = self.ifp
        get = self.pool.get
        readv = os.readv
        fd = self.fd
        pkts = []
        for _ in range(self.burst):
            m = get()
            if m is None:
                if not self._discard_one():
                    break
                continue
            try:
                n = readv(fd, m.rxiov)
            except BlockingIOError:
                self.pool.free(m)
                break
            except OSError as e:
                self.pool.free(m)
                self._link_lost(e.errno)
                break
            m.len = m.pkt_len = n
            m.rcvif = ifp
            pkts.append(m)
        if pkts:
            ifp.if_input(ifp, pkts)

    def _intr_chain(self) -> None:
        """Receive for clusters smaller than a frame (mclbytes < MTU + 14):
        readv scatters each frame over a chain of clusters."""
        pool, ifp = self.pool, self.ifp
        need = ifp.mtu + ETHER_HDR_LEN
        pkts = []
        for _ in range(self.burst):
            chain, iov, room = [], [], 0
            while room < need:
                m = pool.get()
                if m is None:
                    break
                if chain:
                    m.off = 0
                    m.flags = 0             # not the first mbuf: no packet header
                    iov.append(m.view)
                else:
                    iov.append(m.rxiov[0])
                room += len(iov[-1])
                chain.append(m)
            if room < need:
                for m in chain:
                    pool.free(m)
                if not self._discard_one():
                    break
                continue
            try:
                n = os.readv(self.fd, iov)
            except OSError as e:
                for m in chain:
                    pool.free(m)
                if not isinstance(e, BlockingIOError):
                    self._link_lost(e.errno)
                break
            head, left = chain[0], n
            prev = None
            for m in chain:
                take = min(left, len(m.view) - m.off)
                if take == 0:
                    pool.free(m)
                    continue
                m.len = take
                left -= take
                if prev is not None:
                    prev.next = m
                prev = m
            head.pkt_len = n
            head.rcvif = ifp
            pkts.append(head)
        if pkts:
            ifp.if_input(ifp, pkts)

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
        nbytes = 0
        ok = 0
        for i, m in enumerate(pkts):
            try:
                if m.next is None:
                    nbytes += write(fd, m.view[m.off:m.off + m.len])
                    free(m)
                else:
                    nbytes += os.writev(fd, _iov(m))
                    self.pool.freem(m)
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

    def _tx_error(self, ifp: Ifnet, m, e: OSError) -> None:
        if e.errno in LINK_LOST_ERRNOS:
            ifp.output_discard(m, "link_lost")
            self._link_lost(e.errno)
        else:
            ifp.output_discard(m, "txerror")

    def start(self, ifp: Ifnet) -> None:
        """if_start: write everything queued on if_snd, in order."""
        ifq = ifp.if_snd
        fd = self.fd
        write = os.write
        freem = self.pool.freem
        pacer = self.pacer
        while True:
            m = ifq.dequeue()
            if m is None:
                return
            if pacer is not None:
                delay = pacer.wait(m.pkt_len)
                if delay:                   # the emulated wire is busy
                    ifq.prepend(m)
                    ifp.flags |= IFF_OACTIVE
                    self._pace_co = self.stack.timeout(delay, self._pace_ready)
                    return
            try:
                if m.next is None:
                    n = write(fd, m.view[m.off:m.off + m.len])
                else:
                    n = os.writev(fd, _iov(m))
            except BlockingIOError:
                ifq.prepend(m)
                ifp.flags |= IFF_OACTIVE
                self.tx_blocked += 1
                self.stack.interrupt_modify(fd, EPOLLIN | EPOLLOUT)
                return
            except OSError as e:
                self._tx_error(ifp, m, e)
                if not ifp.flags & IFF_RUNNING:
                    return
                continue
            ifp.opackets += 1
            ifp.obytes += n
            freem(m)

    def _pace_ready(self) -> None:
        self._pace_co = None
        self.ifp.flags &= ~IFF_OACTIVE
        self.start(self.ifp)

    def _tx_ready(self) -> None:
        self.ifp.flags &= ~IFF_OACTIVE
        self.stack.interrupt_modify(self.fd, EPOLLIN)
        self.start(self.ifp)

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

    def detach(self, ifp: Ifnet) -> None:
        self.stack.interrupt_detach(self.fd)
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
                "rx_chained": self.rx_chain}


def _iov(m) -> list:
    out = []
    while m is not None:
        if m.len:
            out.append(m.view[m.off:m.off + m.len])
        m = m.next
    return out


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
    mac = random_mac()
    if opts["mac"]:
        try:
            mac = mac_aton(opts["mac"])
        except ValueError:
            raise DriverError(f"devnp-tap: option mac={opts['mac']}: "
                              "expected xx:xx:xx:xx:xx:xx") from None
    if len(opts["name"]) > 15:
        raise DriverError(f"devnp-tap: option name={opts['name']}: at most 15 characters")
    tap = pytun.TunTapDevice(name=opts["name"] or "",
                             flags=pytun.IFF_TAP | pytun.IFF_NO_PI)
    try:
        tap.mtu = mtu
        os.set_blocking(tap.fileno(), False)
        ifp = Ifnet("tap", stack.next_unit("tap"), "devnp-tap")
        ifp.description = f"TAP {tap.name}"
        ifp.mtu = mtu
        ifp.if_snd.maxlen = opts["txqlen"]
        ether_ifattach(ifp, mac)
        sc = TapSoftc(stack, ifp, tap, opts["burst"], opts["speed"])
        ifp.baudrate = opts["speed"] * 1_000_000
        ifp.softc = sc
        ifp.if_init = sc.init
        ifp.if_start = sc.start
        ifp.if_transmit = sc.transmit
        ifp.if_stop = sc.stop
        ifp.if_detach = sc.detach
        ifp.if_extra_info = sc.extra_info
        stack.if_attach(ifp)
        stack.interrupt_attach(sc.fd, sc.intr)
        stack.if_up(ifp)
    except Exception:
        tap.close()
        raise
    return ifp


DRIVER = Driver(
    name="devnp-tap", kind="native",
    description="native TAP driver: receives in the stack thread, no hand-off",
    options={
        "name": Option(str, "", "kernel TAP name (default: the kernel picks tapN)"),
        "mac": Option(str, "", "our MAC address (default: random 02:xx:..)"),
        "mtu": Option(int, 1500, "MTU of both sides"),
        "burst": Option(int, 64, "frames read per interrupt at most"),
        "txqlen": Option(int, 256, "send queue (if_snd) length"),
        "speed": Option(int, 0, "media rate to emulate, Mbit/s (10, 100, 1000; 0: none)"),
    },
    attach=attach,
)
