"""accuracy_vs_throughput.png: every (PETL, method), accuracy against throughput, means over
tasks, error bars over seeds, the Pareto front marked."""

from __future__ import annotations

import pandas as pd

from bench import record as R
from bench.tables.files import pyplot
from bench.tables.runs import ROW_KEYS
from bench.tables.seeds import over_seeds
from bench.tables.spec import Runs, Section

TITLE = "Accuracy against throughput: every method, error bars over seeds, the Pareto front marked"
SPEEDS = (R.throughput(64), R.throughput(1))  # the first logged is plotted


def section(runs: Runs) -> Section | None:
    figure = plot(runs.methods)
    return None if figure is None else Section(TITLE, figure=figure)


def pareto_front(points: pd.DataFrame, x: str, y: str) -> pd.Series:
    """True where no other point is at least as good on both axes and better on one."""
    xs, ys = points[x].to_numpy(float), points[y].to_numpy(float)
    front = [
        not any((xs >= xi) & (ys >= yi) & ((xs > xi) | (ys > yi)))
        for xi, yi in zip(xs, ys, strict=True)
    ]
    return pd.Series(front, index=points.index)


def plot(runs: pd.DataFrame):
    """Every (PETL, method): accuracy against throughput, means over tasks, error bars over seeds
    (sample std of the per-seed means), the Pareto front marked and joined."""
    plt = pyplot()
    speed = next((m for m in SPEEDS if m in runs.columns), None)
    if speed is None or R.ACC not in runs:
        return None
    stats = over_seeds(runs, ROW_KEYS, [R.ACC, speed])
    points = pd.DataFrame({
        "x": stats[(speed, "mean")], "xerr": stats[(speed, "std")],
        "y": stats[(R.ACC, "mean")] * 100, "yerr": stats[(R.ACC, "std")] * 100,
    })  # fmt: skip
    points = points.dropna(subset=["x", "y"])
    if points.empty:
        return None
    points["front"] = pareto_front(points, "x", "y")
    fig, ax = plt.subplots(figsize=(7, 5))
    for (petl, method), row in points.iterrows():
        ax.errorbar(row["x"], row["y"], xerr=row["xerr"], yerr=row["yerr"], fmt="o", ms=6,
                    capsize=3, label=f"{method} ({petl})")  # fmt: skip
        ax.annotate(f"{method} ({petl})", (row["x"], row["y"]), fontsize=8,
                    xytext=(5, 3), textcoords="offset points")  # fmt: skip
    front = points[points["front"]].sort_values("x")
    ax.plot(front["x"], front["y"], color="black", linestyle="--", linewidth=1, zorder=0,
            label="Pareto front")  # fmt: skip
    ax.scatter(front["x"], front["y"], s=160, facecolors="none", edgecolors="black", zorder=3)
    ax.set_xlabel(f"{speed.replace('/', ' ')} (images/s, mean over tasks)")
    ax.set_ylabel("test accuracy (%), mean over tasks")
    ax.set_title("error bars: std over seeds; circled: Pareto front", fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="best")
    return fig
