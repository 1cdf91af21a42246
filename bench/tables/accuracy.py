"""accuracy.{md,csv,tex}: top-1 (%) per task in VTAB layout (Natural | Specialized |
Structured), each group's mean, the mean of the group means and the plain mean over tasks
(labelled apart), mean ± sample std over seeds; published reference rows
(results/reference/vtab1k_petl.csv, with their source) beside ours for the tasks both have.
accuracy_numeric.csv holds the unrounded numbers and stds."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from bench import record as R
from bench.tables.formatting import mean_pm_std, pct
from bench.tables.runs import ROW_KEYS, sorted_rows
from bench.tables.seeds import per_cell
from bench.tables.spec import Runs, Section
from bench.tables.vtab import group_members, task_order

TITLE = "Top-1 accuracy (%), mean ± std over seeds"


def section(runs: Runs) -> Section:
    text, numeric = accuracy_table(runs.methods, runs.reference)
    numeric = numeric.reset_index()
    return Section(TITLE, text, extra_csv={"accuracy_numeric": numeric})


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


def accuracy_table(
    runs: pd.DataFrame, reference: Path, metric: str = R.ACC
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(formatted table, numeric table): ours (mean ± std over seeds) then published rows."""
    means, stds, counts = accuracy_by_seed_mean(runs, metric)
    ours = pd.concat([means, summary_columns(means)], axis=1)
    ref = reference_rows(list(means.columns), reference)
    sources = ref.pop("source") if not ref.empty else None
    if not ref.empty:
        ref = pd.concat([ref, summary_columns(ref)], axis=1)
    numeric = pd.concat([ours, ref])
    text = ours.map(pct).astype(object)
    for task in means.columns:
        text[task] = [
            mean_pm_std(m, s, n)
            for m, s, n in zip(means[task], stds[task], counts[task], strict=True)
        ]
    seeds = counts.max(axis=1).fillna(0).astype(int).astype(str)
    text.insert(0, "seeds", seeds)
    if not ref.empty:
        ref_text = ref.map(pct).astype(object)
        ref_text.insert(0, "seeds", "")
        text = pd.concat([text.assign(source="this suite"), ref_text.assign(source=sources)])
    numeric_out = numeric.copy()
    for task in means.columns:
        numeric_out[f"{task} std"] = stds[task].reindex(numeric.index)
    numeric_out["seeds"] = counts.max(axis=1).reindex(numeric.index)
    return text, numeric_out
