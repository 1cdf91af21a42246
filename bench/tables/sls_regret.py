"""sls_regret.{csv,md}: per task (and seed in the CSV), accuracy and speedup at SLS's k, at the
k a selection on val200 picks (the tuning curve's best; ties go to the smaller k), and at the
best test k, which is an oracle: it selects on test."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from bench import record as R
from bench.tables.depth_curve import curve_points, sls_on_test, speedup_column
from bench.tables.spec import Runs, Section
from bench.tables.vtab import task_order

TITLE = (
    "SLS's depth against the alternatives: at SLS's k, at the k selected on val200, "
    "and at the best test k (an oracle: it selects on test)"
)
COLUMNS = {  # the summary's columns, in order, and their labels
    "seeds": "seeds", "sls_k": "SLS k", "sls_acc": "acc @ SLS k",
    "sls_speedup": "speedup @ SLS k", "val_k": "val200 k", "val_acc": "acc @ val200 k",
    "val_speedup": "speedup @ val200 k", "oracle_k": "oracle k (test)",
    "oracle_acc": "oracle acc (test)", "oracle_speedup": "oracle speedup",
    "sls_regret": "oracle − SLS (pts)", "val_regret": "oracle − val200 (pts)",
}  # fmt: skip


def section(runs: Runs) -> Section | None:
    points = curve_points(runs.every)
    if points.empty:
        return None
    regret = regret_table(runs.every, points)
    if regret.empty:
        return None
    return Section(TITLE, regret_summary(regret), csv=regret, tex=False)


def best_k(points: pd.DataFrame) -> tuple[float, float]:
    """(k, accuracy) of the most accurate depth; ties go to the smaller, cheaper k."""
    if points.empty:
        return math.nan, math.nan
    best = points.sort_values(["accuracy", "k"], ascending=[False, True]).iloc[0]
    return int(best["k"]), float(best["accuracy"])


def regret_table(runs: pd.DataFrame, points: pd.DataFrame) -> pd.DataFrame:
    """Per (task, PETL, seed) with an SLS run on test: accuracy (%) and speedup at SLS's k, at
    the val200-selected k, and at the best test k (an oracle), and the regrets against it."""
    speed = speedup_column(runs)
    rows = []
    for _, run in sls_on_test(runs).iterrows():
        key = (run["task"], run["petl"], run["seed"])
        test = _curve_of(points, *key, "test")
        val_k, _ = best_k(_curve_of(points, *key, "val200"))
        oracle_k, oracle_acc = best_k(test)
        rows.append({
            "task": key[0], "petl": key[1], "seed": key[2],
            "sls_k": int(run[R.SLS_K]), "sls_acc": run[R.ACC] * 100.0,
            "sls_speedup": run[speed] if speed else np.nan,
            "val_k": val_k, "val_acc": _at(test, val_k, "accuracy"),
            "val_speedup": _at(test, val_k, "speedup"),
            "oracle_k": oracle_k, "oracle_acc": oracle_acc,
            "oracle_speedup": _at(test, oracle_k, "speedup"),
        })  # fmt: skip
    table = pd.DataFrame(rows)
    if table.empty:
        return table
    table["sls_regret"] = table["oracle_acc"] - table["sls_acc"]
    table["val_regret"] = table["oracle_acc"] - table["val_acc"]
    order = {t: i for i, t in enumerate(task_order(table["task"].unique()))}
    table = table.assign(order=table["task"].map(order)).sort_values(["order", "petl", "seed"])
    return table.drop(columns="order").reset_index(drop=True)


def _curve_of(points: pd.DataFrame, task, petl, seed, split) -> pd.DataFrame:
    mask = (
        (points["task"] == task)
        & (points["petl"] == petl)
        & (points["seed"] == seed)
        & (points["split"] == split)
    )
    return points[mask]


def _at(curve: pd.DataFrame, k, column: str) -> float:
    match = curve[curve["k"] == k]
    return float(match[column].iloc[0]) if len(match) and column in match else math.nan


def regret_summary(regret: pd.DataFrame) -> pd.DataFrame:
    """Per (task, PETL): the per-seed k's, and the means over seeds of everything else."""

    def ks(values: pd.Series) -> str:
        return "/".join("" if pd.isna(v) else str(int(v)) for v in values)

    grouped = regret.groupby(["task", "petl"], sort=False)
    table = grouped[[c for c in regret.columns if c.endswith(("_acc", "_speedup", "_regret"))]]
    table = table.mean()
    for name in ("sls_k", "val_k", "oracle_k"):
        table.insert(0, name, grouped[name].agg(ks))
    table.insert(0, "seeds", grouped.size())
    return table[list(COLUMNS)].rename(columns=COLUMNS)
