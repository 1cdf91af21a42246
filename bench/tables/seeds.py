"""Aggregation over seeds: each seed is one draw of a run; tables show mean ± sample std."""

from __future__ import annotations

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
