import copy
import itertools
from pathlib import Path

import mlflow
import pytest
import torch
from safetensors.torch import load_file

import bench.run
import bench.train
from bench.data.task_data import data_loaders, load_data
from bench.models.build import build_petl_model
from bench.models.petl import PetlSettings
from bench.paths import cache_dir
from bench.run import run_benchmark, store_step
from bench.state import read_task_state, rebuild
from bench.tasks import get_task
from bench.tracking import client
from bench.train import evaluate
from tests.conftest import tiny_config

CPU = torch.device("cpu")

HEADLINE_METRICS = [
    "test/acc", "test/acc_best_of_evals", "throughput/bs1", "throughput/bs8", "speedup/bs1",
    "speedup/bs8", "macs", "params/total", "params/trainable", "params/stored",
    "params/stored_no_head", "bytes/stored", "transfer/test_acc",
]  # fmt: skip


@pytest.mark.slow
def test_offline_run_is_finished_and_logs_what_measure_md_asks(tmp_path):
    outcomes = run_benchmark(tiny_config(methods=["none"], suite="tests-run"), progress=False)
    assert [o.status for o in outcomes] == ["FINISHED"]
    run = client().get_run(outcomes[0].run_id)
    assert run.info.status == "FINISHED"
    for name in HEADLINE_METRICS:
        assert name in run.data.metrics, name
    assert 0.0 <= run.data.metrics["test/acc"] <= 1.0
    assert run.data.params["data.task"] == "digits"
    assert run.data.params["data.source"] == "digits"
    assert run.data.params["pruner"] == "none"
    assert run.data.tags["weights"] == "random-init"
    assert "git.commit" in run.data.tags or "python" in run.data.tags
    artifacts = {a.path for a in client().list_artifacts(run.info.run_id)}
    assert {"task_state.safetensors", "config.json", "decision.json"} <= artifacts


def _artifact(run_id: str, name: str) -> Path:
    return Path(
        mlflow.artifacts.download_artifacts(
            run_id=run_id, artifact_path=name, tracking_uri=client().tracking_uri
        )
    )


@pytest.mark.slow
def test_a_cache_hit_restores_the_stored_weights_and_pruners_prune_them():
    config = tiny_config(methods=["none", "drop_last@keep:2"], suite="tests-cache", seeds=[7])
    first = {o.method: o for o in run_benchmark(config, progress=False)}
    second = {o.method: o for o in run_benchmark(config, progress=False)}
    tags = [client().get_run(o["none"].run_id).data.tags for o in (first, second)]
    key = tags[0]["transfer.key"]
    assert tags[1]["transfer.key"] == key
    assert (tags[0]["transfer.cached"], tags[1]["transfer.cached"]) == ("False", "True")
    stored = load_file(cache_dir() / "transfer" / key / "state.safetensors")
    for outcomes in (first, second):  # `none` logs the transferred model it was given
        logged = load_file(_artifact(outcomes["none"].run_id, "task_state.safetensors"))
        assert logged.keys() == stored.keys()
        assert all(torch.equal(logged[name], stored[name]) for name in stored)
    for method in ("none", "drop_last@keep:2"):  # a pruner after a cache hit prunes the same model
        assert first[method].status == second[method].status == "FINISHED"
        assert first[method].metrics["test/acc"] == second[method].metrics["test/acc"]


@pytest.mark.slow
def test_the_logged_headline_is_the_last_epoch_and_the_best_is_kept_apart(monkeypatch):
    calls = itertools.count()  # every training evaluates twice (2 epochs): 0.9, then 0.4
    monkeypatch.setattr(bench.train, "evaluate", lambda *a, **k: (0.9, 0.4)[next(calls) % 2])
    config = tiny_config(methods=["none", "retrained"], suite="tests-headline", seeds=[4242])
    outcomes = run_benchmark(config, progress=False)
    assert [o.status for o in outcomes] == ["FINISHED", "FINISHED"]
    for outcome in outcomes:
        metrics = client().get_run(outcome.run_id).data.metrics
        assert (metrics["test/acc"], metrics["test/acc_best_of_evals"]) == (0.4, 0.9)
        assert metrics["transfer/test_acc"] == 0.4
    history = client().get_metric_history(outcomes[1].run_id, "retrain/test_acc")
    assert [(m.step, m.value) for m in sorted(history, key=lambda m: m.step)] == [
        (1, 0.9),
        (2, 0.4),
    ]


@pytest.mark.slow
def test_eval_every_zero_logs_no_best_of_evals_and_where_the_time_went():
    config = tiny_config(methods=["none", "retrained"], suite="tests-last-epoch", seeds=[4243],
                         **{"train.eval_every": 0})  # fmt: skip
    outcomes = run_benchmark(config, progress=False)
    assert [o.status for o in outcomes] == ["FINISHED", "FINISHED"]
    for outcome in outcomes:
        run = client().get_run(outcome.run_id)
        assert "test/acc_best_of_evals" not in run.data.metrics
        assert run.data.params["train.eval_every"] == "0"
        for name in ("transfer/seconds", "transfer/eval_seconds", "measure/seconds"):
            assert run.data.metrics[name] > 0, name
        assert run.data.metrics["transfer/eval_seconds"] < run.data.metrics["transfer/seconds"]
        assert (run.data.metrics["transfer/epochs"], run.data.metrics["transfer/evaluations"]) == (
            2, 1
        )  # fmt: skip
    history = client().get_metric_history(outcomes[1].run_id, "retrain/test_acc")
    assert [m.step for m in history] == [2]  # the last of 2 epochs only


@pytest.mark.slow
def test_a_runs_logged_task_state_rebuilds_the_model_it_measured(monkeypatch):
    measured = {}

    def store_and_keep(ctx, pruned):
        measured[str(ctx.spec)] = copy.deepcopy(pruned.model).eval()
        return store_step(ctx, pruned)

    monkeypatch.setattr(bench.run, "store_step", store_and_keep)
    methods = ["random_blocks@keep:2", "magnitude@keep:2"]
    config = tiny_config(methods=methods, suite="tests-rebuild", seeds=[2])
    outcomes = run_benchmark(config, progress=False)
    assert [o.status for o in outcomes] == ["FINISHED", "FINISHED"], outcomes
    data = load_data(config.data, get_task("digits"), progress=False)
    _, eval_loader = data_loaders(data, config.train, CPU, 2)
    x = next(iter(eval_loader))[0][:8]

    def fresh(meta):  # the product's own model building, from what the state file records
        return build_petl_model(config.model, config.data, get_task(meta["task"]).num_classes,
                                PetlSettings(**meta["petl"]), meta["seed"], CPU)  # fmt: skip

    for outcome in outcomes:
        path = _artifact(outcome.run_id, "task_state.safetensors")
        assert read_task_state(path)[1]["pruner_state"]  # what the pruner decided is in it
        rebuilt = rebuild(path, fresh).eval()
        with torch.no_grad():
            assert torch.equal(rebuilt(x), measured[outcome.method](x))
        accuracy = evaluate(rebuilt, eval_loader, CPU, progress=False)
        assert accuracy == outcome.metrics["test/acc"]


@pytest.mark.slow
def test_failed_method_is_recorded_failed_and_others_still_run(exploding_pruner):
    config = tiny_config(methods=["test_exploding", "none"], suite="tests-fail")
    outcomes = run_benchmark(config, progress=False)
    assert [o.status for o in outcomes] == ["FAILED", "FINISHED"]
    assert "this pruner always fails" in outcomes[0].error
    failed = client().search_runs(
        [client().get_experiment_by_name("tests-fail").experiment_id],
        "tags.pruner = 'test_exploding'",
    )
    assert failed[0].info.status == "FAILED"
    assert "this pruner always fails" in failed[0].data.tags["error"]


def test_transfer_failure_records_failed_runs(monkeypatch):
    import bench.run

    def broken_transfer(*args, **kwargs):
        raise FloatingPointError("loss is NaN")

    monkeypatch.setattr(bench.run, "transfer", broken_transfer)
    outcomes = run_benchmark(
        tiny_config(methods=["none"], suite="tests-transfer-fail"), progress=False
    )
    assert [o.status for o in outcomes] == ["FAILED"]
    assert "loss is NaN" in outcomes[0].error
    experiment = client().get_experiment_by_name("tests-transfer-fail").experiment_id
    (run,) = client().search_runs([experiment])
    assert run.info.status == "FAILED" and "loss is NaN" in run.data.tags["error"]


@pytest.mark.slow
def test_folder_task_run_logs_task_source_and_preprocessing(tmp_path):
    from bench.data.synthetic import make_vtab_folder

    root = make_vtab_folder(tmp_path / "vtab-1k", task="eurosat", n_train=20, n_test=10)
    overrides = {"data.task": "eurosat", "data.source": "folder", "data.data_dir": str(root)}
    config = tiny_config(methods=["none"], suite="tests-folder", **overrides)
    (outcome,) = run_benchmark(config, progress=False)
    assert outcome.status == "FINISHED"
    params = client().get_run(outcome.run_id).data.params
    source = (params["data.task"], params["data.source"], params["data.format"])
    assert source == ("eurosat", "folder", "jpeg")
    assert (params["data.image_size"], params["data.interpolation"]) == ("16", "bicubic")
    assert params["data.normalization"] == "imagenet"
