"""devnp-shim: runs an unmodified io-net (devn-) driver under the stack.

To the legacy driver the shim *is* io-net: it passes the driver an io-net
function table (this class, `ion`), takes its registration, and speaks
npkts. To the stack it is an ordinary Ethernet driver with an interface
named enN. It translates both ways:

  up (receive), in the legacy driver's own thread:
      driver: read frame into an npkt -> ion.reg_tx_done + ion.tx_up
      shim:   check the npkt (strict), copy it into a pooled mbuf and give
              the npkt straight back (shimrxcopy=1), or wrap the npkt's
              buffer as mbuf external storage and give it back only when
              the stack frees the mbuf (shimrxcopy=0); put the mbuf on the
              hand-off queue and wake the stack thread once per burst
      stack:  the soft interrupt drains the queue in bursts into if_input

  down (transmit), in the stack thread:
      if_start: each mbuf chain becomes an npkt with one net_iov per mbuf,
      no copy -> driver.rx_down(npkt) -> driver writes, calls ion.tx_done
      -> the shim frees the mbufs and recycles the npkt

io-net had no offload, so enN advertises no capabilities: the IP layer
segments super-frames and completes partial checksums before a packet
reaches if_start (in_offload.py). A packet that still carries offload work
would reach the legacy driver half-made; it is counted and dropped instead
(`tx_offload_leaked`, which must stay 0).

The strict checks catch the driver mistakes io-net tolerated (see
CHECKS); each is logged once per kind with the driver's name, counted
(nicinfo shows the counts), the packet dropped, and the stack goes on.
`lenient=1` accepts the fixable ones as io-net did.
"""

from __future__ import annotations

import logging

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
    net_buf_t,
    net_iov_t,
    npkt_t,
)
from iopkt.kern.handoff import HandoffQueue
from iopkt.net.ether import ether_ifattach
from iopkt.net.ifnet import IFF_OACTIVE, IFF_RUNNING, LINK_STATE_DOWN, LINK_STATE_UP, Ifnet

log = logging.getLogger("iopkt")

# The shim's own options; everything else goes to the legacy driver.
SHIM_OPTIONS = {
    "shimrxcopy": (int, 1, "1: copy each received packet into an mbuf; "
                           "0: lend the driver's buffer to the stack (zero copy)"),
    "lenient": (int, 0, "1: accept fixable io-net contract errors as io-net did"),
    "shimqlen": (int, 512, "hand-off queue length (packets), 1..65536"),
    "shimburst": (int, 64, "packets the stack takes from the queue per wake-up, 1..4096"),
}

CHECKS = {
    "tx_done_twice": "called tx_done twice for the same packet",
    "tx_done_unknown": "called tx_done for a packet the shim never gave it",
    "bad_framelen": "sent up a packet whose framelen is not the sum of its fragment lengths",
    "bad_tot_iov": "sent up a packet whose tot_iov is not its real fragment count",
    "bad_ref_cnt": "sent up a packet whose ref_cnt is not 1",
    "not_up": "sent up a packet without _NPKT_UP",
    "up_while_held": "sent up a packet the shim still holds",
    "bad_reg_hdl": "sent up a packet with a reg_hdl io-net never gave it "
                   "(before registering, or after deregistering)",
}
FIXABLE = ("bad_framelen", "bad_tot_iov", "bad_ref_cnt", "not_up")

# Refusals that are the packet's fault (input errors); the others (qfull,
# nobufs) are drops for want of room.
RX_ERRORS = frozenset(("shim_contract", "runt", "too_long"))

DOWN_NPKTS = 512        # npkts for transmit; more than if_snd can hold
MAX_IOV = 8


def split_options(text: str) -> tuple[dict, str]:
    """Separate the shim's options from the legacy driver's. Returns
    (shim options with defaults, the driver's option string)."""
    from iopkt.dev.autoconf import DriverError
    mine = {k: d for k, (_t, d, _h) in SHIM_OPTIONS.items()}
    rest = []
    for item in (p.strip() for p in (text or "").split(",")):
        if not item:
            continue
        key, _, value = item.partition("=")
        if key in SHIM_OPTIONS:
            try:
                mine[key] = SHIM_OPTIONS[key][0](value)
            except ValueError:
                raise DriverError(f"devnp-shim: option {key}={value}: expected a whole "
                                  "number") from None
        else:
            rest.append(item)
    for key, lo, hi in (("shimrxcopy", 0, 1), ("lenient", 0, 1), ("shimqlen", 1, 65536),
                        ("shimburst", 1, 4096)):
        if not lo <= mine[key] <= hi:
            raise DriverError(f"devnp-shim: option {key}={mine[key]}: must be "
                              + ("0 or 1" if hi == 1 else f"{lo}..{hi}"))
    return mine, ",".join(rest)


class Shim(ionet.IoNetSelf):
    """One mounted legacy driver: its io-net and its enN interface."""

    def __init__(self, stack, drv, opts: dict):
        self.stack = stack
        self.pool = stack.pool
        self.drv = drv                      # the legacy Driver descriptor
        self.name = drv.name
        self.rxcopy = bool(opts["shimrxcopy"])
        self.lenient = bool(opts["lenient"])
        self.burst = opts["shimburst"]
        self.q = HandoffQueue(opts["shimqlen"], stack.wakeup)
        self.registrant: ionet.IoNetRegistrant | None = None
        self.reg_hdl = 0
        self.dll_hdl = object()
        self.ifp: Ifnet | None = None
        self.violations = dict.fromkeys(CHECKS, 0)
        self._said: set[str] = set()
        self.up_held: set[int] = set()      # id() of npkts lent to the stack
        self.rx_copied = self.rx_wrapped = self.rx_refused = 0
        self.tx_again = 0
        self.tx_offload_leaked = 0
        self.detaching = False
        self._retry = None
        # Transmit npkts, preallocated: one net_buf whose net_iov list is
        # resized in place (one entry per mbuf of the chain).
        self._down_free = []
        self._down_ids = set()
        for _ in range(DOWN_NPKTS):
            n = npkt_t()
            n.buffers = [net_buf_t([net_iov_t()])]
            # Its own spare fragments for chains, never shared with another
            # npkt: a driver may still be reading one while we fill the next.
            n.inter_module = [net_iov_t() for _ in range(MAX_IOV)]
            self._down_free.append(n)
            self._down_ids.add(id(n))
        self.driver_errors: dict[str, int] = {}
        self.link_downed = False        # we took the interface down for a lost link
        self._link_co = None

    # -- contract checks ---------------------------------------------------
    def _where(self) -> str:
        """Who speaks in the log: the interface, or "shim" before the
        driver registered (and so before there is one)."""
        return self.ifp.name if self.ifp else "shim"

    def violation(self, kind: str) -> None:
        self.violations[kind] += 1
        if kind not in self._said:
            self._said.add(kind)
            log.warning("%s: legacy driver %s %s%s", self._where(), self.name, CHECKS[kind],
                        " (accepted: lenient mode)" if self.lenient and kind in FIXABLE
                        else "; packet dropped")

    # -- io-net: registration and memory -----------------------------------
    def reg(self, dll_hdl, registrant: ionet.IoNetRegistrant):
        if self.registrant is not None:
            raise RuntimeError(f"{self.name}: registers twice; the shim takes one interface "
                               "per driver instance")
        self.registrant = registrant
        self.reg_hdl = 1
        unit = self.stack.next_unit("en")
        self.ifp = Ifnet("en", unit, "devnp-shim")
        return self.reg_hdl, 0, unit      # reg_hdl, cell, endpoint

    def dereg(self, reg_hdl: int) -> int:
        self.registrant = None
        self.reg_hdl = 0                    # any tx_up from now on is refused
        return EOK

    def alloc(self, size: int) -> bytearray:
        return bytearray(size)

    def free(self, buf) -> None:
        pass                                # Python reclaims it

    def alloc_up_npkt(self, size: int) -> npkt_t:
        n = npkt_t()
        buf = bytearray(size)
        n.buffers = [net_buf_t([net_iov_t(memoryview(buf), id(buf), size)])]
        n.tot_iov = 1
        return n

    def alloc_down_npkt(self, reg_hdl: int, size: int) -> npkt_t:
        return self.alloc_up_npkt(size)

    def devctl(self, reg_hdl: int, dcmd: int, data):
        return ENOTSUP, None

    def tx_down(self, reg_hdl: int, npkt: npkt_t) -> int:
        # A bottom driver has nothing below it to send to.
        return ionet.TX_DOWN_FAILED

    def reg_tx_done(self, reg_hdl: int, npkt: npkt_t, done_hdl) -> int:
        npkt._done = done_hdl
        return EOK

    # -- io-net: up (the legacy driver's receive thread) ---------------------
    def tx_up(self, reg_hdl, npkt, off, framelen_sub, cell, endpoint, iface) -> int:
        """Take one up packet. Returns 1 if the shim took it (it comes back
        through the driver's tx_done), 0 if the driver keeps it."""
        if reg_hdl != self.reg_hdl or not reg_hdl:
            self._bad_reg_hdl()
            return 0
        m = self._up(npkt, off, framelen_sub)
        if m is None:
            return 0
        self.q.kick()
        return 1

    def tx_up_start(self, reg_hdl, npkt, off, framelen_sub, cell, endpoint, iface,
                    done_hdl):
        """Take a chain of up packets (linked by `next`) with one wake-up.
        Returns the chain of packets not taken (the driver keeps those),
        or None."""
        if reg_hdl != self.reg_hdl or not reg_hdl:
            self._bad_reg_hdl()
            return npkt
        keep_head = keep_tail = None
        took = 0
        while npkt is not None:
            nxt = npkt.next
            npkt.next = None
            npkt._done = done_hdl
            if self._up(npkt, off, framelen_sub) is None:
                if keep_tail is None:
                    keep_head = npkt
                else:
                    keep_tail.next = npkt
                keep_tail = npkt
            else:
                took += 1
            npkt = nxt
        if took:
            self.q.kick()
        return keep_head

    def _bad_reg_hdl(self) -> None:
        """tx_up without a registration: no interface may take the packet
        (there may be none yet); the driver keeps it."""
        self.violation("bad_reg_hdl")
        if self.ifp is None:
            self.rx_refused += 1
        else:
            self._refuse("shim_contract")

    def _refuse(self, reason: str) -> None:
        """Count one up packet refused (the driver keeps it) by `reason`:
        an input error when the packet is at fault, else a drop for want
        of room."""
        self.rx_refused += 1
        ifp = self.ifp
        ifp.in_discards[reason] += 1
        if reason in RX_ERRORS:
            ifp.ierrors += 1
        else:
            ifp.iqdrops += 1

    def _up(self, npkt: npkt_t, off: int, framelen_sub: int):
        """Check `npkt`, turn it into an mbuf on the hand-off queue. Returns
        the mbuf, or None when refused (the driver still owns `npkt`)."""
        ifp = self.ifp
        bufs = npkt.buffers
        if len(bufs) == 1 and len(bufs[0].net_iov) == 1:
            iov = bufs[0].net_iov[0]
            total, niov = iov.len, 1
        else:
            iov = None
            total = niov = 0
            for nb in bufs:
                for v in nb.net_iov:
                    total += v.len
                    niov += 1
        if (npkt.ref_cnt != 1 or not npkt.flags & _NPKT_UP or npkt.tot_iov != niov
                or npkt.framelen != total or id(npkt) in self.up_held):
            if not self._up_checks(npkt, total, niov):
                self._refuse("shim_contract")
                return None
        if len(self.q) >= self.q.maxlen or self.detaching:
            self.q.drops += 1
            self._refuse("qfull")
            return None
        n = total - off - framelen_sub
        if n <= 0:
            self._refuse("runt")
            return None
        lent = not self.rxcopy and iov is not None and _lendable(iov.base)
        if lent:
            base = iov.base
            m = self.pool.get_ext(base.obj if isinstance(base, memoryview) else base,
                                  off, n, self._ext_free, npkt)
            if m is None:
                self._refuse("nobufs")
                return None
            self.up_held.add(id(npkt))
            self.rx_wrapped += 1
        else:
            m = self.pool.get()
            if m is None:
                self._refuse("nobufs")
                return None
            h = m.off
            if n > m.size - h:
                self.pool.free(m)
                self._refuse("too_long")
                return None
            if iov is not None:
                m.view[h:h + n] = iov.base[off:off + n]
            else:
                self._gather(npkt, m, off, n)
            self.rx_copied += 1
        m.len = m.pkt_len = n
        m.rcvif = ifp
        if not self.q.put(m):
            # Only when a second driver thread took the last slot since the
            # check above. A refusal means the driver keeps `npkt`, so it
            # must not also come back through tx_done: a lent buffer's
            # mbuf is freed without its give-back.
            if lent:
                self.up_held.discard(id(npkt))
                m.ext_free = _keep
            self.pool.free(m)
            self._refuse("qfull")
            return None
        if not lent:                        # (m may be the stack's already)
            self._give_back(npkt)           # copied: the driver has it back now
        return m

    def _up_checks(self, npkt: npkt_t, total: int, niov: int) -> bool:
        """The slow path of _up: name every broken rule. True if the packet
        may still go up (lenient mode fixed it)."""
        ok = True
        if id(npkt) in self.up_held:
            self.violation("up_while_held")
            return False                    # never: the stack is using that buffer
        for kind, bad in (("bad_ref_cnt", npkt.ref_cnt != 1),
                          ("not_up", not npkt.flags & _NPKT_UP),
                          ("bad_tot_iov", npkt.tot_iov != niov),
                          ("bad_framelen", npkt.framelen != total)):
            if bad:
                self.violation(kind)
                ok = False
        if not ok and self.lenient:
            npkt.framelen, npkt.tot_iov = total, niov
            return True
        return ok

    def _gather(self, npkt: npkt_t, m, off: int, n: int) -> None:
        dst = m.off
        skip = off
        left = n
        for v in npkt.iovs():
            if left <= 0:
                break
            if skip >= v.len:
                skip -= v.len
                continue
            k = min(v.len - skip, left)
            m.view[dst:dst + k] = v.base[skip:skip + k]
            dst += k
            left -= k
            skip = 0

    def _give_back(self, npkt: npkt_t) -> None:
        """The shim is done with an up packet: the driver's tx_done."""
        hdl = npkt._done
        npkt._done = None
        try:
            self.registrant.tx_done(npkt, hdl)
        except Exception as e:
            self.driver_failed("tx_done", e)

    def _ext_free(self, npkt: npkt_t) -> None:
        """shimrxcopy=0: the stack freed the mbuf that lent this buffer."""
        self.up_held.discard(id(npkt))
        if self.registrant is not None:
            self._give_back(npkt)

    # -- stack side: soft interrupt (stack thread) ---------------------------
    def softint(self) -> None:
        q = self.q
        q.begin_drain()
        if not len(q):
            return
        pkts = q.take(self.burst)
        if len(q):
            q.kick()                        # more: come back next loop, be fair
        ifp = self.ifp
        ifp.if_input(ifp, pkts)

    # -- stack side: transmit (stack thread) ---------------------------------
    def start(self, ifp: Ifnet) -> None:
        """if_start: hand each queued mbuf chain to the driver's rx_down as
        an npkt with one net_iov per mbuf (no copy)."""
        ifq = ifp.if_snd
        free = self._down_free
        reg = self.registrant
        if reg is None:                     # the driver deregistered itself: no one to send to
            ifp.if_purge("link_lost")
            return
        rx_down = reg.rx_down
        while ifq.len:
            if not free:                    # all npkts out: wait for tx_done
                self._wait(ifp)
                return
            m = ifq.dequeue()
            if m.csum_flags:                # the stack's promise broken: never pass it on
                self.tx_offload_leaked += 1
                ifp.output_discard(m, "txerror")
                continue
            npkt = free.pop()
            iovs = npkt.buffers[0].net_iov
            count = 0
            x = m
            while x is not None:
                if x.len:
                    if count == len(iovs):
                        iovs.append(npkt.inter_module[count] if count < MAX_IOV else net_iov_t())
                    v = iovs[count]
                    v.base = x.view[x.off:x.off + x.len]
                    v.len = x.len
                    count += 1
                x = x.next
            if count < len(iovs):
                del iovs[count:]
            npkt.framelen = m.pkt_len
            npkt.tot_iov = count
            npkt.flags = 0
            npkt.ref_cnt = 1
            npkt.org_data = m
            try:
                r = rx_down(npkt)
            except Exception as e:
                self.driver_failed("rx_down", e)
                r = TX_DOWN_FAILED
            if r == TX_DOWN_OK:
                continue                    # tx_done counts it, now or later
            if npkt.org_data is not m:      # it called tx_done, yet says not sent
                if r == TX_DOWN_AGAIN:
                    self.driver_failed("rx_down", "returned TX_DOWN_AGAIN for a packet "
                                       "it had already given back with tx_done")
                continue
            if r == TX_DOWN_AGAIN:
                npkt.org_data = None
                free.append(npkt)
                ifq.prepend(m)
                self.tx_again += 1
                self._wait(ifp)
                return
            # TX_DOWN_FAILED (or anything else) without tx_done: take it back.
            if r != TX_DOWN_FAILED:
                self.driver_failed("rx_down", f"returned {r!r}, not an io-net code")
            npkt.org_data = None
            ifp.out_discards["txerror"] += 1
            ifp.oerrors += 1
            self.pool.freem(m)
            free.append(npkt)

    def driver_failed(self, call: str, err) -> None:
        """The legacy driver raised (or answered nonsense) in `call`: say so
        once per call with its name, count it, and go on."""
        self.driver_errors[call] = self.driver_errors.get(call, 0) + 1
        if self.driver_errors[call] == 1:
            log.warning("%s: legacy driver %s failed in %s: %s (said once; counted)",
                        self._where(), self.name, call, err)

    def _wait(self, ifp: Ifnet) -> None:
        """The driver cannot take more now: retry shortly (io-net drivers
        have no "writable" event to wait for)."""
        ifp.flags |= IFF_OACTIVE
        if self._retry is None:
            self._retry = self.stack.timeout(0.0005, self._restart)

    def _restart(self) -> None:
        self._retry = None
        ifp = self.ifp
        ifp.flags &= ~IFF_OACTIVE
        if ifp.flags & IFF_RUNNING and self.registrant is not None:
            self.start(ifp)

    def tx_done(self, reg_hdl: int, npkt: npkt_t) -> int:
        """io-net tx_done from the driver: a down packet is finished (sent
        or, with _NPKT_NOT_TXED, not). Any thread."""
        if id(npkt) not in self._down_ids:
            self.violation("tx_done_unknown")
            return -1
        m = npkt.org_data
        if m is None:
            self.violation("tx_done_twice")
            return -1
        npkt.org_data = None
        ifp = self.ifp
        if npkt.flags & _NPKT_NOT_TXED:
            ifp.out_discards["txerror"] += 1
            ifp.oerrors += 1
        else:
            ifp.opackets += 1
            ifp.obytes += m.pkt_len
        self.pool.freem(m)
        self._down_free.append(npkt)
        return EOK

    # -- life cycle ------------------------------------------------------------
    def init(self, ifp: Ifnet) -> None:
        ifp.flags |= IFF_RUNNING

    def stop(self, ifp: Ifnet) -> None:
        ifp.flags &= ~(IFF_RUNNING | IFF_OACTIVE)
        if self._retry is not None:
            self._retry.cancel()
            self._retry = None
        ifp.if_purge("down")

    def detach(self, ifp: Ifnet) -> None:
        """Unmount: stop the driver's thread, take back everything, let the
        driver free its resources. With shimrxcopy=0, mbufs still lending a
        driver buffer must come back first: wait for them, and say so."""
        self.detaching = True
        if self._link_co is not None:
            self._link_co.cancel()
            self._link_co = None
        reg = self.registrant
        if reg is not None:
            try:
                reg.shutdown1(self.reg_hdl)     # the driver's receive thread ends here
            except Exception as e:
                self.driver_failed("shutdown1", e)
        self.stack.softint_disestablish(self.softint)
        for m in self.q.take(self.q.maxlen):    # all of it: it never holds more
            self.pool.freem(m)
        if self.up_held:
            log.info("%s: waiting for %d mbufs lent to the stack to come back "
                     "(shimrxcopy=0)", ifp.name, len(self.up_held))
            self._wait_held(ifp, 0)
        else:
            self._finish(ifp)

    def watch_link(self) -> None:
        """io-net drivers report link state through devctl; ask once a
        second and tell the stack when the link goes, and when it comes back
        (a real link's peer going down and up, say): an interface the shim
        took down for a lost link it brings up again."""
        self._link_co = None
        ifp = self.ifp
        if self.registrant is None or self.detaching:
            return
        try:
            rc, cfg = self.registrant.devctl(self.reg_hdl, DCMD_IO_NET_GET_CONFIG, None)
        except Exception as e:
            self.driver_failed("devctl", e)
            rc, cfg = -1, None
        if rc == EOK and cfg is not None:
            if cfg.flags & NIC_FLAG_LINK_DOWN:
                if ifp.link_state != LINK_STATE_DOWN:
                    self.stack.link_lost(ifp, f"legacy driver {self.name} reports link down")
                    self.link_downed = True
            elif self.link_downed:
                self.link_downed = False
                log.info("%s: legacy driver %s reports link up again; interface up",
                         ifp.name, self.name)
                ifp.link_state = LINK_STATE_UP
                self.stack.if_up(ifp)
        self._link_co = self.stack.timeout(1.0, self.watch_link)

    def _wait_held(self, ifp: Ifnet, tries: int) -> None:
        if not self.up_held:
            self._finish(ifp)
        elif tries >= 500 or self.stack.stopping:
            log.warning("%s: %d lent mbufs never came back; unmounting anyway",
                        ifp.name, len(self.up_held))
            self._finish(ifp)
        else:
            self.stack.timeout(0.01, lambda: self._wait_held(ifp, tries + 1))

    def _finish(self, ifp: Ifnet) -> None:
        reg = self.registrant
        info = {}
        if reg is not None:
            info = self.driver_stats()
            try:
                reg.shutdown2(self.reg_hdl)
            except Exception as e:
                self.driver_failed("shutdown2", e)
            self.dereg(self.reg_hdl)
        try:
            self.drv.module.shutdown(self.dll_hdl)
        except Exception as e:          # the driver's bug, not ours: say whose
            log.warning("%s: legacy driver %s failed in shutdown: %s", ifp.name, self.name, e)
        held = info.get("npkts_free"), info.get("npkts_total")
        log.info("%s: %s unmounted: %s/%s npkts back with the driver, %d transmit npkts "
                 "back with the shim (of %d), %d mbuf clusters in use in the stack",
                 ifp.name, self.name, held[0], held[1], len(self._down_free), DOWN_NPKTS,
                 self.pool.in_use)

    # -- what nicinfo shows ----------------------------------------------------
    def driver_stats(self) -> dict:
        if self.registrant is None:
            return {}
        try:                        # its answer too: a bad one must not stop an unmount
            rc, st = self.registrant.devctl(self.reg_hdl, DCMD_IO_NET_GET_STATS, None)
            if rc != EOK or st is None:
                return {}
            d = {k: v for k, v in vars(st).items() if k != "extra"}
            d.update(st.extra)
        except Exception as e:
            self.driver_failed("devctl", e)
            return {"error": f"devctl GET_STATS failed: {e}"}
        return d

    def extra_info(self, ifp: Ifnet) -> dict:
        return {
            "driver": f"devnp-shim (io-net emulation) running {self.name} "
                      f"in its own thread",
            "legacy_driver": self.name,
            "shimrxcopy": int(self.rxcopy), "lenient": int(self.lenient),
            "rx_copied": self.rx_copied, "rx_wrapped": self.rx_wrapped,
            "rx_refused": self.rx_refused, "tx_again": self.tx_again,
            "tx_offload_leaked": self.tx_offload_leaked,
            "npkts_lent_to_stack": len(self.up_held),
            "tx_npkts_free": len(self._down_free),
            "handoff_queue": self.q.stats(),
            "contract_violations": dict(self.violations),
            "driver_errors": dict(self.driver_errors),
            "legacy_driver_stats": self.driver_stats(),
        }


def _keep(npkt) -> None:
    """The give-back of a lent mbuf whose npkt the driver kept."""


def _lendable(base) -> bool:
    """Can this fragment buffer become mbuf external storage as it is? Only
    a whole writable bytearray (or a view of one from its start)."""
    if isinstance(base, bytearray):
        return True
    return (isinstance(base, memoryview) and isinstance(base.obj, bytearray)
            and not base.readonly and base.nbytes == len(base.obj))


def mount(stack, drv, options: str) -> Ifnet:
    """Mount legacy driver `drv` through a new shim: call its init with our
    io-net table, read its config, attach its enN interface. Errors name the
    driver."""
    from iopkt.dev.autoconf import DeviceError, DriverError
    opts, drv_options = split_options(options)
    shim = Shim(stack, drv, opts)
    try:
        rc = drv.module.init(shim.dll_hdl, shim, drv_options)
    except ValueError as e:             # its options: the message names the option
        _abandon(shim)
        raise DriverError(f"{drv.name}: {e}") from None
    except OSError as e:                # its device, e.g. the TAP: a run-time failure
        _abandon(shim)
        if isinstance(e, DeviceError):  # its message names driver and device
            raise
        raise DeviceError(f"legacy driver {drv.name} failed in init: {e}", e.errno) from None
    except Exception as e:
        _abandon(shim)
        raise DriverError(f"legacy driver {drv.name} failed in init: {e}") from None
    if rc != EOK or shim.registrant is None:
        _abandon(shim)
        raise DriverError(f"legacy driver {drv.name}: init returned {rc} "
                          f"{'without registering' if shim.registrant is None else ''}".strip())
    try:
        return _attach(stack, drv, shim)
    except DriverError:
        _abandon(shim)
        raise
    except Exception as e:
        _abandon(shim)
        raise DriverError(f"legacy driver {drv.name} failed while being mounted: "
                          f"{type(e).__name__}: {e}") from None


def _attach(stack, drv, shim: Shim) -> Ifnet:
    from iopkt.dev.autoconf import DriverError
    ifp = shim.ifp
    rc, cfg = shim.registrant.devctl(shim.reg_hdl, DCMD_IO_NET_GET_CONFIG, None)
    if rc != EOK or cfg is None:
        raise DriverError(f"legacy driver {drv.name} does not answer GET_CONFIG")
    mac = bytes(cfg.current_address)
    if len(mac) != 6:                   # every Ethernet header and the IPv6 link-local need 6
        raise DriverError(f"legacy driver {drv.name}: GET_CONFIG gives a MAC address of "
                          f"{len(mac)} bytes, not 6")
    ether_ifattach(ifp, mac)
    ifp.mtu = cfg.mtu
    ifp.baudrate = cfg.media_rate * 1000
    ifp.description = f"{drv.name} {cfg.device_name}".strip()
    ifp.if_devkey = cfg.device_name or ""   # the device, whichever driver drives it
    ifp.set_softc(shim)
    ifp.link_state = LINK_STATE_DOWN if cfg.flags & NIC_FLAG_LINK_DOWN else LINK_STATE_UP
    # No link at mount (cable out) is a lost link: watch_link shows it up
    # when it comes.
    shim.link_downed = ifp.link_state == LINK_STATE_DOWN
    shim.registrant.dl_advert(shim.reg_hdl)
    stack.if_attach(ifp)
    stack.softint_establish(shim.softint)
    stack.if_up(ifp)
    shim._link_co = stack.timeout(1.0, shim.watch_link)
    if len(shim.q):
        shim.q.kick()                       # frames that arrived during init
    return ifp


def _abandon(shim: Shim) -> None:
    """Undo a mount that failed half way: stop and release the driver."""
    ifp = shim.ifp
    if ifp is not None and shim.stack.ifnets.get(ifp.name) is ifp:
        shim.stack.if_detach(ifp)           # it had joined the stack: unmount it as usual
        return
    reg = shim.registrant
    if reg is not None:
        for fn in (reg.shutdown1, reg.shutdown2):
            try:
                fn(shim.reg_hdl)
            except Exception:
                pass
    try:
        shim.drv.module.shutdown(shim.dll_hdl)
    except Exception:
        pass
    for m in shim.q.take(shim.q.maxlen):        # all of it: it never holds more
        shim.pool.freem(m)
