"""The stack thread's loop: one thread, one epoll set (io-pkt's stack
context), after NetBSD's kern/ (callouts, soft interrupts).

Everything that touches stack state runs in the thread that calls run():
native drivers' receive handlers ("interrupts", fds in the epoll set),
timers (callouts), the control socket. Other threads (a legacy driver's
receive thread, through the shim) never touch the stack; they put mbufs on
a hand-off queue and call wakeup(), which makes the loop run the
registered soft interrupts. A handler that raises is logged once and
counted; the loop goes on.
"""

from __future__ import annotations

import heapq
import logging
import os
import select
import time
from typing import Callable

EPOLLIN = select.EPOLLIN
EPOLLOUT = select.EPOLLOUT
MAX_EVENTS = 64


class Callout:
    """A one-shot timer (BSD's callout); `cancel()` before it fires."""

    __slots__ = ("when", "fn", "cancelled")

    def __init__(self, when: float, fn: Callable):
        self.when = when
        self.fn = fn
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True

    def __lt__(self, other: "Callout") -> bool:
        return self.when < other.when


class EventLoop:
    """Interrupts (fd handlers), soft interrupts and callouts, run by one
    thread in run() until stop(); then shutdown(), which a subclass
    extends (the stack detaches its interfaces there)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic,
                 log: logging.Logger | None = None):
        self.clock = clock
        self.log = log or logging.getLogger("iopkt")
        self.ep = select.epoll()
        self._handlers: dict[int, Callable[[int], None]] = {}
        self._callouts: list[Callout] = []
        self._softints: list[Callable[[], None]] = []
        # The wake-up other threads use: an eventfd in our epoll set.
        self._wakefd = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
        self.interrupt_attach(self._wakefd, self._wake_intr)
        self.wakeups = 0
        self.handler_errors: dict[str, int] = {}
        self.running = False
        self._stopping = False
        self.started = clock()
        self.loops = 0

    # -- interrupts (fd handlers) -------------------------------------------
    def interrupt_attach(self, fd: int, handler: Callable[[int], None],
                         events: int = EPOLLIN) -> None:
        """InterruptAttach: call `handler(events)` in the stack thread when
        `fd` is ready."""
        self._handlers[fd] = handler
        self.ep.register(fd, events)

    def interrupt_modify(self, fd: int, events: int) -> None:
        self.ep.modify(fd, events)

    def interrupt_detach(self, fd: int) -> None:
        if self._handlers.pop(fd, None) is not None:
            try:
                self.ep.unregister(fd)
            except (OSError, ValueError):
                pass

    # -- soft interrupts: work handed over by other threads ---------------
    def softint_establish(self, fn: Callable[[], None]) -> None:
        """Register `fn` to run in the stack thread after each wakeup()."""
        self._softints.append(fn)

    def softint_disestablish(self, fn: Callable[[], None]) -> None:
        if fn in self._softints:
            self._softints.remove(fn)

    def wakeup(self) -> None:
        """Thread-safe: make the stack thread run its soft interrupts."""
        os.eventfd_write(self._wakefd, 1)

    def _wake_intr(self, _events: int) -> None:
        try:
            os.eventfd_read(self._wakefd)
        except BlockingIOError:
            pass
        self.wakeups += 1
        for fn in self._softints:
            try:
                fn()
            except Exception:
                self._failed(fn)

    # -- callouts --------------------------------------------------------
    def timeout(self, delay: float, fn: Callable[[], None]) -> Callout:
        c = Callout(self.clock() + delay, fn)
        heapq.heappush(self._callouts, c)
        return c

    def _periodic(self, interval: float, fn: Callable[[], None]) -> None:
        def tick():
            fn()
            self.timeout(interval, tick)
        self.timeout(interval, tick)

    def _run_callouts(self) -> float:
        """Run due callouts; return seconds until the next one."""
        co = self._callouts
        now = self.clock()
        while co and co[0].when <= now:
            c = heapq.heappop(co)
            if not c.cancelled:
                try:
                    c.fn()
                except Exception:
                    self.log.exception("callout %r failed", c.fn)
        return max(0.0, co[0].when - now) if co else 1.0

    # -- the loop --------------------------------------------------------
    @property
    def stopping(self) -> bool:
        return self._stopping

    def run(self) -> None:
        """The stack thread. Returns after stop(); then shutdown() is
        called, so every interface is detached and every mbuf is back."""
        self.running = True
        poll = self.ep.poll
        handlers = self._handlers
        run_callouts = self._run_callouts
        try:
            while not self._stopping:
                timeout = run_callouts()
                for fd, ev in poll(timeout, MAX_EVENTS):
                    h = handlers.get(fd)
                    if h is not None:
                        try:
                            h(ev)
                        except Exception:       # a driver's bug must not stop the stack
                            self._failed(h)
                self.loops += 1
        finally:
            self.shutdown()

    def _failed(self, fn) -> None:
        """A handler raised: log it (with its traceback, once per handler),
        count it, and carry on with the loop."""
        name = getattr(fn, "__qualname__", repr(fn))
        self.handler_errors[name] = self.handler_errors.get(name, 0) + 1
        if self.handler_errors[name] == 1:
            self.log.exception("%s failed; the stack goes on (said once)", name)

    def stop(self) -> None:
        """Ask the loop to end (from any thread or a signal handler)."""
        self._stopping = True
        try:
            self.wakeup()
        except OSError:
            pass

    def shutdown(self, quiet: bool = False) -> None:
        """After the loop: no callout runs any more."""
        self._stopping = True
        self._callouts.clear()
        self.running = False

    def close(self) -> None:
        self.interrupt_detach(self._wakefd)
        os.close(self._wakefd)
        self.ep.close()
