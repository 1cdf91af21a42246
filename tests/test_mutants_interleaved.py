"""bench.interleaved's boundaries by value where mutation testing found no test: two rounds
have an interval, a half-width equal to the target meets it, and the time cap is measured from
the first round, inclusive."""

import pytest

from bench.interleaved import interleave, ratio_interval
from tests.conftest import FakeTimer


def test_two_ratios_have_an_interval():
    interval = ratio_interval([1.0, 1.2])
    assert interval is not None and interval.low < 1.0 < 1.2 < interval.high


def test_a_half_width_equal_to_the_target_meets_it():
    target = ratio_interval([100.0 * r / 100.0 for r in (1.04, 0.96)]).relative_half_width
    fake = FakeTimer([1.04, 0.96, 1.5])
    rounds = interleave(fake.round, 2, target, max_seconds=1000, clock=fake.clock)
    assert len(rounds.ratios) == 2 and rounds.target_met


@pytest.mark.parametrize(("max_seconds", "expected"), [(2.0, 2), (2.5, 3)])
def test_the_time_cap_counts_from_the_first_round_and_is_inclusive(max_seconds, expected):
    fake = FakeTimer([1.5, 1 / 1.5], seconds=1.0)
    fake.now = 1000.0  # a clock that does not start at zero
    rounds = interleave(fake.round, 1, 1e-9, max_seconds=max_seconds, clock=fake.clock)
    assert len(rounds.ratios) == expected  # 2 s after 2 rounds: at the cap; 2.5: one more
