import os

import pytest
from mlflow.tracking import MlflowClient

from bench.paths import results_dir
from bench.tracking import TrackedRun, client, tracking_uri


def test_tracking_store_round_trip():
    with TrackedRun(
        "tests-tracking", "ok", {"train.epochs": 3, "data.task": "digits"}, {"t": "1"}
    ) as run:
        run.log_metrics({"test/acc": 0.5, "params/total": 1234})
        run.log_history("transfer", [{"epoch": 1, "loss": 2.0}, {"epoch": 2, "loss": 1.0}])
        run.log_dict({"k": 6}, "decision.json")
    stored = client().get_run(run.run_id)
    assert stored.info.status == "FINISHED"
    assert stored.data.params == {"train.epochs": "3", "data.task": "digits"}
    assert stored.data.metrics["test/acc"] == 0.5
    assert stored.data.tags["t"] == "1"
    history = client().get_metric_history(run.run_id, "transfer/loss")
    assert [(m.step, m.value) for m in history] == [(1, 2.0), (2, 1.0)]
    artifacts = [a.path for a in client().list_artifacts(run.run_id)]
    assert "decision.json" in artifacts


def test_failed_run_is_recorded_as_failed_with_its_error():
    with pytest.raises(RuntimeError):
        with TrackedRun("tests-tracking", "boom", {}, {}) as run:
            raise RuntimeError("pruner exploded")
    stored = client().get_run(run.run_id)
    assert stored.info.status == "FAILED"
    assert stored.data.tags["error"] == "RuntimeError: pruner exploded"
    assert "error.txt" in [a.path for a in client().list_artifacts(run.run_id)]


def test_interrupted_run_is_recorded_as_killed():
    with pytest.raises(KeyboardInterrupt):
        with TrackedRun("tests-tracking", "ctrl-c", {}, {}) as run:
            raise KeyboardInterrupt
    assert client().get_run(run.run_id).info.status == "KILLED"


def test_the_store_is_the_one_mlflow_tracking_uri_names(isolated_results):
    default = f"sqlite:///{results_dir() / 'mlflow.db'}"
    named = os.environ["MLFLOW_TRACKING_URI"]
    assert named != default  # the fixture's store differs from the default, so this means something
    assert tracking_uri() == named and client().tracking_uri == named
    with TrackedRun("tests-tracking-uri", "here", {}, {}) as run:
        run.log_metrics({"test/acc": 0.25})
    assert MlflowClient(named).get_run(run.run_id).data.metrics["test/acc"] == 0.25
    assert not (results_dir() / "mlflow.db").exists()


def test_another_mlflow_tracking_uri_moves_every_run_and_unset_means_the_default(
    tmp_path, monkeypatch
):
    elsewhere = f"sqlite:///{tmp_path / 'elsewhere.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", elsewhere)
    with TrackedRun("tests-tracking-elsewhere", "there", {}, {}) as run:
        pass
    assert (tmp_path / "elsewhere.db").exists()
    assert MlflowClient(elsewhere).get_run(run.run_id).info.status == "FINISHED"
    monkeypatch.delenv("MLFLOW_TRACKING_URI")
    assert tracking_uri() == f"sqlite:///{results_dir() / 'mlflow.db'}"
