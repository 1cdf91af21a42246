"""sls_scores.png: SLS's per-block score curve of every SLS run, one panel per task, with the
threshold T and the chosen depth k."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from bench import record as R
from bench.tables.files import panels
from bench.tables.spec import Runs, Section
from bench.tables.vtab import task_order

TITLE = "SLS's per-block score curves, the threshold T and the chosen depth k"


def section(runs: Runs) -> Section | None:
    figure = plot(runs.methods)
    return None if figure is None else Section(TITLE, figure=figure)


def plot(runs: pd.DataFrame):
    """One panel per task: every SLS run's score per block, T dashed (where the rule has one),
    k dotted."""
    score_columns = sorted(c for c in runs.columns if c.startswith(R.SLS_SCORE_PREFIX))
    sls = runs[runs["method"] == "sls"]
    if sls.empty or not score_columns:
        return None
    tasks = task_order(sls["task"].unique())
    fig, axes = panels(len(tasks), 4, (3.4, 2.8))
    blocks = [int(c.removeprefix(R.SLS_SCORE_PREFIX)) for c in score_columns]
    for ax, task in zip(axes.flat, tasks, strict=False):
        for i, (_, run) in enumerate(sls[sls["task"] == task].iterrows()):
            colour = f"C{i % 10}"
            ax.plot(blocks, run[score_columns].to_numpy(float), marker=".", alpha=0.8,
                    color=colour, label=f"{run['petl']} seed {run['seed']}")  # fmt: skip
            threshold = run.get(R.SLS_THRESHOLD, np.nan)
            if not math.isnan(threshold):
                ax.axhline(threshold, color=colour, linestyle="--", linewidth=1,
                           label=f"T = {threshold:.3g}")  # fmt: skip
            if not math.isnan(run.get(R.SLS_K, np.nan)):
                ax.axvline(run[R.SLS_K], color=colour, linestyle=":", linewidth=1.2,
                           label=f"k = {int(run[R.SLS_K])}")  # fmt: skip
        ax.set_title(task, fontsize=9)
        ax.set_xlabel("block", fontsize=8)
        ax.legend(fontsize=6)
    axes[0][0].set_ylabel("score")
    return fig
