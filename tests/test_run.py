from dataclasses import dataclass

import pytest

from bench.pruning import PRUNERS, PruneContext, Pruner
from bench.run import run_benchmark
from bench.tracking import client
from tests.conftest import tiny_config

HEADLINE_METRICS = [
    "test/acc", "test/acc_best_of_evals", "throughput/bs1", "throughput/bs8", "speedup/bs1",
    "speedup/bs8", "macs", "params/total", "params/trainable", "params/stored",
    "params/stored_no_head", "bytes/stored", "transfer/test_acc",
]  # fmt: skip


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


def test_transfer_is_cached_and_reused():
    config = tiny_config(methods=["none"], suite="tests-cache", seeds=[7])
    first = run_benchmark(config, progress=False)[0]
    second = run_benchmark(config, progress=False)[0]
    tags = [client().get_run(o.run_id).data.tags for o in (first, second)]
    assert tags[0]["transfer.key"] == tags[1]["transfer.key"]
    assert (tags[0]["transfer.cached"], tags[1]["transfer.cached"]) == ("False", "True")
    assert first.metrics["test/acc"] == second.metrics["test/acc"]


@dataclass
class Exploding(Pruner):
    name = "test_exploding"

    def prune(self, ctx: PruneContext):
        raise RuntimeError("this pruner always fails")


@pytest.fixture
def exploding_pruner():
    PRUNERS.register("test_exploding", Exploding)
    yield
    PRUNERS._entries.pop("test_exploding")


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


def test_folder_task_run_logs_task_source_and_preprocessing(tmp_path):
    from tests.vtab_folders import make_vtab_folder

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
