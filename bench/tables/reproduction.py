"""reproduction.{md,csv,tex}: does a control reproduce the paper of its PETL method?

For every (PETL, control `none` or `retrained`) whose PETL has a published row in
results/reference/vtab1k_petl.csv: per task, our mean over seeds minus the published number, in
points, with what each side ran on:

- weights: ours as logged (`random-init`, `hub:<timm name>`, `sha256:<checkpoint hash>`), mapped
  to the reference's names by `PUBLISHED_WEIGHTS` / `CHECKPOINT_HASHES`; the published row's
  `weights` column;
- data: ours `data.source`/`data.format` (folder/jpeg, tfds/tensor); the published row's where
  `PUBLISHED_DATA` knows it, else `unknown` (results/reference/README.md does not say);
- selection: ours best-of-evals where `test/acc_best_of_evals` is compared (or `test/acc` of
  `none` on a `transfer.checkpoint=best_of_evals` transfer), else the last epoch; the published
  rows `PUBLISHED_SELECTION` (best of the test evaluations, as most VTAB-1k repositories report).

A row whose weights, data or selection differ from the published row's is "not comparable" (and
why): never flagged, never counted. An unknown published side is not a difference, and the
row says so. A comparable row is flagged where |Δ| exceeds the tolerance: `TOLERANCE_POINTS`
or `TOLERANCE_STDS` seed standard deviations, whichever is larger.
"""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd

from bench import record as R
from bench.tables.formatting import readable
from bench.tables.runs import CONTROLS
from bench.tables.spec import Runs, Section
from bench.tables.vtab import task_order

TITLE = "Reproduction: our controls against the published rows of their PETL method"
VTAB_TASKS = 19
TOLERANCE_POINTS = 1.0
TOLERANCE_STDS = 2.0
UNKNOWN = "unknown"
BEST = "best-of-evals"
LAST = "last epoch"
# Our logged `weights` -> the reference's `weights` name. timm's `vit_base_patch16_224_in21k`
# alias resolves to the AugReg weights, not the original ones.
PUBLISHED_WEIGHTS = {
    "hub:vit_base_patch16_224.orig_in21k": "orig_in21k",
    "hub:vit_base_patch16_224.augreg_in21k": "augreg_in21k",
    "hub:vit_base_patch16_224_in21k": "augreg_in21k",
}
# `sha256:<hash>` of a local checkpoint -> the reference's name. Add your file's hash
# (`sha256sum ViT-B_16.npz`, the original google-research ImageNet-21k file) as
# "sha256:<hash>": "orig_in21k"; until then its runs are "not comparable" on weights.
CHECKPOINT_HASHES: dict[str, str] = {}
PUBLISHED_DATA: dict[str, str] = {}  # published method -> `folder/jpeg` | `tfds/tensor`
PUBLISHED_SELECTION = BEST
COLUMNS = [
    "petl", "control", "task", "seeds", "ours (%)", "published (%)", "Δ (pts)",
    "tolerance (pts)", "status", "weights (ours)", "weights (published)", "data (ours)",
    "data (published)", "selection (ours)", "selection (published)",
]  # fmt: skip


def section(runs: Runs) -> Section | None:
    table = reproduction_table(runs.methods, runs.reference)
    if table.empty:
        return None
    return Section(TITLE, table.set_index(["petl", "control", "task"]), note=note(table))


def published_rows(path: Path) -> pd.DataFrame:
    """The reference CSV indexed by method; empty where there is none."""
    return pd.read_csv(path).set_index("method") if path.exists() else pd.DataFrame()


def reproduction_table(runs: pd.DataFrame, reference: Path) -> pd.DataFrame:
    """One row per (PETL, control, task) that both we and the PETL's published row have."""
    published = published_rows(reference)
    controls = runs[runs["method"].isin(CONTROLS)]
    rows = []
    for (petl, control), cell_runs in controls.groupby(["petl", "method"], sort=True):
        base = petl_name(petl)
        if base not in published.index:
            continue
        row = published.loc[base]
        for task in task_order(cell_runs["task"].unique()):
            if task in row.index and not pd.isna(row[task]):
                ours = cell_runs[cell_runs["task"] == task]
                rows.append(compare(petl, control, task, ours, row, base))
    return pd.DataFrame(rows, columns=COLUMNS)


def petl_name(label: str) -> str:
    """The PETL method of a row label (`runs.keep_apart`): `convpass (tfds/tensor)` ->
    `convpass`."""
    return label.split(" (", 1)[0]


def compare(petl, control, task, ours: pd.DataFrame, published: pd.Series, base: str) -> dict:
    metric, selection, selection_kind = our_selection(ours, control)
    values = ours[metric].dropna() * 100.0
    mean = values.mean()
    std = values.std(ddof=1) if len(values) > 1 else math.nan
    delta = mean - float(published[task])
    tolerance = max(TOLERANCE_POINTS, TOLERANCE_STDS * std if not math.isnan(std) else 0.0)
    weights = logged(ours, "weights") or "not logged"
    source = logged(ours, "source") or "not logged"
    theirs = {"weights": str(published["weights"]), "data": PUBLISHED_DATA.get(base, UNKNOWN)}
    differs = []
    if published_weights(weights) != theirs["weights"]:
        differs.append(f"weights {weights} ≠ {theirs['weights']}")
    if theirs["data"] != UNKNOWN and source != theirs["data"]:
        differs.append(f"data {source} ≠ {theirs['data']}")
    if selection_kind != PUBLISHED_SELECTION:
        differs.append(f"selection {selection_kind} ≠ {PUBLISHED_SELECTION}")
    if differs:
        status = "not comparable: " + "; ".join(differs)
    else:
        status = "within tolerance" if abs(delta) <= tolerance else "outside tolerance"
        if theirs["data"] == UNKNOWN:
            status += " (published data source unknown)"
    return dict(zip(COLUMNS, [
        petl, control, task, len(values), mean, float(published[task]), delta,
        math.nan if differs else tolerance, status, weights, theirs["weights"], source,
        theirs["data"], selection, f"{PUBLISHED_SELECTION} (assumed)",
    ], strict=True))  # fmt: skip


def our_selection(runs: pd.DataFrame, control: str) -> tuple[str, str, str]:
    """(metric compared, how it reads, best-of-evals or last epoch): the best of the test
    evaluations where every run logged one, else the headline `test/acc`, which is the
    best-of-evals only for `none` on a transfer kept at its best evaluation."""
    checkpoint = logged(runs, "checkpoint")
    where = f"transfer.checkpoint={checkpoint}" if checkpoint else "transfer.checkpoint not logged"
    if R.ACC_BEST in runs and runs[R.ACC_BEST].notna().all():
        return R.ACC_BEST, f"{BEST}: {R.ACC_BEST}, {where}", BEST
    kind = BEST if control == "none" and checkpoint == "best_of_evals" else LAST
    return R.ACC, f"{kind}: {R.ACC}, {where}", kind


def logged(runs: pd.DataFrame, column: str) -> str:
    """The values of a logged column over the cell's runs, `/`-joined; "" where unlogged."""
    if column not in runs:
        return ""
    return "/".join(sorted(v for v in runs[column].fillna("").unique() if v))


def published_weights(weights: str) -> str:
    """Our logged weights under the reference's name; as logged where none is known."""
    return PUBLISHED_WEIGHTS.get(weights) or CHECKPOINT_HASHES.get(weights) or weights


def note(table: pd.DataFrame) -> str:
    """Per (PETL, control): `reproduced within tolerance on n of 19 tasks`, with how many were
    compared and not comparable; then how to read the flags."""
    counts = []
    for (petl, control), rows in table.groupby(["petl", "control"], sort=False):
        within = rows["status"].str.startswith("within").sum()
        comparable = (~rows["status"].str.startswith("not comparable")).sum()
        counts.append(
            f"{petl}, {control}: reproduced within tolerance on {within} of {VTAB_TASKS} tasks "
            f"({comparable} compared, {len(rows) - comparable} not comparable, "
            f"{VTAB_TASKS - len(rows)} not run)"
        )
    rule = (
        f"Δ = ours − published (points); tolerance: {readable(TOLERANCE_POINTS)} point or "
        f"{readable(TOLERANCE_STDS)} seed standard deviations, whichever is larger. A row whose "
        "weights, data source or selection differ from the published row's is not comparable: "
        "neither flagged nor counted. The published data source is unknown unless the reference "
        "says; the published selection is assumed best-of-evals (the best test evaluation, "
        "what most VTAB-1k repositories report)."
    )
    return ". ".join(counts) + ". " + rule
