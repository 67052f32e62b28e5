"""A token bucket for events per second: how often the stack may send an
ICMP or ICMPv6 error (NetBSD limits both with ppsratecheck, kern_time.c;
Linux with a token bucket per family, icmp_global_allow). Tokens refill at
`rate` a second up to `burst`; each allowed event takes one.

Not the pacer (pacer.py): that one meters bytes on a link and makes the
sender wait; this one only answers yes or no.
"""

from __future__ import annotations

from typing import Callable


class TokenBucket:
    """`allow()` is True while tokens are left; `clock` is the stack's
    (monotonic seconds). Starts full."""

    __slots__ = ("clock", "rate", "burst", "tokens", "last")

    def __init__(self, clock: Callable[[], float], rate: float, burst: int):
        self.clock = clock
        self.rate = rate
        self.burst = burst
        self.tokens = float(burst)
        self.last = clock()

    def allow(self) -> bool:
        """One event now: True (a token taken) or False (none left)."""
        now = self.clock()
        self.tokens = min(self.burst, self.tokens + (now - self.last) * self.rate)
        self.last = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return True
        return False
