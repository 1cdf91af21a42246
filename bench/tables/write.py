"""`make tables`: the suite's runs from the tracking store → every table of
`bench.tables.catalog.TABLES` → results/tables/<suite>/ (files and index.html), logged as
artifacts of a `tables` run in the suite's experiment."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from bench import record as R
from bench.errors import UserError
from bench.paths import PROJECT_ROOT, results_dir
from bench.tables.catalog import TABLES
from bench.tables.files import write_section
from bench.tables.page import write_index
from bench.tables.runs import keep_apart, load_runs, method_runs, tidy_runs
from bench.tables.spec import Runs, Section

REFERENCE_CSV = PROJECT_ROOT / "results" / "reference" / "vtab1k_petl.csv"


def sections(runs: pd.DataFrame, reference: Path = REFERENCE_CSV) -> list[tuple[str, Section]]:
    """(stem, section) of every table these runs fill, in the catalog's order."""
    if runs.empty:
        raise UserError("no FINISHED runs to tabulate")
    every = keep_apart(runs)
    inputs = Runs(every, method_runs(every), reference)
    built = []
    for table in TABLES:
        if table.needs_methods and inputs.methods.empty:
            continue
        section = table.build(inputs)
        if section is not None:
            built.append((table.stem, section))
    return built


def build_tables(
    runs: pd.DataFrame, out: Path, reference: Path = REFERENCE_CSV, suite: str | None = None
) -> list[Path]:
    """Every table's files and index.html (titled `suite`, default the folder's name) in `out`."""
    built = sections(runs, reference)
    out.mkdir(parents=True, exist_ok=True)
    parts = [(stem, section, write_section(section, out / stem)) for stem, section in built]
    index = write_index(out, suite or out.name, parts)
    return [path for _, _, files in parts for path in files] + [index]


def write_tables(suite: str, out: str | None = None, log: bool = True) -> list[Path]:
    from bench.tracking import tracking_uri

    folder = Path(out) if out else results_dir() / "tables" / suite
    raw = load_runs(tracking_uri(), suite)
    if raw is None:
        raise UserError(
            f"no suite {suite!r} in {tracking_uri()}; run `make bench` or a sweep first"
        )
    runs = tidy_runs(raw)
    written = build_tables(runs, folder, suite=suite)
    if log:
        log_tables(suite, written, len(runs))
    return written


def log_tables(suite: str, files: list[Path], n_runs: int) -> None:
    """A `tables` run in the suite's experiment holds the generated files as artifacts."""
    from bench.tracking import TrackedRun, environment_tags

    tags = {**environment_tags(), R.KIND: "tables"}
    with TrackedRun(suite, "tables", {R.P_TABLES_RUNS: n_runs}, tags, heartbeat=None) as run:
        for path in files:
            run.log_artifact(path, "tables")
