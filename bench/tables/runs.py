"""A suite's runs from the tracking store as one pandas row per run: the tables' input.

Only FINISHED runs count; of repeated runs of a (task, PETL, method, budget, seed, evaluation
split, data source) the newest. Data sources are never mixed (`label_sources`).
"""

from __future__ import annotations

import pandas as pd

from bench import record as R

RUN_KEYS = ["task", "petl", "method", "budget", "seed", "split", "source"]
ROW_KEYS = ["petl", "method"]  # a row of the method tables
PAIR_KEYS = ["task", "petl", "seed"]  # runs on the same transfer
CONTROLS = ("none", "retrained")  # the references every method's accuracy is compared with
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
    """One row per run: RUN_KEYS, the backbone's `weights` and the transfer's `checkpoint`
    (params; "" where unlogged), metric columns (without the `metrics.` prefix); newest run
    of each (task, PETL, method, budget, seed, split, source); runs that are not benchmark runs
    dropped."""
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
            "method": [method_label(m, b) for m, b in zip(raw[pruner], budgets, strict=True)],
            "budget": budgets,
            "seed": raw[R.param_column(R.P_SEED)].astype(int),
            "split": _param(raw, R.P_EVAL_SPLIT, "test"),
            "source": _source(raw),
            "weights": _param(raw, R.P_WEIGHTS, ""),
            "checkpoint": _param(raw, R.P_TRANSFER_CHECKPOINT, ""),
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


def _source(raw: pd.DataFrame) -> pd.Series:
    """`<data.source>/<data.format>` of each run (e.g. folder/jpeg, tfds/tensor); "" if unlogged."""
    source = _param(raw, R.P_SOURCE, "") + "/" + _param(raw, R.P_FORMAT, "")
    return source.str.strip("/")


def label_sources(runs: pd.DataFrame) -> pd.DataFrame:
    """Where the runs come from more than one data source, the source joins the PETL label
    (`convpass (tfds/tensor)`), so every table, pairing and curve keeps the sources apart."""
    if runs.empty or runs["source"].nunique() <= 1:
        return runs
    source = runs["source"].replace("", "source not logged")
    return runs.assign(petl=runs["petl"] + " (" + source + ")")


def method_label(method: str, budget: str) -> str:
    """Methods at their default budget by name; at an explicit budget with it."""
    return method if budget in DEFAULT_BUDGETS else f"{method} @ {budget}"


def base_method(label: str) -> str:
    """`angular @ keep:6` -> `angular`."""
    return label.split(" @ ", 1)[0]


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
