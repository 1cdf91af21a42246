"""accuracy.{md,csv,tex}: top-1 (%) per task in VTAB layout (Natural | Specialized |
Structured), each group's mean, the mean of the group means and the plain mean over tasks
(labelled apart), mean ± sample std over seeds, the mean over tasks with a bootstrap interval,
and collapsed seeds marked (†) and listed; published reference rows
(results/reference/vtab1k_petl.csv, with their source) beside ours for the tasks both have.
accuracy_numeric.csv holds the unrounded numbers, stds and interval ends."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from bench import record as R
from bench.tables.formatting import mean_pm_std, pct
from bench.tables.intervals import SCHEME, interval_text, task_groups, two_level_interval
from bench.tables.runs import ROW_KEYS, sorted_rows
from bench.tables.seeds import (
    COLLAPSE_MADS,
    COLLAPSE_MIN_SEEDS,
    COLLAPSE_RULE,
    collapsed_seeds,
    per_cell,
)
from bench.tables.spec import Runs, Section
from bench.tables.vtab import group_members, task_order

TITLE = "Top-1 accuracy (%), mean ± std over seeds"
COLLAPSED = "collapsed seeds"
MIN_SCALE = 1.0  # points: the smallest spread a collapse is measured against (3 × it = 3 points)
NOTE = (
    f"Mean 95 %: the interval of the mean over tasks (of each task's mean over seeds), {SCHEME}. "
    + COLLAPSE_RULE.format(mads=COLLAPSE_MADS, seeds=COLLAPSE_MIN_SEEDS, floor=MIN_SCALE)
    + "."
)


def section(runs: Runs) -> Section:
    text, numeric = accuracy_table(runs.methods, runs.reference)
    numeric = numeric.reset_index()
    return Section(TITLE, text, note=NOTE, extra_csv={"accuracy_numeric": numeric})


def accuracy_by_seed_mean(
    runs: pd.DataFrame, metric: str = R.ACC
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Per (PETL, method) × task: mean and sample std of test accuracy (%) over seeds, and n."""
    acc = runs.assign(acc=runs[metric] * 100.0)
    columns = task_order(runs["task"].unique())
    stats = per_cell(acc, "acc", ROW_KEYS, "task")
    return tuple(sorted_rows(stat.reindex(columns=columns)) for stat in stats)


def summary_columns(means: pd.DataFrame) -> pd.DataFrame:
    """Each VTAB group's mean over its tasks present, the mean of those group means, and the
    plain mean over all tasks; labels say how many tasks/groups each covers."""
    out = pd.DataFrame(index=means.index)
    group_means = []
    for name, members in group_members().items():
        present = [t for t in members if t in means.columns]
        if not present:
            continue
        label = name + ("" if len(present) == len(members) else f" ({len(present)}/{len(members)})")
        out[label] = means[present].mean(axis=1, skipna=False)
        group_means.append(label)
    if group_means:
        label = "Mean of group means" + (
            "" if len(group_means) == 3 else f" ({len(group_means)}/3)"
        )
        out[label] = out[group_means].mean(axis=1, skipna=False)
    n = means.shape[1]
    out[f"Mean ({n} task{'s' if n != 1 else ''})"] = means.mean(axis=1, skipna=False)
    return out


def reference_rows(columns: list[str], path: Path) -> pd.DataFrame:
    """Published accuracies (%) for the tasks in `columns`, indexed like our rows."""
    if not path.exists():
        return pd.DataFrame()
    ref = pd.read_csv(path)
    shared = [c for c in columns if c in ref.columns]
    if not shared:
        return pd.DataFrame()
    index = pd.MultiIndex.from_arrays([["published"] * len(ref), ref["method"]], names=ROW_KEYS)
    table = pd.DataFrame(ref[shared].to_numpy(float), index=index, columns=shared)
    return table.reindex(columns=columns).assign(source=ref["source"].to_numpy())


def mean_intervals(runs: pd.DataFrame, means: pd.DataFrame, metric: str) -> pd.DataFrame:
    """Per (PETL, method) row of `means`: the bootstrap interval (`two_level_interval`, of the
    mean over tasks of the per-task means over seeds) as `low`, `high` and `text`; empty where
    a task is missing (the row has no plain mean)."""
    acc = runs.assign(acc=runs[metric] * 100.0).dropna(subset=["acc"])
    rows = {}
    for key, row in means.iterrows():
        if row.isna().any():
            rows[key] = (np.nan, np.nan, "")
            continue
        cell = acc[(acc["petl"] == key[0]) & (acc["method"] == key[1])]
        interval = two_level_interval(task_groups(cell, "acc"), pooled=False)
        rows[key] = (*(interval or (np.nan, np.nan)), interval_text(interval))
    return pd.DataFrame.from_dict(rows, orient="index", columns=["low", "high", "text"])


def collapse_marks(runs: pd.DataFrame, metric: str) -> tuple[set, pd.Series]:
    """(the (PETL, method, task) cells with a collapsed seed, per (PETL, method) the text that
    lists them: `svhn seed 3: 65.9 (median 81.0)`)."""
    acc = runs.assign(acc=runs[metric] * 100.0)
    flagged = collapsed_seeds(acc, "acc", [*ROW_KEYS, "task"], MIN_SCALE)
    if flagged.empty:
        return set(), pd.Series(dtype=object)
    order = {t: i for i, t in enumerate(task_order(flagged["task"].unique()))}
    flagged = flagged.assign(order=flagged["task"].map(order)).sort_values(["order", "seed"])
    listed = flagged.groupby(ROW_KEYS, sort=False).apply(
        lambda cell: ", ".join(f"{r.task} seed {r.seed}: {r.acc:.1f} (median {r.median:.1f})"
                               for r in cell.itertuples()), include_groups=False)  # fmt: skip
    return set(zip(flagged["petl"], flagged["method"], flagged["task"], strict=True)), listed


def accuracy_table(
    runs: pd.DataFrame, reference: Path, metric: str = R.ACC
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(formatted table, numeric table): ours (mean ± std over seeds, the mean over tasks with
    its interval, collapsed seeds marked † and listed) then published rows."""
    means, stds, counts = accuracy_by_seed_mean(runs, metric)
    ours = pd.concat([means, summary_columns(means)], axis=1)
    mean_column = ours.columns[-1]
    intervals = mean_intervals(runs, means, metric).reindex(means.index)
    ours.insert(ours.shape[1], f"{mean_column} low", intervals["low"])
    ours.insert(ours.shape[1], f"{mean_column} high", intervals["high"])
    collapsed, listed = collapse_marks(runs, metric)
    ref = reference_rows(list(means.columns), reference)
    sources = ref.pop("source") if not ref.empty else None
    if not ref.empty:
        ref = pd.concat([ref, summary_columns(ref)], axis=1)
    numeric = pd.concat([ours, ref])
    text = ours.drop(columns=[f"{mean_column} low", f"{mean_column} high"]).map(pct)
    text = text.astype(object)
    text[f"{mean_column} 95 %"] = intervals["text"]
    for task in means.columns:
        text[task] = [
            mean_pm_std(m, s, n) + (" †" if (*row, task) in collapsed else "")
            for row, m, s, n in zip(means.index, means[task], stds[task], counts[task], strict=True)
        ]
    if len(listed):
        text[COLLAPSED] = listed.reindex(text.index).fillna("")
    seeds = counts.max(axis=1).fillna(0).astype(int).astype(str)
    text.insert(0, "seeds", seeds)
    if not ref.empty:
        ref_text = ref.map(pct).astype(object)
        ref_text.insert(0, "seeds", "")
        ref_text = ref_text.reindex(columns=text.columns).fillna("")
        text = pd.concat([text.assign(source="this suite"), ref_text.assign(source=sources)])
    numeric_out = numeric.copy()
    for task in means.columns:
        numeric_out[f"{task} std"] = stds[task].reindex(numeric.index)
    numeric_out["seeds"] = counts.max(axis=1).reindex(numeric.index)
    numeric_out[COLLAPSED] = listed.reindex(numeric.index) if len(listed) else ""
    return text, numeric_out
