"""efficiency.{md,csv,tex}: per (PETL, method), means over tasks and seeds of accuracy, its
change against `none` and against the `retrained` control (paired by task and seed),
throughput, speedup, MACs, parameters, stored per-task bytes and epochs trained after the
transfer (a method whose count differs from the control's is flagged)."""

from __future__ import annotations

import pandas as pd

from bench import record as R
from bench.tables.runs import CONTROLS, PAIR_KEYS, ROW_KEYS, sorted_rows
from bench.tables.spec import Runs, Section

TITLE = "Efficiency: means over tasks and seeds"
EPOCHS = R.EPOCHS_AFTER_TRANSFER
ACC_LABEL = "acc (%)"
COLUMNS = {  # metric: (column, scale)
    R.ACC: (ACC_LABEL, 100.0),
    R.throughput(1): ("img/s bs1", 1.0),
    R.throughput(64): ("img/s bs64", 1.0),
    R.speedup(1): ("speedup bs1", 1.0),
    R.speedup(64): ("speedup bs64", 1.0),
    R.MACS: ("GMACs", 1e-9),
    R.PARAMS_TOTAL: ("params (M)", 1e-6),
    R.PARAMS_TRAINABLE: ("trainable (K)", 1e-3),
    R.PARAMS_STORED: ("stored params (K)", 1e-3),
    R.BYTES_STORED: ("stored (KB)", 1e-3),
    R.BLOCKS_KEPT: ("blocks kept", 1.0),
    EPOCHS: ("epochs after transfer", 1.0),
}


def section(runs: Runs) -> Section:
    return Section(TITLE, efficiency_table(runs.methods))


def efficiency_table(runs: pd.DataFrame) -> pd.DataFrame:
    """Means over tasks and seeds, per (PETL, method), of what MEASURE.md records, with the
    accuracy change against each control and a note where the epochs trained differ."""
    present = {m: spec for m, spec in COLUMNS.items() if m in runs.columns}
    scaled = pd.DataFrame({label: runs[m] * scale for m, (label, scale) in present.items()})
    scaled[ROW_KEYS] = runs[ROW_KEYS]
    table = scaled.groupby(ROW_KEYS).mean()
    table.insert(0, "runs", runs.groupby(ROW_KEYS).size())
    at = table.columns.get_loc(ACC_LABEL) + 1 if ACC_LABEL in table else table.shape[1]
    for control in (c for c in CONTROLS if c in set(runs["method"])):
        table.insert(at, f"Δ vs {control} (pts)", accuracy_delta(runs, control))
        at += 1
    if EPOCHS in runs.columns:
        table["note"] = epoch_notes(runs).reindex(table.index).fillna("")
    return sorted_rows(table)


def accuracy_delta(runs: pd.DataFrame, control: str) -> pd.Series:
    """Per (PETL, method): mean over tasks and seeds of test accuracy minus the control's on the
    same transfer (task, PETL, seed), in points; pairs without a control run are left out."""
    reference = runs[runs["method"] == control].set_index(PAIR_KEYS)[R.ACC]
    paired = runs.join(reference.rename("reference"), on=PAIR_KEYS)
    delta = (paired[R.ACC] - paired["reference"]) * 100.0
    return delta.groupby([paired[k] for k in ROW_KEYS]).mean()


def epoch_notes(runs: pd.DataFrame) -> pd.Series:
    """Per (PETL, method): a note when a method trained a different number of epochs after the
    transfer than the `retrained` control on the same transfer (or, with no control, than most
    retraining methods). `none` trains none by definition."""
    epochs = runs[list(dict.fromkeys([*PAIR_KEYS, *ROW_KEYS, EPOCHS]))].dropna(subset=[EPOCHS])
    trained = epochs[epochs["method"] != "none"]
    if trained.empty:
        return pd.Series(dtype=object)
    control = trained[trained["method"] == "retrained"].set_index(PAIR_KEYS)[EPOCHS]
    if control.empty:
        control = trained.groupby(PAIR_KEYS)[EPOCHS].agg(lambda e: e.mode().iloc[0])
    paired = trained.join(control.rename("control"), on=PAIR_KEYS)
    differs = paired[paired[EPOCHS] != paired["control"]]
    reference = "retrained" if "retrained" in set(trained["method"]) else "most methods"
    notes = {key: _epoch_note(group, reference) for key, group in differs.groupby(ROW_KEYS)}
    return pd.Series(notes, dtype=object)


def _epoch_note(runs: pd.DataFrame, reference: str) -> str:
    """`not retrained` for a method evaluated as pruned (e.g. depgraph_sls, as the SLS paper's
    comparison), else how many epochs it trained against the reference."""
    control = f"{reference} {_epochs(runs['control'])}"
    if (runs[EPOCHS] == 0).all():
        return f"not retrained: 0 epochs after the transfer, {control}"
    return f"trains {_epochs(runs[EPOCHS])} epochs after the transfer, {control}"


def _epochs(values: pd.Series) -> str:
    return "/".join(f"{v:g}" for v in sorted(values.unique()))
