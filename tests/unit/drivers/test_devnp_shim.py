"""The shim's npkt <-> mbuf translation and contract checks, with a fake
legacy driver (no TAP, no root). The test plays the legacy driver's receive
thread (or runs a real one) and drives the stack's own event loop one turn
at a time, so every received packet reaches the stack the way it does in
production: tx_up -> hand-off queue -> HandoffQueue.kick -> Stack.wakeup
(the eventfd in the stack's epoll set) -> the loop runs the shim's soft
interrupt. A wake-up that is never sent, or a retry that is never
scheduled, leaves a packet behind and the test fails by its deadline."""

import array
import contextlib
import threading
import time
import types
import unittest.mock

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from devnp_shim import shim as shimmod
from iopkt.dev.autoconf import DeviceError, Driver, DriverError
from iopkt.ionet import ionet
from iopkt.ionet.ionet import (
    _NPKT_NOT_TXED,
    _NPKT_UP,
    EOK,
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
from iopkt.kern.handoff import HandoffQueue
from iopkt.kern.loop import MAX_EVENTS
from iopkt.kern.mbuf import M_PKTHDR
from iopkt.net.ifnet import (
    IFF_BROADCAST,
    IFF_MULTICAST,
    IFF_OACTIVE,
    IFF_RUNNING,
    IFF_SIMPLEX,
    IFF_UP,
)
from iopkt.stack.stack import Stack

MAC = b"\x02\x00\x00\x00\x00\x01"
DEADLINE = 2.0          # seconds a test waits for the stack before it fails


class FakeClock:
    """The stack's clock, moved by hand: a callout runs when the test says
    its time has come, never by luck of timing."""

    def __init__(self, now: float = 1000.0):
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, dt: float) -> None:
        self.now += dt


def loop_once(stack, timeout: float = 0.0) -> None:
    """One turn of Stack.run()'s loop, in the calling (stack) thread: due
    callouts, then one epoll wait of at most `timeout` seconds, then the
    handler of every ready fd (the wake-up eventfd's handler runs the soft
    interrupts). The stack has no run_once(); this is run()'s loop body
    without the `while` and without swallowing a handler's exception."""
    stack._run_callouts()
    for fd, ev in stack.ep.poll(timeout, MAX_EVENTS):
        h = stack._handlers.get(fd)
        if h is not None:
            h(ev)
    stack.loops += 1


def pump(stack, done, what: str, deadline: float = DEADLINE) -> None:
    """Run the stack loop until `done()` holds; fail after `deadline` s.
    Each turn blocks in epoll for at most 10 ms, so a test that gets its
    wake-up goes on at once and one that does not fails by the deadline."""
    end = time.monotonic() + deadline
    while not done():
        if time.monotonic() > end:
            pytest.fail(f"the stack never {what} within {deadline} s")
        loop_once(stack, 0.01)


def idle(stack, turns: int = 3) -> None:
    """A few turns of the loop that must find nothing to do (no wait)."""
    for _ in range(turns):
        loop_once(stack, 0.0)


class FakeDriver:
    """Records what the shim does to it; answers as told."""

    def __init__(self):
        self.sent = []          # (npkt, bytes, framelen, tot_iov) it sent
        self.back = []          # (npkt, done_hdl) given back through tx_done
        self.attempts = 0       # rx_down calls, whatever they answered
        self.rx_down_rc = TX_DOWN_OK
        self.again = 0          # answer TX_DOWN_AGAIN this many more times
        self.auto_done = True
        self.ion = None
        self.link_flags = 0     # NIC_FLAG_LINK_DOWN while the "cable" is out
        self.config = {}        # more NicConfig fields GET_CONFIG answers with
        self.stats = NicStats()     # what GET_STATS answers with
        self.stats_rc = EOK
        self.options = None     # the option string init was given
        self.reg_answer = None  # what ion.reg answered
        self.calls = []         # (name, argument) of each life-cycle call, in order
        self.queries = []       # (reg_hdl, dcmd, data) of each devctl

    def init(self, dll_hdl, ion, options):
        self.ion = ion
        self.dll_hdl = dll_hdl
        self.options = options
        reg = IoNetRegistrant(
            name="devn-fake", rx_down=self.rx_down, tx_done=self.tx_done,
            shutdown1=lambda h: self.called("shutdown1", h),
            shutdown2=lambda h: self.called("shutdown2", h),
            dl_advert=lambda h: self.called("dl_advert", h),
            devctl=self.devctl, flush=lambda h: EOK)
        self.reg_answer = ion.reg(dll_hdl, reg)
        self.reg_hdl = self.reg_answer[0]
        return EOK

    def called(self, name, arg):
        self.calls.append((name, arg))
        return EOK

    def shutdown(self, dll_hdl):
        return self.called("shutdown", dll_hdl)

    def devctl(self, reg_hdl, dcmd, data):
        self.queries.append((reg_hdl, dcmd, data))
        if dcmd == ionet.DCMD_IO_NET_GET_CONFIG:
            return EOK, NicConfig(**{"current_address": MAC, "mtu": 1500,
                                     "flags": self.link_flags, **self.config})
        return self.stats_rc, self.stats

    def rx_down(self, npkt):
        self.attempts += 1
        if self.again:
            self.again -= 1
            return TX_DOWN_AGAIN
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


class Got(list):
    """The mbufs that reached if_input (the test frees them), and the size
    of each burst the soft interrupt handed over."""

    def __init__(self):
        super().__init__()
        self.bursts = []

    def freeall(self, pool):
        for m in self:
            pool.freem(m)

    def data(self) -> list:
        return [m.tobytes() for m in self]


@pytest.fixture
def rig():
    """make(options) mounts the fake driver through the real shim on a real
    Stack. At teardown the stack shuts down (every interface detached) and
    nothing may be left out: no cluster, external or jumbo mbuf, no
    transmit npkt, no handler error."""
    def make(options="", mclbytes=2048, clock=None, nmbclusters=64, link_flags=0,
             config=None):
        kw = {"clock": clock} if clock is not None else {}
        stack = Stack("unit", nmbclusters=nmbclusters, mclbytes=mclbytes, **kw)
        made.append(stack)
        fake = FakeDriver()
        fake.link_flags = link_flags
        fake.config = config or {}
        drv = Driver(name="devn-fake", kind="legacy", description="",
                     module=types.SimpleNamespace(init=fake.init, shutdown=fake.shutdown))
        ifp = shimmod.mount(stack, drv, options)
        shims.append(ifp.softc)
        got = Got()

        def if_input(ifp, pkts):
            got.bursts.append(len(pkts))
            got.extend(pkts)
        ifp.if_input = if_input
        return stack, ifp.softc, fake, got
    made, shims = [], []
    yield make
    failures = []
    for stack in made:
        try:
            stack.shutdown(quiet=True)
            pool = stack.pool
            if pool.in_use or pool.ext_in_use or pool.jumbo_in_use:
                failures.append(f"leak: {pool.in_use} clusters, {pool.ext_in_use} external "
                                f"and {pool.jumbo_in_use} jumbo mbufs still out after shutdown")
            if stack.handler_errors:
                failures.append(f"stack handler errors: {stack.handler_errors}")
        finally:
            stack.close()
    for shim in shims:
        if len(shim._down_free) != shimmod.DOWN_NPKTS:
            failures.append(f"{shimmod.DOWN_NPKTS - len(shim._down_free)} transmit npkts "
                            "never came back to the shim")
    assert not failures, "; ".join(failures)


def send_up(shim, *npkts, hdl=None) -> list:
    """The legacy driver's receive thread: each npkt up with tx_up, as
    devn-tap's batch=0 does. Returns what each tx_up answered."""
    out = []
    for n in npkts:
        shim.reg_tx_done(1, n, hdl)
        out.append(shim.tx_up(1, n, 0, 0, 0, 0, 0))
    return out


# -- receive: npkt -> mbuf, through the hand-off queue and a real wake-up ------

def test_multi_fragment_npkt_becomes_one_mbuf_and_goes_back(rig):
    stack, shim, fake, got = rig()
    n = up_npkt(b"A" * 20, b"B" * 30, b"C" * 14)
    shim.reg_tx_done(1, n, "hdl")
    assert shim.tx_up(1, n, 0, 0, 0, 0, 0) == 1
    assert fake.back == [(n, "hdl")]                # copied: returned at once
    assert got == [] and shim.q.wakeups == 1 and stack.wakeups == 0   # handed over only
    pump(stack, lambda: got, "delivered the packet")
    assert got.data() == [b"A" * 20 + b"B" * 30 + b"C" * 14]
    assert got[0].pkt_len == 64 and got[0].rcvif is shim.ifp
    assert stack.wakeups == 1
    assert shim.q.stats()["enqueued"] == shim.q.stats()["dequeued"] == 1
    assert stack.pool.in_use == 1
    got.freeall(stack.pool)
    assert stack.pool.in_use == 0


def test_off_and_framelen_sub_are_trimmed(rig):
    stack, shim, fake, got = rig()
    n = up_npkt(b"xx" + b"D" * 60 + b"FCS!")
    shim.reg_tx_done(1, n, None)
    assert shim.tx_up(1, n, 2, 4, 0, 0, 0) == 1
    pump(stack, lambda: got, "delivered the packet")
    assert got.data() == [b"D" * 60]
    got.freeall(stack.pool)


def test_zero_copy_lends_the_buffer_until_the_stack_frees_it(rig):
    stack, shim, fake, got = rig("shimrxcopy=0")
    n = up_npkt(b"E" * 100)
    assert send_up(shim, n, hdl="h") == [1]
    pump(stack, lambda: got, "delivered the packet")
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
    assert shim.rx_refused == 1 and shim.ifp.ierrors == 1
    assert fake.back == []                                    # kept, not given back
    idle(stack)
    assert got == [] and stack.pool.in_use == 0
    assert shim.q.wakeups == 0 and stack.wakeups == 0        # nothing to wake up for


def test_lenient_fixes_and_passes(rig):
    stack, shim, fake, got = rig("lenient=1")
    n = up_npkt(b"G" * 64)
    n.framelen = 70
    assert send_up(shim, n) == [1]
    assert shim.violations["bad_framelen"] == 1
    pump(stack, lambda: got, "delivered the packet")
    assert got[0].pkt_len == 64 and got.data() == [b"G" * 64]
    got.freeall(stack.pool)


def test_tx_up_start_takes_a_chain_with_one_wakeup(rig):
    stack, shim, fake, got = rig()
    pk = [up_npkt(bytes([i]) * 60) for i in range(5)]
    pk[2].ref_cnt = 0                                          # one bad apple
    for a, b in zip(pk, pk[1:]):
        a.next = b
    left = shim.tx_up_start(1, pk[0], 0, 0, 0, 0, 0, "d")
    assert left is pk[2] and left.next is None                 # only it stays with the driver
    assert shim.q.stats()["wakeups"] == 1
    assert [n for n, _ in fake.back] == [pk[0], pk[1], pk[3], pk[4]]
    pump(stack, lambda: len(got) == 4, "delivered the chain")
    assert [m.tobytes()[0] for m in got] == [0, 1, 3, 4]
    assert got.bursts == [4] and stack.wakeups == 1
    got.freeall(stack.pool)


def test_a_chain_refused_whole_wakes_nobody(rig):
    stack, shim, fake, got = rig()
    pk = [up_npkt(bytes([i]) * 60) for i in range(3)]
    for a, b in zip(pk, pk[1:]):
        a.next = b
        a.ref_cnt = 0
    pk[2].ref_cnt = 0
    assert shim.tx_up_start(1, pk[0], 0, 0, 0, 0, 0, "d") is pk[0]   # all kept, in order
    assert pk[0].next is pk[1] and pk[1].next is pk[2] and pk[2].next is None
    assert shim.q.wakeups == 0 and fake.back == []
    idle(stack)
    assert stack.wakeups == 0 and got == []


def test_zero_copy_falls_back_to_copy_for_a_view_that_is_not_the_whole_buffer(rig):
    stack, shim, fake, got = rig("shimrxcopy=0")
    buf = bytearray(b"zz" + b"A" * 60 + b"BB")
    n = up_npkt(b"x")
    n.buffers[0].net_iov[0] = net_iov_t(memoryview(buf)[2:], 0, 62)
    n.framelen = 62
    assert send_up(shim, n) == [1]
    pump(stack, lambda: got, "delivered the packet")
    assert got.data() == [b"A" * 60 + b"BB"]
    assert stack.pool.ext_in_use == 0 and shim.rx_copied == 1 and shim.rx_wrapped == 0
    got.freeall(stack.pool)


# -- liveness: every hand-off wakes the stack, however many came before ------

def test_a_second_burst_after_a_drain_wakes_the_stack_again(rig):
    stack, shim, fake, got = rig()
    first = [up_npkt(bytes([i]) * 60) for i in range(3)]
    assert send_up(shim, *first) == [1, 1, 1]
    assert shim.q.wakeups == 1                      # one wake-up for the burst
    pump(stack, lambda: len(got) == 3, "delivered the first burst")
    assert stack.wakeups == 1 and got.bursts == [3]
    idle(stack)                                     # drained: nothing more to do
    assert stack.wakeups == 1
    # The stack has drained the queue and gone back to epoll: the next
    # burst must wake it again, or these packets sit in the queue forever.
    second = [up_npkt(bytes([10 + i]) * 60) for i in range(2)]
    assert send_up(shim, *second) == [1, 1]
    assert shim.q.wakeups == 2
    pump(stack, lambda: len(got) == 5, "woke up for the second burst")
    assert [m.tobytes()[0] for m in got] == [0, 1, 2, 10, 11]
    assert stack.wakeups == 2 and got.bursts == [3, 2]
    assert shim.q.stats()["enqueued"] == shim.q.stats()["dequeued"] == 5
    got.freeall(stack.pool)


def test_more_than_a_burst_comes_back_for_the_rest(rig):
    """shimburst=4: the soft interrupt takes four and wakes itself for the
    rest; that second wake-up must get through too."""
    stack, shim, fake, got = rig("shimburst=4")
    pk = [up_npkt(bytes([i]) * 60) for i in range(10)]
    for a, b in zip(pk, pk[1:]):
        a.next = b
    assert shim.tx_up_start(1, pk[0], 0, 0, 0, 0, 0, None) is None
    assert shim.q.wakeups == 1
    pump(stack, lambda: len(got) == 10, "delivered all ten")
    assert got.bursts == [4, 4, 2]                  # fair: one burst per turn
    assert [m.tobytes()[0] for m in got] == list(range(10))
    assert shim.q.wakeups == 3 and stack.wakeups == 3
    got.freeall(stack.pool)


class ReceiveThread:
    """The legacy driver's own receive thread: sends each burst it is given
    with tx_up_start and says when it has."""

    def __init__(self, shim):
        self.shim = shim
        self.todo: list = []
        self.go = threading.Semaphore(0)
        self.done = threading.Semaphore(0)
        self.left = []
        self.thread = threading.Thread(target=self.run, name="fake rx", daemon=True)
        self.thread.start()

    def run(self):
        while True:
            self.go.acquire()
            burst = self.todo.pop(0)
            if burst is None:
                return
            for a, b in zip(burst, burst[1:]):
                a.next = b
            self.left.append(self.shim.tx_up_start(1, burst[0], 0, 0, 0, 0, 0, "rx"))
            self.done.release()

    def send(self, burst):
        self.todo.append(burst)
        self.go.release()
        assert self.done.acquire(timeout=DEADLINE), "the receive thread is stuck"

    def stop(self):
        self.todo.append(None)
        self.go.release()
        self.thread.join(DEADLINE)
        assert not self.thread.is_alive()


def test_bursts_from_the_drivers_own_thread_each_wake_the_stack(rig):
    stack, shim, fake, got = rig()
    rx = ReceiveThread(shim)
    try:
        for k in range(3):
            rx.send([up_npkt(bytes([k * 10 + i]) * 60) for i in range(k + 2)])
            want = sum(range(2, k + 3))
            pump(stack, lambda n=want: len(got) == n, f"woke up for burst {k}")
            assert stack.wakeups == k + 1 and shim.q.wakeups == k + 1
    finally:
        rx.stop()
    assert got.bursts == [2, 3, 4] and rx.left == [None, None, None]
    assert [m.tobytes()[0] for m in got] == [0, 1, 10, 11, 12, 20, 21, 22, 23]
    assert len(fake.back) == 9
    got.freeall(stack.pool)


def test_a_producer_racing_the_stack_loses_nothing(rig):
    """The driver's thread sends 300 packets in small bursts while the
    stack drains concurrently: whatever the interleaving of put, kick and
    begin_drain, every packet arrives, in order, exactly once."""
    stack, shim, fake, got = rig(nmbclusters=512)
    seen = []

    def if_input(ifp, pkts):
        for m in pkts:
            seen.append(int.from_bytes(m.tobytes()[:2], "big"))
            stack.pool.freem(m)
    shim.ifp.if_input = if_input
    total = 300
    refused = []

    def produce():
        for i in range(0, total, 3):
            burst = [up_npkt(j.to_bytes(2, "big") * 30) for j in range(i, min(i + 3, total))]
            for n in burst:
                shim.reg_tx_done(1, n, None)
                if shim.tx_up(1, n, 0, 0, 0, 0, 0) != 1:
                    refused.append(n)
            time.sleep(0)                           # let the stack in between bursts
    t = threading.Thread(target=produce, name="fake rx", daemon=True)
    t.start()
    pump(stack, lambda: len(seen) == total, f"delivered all {total} packets")
    t.join(DEADLINE)
    assert not t.is_alive()
    assert refused == [] and seen == list(range(total))
    q = shim.q.stats()
    assert q["enqueued"] == q["dequeued"] == total and q["drops"] == 0
    assert 1 <= q["wakeups"] <= total and stack.wakeups <= q["wakeups"]
    assert len(fake.back) == total


# -- a full hand-off queue: drop, count, free, and the driver keeps its npkt --

def test_a_full_handoff_queue_drops_counts_and_gives_the_npkts_back(rig):
    stack, shim, fake, got = rig("shimqlen=4")
    pk = [up_npkt(bytes([i]) * 60) for i in range(10)]
    # The stack thread is busy elsewhere: nothing drains while these come.
    assert send_up(shim, *pk, hdl="d") == [1] * 4 + [0] * 6
    ifp = shim.ifp
    assert shim.q.drops == 6 and len(shim.q) == 4 and shim.q.hiwat == 4
    assert ifp.iqdrops == 6 and ifp.in_discards["qfull"] == 6 and shim.rx_refused == 6
    assert stack.pool.in_use == 4                   # only the queued ones hold a cluster
    # Each npkt is back with the driver exactly once: the four copied ones
    # through tx_done, the six refused ones by tx_up's 0 (never tx_done).
    assert [n for n, _ in fake.back] == pk[:4]
    assert shim.q.wakeups == 1
    pump(stack, lambda: len(got) == 4, "drained the full queue")
    assert [m.tobytes()[0] for m in got] == [0, 1, 2, 3]
    got.freeall(stack.pool)
    got.clear()
    assert stack.pool.in_use == 0
    # Drained, it takes packets again (and wakes the stack for them).
    assert send_up(shim, pk[4], hdl="d") == [1]
    pump(stack, lambda: len(got) == 1, "delivered after the queue drained")
    assert got.data() == [bytes([4]) * 60] and shim.q.drops == 6
    got.freeall(stack.pool)
    assert [n for n, _ in fake.back] == pk[:5]


def test_a_full_queue_refuses_the_rest_of_a_chain_in_order(rig):
    stack, shim, fake, got = rig("shimqlen=4,shimrxcopy=0")
    pk = [up_npkt(bytes([i]) * 60) for i in range(7)]
    for a, b in zip(pk, pk[1:]):
        a.next = b
    left = shim.tx_up_start(1, pk[0], 0, 0, 0, 0, 0, "d")
    kept = []
    while left is not None:
        kept.append(left)
        left = left.next
    assert kept == pk[4:]                           # the driver keeps these three
    assert shim.q.drops == 3 and shim.ifp.in_discards["qfull"] == 3
    assert stack.pool.ext_in_use == 4 and stack.pool.in_use == 0
    assert fake.back == []                          # zero copy: lent until freed
    pump(stack, lambda: len(got) == 4, "drained the full queue")
    got.freeall(stack.pool)
    assert [n for n, _ in fake.back] == pk[:4] and stack.pool.ext_in_use == 0


def test_handoff_queue_put_refuses_when_full():
    q = HandoffQueue(2, lambda: None)
    assert q.put("a") and q.put("b")
    assert q.put("c") is False and q.put("d") is False
    assert len(q) == 2 and q.drops == 2 and q.enqueued == 2 and q.hiwat == 2
    assert q.take(5) == ["a", "b"] and q.put("e") and q.take(5) == ["e"]


class RacingPool:
    """The stack's pool, but the first allocation lets `race` run: another
    producer thread of the same driver getting its packet on the queue
    between the shim's queue-full check and its put()."""

    def __init__(self, pool, race):
        self._pool = pool
        self._race = race

    def _first(self):
        race, self._race = self._race, None
        if race is not None:
            race()

    def get(self):
        m = self._pool.get()
        self._first()
        return m

    def get_ext(self, *args):
        m = self._pool.get_ext(*args)
        self._first()
        return m

    def __getattr__(self, name):
        return getattr(self._pool, name)


@pytest.mark.parametrize("options", ["", "shimrxcopy=0"])
def test_a_put_that_loses_the_race_for_the_last_slot_is_dropped_and_freed(rig, options):
    stack, shim, fake, got = rig("shimqlen=1," + options)
    loser, winner = up_npkt(b"L" * 60), up_npkt(b"W" * 60)
    answers = []
    shim.pool = RacingPool(stack.pool, lambda: answers.append(send_up(shim, winner, hdl="w")))
    assert send_up(shim, loser, hdl="l") == [0]     # the queue filled under it
    assert answers == [[1]]
    assert shim.q.drops == 1 and len(shim.q) == 1 and shim.q.enqueued == 1
    assert shim.ifp.iqdrops == 1
    assert stack.pool.in_use + stack.pool.ext_in_use == 1   # the loser's mbuf was freed
    pump(stack, lambda: len(got) == 1, "delivered the winner")
    assert got.data() == [b"W" * 60]
    got.freeall(stack.pool)
    assert stack.pool.in_use == stack.pool.ext_in_use == 0


@pytest.mark.parametrize("options", ["", "shimrxcopy=0"])
def test_a_lost_race_counts_like_any_full_queue_refusal_and_leaves_the_npkt_free(rig, options):
    stack, shim, fake, got = rig("shimqlen=1," + options)
    ifp = shim.ifp
    first, refused = up_npkt(b"A" * 60), up_npkt(b"B" * 60)
    assert send_up(shim, first, refused, hdl="a") == [1, 0]     # an ordinary full queue
    assert (shim.rx_refused, ifp.in_discards["qfull"], ifp.iqdrops, shim.q.drops) == (1, 1, 1, 1)
    pump(stack, lambda: len(got) == 1, "drained the queue")
    loser, winner = up_npkt(b"L" * 60), up_npkt(b"W" * 60)
    shim.pool = RacingPool(stack.pool, lambda: send_up(shim, winner, hdl="w"))
    assert send_up(shim, loser, hdl="l") == [0]
    assert (shim.rx_refused, ifp.in_discards["qfull"], ifp.iqdrops, shim.q.drops) == (2, 2, 2, 2)
    lent = 2 if options else 0                      # `first` and the winner, not the loser
    assert shim.extra_info(ifp)["npkts_lent_to_stack"] == lent
    pump(stack, lambda: len(got) == 2, "delivered the winner")
    shim.pool = stack.pool
    assert send_up(shim, loser, hdl="again") == [1]     # the driver kept it: it may resend
    assert shim.violations["up_while_held"] == 0
    pump(stack, lambda: len(got) == 3, "delivered the loser")
    assert got.data() == [b"A" * 60, b"W" * 60, b"L" * 60]
    got.freeall(stack.pool)
    assert sorted(h for _, h in fake.back) == ["a", "again", "w"]
    assert {id(n) for n, _ in fake.back} == {id(first), id(winner), id(loser)}


@pytest.mark.parametrize("options", ["", "shimrxcopy=0"])
def test_a_put_that_loses_the_race_gives_the_npkt_back_once(rig, options):
    """io-net: tx_up answering 0 means the driver keeps the packet, so the
    shim must not also hand it back through tx_done (the driver would put
    it on its free list twice)."""
    stack, shim, fake, got = rig("shimqlen=1," + options)
    loser, winner = up_npkt(b"L" * 60), up_npkt(b"W" * 60)
    shim.pool = RacingPool(stack.pool, lambda: send_up(shim, winner, hdl="w"))
    assert send_up(shim, loser, hdl="l") == [0]     # the driver keeps `loser`...
    pump(stack, lambda: len(got) == 1, "delivered the winner")
    got.freeall(stack.pool)
    backs = [n for n, _ in fake.back]
    assert loser not in backs, "npkt refused by tx_up (0) was also given back with tx_done"
    assert backs == [winner]


class RacingHeld(set):
    """The shim's set of npkts lent to the stack, but the first look into it
    lets `race` run: the stack thread freeing a lent mbuf (and so giving
    its npkt back) between two looks of the driver's thread."""

    def __init__(self, items, race):
        super().__init__(items)
        self._race = race

    def __contains__(self, item):
        found = set.__contains__(self, item)
        race, self._race = self._race, None
        if race is not None:
            race()
        return found


def test_a_resend_that_races_the_give_back_is_judged_on_what_the_shim_holds_now(rig):
    """The driver sends up an npkt whose buffer the stack is freeing at that
    very moment. By the time the shim looks closer the npkt is back with
    the driver, so it breaks no rule: the shim takes it, and never refuses
    a packet as a contract error without naming the rule it broke."""
    stack, shim, fake, got = rig("shimrxcopy=0")
    n = up_npkt(b"R" * 60)
    assert send_up(shim, n, hdl="1") == [1]
    pump(stack, lambda: got, "delivered the packet")
    shim.up_held = RacingHeld(shim.up_held, lambda: stack.pool.freem(got.pop()))
    assert send_up(shim, n, hdl="2") == [1]
    assert [b for b, _ in fake.back] == [n]         # the first trip ended in between
    assert sum(shim.violations.values()) == 0
    assert shim.rx_refused == 0 and shim.ifp.in_discards["shim_contract"] == 0
    pump(stack, lambda: got, "delivered the resend")
    got.freeall(stack.pool)
    assert [b for b, _ in fake.back] == [n, n]      # and so did the second


# -- transmit: mbuf chain -> npkt -------------------------------------------

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


def test_tx_down_again_is_retried_by_the_stacks_timer(rig):
    clock = FakeClock()
    stack, shim, fake, got = rig(clock=clock)
    ifp = shim.ifp
    fake.rx_down_rc = TX_DOWN_AGAIN
    frames = [b"J" * 60, b"K" * 61, b"L" * 62]
    ifp.if_transmit(ifp, [stack.pool.from_bytes(f) for f in frames])
    assert fake.attempts == 1 and shim.tx_again == 1 and fake.sent == []
    assert ifp.flags & IFF_OACTIVE and ifp.if_snd.len == 3 and stack.pool.in_use == 3
    fake.rx_down_rc = TX_DOWN_OK                    # the wire is free again...
    ifp.if_transmit(ifp, [stack.pool.from_bytes(b"M" * 63)])
    assert fake.attempts == 1 and ifp.if_snd.len == 4   # ...but OACTIVE: only queued
    idle(stack)
    assert fake.attempts == 1                       # the retry is not due yet
    clock.advance(0.001)
    pump(stack, lambda: ifp.opackets == 4, "retried the transmit")
    assert [s for _, s, _, _ in fake.sent] == frames + [b"M" * 63]   # once each, in order
    assert fake.attempts == 5 and shim.tx_again == 1
    assert not ifp.flags & IFF_OACTIVE and ifp.if_snd.len == 0
    assert stack.pool.in_use == 0 and ifp.obytes == 60 + 61 + 62 + 63
    clock.advance(0.001)
    idle(stack)
    assert fake.attempts == 5 and len(fake.sent) == 4   # nothing sent twice


def test_tx_down_again_twice_retries_until_the_driver_takes_it(rig):
    clock = FakeClock()
    stack, shim, fake, got = rig(clock=clock)
    ifp = shim.ifp
    fake.again = 2
    ifp.if_transmit(ifp, [stack.pool.from_bytes(b"N" * 70)])
    assert fake.attempts == 1 and ifp.flags & IFF_OACTIVE
    clock.advance(0.001)
    pump(stack, lambda: fake.attempts == 2, "retried the transmit")
    assert shim.tx_again == 2 and ifp.flags & IFF_OACTIVE and ifp.if_snd.len == 1
    clock.advance(0.001)
    pump(stack, lambda: ifp.opackets == 1, "retried the transmit again")
    assert fake.attempts == 3 and [s for _, s, _, _ in fake.sent] == [b"N" * 70]
    assert not ifp.flags & IFF_OACTIVE and stack.pool.in_use == 0


def test_stop_cancels_a_pending_retry(rig):
    clock = FakeClock()
    stack, shim, fake, got = rig(clock=clock)
    ifp = shim.ifp
    fake.rx_down_rc = TX_DOWN_AGAIN
    ifp.if_transmit(ifp, [stack.pool.from_bytes(b"O" * 60)])
    stack.if_down(ifp)                              # purges if_snd, cancels the retry
    assert ifp.out_discards["down"] == 1 and stack.pool.in_use == 0
    assert not ifp.flags & IFF_OACTIVE
    fake.rx_down_rc = TX_DOWN_OK
    clock.advance(0.001)
    idle(stack)
    assert fake.attempts == 1 and fake.sent == []


# -- a misbehaving driver is reported by name; nothing leaks, nothing dies --

def test_rx_down_raising_is_counted_and_frees_everything(rig, caplog):
    stack, shim, fake, got = rig()
    caplog.set_level("INFO", logger="iopkt")

    def boom(npkt):
        raise RuntimeError("DMA engine on fire")
    shim.registrant.rx_down = boom
    shim.ifp.if_transmit(shim.ifp, [stack.pool.from_bytes(b"K" * 60)])
    assert shim.driver_errors == {"rx_down": 1}
    assert shim.ifp.oerrors == 1 and stack.pool.in_use == 0
    assert len(shim._down_free) == shimmod.DOWN_NPKTS
    assert warnings_of(caplog) == [
        "en0: legacy driver devn-fake failed in rx_down: DMA engine on fire "
        "(said once; counted)"]


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
    with pytest.raises(DriverError) as e:
        shimmod.mount(stack, drv, "")
    assert str(e.value) == ("legacy driver devn-fake failed while being mounted: "
                            "RuntimeError: no config")
    assert shut and stack.ifnets == {}
    stack.close()


def test_a_link_that_goes_and_comes_back_takes_the_interface_down_and_up(rig):
    """The shim asks the driver for its link state once a second, from the
    stack's own callout."""
    from iopkt.net.ifnet import IFF_RUNNING, IFF_UP, LINK_STATE_DOWN, LINK_STATE_UP
    clock = FakeClock()
    stack, shim, fake, got = rig(clock=clock)
    ifp = shim.ifp

    def second():
        clock.advance(1.0)
        loop_once(stack)
    second()                                        # link up: nothing changes
    assert ifp.link_state == LINK_STATE_UP and ifp.flags & IFF_UP
    fake.link_flags = ionet.NIC_FLAG_LINK_DOWN
    idle(stack)                                     # not asked before its second is up
    assert ifp.link_state == LINK_STATE_UP
    second()
    assert ifp.link_state == LINK_STATE_DOWN and not ifp.flags & (IFF_UP | IFF_RUNNING)
    second()                                        # still down: said once, stays down
    assert not ifp.flags & IFF_UP
    fake.link_flags = 0
    second()
    assert ifp.link_state == LINK_STATE_UP and ifp.flags & IFF_UP and ifp.flags & IFF_RUNNING
    # An interface the administrator took down stays down when nothing
    # happened to the link.
    stack.if_down(ifp)
    second()
    assert not ifp.flags & IFF_UP


def test_a_link_down_at_mount_that_comes_up_is_shown_up(rig):
    """The driver reports no link when it is mounted (cable out), then the
    link comes: the interface must end up with its link up, as after a
    link lost and found later."""
    from iopkt.net.ifnet import IFF_RUNNING, IFF_UP, LINK_STATE_DOWN, LINK_STATE_UP
    clock = FakeClock()
    stack, shim, fake, got = rig(clock=clock, link_flags=ionet.NIC_FLAG_LINK_DOWN)
    ifp = shim.ifp
    assert ifp.link_state == LINK_STATE_DOWN
    fake.link_flags = 0                             # the cable goes in
    clock.advance(1.0)
    loop_once(stack)                                # the shim's link check
    assert ifp.link_state == LINK_STATE_UP, "link up, but the interface still says down"
    assert ifp.flags & IFF_UP and ifp.flags & IFF_RUNNING


# -- options: the shim takes its own out and passes the rest to the driver ----

DEFAULTS = {"shimrxcopy": 1, "lenient": 0, "shimqlen": 512, "shimburst": 64}


@pytest.mark.parametrize("text", ["", None, " , ,"])
def test_no_options_means_the_defaults_and_nothing_for_the_driver(text):
    assert shimmod.split_options(text) == (DEFAULTS, "")


def test_the_shims_options_are_taken_out_and_the_rest_passed_on_in_order():
    mine, rest = shimmod.split_options(
        "name=tap0, shimqlen=8,mac=02:00:00:00:00:01,,shimrxcopy=0 ,lenient=1,"
        "shimburst=4,promisc")
    assert mine == {"shimrxcopy": 0, "lenient": 1, "shimqlen": 8, "shimburst": 4}
    assert rest == "name=tap0,mac=02:00:00:00:00:01,promisc"


@pytest.mark.parametrize("key,value", [
    ("shimrxcopy", 0), ("shimrxcopy", 1), ("lenient", 0), ("lenient", 1),
    ("shimqlen", 1), ("shimqlen", 65536), ("shimburst", 1), ("shimburst", 4096)])
def test_each_option_takes_the_ends_of_its_range(key, value):
    mine, rest = shimmod.split_options(f"{key}={value}")
    assert mine == {**DEFAULTS, key: value} and rest == ""


@pytest.mark.parametrize("text,message", [
    ("shimrxcopy=2", "devnp-shim: option shimrxcopy=2: must be 0 or 1"),
    ("shimrxcopy=-1", "devnp-shim: option shimrxcopy=-1: must be 0 or 1"),
    ("lenient=2", "devnp-shim: option lenient=2: must be 0 or 1"),
    ("lenient=-1", "devnp-shim: option lenient=-1: must be 0 or 1"),
    ("shimqlen=0", "devnp-shim: option shimqlen=0: must be 1..65536"),
    ("shimqlen=65537", "devnp-shim: option shimqlen=65537: must be 1..65536"),
    ("shimburst=0", "devnp-shim: option shimburst=0: must be 1..4096"),
    ("shimburst=4097", "devnp-shim: option shimburst=4097: must be 1..4096"),
    ("shimqlen=x", "devnp-shim: option shimqlen=x: expected a whole number"),
    ("shimburst=", "devnp-shim: option shimburst=: expected a whole number"),
    ("shimqlen=5=6", "devnp-shim: option shimqlen=5=6: expected a whole number"),
])
def test_a_bad_shim_option_is_refused_with_a_message_naming_it(text, message):
    with pytest.raises(DriverError) as e:
        shimmod.split_options("name=tap0," + text)
    assert str(e.value) == message


def test_mount_gives_the_shim_its_options_and_the_driver_the_rest(rig):
    stack, shim, fake, got = rig("shimqlen=8,name=t0,shimburst=4,lenient=1,shimrxcopy=0,x")
    assert fake.options == "name=t0,x"
    assert shim.rxcopy is False and shim.lenient is True and shim.burst == 4
    assert shim.q.maxlen == 8
    info = shim.extra_info(shim.ifp)
    assert info["shimrxcopy"] == 0 and info["lenient"] == 1
    assert info["handoff_queue"]["maxlen"] == 8


# -- registration and the io-net memory calls a driver makes -----------------

def test_registration_names_the_interface_enN_and_answers_hdl_cell_endpoint(rig):
    stack, shim, fake, got = rig()
    assert fake.reg_answer == (1, 0, 0)
    assert shim.ifp.name == "en0" and shim.ifp.dname == "devnp-shim"
    assert stack.ifnets["en0"] is shim.ifp
    # A second legacy driver on the same stack gets the next unit.
    fake2 = FakeDriver()
    drv2 = Driver(name="devn-other", kind="legacy", description="",
                  module=types.SimpleNamespace(init=fake2.init, shutdown=fake2.shutdown))
    ifp2 = shimmod.mount(stack, drv2, "")
    assert fake2.reg_answer == (1, 0, 1) and ifp2.name == "en1"
    # Each instance has its own handle: a driver keys its instances by it.
    assert fake.dll_hdl is shim.dll_hdl and fake2.dll_hdl is ifp2.softc.dll_hdl
    assert fake.dll_hdl is not None and fake.dll_hdl is not fake2.dll_hdl


def test_a_driver_that_registers_twice_is_refused(rig):
    stack, shim, fake, got = rig()
    with pytest.raises(RuntimeError) as e:
        shim.reg(shim.dll_hdl, shim.registrant)
    assert str(e.value) == ("devn-fake: registers twice; the shim takes one interface per "
                            "driver instance")
    assert shim.ifp.name == "en0" and list(stack.ifnets) == ["en0"]


def test_the_memory_a_driver_allocates_is_plain_zeroed_buffers(rig):
    stack, shim, fake, got = rig()
    buf = shim.alloc(100)
    assert type(buf) is bytearray and buf == bytearray(100)
    assert shim.free(buf) is None
    for n in (shim.alloc_up_npkt(60), shim.alloc_down_npkt(1, 60)):
        assert n.tot_iov == 1 and len(n.buffers) == 1 and n.buffers[0].niov == 1
        iov = n.buffers[0].net_iov[0]
        assert iov.len == 60 and iov.phys == id(iov.base.obj)
        assert isinstance(iov.base, memoryview) and type(iov.base.obj) is bytearray
        assert iov.base.nbytes == 60 and not iov.base.readonly
        assert bytes(iov.base) == bytes(60)


def test_an_npkt_from_alloc_up_npkt_can_be_lent_to_the_stack_as_it_is(rig):
    stack, shim, fake, got = rig("shimrxcopy=0")
    n = shim.alloc_up_npkt(60)
    n.buffers[0].net_iov[0].base[:] = b"P" * 60
    n.framelen, n.flags, n.ref_cnt = 60, _NPKT_UP, 1
    assert send_up(shim, n, hdl="a") == [1]
    assert shim.rx_wrapped == 1 and shim.rx_copied == 0 and shim.violations["bad_tot_iov"] == 0
    pump(stack, lambda: got, "delivered the packet")
    assert got.data() == [b"P" * 60]
    got.freeall(stack.pool)
    assert fake.back == [(n, "a")]


def test_the_calls_a_bottom_driver_does_not_use_answer_as_io_net_did(rig):
    stack, shim, fake, got = rig()
    assert shim.devctl(1, ionet.DCMD_IO_NET_GET_STATS, None) == (ionet.ENOTSUP, None)
    assert shim.tx_down(1, npkt_t()) == TX_DOWN_FAILED
    assert shim.reg_tx_done(1, npkt_t(), "h") == EOK


# -- contract violations: counted every time, logged once per kind ------------

def warnings_of(caplog):
    return [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]


def test_a_violation_is_logged_once_per_kind_with_the_interface_and_driver(rig, caplog):
    stack, shim, fake, got = rig()
    caplog.set_level("INFO", logger="iopkt")
    for _ in range(3):
        n = up_npkt(b"F" * 64)
        n.ref_cnt = 2
        assert send_up(shim, n) == [0]
    n = up_npkt(b"F" * 64)
    n.flags = 0
    assert send_up(shim, n) == [0]
    assert shim.violations["bad_ref_cnt"] == 3 and shim.violations["not_up"] == 1
    assert shim.rx_refused == 4 and shim.ifp.in_discards["shim_contract"] == 4
    assert shim.ifp.ierrors == 4
    assert warnings_of(caplog) == [
        "en0: legacy driver devn-fake sent up a packet whose ref_cnt is not 1; packet dropped",
        "en0: legacy driver devn-fake sent up a packet without _NPKT_UP; packet dropped"]


def test_lenient_mode_accepts_every_fixable_error_at_once_and_says_so(rig, caplog):
    stack, shim, fake, got = rig("lenient=1")
    caplog.set_level("INFO", logger="iopkt")
    n = up_npkt(b"Q" * 30, b"R" * 34)
    n.framelen, n.tot_iov, n.ref_cnt, n.flags = 99, 7, 0, 0
    assert send_up(shim, n, hdl="q") == [1]
    assert (n.framelen, n.tot_iov) == (64, 2)           # put right, as io-net did
    assert {k: v for k, v in shim.violations.items() if v} == {
        "bad_ref_cnt": 1, "not_up": 1, "bad_tot_iov": 1, "bad_framelen": 1}
    assert shim.rx_refused == 0 and shim.ifp.ierrors == 0
    assert shim.ifp.in_discards["shim_contract"] == 0
    assert warnings_of(caplog) == [
        "en0: legacy driver devn-fake sent up a packet whose ref_cnt is not 1 "
        "(accepted: lenient mode)",
        "en0: legacy driver devn-fake sent up a packet without _NPKT_UP "
        "(accepted: lenient mode)",
        "en0: legacy driver devn-fake sent up a packet whose tot_iov is not its real "
        "fragment count (accepted: lenient mode)",
        "en0: legacy driver devn-fake sent up a packet whose framelen is not the sum of its "
        "fragment lengths (accepted: lenient mode)"]
    pump(stack, lambda: got, "delivered the packet")
    assert got.data() == [b"Q" * 30 + b"R" * 34]
    got.freeall(stack.pool)


def test_lenient_mode_still_drops_what_it_cannot_fix(rig, caplog):
    stack, shim, fake, got = rig("lenient=1")
    caplog.set_level("INFO", logger="iopkt")
    fake.auto_done = False
    shim.ifp.if_transmit(shim.ifp, [stack.pool.from_bytes(b"H" * 60)])
    npkt = fake.sent[0][0]
    assert shim.tx_done(1, npkt) == EOK
    assert shim.tx_done(1, npkt) == -1
    assert warnings_of(caplog) == [
        "en0: legacy driver devn-fake called tx_done twice for the same packet; "
        "packet dropped"]


def test_a_tx_done_before_the_driver_registered_is_reported_by_the_shim(caplog):
    caplog.set_level("INFO", logger="iopkt")
    stack = Stack("unit", nmbclusters=16)
    fake = FakeDriver()
    answers = []

    def init(dll, ion, opts):
        answers.append(ion.tx_done(0, npkt_t()))     # before ion.reg: no interface yet
        return fake.init(dll, ion, opts)
    drv = Driver(name="devn-fake", kind="legacy", description="",
                 module=types.SimpleNamespace(init=init, shutdown=fake.shutdown))
    try:
        ifp = shimmod.mount(stack, drv, "")
        assert answers == [-1] and ifp.softc.violations["tx_done_unknown"] == 1
        assert warnings_of(caplog) == [
            "shim: legacy driver devn-fake called tx_done for a packet the shim never "
            "gave it; packet dropped"]
    finally:
        stack.shutdown(quiet=True)
        stack.close()


# -- receive: what the shim refuses, and how it counts each refusal -----------

def test_nothing_left_after_off_and_framelen_sub_is_a_runt(rig):
    stack, shim, fake, got = rig()
    n = up_npkt(b"0123456789")
    shim.reg_tx_done(1, n, "r")
    assert shim.tx_up(1, n, 6, 4, 0, 0, 0) == 0             # 10 - 6 - 4 = 0 bytes
    ifp = shim.ifp
    assert shim.rx_refused == 1 and ifp.in_discards["runt"] == 1 and ifp.ierrors == 1
    assert shim.tx_up(1, n, 8, 4, 0, 0, 0) == 0             # less than nothing
    assert shim.rx_refused == 2 and ifp.in_discards["runt"] == 2 and ifp.ierrors == 2
    assert ifp.iqdrops == 0 and fake.back == [] and stack.pool.in_use == 0
    one = up_npkt(b"0123456789A")
    shim.reg_tx_done(1, one, "r")
    assert shim.tx_up(1, one, 6, 4, 0, 0, 0) == 1           # one byte is a packet
    pump(stack, lambda: got, "delivered the packet")
    assert got.data() == [b"6"] and ifp.in_discards["runt"] == 2
    got.freeall(stack.pool)


@pytest.mark.parametrize("frags", [[1984], [1000, 984]])
def test_a_packet_that_fills_a_cluster_exactly_is_copied_whole(rig, frags):
    stack, shim, fake, got = rig()                  # 2048-byte clusters, 64 of headroom
    data = [bytes([65 + i]) * k for i, k in enumerate(frags)]
    assert send_up(shim, up_npkt(*data)) == [1]
    pump(stack, lambda: got, "delivered the packet")
    assert got.data() == [b"".join(data)] and got[0].pkt_len == got[0].len == 1984
    assert shim.ifp.in_discards["too_long"] == 0
    got.freeall(stack.pool)


@pytest.mark.parametrize("frags", [[1985], [1000, 985]])
def test_a_packet_longer_than_a_cluster_is_refused_and_its_cluster_freed(rig, frags):
    stack, shim, fake, got = rig()
    n = up_npkt(*[b"L" * k for k in frags])
    assert send_up(shim, n) == [0]
    ifp = shim.ifp
    assert ifp.in_discards["too_long"] == 1 and ifp.ierrors == 1 and ifp.iqdrops == 0
    assert send_up(shim, n) == [0]
    assert ifp.in_discards["too_long"] == 2 and ifp.ierrors == 2 and shim.rx_refused == 2
    assert stack.pool.in_use == 0 and shim.rx_copied == 0 and fake.back == []
    assert len(shim.q) == 0


def test_a_trailer_trimmed_off_the_last_fragment_lets_a_full_packet_fit(rig):
    stack, shim, fake, got = rig()
    n = up_npkt(b"A" * 1000, b"B" * 984, b"FCS!")            # 1988 bytes, 1984 wanted
    shim.reg_tx_done(1, n, None)
    assert shim.tx_up(1, n, 0, 4, 0, 0, 0) == 1
    pump(stack, lambda: got, "delivered the packet")
    assert got.data() == [b"A" * 1000 + b"B" * 984]
    got.freeall(stack.pool)


def test_no_cluster_free_means_the_driver_keeps_its_npkt(rig):
    stack, shim, fake, got = rig(nmbclusters=4)
    held = [stack.pool.get() for _ in range(4)]
    n = up_npkt(b"N" * 60)
    assert send_up(shim, n) == [0]
    ifp = shim.ifp
    assert ifp.in_discards["nobufs"] == 1 and ifp.iqdrops == 1 and ifp.ierrors == 0
    assert send_up(shim, n) == [0]
    assert ifp.in_discards["nobufs"] == 2 and ifp.iqdrops == 2 and shim.rx_refused == 2
    assert fake.back == [] and shim.rx_copied == 0 and len(shim.q) == 0
    for m in held:
        stack.pool.free(m)
    assert send_up(shim, n, hdl="again") == [1]                 # the pool has room again
    assert fake.back == [(n, "again")] and ifp.in_discards["nobufs"] == 2
    pump(stack, lambda: got, "delivered the packet")
    got.freeall(stack.pool)


def test_no_external_header_free_means_the_buffer_is_not_lent(rig):
    stack, shim, fake, got = rig("shimrxcopy=0", nmbclusters=4)
    pool = stack.pool
    held = [pool.get_ext(bytearray(8), 0, 8, lambda a: None, None)
            for _ in range(pool.nexthdrs)]
    n = up_npkt(b"X" * 60)
    assert send_up(shim, n) == [0]
    ifp = shim.ifp
    assert ifp.in_discards["nobufs"] == 1 and ifp.iqdrops == 1
    assert send_up(shim, n) == [0]
    assert ifp.in_discards["nobufs"] == 2 and ifp.iqdrops == 2 and shim.rx_refused == 2
    assert shim.rx_wrapped == 0 and shim.extra_info(ifp)["npkts_lent_to_stack"] == 0
    for m in held:
        pool.free(m)
    assert send_up(shim, n, hdl="x") == [1]                     # not "still held"
    assert shim.violations["up_while_held"] == 0 and shim.rx_wrapped == 1
    pump(stack, lambda: got, "delivered the packet")
    got.freeall(stack.pool)
    assert fake.back == [(n, "x")]


def test_a_frame_sent_up_while_the_shim_unmounts_stays_with_the_driver(rig):
    stack, shim, fake, got = rig()
    ifp = shim.ifp
    last = up_npkt(b"Z" * 60)
    answers = []

    def shutdown1(h):                   # the receive thread's last frame, as it stops
        answers.append(send_up(shim, last, hdl="z"))
        return fake.called("shutdown1", h)
    shim.registrant.shutdown1 = shutdown1
    stack.if_detach(ifp)
    assert answers == [[0]]
    assert ifp.in_discards["qfull"] == 1 and ifp.iqdrops == 1
    assert shim.q.drops == 1 and shim.rx_refused == 1
    assert fake.back == [] and stack.pool.in_use == 0


# -- receive: fragments gathered into one mbuf --------------------------------

def two_bufs(*groups):
    """An npkt whose fragments come in several net_buf_t (one per group)."""
    n = npkt_t()
    n.buffers = [net_buf_t([net_iov_t(memoryview(bytearray(f)), 0, len(f)) for f in g])
                 for g in groups]
    n.framelen = sum(len(f) for g in groups for f in g)
    n.tot_iov = sum(len(g) for g in groups)
    n.flags, n.ref_cnt = _NPKT_UP, 1
    return n


@pytest.mark.parametrize("groups", [
    [[b"A" * 20], [b"B" * 40]],
    [[b"A" * 20], [b"B" * 30, b"C" * 10]],
    [[b"A" * 20, b"B" * 30], [b"C" * 10]],
])
@pytest.mark.parametrize("options", ["", "shimrxcopy=0"])
def test_fragments_in_several_net_bufs_are_gathered_in_order(rig, groups, options):
    stack, shim, fake, got = rig(options)
    n = two_bufs(*groups)
    assert send_up(shim, n, hdl="g") == [1]
    assert sum(shim.violations.values()) == 0
    assert shim.rx_copied == 1 and shim.rx_wrapped == 0     # many fragments: never lent
    assert fake.back == [(n, "g")]
    pump(stack, lambda: got, "delivered the packet")
    assert got.data() == [b"".join(f for g in groups for f in g)]
    got.freeall(stack.pool)


def test_off_may_skip_whole_fragments_and_part_of_the_next(rig):
    stack, shim, fake, got = rig()
    n = up_npkt(b"a" * 4, b"b" * 2 + b"B" * 4, b"C" * 50, b"FCS!")
    shim.reg_tx_done(1, n, None)
    assert shim.tx_up(1, n, 6, 4, 0, 0, 0) == 1
    pump(stack, lambda: got, "delivered the packet")
    assert got.data() == [b"B" * 4 + b"C" * 50]
    got.freeall(stack.pool)


def test_a_last_fragment_of_one_byte_is_not_lost(rig):
    stack, shim, fake, got = rig()
    assert send_up(shim, up_npkt(b"A" * 59, b"!")) == [1]
    pump(stack, lambda: got, "delivered the packet")
    assert got.data() == [b"A" * 59 + b"!"]
    got.freeall(stack.pool)


# -- receive: zero copy only for a buffer the stack may keep as it is ---------

def one_frag(base, length):
    n = npkt_t()
    n.buffers = [net_buf_t([net_iov_t(base, 0, length)])]
    n.framelen, n.tot_iov, n.flags, n.ref_cnt = length, 1, _NPKT_UP, 1
    return n


def test_zero_copy_lends_a_plain_bytearray_and_trims_it_in_place(rig):
    stack, shim, fake, got = rig("shimrxcopy=0")
    buf = bytearray(b"hh" + b"S" * 60 + b"FCS!")
    n = one_frag(buf, len(buf))
    shim.reg_tx_done(1, n, "s")
    assert shim.tx_up(1, n, 2, 4, 0, 0, 0) == 1
    assert shim.rx_wrapped == 1 and shim.rx_copied == 0
    assert shim.extra_info(shim.ifp)["npkts_lent_to_stack"] == 1
    pump(stack, lambda: got, "delivered the packet")
    m = got[0]
    assert m.buf is buf and m.off == 2 and m.len == m.pkt_len == 60
    assert got.data() == [b"S" * 60] and m.rcvif is shim.ifp
    assert fake.back == []
    got.freeall(stack.pool)
    assert fake.back == [(n, "s")]
    assert shim.extra_info(shim.ifp)["npkts_lent_to_stack"] == 0
    assert send_up(shim, n, hdl="t") == [1]                 # back with the driver: reusable
    assert shim.violations["up_while_held"] == 0 and shim.rx_wrapped == 2
    pump(stack, lambda: len(got) == 2, "delivered the packet again")
    stack.pool.freem(got[1])


@pytest.mark.parametrize("make", [
    lambda data: memoryview(bytearray(data)).toreadonly(),     # the stack may not write it
    lambda data: memoryview(array.array("B", data)),           # not a bytearray
    lambda data: memoryview(bytes(data)),
    lambda data: bytes(data),
], ids=["readonly-view", "array-view", "bytes-view", "bytes"])
def test_zero_copy_copies_a_buffer_it_cannot_lend(rig, make):
    stack, shim, fake, got = rig("shimrxcopy=0")
    n = one_frag(make(b"V" * 60), 60)
    assert send_up(shim, n, hdl="v") == [1]
    assert shim.rx_copied == 1 and shim.rx_wrapped == 0
    assert fake.back == [(n, "v")]                          # copied: back at once
    pump(stack, lambda: got, "delivered the packet")
    assert got.data() == [b"V" * 60] and stack.pool.ext_in_use == 0
    got.freeall(stack.pool)


# -- receive: giving npkts back to the driver --------------------------------

def test_a_chain_comes_back_unlinked_each_with_the_chains_done_handle(rig):
    stack, shim, fake, got = rig()
    pk = [up_npkt(bytes([i]) * 60) for i in range(3)]
    for a, b in zip(pk, pk[1:]):
        a.next = b
    assert shim.tx_up_start(1, pk[0], 0, 0, 0, 0, 0, "chain") is None
    assert fake.back == [(n, "chain") for n in pk]
    assert all(n.next is None for n in pk)
    pump(stack, lambda: len(got) == 3, "delivered the chain")
    got.freeall(stack.pool)


def test_a_done_handle_is_used_once(rig):
    stack, shim, fake, got = rig()
    n = up_npkt(b"D" * 60)
    assert send_up(shim, n, hdl="first") == [1]
    assert shim.tx_up(1, n, 0, 0, 0, 0, 0) == 1             # again, without reg_tx_done
    assert fake.back == [(n, "first"), (n, None)]
    pump(stack, lambda: len(got) == 2, "delivered both")
    got.freeall(stack.pool)


def test_a_driver_whose_tx_done_raises_is_counted_and_the_packet_still_goes_up(rig, caplog):
    stack, shim, fake, got = rig()
    caplog.set_level("INFO", logger="iopkt")

    def boom(npkt, hdl):
        raise ValueError("free list corrupt")
    shim.registrant.tx_done = boom
    assert send_up(shim, up_npkt(b"E" * 60), up_npkt(b"F" * 60)) == [1, 1]
    assert shim.driver_errors == {"tx_done": 2}
    assert warnings_of(caplog) == [
        "en0: legacy driver devn-fake failed in tx_done: free list corrupt "
        "(said once; counted)"]
    pump(stack, lambda: len(got) == 2, "delivered both")
    assert got.data() == [b"E" * 60, b"F" * 60]
    got.freeall(stack.pool)


# -- transmit: the npkt a driver's rx_down is given ---------------------------

def watch_rx_down(shim, fake):
    """Wrap the fake driver's rx_down: record what each npkt looks like as
    the driver receives it, before the driver touches it."""
    seen = []

    def rx_down(npkt):
        seen.append({"flags": npkt.flags, "ref_cnt": npkt.ref_cnt, "framelen": npkt.framelen,
                     "tot_iov": npkt.tot_iov, "lens": [v.len for v in npkt.iovs()],
                     "owned": npkt.org_data is not None})
        return fake.rx_down(npkt)
    shim.registrant.rx_down = rx_down
    return seen


def test_each_down_npkt_starts_clean_whatever_its_last_trip_left(rig):
    stack, shim, fake, got = rig()
    seen = watch_rx_down(shim, fake)
    ifp = shim.ifp
    fake.rx_down_rc = TX_DOWN_FAILED        # the driver marks it _NPKT_NOT_TXED
    ifp.if_transmit(ifp, [stack.pool.from_bytes(b"a" * 60)])
    fake.rx_down_rc = TX_DOWN_OK
    ifp.if_transmit(ifp, [stack.pool.from_bytes(b"b" * 61)])
    assert fake.sent[0][0] is fake.sent[1][0]               # the same npkt, reused
    one = {"flags": 0, "ref_cnt": 1, "tot_iov": 1, "owned": True}
    assert seen == [{**one, "framelen": 60, "lens": [60]},
                    {**one, "framelen": 61, "lens": [61]}]
    assert ifp.opackets == 1 and ifp.obytes == 61
    assert ifp.oerrors == 1 and ifp.out_discards["txerror"] == 1


def test_a_chain_longer_than_max_iov_goes_down_whole_and_the_npkt_shrinks_after(rig):
    stack, shim, fake, got = rig(mclbytes=256)
    seen = watch_rx_down(shim, fake)
    ifp = shim.ifp
    long = bytes(range(256)) * 12
    m = stack.pool.from_bytes(long)
    lens = []
    x = m
    while x is not None:
        lens.append(x.len)
        x = x.next
    assert len(lens) > shimmod.MAX_IOV
    ifp.if_transmit(ifp, [m])
    ifp.if_transmit(ifp, [stack.pool.from_bytes(b"s" * 100)])
    mid = bytes(range(200)) * 2
    ifp.if_transmit(ifp, [stack.pool.from_bytes(mid)])
    assert [s for _, s, _, _ in fake.sent] == [long, b"s" * 100, mid]
    assert [(d["tot_iov"], d["lens"]) for d in seen] == [
        (len(lens), lens), (1, [100]), (2, [192, 208])]
    assert fake.sent[0][0] is fake.sent[1][0] is fake.sent[2][0]
    assert ifp.opackets == 3 and ifp.obytes == len(long) + 100 + 400
    assert stack.pool.in_use == 0


def test_a_packet_still_carrying_offload_work_is_dropped_not_sent(rig):
    from iopkt.kern.mbuf import M_CSUM_TCPv4
    stack, shim, fake, got = rig()
    ifp = shim.ifp
    bad = [stack.pool.from_bytes(b"O" * 60) for _ in range(2)]
    for m in bad:
        m.csum_flags = M_CSUM_TCPv4
    ifp.if_transmit(ifp, [bad[0], stack.pool.from_bytes(b"P" * 60), bad[1]])
    assert [s for _, s, _, _ in fake.sent] == [b"P" * 60]   # the next one still goes
    assert shim.tx_offload_leaked == 2
    assert shim.extra_info(ifp)["tx_offload_leaked"] == 2
    assert ifp.out_discards["txerror"] == 2 and ifp.oerrors == 2 and ifp.opackets == 1
    assert stack.pool.in_use == 0 and len(shim._down_free) == shimmod.DOWN_NPKTS


def test_tx_done_counts_each_packet_sent_or_not_sent(rig):
    stack, shim, fake, got = rig()
    ifp = shim.ifp
    fake.rx_down_rc = TX_DOWN_FAILED
    ifp.if_transmit(ifp, [stack.pool.from_bytes(b"f" * 60), stack.pool.from_bytes(b"g" * 70)])
    assert ifp.out_discards["txerror"] == 2 and ifp.oerrors == 2
    assert ifp.opackets == 0 and ifp.obytes == 0
    assert shim.driver_errors == {}                 # FAILED with tx_done: the io-net way
    fake.rx_down_rc = TX_DOWN_OK
    ifp.if_transmit(ifp, [stack.pool.from_bytes(b"h" * 80), stack.pool.from_bytes(b"i" * 90)])
    assert ifp.opackets == 2 and ifp.obytes == 170 and ifp.oerrors == 2
    assert stack.pool.in_use == 0


def test_rx_down_answering_no_io_net_code_is_a_driver_error(rig, caplog):
    stack, shim, fake, got = rig()
    caplog.set_level("INFO", logger="iopkt")
    shim.registrant.rx_down = lambda npkt: 7
    ifp = shim.ifp
    ifp.if_transmit(ifp, [stack.pool.from_bytes(b"j" * 60), stack.pool.from_bytes(b"k" * 60)])
    assert shim.driver_errors == {"rx_down": 2}
    assert ifp.out_discards["txerror"] == 2 and ifp.oerrors == 2 and ifp.opackets == 0
    assert stack.pool.in_use == 0 and len(shim._down_free) == shimmod.DOWN_NPKTS
    assert ifp.if_snd.len == 0 and not ifp.flags & IFF_OACTIVE
    assert warnings_of(caplog) == [
        "en0: legacy driver devn-fake failed in rx_down: returned 7, not an io-net code "
        "(said once; counted)"]


def test_again_after_tx_done_is_a_driver_error_and_the_rest_still_goes(rig, caplog):
    stack, shim, fake, got = rig()
    caplog.set_level("INFO", logger="iopkt")

    def liar(npkt):
        fake.sent.append(npkt)
        fake.ion.tx_done(1, npkt)
        return TX_DOWN_AGAIN
    shim.registrant.rx_down = liar
    ifp = shim.ifp
    ifp.if_transmit(ifp, [stack.pool.from_bytes(b"l" * 60), stack.pool.from_bytes(b"m" * 60)])
    assert len(fake.sent) == 2 and ifp.opackets == 2     # tx_done said sent
    assert shim.driver_errors == {"rx_down": 2} and shim.tx_again == 0
    assert ifp.if_snd.len == 0 and not ifp.flags & IFF_OACTIVE
    assert warnings_of(caplog) == [
        "en0: legacy driver devn-fake failed in rx_down: returned TX_DOWN_AGAIN for a "
        "packet it had already given back with tx_done (said once; counted)"]


@pytest.mark.parametrize("rc", [TX_DOWN_FAILED, TX_DOWN_AGAIN])
def test_a_late_tx_done_for_an_npkt_the_shim_took_back_frees_nothing(rig, rc):
    clock = FakeClock()
    stack, shim, fake, got = rig(clock=clock)
    ifp = shim.ifp
    fake.auto_done = False
    taken = []

    def rx_down(npkt):          # "not sent", without tx_done: the shim takes it back
        taken.append(npkt)
        return rc
    shim.registrant.rx_down = rx_down
    ifp.if_transmit(ifp, [stack.pool.from_bytes(b"n" * 60)])
    assert shim.tx_done(1, taken[0]) == -1          # the driver's second thoughts
    assert shim.violations["tx_done_twice"] == 1
    assert ifp.opackets == 0 and len(shim._down_free) == shimmod.DOWN_NPKTS
    assert stack.pool.in_use == (1 if rc == TX_DOWN_AGAIN else 0)   # still queued, or freed
    shim.registrant.rx_down = fake.rx_down
    fake.auto_done = True
    clock.advance(0.001)
    idle(stack)
    assert ifp.opackets == (1 if rc == TX_DOWN_AGAIN else 0) and stack.pool.in_use == 0


def test_when_every_transmit_npkt_is_out_the_stack_waits_for_one_back(rig):
    clock = FakeClock()
    stack, shim, fake, got = rig(clock=clock, nmbclusters=600)
    ifp = shim.ifp
    fake.auto_done = False
    for _ in range(2):
        ifp.if_transmit(ifp, [stack.pool.from_bytes(b"T" * 60) for _ in range(256)])
    assert len(fake.sent) == shimmod.DOWN_NPKTS
    assert shim.extra_info(ifp)["tx_npkts_free"] == 0 and not ifp.flags & IFF_OACTIVE
    ifp.if_transmit(ifp, [stack.pool.from_bytes(b"U" * 60)])
    assert len(fake.sent) == shimmod.DOWN_NPKTS and ifp.if_snd.len == 1
    assert ifp.flags & IFF_OACTIVE and fake.attempts == shimmod.DOWN_NPKTS
    assert shim.tx_done(1, fake.sent[0][0]) == EOK
    clock.advance(0.001)
    pump(stack, lambda: len(fake.sent) == shimmod.DOWN_NPKTS + 1, "sent the waiting packet")
    assert fake.sent[-1][1] == b"U" * 60 and fake.sent[-1][0] is fake.sent[0][0]
    assert not ifp.flags & IFF_OACTIVE and ifp.if_snd.len == 0
    for npkt, *_ in fake.sent[1:]:
        assert shim.tx_done(1, npkt) == EOK
    assert ifp.opackets == shimmod.DOWN_NPKTS + 1 and stack.pool.in_use == 0


# -- interface flags: RUNNING while up, OACTIVE only while a retry is due -----

UP_FLAGS = IFF_UP | IFF_RUNNING | IFF_BROADCAST | IFF_SIMPLEX | IFF_MULTICAST


def test_a_mounted_interface_is_up_and_running_and_down_clears_only_that(rig):
    stack, shim, fake, got = rig()
    ifp = shim.ifp
    assert ifp.flags == UP_FLAGS
    stack.if_down(ifp)
    assert ifp.flags == IFF_BROADCAST | IFF_SIMPLEX | IFF_MULTICAST
    stack.if_up(ifp)
    assert ifp.flags == UP_FLAGS


def test_a_retry_clears_oactive_and_nothing_else(rig):
    clock = FakeClock()
    stack, shim, fake, got = rig(clock=clock)
    ifp = shim.ifp
    fake.again = 1
    ifp.if_transmit(ifp, [stack.pool.from_bytes(b"V" * 60)])
    assert ifp.flags == UP_FLAGS | IFF_OACTIVE
    clock.advance(0.001)
    pump(stack, lambda: ifp.opackets == 1, "retried the transmit")
    assert ifp.flags == UP_FLAGS


def test_a_retry_cancelled_by_stop_does_not_fire_after_the_interface_comes_back(rig):
    clock = FakeClock()
    stack, shim, fake, got = rig(clock=clock)
    ifp = shim.ifp
    fake.rx_down_rc = TX_DOWN_AGAIN
    ifp.if_transmit(ifp, [stack.pool.from_bytes(b"W" * 60)])   # retry due in 0.5 ms
    stack.if_down(ifp)
    clock.advance(0.0003)
    stack.if_up(ifp)
    ifp.if_transmit(ifp, [stack.pool.from_bytes(b"X" * 60)])   # a new retry, 0.5 ms on
    assert fake.attempts == 2 and ifp.flags & IFF_OACTIVE
    fake.rx_down_rc = TX_DOWN_OK
    clock.advance(0.0003)                           # when the cancelled one was due
    idle(stack)
    assert fake.attempts == 2 and ifp.opackets == 0
    clock.advance(0.0003)                           # the new one is due
    pump(stack, lambda: ifp.opackets == 1, "retried the transmit")
    assert fake.attempts == 3 and [s for _, s, _, _ in fake.sent] == [b"X" * 60]


def test_a_retry_that_comes_due_while_the_interface_is_down_sends_nothing(rig):
    """ARP and ICMP frames can reach if_transmit on an interface that is
    down; the driver's TX_DOWN_AGAIN then schedules a retry. When it comes
    due the interface is not running: the frame waits for the next start."""
    clock = FakeClock()
    stack, shim, fake, got = rig(clock=clock)
    ifp = shim.ifp
    stack.if_down(ifp)
    fake.again = 1
    ifp.if_transmit(ifp, [stack.pool.from_bytes(b"w" * 60)])
    assert fake.attempts == 1 and ifp.flags & IFF_OACTIVE
    clock.advance(0.001)
    idle(stack)
    assert fake.attempts == 1 and ifp.if_snd.len == 1 and not ifp.flags & IFF_OACTIVE
    stack.if_up(ifp)
    ifp.if_transmit(ifp, [stack.pool.from_bytes(b"u" * 60)])
    assert [s for _, s, _, _ in fake.sent] == [b"w" * 60, b"u" * 60]
    assert ifp.opackets == 2 and stack.pool.in_use == 0


# -- the link watch: one GET_CONFIG a second, whatever the driver answers -----

def config_queries(fake):
    return [q for q in fake.queries if q[1] == ionet.DCMD_IO_NET_GET_CONFIG]


def test_the_link_is_asked_about_once_a_second_with_the_drivers_handle(rig):
    clock = FakeClock()
    stack, shim, fake, got = rig(clock=clock)
    assert config_queries(fake) == [(1, ionet.DCMD_IO_NET_GET_CONFIG, None)]   # at mount
    clock.advance(0.999)
    loop_once(stack)
    assert len(config_queries(fake)) == 1
    clock.advance(0.001)
    loop_once(stack)
    clock.advance(1.0)
    loop_once(stack)
    assert config_queries(fake) == [(1, ionet.DCMD_IO_NET_GET_CONFIG, None)] * 3


def test_a_link_lost_and_found_is_logged_with_the_drivers_name(rig, caplog):
    from iopkt.net.ifnet import LINK_STATE_DOWN, LINK_STATE_UP
    clock = FakeClock()
    stack, shim, fake, got = rig(clock=clock)
    caplog.set_level("INFO", logger="iopkt")
    ifp = shim.ifp
    fake.link_flags = ionet.NIC_FLAG_LINK_DOWN
    clock.advance(1.0)
    loop_once(stack)
    assert ifp.link_state == LINK_STATE_DOWN and shim.link_downed is True
    fake.link_flags = 0
    clock.advance(1.0)
    loop_once(stack)
    assert ifp.link_state == LINK_STATE_UP and ifp.flags == UP_FLAGS
    assert [r.getMessage() for r in caplog.records if "link" in r.getMessage()] == [
        "en0: link lost: legacy driver devn-fake reports link down; interface marked down",
        "en0: legacy driver devn-fake reports link up again; interface up"]


@pytest.mark.parametrize("answer", ["raise", "error", "no-config"])
def test_a_link_query_that_fails_changes_nothing_and_the_watch_goes_on(rig, answer, caplog):
    from iopkt.net.ifnet import LINK_STATE_DOWN, LINK_STATE_UP
    clock = FakeClock()
    stack, shim, fake, got = rig(clock=clock)
    caplog.set_level("INFO", logger="iopkt")
    ifp = shim.ifp
    real = shim.registrant.devctl
    down = NicConfig(current_address=MAC, flags=ionet.NIC_FLAG_LINK_DOWN)

    def devctl(reg_hdl, dcmd, data):
        if answer == "raise":
            raise OSError("bus error")
        return (5, down) if answer == "error" else (EOK, None)
    shim.registrant.devctl = devctl
    clock.advance(1.0)
    loop_once(stack)
    assert ifp.link_state == LINK_STATE_UP and ifp.flags == UP_FLAGS
    assert shim.driver_errors == ({"devctl": 1} if answer == "raise" else {})
    assert warnings_of(caplog) == (
        ["en0: legacy driver devn-fake failed in devctl: bus error (said once; counted)"]
        if answer == "raise" else [])
    assert stack.handler_errors == {}
    shim.registrant.devctl = real                   # the driver answers again
    fake.link_flags = ionet.NIC_FLAG_LINK_DOWN
    clock.advance(1.0)
    loop_once(stack)
    assert ifp.link_state == LINK_STATE_DOWN


# -- unmount: stop the driver, take everything back, let it free its own ------

def test_unmount_calls_the_driver_in_order_and_releases_the_interface(rig, caplog):
    stack, shim, fake, got = rig()
    caplog.set_level("INFO", logger="iopkt")
    fake.stats = NicStats(extra={"npkts_free": 3, "npkts_total": 4})
    ifp = shim.ifp
    assert fake.calls == [("dl_advert", 1)]
    stack.if_detach(ifp)
    assert fake.calls == [("dl_advert", 1), ("shutdown1", 1), ("shutdown2", 1),
                          ("shutdown", shim.dll_hdl)]
    assert shim.registrant is None and "en0" not in stack.ifnets
    assert shim.softint not in stack._softints
    assert shim.extra_info(ifp)["legacy_driver_stats"] == {}   # nothing left to ask
    assert ("en0: devn-fake unmounted: 3/4 npkts back with the driver, 512 transmit npkts "
            "back with the shim (of 512), 0 mbuf clusters in use in the stack"
            in caplog.messages)


@pytest.mark.parametrize("options", ["", "shimrxcopy=0"])
def test_unmount_frees_what_waits_in_the_handoff_queue(rig, options):
    stack, shim, fake, got = rig(options)
    pk = [up_npkt(bytes([i]) * 60) for i in range(3)]
    assert send_up(shim, *pk, hdl="u") == [1, 1, 1]
    assert len(shim.q) == 3                         # the stack has not run yet
    stack.if_detach(shim.ifp)
    assert len(shim.q) == 0 and got == []
    assert stack.pool.in_use == 0 and stack.pool.ext_in_use == 0
    assert fake.back == [(n, "u") for n in pk]      # every npkt back with the driver
    assert ("shutdown2", 1) in fake.calls


def test_unmount_waits_for_lent_mbufs_to_come_back(rig, caplog):
    clock = FakeClock()
    stack, shim, fake, got = rig("shimrxcopy=0", clock=clock)
    caplog.set_level("INFO", logger="iopkt")
    fake.stats = NicStats(extra={"npkts_free": 4, "npkts_total": 4})
    n = up_npkt(b"Y" * 60)
    assert send_up(shim, n, hdl="y") == [1]
    pump(stack, lambda: got, "delivered the packet")
    stack.if_detach(shim.ifp)                       # the stack still holds the mbuf
    assert "en0: waiting for 1 mbufs lent to the stack to come back (shimrxcopy=0)" \
        in caplog.messages
    assert fake.calls == [("dl_advert", 1), ("shutdown1", 1)]
    for _ in range(3):
        clock.advance(0.01)
        loop_once(stack)
    assert fake.calls[-1] == ("shutdown1", 1) and shim.registrant is not None
    got.freeall(stack.pool)                         # it comes back...
    assert fake.back == [(n, "y")]                  # ...to the driver, still there
    clock.advance(0.01)
    loop_once(stack)                                # the next look finishes the unmount
    assert fake.calls[-2:] == [("shutdown2", 1), ("shutdown", shim.dll_hdl)]
    assert shim.registrant is None
    assert not any("never came back" in m for m in caplog.messages)
    assert ("en0: devn-fake unmounted: 4/4 npkts back with the driver, 512 transmit "
            "npkts back with the shim (of 512), 0 mbuf clusters in use in the stack"
            in caplog.messages)


def test_unmount_gives_up_on_lent_mbufs_after_five_seconds(rig, caplog):
    clock = FakeClock()
    stack, shim, fake, got = rig("shimrxcopy=0", clock=clock)
    caplog.set_level("INFO", logger="iopkt")
    assert send_up(shim, up_npkt(b"Z" * 60), hdl="z") == [1]
    pump(stack, lambda: got, "delivered the packet")
    stack.if_detach(shim.ifp)
    for _ in range(499):                            # a look every 10 ms
        clock.advance(0.01)
        loop_once(stack)
    assert shim.registrant is not None and ("shutdown2", 1) not in fake.calls
    clock.advance(0.01)
    loop_once(stack)                                # the 500th look: 5 s are up
    assert shim.registrant is None and ("shutdown2", 1) in fake.calls
    assert warnings_of(caplog) == ["en0: 1 lent mbufs never came back; unmounting anyway"]
    assert any(m.startswith("en0: devn-fake unmounted: ") for m in caplog.messages)
    got.freeall(stack.pool)                         # too late: the driver is gone
    assert fake.back == [] and stack.pool.ext_in_use == 0


def test_a_stack_shutting_down_does_not_wait_for_lent_mbufs(rig, caplog):
    stack, shim, fake, got = rig("shimrxcopy=0")
    caplog.set_level("INFO", logger="iopkt")
    assert send_up(shim, up_npkt(b"S" * 60), hdl="s") == [1]
    pump(stack, lambda: got, "delivered the packet")
    stack.shutdown(quiet=True)
    assert shim.registrant is None and ("shutdown", shim.dll_hdl) in fake.calls
    assert "en0: 1 lent mbufs never came back; unmounting anyway" in warnings_of(caplog)
    got.freeall(stack.pool)
    assert fake.back == []


def test_a_driver_that_deregisters_itself_while_stopping_is_not_called_again(rig):
    stack, shim, fake, got = rig()

    def shutdown1(h):
        fake.called("shutdown1", h)
        return fake.ion.dereg(h)                    # as some io-net drivers do
    shim.registrant.shutdown1 = shutdown1
    stack.if_detach(shim.ifp)
    assert fake.calls == [("dl_advert", 1), ("shutdown1", 1), ("shutdown", shim.dll_hdl)]
    assert shim.driver_errors == {} and shim.registrant is None
    assert "en0" not in stack.ifnets


def test_a_driver_failing_to_shut_down_is_named_and_the_unmount_finishes(rig, caplog):
    stack, shim, fake, got = rig()
    caplog.set_level("INFO", logger="iopkt")

    def boom(what):
        def fail(*a):
            raise RuntimeError(f"{what} exploded")
        return fail
    shim.registrant.shutdown1 = boom("thread")
    shim.registrant.shutdown2 = boom("memory")
    shim.drv.module.shutdown = boom("module")
    stack.if_detach(shim.ifp)
    assert shim.driver_errors == {"shutdown1": 1, "shutdown2": 1}
    assert shim.registrant is None and "en0" not in stack.ifnets
    assert warnings_of(caplog) == [
        "en0: legacy driver devn-fake failed in shutdown1: thread exploded (said once; counted)",
        "en0: legacy driver devn-fake failed in shutdown2: memory exploded (said once; counted)",
        "en0: legacy driver devn-fake failed in shutdown: module exploded"]


# -- nicinfo: what the shim shows about itself and its driver -----------------

def test_nicinfo_shows_the_shims_counters_and_the_drivers_stats(rig):
    stack, shim, fake, got = rig()
    fake.stats = NicStats(rxed_ok=5, octets_rxed_ok=300, extra={"npkts_free": 7})
    info = shim.extra_info(shim.ifp)
    driver_stats = {**{k: 0 for k in vars(NicStats()) if k != "extra"},
                    "rxed_ok": 5, "octets_rxed_ok": 300, "npkts_free": 7}
    assert info == {
        "driver": "devnp-shim (io-net emulation) running devn-fake in its own thread",
        "legacy_driver": "devn-fake",
        "shimrxcopy": 1, "lenient": 0,
        "rx_copied": 0, "rx_wrapped": 0, "rx_refused": 0, "tx_again": 0,
        "tx_offload_leaked": 0, "npkts_lent_to_stack": 0, "tx_npkts_free": 512,
        "handoff_queue": {"len": 0, "maxlen": 512, "enqueued": 0, "dequeued": 0,
                          "drops": 0, "hiwat": 0, "wakeups": 0},
        "contract_violations": dict.fromkeys(shimmod.CHECKS, 0),
        "driver_errors": {},
        "legacy_driver_stats": driver_stats}
    assert (1, ionet.DCMD_IO_NET_GET_STATS, None) in fake.queries


def test_nicinfo_counters_move_with_the_traffic(rig):
    clock = FakeClock()
    stack, shim, fake, got = rig("shimqlen=2", clock=clock)
    bad = up_npkt(b"b" * 60)
    bad.ref_cnt = 3
    assert send_up(shim, up_npkt(b"a" * 60), bad, up_npkt(b"c" * 60), up_npkt(b"d" * 60)) \
        == [1, 0, 1, 0]
    fake.again = 1
    shim.ifp.if_transmit(shim.ifp, [stack.pool.from_bytes(b"t" * 60)])
    info = shim.extra_info(shim.ifp)
    assert (info["rx_copied"], info["rx_wrapped"], info["rx_refused"], info["tx_again"]) \
        == (2, 0, 2, 1)
    assert info["handoff_queue"] == {"len": 2, "maxlen": 2, "enqueued": 2, "dequeued": 0,
                                     "drops": 1, "hiwat": 2, "wakeups": 1}
    assert info["contract_violations"] == {**dict.fromkeys(shimmod.CHECKS, 0), "bad_ref_cnt": 1}
    assert info["tx_npkts_free"] == 512
    clock.advance(0.001)
    pump(stack, lambda: len(got) == 2 and shim.ifp.opackets == 1, "caught up")
    got.freeall(stack.pool)


@pytest.mark.parametrize("answer", [(5, NicStats(rxed_ok=1)), (EOK, None)])
def test_driver_stats_are_empty_when_the_driver_does_not_give_them(rig, answer):
    stack, shim, fake, got = rig()
    fake.stats_rc, fake.stats = answer
    assert shim.extra_info(shim.ifp)["legacy_driver_stats"] == {}


def test_driver_stats_say_why_they_are_missing_when_devctl_raises(rig, caplog):
    stack, shim, fake, got = rig()
    caplog.set_level("INFO", logger="iopkt")

    def boom(*a):
        raise OSError("register read failed")
    shim.registrant.devctl = boom
    assert shim.extra_info(shim.ifp)["legacy_driver_stats"] == {
        "error": "devctl GET_STATS failed: register read failed"}
    assert shim.driver_errors == {"devctl": 1}
    assert warnings_of(caplog) == [
        "en0: legacy driver devn-fake failed in devctl: register read failed "
        "(said once; counted)"]


# -- mount: what the driver's config makes of enN, and failures named ---------

@pytest.fixture
def bare_stack():
    stack = Stack("unit", nmbclusters=16)
    yield stack
    stack.shutdown(quiet=True)
    stack.close()


def test_the_drivers_config_becomes_the_interfaces(rig):
    stack, shim, fake, got = rig(config={"device_name": "TAP t7", "mtu": 9000,
                                         "media_rate": 100000})
    ifp = shim.ifp
    assert ifp.lladdr == MAC and ifp.mtu == 9000 and ifp.baudrate == 100_000_000
    assert ifp.description == "devn-fake TAP t7" and ifp.if_devkey == "TAP t7"
    assert ifp.softc is shim and ifp.if_start == shim.start
    assert fake.calls == [("dl_advert", 1)]


def test_a_driver_with_no_device_name_gives_no_device_key(rig):
    stack, shim, fake, got = rig()
    assert shim.ifp.description == "devn-fake" and shim.ifp.if_devkey == ""
    assert shim.ifp.baudrate == 0


def test_frames_sent_up_during_init_reach_the_stack_after_the_mount(bare_stack):
    stack = bare_stack
    fake = FakeDriver()

    def init(dll, ion, opts):
        rc = fake.init(dll, ion, opts)
        n = up_npkt(b"early" * 12)
        ion.reg_tx_done(1, n, "e")
        assert ion.tx_up(1, n, 0, 0, 0, 0, 0) == 1
        return rc
    drv = Driver(name="devn-fake", kind="legacy", description="",
                 module=types.SimpleNamespace(init=init, shutdown=fake.shutdown))
    ifp = shimmod.mount(stack, drv, "")
    got = []
    ifp.if_input = lambda ifp, pkts: got.extend(pkts)
    pump(stack, lambda: got, "delivered the frame sent up during init")
    assert [m.tobytes() for m in got] == [b"early" * 12]
    for m in got:
        stack.pool.freem(m)


def test_a_frame_sent_up_before_registering_is_refused_and_named(bare_stack, caplog):
    # io-net gives the handle tx_up needs only at registration: a driver
    # sending up before it has no handle, and there is no interface yet.
    # The shim refuses (the driver keeps its npkt), names the driver, and
    # the mount goes on.
    stack = bare_stack
    fake = FakeDriver()
    early = []

    def init(dll, ion, opts):
        n = up_npkt(b"early" * 12)          # the handle io-net will give, guessed
        ion.reg_tx_done(1, n, "e")
        early.append(ion.tx_up(1, n, 0, 0, 0, 0, 0))
        chain = up_npkt(b"c" * 60)
        chain.next = up_npkt(b"d" * 60)
        early.append(ion.tx_up_start(0, chain, 0, 0, 0, 0, 0, "e") is chain)
        return fake.init(dll, ion, opts)
    drv = Driver(name="devn-fake", kind="legacy", description="",
                 module=types.SimpleNamespace(init=init, shutdown=fake.shutdown))
    with caplog.at_level("WARNING", logger="iopkt"):
        ifp = shimmod.mount(stack, drv, "")
    shim = ifp.softc
    assert early == [0, True] and fake.back == []
    assert shim.violations["bad_reg_hdl"] == 2 and shim.rx_refused == 2
    assert ifp.in_discards["shim_contract"] == 0 and len(shim.q) == 0
    assert [r.getMessage() for r in caplog.records if "reg_hdl" in r.getMessage()] == [
        "shim: legacy driver devn-fake sent up a packet with a reg_hdl io-net never gave it "
        "(before registering, or after deregistering); packet dropped"]
    n = up_npkt(b"w" * 60)                  # a wrong handle once registered
    shim.reg_tx_done(1, n, None)
    assert shim.tx_up(2, n, 0, 0, 0, 0, 0) == 0
    assert shim.tx_up_start(5, n, 0, 0, 0, 0, 0, None) is n
    assert shim.violations["bad_reg_hdl"] == 4 and shim.rx_refused == 4
    assert ifp.in_discards["shim_contract"] == 2 and ifp.ierrors == 2
    assert fake.back == [] and stack.pool.in_use == 0 and len(shim.q) == 0
    assert shim.tx_up(1, n, 0, 0, 0, 0, 0) == 1 and fake.back == [(n, None)]
    shim.dereg(1)                           # after deregistering: refused again
    n2 = up_npkt(b"z" * 60)
    assert shim.tx_up(1, n2, 0, 0, 0, 0, 0) == 0 and shim.violations["bad_reg_hdl"] == 5


def mount_failing(stack, init, **kw):
    """Mount a driver whose init is `init`; returns what the mount raised and
    the life-cycle calls the fake driver saw."""
    fake = FakeDriver()
    for k, v in kw.items():
        setattr(fake, k, v)
    handles = []

    def start(dll, ion, opts):
        handles.append(dll)
        return init(fake, dll, ion, opts)
    drv = Driver(name="devn-fake", kind="legacy", description="",
                 module=types.SimpleNamespace(init=start, shutdown=fake.shutdown))
    with pytest.raises((DriverError, DeviceError)) as e:
        shimmod.mount(stack, drv, "opt=1")
    assert stack.ifnets == {} and stack.pool.in_use == 0
    # Whatever went wrong, the driver's module was told to let go, once.
    assert fake.calls[-1] == ("shutdown", handles[0]) and handles[0] is not None
    assert [c[0] for c in fake.calls].count("shutdown") == 1
    return e.value, fake.calls


@pytest.mark.parametrize("n", [0, 5, 7, 8])
def test_a_driver_whose_mac_address_is_not_6_bytes_is_refused(bare_stack, n):
    # An interface with such an address could build no Ethernet header.
    def init(fake, dll, ion, opts):
        fake.config = {"current_address": bytes(range(2, n + 2))}
        return fake.init(dll, ion, opts)
    err, calls = mount_failing(bare_stack, init)
    assert type(err) is DriverError
    assert str(err) == f"legacy driver devn-fake: GET_CONFIG gives a MAC address of {n} " \
                       "bytes, not 6"
    assert [c[0] for c in calls] == ["shutdown1", "shutdown2", "shutdown"]


def test_an_init_refusing_its_options_is_a_usage_error_naming_the_driver(bare_stack):

    def init(fake, dll, ion, opts):
        raise ValueError(f"option {opts}: no such option")
    err, calls = mount_failing(bare_stack, init)
    assert type(err) is DriverError and str(err) == "devn-fake: option opt=1: no such option"
    assert [c[0] for c in calls] == ["shutdown"]


def test_an_init_failing_on_its_device_is_a_device_error_with_its_errno(bare_stack):
    import errno


    def init(fake, dll, ion, opts):
        fake.init(dll, ion, opts)
        raise OSError(errno.EBUSY, "TAP busy")
    err, calls = mount_failing(bare_stack, init)
    assert type(err) is DeviceError and err.errno == errno.EBUSY
    assert str(err) == "legacy driver devn-fake failed in init: [Errno 16] TAP busy"
    assert [c[0] for c in calls] == ["shutdown1", "shutdown2", "shutdown"]
    assert calls[0] == ("shutdown1", 1) and calls[1] == ("shutdown2", 1)


def test_a_device_error_that_names_its_device_is_passed_on_as_it_is(bare_stack):
    mine = DeviceError("devn-fake: TAP t0 is gone", 19)

    def init(fake, dll, ion, opts):
        raise mine
    err, calls = mount_failing(bare_stack, init)
    assert err is mine and err.errno == 19


def test_an_init_that_crashes_is_named(bare_stack):

    def init(fake, dll, ion, opts):
        raise KeyError("npkts")
    err, calls = mount_failing(bare_stack, init)
    assert type(err) is DriverError
    assert str(err) == "legacy driver devn-fake failed in init: 'npkts'"


@pytest.mark.parametrize("register,rc,message", [
    (True, 5, "legacy driver devn-fake: init returned 5"),
    (False, EOK, "legacy driver devn-fake: init returned 0 without registering"),
    (False, 5, "legacy driver devn-fake: init returned 5 without registering"),
])
def test_an_init_that_fails_or_never_registers_is_refused(bare_stack, register, rc, message):

    def init(fake, dll, ion, opts):
        if register:
            fake.init(dll, ion, opts)
        return rc
    err, calls = mount_failing(bare_stack, init)
    assert type(err) is DriverError and str(err) == message
    assert [c for c in calls if c[0] != "shutdown"] == \
        ([("shutdown1", 1), ("shutdown2", 1)] if register else [])


@pytest.mark.parametrize("answer", [(5, NicConfig()), (EOK, None)])
def test_a_driver_without_a_config_is_refused_and_its_early_frames_freed(bare_stack, answer):

    def init(fake, dll, ion, opts):
        fake.init(dll, ion, opts)
        ion.registrant.devctl = lambda *a: answer
        for i in range(2):                          # frames already on their way up
            n = up_npkt(bytes([i]) * 60)
            ion.reg_tx_done(1, n, None)
            ion.tx_up(1, n, 0, 0, 0, 0, 0)
        return EOK
    err, calls = mount_failing(bare_stack, init)
    assert type(err) is DriverError
    assert str(err) == "legacy driver devn-fake does not answer GET_CONFIG"
    assert [c[0] for c in calls] == ["shutdown1", "shutdown2", "shutdown"]



# -- a driver that deregisters itself while packets still move ------------------

@pytest.mark.parametrize("options", ["", "shimrxcopy=0"])
def test_a_driver_that_deregisters_itself_mid_traffic_is_then_detached_cleanly(rig, options,
                                                                                caplog):
    """io-net drivers may call ion.dereg themselves while packets still move
    both ways. From then on what the driver sends up is refused (it keeps
    it), the stack's transmits are dropped as link_lost without calling it,
    a late tx_done of a packet it still held frees that packet, neither the
    link watch nor nicinfo asks it anything, and the unmount calls none of
    its registrant functions (only the module's shutdown) and succeeds."""
    clock = FakeClock()
    stack, shim, fake, got = rig(options, clock=clock)
    caplog.set_level("INFO", logger="iopkt")
    ifp = shim.ifp
    first = [up_npkt(b"a" * 60), up_npkt(b"b" * 61)]
    assert send_up(shim, *first, hdl="h") == [1, 1]
    pump(stack, lambda: len(got) == 2, "delivered the first two")
    ifp.if_transmit(ifp, [stack.pool.from_bytes(b"c" * 62)])     # sent and given back
    fake.auto_done = False
    ifp.if_transmit(ifp, [stack.pool.from_bytes(b"d" * 63)])     # the driver still holds it
    held = fake.sent[1][0]
    asked = list(fake.queries)
    assert fake.ion.dereg(fake.reg_hdl) == EOK
    assert shim.registrant is None
    late = up_npkt(b"e" * 64)
    assert send_up(shim, late, hdl="h") == [0]                   # refused: the driver keeps it
    ifp.if_transmit(ifp, [stack.pool.from_bytes(b"f" * 65)])     # no one to send it to
    assert fake.attempts == 2 and [s for _, s, _, _ in fake.sent] == [b"c" * 62, b"d" * 63]
    assert shim.tx_done(1, held) == EOK                          # its last send completes
    clock.advance(1.0)
    loop_once(stack)                                             # the link watch comes due
    clock.advance(1.0)
    loop_once(stack)
    assert shim.extra_info(ifp)["legacy_driver_stats"] == {}
    assert fake.queries == asked                                 # nothing asked of it since
    assert got.data() == [b"a" * 60, b"b" * 61]
    got.freeall(stack.pool)                                      # lent buffers: not given back
    assert fake.back == ([] if options else [(n, "h") for n in first])
    stack.if_detach(ifp)
    assert fake.calls == [("dl_advert", 1), ("shutdown", shim.dll_hdl)]
    assert "en0" not in stack.ifnets and shim.softint not in stack._softints
    assert (ifp.opackets, ifp.obytes, ifp.oerrors) == (2, 62 + 63, 1)
    assert {k: v for k, v in ifp.out_discards.items() if v} == {"link_lost": 1}
    assert (ifp.ierrors, ifp.iqdrops) == (1, 0)
    assert {k: v for k, v in ifp.in_discards.items() if v} == {"shim_contract": 1}
    assert {k: v for k, v in shim.violations.items() if v} == {"bad_reg_hdl": 1}
    assert (shim.rx_copied, shim.rx_wrapped, shim.rx_refused) == \
        ((2, 0, 1) if options == "" else (0, 2, 1))
    assert shim.driver_errors == {} and stack.handler_errors == {}
    assert stack.pool.in_use == stack.pool.ext_in_use == 0
    assert len(shim._down_free) == shimmod.DOWN_NPKTS
    assert warnings_of(caplog) == [
        "en0: legacy driver devn-fake sent up a packet with a reg_hdl io-net never gave it "
        "(before registering, or after deregistering); packet dropped"]


# -- transmit: one npkt reused as chains grow and shrink ----------------------------

def make_chain(pool, parts):
    """A packet of one mbuf per (data, offset) part, in that order: data at
    that offset of its cluster (an empty part is an mbuf with len 0)."""
    head = prev = None
    for data, off in parts:
        m = pool.get()
        if head is not None:
            m.flags &= ~M_PKTHDR
        m.off, m.len = off, len(data)
        m.view[off:off + len(data)] = data
        if prev is None:
            head = m
        else:
            prev.next = m
        prev = m
    head.pkt_len = sum(len(d) for d, _ in parts)
    return head


@contextlib.contextmanager
def mounted_fake(mclbytes=256, nmbclusters=64, npkts=4):
    """The fake driver mounted through the shim on a fresh Stack, for a
    property test (a fixture would be shared by all its examples), with
    only `npkts` transmit npkts (512 take 40 ms to make); nothing may be
    left out at the end."""
    stack = Stack("unit", nmbclusters=nmbclusters, mclbytes=mclbytes)
    try:
        fake = FakeDriver()
        drv = Driver(name="devn-fake", kind="legacy", description="",
                     module=types.SimpleNamespace(init=fake.init, shutdown=fake.shutdown))
        with unittest.mock.patch.object(shimmod, "DOWN_NPKTS", npkts):
            shim = shimmod.mount(stack, drv, "").softc
        yield stack, shim, fake
        stack.shutdown(quiet=True)
        assert stack.pool.in_use == 0 and stack.handler_errors == {}
        assert len(shim._down_free) == npkts
    finally:
        stack.close()


# One packet: its mbufs as (length, offset in the cluster), and whether the
# driver keeps it (gives it back only after the next packet went down).
PART = st.tuples(st.integers(0, 64), st.integers(0, 256 - 64))
PACKET = st.tuples(st.lists(PART, min_size=1, max_size=shimmod.MAX_IOV + 4)
                   .filter(lambda p: any(n for n, _ in p)), st.booleans())


@settings(max_examples=40)
@given(packets=st.lists(PACKET, min_size=2, max_size=6))
@example(packets=[([(20, 0)] * 2, False), ([(20, 0)] * 3, False)])     # a longer chain after
def test_every_frame_goes_down_byte_exact_as_chains_grow_and_shrink_through_one_npkt(packets):
    """The transmit npkts are reused (the free list is last in, first out)
    and each one's fragment list grows and shrinks in place with the chain
    it carries. Against a plain model, for any sequence of chain shapes
    (empty mbufs, any offsets, more mbufs than MAX_IOV, the driver holding
    one packet while the next is built): every frame the driver is handed
    is the chain's bytes, one distinct fragment per non-empty mbuf, and a
    packet the driver holds is still intact when it gives it back."""
    with mounted_fake() as (stack, shim, fake):
        ifp = shim.ifp
        kept = []                                   # (npkt, the frame it must still be)
        for k, (parts, keep) in enumerate(packets):
            datas = [(bytes((k * 31 + i * 7 + j) & 0xFF for j in range(n)), off)
                     for i, (n, off) in enumerate(parts)]
            want = b"".join(d for d, _ in datas)
            fake.auto_done = not keep
            ifp.if_transmit(ifp, [make_chain(stack.pool, datas)])
            npkt, sent, framelen, tot_iov = fake.sent[-1]
            iovs = npkt.buffers[0].net_iov
            assert sent == want and framelen == len(want)
            assert tot_iov == len(iovs) == sum(1 for d, _ in datas if d)
            assert [v.len for v in iovs] == [len(d) for d, _ in datas if d]
            assert len(set(map(id, iovs))) == len(iovs)
            for n, frame in kept:                   # given back after the next one
                assert b"".join(bytes(v.base[:v.len]) for v in n.iovs()) == frame
                assert shim.tx_done(1, n) == EOK
            kept = [(npkt, want)] if keep else []
        for n, frame in kept:
            assert b"".join(bytes(v.base[:v.len]) for v in n.iovs()) == frame
            assert shim.tx_done(1, n) == EOK
        assert ifp.opackets == len(packets) and ifp.oerrors == 0
        assert ifp.obytes == sum(n for parts, _ in packets for n, _ in parts)


def test_chains_of_up_to_max_iov_mbufs_allocate_no_fragment(rig, monkeypatch):
    """Each transmit npkt brings MAX_IOV spare fragments of its own: a
    chain of up to MAX_IOV mbufs allocates none, a longer one one per mbuf
    past them, kept until a shorter chain shrinks the list again."""
    stack, shim, fake, got = rig(mclbytes=256)
    made = []
    real = shimmod.net_iov_t

    def counted():
        made.append(1)
        return real()
    monkeypatch.setattr(shimmod, "net_iov_t", counted)
    ifp = shim.ifp
    for k, n in enumerate([shimmod.MAX_IOV, 3, shimmod.MAX_IOV, shimmod.MAX_IOV + 2,
                           shimmod.MAX_IOV + 2, 1, shimmod.MAX_IOV + 2]):
        ifp.if_transmit(ifp, [make_chain(stack.pool, [(bytes([k]) * 20, 0)] * n)])
        npkt = fake.sent[-1][0]
        assert fake.sent[-1][1] == bytes([k]) * 20 * n
        iovs = npkt.buffers[0].net_iov
        assert all(v is s for v, s in zip(iovs[1:], npkt.inter_module[1:]))
    assert len(made) == 2 + 2
    assert {id(n) for n, *_ in fake.sent} == {id(fake.sent[0][0])}     # one npkt throughout


# -- receive: what the gather reads ------------------------------------------------

class WatchedIov(net_iov_t):
    """A fragment that counts the reads of its buffer."""
    __slots__ = ("_base", "reads")

    def __init__(self, data: bytes):
        self.reads = 0
        super().__init__(memoryview(bytearray(data)), 0, len(data))

    @property
    def base(self):
        self.reads += 1
        return self._base

    @base.setter
    def base(self, value):
        self._base = value


def test_the_gather_reads_no_fragment_past_the_frame(rig):
    """framelen_sub trims the trailer (an FCS) off the end: once the frame
    is copied, the fragments after it are not read at all."""
    stack, shim, fake, got = rig()
    frags = [WatchedIov(b"A" * 40), WatchedIov(b"B" * 20), WatchedIov(b"FCS!"),
             WatchedIov(b"pad")]
    n = up_npkt(b"")
    n.buffers = [net_buf_t(frags)]
    n.framelen, n.tot_iov = 67, 4
    shim.reg_tx_done(1, n, None)
    assert shim.tx_up(1, n, 0, 7, 0, 0, 0) == 1
    pump(stack, lambda: got, "delivered the packet")
    assert got.data() == [b"A" * 40 + b"B" * 20]
    assert [f.reads for f in frags] == [1, 1, 0, 0]
    got.freeall(stack.pool)


def test_an_empty_fragment_without_a_buffer_is_passed_over(rig):
    """A fragment of length 0 need have no buffer (io-net's iov_base NULL):
    the gather skips it, wherever it is and whatever `off` skips."""
    stack, shim, fake, got = rig()
    for off in (0, 30):
        n = up_npkt(b"A" * 30, b"B" * 34)
        n.buffers[0].net_iov[1:1] = [net_iov_t()]
        n.buffers.insert(0, net_buf_t([net_iov_t()]))
        n.tot_iov = 4
        shim.reg_tx_done(1, n, None)
        assert shim.tx_up(1, n, off, 0, 0, 0, 0) == 1
    pump(stack, lambda: len(got) == 2, "delivered both")
    assert got.data() == [b"A" * 30 + b"B" * 34, b"B" * 34]
    got.freeall(stack.pool)


def test_a_mount_that_fails_after_its_interface_joined_the_stack_leaves_nothing(bare_stack,
                                                                                  monkeypatch):
    """A failure once enN is attached (here: bringing it up) unmounts it as
    a detach would: the interface leaves the stack, the driver is stopped
    and released once each, the frames it sent up meanwhile are freed."""
    def fail(ifp):
        raise RuntimeError("no room for another interface")
    monkeypatch.setattr(bare_stack, "if_up", fail)

    def init(fake, dll, ion, opts):
        fake.init(dll, ion, opts)
        n = up_npkt(b"q" * 60)                      # a frame already on its way up
        ion.reg_tx_done(1, n, None)
        ion.tx_up(1, n, 0, 0, 0, 0, 0)
        return EOK
    err, calls = mount_failing(bare_stack, init)
    assert str(err) == ("legacy driver devn-fake failed while being mounted: "
                        "RuntimeError: no room for another interface")
    assert [c[0] for c in calls] == ["dl_advert", "shutdown1", "shutdown2", "shutdown"]
    assert bare_stack._softints == []


def test_stats_a_driver_cannot_describe_are_an_error_in_nicinfo_and_the_unmount_goes_on(rig):
    """A driver whose GET_STATS answer is not nic stats: nicinfo says so
    (counted as a devctl failure), and the unmount, which asks for them
    too, still stops and releases the driver."""
    stack, shim, fake, got = rig()
    fake.stats = object()
    info = shim.extra_info(shim.ifp)
    assert info["legacy_driver_stats"] == {
        "error": "devctl GET_STATS failed: vars() argument must have __dict__ attribute"}
    stack.if_detach(shim.ifp)
    assert shim.driver_errors == {"devctl": 2}
    assert fake.calls == [("dl_advert", 1), ("shutdown1", 1), ("shutdown2", 1),
                          ("shutdown", shim.dll_hdl)]
    assert "en0" not in stack.ifnets and shim.registrant is None
