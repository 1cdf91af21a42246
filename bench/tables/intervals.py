"""95 % intervals of the tables' means: a paired, two-level percentile bootstrap over tasks and
seeds.

A resample draws the tasks with replacement, then, within each drawn task, its seeds with
replacement, and recomputes the mean; the interval is the 2.5th and 97.5th percentiles of
`RESAMPLES` such means, from a fixed seed (the same runs give the same interval). Paired: what is
resampled is each (task, seed)'s difference to its control on the same transfer, so the
transfer's luck cancels. One task with one seed has no interval (`None`), never a zero-width one.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from bench.tables.formatting import readable

CONFIDENCE = 0.95
RESAMPLES = 10_000
SEED = 0
NO_INTERVAL = "no interval"
SCHEME = (
    "95 % percentile bootstrap over tasks and seeds (tasks drawn with replacement, then seeds "
    f"with replacement within each drawn task; {RESAMPLES:,} resamples, fixed seed); "
    f'"{NO_INTERVAL}" with one task and one seed'
)


def two_level_interval(
    groups: Sequence[Sequence[float]],
    pooled: bool = True,
    resamples: int = RESAMPLES,
    seed: int = SEED,
    confidence: float = CONFIDENCE,
) -> tuple[float, float] | None:
    """(low, high) of the bootstrap interval of the mean of `groups` (one sequence of per-seed
    values per task; NaNs dropped): `pooled`, the mean over every (task, seed) value drawn, else
    the mean over the drawn tasks of each task's mean over its drawn seeds. None where there is
    nothing to resample (one task with one seed, or nothing)."""
    arrays = [a[~np.isnan(a)] for a in (np.asarray(g, dtype=float) for g in groups)]
    arrays = [a for a in arrays if a.size]
    if not arrays or (len(arrays) == 1 and arrays[0].size < 2):
        return None
    sizes = np.array([a.size for a in arrays])
    padded = np.zeros((len(arrays), sizes.max()))
    for i, a in enumerate(arrays):
        padded[i, : a.size] = a
    rng = np.random.default_rng(seed)
    tasks = rng.integers(0, len(arrays), size=(resamples, len(arrays)))
    counts = sizes[tasks]
    seeds = (rng.random((*tasks.shape, padded.shape[1])) * counts[..., None]).astype(int)
    drawn = padded[tasks[..., None], seeds]
    used = np.arange(padded.shape[1]) < counts[..., None]
    sums = np.where(used, drawn, 0.0).sum(axis=-1)
    means = sums.sum(axis=1) / counts.sum(axis=1) if pooled else (sums / counts).mean(axis=1)
    tail = (1 - confidence) / 2
    low, high = np.quantile(means, [tail, 1 - tail])
    return float(low), float(high)


def task_groups(values: pd.DataFrame, column: str) -> list[np.ndarray]:
    """`column`'s values per task (the rows of `values` are (task, seed) draws)."""
    return [group.to_numpy(float) for _, group in values.groupby("task", sort=True)[column]]


def interval_text(interval: tuple[float, float] | None) -> str:
    """`[1.2, 3.4]`, numbers as the tables show them; `no interval` for None."""
    if interval is None:
        return NO_INTERVAL
    low, high = interval
    return f"[{readable(float(low))}, {readable(float(high))}]"
