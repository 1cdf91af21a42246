"""Tracking store → pandas → the paper's tables and plots, never edited by hand.

`write_tables(suite)` writes to results/tables/<suite>/:
- accuracy.{md,csv,tex}: top-1 (%) per task in VTAB layout (Natural | Specialized | Structured),
  each group's mean, the mean of the group means and the plain mean over tasks (labelled apart),
  mean ± sample std over seeds; published reference rows (results/reference/vtab1k_petl.csv,
  with their source) beside ours for the tasks both have;
- accuracy_best_of_evals.{md,csv,tex}: the same on the best of the periodic test evaluations
  (what most papers report), a note where runs have none (`train.eval_every=0`);
- efficiency.{md,csv,tex}: per method, means over tasks and seeds of accuracy, its change
  against `none` and against the `retrained` control (paired by task and seed), throughput,
  speedup, MACs, parameters, stored per-task bytes and epochs trained after the transfer (a
  method whose count differs from the control's is flagged);
- sls_k.{md,csv,tex}: SLS's k per task and seed;
- accuracy_vs_throughput.png (every method, error bars over seeds, Pareto front marked),
  accuracy_vs_stored_bytes.png (per task) and sls_scores.png (score curves, T and k);
- the depth curve (`bench.depth_curve`): depth_curve.{csv,png} and sls_regret.{csv,md};
- index.html (`bench.report`): all of the above on one self-contained page, images beside it;
and logs them as artifacts of a `tables` run in the suite's experiment.
Only FINISHED runs count; of repeated runs of a (task, PETL, method, budget, seed, evaluation
split, data source) the newest. Data sources are never mixed: where a suite holds runs from more
than one (`data.source`/`data.format`, e.g. folder/jpeg and tfds/tensor), every row, pairing and
curve is per source and labelled with it. The method tables hold runs evaluated on test;
`drop_last` at an explicit `keep:k` is a point of the depth curve and appears there, not as a
method.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd

from bench.errors import UserError
from bench.paths import PROJECT_ROOT, results_dir
from bench.tasks import GROUPS, VTAB_TASKS

REFERENCE_CSV = PROJECT_ROOT / "results" / "reference" / "vtab1k_petl.csv"
RUN_KEYS = ["task", "petl", "method", "budget", "seed", "split", "source"]
ROW_KEYS = ["petl", "method"]
PAIR_KEYS = ["task", "petl", "seed"]  # runs on the same transfer
CONTROLS = ("none", "retrained")  # the references every method's accuracy is compared with
EPOCHS = "train/epochs_after_transfer"
GROUP_NAMES = {"natural": "Natural", "specialized": "Specialized", "structured": "Structured"}
EFFICIENCY_METRICS = {
    "test/acc": ("acc (%)", 100.0),
    "throughput/bs1": ("img/s bs1", 1.0),
    "throughput/bs64": ("img/s bs64", 1.0),
    "speedup/bs1": ("speedup bs1", 1.0),
    "speedup/bs64": ("speedup bs64", 1.0),
    "macs": ("GMACs", 1e-9),
    "params/total": ("params (M)", 1e-6),
    "params/trainable": ("trainable (K)", 1e-3),
    "params/stored": ("stored params (K)", 1e-3),
    "bytes/stored": ("stored (KB)", 1e-3),
    "blocks/kept": ("blocks kept", 1.0),
    EPOCHS: ("epochs after transfer", 1.0),
}


# ---------------------------------------------------------------------------------------------
# runs


def load_runs(suite: str) -> pd.DataFrame:
    """The suite's finished runs as `mlflow.search_runs` gives them (params are strings)."""
    import mlflow

    from bench.tracking import tracking_uri

    mlflow.set_tracking_uri(tracking_uri())
    if mlflow.get_experiment_by_name(suite) is None:
        raise UserError(
            f"no suite {suite!r} in {tracking_uri()}; run `make bench` or a sweep first"
        )
    return mlflow.search_runs(
        experiment_names=[suite], filter_string="attributes.status = 'FINISHED'",
        output_format="pandas", max_results=100_000,
    )  # fmt: skip


def tidy_runs(raw: pd.DataFrame) -> pd.DataFrame:
    """One row per run: RUN_KEYS + metric columns (without the `metrics.` prefix); newest run
    of each (task, PETL, method, budget, seed, split, source); runs that are not benchmark runs
    dropped."""
    if raw.empty or "tags.pruner" not in raw:
        return pd.DataFrame(columns=RUN_KEYS)
    raw = raw[raw["tags.pruner"].notna()]
    if "status" in raw:
        raw = raw[raw["status"] == "FINISHED"]
    runs = pd.DataFrame(
        {
            "task": raw["tags.task"],
            "petl": raw["tags.petl"],
            "method": [
                _method_label(m, b)
                for m, b in zip(raw["tags.pruner"], raw["params.budget"], strict=True)
            ],
            "budget": raw["params.budget"],
            "seed": raw["params.seed"].astype(int),
            "split": _param(raw, "data.eval_split", "test"),
            "source": _source(raw),
            "start_time": raw["start_time"],
        }
    )
    metrics = raw.filter(like="metrics.").rename(columns=lambda c: c.removeprefix("metrics."))
    runs = pd.concat([runs, metrics], axis=1).sort_values("start_time", ascending=False)
    return runs.drop_duplicates(RUN_KEYS).drop(columns="start_time").reset_index(drop=True)


def _param(raw: pd.DataFrame, name: str, default: str) -> pd.Series:
    """A param column, with `default` for runs logged before it existed."""
    column = f"params.{name}"
    return raw[column].fillna(default) if column in raw else pd.Series(default, index=raw.index)


def _source(raw: pd.DataFrame) -> pd.Series:
    """`<data.source>/<data.format>` of each run (e.g. folder/jpeg, tfds/tensor); "" if unlogged."""
    return (_param(raw, "data.source", "") + "/" + _param(raw, "data.format", "")).str.strip("/")


def label_sources(runs: pd.DataFrame) -> pd.DataFrame:
    """Where the runs come from more than one data source, the source joins the PETL label
    (`convpass (tfds/tensor)`), so every table, pairing and curve keeps the sources apart."""
    if runs.empty or runs["source"].nunique() <= 1:
        return runs
    source = runs["source"].replace("", "source not logged")
    return runs.assign(petl=runs["petl"] + " (" + source + ")")


def _method_label(method: str, budget: str) -> str:
    """Methods at their default budget by name; at an explicit budget with it."""
    default = ("match-sls", "sls-mean", "auto", "none")
    return method if budget in default else f"{method} @ {budget}"


def is_curve_point(runs: pd.DataFrame) -> pd.Series:
    """`drop_last` at an explicit keep:k: a point of the depth curve, not a method."""
    return runs["method"].str.startswith("drop_last @ keep:")


def method_runs(runs: pd.DataFrame) -> pd.DataFrame:
    """What the method tables show: runs evaluated on test, depth-curve points left out."""
    return runs[(runs["split"] == "test") & ~is_curve_point(runs)].reset_index(drop=True)


def task_order(tasks) -> list[str]:
    """VTAB order (Natural, Specialized, Structured), then any other task (e.g. digits)."""
    vtab = [t.name for t in VTAB_TASKS if t.name in set(tasks)]
    return vtab + sorted(set(tasks) - set(vtab))


# ---------------------------------------------------------------------------------------------
# accuracy


def accuracy_by_seed_mean(
    runs: pd.DataFrame, metric: str = "test/acc"
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Per (PETL, method) × task: mean and sample std of test accuracy (%) over seeds, and n."""
    acc = runs.assign(acc=runs[metric] * 100.0)
    grouped = acc.groupby([*ROW_KEYS, "task"])["acc"]
    columns = task_order(runs["task"].unique())

    def wide(series: pd.Series) -> pd.DataFrame:
        return _sorted_rows(series.unstack("task").reindex(columns=columns))

    return wide(grouped.mean()), wide(grouped.std(ddof=1)), wide(grouped.count())


def summary_columns(means: pd.DataFrame) -> pd.DataFrame:
    """Each VTAB group's mean over its tasks present, the mean of those group means, and the
    plain mean over all tasks; labels say how many tasks/groups each covers."""
    out = pd.DataFrame(index=means.index)
    group_means = []
    for group in GROUPS:
        members = [t.name for t in VTAB_TASKS if t.group == group]
        present = [t for t in members if t in means.columns]
        if not present:
            continue
        label = GROUP_NAMES[group] + (
            "" if len(present) == len(members) else f" ({len(present)}/{len(members)})"
        )
        out[label] = means[present].mean(axis=1, skipna=False)
        group_means.append(label)
    if group_means:
        label = "Mean of group means" + (
            "" if len(group_means) == 3 else f" ({len(group_means)}/3)"
        )
        out[label] = out[group_means].mean(axis=1, skipna=False)
    n = means.shape[1]
    out[f"Mean ({n} task{'s' if n != 1 else ''})"] = means.mean(axis=1, skipna=False)
    return out


def reference_rows(columns: list[str], path: Path = REFERENCE_CSV) -> pd.DataFrame:
    """Published accuracies (%) for the tasks in `columns`, indexed like our rows."""
    if not path.exists():
        return pd.DataFrame()
    ref = pd.read_csv(path)
    shared = [c for c in columns if c in ref.columns]
    if not shared:
        return pd.DataFrame()
    index = pd.MultiIndex.from_arrays([["published"] * len(ref), ref["method"]], names=ROW_KEYS)
    table = pd.DataFrame(ref[shared].to_numpy(float), index=index, columns=shared)
    return table.reindex(columns=columns).assign(source=ref["source"].to_numpy())


def accuracy_table(
    runs: pd.DataFrame, reference: Path = REFERENCE_CSV, metric: str = "test/acc"
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(formatted table, numeric table): ours (mean ± std over seeds) then published rows."""
    means, stds, counts = accuracy_by_seed_mean(runs, metric)
    ours = pd.concat([means, summary_columns(means)], axis=1)
    ref = reference_rows(list(means.columns), reference)
    sources = ref.pop("source") if not ref.empty else None
    if not ref.empty:
        ref = pd.concat([ref, summary_columns(ref)], axis=1)
    numeric = pd.concat([ours, ref])
    text = ours.map(_pct).astype(object)
    for task in means.columns:
        text[task] = [
            _pm(m, s, n) for m, s, n in zip(means[task], stds[task], counts[task], strict=True)
        ]
    seeds = counts.max(axis=1).fillna(0).astype(int).astype(str)
    text.insert(0, "seeds", seeds)
    if not ref.empty:
        ref_text = ref.map(_pct).astype(object)
        ref_text.insert(0, "seeds", "")
        text = pd.concat([text.assign(source="this suite"), ref_text.assign(source=sources)])
    numeric_out = numeric.copy()
    for task in means.columns:
        numeric_out[f"{task} std"] = stds[task].reindex(numeric.index)
    numeric_out["seeds"] = counts.max(axis=1).reindex(numeric.index)
    return text, numeric_out


BEST = "test/acc_best_of_evals"
LAST_EPOCH_ONLY = "best-of-evals missing: evaluated at the last epoch only (train.eval_every=0)"


def best_of_evals_table(runs: pd.DataFrame, reference: Path = REFERENCE_CSV) -> pd.DataFrame:
    """The accuracy table on the best of the periodic test evaluations, the number most papers
    (and so most published rows) report; it selects on the test set. Runs trained with
    `train.eval_every=0` have none: their cells stay empty and the row's note counts them."""
    runs = runs.assign(**{BEST: runs[BEST] if BEST in runs else np.nan})
    text, _ = accuracy_table(runs, reference, BEST)
    missing = runs[BEST].isna().groupby([runs[k] for k in ROW_KEYS]).sum()
    total = runs.groupby(ROW_KEYS).size()
    notes = {row: f"{LAST_EPOCH_ONLY}: {int(n)} of {total[row]} runs" for row, n in missing.items()
             if n}  # fmt: skip
    text["note"] = [notes.get(row, "") for row in text.index]
    return text


def _pct(value: float) -> str:
    return (
        "" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.1f}"
    )


def _pm(mean: float, std: float, n: float) -> str:
    if math.isnan(mean):
        return ""
    return f"{mean:.1f} ± {std:.1f}" if n > 1 else f"{mean:.1f}"


# ---------------------------------------------------------------------------------------------
# efficiency and SLS


def efficiency_table(runs: pd.DataFrame) -> pd.DataFrame:
    """Means over tasks and seeds, per (PETL, method), of what MEASURE.md records, with the
    accuracy change against each control and a note where the epochs trained differ."""
    present = {m: spec for m, spec in EFFICIENCY_METRICS.items() if m in runs.columns}
    scaled = pd.DataFrame({label: runs[m] * scale for m, (label, scale) in present.items()})
    scaled[ROW_KEYS] = runs[ROW_KEYS]
    table = scaled.groupby(ROW_KEYS).mean()
    table.insert(0, "runs", runs.groupby(ROW_KEYS).size())
    at = table.columns.get_loc("acc (%)") + 1 if "acc (%)" in table else table.shape[1]
    for control in (c for c in CONTROLS if c in set(runs["method"])):
        table.insert(at, f"Δ vs {control} (pts)", accuracy_delta(runs, control))
        at += 1
    if EPOCHS in runs.columns:
        table["note"] = epoch_notes(runs).reindex(table.index).fillna("")
    return _sorted_rows(table)


def accuracy_delta(runs: pd.DataFrame, control: str) -> pd.Series:
    """Per (PETL, method): mean over tasks and seeds of test accuracy minus the control's on the
    same transfer (task, PETL, seed), in points; pairs without a control run are left out."""
    reference = runs[runs["method"] == control].set_index(PAIR_KEYS)["test/acc"]
    paired = runs.join(reference.rename("reference"), on=PAIR_KEYS)
    delta = (paired["test/acc"] - paired["reference"]) * 100.0
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


def sls_k_table(runs: pd.DataFrame) -> pd.DataFrame:
    """SLS's k per task (rows, VTAB order) and seed (columns), per PETL method."""
    sls = runs[(runs["method"] == "sls")]
    if sls.empty or "sls/k" not in sls:
        return pd.DataFrame()
    table = sls.pivot_table(index=["petl", "task"], columns="seed", values="sls/k", aggfunc="first")
    table.columns = [f"k (seed {s})" for s in table.columns]
    if "sls/margin" in sls and sls["sls/margin"].notna().any():  # how near a call each k was
        margin = sls.pivot_table(index=["petl", "task"], columns="seed", values="sls/margin")
        table = table.join(margin.rename(columns=lambda s: f"margin to T (seed {s})"))
    order = {t: i for i, t in enumerate(task_order(sls["task"].unique()))}
    table = table.reset_index().assign(order=lambda t: t["task"].map(order))
    return table.sort_values(["petl", "order"]).drop(columns="order").set_index(["petl", "task"])


# ---------------------------------------------------------------------------------------------
# plots


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _over_seeds(runs: pd.DataFrame, keys: list[str], columns: list[str]) -> pd.DataFrame:
    """Per `keys`: each seed's mean over tasks, then mean and sample std over seeds."""
    per_seed = runs.groupby([*keys, "seed"])[columns].mean()
    stats = per_seed.groupby(level=keys).agg(["mean", "std"])
    return stats.fillna({(c, "std"): 0.0 for c in columns})


def pareto_front(points: pd.DataFrame, x: str, y: str) -> pd.Series:
    """True where no other point is at least as good on both axes and better on one."""
    xs, ys = points[x].to_numpy(float), points[y].to_numpy(float)
    front = [
        not any((xs >= xi) & (ys >= yi) & ((xs > xi) | (ys > yi)))
        for xi, yi in zip(xs, ys, strict=True)
    ]
    return pd.Series(front, index=points.index)


def save_figure(fig, path: Path, unused_panels=()) -> Path:
    """Blank the grid's unused panels, lay out, write at 130 dpi and close the figure."""
    import matplotlib.pyplot as plt

    for ax in unused_panels:
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(path, dpi=130)
    plt.close(fig)
    return path


def plot_accuracy_vs_throughput(runs: pd.DataFrame, path: Path) -> Path | None:
    """Every (PETL, method): accuracy against throughput, means over tasks, error bars over seeds
    (sample std of the per-seed means), the Pareto front marked and joined."""
    plt = _pyplot()
    speed = next((m for m in ("throughput/bs64", "throughput/bs1") if m in runs.columns), None)
    if speed is None or "test/acc" not in runs:
        return None
    stats = _over_seeds(runs, ROW_KEYS, ["test/acc", speed])
    points = pd.DataFrame({
        "x": stats[(speed, "mean")], "xerr": stats[(speed, "std")],
        "y": stats[("test/acc", "mean")] * 100, "yerr": stats[("test/acc", "std")] * 100,
    })  # fmt: skip
    points = points.dropna(subset=["x", "y"])
    if points.empty:
        return None
    points["front"] = pareto_front(points, "x", "y")
    fig, ax = plt.subplots(figsize=(7, 5))
    for (petl, method), row in points.iterrows():
        ax.errorbar(row["x"], row["y"], xerr=row["xerr"], yerr=row["yerr"], fmt="o", ms=6,
                    capsize=3, label=f"{method} ({petl})")  # fmt: skip
        ax.annotate(f"{method} ({petl})", (row["x"], row["y"]), fontsize=8,
                    xytext=(5, 3), textcoords="offset points")  # fmt: skip
    front = points[points["front"]].sort_values("x")
    ax.plot(front["x"], front["y"], color="black", linestyle="--", linewidth=1, zorder=0,
            label="Pareto front")  # fmt: skip
    ax.scatter(front["x"], front["y"], s=160, facecolors="none", edgecolors="black", zorder=3)
    ax.set_xlabel(f"{speed.replace('/', ' ')} (images/s, mean over tasks)")
    ax.set_ylabel("test accuracy (%), mean over tasks")
    ax.set_title("error bars: std over seeds; circled: Pareto front", fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="best")
    return save_figure(fig, path)


def plot_accuracy_vs_stored_bytes(runs: pd.DataFrame, path: Path) -> Path | None:
    """Per task: accuracy against the bytes stored for it (on the shared backbone), every
    (PETL, method), mean over seeds with std error bars; log x axis."""
    plt = _pyplot()
    from matplotlib.ticker import FuncFormatter

    if "bytes/stored" not in runs or "test/acc" not in runs:
        return None
    runs = runs.dropna(subset=["bytes/stored", "test/acc"])
    if runs.empty:
        return None
    stats = _over_seeds(runs, ["task", *ROW_KEYS], ["test/acc", "bytes/stored"])
    tasks = task_order(runs["task"].unique())
    cols = min(4, len(tasks))
    rows = math.ceil(len(tasks) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.6 * cols, 3.0 * rows), squeeze=False)
    labels = [f"{m} ({p})" for p, m in stats.droplevel("task").index.unique()]
    colours = {label: f"C{i % 10}" for i, label in enumerate(dict.fromkeys(labels))}
    for ax, task in zip(axes.flat, tasks, strict=False):
        for (petl, method), row in stats.loc[task].iterrows():
            label = f"{method} ({petl})"
            ax.errorbar(row[("bytes/stored", "mean")] / 1e3, row[("test/acc", "mean")] * 100,
                        yerr=row[("test/acc", "std")] * 100, fmt="o", capsize=3,
                        color=colours[label], label=label)  # fmt: skip
        ax.set_xscale("log")
        plain = FuncFormatter(lambda v, _: f"{v:g}")
        ax.xaxis.set_major_formatter(plain)
        ax.xaxis.set_minor_formatter(plain)
        ax.tick_params(axis="x", which="both", labelsize=7)
        ax.set_title(task, fontsize=9)
        ax.set_xlabel("stored per task (KB, log)", fontsize=8)
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("test accuracy (%)")
    axes[0][0].legend(fontsize=6)
    return save_figure(fig, path, list(axes.flat)[len(tasks) :])


def plot_sls_scores(runs: pd.DataFrame, path: Path) -> Path | None:
    """SLS's per-block score curve of every SLS run, one panel per task, with the threshold T
    (dashed, where the rule has one) and the chosen depth k (dotted)."""
    plt = _pyplot()
    score_columns = sorted(c for c in runs.columns if c.startswith("sls/score/block_"))
    sls = runs[runs["method"] == "sls"]
    if sls.empty or not score_columns:
        return None
    tasks = task_order(sls["task"].unique())
    cols = min(4, len(tasks))
    rows = math.ceil(len(tasks) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.4 * cols, 2.8 * rows), squeeze=False)
    blocks = [int(c.rsplit("_", 1)[1]) for c in score_columns]
    for ax, task in zip(axes.flat, tasks, strict=False):
        for i, (_, run) in enumerate(sls[sls["task"] == task].iterrows()):
            colour = f"C{i % 10}"
            ax.plot(blocks, run[score_columns].to_numpy(float), marker=".", alpha=0.8,
                    color=colour, label=f"{run['petl']} seed {run['seed']}")  # fmt: skip
            threshold = run.get("sls/threshold", np.nan)
            if not math.isnan(threshold):
                ax.axhline(threshold, color=colour, linestyle="--", linewidth=1,
                           label=f"T = {threshold:.3g}")  # fmt: skip
            if not math.isnan(run.get("sls/k", np.nan)):
                ax.axvline(run["sls/k"], color=colour, linestyle=":", linewidth=1.2,
                           label=f"k = {int(run['sls/k'])}")  # fmt: skip
        ax.set_title(task, fontsize=9)
        ax.set_xlabel("block", fontsize=8)
        ax.legend(fontsize=6)
    axes[0][0].set_ylabel("score")
    return save_figure(fig, path, list(axes.flat)[len(tasks) :])


# ---------------------------------------------------------------------------------------------
# writing


def save_table(table: pd.DataFrame, stem: Path, title: str) -> list[Path]:
    """`stem`.md (titled) and .tex with numbers rounded for reading; .csv at full precision."""
    flat = table.reset_index()
    csv = stem.with_suffix(".csv")
    flat.to_csv(csv, index=False)
    md = save_markdown(table, stem.with_suffix(".md"), title)
    shown = flat.map(_readable)
    tex = stem.with_suffix(".tex")
    tex.write_text(shown.to_latex(index=False, caption=title, escape=True))
    return [md, csv, tex]


def save_markdown(table: pd.DataFrame, path: Path, title: str) -> Path:
    shown = table.reset_index().map(_readable)
    path.write_text(f"### {title}\n\n{shown.to_markdown(index=False, disable_numparse=True)}\n")
    return path


def _readable(value):
    """Three significant digits, no exponent for numbers a table shows."""
    if isinstance(value, bool) or not isinstance(value, float | int | np.number):
        return value
    value = float(value)
    if math.isnan(value):
        return ""
    if value.is_integer() and abs(value) < 1e15:
        return str(int(value))
    if abs(value) >= 100:
        return f"{value:.0f}"
    return f"{value:.3g}" if abs(value) >= 0.001 else f"{value:.2e}"


def method_order(methods) -> list[str]:
    """The controls (`none`, `retrained`) and `sls` first, then the baselines by name."""
    first = [m for m in (*CONTROLS, "sls") if m in set(methods)]
    return first + sorted(set(methods) - set(first))


def _sorted_rows(table: pd.DataFrame) -> pd.DataFrame:
    order = {m: i for i, m in enumerate(method_order(table.index.get_level_values("method")))}
    return table.sort_index(key=lambda level: level.map(order) if level.name == "method" else level)


def build_tables(runs: pd.DataFrame, out: Path, reference: Path = REFERENCE_CSV) -> list[Path]:
    """The method tables and plots, the criteria table, and the depth-curve files where the
    suite has a curve."""
    from bench.depth_curve import write_curve_files  # these two import this module
    from bench.tables_criteria import write_criteria_table

    if runs.empty:
        raise UserError("no FINISHED runs to tabulate")
    out.mkdir(parents=True, exist_ok=True)
    runs = label_sources(runs)
    written = write_curve_files(runs, out)
    runs = method_runs(runs)
    if runs.empty:
        return written
    text, numeric = accuracy_table(runs, reference)
    written += save_table(text, out / "accuracy", "Top-1 accuracy (%), mean ± std over seeds")
    numeric.reset_index().to_csv(out / "accuracy_numeric.csv", index=False)
    written.append(out / "accuracy_numeric.csv")
    written += save_table(
        best_of_evals_table(runs, reference), out / "accuracy_best_of_evals",
        "Top-1 accuracy (%), best of the test evaluations every `eval_every` epochs (selects on "
        "test, as most published rows do), mean ± std over seeds",
    )  # fmt: skip
    written += save_table(
        efficiency_table(runs), out / "efficiency", "Efficiency: means over tasks and seeds"
    )
    k = sls_k_table(runs)
    if not k.empty:
        written += save_table(k, out / "sls_k", "SLS's depth k per task")
    written += write_criteria_table(runs, out)
    for plot in (plot_accuracy_vs_throughput, plot_accuracy_vs_stored_bytes, plot_sls_scores):
        path = plot(runs, out / f"{plot.__name__.removeprefix('plot_')}.png")
        if path:
            written.append(path)
    return written


def write_tables(suite: str, out: str | None = None, log: bool = True) -> list[Path]:
    from bench.report import write_index

    folder = Path(out) if out else results_dir() / "tables" / suite
    runs = tidy_runs(load_runs(suite))
    written = build_tables(runs, folder)
    written.append(write_index(folder, written, suite))
    if log:
        log_tables(suite, written, len(runs))
    return written


def log_tables(suite: str, files: list[Path], n_runs: int) -> None:
    """A `tables` run in the suite's experiment holds the generated files as artifacts."""
    from bench.tracking import TrackedRun, environment_tags

    tags = {**environment_tags(), "kind": "tables"}
    with TrackedRun(suite, "tables", {"tables.runs": n_runs}, tags, heartbeat=None) as run:
        for path in files:
            run.log_artifact(path, "tables")
