"""Training by value: the learning rate at chosen epochs (warm-up then cosine, and the constant
retrain recipe), and the headline accuracy is the last epoch's, not the best evaluation's."""

import math
from dataclasses import replace

import numpy as np
import pytest
import torch
from torch import nn

import bench.train
from bench.config import Recipe
from bench.data import BatchLoader, ImageSplit
from bench.run import retrain_recipe
from bench.train import make_optimizer, train
from tests.conftest import tiny_config

CPU = torch.device("cpu")


def _paper_lr(epoch: int) -> float:
    """The released recipe written out: 10 linear warm-up epochs from 1e-6 to 1e-3, then timm's
    cosine over all 100 epochs (not restarted after the warm-up) down to 1e-5."""
    if epoch < 10:
        return 1e-6 + epoch * (1e-3 - 1e-6) / 10
    return 1e-5 + 0.5 * (1e-3 - 1e-5) * (1 + math.cos(math.pi * epoch / 100))


@pytest.mark.parametrize("epoch", [0, 1, 5, 9, 10, 30, 50, 75, 99])
def test_warm_up_then_cosine_at_chosen_epochs(epoch):
    recipe = Recipe()  # the paper's: 100 epochs, 10 warm-up, lr 1e-3, warm-up 1e-6, min 1e-5
    optimizer, scheduler = make_optimizer(nn.Linear(2, 2), recipe)
    scheduler.step(epoch)
    assert optimizer.param_groups[0]["lr"] == pytest.approx(_paper_lr(epoch), rel=1e-9)


def _model_and_loader():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(3 * 4 * 4, 3))
    rng = np.random.default_rng(0)
    split = ImageSplit(rng.integers(0, 256, size=(24, 3, 4, 4), dtype=np.uint8), np.arange(24) % 3)
    return model, BatchLoader(split, 8, shuffle=True, drop_last=True, seed=0)


def test_train_steps_the_schedule_by_epoch():
    model, loader = _model_and_loader()
    recipe = Recipe(epochs=4, warmup_epochs=2, lr=1e-2, warmup_lr=1e-4, min_lr=1e-3, eval_every=4)
    history = train(model, loader, loader, recipe, CPU, 0, progress=False).history
    cosine = [1e-3 + 0.5 * (1e-2 - 1e-3) * (1 + math.cos(math.pi * e / 4)) for e in (2, 3)]
    expected = [1e-4, 1e-4 + (1e-2 - 1e-4) / 2, *cosine]
    assert [r["lr"] for r in history] == pytest.approx(expected, rel=1e-9)


def test_the_constant_retrain_recipe_keeps_one_learning_rate():
    config = tiny_config(**{"retrain.recipe": "constant", "retrain.epochs": 3})
    recipe = retrain_recipe(config)
    assert (recipe.schedule, recipe.lr, recipe.warmup_epochs, recipe.epochs) == (
        "constant", 1e-5, 0, 3
    )  # fmt: skip
    assert replace(recipe, schedule="cosine", lr=config.train.lr, warmup_epochs=1, epochs=2) == (
        config.train
    )  # everything else is the transfer recipe
    model, loader = _model_and_loader()
    history = train(model, loader, loader, recipe, CPU, 0, progress=False).history
    assert [r["lr"] for r in history] == [1e-5] * 3
    released = retrain_recipe(tiny_config(**{"retrain.epochs": 3}))
    assert released == replace(config.train, epochs=3)


def test_the_headline_is_the_last_evaluation_and_the_best_is_kept_apart(monkeypatch):
    evaluations = iter([0.5, 0.9, 0.7])
    monkeypatch.setattr(bench.train, "evaluate", lambda *args, **kwargs: next(evaluations))
    model, loader = _model_and_loader()
    recipe = Recipe(epochs=3, warmup_epochs=1, eval_every=1)
    result = train(model, loader, loader, recipe, CPU, 0, progress=False)
    assert (result.final_acc, result.best_acc) == (0.7, 0.9)
    assert [r["test_acc"] for r in result.history] == [0.5, 0.9, 0.7]
