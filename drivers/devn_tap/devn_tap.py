"""devn-tap: a legacy io-net driver for a Linux TAP.

Written only against io-net (iopkt.ionet): it knows npkts, the `ion`
function table and its own TAP, and nothing of mbufs, ifnets or the stack.
Like a real io-net driver it runs its own receive thread, created when it
registers; that thread waits on the TAP (its "interrupt"), reads each frame
into an npkt from the driver's own preallocated free list and sends it up.

Options (QNX style, key=value,...): name, mac, mtu, npkts (free list
size), burst (frames per wake-up), batch (1: hand a burst up with one
tx_up_start; 0: one tx_up per frame), netns (the namespace the TAP is in:
it is opened there, by this thread only).
"""

from __future__ import annotations

import errno
import fcntl
import logging
import os
import re
import select
import threading
from collections import deque

import pytun

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
from iopkt.kern.pacer import Pacer

NAME = "devn-tap"
BUFSIZE = 2048
OPTIONS = {"name": "", "mac": "", "mtu": 1500, "npkts": 256, "burst": 32, "batch": 1,
           "speed": 0, "netns": ""}
LINK_LOST = (errno.EBADFD, errno.EIO, errno.ENODEV, errno.ENXIO)
TUNSETOFFLOAD = 0x400454D0          # linux/if_tun.h
OPTION_HELP = {"name": "kernel TAP name", "mac": "our MAC (default: random 02:..)",
               "mtu": "MTU, 68..2034", "npkts": "receive npkts on the free list, 2..65536",
               "burst": "frames per wake-up of the receive thread, 1..4096",
               "batch": "1: tx_up_start per burst, 0: tx_up per frame",
               "speed": "media rate to emulate, Mbit/s (10, 100, 1000, 10000; 0: none)",
               "netns": "network namespace the TAP is in (or is made in)"}
log = logging.getLogger("iopkt")     # io-net drivers wrote to slogf


class DevnTap:
    """One instance: one TAP, one receive thread, one io-net registration."""

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
        name = opts["name"]
        if len(name) > 15 or name in (".", "..") or any(c in "/:" or c.isspace() for c in name):
            raise ValueError(f"option name={name}: an interface name is 1-15 characters, "
                             "not '.' or '..', without '/', ':' or spaces")
        if not 68 <= opts["mtu"] <= BUFSIZE - 14:
            raise ValueError(f"option mtu={opts['mtu']}: must be 68..{BUFSIZE - 14}")
        for key, lo, hi in (("npkts", 2, 65536), ("burst", 1, 4096), ("batch", 0, 1)):
            if not lo <= opts[key] <= hi:
                raise ValueError(f"option {key}={opts[key]}: must be {lo}..{hi}")
        if opts["speed"] not in (0, 10, 100, 1000, 10000):
            raise ValueError(f"option speed={opts['speed']}: one of 10, 100, 1000, 10000 "
                             "(Mbit/s) or 0 for no limit")
        # Link-speed emulation: the driver paces its own transmissions. The
        # pacer is the one piece borrowed from iopkt; it knows nothing of
        # the stack either.
        self.pacer = Pacer(opts["speed"]) if opts["speed"] else None
        self.tap = open_tap(opts["name"], opts["netns"], opts["mtu"])
        self.fd = self.tap.fileno()
        # io-net knew no offload: whole frames, whole checksums, even from
        # a persistent TAP whose last user left an offload mask set.
        fcntl.ioctl(self.fd, TUNSETOFFLOAD, 0)
        os.set_blocking(self.fd, False)
        self.stopfd = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
        self.stats = NicStats()
        self.link_down = False
        self.lost_why = ""              # what ended the link, for the log
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

    # -- registration ------------------------------------------------------
    def register(self) -> None:
        reg = IoNetRegistrant(
            name=NAME, rx_down=self.rx_down, tx_done=self.tx_done,
            shutdown1=self.shutdown1, shutdown2=self.shutdown2,
            dl_advert=self.dl_advert, devctl=self.devctl, flush=self.flush)
        self.reg_hdl, self.cell, self.endpoint = self.ion.reg(self.dll_hdl, reg)
        # An io-net driver starts its receive thread once it is registered.
        self.thread = threading.Thread(target=self.rx_thread, daemon=True,
                                       name=f"{NAME} rx {self.tap.name}")
        self.thread.start()

    # -- receive: our own thread -----------------------------------------------
    def rx_thread(self) -> None:
        fd = self.fd
        poller = select.poll()
        poller.register(fd, select.POLLIN)
        poller.register(self.stopfd, select.POLLIN)
        free, readv = self.free, os.readv
        burst, batch = self.opts["burst"], self.opts["batch"]
        st = self.stats
        while True:
            events = poller.poll()
            if any(f == self.stopfd for f, _ in events):
                return
            head = tail = None
            got = 0
            while got < burst:
                try:
                    npkt = free.popleft()
                except IndexError:
                    if head is not None:    # our own burst holds them: send it
                        self.up_chain(head)     # up first (copied ones come back)
                        head = tail = None
                        continue
                    if not self._discard():
                        break
                    st.rx_nobufs += 1       # one frame dropped: no npkt for it
                    continue
                iov = npkt.buffers[0].net_iov[0]
                try:
                    n = readv(fd, [iov.base])
                except BlockingIOError:
                    free.append(npkt)
                    break
                except OSError as e:
                    free.append(npkt)
                    if e.errno in LINK_LOST:
                        self._lost(e.strerror)  # what was read still goes up, then we end
                    else:
                        st.rx_failed += 1
                    break
                if n == 0:                  # end of file: the peer is gone (a
                    free.append(npkt)       # TAP never reads 0 bytes)
                    self._lost("end of file")
                    break
                self.fill_up(npkt, n)
                st.rxed_ok += 1
                st.octets_rxed_ok += n
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
            if self.link_down:
                log.warning("%s: TAP %s is gone (%s: link down); receive thread ends",
                            NAME, self.tap.name, self.lost_why)
                return

    def up_chain(self, head: npkt_t) -> None:
        """Send a burst up with one tx_up_start; what io-net does not take
        stays ours."""
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

    def fill_up(self, npkt: npkt_t, n: int) -> None:
        """Describe a received frame of `n` bytes as an up packet."""
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

    def _recycle(self, npkt: npkt_t) -> None:
        """Nobody took it: back on our free list."""
        self.stats.rx_not_taken += 1
        npkt.next = None
        self.free.append(npkt)

    def _discard(self) -> bool:
        """Read one frame and drop it (no npkt to hold it). False when
        there was none, or the link is gone."""
        try:
            if os.read(self.fd, 65536):
                return True
            self._lost("end of file")
        except OSError as e:
            if e.errno in LINK_LOST:
                self._lost(e.strerror)
        return False

    def _lost(self, why: str) -> None:
        """The TAP is gone: devctl reports the link down from now on."""
        self.link_down = True
        self.lost_why = why

    # -- io-net calls us -------------------------------------------------------
    def tx_done(self, npkt: npkt_t, done_hdl) -> int:
        """An up packet came back from io-net: recycle it."""
        npkt.next = None
        npkt.flags = 0
        self.free.append(npkt)
        return EOK

    def rx_down(self, npkt: npkt_t) -> int:
        """Send a down packet: one gathered write of its fragments."""
        st = self.stats
        if self.pacer is not None and self.pacer.wait(npkt.framelen):
            st.tx_again += 1
            return TX_DOWN_AGAIN            # the wire is busy: io-net retries
        try:
            if npkt.tot_iov == 1:
                v = npkt.buffers[0].net_iov[0]
                b = v.base                  # `len` says how much of it is data
                n = os.write(self.fd, b if len(b) == v.len else b[:v.len])
            else:
                n = os.writev(self.fd, [v.base[:v.len] for v in npkt.iovs()])
        except BlockingIOError:
            st.tx_again += 1
            return TX_DOWN_AGAIN            # still ours: io-net retries later
        except OSError as e:
            if e.errno in LINK_LOST:
                self._lost(e.strerror)
            st.tx_failed += 1
            npkt.flags |= _NPKT_NOT_TXED
            self.ion.tx_done(self.reg_hdl, npkt)
            return TX_DOWN_FAILED
        st.txed_ok += 1
        st.octets_txed_ok += n
        self.ion.tx_done(self.reg_hdl, npkt)
        return TX_DOWN_OK

    def devctl(self, reg_hdl: int, dcmd: int, data):
        if dcmd == DCMD_IO_NET_GET_STATS:
            self.stats.extra = {"npkts_total": self.npkts_total, "npkts_free": len(self.free),
                                "rx_thread_alive": bool(self.thread and self.thread.is_alive())}
            return EOK, self.stats
        if dcmd == DCMD_IO_NET_GET_CONFIG:
            ns = self.opts["netns"]
            return EOK, NicConfig(device_name=f"TAP {self.tap.name}"
                                  + (f" in netns {ns}" if ns else ""), driver_name=NAME,
                                  permanent_address=self.mac, current_address=self.mac,
                                  mtu=self.opts["mtu"], media_rate=self.opts["speed"] * 1000,
                                  flags=NIC_FLAG_LINK_DOWN if self.link_down else 0)
        return ENOTSUP, None

    def dl_advert(self, reg_hdl: int) -> int:
        return EOK

    def flush(self, reg_hdl: int) -> int:
        return EOK

    def shutdown1(self, reg_hdl: int) -> int:
        """Stop receiving: end the thread (it owns no packet afterwards)."""
        os.eventfd_write(self.stopfd, 1)
        if self.thread is not None and self.thread is not threading.current_thread():
            self.thread.join(5.0)
        return EOK

    def shutdown2(self, reg_hdl: int) -> int:
        """Release the device and the buffers."""
        try:
            self.tap.close()
        except OSError:
            pass
        os.close(self.stopfd)
        return EOK


def open_tap(name: str, ns: str, mtu: int):
    """Open TAP `name` (new, or an existing persistent one), inside network
    namespace `ns` if given: the kernel finds or makes the TAP in the
    namespace the tun fd is opened in. setns moves only the calling thread,
    and it comes straight back. ValueError if there is no `ns`."""
    if not ns:
        return _open(name, mtu)
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
            return _open(name, mtu)     # the MTU goes through a socket: here too
        finally:
            pr_netns.setns(back)
    finally:
        os.close(back)


def _open(name: str, mtu: int):
    try:
        tap = pytun.TunTapDevice(name=name, flags=pytun.IFF_TAP | pytun.IFF_NO_PI)
    except OSError as e:                # name the TAP and what is in the way
        from iopkt.dev.tap import tap_open_error
        raise tap_open_error(NAME, name, e) from None
    try:
        tap.mtu = mtu
    except BaseException:
        tap.close()
        raise
    return tap


_instances: dict = {}


def init(dll_hdl, ion, options: str) -> int:
    """The driver's entry point, as io-net calls it. Raises ValueError for
    bad options (the message names the option)."""
    opts = ionet.parse_options(options, OPTIONS)
    drv = DevnTap(dll_hdl, ion, opts)
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
