"""Properties of the link-speed token bucket (pacer.py) with a fake clock.

Why: a paced link is only as good as its rate, and the rate is the sum of
thousands of small decisions; a cost off by the wire overhead, a wait a
little short or long, or a bucket refilled past its size each move it by
a few percent or let a burst through. So a greedy sender (it sends
whenever wait() says 0, else sleeps exactly the wait it was told) runs
thousands of frames of random sizes (60..1514 bytes, or super-frames of
several segments) at random rates, and every decision is checked against
the bucket's rules; over the run the admitted rate, wire overhead
included, must be the set rate within 1%, and no moment may be more than
a bucket ahead of it.
"""

import copy
import random

from hypothesis import given, settings
from hypothesis import strategies as st

from iopkt.kern.pacer import WIRE_OVERHEAD, Pacer

from fakenet import FakeClock

SETTINGS = settings(max_examples=25, deadline=None)
OVERHEAD = 7 + 1 + 4 + 12       # preamble, SFD, FCS, inter-frame gap: what a frame costs
FRAMES = 5000           # at least, and at least as many after the first wait

rates = st.one_of(st.sampled_from([1, 10, 100, 1000, 10000]),
                  st.floats(0.1, 10000, allow_nan=False, allow_infinity=False))


def frame_sizes(rnd: random.Random, kind: str):
    """(bytes, segments) for one frame: a plain frame 60..1514, a
    super-frame of 2..45 segments, or either."""
    if kind == "super" or (kind == "mixed" and rnd.random() < 0.3):
        frames = rnd.randint(2, 45)
        return rnd.randint(frames * 60, min(65535, frames * 1514)), frames
    return rnd.choice([60, 1514, rnd.randint(60, 1514)]), 1


def run_greedy(mbps: float, seed: int, kind: str, burst_s: float = 0.002) -> dict:
    """The greedy sender, checking every call to wait() on the way."""
    clock = FakeClock(1000.0 + seed % 100000)
    p = Pacer(mbps, clock=clock, burst_s=burst_s)
    rate = mbps * 1e6 / 8
    burst = max(2 * (1514 + OVERHEAD), rate * burst_s)
    assert p.rate == rate and p.burst == burst and WIRE_OVERHEAD == OVERHEAD
    rnd = random.Random(seed)
    t0 = clock.now
    tokens = burst                      # the model: the bucket by its rules
    last = t0
    sent = 0                            # bytes admitted, overhead included
    refusals = 0
    first_refusal = None                # (time, bytes sent by then)
    nframes = after = 0
    while nframes < FRAMES or after < FRAMES:
        nframes += 1
        after += first_refusal is not None
        nbytes, frames = frame_sizes(rnd, kind)
        cost = nbytes + frames * OVERHEAD
        need = min(cost, burst)
        waited = False
        while True:
            now = clock.now
            tokens = min(burst, tokens + (now - last) * rate)
            last = now
            if refusals < 200 and tokens + 1.0 < need:
                probe = copy.copy(p)    # the wait it will give is minimal
            d = p.wait(nbytes, frames)
            allowed = tokens + 1.0 >= need
            assert (d == 0.0) == allowed, (tokens, need, d)
            if d == 0.0:
                # Never more than a bucket ahead of the rate (a frame
                # larger than the bucket goes only when the bucket is full).
                assert sent + need <= burst + rate * (now - t0) + 1.0 + 1e-6 * burst
                tokens -= cost
                sent += cost
                break
            assert not waited, "a frame refused twice after waiting as told"
            assert d > 0 and abs(d - (need - tokens) / rate) <= 1e-9 * max(1.0, d)
            if refusals < 200 and d * rate > 3.0:
                probe.clock = FakeClock(now + d - 2.0 / rate)
                assert probe.wait(nbytes, frames) > 0, "the wait was longer than needed"
            refusals += 1
            if first_refusal is None:
                first_refusal = (now, sent)
            waited = True
            clock.advance(d)
        assert p.waits == refusals
    return {"rate": rate, "burst": burst, "t0": t0, "end": clock.now, "sent": sent,
            "first_refusal": first_refusal}


@SETTINGS
@given(mbps=rates, seed=st.integers(0, 2 ** 32), kind=st.sampled_from(["plain", "super", "mixed"]))
def test_greedy_sender_gets_the_set_rate(mbps, seed, kind):
    """Once the bucket the sender starts with is spent, it gets exactly
    the set rate (within 1%), the overhead of every segment counted."""
    r = run_greedy(mbps, seed, kind)
    assert r["first_refusal"] is not None
    t1, sent1 = r["first_refusal"]
    elapsed = r["end"] - t1
    assert elapsed > 0
    admitted = (r["sent"] - sent1) * 8 / elapsed
    assert abs(admitted - mbps * 1e6) <= 0.01 * mbps * 1e6, (admitted, mbps)


@settings(max_examples=10, deadline=None)
@given(mbps=st.sampled_from([0.5, 1, 5, 10]), seed=st.integers(0, 2 ** 32))
def test_slow_link_rate_from_the_start(mbps, seed):
    """At low rates the run lasts long enough (many seconds simulated) for
    the rate measured from the very first frame, initial bucket included,
    to be within 1% of the set rate too."""
    r = run_greedy(mbps, seed, "plain")
    whole = r["end"] - r["t0"]
    assert whole > 100 * r["burst"] / r["rate"]          # the bucket is < 1% of the run
    admitted = r["sent"] * 8 / whole
    assert abs(admitted - mbps * 1e6) <= 0.01 * mbps * 1e6, (admitted, mbps)


@SETTINGS
@given(mbps=rates, seed=st.integers(0, 2 ** 32),
       gaps=st.lists(st.floats(0, 0.05), min_size=1, max_size=50))
def test_a_sender_that_pauses_never_gets_more_than_a_bucket(mbps, seed, gaps):
    """A sender that pauses at random (the bucket fills, but no further
    than its size) may send a bucket's worth at once and no more: from
    the end of a pause on, what goes is at most the bucket plus the rate
    times the time since (but for the excess of a super-frame larger than
    the bucket, which goes when the bucket is full)."""
    clock = FakeClock()
    p = Pacer(mbps, clock=clock)
    rnd = random.Random(seed)
    for gap in gaps:
        clock.advance(gap + p.burst / p.rate)           # it fills (up to its size)
        start, sent = clock.now, 0
        for _ in range(rnd.randint(1, 200)):
            nbytes, frames = frame_sizes(rnd, "mixed")
            cost = nbytes + frames * OVERHEAD
            if (d := p.wait(nbytes, frames)):
                clock.advance(d)
                assert p.wait(nbytes, frames) == 0.0, "refused twice after waiting as told"
            sent += cost
            # Everything but the last frame's excess over a full bucket.
            assert sent - max(0, cost - p.burst) <= \
                p.burst + p.rate * (clock.now - start) + 1.0 + 1e-9 * sent


@settings(max_examples=50, deadline=None)
@given(mbps=rates, nbytes=st.integers(0, 200000), frames=st.integers(1, 200),
       idle=st.floats(0, 10))
def test_a_full_bucket_lets_anything_go_once(mbps, nbytes, frames, idle):
    """With the bucket full, any frame goes at once, even one larger than
    the bucket (it leaves a debt); the next frame then waits for the debt
    to be paid plus its own cost (within a byte)."""
    clock = FakeClock()
    p = Pacer(mbps, clock=clock)
    clock.advance(idle)
    assert p.wait(nbytes, frames) == 0.0 and p.waits == 0
    cost = nbytes + frames * OVERHEAD
    d = p.wait(1514)
    owed = cost - p.burst + 1514 + OVERHEAD        # tokens needed to reach 1538
    if owed > 1.0:                                      # within a byte is enough
        assert d > 0 and p.waits == 1
        assert abs(d * p.rate - owed) <= 1e-6 * owed
    else:
        assert d == 0.0 and p.waits == 0
