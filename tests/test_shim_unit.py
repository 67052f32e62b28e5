"""The shim's npkt <-> mbuf translation and contract checks, driven by hand
(no threads, no TAP, no root): a fake legacy driver registers, the test
plays its receive thread and its transmit."""

import types

import pytest

from drivers.legacy_shim import shim as shimmod
from iopkt import ionet
from iopkt.drvload import Driver
from iopkt.ionet import (_NPKT_NOT_TXED, _NPKT_UP, EOK, TX_DOWN_AGAIN, TX_DOWN_FAILED,
                         TX_DOWN_OK, IoNetRegistrant, NicConfig, NicStats, net_buf_t,
                         net_iov_t, npkt_t)
from iopkt.stack import Stack

MAC = b"\x02\x00\x00\x00\x00\x01"


class FakeDriver:
    """Records what the shim does to it; answers as told."""

    def __init__(self):
        self.sent = []          # npkts given to rx_down
        self.back = []          # (npkt, done_hdl) given back through tx_done
        self.rx_down_rc = TX_DOWN_OK
        self.auto_done = True
        self.ion = None
        self.link_flags = 0     # NIC_FLAG_LINK_DOWN while the "cable" is out

    def init(self, dll_hdl, ion, options):
        self.ion = ion
        reg = IoNetRegistrant(
            name="devn-fake", rx_down=self.rx_down, tx_done=self.tx_done,
            shutdown1=lambda h: EOK, shutdown2=lambda h: EOK, dl_advert=lambda h: EOK,
            devctl=self.devctl, flush=lambda h: EOK)
        self.reg_hdl, _, _ = ion.reg(dll_hdl, reg)
        return EOK

    def shutdown(self, dll_hdl):
        return EOK

    def devctl(self, reg_hdl, dcmd, data):
        if dcmd == ionet.DCMD_IO_NET_GET_CONFIG:
            return EOK, NicConfig(current_address=MAC, mtu=1500, flags=self.link_flags)
        return EOK, NicStats()

    def rx_down(self, npkt):
        if self.rx_down_rc == TX_DOWN_AGAIN:
            return TX_DOWN_AGAIN
        self.sent.append((npkt, b"".join(bytes(v.base[:v.len]) for v in npkt.iovs()),
                          npkt.framelen, npkt.tot_iov))
        if self.rx_down_rc == TX_DOWN_FAILED:
            npkt.flags |= _NPKT_NOT_TXED
        if self.auto_done:
            self.ion.tx_done(self.reg_hdl, npkt)
        return self.rx_down_rc

    def tx_done(self, npkt, done_hdl):
        self.back.append((npkt, done_hdl))
        return EOK


def up_npkt(*frags):
    n = npkt_t()
    n.buffers = [net_buf_t([net_iov_t(memoryview(bytearray(f)), 0, len(f)) for f in frags])]
    n.framelen = sum(len(f) for f in frags)
    n.tot_iov = len(frags)
    n.flags = _NPKT_UP
    n.ref_cnt = 1
    return n


@pytest.fixture
def rig():
    def make(options="", mclbytes=2048):
        stack = Stack("unit", nmbclusters=64, mclbytes=mclbytes)
        fake = FakeDriver()
        drv = Driver(name="devn-fake", kind="legacy", description="",
                     module=types.SimpleNamespace(init=fake.init, shutdown=fake.shutdown))
        ifp = shimmod.mount(stack, drv, options)
        got = []
        ifp.if_input = lambda ifp, pkts: got.extend(pkts)
        made.append(stack)
        return stack, ifp.softc, fake, got
    made = []
    yield make
    for stack in made:
        stack.shutdown(quiet=True)
        stack.close()


def test_multi_fragment_npkt_becomes_one_mbuf_and_goes_back(rig):
    stack, shim, fake, got = rig()
    n = up_npkt(b"A" * 20, b"B" * 30, b"C" * 14)
    shim.reg_tx_done(1, n, "hdl")
    assert shim.tx_up(1, n, 0, 0, 0, 0, 0) == 1
    assert fake.back == [(n, "hdl")]                # copied: returned at once
    shim.softint()
    assert len(got) == 1 and got[0].tobytes() == b"A" * 20 + b"B" * 30 + b"C" * 14
    assert shim.q.stats()["enqueued"] == shim.q.stats()["dequeued"] == 1
    stack.pool.freem(got[0])
    assert stack.pool.in_use == 0


def test_off_and_framelen_sub_are_trimmed(rig):
    stack, shim, fake, got = rig()
    n = up_npkt(b"xx" + b"D" * 60 + b"FCS!")
    shim.reg_tx_done(1, n, None)
    shim.tx_up(1, n, 2, 4, 0, 0, 0)
    shim.softint()
    assert got[0].tobytes() == b"D" * 60
    stack.pool.freem(got[0])


def test_zero_copy_lends_the_buffer_until_the_stack_frees_it(rig):
    stack, shim, fake, got = rig("shimrxcopy=0")
    n = up_npkt(b"E" * 100)
    shim.reg_tx_done(1, n, "h")
    assert shim.tx_up(1, n, 0, 0, 0, 0, 0) == 1
    shim.softint()
    m = got[0]
    assert m.buf is n.buffers[0].net_iov[0].base.obj        # no copy
    assert stack.pool.in_use == 0 and stack.pool.ext_in_use == 1
    assert fake.back == []                                    # still lent
    assert shim.tx_up(1, n, 0, 0, 0, 0, 0) == 0               # sent up again: refused
    assert shim.violations["up_while_held"] == 1
    stack.pool.freem(m)
    assert fake.back == [(n, "h")] and stack.pool.ext_in_use == 0


@pytest.mark.parametrize("field,value,kind", [
    ("framelen", 99, "bad_framelen"), ("tot_iov", 3, "bad_tot_iov"),
    ("ref_cnt", 2, "bad_ref_cnt"), ("flags", 0, "not_up")])
def test_strict_checks_refuse_and_count(rig, field, value, kind):
    stack, shim, fake, got = rig()
    n = up_npkt(b"F" * 64)
    setattr(n, field, value)
    assert shim.tx_up(1, n, 0, 0, 0, 0, 0) == 0             # the driver keeps it
    assert shim.violations[kind] == 1
    assert sum(shim.violations.values()) == 1
    assert shim.ifp.in_discards["shim_contract"] == 1
    shim.softint()
    assert got == [] and stack.pool.in_use == 0


def test_lenient_fixes_and_passes(rig):
    stack, shim, fake, got = rig("lenient=1")
    n = up_npkt(b"G" * 64)
    n.framelen = 70
    shim.reg_tx_done(1, n, None)
    assert shim.tx_up(1, n, 0, 0, 0, 0, 0) == 1
    assert shim.violations["bad_framelen"] == 1
    shim.softint()
    assert got[0].pkt_len == 64
    stack.pool.freem(got[0])


def test_tx_up_start_takes_a_chain_with_one_wakeup(rig):
    stack, shim, fake, got = rig()
    pk = [up_npkt(bytes([i]) * 60) for i in range(5)]
    pk[2].ref_cnt = 0                                          # one bad apple
    for a, b in zip(pk, pk[1:]):
        a.next = b
    left = shim.tx_up_start(1, pk[0], 0, 0, 0, 0, 0, "d")
    assert left is pk[2] and left.next is None                 # only it stays with the driver
    assert shim.q.stats()["wakeups"] == 1
    shim.softint()
    assert [m.tobytes()[0] for m in got] == [0, 1, 3, 4]
    for m in got:
        stack.pool.freem(m)


def test_chained_mbuf_goes_down_as_one_iov_per_mbuf(rig):
    stack, shim, fake, got = rig(mclbytes=256)
    data = bytes(range(256)) * 2 + b"tail"
    m = stack.pool.from_bytes(data)
    assert m.next is not None and m.next.next is not None     # a 3-mbuf chain
    shim.ifp.if_transmit(shim.ifp, [m])
    npkt, sent, framelen, tot_iov = fake.sent[0]
    assert sent == data and framelen == len(data) and tot_iov == 3
    assert stack.pool.in_use == 0                              # tx_done freed the chain
    assert shim.ifp.opackets == 1 and shim.ifp.obytes == len(data)


def test_tx_done_twice_and_unknown_are_caught(rig):
    stack, shim, fake, got = rig()
    fake.auto_done = False
    shim.ifp.if_transmit(shim.ifp, [stack.pool.from_bytes(b"H" * 60)])
    npkt = fake.sent[0][0]
    assert shim.tx_done(1, npkt) == EOK
    assert shim.tx_done(1, npkt) == -1
    assert shim.tx_done(1, npkt_t()) == -1
    assert shim.violations["tx_done_twice"] == 1
    assert shim.violations["tx_done_unknown"] == 1
    assert stack.pool.in_use == 0


def test_tx_down_failed_counts_an_output_error(rig):
    stack, shim, fake, got = rig()
    fake.rx_down_rc = TX_DOWN_FAILED
    shim.ifp.if_transmit(shim.ifp, [stack.pool.from_bytes(b"I" * 60)])
    assert shim.ifp.oerrors == 1 and shim.ifp.opackets == 0
    assert stack.pool.in_use == 0


def test_tx_down_again_keeps_the_packet_queued(rig):
    stack, shim, fake, got = rig()
    fake.rx_down_rc = TX_DOWN_AGAIN
    ifp = shim.ifp
    ifp.if_transmit(ifp, [stack.pool.from_bytes(b"J" * 60)])
    assert ifp.if_snd.len == 1 and shim.tx_again == 1
    assert stack.pool.in_use == 1
    fake.rx_down_rc = TX_DOWN_OK
    shim._restart()                                            # the retry callout
    assert ifp.if_snd.len == 0 and ifp.opackets == 1 and stack.pool.in_use == 0


# -- a misbehaving driver is reported by name; nothing leaks, nothing dies --

def test_rx_down_raising_is_counted_and_frees_everything(rig):
    stack, shim, fake, got = rig()

    def boom(npkt):
        raise RuntimeError("DMA engine on fire")
    shim.registrant.rx_down = boom
    shim.ifp.if_transmit(shim.ifp, [stack.pool.from_bytes(b"K" * 60)])
    assert shim.driver_errors == {"rx_down": 1}
    assert shim.ifp.oerrors == 1 and stack.pool.in_use == 0
    assert len(shim._down_free) == shimmod.DOWN_NPKTS


def test_failed_without_tx_done_is_taken_back(rig):
    stack, shim, fake, got = rig()
    fake.rx_down_rc = TX_DOWN_FAILED
    fake.auto_done = False
    shim.ifp.if_transmit(shim.ifp, [stack.pool.from_bytes(b"L" * 60)])
    assert stack.pool.in_use == 0 and len(shim._down_free) == shimmod.DOWN_NPKTS
    assert shim.ifp.oerrors == 1


def test_again_after_tx_done_is_not_sent_twice(rig):
    stack, shim, fake, got = rig()

    def liar(npkt):
        fake.ion.tx_done(1, npkt)
        return TX_DOWN_AGAIN
    shim.registrant.rx_down = liar
    shim.ifp.if_transmit(shim.ifp, [stack.pool.from_bytes(b"M" * 60)])
    assert shim.ifp.if_snd.len == 0 and stack.pool.in_use == 0
    assert shim.driver_errors["rx_down"] == 1
    assert len(stack.pool._free) == len(set(map(id, stack.pool._free)))  # no double free


def test_devctl_raising_does_not_break_nicinfo(rig):
    stack, shim, fake, got = rig()

    def boom(*a):
        raise OSError("register read failed")
    shim.registrant.devctl = boom
    info = shim.extra_info(shim.ifp)
    assert "devctl GET_STATS failed" in info["legacy_driver_stats"]["error"]
    assert shim.driver_errors["devctl"] == 1


def test_outstanding_chains_do_not_share_fragments(rig):
    stack, shim, fake, got = rig(mclbytes=256)
    fake.auto_done = False                          # the driver holds both
    a = bytes(range(200)) + b"A" * 300
    b = bytes(range(200, 0, -1)) + b"B" * 300
    shim.ifp.if_transmit(shim.ifp, [stack.pool.from_bytes(a), stack.pool.from_bytes(b)])
    (n1, s1, *_), (n2, s2, *_) = fake.sent
    assert s1 == a and s2 == b
    again1 = b"".join(bytes(v.base[:v.len]) for v in n1.iovs())
    assert again1 == a                              # still intact after the second
    for n in (n1, n2):
        shim.tx_done(1, n)
    assert stack.pool.in_use == 0


def test_zero_copy_falls_back_to_copy_for_a_view_that_is_not_the_whole_buffer(rig):
    stack, shim, fake, got = rig("shimrxcopy=0")
    buf = bytearray(b"zz" + b"A" * 60 + b"BB")
    n = up_npkt(b"x")
    n.buffers[0].net_iov[0] = net_iov_t(memoryview(buf)[2:], 0, 62)
    n.framelen = 62
    shim.reg_tx_done(1, n, None)
    assert shim.tx_up(1, n, 0, 0, 0, 0, 0) == 1
    shim.softint()
    assert got[0].tobytes() == b"A" * 60 + b"BB"
    assert stack.pool.ext_in_use == 0 and shim.rx_copied == 1
    stack.pool.freem(got[0])


def test_tx_done_of_a_drivers_own_npkt_is_unknown(rig):
    stack, shim, fake, got = rig()
    n = up_npkt(b"N" * 60)
    n.org_data = bytearray(10)                      # as devn-tap's receive npkts have
    assert shim.tx_done(1, n) == -1
    assert shim.violations["tx_done_unknown"] == 1


def test_mount_failure_after_init_releases_the_driver():
    stack = Stack("unit", nmbclusters=16)
    fake = FakeDriver()
    shut = []

    def bad_devctl(*a):
        raise RuntimeError("no config")
    drv = Driver(name="devn-fake", kind="legacy", description="",
                 module=types.SimpleNamespace(init=fake.init, shutdown=lambda h: shut.append(h)))
    orig_init = fake.init

    def init(dll, ion, opts):
        rc = orig_init(dll, ion, opts)
        ion.registrant.devctl = bad_devctl
        return rc
    drv.module.init = init
    from iopkt.drvload import DriverError
    with pytest.raises(DriverError, match="devn-fake failed while being mounted"):
        shimmod.mount(stack, drv, "")
    assert shut and stack.ifnets == {}
    stack.close()


def test_a_link_that_goes_and_comes_back_takes_the_interface_down_and_up(rig):
    from iopkt.ifnet import IFF_RUNNING, IFF_UP, LINK_STATE_DOWN, LINK_STATE_UP
    stack, shim, fake, got = rig()
    ifp = shim.ifp
    shim.watch_link()                               # link up: nothing changes
    assert ifp.link_state == LINK_STATE_UP and ifp.flags & IFF_UP
    fake.link_flags = ionet.NIC_FLAG_LINK_DOWN
    shim.watch_link()
    assert ifp.link_state == LINK_STATE_DOWN and not ifp.flags & (IFF_UP | IFF_RUNNING)
    shim.watch_link()                               # still down: said once, stays down
    assert not ifp.flags & IFF_UP
    fake.link_flags = 0
    shim.watch_link()
    assert ifp.link_state == LINK_STATE_UP and ifp.flags & IFF_UP and ifp.flags & IFF_RUNNING
    # An interface the administrator took down stays down when nothing
    # happened to the link.
    stack.if_down(ifp)
    shim.watch_link()
    assert not ifp.flags & IFF_UP
