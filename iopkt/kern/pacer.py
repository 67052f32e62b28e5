"""Link-speed emulation on our side of the wire: a token bucket.

A TAP has no line rate; to behave like a 10/100/1000 Mbit/s NIC a driver
paces its transmissions. Each frame costs its length plus the 24 bytes a
real Ethernet spends on it that a TAP never sees (preamble 7, SFD 1, FCS 4,
inter-frame gap 12), so a paced 100 Mbit/s link carries what a real one
carries: 8,127 full-size frames or 148,809 minimum-size frames a second.
"""

from __future__ import annotations

import time

WIRE_OVERHEAD = 24          # preamble + SFD + FCS + IFG, bytes


class Pacer:
    def __init__(self, mbps: float, clock=time.monotonic, burst_s: float = 0.002):
        if mbps <= 0:
            raise ValueError(f"speed {mbps}: must be > 0 Mbit/s")
        self.rate = mbps * 1e6 / 8               # bytes per second
        self.burst = max(2 * (1514 + WIRE_OVERHEAD), self.rate * burst_s)
        self.tokens = self.burst
        self.clock = clock
        self.last = clock()
        self.waits = 0

    def wait(self, nbytes: int, frames: int = 1) -> float:
        """0.0 if a frame of `nbytes` may go now (its cost is taken);
        otherwise the seconds until it may (nothing is taken). A super-frame
        that a NIC would send as `frames` segments pays each one's overhead."""
        now = self.clock()
        t = self.tokens + (now - self.last) * self.rate
        self.last = now
        self.tokens = t if t < self.burst else self.burst
        cost = nbytes + frames * WIRE_OVERHEAD
        # A super-frame may cost more than the bucket holds: it goes when
        # the bucket is full and leaves it in debt, so the rate stays exact.
        need = cost if cost < self.burst else self.burst
        # Within a byte is enough: a float clock may never add the last
        # fraction of a byte, and waiting for it would spin.
        if self.tokens + 1.0 >= need:
            self.tokens -= cost
            return 0.0
        self.waits += 1
        return (need - self.tokens) / self.rate
