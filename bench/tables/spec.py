"""What a table is: a stem and a function from the runs to a `Section`, its data.

`bench.tables.files` writes a section's files (`<stem>.md`, `.csv`, `.tex`, `.png`) and
`bench.tables.page` its part of index.html, both from the same data.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd


@dataclass(frozen=True)
class Runs:
    """What every table is built from: one row per run (`bench.tables.runs.tidy_runs`)."""

    every: pd.DataFrame  # every finished run, data sources labelled apart
    methods: pd.DataFrame  # what the method tables show: on test, depth-curve points left out
    reference: Path  # published accuracies (results/reference/vtab1k_petl.csv)


@dataclass
class Section:
    """One table's data: a titled table (`.md`, `.tex`, `.csv`, the page) and/or a figure."""

    title: str  # one line; `backticks` mark code
    table: pd.DataFrame | None = None  # what `.md`, `.tex` and the page show (index included)
    note: str = ""  # a paragraph under the table
    csv: pd.DataFrame | None = None  # `.csv` at full precision, as is; default: the table
    tex: bool = True  # whether the table also goes to `.tex`
    extra_csv: dict[str, pd.DataFrame] = field(default_factory=dict)  # other `<name>.csv` files
    figure: object | None = None  # a matplotlib Figure: `<stem>.png`


@dataclass(frozen=True)
class Table:
    """One entry of `bench.tables.catalog.TABLES`."""

    stem: str  # its files are `<stem>.*`; its section on the page is `#<stem>`
    build: Callable[[Runs], Section | None]  # None: nothing to show for these runs
    needs_methods: bool = True  # skipped where no run is a method run (a curve-only suite)
