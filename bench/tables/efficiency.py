"""efficiency.{md,csv,tex}: per (PETL, method), means over tasks and seeds of accuracy, its
change against `none`, against the `retrained` control and against `drop_last` at the same depth
(paired by task and seed, each with a bootstrap interval), throughput, speedup with the timer's
interval, MACs, parameters, stored per-task bytes and epochs trained after the transfer.

The notes say where a method trained a different number of epochs than the control, where its
speedup's interval overlaps the noise floor (`none`'s speedup: the unpruned model timed against
itself, an A/A measurement) and where runs stopped timing at `measure.max_seconds` before the
interval met `measure.ratio_target`."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from bench import record as R
from bench.tables.formatting import readable
from bench.tables.intervals import (
    NO_INTERVAL,
    SCHEME,
    interval_text,
    task_groups,
    two_level_interval,
)
from bench.tables.runs import CONTROLS, PAIR_KEYS, ROW_KEYS, base_method, sorted_rows
from bench.tables.spec import Runs, Section

TITLE = "Efficiency: means over tasks and seeds"
EPOCHS = R.EPOCHS_AFTER_TRANSFER
ACC_LABEL = "acc (%)"
SPEEDUP_BATCHES = (1, 64)
COLUMNS = {  # metric: (column, scale)
    R.ACC: (ACC_LABEL, 100.0),
    R.throughput(1): ("img/s bs1", 1.0),
    R.throughput(64): ("img/s bs64", 1.0),
    **{R.speedup(b): (f"speedup bs{b}", 1.0) for b in SPEEDUP_BATCHES},
    R.MACS: ("GMACs", 1e-9),
    R.PARAMS_TOTAL: ("params (M)", 1e-6),
    R.PARAMS_TRAINABLE: ("trainable (K)", 1e-3),
    R.PARAMS_STORED: ("stored params (K)", 1e-3),
    R.BYTES_STORED: ("stored (KB)", 1e-3),
    R.BLOCKS_KEPT: ("blocks kept", 1.0),
    EPOCHS: ("epochs after transfer", 1.0),
}
SAME_K = "drop_last @ same k"  # the drop_last run on the same transfer that kept as many blocks
NOISE_FLOOR = "none"  # the unpruned model timed against itself
INTERVAL = "95 %"  # the suffix of a shown interval's column
TIMER_NOTE = (
    "speedup 95 %: the timer's interval, from each run's logged one (`speedup_low`/`_high`, over "
    "its interleaved rounds), half-widths in log space added in quadrature and divided by the "
    'runs: the noise of the timing, not the spread over tasks and seeds; "{no}" where a run '
    "logged none (fewer than 2 rounds). Noise floor (A/A: `none`, the unpruned model timed "
    "against itself): {floor}."
)


def section(runs: Runs) -> Section:
    numeric, shown = efficiency_tables(runs.methods, runs.every)
    return Section(TITLE, shown, note=notes(numeric), csv=numeric.reset_index())


def efficiency_tables(
    runs: pd.DataFrame, every: pd.DataFrame | None = None
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(numeric, shown): per (PETL, method), means over tasks and seeds of what MEASURE.md
    records, the accuracy change against each control and `drop_last` at the same k with their
    intervals (numeric: `low`/`high` columns; shown: one `95 %` text column), the speedups with
    the timer's interval, and the notes. `every`: the runs `drop_last` at an explicit depth is
    taken from (default `runs`)."""
    present = {m: spec for m, spec in COLUMNS.items() if m in runs.columns}
    scaled = pd.DataFrame({label: runs[m] * scale for m, (label, scale) in present.items()})
    scaled[ROW_KEYS] = runs[ROW_KEYS]
    table = scaled.groupby(ROW_KEYS).mean()
    table.insert(0, "runs", runs.groupby(ROW_KEYS).size())
    shown_intervals = {}  # column after which a text interval is shown: its text per row
    at = table.columns.get_loc(ACC_LABEL) + 1 if ACC_LABEL in table else table.shape[1]
    for label, deltas in comparisons(runs, runs if every is None else every).items():
        column = f"Δ vs {label} (pts)"
        stats = delta_stats(deltas, self_label=label)
        for name in ("mean", "low", "high"):
            suffix = "" if name == "mean" else f" {name}"
            table.insert(at, column + suffix, stats[name].reindex(table.index))
            at += 1
        shown_intervals[column] = stats["text"]
    for batch in SPEEDUP_BATCHES:
        column = f"speedup bs{batch}"
        if column in table:
            timer = timer_intervals(runs, batch).reindex(table.index)
            at = table.columns.get_loc(column) + 1
            table.insert(at, f"{column} low", timer["low"])
            table.insert(at + 1, f"{column} high", timer["high"])
            shown_intervals[column] = timer["text"]
    table["note"] = row_notes(runs, table)
    table = sorted_rows(table)
    return table, shown_table(table, shown_intervals)


def shown_table(numeric: pd.DataFrame, intervals: dict[str, pd.Series]) -> pd.DataFrame:
    """The numeric table with each `low`/`high` pair replaced by one text column after its
    value."""
    shown = numeric.drop(columns=[c for c in numeric if c.endswith((" low", " high"))])
    for column, text in intervals.items():
        at = shown.columns.get_loc(column) + 1
        shown.insert(at, f"{column.removesuffix(' (pts)')} {INTERVAL}",
                     text.reindex(shown.index).fillna(""))  # fmt: skip
    return shown


def comparisons(runs: pd.DataFrame, every: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """Per reference (`none`, `retrained`, `drop_last @ same k`, those the runs have): each run's
    accuracy minus the reference's on the same transfer, in points, one row per paired run
    (ROW_KEYS, task, seed, delta)."""
    out = {}
    for control in (c for c in CONTROLS if c in set(runs["method"])):
        reference = runs[runs["method"] == control].set_index(PAIR_KEYS)[R.ACC]
        out[control] = paired(runs, reference, PAIR_KEYS)
    same_k = same_depth_deltas(runs, every)
    if same_k is not None and len(same_k):
        out[SAME_K] = same_k
    return out


def paired(runs: pd.DataFrame, reference: pd.Series, keys: list[str]) -> pd.DataFrame:
    joined = runs.join(reference.rename("reference"), on=keys).dropna(subset=["reference"])
    delta = (joined[R.ACC] - joined["reference"]) * 100.0
    return joined[[*ROW_KEYS, "task", "seed"]].assign(delta=delta).dropna(subset=["delta"])


def same_depth_deltas(runs: pd.DataFrame, every: pd.DataFrame) -> pd.DataFrame | None:
    """Each run against `drop_last` on the same transfer that kept as many blocks (at its
    default budget or a depth-curve point, on test), other `drop_last` runs left out."""
    if R.BLOCKS_KEPT not in runs or R.BLOCKS_KEPT not in every:
        return None
    drop_last = every[(every["method"].map(base_method) == "drop_last")
                      & (every["split"] == "test")]  # fmt: skip
    keys = [*PAIR_KEYS, R.BLOCKS_KEPT]
    reference = drop_last.dropna(subset=[R.BLOCKS_KEPT, R.ACC]).groupby(keys)[R.ACC].mean()
    if reference.empty:
        return None
    others = runs[runs["method"].map(base_method) != "drop_last"]
    return paired(others, reference, keys)


def delta_stats(deltas: pd.DataFrame, self_label: str) -> pd.DataFrame:
    """Per (PETL, method): the mean delta, its bootstrap interval (`SCHEME`) and the interval as
    text; a method against itself (identically 0) has an empty interval."""
    rows = {}
    for key, group in deltas.groupby(ROW_KEYS):
        if key[1] == self_label:
            rows[key] = (group["delta"].mean(), np.nan, np.nan, "")
            continue
        interval = two_level_interval(task_groups(group, "delta"))
        low, high = interval if interval else (np.nan, np.nan)
        rows[key] = (group["delta"].mean(), low, high, interval_text(interval))
    frame = pd.DataFrame.from_dict(rows, orient="index", columns=["mean", "low", "high", "text"])
    if len(frame):
        frame.index = pd.MultiIndex.from_tuples(frame.index, names=ROW_KEYS)
    return frame


def timer_intervals(runs: pd.DataFrame, batch: int) -> pd.DataFrame:
    """Per (PETL, method): the timer's 95 % interval of the mean speedup at `batch`, from each
    run's logged interval (`combined_timer_interval`); `no interval` where a run has none."""
    low, high = R.speedup_low(batch), R.speedup_high(batch)
    rows = {}
    for key, group in runs.dropna(subset=[R.speedup(batch)]).groupby(ROW_KEYS):
        lows = group[low] if low in group else pd.Series(np.nan, index=group.index)
        highs = group[high] if high in group else pd.Series(np.nan, index=group.index)
        interval = combined_timer_interval(lows.to_numpy(float), highs.to_numpy(float))
        ends = interval if interval else (np.nan, np.nan)
        rows[key] = (*ends, interval_text(interval))
    frame = pd.DataFrame.from_dict(rows, orient="index", columns=["low", "high", "text"])
    if len(frame):
        frame.index = pd.MultiIndex.from_tuples(frame.index, names=ROW_KEYS)
    return frame.reindex(columns=["low", "high", "text"])


def combined_timer_interval(lows: np.ndarray, highs: np.ndarray) -> tuple[float, float] | None:
    """The timer's interval for the mean of several runs' speedups, from each run's interval
    (symmetric in log space about its geometric mean): center exp(mean of the log centers),
    half-width √(Σ hᵢ²) / n in log space. One run: its own interval. None where any run has
    none."""
    if not len(lows) or np.isnan(lows).any() or np.isnan(highs).any():
        return None
    log_low, log_high = np.log(lows), np.log(highs)
    center = np.mean((log_low + log_high) / 2)
    half = math.sqrt(np.sum(((log_high - log_low) / 2) ** 2)) / len(lows)
    return math.exp(center - half), math.exp(center + half)


def row_notes(runs: pd.DataFrame, table: pd.DataFrame) -> pd.Series:
    """Per row: the epochs note, the batch sizes at which its speedup interval overlaps the
    noise floor, and how many runs stopped timing at the time cap; joined by `; `."""
    overlap, capped = {}, {}
    for batch in SPEEDUP_BATCHES:
        for key in overlaps_noise_floor(table, batch):
            overlap.setdefault(key, []).append(f"bs{batch}")
        for key, (n, total) in time_capped(runs, batch).items():
            capped.setdefault(key, []).append(f"bs{batch} {n} of {total} runs")
    floor = "speedup interval overlaps the noise floor ({})"
    cap = "timing stopped at the time cap (measure.max_seconds) before the ratio target: {}"
    parts = [
        epoch_notes(runs) if EPOCHS in runs.columns else {},
        {key: floor.format(", ".join(batches)) for key, batches in overlap.items()},
        {key: cap.format(", ".join(counts)) for key, counts in capped.items()},
    ]
    notes = pd.Series("", index=table.index, dtype=object)
    for part in parts:
        for key, text in part.items():
            if key in notes.index and text:
                notes[key] = f"{notes[key]}; {text}" if notes[key] else text
    return notes


def noise_floor(table: pd.DataFrame, batch: int) -> dict[str, tuple[float, float, float]]:
    """Per PETL: `none`'s speedup at `batch` and its timer interval (low, high; NaN if none)."""
    column = f"speedup bs{batch}"
    if f"{column} low" not in table:
        return {}
    return {petl: (row[column], row[f"{column} low"], row[f"{column} high"])
            for (petl, method), row in table.iterrows()
            if method == NOISE_FLOOR and not math.isnan(row[column])}  # fmt: skip


def overlaps_noise_floor(table: pd.DataFrame, batch: int) -> list[tuple]:
    """The rows (but `none`) whose speedup interval at `batch` overlaps their PETL's `none`
    interval."""
    column = f"speedup bs{batch}"
    rows = []
    for petl, (_, floor_low, floor_high) in noise_floor(table, batch).items():
        for key, row in table.loc[[petl]].iterrows():
            low, high = row[f"{column} low"], row[f"{column} high"]
            if key[1] != NOISE_FLOOR and low <= floor_high and high >= floor_low:
                rows.append(key)  # NaN compares False: no interval, no overlap
    return rows


def time_capped(runs: pd.DataFrame, batch: int) -> dict[tuple, tuple[int, int]]:
    """Per row with any: (runs whose timing stopped at the time cap, `speedup_target_met` 0;
    runs that logged it) at `batch`."""
    met = R.speedup_target_met(batch)
    if met not in runs:
        return {}
    logged = runs.dropna(subset=[met])
    capped = (logged[met] == 0).groupby([logged[k] for k in ROW_KEYS]).agg(["sum", "size"])
    return {key: (int(n), int(total)) for key, (n, total) in capped.iterrows() if n}


def notes(table: pd.DataFrame) -> str:
    """The paragraph under the table: the resampling scheme, the timer's interval and the noise
    floor per PETL and batch size."""
    floors = []
    for batch in SPEEDUP_BATCHES:
        for petl, (value, low, high) in noise_floor(table, batch).items():
            interval = f"({NO_INTERVAL})" if math.isnan(low) else interval_text((low, high))
            floors.append(f"{petl} bs{batch}: {readable(float(value))} {interval}")
    floor = ", ".join(floors) if floors else "no `none` runs with a speedup"
    delta = (f"Δ 95 %: paired (each run's difference to its reference on the same task and seed "
             f"is resampled), {SCHEME}.")  # fmt: skip
    return f"{delta} {TIMER_NOTE.format(no=NO_INTERVAL, floor=floor)}"


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
