"""iopkt.pacer: the token bucket of link-speed emulation, with a fake clock."""

import pytest

from iopkt.kern.pacer import WIRE_OVERHEAD, Pacer

from fakenet import FakeClock


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


# -- the link's parameters ------------------------------------------------------------

def test_speed_must_be_positive():
    for bad in (0, -10):
        with pytest.raises(ValueError, match=rf"^speed {bad}: must be > 0 Mbit/s$"):
            Pacer(bad, clock=FakeClock())
    assert Pacer(1, clock=FakeClock()).rate == 125000.0          # 1 Mbit/s is a speed
    assert Pacer(0.5, clock=FakeClock()).rate == 62500.0


def test_rate_in_bytes_and_bucket_size():
    """The bucket holds 2 ms of the rate, and never less than two
    full-size frames (so a slow link still lets a frame and its
    successor through back to back)."""
    p = Pacer(10, clock=FakeClock())
    assert (p.rate, p.burst, p.tokens, p.waits) == (1.25e6, 2 * (1514 + 24), 2 * (1514 + 24), 0)
    p = Pacer(100, clock=FakeClock())
    assert (p.rate, p.burst) == (12.5e6, pytest.approx(25000.0))
    p = Pacer(1000, clock=FakeClock(), burst_s=0.004)
    assert (p.rate, p.burst) == (125e6, pytest.approx(500000.0))


# -- one decision: go now and pay, or wait exactly this long and pay nothing --------------
# At 10 Mbit/s the bucket is 3076 bytes and a byte takes 0.8 us; the
# clock stands still unless the test moves it.

def test_a_frame_costs_its_length_plus_the_wire_overhead_of_each_segment():
    p = Pacer(10, clock=FakeClock())
    assert p.wait(1514) == 0.0
    assert p.tokens == 3076 - 1538
    assert p.wait(1000, frames=3) == 0.0
    assert p.tokens == 1538 - (1000 + 3 * 24)
    assert p.waits == 0


def test_a_refused_frame_is_told_how_long_and_takes_nothing():
    clock = FakeClock()
    p = Pacer(10, clock=clock)
    assert p.wait(2952) == 0.0                  # leaves 100 bytes in the bucket
    d = p.wait(1514)
    assert d == (1538 - 100) / 1.25e6
    assert p.tokens == 100 and p.waits == 1
    assert p.wait(1514) == d and p.waits == 2   # asking again changes nothing
    clock.advance(d)
    assert p.wait(1514) == 0.0 and p.waits == 2
    assert p.tokens == pytest.approx(0.0, abs=1e-6)


def test_within_a_byte_is_enough_to_go():
    p = Pacer(10, clock=FakeClock())
    assert p.wait(2952) == 0.0 and p.tokens == 100
    assert p.wait(100 - 24) == 0.0              # exactly what the bucket holds
    assert p.tokens == 0
    p = Pacer(10, clock=FakeClock())
    p.wait(2952)
    assert p.wait(101 - 24) == 0.0              # one byte short: goes
    assert p.tokens == -1
    p = Pacer(10, clock=FakeClock())
    p.wait(2952)
    assert p.wait(102 - 24) == 2 / 1.25e6       # two bytes short: waits for them
    assert p.tokens == 100 and p.waits == 1


def test_the_bucket_refills_at_the_rate_up_to_its_size():
    clock = FakeClock()
    p = Pacer(10, clock=clock)
    p.wait(2952)                                # 100 left
    clock.advance(0.001)                        # 1250 bytes' worth
    assert p.wait(1326 - 24) == 0.0             # 1350 there: 1326 of it spent
    assert p.tokens == pytest.approx(24.0)
    clock.advance(10.0)                         # long idle: full, no more
    assert p.wait(0) == 0.0
    assert p.tokens == 3076 - 24
    assert p.wait(1514) == 0.0 and p.wait(1514) == 24 / 1.25e6    # two frames, not more
