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


def _raw_runs() -> pd.DataFrame:
    """What mlflow.search_runs returns for a small study: 3 tasks (one per VTAB group) × 3 methods
    × 2 seeds, plus an older duplicate, a failed run and the `tables` run, which must not count."""
    rows = []
    base = {"none": 0.80, "sls": 0.78, "drop_last": 0.70}
    for t, task in enumerate(["cifar", "eurosat", "clevr_count"]):
        for method, acc in base.items():
            for seed in (0, 1):
                k = 8 + t - seed
                blocks = 12 if method == "none" else k
                rows.append({
                    "status": "FINISHED", "start_time": pd.Timestamp(2026, 1, 1, t, seed),
                    "tags.pruner": method, "tags.task": task, "tags.petl": "convpass",
                    "params.budget": {"none": "none", "sls": "auto"}.get(method, "match-sls"),
                    "params.seed": str(seed),
                    "metrics.test/acc": acc + 0.01 * t + 0.02 * seed,
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
    assert len(runs) == 18
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
