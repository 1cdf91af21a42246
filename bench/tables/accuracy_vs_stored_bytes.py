"""accuracy_vs_stored_bytes.png: per task, accuracy against the bytes stored for it on the
shared backbone, every (PETL, method)."""

from __future__ import annotations

import pandas as pd

from bench import record as R
from bench.tables.files import panels
from bench.tables.runs import ROW_KEYS
from bench.tables.seeds import over_seeds
from bench.tables.spec import Runs, Section
from bench.tables.vtab import task_order

TITLE = "Accuracy against stored bytes per task (what each task adds on the shared backbone)"


def section(runs: Runs) -> Section | None:
    figure = plot(runs.methods)
    return None if figure is None else Section(TITLE, figure=figure)


def plot(runs: pd.DataFrame):
    """Per task: accuracy against the bytes stored for it (on the shared backbone), every
    (PETL, method), mean over seeds with std error bars; log x axis."""
    from matplotlib.ticker import FuncFormatter

    if R.BYTES_STORED not in runs or R.ACC not in runs:
        return None
    runs = runs.dropna(subset=[R.BYTES_STORED, R.ACC])
    if runs.empty:
        return None
    stats = over_seeds(runs, ["task", *ROW_KEYS], [R.ACC, R.BYTES_STORED])
    tasks = task_order(runs["task"].unique())
    fig, axes = panels(len(tasks), 4, (3.6, 3.0))
    labels = [f"{m} ({p})" for p, m in stats.droplevel("task").index.unique()]
    colours = {label: f"C{i % 10}" for i, label in enumerate(dict.fromkeys(labels))}
    for ax, task in zip(axes.flat, tasks, strict=False):
        for (petl, method), row in stats.loc[task].iterrows():
            label = f"{method} ({petl})"
            ax.errorbar(row[(R.BYTES_STORED, "mean")] / 1e3, row[(R.ACC, "mean")] * 100,
                        yerr=row[(R.ACC, "std")] * 100, fmt="o", capsize=3,
                        color=colours[label], label=label)  # fmt: skip
        ax.set_xscale("log")
        plain = FuncFormatter(lambda v, _: f"{v:g}")
        ax.xaxis.set_major_formatter(plain)
        ax.xaxis.set_minor_formatter(plain)
        ax.tick_params(axis="x", which="both", labelsize=7)
        ax.set_title(task, fontsize=9)
        ax.set_xlabel("stored per task (KB, log)", fontsize=8)
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("test accuracy (%)")
    axes[0][0].legend(fontsize=6)
    return fig
