"""Random-init against fractal-pretrained demo backbone on the offline tasks (issue 26's table).

    python benchmarks/demo_backbones.py run [--seeds 0,1,2] [--curve-seeds 0] [--keep 2,4,...,12]
                                            [--presets demo-random,demo]
    python benchmarks/demo_backbones.py table [--seeds 0,1,2]

`run` is the product's own commands, one after another, each resumable (a finished cell is
skipped): per preset (PRESET=demo-random, PRESET=demo; one process per preset can run them side
by side), `make sweep` (none, retrained, sls) over the offline tasks (digits and the
generated gen_*), then `make curve` (drop_last at each k in --keep) on --curve-seeds. Throughput is timed briefly (accuracy is what is compared).
`table` prints the README's table from the store: per task and backbone, each method's test
accuracy (mean over seeds and its bootstrap interval, `bench.tables.intervals`), SLS's k per seed,
the depth curve's best k (per seed, ties to the smaller k), and the decision rule of issue 26.
"""

from __future__ import annotations

import argparse
import subprocess
import sys

import numpy as np
import pandas as pd

PRESETS = {"demo-random": "random init", "demo": "fractal-pretrained"}
TASKS = "digits,gen_shape_loc,gen_shape_ori,gen_count"
METHODS = ["none", "retrained", "sls"]
QUICK_TIMER = ["measure.batch_sizes=64", "measure.warmup_iters=5", "measure.timed_iters=10",
               "measure.rounds=1", "measure.ratio_target=none"]  # fmt: skip
MIN_GAIN = 3.0  # points of `none` on digits the pretrained backbone must add (issue 26)


def bench(*argv: str) -> None:
    settings = [arg for setting in QUICK_TIMER for arg in ("--set", setting)]
    command = [sys.executable, "-m", "bench", *argv, *settings, "--no-progress"]
    print("$", " ".join(command), flush=True)
    subprocess.run(command, check=True)


def run(args: argparse.Namespace) -> None:
    for preset in args.presets.split(","):
        bench("sweep", "--preset", preset, "--tasks", TASKS, "--seeds", args.seeds)
        bench("curve", "--preset", preset, "--tasks", TASKS, "--seeds", args.curve_seeds,
              "--keep", args.keep)  # fmt: skip


def suite_runs(suite: str) -> pd.DataFrame:
    from bench import record as R
    from bench.tables.runs import load_runs, tidy_runs
    from bench.tracking import tracking_uri

    raw = load_runs(tracking_uri(), suite)
    if raw is None:
        sys.exit(f"no runs of suite {suite!r}: run `python {sys.argv[0]} run` first")
    runs = tidy_runs(raw)
    return runs[runs["split"] == "test"].assign(acc=lambda r: r[R.ACC] * 100.0)


def interval(values: np.ndarray) -> tuple[float, float] | None:
    from bench.tables.intervals import two_level_interval

    return two_level_interval([values])


def cell(values: np.ndarray) -> str:
    if values.size == 0:
        return "–"
    bounds = interval(values)
    shown = f" [{bounds[0]:.1f}, {bounds[1]:.1f}]" if bounds else ""
    return f"{values.mean():.1f}{shown}"


def best_curve_k(points: pd.DataFrame) -> list[int]:
    """Per seed with a whole curve (as many depths as the fullest seed's), the most accurate
    depth (ties to the smaller k): a curve cut short names no best k."""
    depths = points.groupby("seed")["k"].nunique()
    points = points[points["seed"].isin(depths[depths == depths.max()].index)]
    best = points.sort_values(["seed", "acc", "k"], ascending=[True, False, True])
    return best.groupby("seed")["k"].first().astype(int).tolist()


def rows(suite: str, label: str, seeds: list[int]) -> list[dict]:
    from bench import record as R
    from bench.tables.runs import is_curve_point

    runs = suite_runs(suite)
    runs = runs[runs["seed"].isin(seeds)]
    curve = runs[is_curve_point(runs)]
    curve = curve.assign(k=curve["budget"].str.removeprefix("keep:").astype(int))
    table = []
    for task in TASKS.split(","):
        mine = runs[runs["task"] == task]
        row = {"task": task, "backbone": label}
        for method in METHODS:
            row[method] = mine.loc[mine["method"] == method, "acc"].to_numpy(float)
        sls = mine[mine["method"] == "sls"].sort_values("seed")
        row["sls k"] = sls[R.BLOCKS_KEPT].astype(int).tolist() if R.BLOCKS_KEPT in sls else []
        row["best k"] = best_curve_k(curve[curve["task"] == task])
        table.append(row)
    return table


def markdown(table: list[dict]) -> str:
    head = ["task", "backbone", *METHODS, "SLS k (per seed)", "curve's best k (per seed)"]
    lines = ["| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
    for row in table:
        cells = [row["task"], row["backbone"], *(cell(row[m]) for m in METHODS),
                 ", ".join(map(str, row["sls k"])) or "–",
                 ", ".join(map(str, row["best k"])) or "–"]  # fmt: skip
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def decision(table: list[dict]) -> str:
    """Issue 26's rule: adopt the pretrained backbone as the demo's default only if `none` on
    digits gains at least MIN_GAIN points with intervals apart, and the depth SLS picks or the
    curve's best depth differs between tasks (median over seeds)."""
    digits = {row["backbone"]: row["none"] for row in table if row["task"] == "digits"}
    random, pretrained = digits[PRESETS["demo-random"]], digits[PRESETS["demo"]]
    gain = pretrained.mean() - random.mean()
    above, below = interval(pretrained), interval(random)
    apart = bool(above and below and above[0] > below[1])
    mine = [row for row in table if row["backbone"] == PRESETS["demo"]]
    sls_k = {row["task"]: median(row["sls k"]) for row in mine}
    best_k = {row["task"]: median(row["best k"]) for row in mine}
    differ = any(len({k for k in ks.values() if k is not None}) > 1 for ks in (sls_k, best_k))
    adopt = gain >= MIN_GAIN and apart and differ
    verdict = "adopt the pretrained backbone" if adopt else "keep random init"
    return (
        f"digits, none: pretrained − random = {gain:+.1f} points (needs ≥ {MIN_GAIN}), "
        f"intervals apart: {apart}\n"
        f"pretrained, median SLS k per task: {sls_k}; median best k: {best_k}; "
        f"differ across tasks: {differ}\n"
        f"decision: {verdict} as the demo preset's default"
    )


def median(values: list[int]) -> float | None:
    return float(np.median(values)) if values else None


def table(args: argparse.Namespace) -> None:
    seeds = [int(s) for s in args.seeds.split(",")]
    rows_ = [row for suite, label in PRESETS.items() for row in rows(suite, label, seeds)]
    rows_.sort(key=lambda row: TASKS.split(",").index(row["task"]))
    print(markdown(rows_))
    print()
    print(decision(rows_))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    run_parser = sub.add_parser("run")
    run_parser.add_argument("--seeds", default="0,1,2")
    run_parser.add_argument("--curve-seeds", default="0")
    run_parser.add_argument("--keep", default="2,4,6,8,10,12")
    run_parser.add_argument("--presets", default=",".join(PRESETS))
    table_parser = sub.add_parser("table")
    table_parser.add_argument("--seeds", default="0,1,2")
    args = parser.parse_args()
    {"run": run, "table": table}[args.command](args)


if __name__ == "__main__":
    main()
