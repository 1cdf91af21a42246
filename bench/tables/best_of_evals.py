"""accuracy_best_of_evals.{md,csv,tex}: the accuracy table on the best of the periodic test
evaluations (what most papers, and so most published rows, report; it selects on the test set),
with a note where runs have none (`train.eval_every=0`)."""

from __future__ import annotations

import numpy as np

from bench import record as R
from bench.tables.accuracy import NOTE, accuracy_table
from bench.tables.runs import ROW_KEYS
from bench.tables.spec import Runs, Section

TITLE = (
    "Top-1 accuracy (%), best of the test evaluations every `eval_every` epochs (selects on "
    "test, as most published rows do), mean ± std over seeds"
)
LAST_EPOCH_ONLY = "best-of-evals missing: evaluated at the last epoch only (train.eval_every=0)"


def section(runs: Runs) -> Section:
    """Runs trained with `train.eval_every=0` have no best-of-evals accuracy: their cells stay
    empty and the row's note counts them."""
    methods = runs.methods
    methods = methods.assign(**{R.ACC_BEST: methods[R.ACC_BEST] if R.ACC_BEST in methods
                                else np.nan})  # fmt: skip
    text, _ = accuracy_table(methods, runs.reference, R.ACC_BEST)
    missing = methods[R.ACC_BEST].isna().groupby([methods[k] for k in ROW_KEYS]).sum()
    total = methods.groupby(ROW_KEYS).size()
    notes = {row: f"{LAST_EPOCH_ONLY}: {int(n)} of {total[row]} runs" for row, n in missing.items()
             if n}  # fmt: skip
    text["note"] = [notes.get(row, "") for row in text.index]
    return Section(TITLE, text, note=NOTE)
