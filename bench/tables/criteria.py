"""criteria.{md,csv,tex} (issue #16): the layer-wise criteria SLS argues against, head to head.

One row per (PETL, task, seed, method) for `none` (the reference), `sls` and every layer-wise
criterion (every pruner that logs `<method>/removed/block_NN`: `block_influence`, `angular`,
`cka`):

- `removed`: the blocks (1-based) the method removed: as it logged them; for `sls`, the blocks
  after its k (its top block N is always scored); none for `none`;
- `k` (blocks kept) and `acc (%)`, the test accuracy after the common retraining;
- `rho vs probe`: the Spearman rank correlation between the method's per-block score curve
  (`<method>/score/block_NN`) and the per-block linear-probe accuracy (`sls/probe/block_NN`) of
  the `sls` run with `metric=probe` on the same PETL model, task and seed, over the blocks both
  have (`rho blocks`, at least 3). **Empty where the suite has no such run** (run `sls` with
  `--set pruners.sls.metric=probe`), and 1 for that sls run itself, by construction. The curves
  are oriented "higher = the criterion values the block more" (1 - cos for block_influence, the
  angle across the block for angular, 1 - CKA without the block for cka); SLS's is its score
  of the block's output.

The table is written when the runs hold at least one criterion besides `none` and `sls`.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import pandas as pd

from bench import record as R
from bench.tables.runs import base_method, method_order
from bench.tables.spec import Runs, Section
from bench.tables.vtab import task_order

DERIVED = ("none", "sls")  # methods whose removed blocks follow from their k
MIN_BLOCKS_FOR_RHO = 3
TITLE = "Layer-wise criteria at SLS's budget: blocks removed, accuracy, rank correlation with probe"
NOTE = (
    "`removed`: 1-based blocks removed; `acc (%)`: test accuracy after the common retraining; "
    "`rho vs probe`: Spearman correlation of the method's per-block score with the per-block "
    "linear-probe accuracy of the sls run with metric=probe on the same task, PETL and seed "
    "(empty where there is none; 1 for that run itself)."
)


def section(runs: Runs) -> Section | None:
    table = criteria_table(runs.methods)
    return None if table.empty else Section(TITLE, table, note=NOTE)


def block_curve(run: pd.Series, prefix: str) -> pd.Series:
    """The run's logged values of `<prefix>NN`, indexed by block number (1-based), NaNs dropped."""
    columns = [c for c in run.index if c.startswith(prefix) and c[len(prefix) :].isdigit()]
    values = {int(c[len(prefix) :]): run[c] for c in columns}
    return pd.Series(values, dtype=float).dropna().sort_index()


def blocks_kept(run: pd.Series, method: str) -> int | None:
    for column in (R.BLOCKS_KEPT, R.metric_of(method, R.PRUNER_K)):
        value = run.get(column, np.nan)
        if value is not None and not math.isnan(value):
            return int(value)
    return None


def removed_blocks(run: pd.Series) -> list[int] | None:
    """The 1-based blocks the run removed, or None where its metrics do not say."""
    method = base_method(run["method"])
    logged = block_curve(run, R.metric_of(method, R.BLOCK_REMOVED))
    if not logged.empty:
        return [int(b) for b, flag in logged.items() if flag == 1.0]
    k = blocks_kept(run, method)
    if k is None or method not in DERIVED:
        return None
    if method == "none":
        return []
    scored = block_curve(run, R.SLS_SCORE_PREFIX)
    return None if scored.empty else list(range(k + 1, int(scored.index.max()) + 1))


def rank_correlation(curve: pd.Series, reference: pd.Series) -> tuple[float, int]:
    """(Spearman rho over the blocks both curves have, how many); rho NaN below 3 blocks or for
    a constant curve."""
    from scipy.stats import spearmanr

    shared = curve.index.intersection(reference.index)
    if len(shared) < MIN_BLOCKS_FOR_RHO:
        return math.nan, len(shared)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a constant curve: rho is undefined, NaN says so
        rho = spearmanr(curve[shared].to_numpy(), reference[shared].to_numpy()).statistic
    return float(rho), len(shared)


def probe_curves(runs: pd.DataFrame) -> dict[tuple, pd.Series]:
    """Per (PETL, task, seed): the per-block probe accuracy of its sls run, where it has one."""
    curves = {}
    for _, run in runs[runs["method"] == "sls"].iterrows():
        curve = block_curve(run, R.SLS_PROBE_PREFIX)
        if not curve.empty:
            curves[(run["petl"], run["task"], run["seed"])] = curve
    return curves


def criteria_table(runs: pd.DataFrame) -> pd.DataFrame:
    """The table's rows (see the module docstring); empty when there is no criterion to show."""
    probes = probe_curves(runs)
    rows = []
    for _, run in runs.iterrows():
        method = base_method(run["method"])
        removed = removed_blocks(run)
        if removed is None:
            continue
        reference = probes.get((run["petl"], run["task"], run["seed"]))
        curve = block_curve(run, R.metric_of(method, R.BLOCK_SCORE))
        rho, shared = (math.nan, 0) if reference is None else rank_correlation(curve, reference)
        acc = run.get(R.ACC, np.nan)
        rows.append({"petl": run["petl"], "task": run["task"], "seed": int(run["seed"]),
                     "method": run["method"], "k": blocks_kept(run, method),
                     "removed": ",".join(str(b) for b in removed),
                     "acc (%)": acc * 100.0, "rho vs probe": rho,
                     "rho blocks": shared or None})  # fmt: skip
    table = pd.DataFrame(rows)
    if table.empty or set(table["method"].map(base_method)) <= set(DERIVED):
        return pd.DataFrame()
    return _sorted(table).set_index(["petl", "task", "seed", "method"])


def _sorted(table: pd.DataFrame) -> pd.DataFrame:
    """PETL, then tasks in VTAB order, seeds, and methods with none and sls first."""
    orders = {
        "task": {t: i for i, t in enumerate(task_order(table["task"].unique()))},
        "method": {m: i for i, m in enumerate(method_order(table["method"].unique()))},
    }

    def key(column: pd.Series) -> pd.Series:
        return column.map(orders[column.name]) if column.name in orders else column

    return table.sort_values(["petl", "task", "seed", "method"], key=key)
