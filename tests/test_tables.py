"""Tables from a fixed set of runs, checked against golden files; and from a real store."""

import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from bench.tables import build_tables, tidy_runs, write_tables
from bench.tracking import TrackedRun, client

GOLDEN = Path(__file__).parent / "golden"
REFERENCE = Path(__file__).parent.parent / "results" / "reference" / "vtab1k_petl.csv"


BASE_ACC = {"none": 0.80, "retrained": 0.84, "sls": 0.78, "block_benefit": 0.70}
BUDGETS = {"none": "none", "retrained": "none", "sls": "auto"}
EPOCHS = {"none": 0.0, "retrained": 30.0, "sls": 30.0, "block_benefit": 40.0}


def _raw_runs() -> pd.DataFrame:
    """What mlflow.search_runs returns for a small study: 3 tasks (one per VTAB group) × 4 methods
    × 2 seeds, plus an older duplicate, a failed run and the `tables` run, which must not count."""
    rows = []
    for t, task in enumerate(["cifar", "eurosat", "clevr_count"]):
        for method, acc in BASE_ACC.items():
            for seed in (0, 1):
                k = 8 + t - seed
                blocks = 12 if method in ("none", "retrained") else k
                rows.append({
                    "status": "FINISHED", "start_time": pd.Timestamp(2026, 1, 1, t, seed),
                    "tags.pruner": method, "tags.task": task, "tags.petl": "convpass",
                    "params.budget": BUDGETS.get(method, "match-sls"),
                    "params.seed": str(seed),
                    "metrics.test/acc": acc + 0.01 * t + 0.02 * seed,
                    "metrics.train/epochs_after_transfer": EPOCHS[method],
                    "metrics.throughput/bs64": 100.0 * 12 / blocks,
                    "metrics.speedup/bs64": 12 / blocks,
                    "metrics.params/total": 85.8e6 * blocks / 12,
                    "metrics.bytes/stored": 4000.0 * blocks,
                    "metrics.blocks/kept": float(blocks),
                    "metrics.sls/k": float(k) if method == "sls" else np.nan,
                    **{f"metrics.sls/score/block_{b:02d}": (b / 12 if method == "sls" else np.nan)
                       for b in range(1, 13)},
                })  # fmt: skip
    older = {**rows[0], "start_time": pd.Timestamp(2025, 1, 1), "metrics.test/acc": 0.1}
    failed = {**rows[1], "status": "FAILED", "metrics.test/acc": 0.0}
    tables_run = {"status": "FINISHED", "start_time": pd.Timestamp(2026, 2, 1), "tags.pruner": None}
    return pd.DataFrame([*rows, older, failed, tables_run])


def test_tidy_runs_keeps_the_newest_finished_benchmark_run_per_cell():
    runs = tidy_runs(_raw_runs())
    assert len(runs) == 24
    first = runs[(runs.task == "cifar") & (runs.method == "none") & (runs.seed == 0)]
    assert first["test/acc"].tolist() == [pytest.approx(0.80)]


@pytest.mark.parametrize("name", ["accuracy.md", "efficiency.md", "sls_k.md", "accuracy.tex"])
def test_tables_match_the_golden_files(tmp_path, name):
    build_tables(tidy_runs(_raw_runs()), tmp_path, REFERENCE)
    produced = (tmp_path / name).read_text()
    golden = GOLDEN / name
    if os.environ.get("UPDATE_GOLDEN"):
        golden.write_text(produced)
    assert produced == golden.read_text()


def test_group_means_and_the_two_overall_means_are_labelled_apart(tmp_path):
    build_tables(tidy_runs(_raw_runs()), tmp_path, REFERENCE)
    table = pd.read_csv(tmp_path / "accuracy_numeric.csv")
    none = table[(table.petl == "convpass") & (table.method == "none")].iloc[0]
    assert none["cifar"] == pytest.approx(81.0)  # seeds 80 and 82
    assert none["cifar std"] == pytest.approx(np.std([80, 82], ddof=1))
    assert none["Natural (1/7)"] == pytest.approx(81.0)
    assert none["Mean of group means"] == pytest.approx(np.mean([81, 82, 83]))
    assert none["Mean (3 tasks)"] == pytest.approx(np.mean([81, 82, 83]))
    convpass = table[(table.petl == "published") & (table.method == "convpass")].iloc[0]
    assert convpass["cifar"] == pytest.approx(72.29)


def test_tables_from_the_store_are_written_and_logged_to_the_suite(tmp_path):
    suite = "tests-tables"
    for seed, acc in ((0, 0.5), (1, 0.7)):
        params = {"budget": "auto", "seed": seed}
        tags = {"pruner": "sls", "task": "digits", "petl": "convpass"}
        with TrackedRun(suite, f"run{seed}", params, tags) as run:
            run.log_metrics({"test/acc": acc, "sls/k": 6, "throughput/bs1": 10.0})
    written = write_tables(suite, str(tmp_path / "out"))
    assert "| 60.0 ± 14.1 |" in (tmp_path / "out" / "accuracy.md").read_text()
    experiment = client().get_experiment_by_name(suite).experiment_id
    (tables_run,) = client().search_runs([experiment], "tags.kind = 'tables'")
    logged = {a.path for a in client().list_artifacts(tables_run.info.run_id, "tables")}
    assert {f"tables/{p.name}" for p in written} == logged
    again = write_tables(suite, str(tmp_path / "again"), log=False)  # the tables run is no run
    assert (tmp_path / "again" / "accuracy.md").read_text() == (
        tmp_path / "out" / "accuracy.md"
    ).read_text()
    assert len(again) == len(written)


def test_an_unknown_suite_is_a_clear_error(tmp_path):
    from bench.errors import UserError

    with pytest.raises(UserError, match="no suite 'no-such-suite'"):
        write_tables("no-such-suite", str(tmp_path))


def test_efficiency_shows_paired_deltas_against_both_controls_and_flags_other_epochs(tmp_path):
    build_tables(tidy_runs(_raw_runs()), tmp_path, REFERENCE)
    table = pd.read_csv(tmp_path / "efficiency.csv").set_index("method")
    for method, acc in BASE_ACC.items():  # every pair differs by the base accuracies alone
        expected_none = (acc - BASE_ACC["none"]) * 100
        expected_retrained = (acc - BASE_ACC["retrained"]) * 100
        assert table.loc[method, "Δ vs none (pts)"] == pytest.approx(expected_none)
        assert table.loc[method, "Δ vs retrained (pts)"] == pytest.approx(expected_retrained)
    assert table.loc["retrained", "epochs after transfer"] == 30
    assert table.loc["block_benefit", "note"] == (
        "trains 40 epochs after the transfer, retrained 30"
    )
    assert table["note"].fillna("").loc[["none", "retrained", "sls"]].tolist() == ["", "", ""]
    assert list(table.index[:3]) == ["none", "retrained", "sls"]


def _curve_runs() -> pd.DataFrame:
    """A depth curve on one task, two seeds: test accuracy peaks at k = 9 (seed 0) and 10
    (seed 1), the val200 curve at k = 8; SLS chose k = 7 and 10."""
    rows = []
    sls_k = {0: 7, 1: 10}
    peak = {("test", 0): 9, ("test", 1): 10, ("val200", 0): 8, ("val200", 1): 8}
    for seed in (0, 1):
        for split in ("test", "val200"):
            for k in range(1, 13):
                acc = 0.9 - 0.02 * abs(k - peak[split, seed])
                rows.append(_curve_row(seed, split, "drop_last", f"keep:{k}", acc, 12 / k))
        acc_at_sls = 0.9 - 0.02 * abs(sls_k[seed] - peak["test", seed])
        sls = _curve_row(seed, "test", "sls", "auto", acc_at_sls, 12 / sls_k[seed])
        rows.append({**sls, "metrics.sls/k": float(sls_k[seed])})
    return pd.DataFrame(rows)


def _curve_row(seed, split, method, budget, acc, speedup):
    return {"status": "FINISHED", "start_time": pd.Timestamp(2026, 3, 1, seed),
            "tags.pruner": method, "tags.task": "eurosat", "tags.petl": "convpass",
            "params.budget": budget, "params.seed": str(seed), "params.data.eval_split": split,
            "metrics.test/acc": acc, "metrics.speedup/bs64": speedup, "metrics.macs": 1.0 / speedup,
            "metrics.macs_unpruned": 1.0, "metrics.params/total": 1e6 / speedup}  # fmt: skip


def test_depth_curve_and_regret_tables_pick_the_right_depths(tmp_path):
    written = build_tables(tidy_runs(_curve_runs()), tmp_path, REFERENCE)
    names = {p.name for p in written}
    assert {"depth_curve.csv", "depth_curve.png", "sls_regret.csv", "sls_regret.md"} <= names
    curve = pd.read_csv(tmp_path / "depth_curve.csv")
    assert len(curve) == 48 and sorted(curve["split"].unique()) == ["test", "val200"]
    point = curve[(curve.seed == 0) & (curve.split == "test") & (curve.k == 3)].iloc[0]
    assert point["accuracy"] == pytest.approx(78.0) and point["speedup"] == pytest.approx(4.0)
    assert point["macs_ratio"] == pytest.approx(0.25)
    regret = pd.read_csv(tmp_path / "sls_regret.csv").set_index("seed")
    assert regret.loc[0, ["sls_k", "val_k", "oracle_k"]].tolist() == [7, 8, 9]
    assert regret.loc[1, ["sls_k", "val_k", "oracle_k"]].tolist() == [10, 8, 10]
    assert regret.loc[0, "sls_regret"] == pytest.approx(4.0)  # 90 - 86
    assert regret.loc[0, "val_regret"] == pytest.approx(2.0)  # 90 - 88 at k = 8 on test
    assert regret.loc[1, "sls_regret"] == pytest.approx(0.0)
    assert regret.loc[1, "val_acc"] == pytest.approx(86.0)
    summary = (tmp_path / "sls_regret.md").read_text()
    assert "| eurosat | convpass | 2       | 7/10" in summary and "oracle" in summary
    accuracy = (tmp_path / "accuracy.md").read_text()  # the method tables: sls, no curve point
    assert "| sls " in accuracy and "drop_last" not in accuracy


def test_ties_on_the_curve_go_to_the_smaller_depth():
    from bench.depth_curve import best_k

    points = pd.DataFrame({"k": [4, 5, 6], "accuracy": [80.0, 81.0, 81.0]})
    assert best_k(points) == (5, 81.0)


@pytest.mark.parametrize(("text", "depths"), [(None, list(range(1, 13))), ("1-3,12", [1, 2, 3, 12]),
                                               ("6", [6])])  # fmt: skip
def test_keep_lists(text, depths):
    from bench.depth_curve import parse_keep

    assert parse_keep(text, 12) == depths


@pytest.mark.parametrize("text", ["0-3", "13", "a-b"])
def test_bad_keep_lists_are_refused(text):
    from bench.depth_curve import parse_keep
    from bench.errors import UserError

    with pytest.raises(UserError, match="KEEP="):
        parse_keep(text, 12)


def test_a_method_evaluated_without_retraining_is_labelled_so():
    from bench.tables import epoch_notes

    runs = pd.DataFrame(
        {"task": ["cifar"] * 3, "petl": ["convpass"] * 3, "seed": [0] * 3,
         "method": ["retrained", "depgraph_sls", "sls"],
         "train/epochs_after_transfer": [30.0, 0.0, 30.0]}
    )  # fmt: skip
    notes = epoch_notes(runs)
    assert notes.to_dict() == {
        ("convpass", "depgraph_sls"): "not retrained: 0 epochs after the transfer, retrained 30"
    }
