"""The criteria table from a hand-built set of runs: removed blocks, accuracy, Spearman rho."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from bench.tables.criteria import criteria_table, rank_correlation
from bench.tables.runs import tidy_runs
from bench.tables.write import build_tables

PROBE = [0.2, 0.4, 0.6, 0.7, 0.75, 0.8]  # per-block probe accuracy, blocks 1..6 (seed 0)


def _run(method: str, seed: int, acc: float, kept: int, **metrics) -> dict:
    budget = {"none": "none", "sls": "auto"}.get(method, "match-sls")
    return {"status": "FINISHED", "start_time": pd.Timestamp(2026, 1, 1, seed),
            "tags.pruner": method, "tags.task": "digits", "tags.petl": "convpass",
            "params.budget": budget, "params.seed": str(seed), "metrics.test/acc": acc,
            "metrics.blocks/kept": float(kept),
            **{f"metrics.{name}": value for name, value in metrics.items()}}  # fmt: skip


def _curve(method: str, name: str, values) -> dict:
    return {f"{method}/{name}/block_{b:02d}": v for b, v in enumerate(values, 1) if v is not None}


def _removed(method: str, blocks: list[int], total: int = 6) -> dict:
    return _curve(method, "removed", [float(b in blocks) for b in range(1, total + 1)])


def _raw_runs() -> pd.DataFrame:
    """Seed 0: sls with metric=probe (k = 3) and every criterion; seed 1: sls with the lazy
    silhouette (blocks 6..3 scored, k = 4) and angular, so no probe curve to compare with."""
    rows = [
        _run("none", 0, 0.90, 6),
        _run("sls", 0, 0.85, 3, **{"sls/k": 3.0}, **_curve("sls", "score", PROBE),
             **_curve("sls", "probe", PROBE)),
        _run("angular", 0, 0.80, 3, **_removed("angular", [3, 4, 5]),
             **_curve("angular", "score", [0.5, 0.4, 0.3, 0.2, 0.1, 0.6])),
        _run("cka", 0, 0.70, 3, **_removed("cka", [2, 5, 6]),
             **_curve("cka", "score", PROBE[::-1])),
        _run("block_influence", 0, 0.75, 3, **{"block_influence/k": 3.0},
             **_removed("block_influence", [2, 5, 6]),
             **_curve("block_influence", "score", [0.9, 0.1, 0.8, 0.3, 0.3, 0.05])),
        _run("drop_last", 0, 0.84, 3),  # not a criterion: no removed blocks to show
        _run("sls", 1, 0.88, 4, **{"sls/k": 4.0},
             **_curve("sls", "score", [None, None, 0.1, 0.5, 0.6, 0.7])),
        _run("angular", 1, 0.81, 4, **_removed("angular", [1, 2]),
             **_curve("angular", "score", [0.1, 0.2, 0.3, 0.4, 0.5, 0.6])),
    ]  # fmt: skip
    return pd.DataFrame(rows)


@pytest.fixture
def table() -> pd.DataFrame:
    return criteria_table(tidy_runs(_raw_runs())).reset_index()


def _row(table: pd.DataFrame, method: str, seed: int = 0) -> pd.Series:
    (index,) = table.index[(table.method == method) & (table.seed == seed)]
    return table.loc[index]


def test_rows_are_the_reference_sls_and_the_criteria_in_order(table):
    assert table[["seed", "method"]].values.tolist() == [
        [0, "none"], [0, "sls"], [0, "angular"], [0, "block_influence"], [0, "cka"],
        [1, "sls"], [1, "angular"],
    ]  # fmt: skip


def test_removed_blocks_are_read_or_derived_by_each_pruner_rule(table):
    assert _row(table, "none")["removed"] == ""
    assert _row(table, "sls")["removed"] == "4,5,6"  # k = 3 of 6
    assert _row(table, "sls", 1)["removed"] == "5,6"  # lazy scan: N from the top block scored
    assert _row(table, "angular")["removed"] == "3,4,5"  # as logged
    assert _row(table, "cka")["removed"] == "2,5,6"
    # as logged (the pruner's rule, keep the 3 highest scores, is tested in test_layerwise.py)
    assert _row(table, "block_influence")["removed"] == "2,5,6"
    assert _row(table, "cka")["k"] == 3 and _row(table, "sls", 1)["k"] == 4
    assert _row(table, "cka")["acc (%)"] == pytest.approx(70.0)


def test_spearman_against_the_probe_curve_of_the_same_seed(table):
    assert _row(table, "sls")["rho vs probe"] == pytest.approx(1.0)  # the probe run itself
    assert _row(table, "cka")["rho vs probe"] == pytest.approx(-1.0)  # reversed curve
    # ranks 5 4 3 2 1 6 against 1..6: 1 - 6 * (16 + 4 + 0 + 4 + 16 + 0) / (6 * 35)
    assert _row(table, "angular")["rho vs probe"] == pytest.approx(-1 / 7)
    # tied ranks 6 2 5 3.5 3.5 1: the Pearson correlation of the ranks
    expected = -11.0 / math.sqrt(17.5 * 17.0)
    assert _row(table, "block_influence")["rho vs probe"] == pytest.approx(expected)
    assert _row(table, "angular")["rho blocks"] == 6
    assert math.isnan(_row(table, "angular", 1)["rho vs probe"])  # seed 1 has no probe run
    assert math.isnan(_row(table, "none")["rho vs probe"])  # none has no curve


def test_rank_correlation_needs_three_shared_blocks():
    curve = pd.Series([0.1, 0.2, 0.3], index=[1, 2, 3])
    assert rank_correlation(curve, pd.Series([1.0, 2.0], index=[2, 3])) == (
        pytest.approx(np.nan, nan_ok=True),
        2,
    )
    assert rank_correlation(curve, pd.Series([3.0, 1.0, 2.0], index=[1, 2, 3]))[0] == (
        pytest.approx(-0.5)
    )


def test_build_tables_writes_the_criteria_table_only_with_criteria(tmp_path):
    written = build_tables(tidy_runs(_raw_runs()), tmp_path)
    assert {tmp_path / "criteria.md", tmp_path / "criteria.csv"} <= set(written)
    csv = pd.read_csv(tmp_path / "criteria.csv")
    assert csv.columns.tolist() == ["petl", "task", "seed", "method", "k", "removed", "acc (%)",
                                    "rho vs probe", "rho blocks"]  # fmt: skip
    md = (tmp_path / "criteria.md").read_text()
    assert "| convpass | digits | 0      | angular         | 3   | 3,4,5     | 80" in md
    assert "empty where there is none" in md
    only_sls = _raw_runs().iloc[[0, 1, 5]]
    build_tables(tidy_runs(only_sls), tmp_path / "b")
    assert not (tmp_path / "b" / "criteria.md").exists()
