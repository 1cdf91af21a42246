"""What a run shows on the MLflow UI: per-block curves as stepped metrics, the task's data as a
dataset input, and a Markdown description (the run's note)."""

import json

import pytest

from bench.run import run_benchmark
from bench.tracking import NOTE_TAG, block_curves, client
from tests.conftest import tiny_config


@pytest.mark.slow
def test_run_logs_stepped_block_curves_dataset_input_and_description():
    config = tiny_config(methods=["none", "sls", "block_influence"], suite="tests-ui")
    outcomes = {o.method: o for o in run_benchmark(config, progress=False)}
    assert {o.status for o in outcomes.values()} == {"FINISHED"}
    store = client()
    sls = store.get_run(outcomes["sls"].run_id)

    # sls/score: one value per scored block, step = block, in block order, as the flat names
    flat = {int(k.rsplit("_", 1)[1]): v for k, v in sls.data.metrics.items()
            if k.startswith("sls/score/block_")}  # fmt: skip
    assert flat, "the flat per-block names stay for the tables"
    history = sorted(store.get_metric_history(sls.info.run_id, "sls/score"), key=lambda m: m.step)
    assert [m.step for m in history] == sorted(flat)
    assert [m.value for m in history] == [flat[b] for b in sorted(flat)]
    influence = store.get_metric_history(
        outcomes["block_influence"].run_id, "block_influence/score"
    )
    assert sorted(m.step for m in influence) == [1, 2, 3, 4]  # every block of the tiny ViT

    # the task's data as a dataset input: the Dataset column names the task
    (used,) = sls.inputs.dataset_inputs
    assert used.dataset.name == "digits" and used.dataset.source_type == "digits"
    assert {t.key: t.value for t in used.tags}["mlflow.data.context"] == "train"
    profile = json.loads(used.dataset.profile)
    assert profile["train800val200"] == 1000 and profile["num_classes"] == 10
    assert json.loads(used.dataset.source)["task"] == "digits"
    assert len(used.dataset.digest) == 16
    none_input = store.get_run(outcomes["none"].run_id).inputs.dataset_inputs[0].dataset
    assert none_input.digest == used.dataset.digest  # same images, same digest

    # the description: task, method, k, accuracy, Δ vs none (run before it), speedup, bytes
    note = sls.data.tags[NOTE_TAG]
    acc = sls.data.metrics["test/acc"] * 100
    none_acc = store.get_run(outcomes["none"].run_id).data.metrics["test/acc"] * 100
    assert "**digits · sls · convpass · seed 0**" in note
    assert f"| k (blocks kept) | {int(sls.data.metrics['sls/k'])} of 4 |" in note
    assert f"| accuracy | {acc:.2f} % |" in note
    assert f"| Δ vs none | {acc - none_acc:+.2f} pts |" in note
    assert "speedup (bs8)" in note and "stored per task" in note
    assert "Δ vs retrained: no finished run" in note  # not in this run set


def test_block_curves_group_flat_block_metrics_in_block_order():
    metrics = {"sls/score/block_10": 0.5, "sls/score/block_02": 0.1, "sls/k": 3.0,
               "angular/removed/block_01": 1.0, "test/acc": 0.9}  # fmt: skip
    assert block_curves(metrics) == {
        "sls/score": {2: 0.1, 10: 0.5},
        "angular/removed": {1: 1.0},
    }
    assert list(block_curves(metrics)["sls/score"]) == [2, 10]


def test_ui_links_the_suite_runs_table_first_and_opens_experiments_on_runs():
    from bench.tracking import EXPERIMENT_KIND, get_experiment_id, runs_table_links

    store = client()
    other = get_experiment_id(store, "tests-links-other")
    suite = get_experiment_id(store, "tests-links")
    text = runs_table_links(store, "http://127.0.0.1:5000", "tests-links")
    first = text.splitlines()[0]
    assert (
        first
        == f"runs table of suite 'tests-links': http://127.0.0.1:5000/#/experiments/{suite}/runs"
    )
    assert text.splitlines()[1].endswith(f"#/experiments/{suite}/runs?compareRunsMode=CHART")
    assert f"#/experiments/{other}/runs" in text
    assert store.get_experiment(suite).tags[EXPERIMENT_KIND[0]] == EXPERIMENT_KIND[1]
    assert "has no runs yet" in runs_table_links(store, "http://h", "no-such-suite").splitlines()[0]
