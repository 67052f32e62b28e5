"""The shim's npkt <-> mbuf translation and contract checks, with a fake
legacy driver (no TAP, no root). The test plays the legacy driver's receive
thread (or runs a real one) and drives the stack's own event loop one turn
at a time, so every received packet reaches the stack the way it does in
production: tx_up -> hand-off queue -> HandoffQueue.kick -> Stack.wakeup
(the eventfd in the stack's epoll set) -> the loop runs the shim's soft
interrupt. A wake-up that is never sent, or a retry that is never
scheduled, leaves a packet behind and the test fails by its deadline."""

import threading
import time
import types

import pytest

from drivers.legacy_shim import shim as shimmod
from iopkt import ionet
from iopkt.drvload import Driver
from iopkt.handoff import HandoffQueue
from iopkt.ifnet import IFF_OACTIVE
from iopkt.ionet import (_NPKT_NOT_TXED, _NPKT_UP, EOK, TX_DOWN_AGAIN, TX_DOWN_FAILED,
                         TX_DOWN_OK, IoNetRegistrant, NicConfig, NicStats, net_buf_t,
                         net_iov_t, npkt_t)
from iopkt.stack import MAX_EVENTS, Stack

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
    def make(options="", mclbytes=2048, clock=None, nmbclusters=64, link_flags=0):
        kw = {"clock": clock} if clock is not None else {}
        stack = Stack("unit", nmbclusters=nmbclusters, mclbytes=mclbytes, **kw)
        made.append(stack)
        fake = FakeDriver()
        fake.link_flags = link_flags
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
    """The shim asks the driver for its link state once a second, from the
    stack's own callout."""
    from iopkt.ifnet import IFF_RUNNING, IFF_UP, LINK_STATE_DOWN, LINK_STATE_UP
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
    from iopkt.ifnet import IFF_RUNNING, IFF_UP, LINK_STATE_DOWN, LINK_STATE_UP
    clock = FakeClock()
    stack, shim, fake, got = rig(clock=clock, link_flags=ionet.NIC_FLAG_LINK_DOWN)
    ifp = shim.ifp
    assert ifp.link_state == LINK_STATE_DOWN
    fake.link_flags = 0                             # the cable goes in
    clock.advance(1.0)
    loop_once(stack)                                # the shim's link check
    assert ifp.link_state == LINK_STATE_UP, "link up, but the interface still says down"
    assert ifp.flags & IFF_UP and ifp.flags & IFF_RUNNING
