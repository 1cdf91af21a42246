"""The tables' aggregation by value where mutation testing found no test: means and sample stds
over seeds (per cell, and of each seed's mean over tasks), the collapse rule's scaled MAD, the
bootstrap interval's exact ends from its fixed seed, and the tasks' order it resamples."""

import math

import pandas as pd
import pytest

from bench.tables.intervals import task_groups, two_level_interval
from bench.tables.seeds import collapsed_seeds, over_seeds, per_cell

# method a: seeds 0 and 1 on two tasks; method b: one seed
RUNS = pd.DataFrame({"method": ["a"] * 4 + ["b"] * 2, "seed": [0, 0, 1, 1, 0, 0],
                     "task": ["t1", "t2"] * 3, "acc": [1.0, 3.0, 5.0, 7.0, 2.0, 2.0],
                     "x": [10.0, 10.0, 20.0, 40.0, 1.0, 3.0]})  # fmt: skip


def test_over_seeds_is_the_mean_and_sample_std_of_each_seeds_mean_over_tasks():
    stats = over_seeds(RUNS, ["method"], ["acc", "x"])
    # a: seed means 2 and 6 (acc), 10 and 30 (x); b: one seed, std 0
    assert stats.loc["a", ("acc", "mean")] == 4.0
    assert stats.loc["a", ("acc", "std")] == pytest.approx(math.sqrt(8.0))
    assert stats.loc["a", ("x", "mean")] == 20.0
    assert stats.loc["a", ("x", "std")] == pytest.approx(math.sqrt(200.0))
    assert stats.loc["b"].tolist() == [2.0, 0.0, 2.0, 0.0]


def test_per_cell_is_the_mean_sample_std_and_count_over_seeds():
    means, stds, counts = per_cell(RUNS, "acc", ["method"], "task")
    assert means.loc["a"].tolist() == [3.0, 5.0] and means.loc["b"].tolist() == [2.0, 2.0]
    assert stds.loc["a"].tolist() == pytest.approx([math.sqrt(8.0)] * 2)
    assert stds.loc["b"].isna().all()  # one seed: no sample std
    assert counts.loc["a"].tolist() == [2, 2] and counts.loc["b"].tolist() == [1, 1]


GROUPS = [[1.0, 2.0, 4.0], [3.0, 3.5], [0.0, 5.0, 6.0, 2.0]]


def test_the_bootstrap_interval_is_fixed_by_its_seed():
    """The same values give the same interval, to the last digit (RESAMPLES draws, seed 0)."""
    assert two_level_interval(GROUPS) == (1.8, pytest.approx(4.181818181818182, abs=1e-12))
    assert two_level_interval(GROUPS, pooled=False) == pytest.approx((17 / 9, 4.0), abs=1e-12)
    small = two_level_interval(GROUPS, resamples=1000, seed=3, confidence=0.5)
    assert small == pytest.approx((2.5, 10 / 3), abs=1e-12)


def test_task_groups_are_in_task_order_whatever_the_rows_order():
    values = pd.DataFrame({"task": ["svhn", "cifar", "svhn", "dtd"], "delta": [1.0, 2.0, 3.0, 4.0]})
    groups = task_groups(values, "delta")
    assert [g.tolist() for g in groups] == [[2.0], [4.0], [1.0, 3.0]]


def test_one_task_with_two_seeds_has_an_interval():
    assert two_level_interval([[1.0, 3.0]]) == (1.0, 3.0)


def _cell(values, **columns) -> pd.DataFrame:
    return pd.DataFrame({"cell": "a", "seed": range(len(values)), "acc": values, **columns})


def test_collapse_is_measured_in_mads_scaled_to_a_normal_std():
    """MAD 2, scaled 2.97: 92 lies 8 from the median 84, within 3 scaled MADs (not 3 raw)."""
    assert collapsed_seeds(_cell([80.0, 82.0, 84.0, 86.0, 92.0]), "acc", ["cell"], 1.0).empty
    flagged = collapsed_seeds(_cell([80.0, 82.0, 84.0, 86.0, 94.0]), "acc", ["cell"], 1.0)
    assert flagged["acc"].tolist() == [94.0] and flagged["median"].tolist() == [84.0]


def test_a_seed_exactly_three_scales_from_the_median_has_not_collapsed():
    """MAD 0, so the scale is min_scale 1.0: 53 is exactly 3 from the median 50, 53.5 beyond."""
    assert collapsed_seeds(_cell([50.0, 50.0, 53.0]), "acc", ["cell"], 1.0).empty
    assert collapsed_seeds(_cell([50.0, 50.0, 53.5]), "acc", ["cell"], 1.0)["acc"].tolist() == [
        53.5
    ]


def test_collapse_judges_runs_whatever_their_other_columns_hold():
    runs = _cell([81.0, 80.2, 65.9], note=["", "", None])
    assert collapsed_seeds(runs, "acc", ["cell"], 1.0)["acc"].tolist() == [65.9]


def test_no_cell_to_judge_gives_an_empty_float_median():
    flagged = collapsed_seeds(_cell([81.0, 65.9]), "acc", ["cell"], 1.0)
    assert flagged.empty and flagged["median"].dtype == float
