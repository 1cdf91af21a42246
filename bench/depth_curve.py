"""The accuracy–depth curve: where SLS's k sits among the depths it could have chosen.

`make curve TASK=<task>` retrains the truncated model (`drop_last@keep:k`, the first k blocks,
the common retraining recipe) at every k, as cells of a sweep beside `sls` on the same transfer:
resumable, and the transfer is trained once. `make curve TUNE=1` runs the same curve in tuning
mode: the transfer trains on train800 and every point is evaluated on val200, never on test.

From the store, `make tables` (and `make curve` when it ends) writes:
- depth_curve.csv: task, petl, seed, split, k, accuracy, speedup, macs_ratio, params;
- depth_curve.png: per task, accuracy (mean ± std over seeds) and speedup against k, with
  SLS's k (its mean, and its spread over seeds) marked;
- sls_regret.{csv,md}: per task (and seed in the CSV), accuracy and speedup at SLS's k, at the
  k a selection on val200 picks (the tuning curve's best; ties go to the smaller k), and at the
  best test k, which is an oracle: it selects on test.
"""

from __future__ import annotations

import copy
import math
from pathlib import Path

import numpy as np
import pandas as pd

from bench.config import RunConfig
from bench.errors import UserError
from bench.tables import save_figure, save_markdown, task_order

CURVE_METHOD = "drop_last"
TUNE_SPLITS = ("train800", "val200")  # train split, evaluation split
POINT_KEYS = ["task", "petl", "seed", "split"]


# ---------------------------------------------------------------------------------------------
# the sweep behind `make curve`


def parse_keep(text: str | None, num_blocks: int) -> list[int]:
    """`1-12`, `2,4,6` or `1-3,12` -> sorted depths; None -> 1..N."""
    if not text:
        return list(range(1, num_blocks + 1))
    depths: set[int] = set()
    try:
        for part in text.split(","):
            low, dash, high = part.strip().partition("-")
            depths.update(range(int(low), int(high) + 1) if dash else [int(low)])
    except ValueError:
        raise UserError(
            f"KEEP={text!r}: use a range or list of depths, e.g. 1-12 or 2,4,6"
        ) from None
    outside = sorted(k for k in depths if not 1 <= k <= num_blocks)
    if outside or not depths:
        raise UserError(f"KEEP={text!r}: depths must lie in 1..{num_blocks}, got {outside}")
    return sorted(depths)


def curve_config(config: RunConfig, depths: list[int], tune: bool) -> RunConfig:
    """The sweep of one curve: a truncated-and-retrained point per depth, and `sls` beside them
    (its k is what the curve is read against); in tuning mode, the points only, on val200."""
    curve = copy.deepcopy(config)
    points = [f"{CURVE_METHOD}@keep:{k}" for k in depths]
    if tune:
        curve.data.train_split, curve.data.eval_split = TUNE_SPLITS
        curve.methods = points
    else:
        curve.methods = ["sls", *points]
    return curve


# ---------------------------------------------------------------------------------------------
# tables


def _speedup_column(runs: pd.DataFrame) -> str | None:
    """The measured speedup at the largest batch logged (the least noisy on CPU)."""
    columns = [c for c in runs.columns if c.startswith("speedup/bs")]
    return max(columns, key=lambda c: int(c.removeprefix("speedup/bs")), default=None)


def curve_points(runs: pd.DataFrame) -> pd.DataFrame:
    """One row per depth-curve run: task, petl, seed, split, k, accuracy (%), speedup, ..."""
    points = runs[runs["method"].str.startswith(f"{CURVE_METHOD} @ keep:")]
    if points.empty:
        return pd.DataFrame(columns=[*POINT_KEYS, "k", "accuracy"])
    speed = _speedup_column(points)
    table = pd.DataFrame({
        **{key: points[key] for key in POINT_KEYS},
        "k": points["budget"].str.removeprefix("keep:").astype(float).astype(int),
        "accuracy": points["test/acc"] * 100.0,
        "speedup": points[speed] if speed else np.nan,
        "macs_ratio": _column(points, "macs") / _column(points, "macs_unpruned"),
        "params": _column(points, "params/total"),
    })  # fmt: skip
    return table.sort_values([*POINT_KEYS, "k"]).reset_index(drop=True)


def _column(runs: pd.DataFrame, name: str) -> pd.Series:
    return runs[name] if name in runs else pd.Series(np.nan, index=runs.index)


def best_k(points: pd.DataFrame) -> tuple[float, float]:
    """(k, accuracy) of the most accurate depth; ties go to the smaller, cheaper k."""
    if points.empty:
        return math.nan, math.nan
    best = points.sort_values(["accuracy", "k"], ascending=[False, True]).iloc[0]
    return int(best["k"]), float(best["accuracy"])


def regret_table(runs: pd.DataFrame, points: pd.DataFrame) -> pd.DataFrame:
    """Per (task, PETL, seed) with an SLS run on test: accuracy (%) and speedup at SLS's k, at
    the val200-selected k, and at the best test k (an oracle), and the regrets against it."""
    sls = runs[(runs["method"] == "sls") & (runs["split"] == "test")]
    speed = _speedup_column(runs)
    rows = []
    for _, run in sls.iterrows():
        key = (run["task"], run["petl"], run["seed"])
        test = _curve_of(points, *key, "test")
        val_k, _ = best_k(_curve_of(points, *key, "val200"))
        oracle_k, oracle_acc = best_k(test)
        rows.append({
            "task": key[0], "petl": key[1], "seed": key[2],
            "sls_k": int(run["sls/k"]), "sls_acc": run["test/acc"] * 100.0,
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
    order = ["seeds", "sls_k", "sls_acc", "sls_speedup", "val_k", "val_acc", "val_speedup",
             "oracle_k", "oracle_acc", "oracle_speedup", "sls_regret", "val_regret"]  # fmt: skip
    labels = {"sls_k": "SLS k", "sls_acc": "acc @ SLS k", "sls_speedup": "speedup @ SLS k",
              "val_k": "val200 k", "val_acc": "acc @ val200 k",
              "val_speedup": "speedup @ val200 k", "oracle_k": "oracle k (test)",
              "oracle_acc": "oracle acc (test)", "oracle_speedup": "oracle speedup",
              "sls_regret": "oracle − SLS (pts)", "val_regret": "oracle − val200 (pts)"}  # fmt: skip
    return table[order].rename(columns=labels)


# ---------------------------------------------------------------------------------------------
# plot and files


def plot_depth_curve(points: pd.DataFrame, sls: pd.DataFrame, path: Path) -> Path | None:
    """Per task: test accuracy (mean ± std over seeds) and speedup against k; the val200 curve
    dashed where tuned; SLS's k: a line at its mean and a band over its spread across seeds."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tasks = list(dict.fromkeys(points["task"]))
    if not tasks:
        return None
    cols = min(3, len(tasks))
    rows = math.ceil(len(tasks) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.2 * rows), squeeze=False)
    for ax, task in zip(axes.flat, tasks, strict=False):
        _plot_task(ax, points[points["task"] == task], sls[sls["task"] == task])
        ax.set_title(task, fontsize=9)
    return save_figure(fig, path, list(axes.flat)[len(tasks) :])


def _plot_task(ax, points: pd.DataFrame, sls: pd.DataFrame) -> None:
    for split, style in (("test", "-"), ("val200", "--")):
        curve = points[points["split"] == split].groupby("k")["accuracy"]
        if len(curve):
            mean, std = curve.mean(), curve.std(ddof=1).fillna(0.0)
            ax.errorbar(mean.index, mean, yerr=std, linestyle=style, marker=".", capsize=2,
                        label=f"accuracy ({split})")  # fmt: skip
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("blocks kept (k)", fontsize=8)
    ax.set_ylabel("accuracy (%)", fontsize=8)
    test = points[points["split"] == "test"]
    if test["speedup"].notna().any():
        speed = ax.twinx()
        mean = test.groupby("k")["speedup"].mean()
        speed.plot(mean.index, mean, color="grey", marker="x", linewidth=1, label="speedup")
        speed.set_ylabel("speedup", fontsize=8, color="grey")
    if len(sls):
        ks = sls["sls/k"].astype(float)
        ax.axvspan(ks.min() - 0.15, ks.max() + 0.15, color="tab:red", alpha=0.12)
        ax.axvline(ks.mean(), color="tab:red", linestyle=":", label=f"SLS k (n={len(ks)})")
    ax.legend(fontsize=6, loc="lower right")


def write_curve_files(runs: pd.DataFrame, out: Path) -> list[Path]:
    """depth_curve.{csv,png} and sls_regret.{csv,md} where the runs hold a depth curve."""
    points = curve_points(runs)
    if points.empty:
        return []
    written = [out / "depth_curve.csv"]
    points.to_csv(written[0], index=False)
    sls = runs[(runs["method"] == "sls") & (runs["split"] == "test")]
    plot = plot_depth_curve(points, sls, out / "depth_curve.png")
    written += [plot] if plot else []
    regret = regret_table(runs, points)
    if not regret.empty:
        regret.to_csv(out / "sls_regret.csv", index=False)
        title = ("SLS's depth against the alternatives: at SLS's k, at the k selected on val200, "
                 "and at the best test k (an oracle: it selects on test)")  # fmt: skip
        md = save_markdown(regret_summary(regret), out / "sls_regret.md", title)
        written += [out / "sls_regret.csv", md]
    return written
