"""A suite's runs from the tracking store as one pandas row per run: the tables' input.

Only FINISHED runs count; of repeated runs of a (task, PETL, method, budget, seed, evaluation
split, data source, backbone, transferred checkpoint) the newest. Runs that differ in data
source, backbone or the transferred model they pruned are never pooled (`keep_apart`), and a
width pruner's softmax scale is part of its method's label.
"""

from __future__ import annotations

import pandas as pd

from bench import record as R

RUN_KEYS = ["task", "petl", "method", "budget", "seed", "split", "source", "backbone", "checkpoint"]
ROW_KEYS = ["petl", "method"]  # a row of the method tables
PAIR_KEYS = ["task", "petl", "seed"]  # runs on the same transfer
CONTROLS = ("none", "retrained")  # the references every method's accuracy is compared with
BEST_OF_EVALS = "best_of_evals"  # transfer.checkpoint that selects on the test set
DEFAULT_BUDGETS = ("match-sls", "sls-mean", "auto", "none")  # a method shown by its name alone
CURVE_POINT = "drop_last @ keep:"  # drop_last at an explicit depth: a point of the depth curve
METRICS = R.metric_column("")


def load_runs(tracking_uri: str, suite: str) -> pd.DataFrame | None:
    """The suite's finished runs as `mlflow.search_runs` gives them (params are strings); None
    where the store has no such suite."""
    import mlflow

    mlflow.set_tracking_uri(tracking_uri)
    if mlflow.get_experiment_by_name(suite) is None:
        return None
    return mlflow.search_runs(
        experiment_names=[suite], filter_string=R.status_is("FINISHED"),
        output_format="pandas", max_results=100_000,
    )  # fmt: skip


def tidy_runs(raw: pd.DataFrame) -> pd.DataFrame:
    """One row per run: RUN_KEYS (the `backbone`'s timm name and the transfer's `checkpoint`: ""
    where unlogged), the backbone's `weights`, metric columns (without the `metrics.` prefix);
    the newest run of each RUN_KEYS; runs that are not benchmark runs dropped."""
    pruner = R.tag_column(R.PRUNER)
    if raw.empty or pruner not in raw:
        return pd.DataFrame(columns=RUN_KEYS)
    raw = raw[raw[pruner].notna()]
    if "status" in raw:
        raw = raw[raw["status"] == "FINISHED"]
    budgets = raw[R.param_column(R.P_BUDGET)]
    runs = pd.DataFrame(
        {
            "task": raw[R.tag_column(R.TASK)],
            "petl": raw[R.tag_column(R.PETL)],
            "method": [
                method_label(m, b, scale)
                for m, b, scale in zip(
                    raw[pruner], budgets, _tag(raw, R.SOFTMAX_SCALE), strict=True
                )
            ],
            "budget": budgets,
            "seed": raw[R.param_column(R.P_SEED)].astype(int),
            "split": _param(raw, R.P_EVAL_SPLIT, "test"),
            "source": _source(raw),
            "backbone": _param(raw, R.P_BACKBONE, ""),
            "checkpoint": _param(raw, R.P_TRANSFER_CHECKPOINT, ""),
            "weights": _param(raw, R.P_WEIGHTS, ""),
            "start_time": raw["start_time"],
        }
    )
    metrics = raw.filter(like=METRICS).rename(columns=lambda c: c.removeprefix(METRICS))
    runs = pd.concat([runs, metrics], axis=1).sort_values("start_time", ascending=False)
    return runs.drop_duplicates(RUN_KEYS).drop(columns="start_time").reset_index(drop=True)


def _param(raw: pd.DataFrame, name: str, default: str) -> pd.Series:
    """A param column, with `default` for runs logged before it existed."""
    column = R.param_column(name)
    return raw[column].fillna(default) if column in raw else pd.Series(default, index=raw.index)


def _tag(raw: pd.DataFrame, name: str) -> pd.Series:
    """A tag column, "" where a run has none."""
    column = R.tag_column(name)
    return raw[column].fillna("") if column in raw else pd.Series("", index=raw.index)


def _source(raw: pd.DataFrame) -> pd.Series:
    """`<data.source>/<data.format>` of each run (e.g. folder/jpeg, tfds/tensor); "" if unlogged."""
    source = _param(raw, R.P_SOURCE, "") + "/" + _param(raw, R.P_FORMAT, "")
    return source.str.strip("/")


def keep_apart(runs: pd.DataFrame) -> pd.DataFrame:
    """Runs that must not share a cell get different PETL labels, so every table, pairing and
    curve keeps them apart: where the runs come from more than one data source or backbone, that
    joins the label (`convpass (tfds/tensor)`, `convpass (swin_base_patch4_window7_224)`); a run
    that pruned the transfer's best test evaluation always says so (`convpass (best_of_evals)`),
    since it selects on the test set."""
    if runs.empty:
        return runs
    petl = runs["petl"]
    for column, unlogged in (("source", "source not logged"), ("backbone", "backbone not logged")):
        if column in runs and runs[column].nunique() > 1:
            petl = petl + " (" + runs[column].replace("", unlogged) + ")"
    if "checkpoint" in runs:
        best = runs["checkpoint"] == BEST_OF_EVALS
        petl = petl.where(~best, petl + f" ({BEST_OF_EVALS})")
    return runs.assign(petl=petl)


def method_label(method: str, budget: str, softmax_scale: str = "") -> str:
    """Methods at their default budget by name; at an explicit budget with it; a width pruner
    with the softmax scale it used (`depgraph_sls (pruned-head scale)`)."""
    label = method if budget in DEFAULT_BUDGETS else f"{method} @ {budget}"
    return f"{label} ({softmax_scale})" if softmax_scale else label


def base_method(label: str) -> str:
    """`angular @ keep:6` -> `angular`; `taylor (unpruned scale)` -> `taylor`."""
    return label.split(" @ ", 1)[0].split(" (", 1)[0]


def is_curve_point(runs: pd.DataFrame) -> pd.Series:
    """`drop_last` at an explicit keep:k: a point of the depth curve, not a method."""
    return runs["method"].str.startswith(CURVE_POINT)


def method_runs(runs: pd.DataFrame) -> pd.DataFrame:
    """What the method tables show: runs evaluated on test, depth-curve points left out."""
    return runs[(runs["split"] == "test") & ~is_curve_point(runs)].reset_index(drop=True)


def method_order(methods) -> list[str]:
    """The controls (`none`, `retrained`) and `sls` first, then the baselines by name."""
    first = [m for m in (*CONTROLS, "sls") if m in set(methods)]
    return first + sorted(set(methods) - set(first))


def sorted_rows(table: pd.DataFrame) -> pd.DataFrame:
    """A table indexed by (PETL, method): PETL by name, methods in `method_order`."""
    order = {m: i for i, m in enumerate(method_order(table.index.get_level_values("method")))}
    return table.sort_index(key=lambda level: level.map(order) if level.name == "method" else level)
