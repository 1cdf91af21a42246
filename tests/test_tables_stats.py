"""Intervals, collapsed seeds, the timer's noise floor and the reproduction check, on hand-built
runs whose expected numbers are computed here, independently of bench.tables."""

import math
import random
import statistics
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from bench.tables.efficiency import combined_timer_interval
from bench.tables.intervals import two_level_interval
from bench.tables.runs import tidy_runs
from bench.tables.seeds import collapsed_seeds
from bench.tables.write import build_tables

ORIG = "hub:vit_base_patch16_224.orig_in21k"
# sls minus none, in points, per task and seed: tasks with 3, 2, 4 and 3 seeds
DELTAS = {"cifar": [1.0, 2.0, 4.0], "dtd": [3.0, 3.5], "eurosat": [0.0, 5.0, 6.0, 2.0],
          "clevr_count": [-1.0, 1.5, 2.5]}  # fmt: skip
MONTE_CARLO = 0.08  # about 4 standard errors of either end (10,000 vs 20,000 resamples)


def _raw(task, method, seed, metrics, petl="convpass", budget="none", weights=ORIG,
         checkpoint="last") -> dict:  # fmt: skip
    return {"status": "FINISHED", "start_time": pd.Timestamp(2026, 1, 1),
            "tags.pruner": method, "tags.task": task, "tags.petl": petl,
            "params.budget": budget, "params.seed": str(seed), "params.data.source": "folder",
            "params.data.format": "jpeg", "params.weights": weights,
            "params.transfer.checkpoint": checkpoint,
            **{f"metrics.{k}": v for k, v in metrics.items()}}  # fmt: skip


def _tables(rows: list[dict], tmp_path: Path, reference: Path | None = None) -> Path:
    reference = reference or tmp_path / "no-reference.csv"
    build_tables(tidy_runs(pd.DataFrame(rows)), tmp_path, reference)
    return tmp_path


def _independent_interval(groups, pooled: bool, draws: int = 20_000) -> tuple[float, float]:
    """Two-level percentile bootstrap in plain Python: tasks with replacement, then seeds with
    replacement within each drawn task."""
    rng = random.Random(7)
    means = []
    for _ in range(draws):
        seeds = [[rng.choice(task) for _ in task] for task in (rng.choice(groups) for _ in groups)]
        if pooled:
            means.append(statistics.fmean(v for task in seeds for v in task))
        else:
            means.append(statistics.fmean(statistics.fmean(task) for task in seeds))
    quantiles = statistics.quantiles(means, n=40, method="inclusive")  # 2.5 % steps
    return quantiles[0], quantiles[-1]


def _delta_study() -> list[dict]:
    rows = []
    for t, (task, deltas) in enumerate(DELTAS.items()):
        for seed, delta in enumerate(deltas):
            none = 0.70 + 0.01 * t + 0.003 * seed
            rows.append(_raw(task, "none", seed, {"test/acc": none}))
            rows.append(_raw(task, "sls", seed, {"test/acc": none + delta / 100}, budget="auto"))
    return rows


def test_delta_interval_is_the_two_level_bootstrap_of_the_paired_differences(tmp_path):
    table = pd.read_csv(_tables(_delta_study(), tmp_path) / "efficiency.csv")
    sls = table.set_index("method").loc["sls"]
    every = [d for deltas in DELTAS.values() for d in deltas]
    assert sls["Δ vs none (pts)"] == pytest.approx(statistics.fmean(every))
    low, high = _independent_interval(list(DELTAS.values()), pooled=True)
    assert sls["Δ vs none (pts) low"] == pytest.approx(low, abs=MONTE_CARLO)
    assert sls["Δ vs none (pts) high"] == pytest.approx(high, abs=MONTE_CARLO)
    assert high - low > 1.0  # not a degenerate interval
    shown = (tmp_path / "efficiency.md").read_text()
    assert "Δ vs none 95 %" in shown and "tasks drawn with replacement, then seeds" in shown


def test_mean_over_tasks_interval_resamples_tasks_then_seeds(tmp_path):
    numeric = pd.read_csv(_tables(_delta_study(), tmp_path) / "accuracy_numeric.csv")
    sls = numeric.set_index("method").loc["sls"]
    accuracies = []
    for t, deltas in enumerate(DELTAS.values()):
        accuracies.append([(0.70 + 0.01 * t + 0.003 * s) * 100 + d for s, d in enumerate(deltas)])
    assert sls["Mean (4 tasks)"] == pytest.approx(statistics.fmean(map(statistics.fmean,
                                                                       accuracies)))  # fmt: skip
    low, high = _independent_interval(accuracies, pooled=False)
    assert sls["Mean (4 tasks) low"] == pytest.approx(low, abs=MONTE_CARLO)
    assert sls["Mean (4 tasks) high"] == pytest.approx(high, abs=MONTE_CARLO)


def test_one_task_with_one_seed_has_no_interval():
    assert two_level_interval([[2.5]]) is None
    assert two_level_interval([[2.5, np.nan], []]) is None
    assert two_level_interval([[2.5], [3.5]]) is not None  # two tasks: resampled


def _collapse_study(svhn_seeds: list[float]) -> list[dict]:
    normal = {"cifar": [80.0, 81.2, 79.1, 80.5], "dtd": [60.3, 61.0, 59.8, 60.6]}
    cells = {**normal, "svhn": svhn_seeds}
    return [_raw(task, "none", seed, {"test/acc": acc / 100})
            for task, seeds in cells.items() for seed, acc in enumerate(seeds)]  # fmt: skip


def test_a_collapsed_seed_is_flagged_in_the_table_and_the_page(tmp_path):
    """VPT #42: one of four SVHN seeds at 65.9 against ~81 for the others."""
    out = _tables(_collapse_study([81.0, 80.6, 81.4, 65.9]), tmp_path)
    rows = {r["method"]: r for r in _markdown_rows(out / "accuracy.md")}
    assert rows["none"]["svhn"].endswith(" †")
    assert rows["none"]["cifar"] == "80.2 ± 0.9" and rows["none"]["dtd"] == "60.4 ± 0.5"
    assert rows["none"]["collapsed seeds"] == "svhn seed 3: 65.9 (median 80.8)"
    page = (out / "index.html").read_text()
    assert "svhn seed 3: 65.9 (median 80.8)" in page and "† a collapsed seed" in page


def test_a_normal_spread_is_not_flagged(tmp_path):
    out = _tables(_collapse_study([81.0, 79.4, 81.9, 80.2]), tmp_path)
    rows = _markdown_rows(out / "accuracy.md")
    assert "collapsed seeds" not in rows[0]
    assert not any("†" in cell for row in rows for cell in row.values())


@pytest.mark.parametrize(
    ("values", "flagged"),
    [
        (
            [81.0, 81.0, 81.0, 79.0],
            [],
        ),  # seeds agreeing to the decimal: a 2-point gap is no collapse
        ([81.0, 81.0, 81.0, 77.0], [77.0]),  # 4 points: beyond the 1-point scale's 3
        ([81.0, 65.9], []),  # fewer than 3 seeds: not judged
        ([81.0, 80.2, 65.9], [65.9]),
    ],
)
def test_collapse_rule(values, flagged):
    runs = pd.DataFrame({"cell": "a", "seed": range(len(values)), "acc": values})
    assert collapsed_seeds(runs, "acc", ["cell"], 1.0)["acc"].tolist() == flagged


def test_cells_of_two_seeds_are_not_judged_nor_widen_the_others_scale():
    runs = pd.DataFrame({"cell": ["a", "a", "b", "b", "b"], "seed": [0, 1, 0, 1, 2],
                         "acc": [81.0, 65.9, 81.0, 81.5, 75.0]})  # fmt: skip
    assert collapsed_seeds(runs, "acc", ["cell"], 1.0)["acc"].tolist() == [75.0]


def _markdown_rows(path: Path) -> list[dict[str, str]]:
    lines = [line for line in path.read_text().splitlines() if line.startswith("|")]
    header = [cell.strip() for cell in lines[0].strip("|").split("|")]
    return [dict(zip(header, (c.strip() for c in line.strip("|").split("|")), strict=True))
            for line in lines[2:]]  # fmt: skip


def _speed(speedup, low=None, high=None, met=None) -> dict:
    metrics = {"speedup/bs1": speedup}
    if low is not None:
        metrics.update({"speedup_low/bs1": low, "speedup_high/bs1": high})
    if met is not None:
        metrics["speedup_target_met/bs1"] = met
    return metrics


def test_speedups_show_the_timers_interval_against_the_noise_floor(tmp_path):
    rows = [
        _raw("cifar", "none", 0, {"test/acc": 0.8, **_speed(0.98, 0.95, 1.02, 1.0)}),
        _raw("cifar", "retrained", 0, {"test/acc": 0.8, **_speed(1.01, 0.99, 1.04, 0.0)}),
        _raw("cifar", "sls", 0, {"test/acc": 0.8, **_speed(2.1, 2.05, 2.16, 1.0)}, budget="auto"),
        _raw("cifar", "magnitude", 0, {"test/acc": 0.8, **_speed(1.5)}, budget="match-sls"),
    ]
    out = _tables(rows, tmp_path)
    shown = {r["method"]: r for r in _markdown_rows(out / "efficiency.md")}
    assert shown["none"]["speedup bs1 95 %"] == "[0.95, 1.02]"
    assert shown["sls"]["speedup bs1 95 %"] == "[2.05, 2.16]"
    assert shown["magnitude"]["speedup bs1 95 %"] == "no interval"
    assert shown["sls"]["Δ vs none 95 %"] == "no interval"  # one task, one seed
    assert shown["retrained"]["note"] == (
        "speedup interval overlaps the noise floor (bs1); timing stopped at the time cap "
        "(measure.max_seconds) before the ratio target: bs1 1 of 1 runs"
    )
    assert shown["sls"]["note"] == shown["magnitude"]["note"] == shown["none"]["note"] == ""
    text = (out / "efficiency.md").read_text()
    assert "Noise floor (A/A: `none`, the unpruned model timed against itself): convpass bs1: " \
           "0.98 [0.95, 1.02]." in text  # fmt: skip


def test_the_timers_interval_of_several_runs():
    assert combined_timer_interval(np.array([1.9]), np.array([2.1])) == pytest.approx((1.9, 2.1))
    # log half-widths 0.1 and 0.2 about centers e^0.5 and e^0.7: √(0.01 + 0.04) / 2 about e^0.6
    lows, highs = np.exp([0.4, 0.5]), np.exp([0.6, 0.9])
    half = math.sqrt(0.05) / 2
    expected = (math.exp(0.6 - half), math.exp(0.6 + half))
    assert combined_timer_interval(lows, highs) == pytest.approx(expected)
    assert combined_timer_interval(np.array([1.9, np.nan]), np.array([2.1, np.nan])) is None


def test_drop_last_at_the_same_depth_is_a_paired_reference(tmp_path):
    def run(method, seed, acc, kept, budget):
        metrics = {"test/acc": acc, "blocks/kept": kept, "sls/k": kept}
        return _raw("cifar", method, seed, metrics, budget=budget)

    rows = [run("none", 0, 0.80, 12, "none"), run("none", 1, 0.80, 12, "none"),
            run("sls", 0, 0.78, 8, "auto"), run("sls", 1, 0.76, 7, "auto"),
            run("drop_last", 0, 0.75, 8, "match-sls"), run("drop_last", 1, 0.70, 7, "keep:7"),
            run("drop_last", 1, 0.60, 6, "keep:6")]  # fmt: skip
    table = pd.read_csv(_tables(rows, tmp_path) / "efficiency.csv").set_index("method")
    assert table.loc["sls", "Δ vs drop_last @ same k (pts)"] == pytest.approx((3 + 6) / 2)
    assert math.isnan(table.loc["drop_last", "Δ vs drop_last @ same k (pts)"])
    assert math.isnan(table.loc["none", "Δ vs drop_last @ same k (pts)"])  # no drop_last at 12


def _reference(tmp_path: Path) -> Path:
    path = tmp_path / "reference.csv"
    path.write_text(
        "method,params_m,weights,cifar,dtd,eurosat,source\n"
        "convpass,0.33,orig_in21k,72.5,62.0,94.5,paper\n"
        "lora,0.29,orig_in21k,67.1,69.8,95.3,paper\n"
    )
    return path


def test_reproduction_deltas_and_flags_are_the_hand_computed_ones(tmp_path):
    best = {"cifar": [0.700, 0.710, 0.720], "dtd": [0.600, 0.602, 0.604],
            "eurosat": [0.950, 0.950, 0.956]}  # fmt: skip
    rows = []
    for task, accs in best.items():
        for seed, acc in enumerate(accs):
            both = {"test/acc": acc - 0.05, "test/acc_best_of_evals": acc}
            rows.append(_raw(task, "none", seed, both))
            rows.append(_raw(task, "retrained", seed, {"test/acc": acc}))  # last epoch only
            rows.append(_raw(task, "none", seed, both, petl="lora", weights="random-init"))
    out = _tables(rows, tmp_path, _reference(tmp_path))
    table = pd.read_csv(out / "reproduction.csv").set_index(["petl", "control", "task"])
    none = table.loc[("convpass", "none")]
    # cifar: 71.0 ± 1.0 → tolerance 2 (2 stds); dtd: 60.2 ± 0.2 → 1 point; eurosat: 95.2 ± 0.35
    assert none["Δ (pts)"].tolist() == pytest.approx([71.0 - 72.5, 60.2 - 62.0, 95.2 - 94.5])
    assert none["tolerance (pts)"].tolist() == pytest.approx([2.0, 1.0, 1.0])
    assert [s.split(" (")[0] for s in none["status"]] == [
        "within tolerance", "outside tolerance", "within tolerance"]  # fmt: skip
    assert set(none["selection (ours)"]) == {
        "best-of-evals: test/acc_best_of_evals, transfer.checkpoint=last"}  # fmt: skip
    assert set(none["weights (ours)"]) == {ORIG} and set(none["data (published)"]) == {"unknown"}
    retrained = table.loc[("convpass", "retrained")]
    assert retrained["Δ (pts)"].tolist() == pytest.approx([-1.5, -1.8, 0.7])
    assert set(retrained["status"]) == {"not comparable: selection last epoch ≠ best-of-evals"}
    lora = table.loc[("lora", "none")]
    assert lora["Δ (pts)"].tolist() == pytest.approx([71.0 - 67.1, 60.2 - 69.8, 95.2 - 95.3])
    assert set(lora["status"]) == {"not comparable: weights random-init ≠ orig_in21k"}
    assert lora["tolerance (pts)"].isna().all()
    note = (out / "reproduction.md").read_text()
    assert "convpass, none: reproduced within tolerance on 2 of 19 tasks (3 compared, 0 not " \
           "comparable, 16 not run)" in note  # fmt: skip
    assert "lora, none: reproduced within tolerance on 0 of 19 tasks (0 compared, 3 not " \
           "comparable, 16 not run)" in note  # fmt: skip
    assert 'id="reproduction"' in (out / "index.html").read_text()
