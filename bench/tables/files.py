"""A section's files in results/tables/<suite>/: `<stem>.md` (titled, numbers rounded for
reading), `.tex` (the same), `.csv` (full precision) and `.png`."""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd

from bench.tables.formatting import readable
from bench.tables.spec import Section

DPI = 130


def shown(table: pd.DataFrame) -> pd.DataFrame:
    """The table as people read it: index as columns, numbers rounded (`readable`)."""
    return table.reset_index().map(readable)


def markdown(section: Section) -> str:
    text = shown(section.table).to_markdown(index=False, disable_numparse=True)
    note = f"\n{section.note}\n" if section.note else ""
    return f"### {section.title}\n\n{text}\n{note}"


def write_section(section: Section, stem: Path) -> list[Path]:
    """Every file of the section, as `stem` + suffix (or `<name>.csv` beside it)."""
    written = []
    if section.table is not None:
        written.append(stem.with_suffix(".md"))
        written[-1].write_text(markdown(section))
    csv = section.csv
    if csv is None and section.table is not None:
        csv = section.table.reset_index()
    if csv is not None:
        written.append(stem.with_suffix(".csv"))
        csv.to_csv(written[-1], index=False)
    if section.table is not None and section.tex:
        written.append(stem.with_suffix(".tex"))
        latex = shown(section.table).to_latex(index=False, caption=section.title, escape=True)
        written[-1].write_text(latex)
    for name, frame in section.extra_csv.items():
        written.append(stem.with_name(f"{name}.csv"))
        frame.to_csv(written[-1], index=False)
    if section.figure is not None:
        written.append(stem.with_suffix(".png"))
        save_figure(section.figure, written[-1])
    return written


def save_figure(fig, path: Path) -> None:
    import matplotlib.pyplot as plt

    fig.tight_layout()
    fig.savefig(path, dpi=DPI)
    plt.close(fig)


def pyplot():
    """matplotlib.pyplot on the Agg backend (no display)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def panels(count: int, columns: int, size: tuple[float, float]):
    """(figure, axes) of a grid with a panel for each of `count` items, at most `columns` wide,
    each panel `size` inches; the unused panels are blanked."""
    cols = min(columns, count)
    rows = math.ceil(count / cols)
    fig, axes = pyplot().subplots(rows, cols, figsize=(size[0] * cols, size[1] * rows),
                                  squeeze=False)  # fmt: skip
    for ax in list(axes.flat)[count:]:
        ax.axis("off")
    return fig, axes
