"""Every table and plot of `make tables`, in the order of index.html: the one list that drives
both the files written and the page."""

from __future__ import annotations

from bench.tables import (
    accuracy,
    accuracy_vs_stored_bytes,
    accuracy_vs_throughput,
    best_of_evals,
    criteria,
    depth_curve,
    efficiency,
    reproduction,
    sls_k,
    sls_regret,
    sls_scores,
)
from bench.tables.spec import Table

TABLES = [
    Table("accuracy", accuracy.section),
    Table("accuracy_best_of_evals", best_of_evals.section),
    Table("reproduction", reproduction.section),
    Table("efficiency", efficiency.section),
    Table("accuracy_vs_throughput", accuracy_vs_throughput.section),
    Table("accuracy_vs_stored_bytes", accuracy_vs_stored_bytes.section),
    Table("sls_k", sls_k.section),
    Table("sls_scores", sls_scores.section),
    Table("criteria", criteria.section),
    Table("depth_curve", depth_curve.section, needs_methods=False),
    Table("sls_regret", sls_regret.section, needs_methods=False),
]
