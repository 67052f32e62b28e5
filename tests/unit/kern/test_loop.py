"""iopkt.kern.loop: the stack thread's loop, with a fake clock and an epoll
set that records what it is asked.

The loop must never sleep past its next callout nor block: run() polls with
the seconds until the next callout (1 s with none), at most MAX_EVENTS at a
time, and each test reads that timeout by value. The recording epoll never
waits: it "sleeps" by moving the fake clock on by the timeout asked, and
stops the loop after a fixed number of polls, so no test depends on how
fast the machine is."""

import logging
import os
import select
import socket
from types import SimpleNamespace

import pytest

from iopkt.kern import loop as loopmod
from iopkt.kern.loop import EPOLLIN, EPOLLOUT, MAX_EVENTS, Callout, EventLoop

from fakenet import FakeClock

_epoll = select.epoll


class RecEpoll:
    """A real epoll set whose calls are recorded. poll() records
    (timeout, maxevents), moves the fake clock on by the timeout (the wait
    it stands for), then polls the real set without waiting. After
    `stop_after` polls it stops the loop; past `limit` it raises, so a loop
    that no longer stops ends the test instead of hanging it."""

    def __init__(self):
        self.ep = _epoll()
        self.calls = []             # ("register"|"modify"|"unregister"|"close", args)
        self.polls = []             # (timeout, maxevents)
        self.clock = None
        self.loop = None
        self.stop_after = None
        self.limit = 50
        self.on_poll = []           # called with the poll's number before it polls

    def register(self, fd, *events):
        self.calls.append(("register", fd, *events))
        self.ep.register(fd, *events)

    def modify(self, fd, *events):
        self.calls.append(("modify", fd, *events))
        self.ep.modify(fd, *events)

    def unregister(self, fd):
        self.calls.append(("unregister", fd))
        self.ep.unregister(fd)

    def close(self):
        self.calls.append(("close",))
        self.ep.close()

    def poll(self, timeout=-1, maxevents=-1):
        self.polls.append((timeout, maxevents))
        n = len(self.polls)
        if n > self.limit:
            raise AssertionError(f"the loop polled {n} times: it did not stop")
        if self.clock is not None and isinstance(timeout, float) and timeout > 0:
            self.clock.advance(timeout)
        for fn in self.on_poll:
            fn(n)
        if self.stop_after is not None and n >= self.stop_after:
            self.loop.stop()
        return self.ep.poll(0, maxevents)


@pytest.fixture
def rec(monkeypatch):
    """The epoll set the next EventLoop makes."""
    made = []

    def epoll():
        made.append(RecEpoll())
        return made[-1]
    monkeypatch.setattr(loopmod, "select", SimpleNamespace(epoll=epoll))
    yield made
    for r in made:
        if not r.ep.closed:
            r.ep.close()


@pytest.fixture
def clock():
    return FakeClock()


@pytest.fixture
def lp(rec, clock):
    """A loop on the fake clock and a recording epoll set; run() stops
    after one poll unless the test says otherwise."""
    ev = EventLoop(clock=clock)
    ep = rec[0]
    ep.clock, ep.loop, ep.stop_after = clock, ev, 1
    ev.rec = ep
    yield ev
    if not ep.ep.closed:
        ev.close()


def pending(fd) -> int:
    """What an eventfd's counter holds (reading it clears it); 0 when none."""
    try:
        return os.eventfd_read(fd)
    except BlockingIOError:
        return 0


# -- Callout --------------------------------------------------------------------

def test_a_callout_holds_its_time_and_function_and_is_not_cancelled():
    def fn():
        pass
    c = Callout(5.5, fn)
    assert (c.when, c.fn, c.cancelled) == (5.5, fn, False)
    c.cancel()
    assert c.cancelled is True


def test_callouts_order_by_time_alone():
    early, late, same = Callout(1.0, None), Callout(2.0, None), Callout(1.0, None)
    assert (early < late, late < early) == (True, False)
    assert (early < same, same < early) == (False, False)


# -- a new loop -------------------------------------------------------------------

def test_a_new_loop_has_counted_nothing_and_is_not_running(lp, clock):
    assert lp.clock is clock and lp.started == 1000.0
    assert (lp.wakeups, lp.loops, lp.handler_errors) == (0, 0, {})
    assert lp.running is False and lp.stopping is False
    assert lp.rec.calls == [("register", lp._wakefd, EPOLLIN)]
    assert pending(lp._wakefd) == 0                 # no wake-up pending


def test_the_wakeup_eventfd_never_blocks_and_is_not_inherited(lp):
    assert os.get_blocking(lp._wakefd) is False
    assert os.get_inheritable(lp._wakefd) is False


def test_the_log_is_iopkt_s_unless_one_is_given(rec):
    a = EventLoop()
    mine = logging.getLogger("iopkt.test.loop")
    b = EventLoop(log=mine)
    try:
        assert a.log is logging.getLogger("iopkt")
        assert b.log is mine
        assert a.clock is loopmod.time.monotonic
    finally:
        a.close()
        b.close()


# -- interrupts -------------------------------------------------------------------

def test_a_ready_fd_calls_its_handler_with_its_events_in_the_loop(lp):
    a, b = socket.socketpair()
    got = []
    lp.interrupt_attach(a.fileno(), got.append)
    b.send(b"x")
    lp.run()
    assert got == [EPOLLIN]                         # not EPOLLOUT: only what was asked
    assert lp.rec.calls[1] == ("register", a.fileno(), EPOLLIN)
    a.close()
    b.close()


def test_interrupt_modify_changes_the_events_asked(lp):
    a, b = socket.socketpair()
    got = []
    lp.interrupt_attach(a.fileno(), got.append, EPOLLOUT)
    lp.interrupt_modify(a.fileno(), EPOLLIN)
    lp.run()
    assert got == []                                # writable, but only EPOLLIN is asked
    assert lp.rec.calls[1:] == [("register", a.fileno(), EPOLLOUT),
                                ("modify", a.fileno(), EPOLLIN)]
    a.close()
    b.close()


def test_interrupt_detach_unregisters_once_and_forgets_the_handler(lp):
    a, b = socket.socketpair()
    got = []
    lp.interrupt_attach(a.fileno(), got.append)
    lp.interrupt_detach(a.fileno())
    lp.interrupt_detach(a.fileno())                 # a second time: nothing to do
    lp.interrupt_detach(12345)                      # never attached
    b.send(b"x")
    lp.run()
    assert got == []
    assert lp.rec.calls[1:] == [("register", a.fileno(), EPOLLIN),
                                ("unregister", a.fileno())]
    lp.interrupt_attach(a.fileno(), got.append)     # free to attach again
    a.close()
    b.close()


def test_interrupt_detach_of_a_closed_fd_forgets_it_without_raising(lp):
    a, b = socket.socketpair()
    fd = a.fileno()
    lp.interrupt_attach(fd, lambda ev: None)
    a.close()                                       # the kernel dropped it from the set
    lp.interrupt_detach(fd)                         # unregister: EBADF, swallowed
    assert lp.rec.calls[-1] == ("unregister", fd)
    assert fd not in lp._handlers
    b.close()


def test_a_readable_fd_with_no_handler_is_skipped(lp):
    a, b = socket.socketpair()
    lp.rec.register(a.fileno(), EPOLLIN)            # in the set, no handler
    b.send(b"x")
    lp.run()
    assert (lp.loops, lp.handler_errors) == (1, {})
    a.close()
    b.close()


def test_a_handler_that_raises_is_logged_once_counted_and_the_loop_goes_on(lp, caplog):
    a, b = socket.socketpair()
    calls = []

    def bad(ev):
        calls.append(ev)
        raise RuntimeError("driver bug")
    lp.interrupt_attach(a.fileno(), bad)
    b.send(b"x")                                    # stays readable: called every loop
    lp.rec.stop_after = 3
    with caplog.at_level(logging.ERROR, logger="iopkt"):
        lp.run()
    name = bad.__qualname__
    assert calls == [EPOLLIN] * 3 and lp.loops == 3
    assert lp.handler_errors == {name: 3}
    said = [r for r in caplog.records if r.name == "iopkt"]
    assert [r.getMessage() for r in said] == [f"{name} failed; the stack goes on (said once)"]
    assert said[0].exc_info[0] is RuntimeError
    a.close()
    b.close()


def test_a_failed_handler_with_no_qualname_is_named_by_its_repr(lp, caplog):
    class Handler:
        def __call__(self, ev):
            raise ValueError("x")

        def __repr__(self):
            return "<the handler>"
    h = Handler()
    assert not hasattr(h, "__qualname__")
    a, b = socket.socketpair()
    lp.interrupt_attach(a.fileno(), h)
    b.send(b"x")
    with caplog.at_level(logging.ERROR, logger="iopkt"):
        lp.run()
    assert lp.handler_errors == {"<the handler>": 1}
    assert [r.getMessage() for r in caplog.records] == [
        "<the handler> failed; the stack goes on (said once)"]
    a.close()
    b.close()


# -- soft interrupts and wakeup -------------------------------------------------------

def test_wakeup_adds_one_to_the_eventfd_and_the_loop_runs_each_softint_once(lp):
    ran = []
    lp.softint_establish(lambda: ran.append("a"))
    lp.softint_establish(lambda: ran.append("b"))
    lp.wakeup()
    lp.wakeup()
    assert pending(lp._wakefd) == 2
    lp.wakeup()
    lp.wakeup()
    lp.run()
    assert ran == ["a", "b"]                        # two wake-ups, one run
    assert (lp.wakeups, lp.loops) == (1, 1)
    assert pending(lp._wakefd) == 0                 # drained: the loop will not spin


def test_the_wake_handler_drains_the_eventfd_and_counts_each_call(lp):
    lp.wakeup()
    lp._wake_intr(EPOLLIN)
    assert pending(lp._wakefd) == 0
    lp._wake_intr(EPOLLIN)                          # nothing pending: no block, no raise
    assert lp.wakeups == 2


def test_softint_disestablish_removes_only_what_was_established(lp):
    ran = []

    def a():
        ran.append("a")

    def b():
        ran.append("b")
    lp.softint_establish(a)
    lp.softint_establish(b)
    lp.softint_disestablish(a)
    lp.softint_disestablish(a)                      # gone already: nothing to do
    lp.softint_disestablish(lambda: None)           # never there
    lp._wake_intr(EPOLLIN)
    assert ran == ["b"]


def test_a_raising_softint_is_counted_and_the_next_still_runs(lp, caplog):
    ran = []

    def bad():
        raise OSError("gone")
    lp.softint_establish(bad)
    lp.softint_establish(lambda: ran.append(1))
    with caplog.at_level(logging.ERROR, logger="iopkt"):
        lp._wake_intr(EPOLLIN)
        lp._wake_intr(EPOLLIN)
    assert ran == [1, 1]
    assert lp.handler_errors == {bad.__qualname__: 2}
    assert len(caplog.records) == 1


# -- callouts ------------------------------------------------------------------------

def test_timeout_is_due_delay_seconds_from_now(lp, clock):
    def fn():
        pass
    c = lp.timeout(2.5, fn)
    assert (c.when, c.fn, c.cancelled) == (1002.5, fn, False)
    assert lp._callouts == [c]


def test_run_callouts_runs_what_is_due_at_exactly_now_and_says_how_long_to_the_next(lp, clock):
    ran = []
    lp.timeout(0.5, lambda: ran.append("a"))
    lp.timeout(0.75, lambda: ran.append("b"))
    assert lp._run_callouts() == 0.5 and ran == []
    clock.advance(0.5)                              # exactly due
    assert lp._run_callouts() == 0.25 and ran == ["a"]
    clock.advance(0.25)
    assert lp._run_callouts() == 1.0 and ran == ["a", "b"]   # none left: a second


def test_callouts_due_at_the_same_time_run_in_the_order_they_were_set(lp, clock):
    ran = []
    for x in "abc":
        lp.timeout(1.0, lambda x=x: ran.append(x))
    clock.advance(1.0)
    lp._run_callouts()
    assert ran == ["a", "b", "c"]


def test_a_cancelled_callout_does_not_run_and_the_next_one_does(lp, clock):
    ran = []
    lp.timeout(0.5, lambda: ran.append("a")).cancel()
    lp.timeout(0.5, lambda: ran.append("b"))
    clock.advance(0.5)
    assert lp._run_callouts() == 1.0
    assert ran == ["b"] and lp._callouts == []


def test_a_raising_callout_is_logged_and_the_rest_run(lp, clock, caplog):
    ran = []

    def bad():
        raise KeyError("k")
    lp.timeout(0.1, bad)
    lp.timeout(0.2, lambda: ran.append(1))
    clock.advance(0.2)
    with caplog.at_level(logging.ERROR, logger="iopkt"):
        assert lp._run_callouts() == 1.0
    assert ran == [1]
    assert [r.getMessage() for r in caplog.records] == [f"callout {bad!r} failed"]
    assert caplog.records[0].exc_info[0] is KeyError


def test_periodic_runs_once_per_interval(lp, clock):
    ticks = []
    lp._periodic(0.5, lambda: ticks.append(clock()))
    assert [c.when for c in lp._callouts] == [1000.5]
    for _ in range(3):
        clock.advance(0.5)
        assert lp._run_callouts() == 0.5
    assert ticks == [1000.5, 1001.0, 1001.5]
    assert [c.when for c in lp._callouts] == [1002.0]


# -- run: the poll timeout, by value ---------------------------------------------------

def test_run_polls_at_most_max_events_for_a_second_with_no_callout(lp):
    lp.run()
    assert MAX_EVENTS == 64
    assert lp.rec.polls == [(1.0, 64)]


def test_run_polls_exactly_until_each_callout_then_runs_it(lp, clock):
    ran = []
    lp.timeout(0.25, lambda: ran.append(("a", clock())))
    lp.timeout(2.0, lambda: ran.append(("b", clock())))
    lp.rec.stop_after = 3
    lp.run()
    assert lp.rec.polls == [(0.25, 64), (1.75, 64), (1.0, 64)]
    assert ran == [("a", 1000.25), ("b", 1002.0)]
    assert lp.loops == 3


def test_every_callout_due_after_a_wait_runs_before_the_next_poll(lp, clock):
    ran = []
    lp.timeout(0.5, lambda: ran.append(1))
    lp.rec.on_poll.append(lambda n: n == 1 and lp.timeout(0.0, lambda: ran.append(2)))
    lp.rec.stop_after = 2
    lp.run()
    # After the first poll's wait a callout is due and one was set for now:
    # both run before the second poll, which waits a second (none left).
    assert ran == [1, 2] and lp.rec.polls == [(0.5, 64), (1.0, 64)]


def test_run_marks_the_loop_running_then_shuts_it_down(lp):
    seen = []
    lp.rec.on_poll.append(lambda n: seen.append((lp.running, lp.stopping)))
    lp.timeout(5.0, lambda: None)
    lp.rec.stop_after = 2
    lp.run()
    assert seen == [(True, False), (True, False)]
    assert lp.running is False and lp.stopping is True
    assert lp._callouts == [] and lp._run_callouts() == 1.0


def test_run_counts_each_pass_of_the_loop(lp):
    lp.rec.stop_after = 4
    lp.run()
    assert lp.loops == 4 and len(lp.rec.polls) == 4


def test_a_loop_stopped_before_run_shuts_down_without_polling(lp):
    lp.stop()
    lp.run()
    assert lp.rec.polls == [] and lp.loops == 0
    assert lp.running is False


def test_stop_wakes_the_loop_once(lp):
    lp.stop()
    assert lp.stopping is True
    assert pending(lp._wakefd) == 1


def test_stop_after_close_does_not_raise(rec, clock):
    ev = EventLoop(clock=clock)
    ev.close()
    ev.stop()                                       # the eventfd is closed: EBADF swallowed
    assert ev.stopping is True


def test_shutdown_drops_every_callout(lp, clock):
    ran = []
    lp.timeout(0.0, lambda: ran.append(1))
    lp.shutdown()
    assert (lp.running, lp.stopping, lp._callouts) == (False, True, [])
    lp.shutdown(quiet=True)                         # a second time: the same
    assert lp._run_callouts() == 1.0 and ran == []


def test_close_unregisters_the_wakeup_then_closes_it_and_the_set(rec, clock):
    ev = EventLoop(clock=clock)
    fd = ev._wakefd
    ev.close()
    assert rec[0].calls == [("register", fd, EPOLLIN), ("unregister", fd), ("close",)]
    assert ev._handlers == {}
    with pytest.raises(OSError):
        os.fstat(fd)
