"""`transfer.checkpoint=best_of_evals`: every method starts from the transferred model of the best
test evaluation (the SLS authors' `train.py` saves it, `prune.py` prunes it), and `none` reports
that model's accuracy."""

from __future__ import annotations

from pathlib import Path

import mlflow
import pytest
import torch

import bench.train
from bench.config import load_config
from bench.data.task_data import calibration_loader, load_data
from bench.errors import UserError
from bench.models.build import build_petl_model
from bench.models.petl import resolve_settings
from bench.preflight import preflight
from bench.pruning import Budget, PruneContext, make_pruner
from bench.run import run_benchmark
from bench.state import read_task_state
from bench.tasks import get_task
from bench.tracking import client
from tests.conftest import tiny_config

CPU = torch.device("cpu")
SCRIPTED = (0.30, 0.80, 0.50)  # the transfer's three evaluations: the best is epoch 2's


def _scripted_transfer_evaluations(monkeypatch) -> list[dict]:
    """The transfer's evaluations return SCRIPTED; each records the model's trainable tensors."""
    real, seen = bench.train.evaluate, []

    def evaluate(model, *args, **kwargs):
        if len(seen) < len(SCRIPTED):
            seen.append({n: p.detach().clone() for n, p in model.named_parameters()
                         if p.requires_grad})  # fmt: skip
            return SCRIPTED[len(seen) - 1]
        return real(model, *args, **kwargs)

    monkeypatch.setattr(bench.train, "evaluate", evaluate)
    return seen


def _config(**overrides):
    values = {"train.epochs": 3, "train.eval_every": 1, "transfer.checkpoint": "best_of_evals"}
    return tiny_config(**{**values, **overrides})


@pytest.mark.slow
def test_best_of_evals_prunes_and_reports_the_best_evaluations_model(monkeypatch, tmp_path):
    seen = _scripted_transfer_evaluations(monkeypatch)
    config = _config(methods=["none", "sls"], suite="tests-best-checkpoint", seeds=[11])
    outcomes = {o.method: o for o in run_benchmark(config, progress=False)}
    assert [o.status for o in outcomes.values()] == ["FINISHED", "FINISHED"]
    best = seen[1]  # epoch 2
    assert outcomes["none"].metrics["test/acc"] == 0.80
    assert outcomes["none"].metrics["transfer/selected_epoch"] == 2
    # `none` stores the model it was given: the best evaluation's, not the last epoch's
    state = mlflow.artifacts.download_artifacts(run_id=outcomes["none"].run_id,
                                                artifact_path="task_state.safetensors",
                                                tracking_uri=client().tracking_uri)  # fmt: skip
    tensors, _ = read_task_state(Path(state))
    assert all(torch.equal(tensors[n], best[n]) for n in best)
    assert not all(torch.equal(tensors[n], seen[2][n]) for n in best)
    # sls decided on that same model: its scores are those of pruning a copy of it
    task = get_task("digits")
    settings = resolve_settings("convpass", "digits")
    model = build_petl_model(config.model, config.data, task.num_classes, settings, 11, CPU)
    with torch.no_grad():
        for name, tensor in best.items():
            model.get_parameter(name).copy_(tensor)
    calibration = calibration_loader(load_data(config.data, task, progress=False), CPU)
    pruner = make_pruner("sls", config.pruners.get("sls"))
    ctx = PruneContext(model, calibration, task, Budget("auto"), 11, CPU, tmp_path)
    expected = pruner.prune(ctx).metrics
    logged = outcomes["sls"].metrics
    scores = [k for k in expected if k.startswith("score/block_")]
    assert scores and all(logged[f"sls/{k}"] == pytest.approx(expected[k]) for k in scores)


@pytest.mark.slow
def test_last_keeps_the_last_epochs_model(monkeypatch):
    _scripted_transfer_evaluations(monkeypatch)
    config = _config(methods=["none"], suite="tests-last-checkpoint", seeds=[12],
                     **{"transfer.checkpoint": "last"})  # fmt: skip
    (outcome,) = run_benchmark(config, progress=False)
    assert outcome.metrics["test/acc"] == 0.50
    assert outcome.metrics["test/acc_best_of_evals"] == 0.80
    assert "transfer/selected_epoch" not in outcome.metrics


def test_best_of_evals_needs_periodic_evaluations_and_a_known_name():
    with pytest.raises(UserError, match="eval_every"):
        preflight(_config(**{"train.eval_every": 0}))
    with pytest.raises(UserError, match="transfer.checkpoint 'best'"):
        preflight(_config(**{"transfer.checkpoint": "best"}))


def test_the_paper_preset_prunes_the_authors_checkpoint():
    assert load_config("paper").transfer.checkpoint == "best_of_evals"
