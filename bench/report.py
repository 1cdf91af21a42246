"""One self-contained page of a suite's tables and plots: results/tables/<suite>/index.html.

Written by `make tables` from the Markdown tables and PNG plots it has just written into the same
folder; images are linked by relative path, so the folder can be copied, zipped or opened with a
browser straight from disk (no server, nothing fetched from the network).
"""

from __future__ import annotations

import html
import re
from datetime import datetime, timezone
from pathlib import Path

# Sections in reading order; files not named here follow, tables before plots.
ORDER = (
    "accuracy",
    "accuracy_best_of_evals",
    "efficiency",
    "accuracy_vs_throughput",
    "accuracy_vs_stored_bytes",
    "sls_k",
    "sls_scores",
    "criteria",
    "depth_curve",
    "sls_regret",
)
CAPTIONS = {
    "accuracy_vs_throughput": "Accuracy against throughput: every method, error bars over seeds, "
    "the Pareto front marked",
    "accuracy_vs_stored_bytes": "Accuracy against stored bytes per task (what each task adds on "
    "the shared backbone)",
    "sls_scores": "SLS's per-block score curves, the threshold T and the chosen depth k",
    "depth_curve": "Accuracy and speedup against depth: drop_last at every k, SLS's k marked",
}
STYLE = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 2em auto;
       max-width: 1300px; padding: 0 1em; color: #222; }
h1 { font-size: 1.5em; } h2 { font-size: 1.2em; margin-top: 2em; border-bottom: 1px solid #ddd; }
h3 { font-size: 1.05em; }
table { border-collapse: collapse; font-size: 0.85em; margin: 0.5em 0; display: block;
        overflow-x: auto; }
th, td { border: 1px solid #ccc; padding: 3px 7px; white-space: nowrap; }
th { background: #f3f3f3; } tr:nth-child(even) td { background: #fafafa; }
td.r, th.r { text-align: right; } td.c, th.c { text-align: center; }
img { max-width: 100%; border: 1px solid #eee; }
nav a, .files a { margin-right: 1em; } .files { font-size: 0.85em; color: #666; }
p.meta { color: #666; font-size: 0.9em; }
"""


def write_index(out: Path, files: list[Path], suite: str) -> Path:
    """index.html in `out` over the Markdown tables and PNGs among `files` (all inside `out`)."""
    stems: dict[str, dict[str, Path]] = {}
    for path in files:
        if path.parent.resolve() == out.resolve() and path.exists():
            stems.setdefault(path.stem, {})[path.suffix.lstrip(".")] = path
    sections = [s for s in ORDER if s in stems] + sorted(
        (s for s in stems if s not in ORDER and ("md" in stems[s] or "png" in stems[s])),
        key=lambda s: ("png" in stems[s], s),
    )
    body, nav = [], []
    for stem in sections:
        kinds = stems[stem]
        if "md" not in kinds and "png" not in kinds:
            continue
        anchor = html.escape(stem)
        title = CAPTIONS.get(stem) or stem.replace("_", " ")
        part = []
        if "md" in kinds:
            rendered = markdown_to_html(kinds["md"].read_text())
            heading = re.search(r"<h3>(.*?)</h3>", rendered)
            if heading:
                title, rendered = heading.group(1), rendered.replace(heading.group(0), "", 1)
                title = html.unescape(title)
            part.append(rendered)
        if "png" in kinds:
            name = html.escape(kinds["png"].name)
            part.append(f'<p><img src="{name}" alt="{html.escape(title)}"></p>')
        links = " ".join(
            f'<a href="{html.escape(p.name)}">{html.escape(p.name)}</a>'
            for kind, p in sorted(kinds.items())
            if kind in ("csv", "tex", "md", "png")
        )
        body.append(
            f'<section id="{anchor}"><h2>{html.escape(title)}</h2>\n'
            + "\n".join(part)
            + f'\n<p class="files">files: {links}</p></section>'
        )
        nav.append(f'<a href="#{anchor}">{html.escape(stem)}</a>')
    stamp = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    page = (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">\n'
        f"<title>sls-bench: {html.escape(suite)}</title>\n<style>{STYLE}</style></head>\n<body>\n"
        f"<h1>sls-bench suite <code>{html.escape(suite)}</code></h1>\n"
        f'<p class="meta">Written by <code>make tables</code> at {stamp} from the FINISHED runs '
        "of the tracking store; the files beside this page hold the same tables as CSV and "
        "LaTeX.</p>\n"
        f"<nav>{' '.join(nav)}</nav>\n" + "\n".join(body) + "\n</body></html>\n"
    )
    index = out / "index.html"
    index.write_text(page, encoding="utf-8")
    return index


def markdown_to_html(text: str) -> str:
    """The Markdown the table writers produce: headings, pipe tables, paragraphs."""
    out, paragraph, lines = [], [], text.splitlines()
    i = 0

    def flush() -> None:
        if paragraph:
            out.append(f"<p>{_inline(' '.join(paragraph))}</p>")
            paragraph.clear()

    while i < len(lines):
        line = lines[i].strip()
        heading = re.match(r"^(#{1,6})\s+(.*)$", line)
        if heading:
            flush()
            level = len(heading.group(1))
            out.append(f"<h{level}>{_inline(heading.group(2))}</h{level}>")
        elif line.startswith("|") and i + 1 < len(lines) and _is_rule(lines[i + 1]):
            flush()
            align = [_align(cell) for cell in _cells(lines[i + 1])]
            rows = [_cells(line)]
            i += 2
            while i < len(lines) and lines[i].strip().startswith("|"):
                rows.append(_cells(lines[i]))
                i += 1
            out.append(_table(rows, align))
            continue
        elif not line:
            flush()
        else:
            paragraph.append(line)
        i += 1
    flush()
    return "\n".join(out)


def _cells(line: str) -> list[str]:
    return [cell.strip() for cell in line.strip().strip("|").split("|")]


def _is_rule(line: str) -> bool:
    return bool(re.match(r"^\s*\|?\s*:?-+:?\s*(\|\s*:?-+:?\s*)*\|?\s*$", line))


def _align(cell: str) -> str:
    if cell.startswith(":") and cell.endswith(":"):
        return "c"
    return "r" if cell.endswith(":") else ""


def _table(rows: list[list[str]], align: list[str]) -> str:
    def row(cells: list[str], tag: str) -> str:
        out = []
        for j, cell in enumerate(cells):
            cls = align[j] if j < len(align) else ""
            if not cls and tag == "td" and _numeric(cell):
                cls = "r"
            attr = f' class="{cls}"' if cls else ""
            out.append(f"<{tag}{attr}>{_inline(cell)}</{tag}>")
        return "<tr>" + "".join(out) + "</tr>"

    head, *body = rows
    return (
        "<table><thead>" + row(head, "th") + "</thead><tbody>"
        + "".join(row(r, "td") for r in body) + "</tbody></table>"
    )  # fmt: skip


def _numeric(cell: str) -> bool:
    return bool(re.match(r"^[-+−]?\d[\d.,e+\-]*(\s*±\s*[\d.]+)?(\s*\(\d+\))?$", cell))


def _inline(text: str) -> str:
    """Escaped text with `code` and **bold**."""
    escaped = html.escape(text)
    escaped = re.sub(r"`([^`]+)`", r"<code>\1</code>", escaped)
    return re.sub(r"\*\*([^*]+)\*\*", r"<strong>\1</strong>", escaped)
