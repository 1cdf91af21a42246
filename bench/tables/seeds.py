"""Aggregation over seeds: each seed is one draw of a run; tables show mean ± sample std."""

from __future__ import annotations

import numpy as np
import pandas as pd


def per_cell(runs: pd.DataFrame, value: str, rows: list[str], column: str) -> tuple:
    """Per `rows` (index) × `column` (columns): mean, sample std and count of `value` over the
    seeds of each cell."""
    grouped = runs.groupby([*rows, column])[value]
    stats = (grouped.mean(), grouped.std(ddof=1), grouped.count())
    return tuple(stat.unstack(column) for stat in stats)


def over_seeds(runs: pd.DataFrame, keys: list[str], columns: list[str]) -> pd.DataFrame:
    """Per `keys`: each seed's mean over tasks, then mean and sample std over seeds (0 for one)."""
    per_seed = runs.groupby([*keys, "seed"])[columns].mean()
    stats = per_seed.groupby(level=keys).agg(["mean", "std"])
    return stats.fillna({(c, "std"): 0.0 for c in columns})


COLLAPSE_MADS = 3.0  # a seed this many scaled MADs from its cell's median has collapsed
COLLAPSE_MIN_SEEDS = 3
COLLAPSE_RULE = (
    "† a collapsed seed: more than {mads:g} scaled MADs (1.4826 × median absolute deviation) from "
    "the median of its cell's seeds, in cells of at least {seeds} seeds; the scale is at least "
    "the median of every cell's and {floor:g} point(s), so that seeds agreeing to the decimal do "
    "not make a small gap look like a collapse"
)


def collapsed_seeds(
    runs: pd.DataFrame, value: str, cell: list[str], min_scale: float
) -> pd.DataFrame:
    """The runs whose `value` lies more than COLLAPSE_MADS scaled MADs from the median of their
    cell (`cell` keys, one run per seed), in cells of at least COLLAPSE_MIN_SEEDS seeds; the
    scale is the largest of the cell's scaled MAD, the median over cells of theirs, and
    `min_scale`. Returns those runs with their cell's `median`."""
    from scipy.stats import median_abs_deviation

    runs = runs.dropna(subset=[value])
    grouped = runs.groupby(cell)[value]
    sizes = grouped.transform("size")
    runs = runs[sizes >= COLLAPSE_MIN_SEEDS]
    if runs.empty:
        return runs.assign(median=pd.Series(dtype=float))
    grouped = runs.groupby(cell)[value]
    mads = grouped.agg(lambda v: median_abs_deviation(v, scale="normal"))
    scale = np.maximum(mads, max(float(mads.median()), min_scale))
    median = grouped.transform("median")
    runs = runs.assign(median=median, scale=runs.join(scale.rename("s"), on=cell)["s"])
    far = (runs[value] - runs["median"]).abs() > COLLAPSE_MADS * runs["scale"]
    return runs[far].drop(columns="scale")
