"""depth_curve.{csv,png}: the accuracy–depth curve (`make curve`, planned by `bench.curve`),
where SLS's k sits among the depths it could have chosen.

- depth_curve.csv: task, petl, seed, split, k, accuracy, speedup, macs_ratio, params;
- depth_curve.png: per task, accuracy (mean ± std over seeds) and speedup against k, with
  SLS's k (its mean, and its spread over seeds) marked.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from bench import record as R
from bench.tables.files import panels
from bench.tables.runs import is_curve_point
from bench.tables.spec import Runs, Section

TITLE = "Accuracy and speedup against depth: drop_last at every k, SLS's k marked"
POINT_KEYS = ["task", "petl", "seed", "split"]


def section(runs: Runs) -> Section | None:
    points = curve_points(runs.every)
    if points.empty:
        return None
    return Section(TITLE, csv=points, figure=plot(points, sls_on_test(runs.every)))


def sls_on_test(runs: pd.DataFrame) -> pd.DataFrame:
    return runs[(runs["method"] == "sls") & (runs["split"] == "test")]


def speedup_column(runs: pd.DataFrame) -> str | None:
    """The measured speedup at the largest batch logged (the least noisy on CPU)."""
    batches = R.speedup_batches(runs.columns)
    return R.speedup(batches[-1]) if batches else None


def curve_points(runs: pd.DataFrame) -> pd.DataFrame:
    """One row per depth-curve run: task, petl, seed, split, k, accuracy (%), speedup, ..."""
    points = runs[is_curve_point(runs)]
    if points.empty:
        return pd.DataFrame(columns=[*POINT_KEYS, "k", "accuracy"])
    speed = speedup_column(points)
    table = pd.DataFrame({
        **{key: points[key] for key in POINT_KEYS},
        "k": points["budget"].str.removeprefix("keep:").astype(float).astype(int),
        "accuracy": points[R.ACC] * 100.0,
        "speedup": points[speed] if speed else np.nan,
        "macs_ratio": _column(points, R.MACS) / _column(points, R.MACS_UNPRUNED),
        "params": _column(points, R.PARAMS_TOTAL),
    })  # fmt: skip
    return table.sort_values([*POINT_KEYS, "k"]).reset_index(drop=True)


def _column(runs: pd.DataFrame, name: str) -> pd.Series:
    return runs[name] if name in runs else pd.Series(np.nan, index=runs.index)


def plot(points: pd.DataFrame, sls: pd.DataFrame):
    """Per task: test accuracy (mean ± std over seeds) and speedup against k; the val200 curve
    dashed where tuned; SLS's k: a line at its mean and a band over its spread across seeds."""
    tasks = list(dict.fromkeys(points["task"]))
    fig, axes = panels(len(tasks), 3, (4.2, 3.2))
    for ax, task in zip(axes.flat, tasks, strict=False):
        _plot_task(ax, points[points["task"] == task], sls[sls["task"] == task])
        ax.set_title(task, fontsize=9)
    return fig


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
        ks = sls[R.SLS_K].astype(float)
        ax.axvspan(ks.min() - 0.15, ks.max() + 0.15, color="tab:red", alpha=0.12)
        ax.axvline(ks.mean(), color="tab:red", linestyle=":", label=f"SLS k (n={len(ks)})")
    ax.legend(fontsize=6, loc="lower right")
