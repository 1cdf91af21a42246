"""Tables from a fixed set of runs, checked against golden files; and from a real store."""

import os
import statistics
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from bench.tables.runs import tidy_runs
from bench.tables.write import build_tables, write_tables
from bench.tracking import TrackedRun, client

GOLDEN = Path(__file__).parent / "golden"
REFERENCE = Path(__file__).parent.parent / "results" / "reference" / "vtab1k_petl.csv"


TASKS = ["cifar", "eurosat", "clevr_count"]  # one per VTAB group
SEEDS = (0, 1)
# method: (base accuracy, budget, epochs after the transfer); every method's numbers differ
METHODS = {
    "none": (0.80, "none", 0.0),
    "retrained": (0.84, "none", 30.0),
    "sls": (0.78, "auto", 30.0),
    "fixed_depth": (0.76, "sls-mean", 30.0),
    "block_benefit": (0.70, "match-sls", 40.0),
}
BASE_ACC = {m: acc for m, (acc, _, _) in METHODS.items()}
EPOCHS = "train/epochs_after_transfer"


def _sls_k(t: int, seed: int) -> int:
    return 8 + t - seed


def _metrics(method: str, t: int, seed: int) -> dict[str, float]:
    """One run's numbers: the layer-wise methods scale with the blocks they keep (sls its k,
    fixed_depth 9 everywhere); block_benefit keeps every block at 55 % of the width."""
    blocks = {"sls": _sls_k(t, seed), "fixed_depth": 9}.get(method, 12)
    width = 0.55 if method == "block_benefit" else 1.0
    speedup = 1.3 if method == "block_benefit" else 12 / blocks
    return {
        "test/acc": METHODS[method][0] + 0.01 * t + 0.02 * seed,
        EPOCHS: METHODS[method][2],
        "throughput/bs64": 100.0 * speedup,
        "speedup/bs64": speedup,
        "macs": 17.6e9 * blocks / 12 * width,
        "params/total": 85.8e6 * blocks / 12 * width,
        "bytes/stored": 4000.0 * blocks + (1500.0 if method == "block_benefit" else 0.0),
        "blocks/kept": float(blocks),
        "sls/k": float(_sls_k(t, seed)) if method == "sls" else np.nan,
    }


def _row(task: str, t: int, method: str, seed: int, source=("folder", "jpeg")) -> dict:
    return {
        "status": "FINISHED", "start_time": pd.Timestamp(2026, 1, 1, t, seed),
        "tags.pruner": method, "tags.task": task, "tags.petl": "convpass",
        "params.budget": METHODS[method][1], "params.seed": str(seed),
        "params.data.source": source[0], "params.data.format": source[1],
        **{f"metrics.{k}": v for k, v in _metrics(method, t, seed).items()},
        **{f"metrics.sls/score/block_{b:02d}": (b / 12 if method == "sls" else np.nan)
           for b in range(1, 13)},
    }  # fmt: skip


def _raw_runs(source=("folder", "jpeg")) -> pd.DataFrame:
    """What mlflow.search_runs returns for a small study: 3 tasks × 5 methods × 2 seeds, plus
    runs that must not count: for cifar/none/seed 0, a better older run placed first and a worse
    oldest one (the newest counts: not the first, the best or the oldest); a newer, better
    FAILED run; and the `tables` run."""
    rows = [_row(task, t, method, seed, source)
            for t, task in enumerate(TASKS) for method in METHODS for seed in SEEDS]  # fmt: skip
    best = {**rows[0], "start_time": pd.Timestamp(2025, 6, 1), "metrics.test/acc": 0.99}
    oldest = {**rows[0], "start_time": pd.Timestamp(2025, 1, 1), "metrics.test/acc": 0.1}
    failed = {**rows[1], "status": "FAILED", "start_time": pd.Timestamp(2026, 3, 1),
              "metrics.test/acc": 0.95}  # fmt: skip
    tables_run = {"status": "FINISHED", "start_time": pd.Timestamp(2026, 2, 1), "tags.pruner": None}
    return pd.DataFrame([best, *rows, oldest, failed, tables_run])


def test_tidy_runs_keeps_the_newest_finished_benchmark_run_per_cell():
    runs = tidy_runs(_raw_runs())
    assert len(runs) == len(TASKS) * len(METHODS) * len(SEEDS)
    cell = runs[(runs.task == "cifar") & (runs.seed == 0)].set_index("method")["test/acc"]
    assert cell["none"] == pytest.approx(0.80)  # not 0.99 (best, first) nor 0.1 (oldest)
    assert cell["sls"] == pytest.approx(0.78) and cell["fixed_depth"] == pytest.approx(0.76)
    seed1 = runs[(runs.task == "cifar") & (runs.seed == 1) & (runs.method == "none")]
    assert seed1["test/acc"].tolist() == [pytest.approx(0.82)]  # not the FAILED 0.95


@pytest.mark.parametrize("name", ["accuracy.md", "efficiency.md", "sls_k.md", "accuracy.tex"])
def test_tables_match_the_golden_files(tmp_path, name):
    build_tables(tidy_runs(_raw_runs()), tmp_path, REFERENCE)
    produced = (tmp_path / name).read_text()
    golden = GOLDEN / name
    if os.environ.get("UPDATE_GOLDEN"):
        golden.write_text(produced)
    assert produced == golden.read_text()


def test_group_means_and_the_two_overall_means_are_labelled_apart(tmp_path):
    build_tables(tidy_runs(_raw_runs()), tmp_path, REFERENCE)
    table = pd.read_csv(tmp_path / "accuracy_numeric.csv")
    none = table[(table.petl == "convpass") & (table.method == "none")].iloc[0]
    assert none["cifar"] == pytest.approx(81.0)  # seeds 80 and 82
    assert none["cifar std"] == pytest.approx(np.std([80, 82], ddof=1))
    assert none["Natural (1/7)"] == pytest.approx(81.0)
    assert none["Mean of group means"] == pytest.approx(np.mean([81, 82, 83]))
    assert none["Mean (3 tasks)"] == pytest.approx(np.mean([81, 82, 83]))
    convpass = table[(table.petl == "published") & (table.method == "convpass")].iloc[0]
    assert convpass["cifar"] == pytest.approx(72.29)


def test_tables_from_the_store_are_written_and_logged_to_the_suite(tmp_path):
    suite = "tests-tables"
    for seed, acc in ((0, 0.5), (1, 0.7)):
        params = {"budget": "auto", "seed": seed}
        tags = {"pruner": "sls", "task": "digits", "petl": "convpass"}
        with TrackedRun(suite, f"run{seed}", params, tags) as run:
            run.log_metrics({"test/acc": acc, "sls/k": 6, "throughput/bs1": 10.0})
    written = write_tables(suite, str(tmp_path / "out"))
    assert "| 60.0 ± 14.1 |" in (tmp_path / "out" / "accuracy.md").read_text()
    experiment = client().get_experiment_by_name(suite).experiment_id
    (tables_run,) = client().search_runs([experiment], "tags.kind = 'tables'")
    logged = {a.path for a in client().list_artifacts(tables_run.info.run_id, "tables")}
    assert {f"tables/{p.name}" for p in written} == logged
    assert "tables/index.html" in logged
    again = write_tables(suite, str(tmp_path / "again"), log=False)  # the tables run is no run
    assert (tmp_path / "again" / "accuracy.md").read_text() == (
        tmp_path / "out" / "accuracy.md"
    ).read_text()
    assert len(again) == len(written)


def test_an_unknown_suite_is_a_clear_error(tmp_path):
    from bench.errors import UserError

    with pytest.raises(UserError, match="no suite 'no-such-suite'"):
        write_tables("no-such-suite", str(tmp_path))


def test_efficiency_shows_paired_deltas_against_both_controls_and_flags_other_epochs(tmp_path):
    build_tables(tidy_runs(_raw_runs()), tmp_path, REFERENCE)
    table = pd.read_csv(tmp_path / "efficiency.csv").set_index("method")
    for method, acc in BASE_ACC.items():  # every pair differs by the base accuracies alone
        expected_none = (acc - BASE_ACC["none"]) * 100
        expected_retrained = (acc - BASE_ACC["retrained"]) * 100
        assert table.loc[method, "Δ vs none (pts)"] == pytest.approx(expected_none)
        assert table.loc[method, "Δ vs retrained (pts)"] == pytest.approx(expected_retrained)
    assert table.loc["retrained", "epochs after transfer"] == 30
    assert table.loc["block_benefit", "note"] == (
        "trains 40 epochs after the transfer, retrained 30"
    )
    others = ["none", "retrained", "sls", "fixed_depth"]
    assert table["note"].fillna("").loc[others].tolist() == ["", "", "", ""]
    assert list(table.index[:3]) == ["none", "retrained", "sls"]


def _markdown_rows(path: Path) -> list[dict[str, str]]:
    lines = [line for line in path.read_text().splitlines() if line.startswith("|")]
    header = [cell.strip() for cell in lines[0].strip("|").split("|")]
    return [
        dict(zip(header, (cell.strip() for cell in line.strip("|").split("|")), strict=True))
        for line in lines[2:]
    ]


def _shown_as(text: str, value: float) -> bool:
    """`text` is `value` as the tables show it: 3 significant digits, whole from 100 up."""
    return abs(float(text) - value) <= max(0.5 if abs(value) >= 100 else 0.0, 5e-3 * abs(value))


def _expected_efficiency() -> dict[str, dict[str, float]]:
    """Per method, from the fixture's definition in plain Python: means over tasks and seeds, and
    the accuracy change against each control on the same (task, seed), in points."""
    cells = [(t, seed) for t in range(len(TASKS)) for seed in SEEDS]
    expected = {}
    for method in METHODS:
        runs = [_metrics(method, t, seed) for t, seed in cells]

        def mean(name, scale=1.0, runs=runs):
            return statistics.mean(run[name] * scale for run in runs)

        def delta(control, method=method):
            return statistics.mean(
                (_metrics(method, t, s)["test/acc"] - _metrics(control, t, s)["test/acc"]) * 100
                for t, s in cells
            )

        expected[method] = {
            "runs": len(runs), "acc (%)": mean("test/acc", 100.0),
            "Δ vs none (pts)": delta("none"), "Δ vs retrained (pts)": delta("retrained"),
            "img/s bs64": mean("throughput/bs64"), "speedup bs64": mean("speedup/bs64"),
            "GMACs": mean("macs", 1e-9), "params (M)": mean("params/total", 1e-6),
            "stored (KB)": mean("bytes/stored", 1e-3), "blocks kept": mean("blocks/kept"),
            "epochs after transfer": mean(EPOCHS),
        }  # fmt: skip
    return expected


def test_every_number_of_the_efficiency_table_is_the_fixtures(tmp_path):
    build_tables(tidy_runs(_raw_runs()), tmp_path, REFERENCE)
    expected = _expected_efficiency()
    numeric = pd.read_csv(tmp_path / "efficiency.csv").set_index("method")
    shown = {row["method"]: row for row in _markdown_rows(tmp_path / "efficiency.md")}
    assert list(shown) == ["none", "retrained", "sls", "block_benefit", "fixed_depth"]
    for method, columns in expected.items():
        intervals = {"Δ vs none 95 %", "Δ vs retrained 95 %", "speedup bs64 95 %"}
        assert set(shown[method]) == {"petl", "method", "note", *columns, *intervals}
        assert shown[method]["petl"] == "convpass"
        for column, value in columns.items():
            assert numeric.loc[method, column] == pytest.approx(value, rel=1e-9), (method, column)
            assert _shown_as(shown[method][column], value), (method, column, shown[method][column])
    notes = {m: row["note"] for m, row in shown.items()}
    assert notes == {"none": "", "retrained": "", "sls": "", "fixed_depth": "",
                     "block_benefit": "trains 40 epochs after the transfer, retrained 30"}  # fmt: skip


def test_every_number_of_the_sls_k_table_is_the_fixtures(tmp_path):
    build_tables(tidy_runs(_raw_runs()), tmp_path, REFERENCE)
    rows = _markdown_rows(tmp_path / "sls_k.md")
    assert [row["task"] for row in rows] == TASKS  # VTAB order
    for t, row in enumerate(rows):
        assert row["petl"] == "convpass"
        assert [int(row[f"k (seed {seed})"]) for seed in SEEDS] == [_sls_k(t, s) for s in SEEDS]
    numeric = pd.read_csv(tmp_path / "sls_k.csv").set_index("task")
    for t, task in enumerate(TASKS):
        assert numeric.loc[task, "k (seed 0)"] == _sls_k(t, 0)


def test_two_data_sources_of_one_cell_are_kept_apart_and_labelled(tmp_path):
    """The same study from folder JPEGs and from tfds (5 points lower, logged later): both are
    kept, every table shows each with its source, and accuracy changes pair within a source."""
    folder = _raw_runs(("folder", "jpeg"))
    tfds = _raw_runs(("tfds", "tensor"))
    tfds["metrics.test/acc"] -= 0.05
    tfds["start_time"] += pd.Timedelta(days=1)
    runs = tidy_runs(pd.concat([folder, tfds], ignore_index=True))
    assert len(runs) == 2 * len(TASKS) * len(METHODS) * len(SEEDS)
    build_tables(runs, tmp_path, REFERENCE)
    labels = {"convpass (folder/jpeg)": 0.0, "convpass (tfds/tensor)": -5.0}
    accuracy = pd.read_csv(tmp_path / "accuracy_numeric.csv").set_index(["petl", "method"])
    efficiency = pd.read_csv(tmp_path / "efficiency.csv").set_index(["petl", "method"])
    for petl, shift in labels.items():
        for method, acc in BASE_ACC.items():
            assert accuracy.loc[(petl, method), "cifar"] == pytest.approx(acc * 100 + 1 + shift)
            row = efficiency.loc[(petl, method)]
            assert row["runs"] == len(TASKS) * len(SEEDS)
            assert row["Δ vs none (pts)"] == pytest.approx((acc - BASE_ACC["none"]) * 100)
    k = pd.read_csv(tmp_path / "sls_k.csv")
    assert sorted(k["petl"]) == sorted(list(labels) * len(TASKS))
    for name in ("accuracy.md", "efficiency.md", "sls_k.md"):
        text = (tmp_path / name).read_text()
        assert all(f"| {label} " in text for label in labels), name


def test_a_store_with_one_cell_from_two_sources_shows_both_labelled(tmp_path):
    suite = "tests-tables-sources"
    for source, data_format, acc in (("folder", "jpeg", 0.6), ("tfds", "tensor", 0.7)):
        params = {"budget": "auto", "seed": 0, "data.source": source, "data.format": data_format}
        tags = {"pruner": "sls", "task": "eurosat", "petl": "convpass"}
        with TrackedRun(suite, source, params, tags) as run:
            run.log_metrics({"test/acc": acc, "sls/k": 6})
    write_tables(suite, str(tmp_path), log=False)
    rows = {r["petl"]: r for r in _markdown_rows(tmp_path / "accuracy.md") if r["seeds"]}
    assert rows["convpass (folder/jpeg)"]["eurosat"] == "60.0"
    assert rows["convpass (tfds/tensor)"]["eurosat"] == "70.0"


def _curve_runs() -> pd.DataFrame:
    """A depth curve on one task, two seeds: test accuracy peaks at k = 9 (seed 0) and 10
    (seed 1), the val200 curve at k = 8; SLS chose k = 7 and 10."""
    rows = []
    sls_k = {0: 7, 1: 10}
    peak = {("test", 0): 9, ("test", 1): 10, ("val200", 0): 8, ("val200", 1): 8}
    for seed in (0, 1):
        for split in ("test", "val200"):
            for k in range(1, 13):
                acc = 0.9 - 0.02 * abs(k - peak[split, seed])
                rows.append(_curve_row(seed, split, "drop_last", f"keep:{k}", acc, 12 / k))
        acc_at_sls = 0.9 - 0.02 * abs(sls_k[seed] - peak["test", seed])
        sls = _curve_row(seed, "test", "sls", "auto", acc_at_sls, 12 / sls_k[seed])
        rows.append({**sls, "metrics.sls/k": float(sls_k[seed])})
    return pd.DataFrame(rows)


def _curve_row(seed, split, method, budget, acc, speedup):
    return {"status": "FINISHED", "start_time": pd.Timestamp(2026, 3, 1, seed),
            "tags.pruner": method, "tags.task": "eurosat", "tags.petl": "convpass",
            "params.budget": budget, "params.seed": str(seed), "params.data.eval_split": split,
            "metrics.test/acc": acc, "metrics.speedup/bs64": speedup, "metrics.macs": 1.0 / speedup,
            "metrics.macs_unpruned": 1.0, "metrics.params/total": 1e6 / speedup}  # fmt: skip


def test_depth_curve_and_regret_tables_pick_the_right_depths(tmp_path):
    written = build_tables(tidy_runs(_curve_runs()), tmp_path, REFERENCE)
    names = {p.name for p in written}
    assert {"depth_curve.csv", "depth_curve.png", "sls_regret.csv", "sls_regret.md"} <= names
    curve = pd.read_csv(tmp_path / "depth_curve.csv")
    assert len(curve) == 48 and sorted(curve["split"].unique()) == ["test", "val200"]
    point = curve[(curve.seed == 0) & (curve.split == "test") & (curve.k == 3)].iloc[0]
    assert point["accuracy"] == pytest.approx(78.0) and point["speedup"] == pytest.approx(4.0)
    assert point["macs_ratio"] == pytest.approx(0.25)
    regret = pd.read_csv(tmp_path / "sls_regret.csv").set_index("seed")
    assert regret.loc[0, ["sls_k", "val_k", "oracle_k"]].tolist() == [7, 8, 9]
    assert regret.loc[1, ["sls_k", "val_k", "oracle_k"]].tolist() == [10, 8, 10]
    assert regret.loc[0, "sls_regret"] == pytest.approx(4.0)  # 90 - 86
    assert regret.loc[0, "val_regret"] == pytest.approx(2.0)  # 90 - 88 at k = 8 on test
    assert regret.loc[1, "sls_regret"] == pytest.approx(0.0)
    assert regret.loc[1, "val_acc"] == pytest.approx(86.0)
    summary = (tmp_path / "sls_regret.md").read_text()
    assert "| eurosat | convpass | 2       | 7/10" in summary and "oracle" in summary
    accuracy = (tmp_path / "accuracy.md").read_text()  # the method tables: sls, no curve point
    assert "| sls " in accuracy and "drop_last" not in accuracy


def test_ties_on_the_curve_go_to_the_smaller_depth():
    from bench.tables.sls_regret import best_k

    points = pd.DataFrame({"k": [4, 5, 6], "accuracy": [80.0, 81.0, 81.0]})
    assert best_k(points) == (5, 81.0)


@pytest.mark.parametrize(("text", "depths"), [(None, list(range(1, 13))), ("1-3,12", [1, 2, 3, 12]),
                                               ("6", [6])])  # fmt: skip
def test_keep_lists(text, depths):
    from bench.curve import parse_keep

    assert parse_keep(text, 12) == depths


@pytest.mark.parametrize("text", ["0-3", "13", "a-b"])
def test_bad_keep_lists_are_refused(text):
    from bench.curve import parse_keep
    from bench.errors import UserError

    with pytest.raises(UserError, match="KEEP="):
        parse_keep(text, 12)


def test_no_epoch_note_when_every_method_trains_as_long_as_the_control(tmp_path):
    raw = _raw_runs()
    build_tables(tidy_runs(raw[raw["tags.pruner"] != "block_benefit"]), tmp_path, REFERENCE)
    table = pd.read_csv(tmp_path / "efficiency.csv")
    assert table["note"].isna().all()
    assert list(table["method"]) == ["none", "retrained", "sls", "fixed_depth"]


def test_index_page_shows_every_table_and_plot_with_images_beside_it(tmp_path):
    written = build_tables(tidy_runs(_raw_runs()), tmp_path, REFERENCE, suite="golden")
    index = written[-1]
    assert index == tmp_path / "index.html"

    class Page(HTMLParser):
        images, links, tables, headings, text = [], [], 0, [], []
        _in_h2 = False

        def handle_starttag(self, tag, attrs):
            attrs = dict(attrs)
            if tag == "img":
                self.images.append(attrs["src"])
            if tag == "a":
                self.links.append(attrs["href"])
            self.tables += tag == "table"
            self._in_h2 = tag == "h2"

        def handle_data(self, data):
            if self._in_h2:
                self.headings.append(data)
            self.text.append(data)

    page = Page()
    page.feed(index.read_text())
    pngs = sorted(p.name for p in written if p.suffix == ".png")
    assert pngs and sorted(page.images) == pngs  # every plot, relative paths
    for href in [*page.images, *(h for h in page.links if not h.startswith("#"))]:
        assert "/" not in href and (tmp_path / href).exists(), href
    tables = [p for p in written if p.suffix == ".md"]
    assert page.tables == len(tables)  # one HTML table per Markdown table
    assert "Top-1 accuracy (%), mean ± std over seeds" in page.headings
    assert "Efficiency: means over tasks and seeds" in page.headings
    assert "81.0 ± 1.4" in page.text  # a cell of the accuracy table, as in accuracy.md
    assert "http" not in index.read_text().replace("http://www.w3.org", "")  # nothing fetched


def _every_table_runs() -> pd.DataFrame:
    """The study, a depth curve, and a layer-wise criterion (angular on cifar, seed 0, blocks
    9..12 removed): runs that fill every table of the catalog."""
    removed = {f"metrics.angular/removed/block_{b:02d}": float(b > 8) for b in range(1, 13)}
    angular = {"status": "FINISHED", "start_time": pd.Timestamp(2026, 1, 2),
               "tags.pruner": "angular", "tags.task": "cifar", "tags.petl": "convpass",
               "params.budget": "match-sls", "params.seed": "0", "params.data.source": "folder",
               "params.data.format": "jpeg", "metrics.test/acc": 0.75,
               "metrics.blocks/kept": 8.0, **removed}  # fmt: skip
    return pd.concat([_raw_runs(), _curve_runs(), pd.DataFrame([angular])], ignore_index=True)


class _Sections(HTMLParser):
    """The page's section ids in order, and the text of each <code> element in each heading."""

    def __init__(self):
        super().__init__()
        self.ids, self.code_in_heading, self._open = [], {}, []

    def handle_starttag(self, tag, attrs):
        if tag == "section":
            self.ids.append(dict(attrs)["id"])
            self.code_in_heading[self.ids[-1]] = []
        self._open.append(tag)
        if self._open[-2:] == ["h2", "code"]:
            self.code_in_heading[self.ids[-1]].append("")

    def handle_endtag(self, tag):
        while self._open and self._open.pop() != tag:  # <img>, <meta>: no end tag
            pass

    def handle_data(self, data):
        if self._open[-2:] == ["h2", "code"]:
            self.code_in_heading[self.ids[-1]][-1] += data


def test_the_page_has_a_section_per_declared_table_in_order_and_code_as_code(tmp_path):
    from bench.tables.catalog import TABLES

    build_tables(tidy_runs(_every_table_runs()), tmp_path, REFERENCE, suite="golden")
    page = _Sections()
    page.feed((tmp_path / "index.html").read_text())
    assert page.ids == [table.stem for table in TABLES]
    assert page.code_in_heading["accuracy_best_of_evals"] == ["eval_every"]
    assert "&lt;code&gt;" not in (tmp_path / "index.html").read_text()


def test_pareto_front_keeps_the_points_nothing_beats_on_both_axes():
    from bench.tables.accuracy_vs_throughput import pareto_front

    points = pd.DataFrame({"x": [1.0, 2.0, 3.0, 2.0, 1.0], "y": [90.0, 85.0, 80.0, 80.0, 89.0]})
    assert pareto_front(points, "x", "y").tolist() == [True, True, True, False, False]


def test_plots_people_expect_are_written(tmp_path):
    written = {p.name for p in build_tables(tidy_runs(_raw_runs()), tmp_path, REFERENCE)}
    expected = {"accuracy_vs_throughput.png", "accuracy_vs_stored_bytes.png", "sls_scores.png"}
    assert expected <= written


def test_a_method_evaluated_without_retraining_is_labelled_so():
    from bench.tables.efficiency import epoch_notes

    runs = pd.DataFrame(
        {"task": ["cifar"] * 3, "petl": ["convpass"] * 3, "seed": [0] * 3,
         "method": ["retrained", "depgraph_sls", "sls"],
         "train/epochs_after_transfer": [30.0, 0.0, 30.0]}
    )  # fmt: skip
    notes = epoch_notes(runs)
    assert notes.to_dict() == {
        ("convpass", "depgraph_sls"): "not retrained: 0 epochs after the transfer, retrained 30"
    }


def test_the_best_of_evals_table_says_which_runs_have_none(tmp_path):
    """Runs trained with train.eval_every=0 have no best-of-evals accuracy: their cells stay empty
    and the row's note counts them; the other rows hold the best evaluation, not the last."""
    raw = _raw_runs()
    raw["metrics.test/acc_best_of_evals"] = raw["metrics.test/acc"] + 0.05
    last_epoch_only = (raw["tags.pruner"] == "retrained") & (raw["tags.task"] == "cifar")
    raw.loc[last_epoch_only, "metrics.test/acc_best_of_evals"] = np.nan
    build_tables(tidy_runs(raw), tmp_path, REFERENCE)
    rows = {r["method"]: r for r in _markdown_rows(tmp_path / "accuracy_best_of_evals.md")
            if r["seeds"]}  # fmt: skip
    assert rows["none"]["cifar"] == "86.0 ± 1.4"  # 0.80 + 0.05 and 0.82 + 0.05
    assert rows["none"]["note"] == ""
    assert rows["retrained"]["cifar"] == ""
    assert rows["retrained"]["eurosat"] == "91.0 ± 1.4"
    assert rows["retrained"]["note"].startswith("best-of-evals missing")
    assert rows["retrained"]["note"].endswith("2 of 6 runs")
