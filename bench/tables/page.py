"""index.html: a suite's tables and plots on one self-contained page, rendered from the tables'
data (the same frames the `.md` files show). Images are linked by relative path, so the folder
can be copied, zipped or opened with a browser straight from disk (no server, nothing fetched)."""

from __future__ import annotations

import html
import re
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd

from bench.tables.files import shown
from bench.tables.spec import Section

NUMBER = re.compile(r"^[-+−]?\d[\d.,e+\-]*(\s*±\s*[\d.]+)?(\s*\(\d+\))?$")
LINKED = (".md", ".csv", ".tex", ".png")
STYLE = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 2em auto;
       max-width: 1300px; padding: 0 1em; color: #222; }
h1 { font-size: 1.5em; } h2 { font-size: 1.2em; margin-top: 2em; border-bottom: 1px solid #ddd; }
table { border-collapse: collapse; font-size: 0.85em; margin: 0.5em 0; display: block;
        overflow-x: auto; }
th, td { border: 1px solid #ccc; padding: 3px 7px; white-space: nowrap; }
th { background: #f3f3f3; } tr:nth-child(even) td { background: #fafafa; }
td.r { text-align: right; }
img { max-width: 100%; border: 1px solid #eee; }
nav a, .files a { margin-right: 1em; } .files { font-size: 0.85em; color: #666; }
p.meta { color: #666; font-size: 0.9em; }
"""


def inline(text: str) -> str:
    """Escaped text; `backticks` become <code>."""
    return re.sub(r"`([^`]+)`", r"<code>\1</code>", html.escape(text))


def table_html(table: pd.DataFrame, anchor: str) -> str:
    """The table as its `.md` shows it, escaped; number cells right-aligned."""
    cells = shown(table)
    align = cells.map(lambda v: "r" if NUMBER.match(str(v)) else "")
    styler = cells.style.hide(axis="index").format(escape="html")
    styler = styler.format_index(escape="html", axis=1).set_td_classes(align)
    return styler.to_html(table_uuid=anchor)


def section_html(stem: str, section: Section, files: list[Path]) -> str:
    parts = [f'<section id="{html.escape(stem)}"><h2>{inline(section.title)}</h2>']
    if section.table is not None:
        parts.append(table_html(section.table, stem))
    if section.note:
        parts.append(f"<p>{inline(section.note)}</p>")
    for png in (p for p in files if p.suffix == ".png"):
        alt = html.escape(section.title.replace("`", ""))
        parts.append(f'<p><img src="{html.escape(png.name)}" alt="{alt}"></p>')
    links = " ".join(f'<a href="{html.escape(p.name)}">{html.escape(p.name)}</a>'
                     for p in files if p.suffix in LINKED)  # fmt: skip
    parts.append(f'<p class="files">files: {links}</p></section>')
    return "\n".join(parts)


def write_index(out: Path, suite: str, sections: list[tuple[str, Section, list[Path]]]) -> Path:
    """index.html in `out`: one section per (stem, section, its files), in the given order."""
    nav = " ".join(f'<a href="#{html.escape(stem)}">{html.escape(stem)}</a>'
                   for stem, _, _ in sections)  # fmt: skip
    body = "\n".join(section_html(*part) for part in sections)
    stamp = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    page = (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">\n'
        f"<title>sls-bench: {html.escape(suite)}</title>\n<style>{STYLE}</style></head>\n<body>\n"
        f"<h1>sls-bench suite <code>{html.escape(suite)}</code></h1>\n"
        f'<p class="meta">Written by <code>make tables</code> at {stamp} from the FINISHED runs '
        "of the tracking store; the files beside this page hold the same tables as CSV and "
        "LaTeX.</p>\n"
        f"<nav>{nav}</nav>\n{body}\n</body></html>\n"
    )
    index = out / "index.html"
    index.write_text(page, encoding="utf-8")
    return index
