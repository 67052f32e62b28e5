"""A bounded hand-off queue from one producer thread to the stack thread.

This is where the shim's forced context switch happens: a legacy driver's
receive thread puts mbufs in, the stack thread takes them out in bursts.
The producer wakes the stack only when the stack is not already due to
drain the queue, so a burst costs one wake-up, not one per packet.

Race-free wake-up: the consumer clears `pending` *before* it drains, the
producer sets it *after* it appends. A packet appended after the drain saw
the queue empty finds `pending` clear, so its producer wakes the stack.

Counters are Snabb-style: enqueued, dequeued, drops (queue full), hiwat,
and wakeups (how many wake-ups the producer sent).
"""

from __future__ import annotations

from collections import deque


class HandoffQueue:
    def __init__(self, maxlen: int, wakeup):
        self.q: deque = deque()
        self.maxlen = maxlen
        self.wakeup = wakeup            # thread-safe: wakes the stack thread
        self.pending = False
        self.enqueued = 0
        self.dequeued = 0
        self.drops = 0
        self.hiwat = 0
        self.wakeups = 0

    # -- producer thread -------------------------------------------------
    def put(self, m) -> bool:
        """Append `m` (ownership passes to the queue). False when the queue
        is full: the caller still owns `m` and must free it."""
        q = self.q
        n = len(q)
        if n >= self.maxlen:
            self.drops += 1
            return False
        q.append(m)
        self.enqueued += 1
        if n >= self.hiwat:
            self.hiwat = n + 1
        return True

    def kick(self) -> None:
        """After a burst of put(): wake the stack unless it is due anyway."""
        if not self.pending:
            self.pending = True
            self.wakeups += 1
            self.wakeup()

    # -- stack thread ----------------------------------------------------
    def take(self, burst: int) -> list:
        """Up to `burst` mbufs, oldest first; the caller owns them. Call
        begin_drain() once before a series of take()."""
        q = self.q
        out = []
        pop = q.popleft
        for _ in range(min(burst, len(q))):
            out.append(pop())
        self.dequeued += len(out)
        return out

    def begin_drain(self) -> None:
        self.pending = False

    def __len__(self) -> int:
        return len(self.q)

    def stats(self) -> dict:
        return {"len": len(self.q), "maxlen": self.maxlen, "enqueued": self.enqueued,
                "dequeued": self.dequeued, "drops": self.drops, "hiwat": self.hiwat,
                "wakeups": self.wakeups}
