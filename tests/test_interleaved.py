"""The speedup's interval and the adaptive rounds, on fake per-round timings and a fake clock:
the interval equals a hand computation, rounds stop once it is under the target, at the time cap
otherwise, never below the minimum, and there is no interval below two rounds."""

import math

import pytest

from bench import record
from bench.config import MeasureConfig
from bench.interleaved import interleave, ratio_interval
from bench.measure import compare_throughput
from tests.conftest import FakeTimer

T_975_3DF = 3.182446305284263  # Student t, 97.5th percentile, 3 degrees of freedom (tables)


def test_the_interval_is_the_t_interval_of_the_log_ratios():
    logs = [0.2, 0.3, 0.1, 0.2]  # mean 0.2, sample sd sqrt(0.02 / 3)
    half = T_975_3DF * math.sqrt(0.02 / 3) / math.sqrt(4)  # 0.129923
    interval = ratio_interval([math.exp(v) for v in logs])
    assert interval.center == pytest.approx(math.exp(0.2))
    assert interval.low == pytest.approx(math.exp(0.2 - half))  # 1.072591
    assert interval.high == pytest.approx(math.exp(0.2 + half))  # 1.390861
    assert (interval.low, interval.high) == pytest.approx((1.072591, 1.390861), abs=1e-6)
    assert interval.relative_half_width == pytest.approx(math.expm1(half))


def test_below_two_rounds_there_is_no_interval():
    assert ratio_interval([1.3]) is None
    assert ratio_interval([]) is None


CONVERGING = [1.04, 0.96] + [1.0] * 30  # relative half-width 0.0358 after 5 rounds, 0.0269 after 6


def test_rounds_stop_once_the_interval_is_under_the_target():
    fake = FakeTimer(CONVERGING)
    rounds = interleave(fake.round, 3, 0.03, max_seconds=1000, clock=fake.clock)
    assert len(rounds.ratios) == fake.calls == 6
    assert rounds.target_met
    assert rounds.interval.relative_half_width == pytest.approx(0.026923, abs=1e-6)
    assert ratio_interval(CONVERGING[:5]).relative_half_width > 0.03  # one round fewer: not yet


def test_rounds_stop_at_the_time_cap_when_the_target_is_not_reached():
    fake = FakeTimer([1.5, 1 / 1.5], seconds=2.0)  # far too noisy for 3 % in 9 s
    rounds = interleave(fake.round, 3, 0.03, max_seconds=9, clock=fake.clock)
    assert len(rounds.ratios) == 5  # 10 s on the clock after the fifth round
    assert not rounds.target_met
    assert rounds.interval.relative_half_width > 0.03


def test_the_minimum_rounds_are_run_even_when_the_target_is_met_earlier():
    fake = FakeTimer([1.0])
    rounds = interleave(fake.round, 7, 0.03, max_seconds=0, clock=fake.clock)
    assert len(rounds.ratios) == 7 and rounds.target_met


def test_without_a_target_exactly_the_minimum_rounds_are_run():
    fake = FakeTimer([1.5, 1 / 1.5])
    rounds = interleave(fake.round, 4, None, max_seconds=1000, clock=fake.clock)
    assert len(rounds.ratios) == 4 and not rounds.target_met


def test_compare_throughput_logs_the_median_its_interval_and_the_rounds(monkeypatch):
    """Fake throughputs in call order: reference, candidate, reference, candidate, ..."""
    timings = iter([100.0, 200.0, 110.0, 200.0, 90.0, 200.0])  # ratios 2, 20/11, 20/9
    monkeypatch.setattr("bench.measure.throughput", lambda *args: next(timings))
    cfg = MeasureConfig(batch_sizes=[4], rounds=3, ratio_target=0.5, max_seconds=1000)
    out = compare_throughput(None, None, 16, None, cfg)
    interval = ratio_interval([2.0, 20 / 11, 20 / 9])
    assert interval.relative_half_width < 0.5
    assert out == {
        record.throughput(4): 200.0,
        record.throughput_unpruned(4): 100.0,
        record.speedup(4): 2.0,
        record.speedup_low(4): pytest.approx(interval.low),
        record.speedup_high(4): pytest.approx(interval.high),
        record.speedup_rounds(4): 3,
        record.speedup_target_met(4): 1.0,
    }
    assert interval.low < 2.0 < interval.high


def test_one_round_without_a_target_logs_no_interval(monkeypatch):
    timings = iter([100.0, 150.0])
    monkeypatch.setattr("bench.measure.throughput", lambda *args: next(timings))
    cfg = MeasureConfig(batch_sizes=[1], rounds=1, ratio_target=None)
    out = compare_throughput(None, None, 16, None, cfg)
    assert out == {"throughput/bs1": 150.0, "throughput_unpruned/bs1": 100.0,
                   "speedup/bs1": 1.5, "speedup_rounds/bs1": 1}  # fmt: skip


def test_the_merged_names_follow_record_merged():
    assert record.merged(record.speedup_low(1)) == "speedup_low_merged/bs1"
    assert record.merged(record.speedup_rounds(64)) == "speedup_rounds_merged/bs64"
