"""iopkt.pacer: the token bucket of link-speed emulation, with a fake clock."""

import pytest

from fakenet import FakeClock
from iopkt.pacer import WIRE_OVERHEAD, Pacer


def admitted_rate(p: Pacer, clock: FakeClock, sizes, frames=1) -> float:
    """Send frames of `sizes` as fast as the pacer lets them go; the
    rate (bit/s, wire overhead included) over the whole run."""
    start = clock.now
    sent = 0
    for n in sizes:
        while True:
            d = p.wait(n, frames)
            if not d:
                break
            clock.advance(d)
        sent += n + frames * WIRE_OVERHEAD
    return sent * 8 / (clock.now - start)


@pytest.mark.parametrize("mbps", [10, 100, 1000])
def test_full_size_frames_at_the_line_rate(mbps):
    clock = FakeClock()
    p = Pacer(mbps, clock=clock)
    rate = admitted_rate(p, clock, [1514] * 20000)
    assert rate == pytest.approx(mbps * 1e6, rel=0.01)


def test_a_superframe_larger_than_the_bucket_goes_and_leaves_a_debt():
    clock = FakeClock()
    p = Pacer(100, clock=clock)                 # bucket of 25 000 bytes
    assert p.burst < 65000
    assert p.wait(65000, 45) == 0.0             # a full bucket lets it go
    d = p.wait(1514)                            # then the debt is paid first
    owed = 65000 + 45 * WIRE_OVERHEAD - p.burst + 1514 + WIRE_OVERHEAD
    assert d == pytest.approx(owed / (100e6 / 8))


def test_superframes_are_paced_to_the_rate_of_their_segments():
    clock = FakeClock()
    p = Pacer(1000, clock=clock)
    rate = admitted_rate(p, clock, [65000] * 2000, frames=45)
    assert rate == pytest.approx(1e9, rel=0.01)
