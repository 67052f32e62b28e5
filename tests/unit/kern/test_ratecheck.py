"""iopkt.kern.ratecheck: the ICMP error rate limit, with a fake clock."""

from hypothesis import given
from hypothesis import strategies as st

from iopkt.kern.ratecheck import TokenBucket


class Clock:
    def __init__(self):
        self.t = 1000.0

    def __call__(self):
        return self.t


def test_starts_full_then_refills_at_its_rate_up_to_its_burst():
    c = Clock()
    b = TokenBucket(c, rate=100, burst=5)
    assert [b.allow() for _ in range(6)] == [True] * 5 + [False]
    c.t += 0.0301                                   # three tokens back, not four
    assert [b.allow() for _ in range(4)] == [True] * 3 + [False]
    c.t += 3600                                     # an hour idle: still only the burst
    assert sum(b.allow() for _ in range(10)) == 5


@given(st.lists(st.floats(0, 0.2), min_size=1, max_size=60),
       st.integers(1, 20), st.floats(1, 500))
def test_never_more_than_burst_plus_rate_times_elapsed(gaps, burst, rate):
    # Over any run, allowed events <= burst + rate * elapsed (the bucket's
    # promise), and with a token always back in time, none is refused.
    c = Clock()
    b = TokenBucket(c, rate, burst)
    allowed = 0
    for g in gaps:
        c.t += g
        allowed += b.allow()
    assert allowed <= burst + rate * sum(gaps) + 1e-9
    c2 = Clock()
    b2 = TokenBucket(c2, rate, burst)
    for _ in gaps:
        c2.t += 1.001 / rate                       # (a hair over: float sums)
        assert b2.allow()
