"""bench.train by value where mutation testing found no test: the headline and what a training
logs, the kept best evaluation, the divergence report, where retraining may start, and the GPU
paths (with a stand-in CUDA device)."""

import contextlib
import time
import warnings
from dataclasses import replace
from types import SimpleNamespace

import pytest
import torch
from torch import nn

import bench.train
from bench import record as R
from bench.config import Recipe
from bench.errors import UserError
from bench.train import (
    Diverged,
    TrainResult,
    _check_finite,
    _Clock,
    _train_epoch,
    autocast,
    check_recipe,
    headline,
    make_optimizer,
    peak_gpu_memory_gb,
    reset_peak_gpu_memory,
    retrain_start_epoch,
    train,
    training_metrics,
)
from tests.conftest import linear_model_and_loader

CPU = torch.device("cpu")
CUDA = SimpleNamespace(type="cuda")  # what the GPU paths read of a device


def _weights(model):
    return [p.detach().clone() for p in model.parameters()]


def _train_with_evaluations(monkeypatch, accuracies, **kwargs):
    """Train 3 epochs, evaluating each; `evaluate` returns `accuracies` in turn and records the
    weights it saw. Returns the result, the model and the weights of each evaluation."""
    model, loader = linear_model_and_loader()
    seen, values = [], iter(accuracies)

    def evaluate(*args, **kw):
        seen.append(_weights(model))
        time.sleep(0.01)
        return next(values)

    monkeypatch.setattr(bench.train, "evaluate", evaluate)
    recipe = Recipe(epochs=len(accuracies), warmup_epochs=1, eval_every=1, lr=1e-2)
    result = train(model, loader, loader, recipe, CPU, 0, progress=False, **kwargs)
    return result, model, seen


def test_keep_best_restores_the_first_best_evaluations_weights(monkeypatch):
    result, model, seen = _train_with_evaluations(monkeypatch, [0.5, 0.9, 0.9, 0.7], keep_best=True)
    assert (result.best_epoch, result.selected_epoch) == (2, 2)  # the first of equals
    assert (result.final_acc, result.best_acc, result.selected_acc) == (0.7, 0.9, 0.9)
    for now, then in zip(_weights(model), seen[1], strict=True):
        assert torch.equal(now, then)
    assert not torch.equal(seen[1][-1], seen[3][-1])  # the weights did move after epoch 2


def test_without_keep_best_the_model_is_the_last_epochs(monkeypatch):
    result, model, seen = _train_with_evaluations(monkeypatch, [0.5, 0.9, 0.7])
    assert (result.best_epoch, result.selected_epoch, result.selected_acc) == (2, None, 0.7)
    assert not torch.equal(_weights(model)[-1], seen[1][-1])


def test_an_accuracy_of_zero_is_still_a_best_evaluation(monkeypatch):
    result, _, _ = _train_with_evaluations(monkeypatch, [0.0, 0.0], keep_best=True)
    assert (result.best_epoch, result.selected_epoch, result.selected_acc) == (1, 1, 0.0)


def test_a_training_reports_its_time_and_the_evaluations_share(monkeypatch):
    result, _, _ = _train_with_evaluations(monkeypatch, [0.5, 0.6])
    assert isinstance(result.seconds, float) and isinstance(result.eval_seconds, float)
    assert 0.02 <= result.eval_seconds < result.seconds < 60
    assert result.peak_gpu_memory_gb is None  # CPU


def test_the_headline_is_the_selected_accuracy_and_the_best_apart():
    last = TrainResult(final_acc=0.7, best_acc=0.9, seconds=1.0)
    assert headline(last) == {R.ACC: 0.7, R.ACC_BEST: 0.9}
    kept = TrainResult(final_acc=0.7, best_acc=0.9, seconds=1.0, best_epoch=2, selected_epoch=2)
    assert headline(kept) == {R.ACC: 0.9, R.ACC_BEST: 0.9}
    assert headline(TrainResult(final_acc=0.6, best_acc=None, seconds=1.0)) == {R.ACC: 0.6}


def test_training_metrics_name_the_phase():
    history = [{"epoch": 1, "test_acc": 0.5}, {"epoch": 2}, {"epoch": 3, "test_acc": 0.6}]
    result = TrainResult(0.6, 0.6, seconds=5.0, history=history, eval_seconds=2.0)
    assert training_metrics("retrain", result) == {
        R.phase_metric("retrain", "seconds"): 5.0,
        R.phase_metric("retrain", "eval_seconds"): 2.0,
        R.phase_metric("retrain", "epochs"): 3,
        R.phase_metric("retrain", "evaluations"): 2,
    }


def test_a_diverged_loss_names_its_epoch_step_and_rate(monkeypatch):
    monkeypatch.setattr(bench.train, "_train_epoch", lambda *a: torch.tensor([1.0, float("nan")]))
    model, loader = linear_model_and_loader()
    recipe = Recipe(epochs=3, warmup_epochs=0, lr=0.02, schedule="constant")
    with pytest.raises(
        Diverged, match=r"^retrain diverged: loss nan at epoch 1, step 2 \(learning rate 0.02\)"
    ):
        train(model, loader, loader, recipe, CPU, 0, desc="retrain", progress=False)


def test_check_finite_reports_the_first_bad_step():
    losses = torch.tensor([1.0, 2.0, float("inf"), float("nan")])
    with pytest.raises(Diverged, match=r"loss inf at epoch 4, step 3 "):
        _check_finite(losses, 4, 0.1, "train")
    _check_finite(torch.tensor([1.0, 2.0]), 4, 0.1, "train")  # finite: no error


def test_an_epoch_without_batches_has_one_zero_loss():
    model, _ = linear_model_and_loader()
    optimizer, _ = make_optimizer(model, Recipe())
    losses = _train_epoch(
        model, model, [], optimizer, nn.CrossEntropyLoss(), contextlib.nullcontext
    )
    assert torch.equal(losses, torch.zeros(1))


def test_the_optimizer_is_adamw_at_the_recipes_rate_and_decay():
    optimizer, _ = make_optimizer(
        nn.Linear(2, 2), Recipe(lr=0.003, weight_decay=0.05, schedule="constant")
    )
    assert isinstance(optimizer, torch.optim.AdamW)
    group = optimizer.param_groups[0]
    assert (group["lr"], group["weight_decay"]) == (pytest.approx(0.003), 0.05)


@pytest.mark.parametrize(("trained", "start"), [(0, 0), (2.0, 2), (5, 5)])
def test_retraining_may_start_anywhere_within_the_budget(trained, start):
    assert retrain_start_epoch(Recipe(epochs=5), trained) == start


def test_compile_and_tf32_settings_reach_the_training(monkeypatch):
    compiled, tf32 = [], []
    monkeypatch.setattr(torch, "compile", lambda model: compiled.append(model) or model)

    @contextlib.contextmanager
    def spy(device, allow):
        tf32.append((device, allow))
        yield

    monkeypatch.setattr(bench.train, "tf32", spy)
    model, loader = linear_model_and_loader()
    recipe = Recipe(epochs=1, warmup_epochs=0, compile=True, tf32=False)
    train(model, loader, loader, recipe, CPU, 0, progress=False)
    assert compiled == [model] and tf32 == [(CPU, False)]
    train(model, loader, loader, replace(recipe, compile=False), CPU, 0, progress=False)
    assert compiled == [model]  # not compiled again: compile=False trains the model itself


def test_peak_gpu_memory_is_read_in_gigabytes_on_a_gpu_only(monkeypatch):
    read, reset = [], []
    monkeypatch.setattr(torch.cuda, "max_memory_allocated", lambda d: read.append(d) or 2.5e9)
    monkeypatch.setattr(torch.cuda, "reset_peak_memory_stats", reset.append)
    assert peak_gpu_memory_gb(CUDA) == 2.5 and read == [CUDA]
    assert peak_gpu_memory_gb(CPU) is None and read == [CUDA]
    reset_peak_gpu_memory(CUDA)
    reset_peak_gpu_memory(CPU)
    assert reset == [CUDA]


def test_the_clock_synchronises_a_gpu_only(monkeypatch):
    synced = []
    monkeypatch.setattr(torch.cuda, "synchronize", synced.append)
    _Clock(CPU).total()
    assert synced == []
    assert _Clock(CUDA).total() < 60 and synced == [CUDA]


def test_a_zero_epoch_training_reports_the_model_as_it_is(monkeypatch):
    monkeypatch.setattr(bench.train, "evaluate", lambda *args, **kwargs: 0.42)
    model, loader = linear_model_and_loader()
    result = train(
        model,
        loader,
        loader,
        Recipe(epochs=0, warmup_epochs=0, schedule="constant"),
        CPU,
        0,
        progress=False,
    )
    assert (result.final_acc, result.evaluations, result.history) == (0.42, 1, [])


def test_the_peak_gpu_memory_is_part_of_the_result(monkeypatch):
    monkeypatch.setattr(bench.train, "peak_gpu_memory_gb", lambda device: 1.5)
    result, _, _ = _train_with_evaluations(monkeypatch, [0.5])
    assert result.peak_gpu_memory_gb == 1.5


@pytest.mark.parametrize(
    ("eval_every", "eval_batch_size", "accepted"),
    [(0, 1, True), (10, 1, True), (-1, 64, False), (10, 0, False), (-1, 0, False)],
)
def test_the_recipe_check_bounds_each_evaluation_setting_alone(eval_every, eval_batch_size,
                                                               accepted):  # fmt: skip
    recipe = Recipe(eval_every=eval_every, eval_batch_size=eval_batch_size)
    if accepted:
        check_recipe(recipe)
    else:
        with pytest.raises(UserError, match="eval_every must be >= 0 and train.eval_batch_size"):
            check_recipe(recipe)


def test_bfloat16_autocast_asks_for_bfloat16_on_every_device():
    """torch.autocast's own default would be float16 on CUDA; the recipe says bfloat16."""
    for device in ("cpu", "cuda"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # no CUDA here: autocast warns and disables itself
            context = autocast(torch.device(device), "bfloat16")
        assert context.fast_dtype == torch.bfloat16
    assert isinstance(autocast(torch.device("cpu"), "float32"), contextlib.nullcontext)
