"""sls_k.{md,csv,tex}: SLS's k per task and seed, and its margin to T (how near a call it was)."""

from __future__ import annotations

import pandas as pd

from bench import record as R
from bench.tables.spec import Runs, Section
from bench.tables.vtab import task_order

TITLE = "SLS's depth k per task"


def section(runs: Runs) -> Section | None:
    table = sls_k_table(runs.methods)
    return None if table.empty else Section(TITLE, table)


def sls_k_table(runs: pd.DataFrame) -> pd.DataFrame:
    """SLS's k per task (rows, VTAB order) and seed (columns), per PETL method."""
    sls = runs[(runs["method"] == "sls")]
    if sls.empty or R.SLS_K not in sls:
        return pd.DataFrame()
    table = sls.pivot_table(index=["petl", "task"], columns="seed", values=R.SLS_K,
                            aggfunc="first")  # fmt: skip
    table.columns = [f"k (seed {s})" for s in table.columns]
    if R.SLS_MARGIN in sls and sls[R.SLS_MARGIN].notna().any():  # how near a call each k was
        margin = sls.pivot_table(index=["petl", "task"], columns="seed", values=R.SLS_MARGIN)
        table = table.join(margin.rename(columns=lambda s: f"margin to T (seed {s})"))
    order = {t: i for i, t in enumerate(task_order(sls["task"].unique()))}
    table = table.reset_index().assign(order=lambda t: t["task"].map(order))
    return table.sort_values(["petl", "order"]).drop(columns="order").set_index(["petl", "task"])
