"""Interleaved rounds of two timings, added until their ratio's 95 % interval is narrow enough.

A round times the reference and the candidate once each, back to back; its ratio is candidate /
reference. The interval is a Student t-interval on the rounds' log ratios, exponentiated: an
interval for the geometric mean of the ratios, multiplicative as a speedup is. Below two rounds
there is no interval (None), never a zero-width one.
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from scipy import stats

CONFIDENCE = 0.95


@dataclass(frozen=True)
class Interval:
    low: float
    high: float
    center: float  # the geometric mean of the ratios

    @property
    def relative_half_width(self) -> float:
        """How far the ends lie from the center, as a fraction of it: `high / center - 1` (the
        lower end, `1 - low / center`, is closer on this multiplicative scale)."""
        return self.high / self.center - 1


def ratio_interval(ratios: Sequence[float], confidence: float = CONFIDENCE) -> Interval | None:
    """exp(mean ± t_{(1+confidence)/2, n-1} · sd / √n) of the log ratios; None below 2 ratios."""
    if len(ratios) < 2:
        return None
    logs = [math.log(r) for r in ratios]
    mean, n = statistics.fmean(logs), len(logs)
    half = stats.t.ppf((1 + confidence) / 2, n - 1) * statistics.stdev(logs) / math.sqrt(n)
    return Interval(math.exp(mean - half), math.exp(mean + half), math.exp(mean))


@dataclass
class Rounds:
    """Per-round throughputs of the two models and where the rounds stopped."""

    reference: list[float] = field(default_factory=list)
    candidate: list[float] = field(default_factory=list)
    interval: Interval | None = None
    target_met: bool = False

    @property
    def ratios(self) -> list[float]:
        return [c / r for c, r in zip(self.candidate, self.reference, strict=True)]


def interleave(
    time_round: Callable[[], tuple[float, float]],
    min_rounds: int,
    target: float | None,
    max_seconds: float,
    clock: Callable[[], float] = time.perf_counter,
) -> Rounds:
    """Run `time_round()` -> (reference, candidate) throughputs: `min_rounds` rounds, then
    more until the ratio's interval has a relative half-width of at most `target`, or until
    `max_seconds` have passed since the first round began. `target` None: `min_rounds` rounds."""
    if min_rounds < 1:
        raise ValueError(f"min_rounds must be at least 1, got {min_rounds}")
    start = clock()
    rounds = Rounds()
    while True:
        reference, candidate = time_round()
        rounds.reference.append(reference)
        rounds.candidate.append(candidate)
        rounds.interval = ratio_interval(rounds.ratios)
        rounds.target_met = (
            target is not None
            and rounds.interval is not None
            and rounds.interval.relative_half_width <= target
        )
        if len(rounds.reference) < min_rounds:
            continue
        if target is None or rounds.target_met or clock() - start >= max_seconds:
            return rounds
