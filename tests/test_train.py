"""Training by value: the learning rate at chosen epochs (warm-up then cosine, and the constant
retrain recipe), and the headline accuracy is the last epoch's, not the best evaluation's."""

import contextlib
import math
from dataclasses import replace

import pytest
import torch
from torch import nn

import bench.train
from bench.config import Recipe
from bench.train import make_optimizer, retrain_recipe, train
from tests.conftest import linear_model_and_loader, tiny_config

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


def test_train_steps_the_schedule_by_epoch():
    model, loader = linear_model_and_loader()
    recipe = Recipe(epochs=4, warmup_epochs=2, lr=1e-2, warmup_lr=1e-4, min_lr=1e-3, eval_every=4,
                    lr_step="before_epoch")  # fmt: skip
    history = train(model, loader, loader, recipe, CPU, 0, progress=False).history
    cosine = [1e-3 + 0.5 * (1e-2 - 1e-3) * (1 + math.cos(math.pi * e / 4)) for e in (2, 3)]
    expected = [1e-4, 1e-4 + (1e-2 - 1e-4) / 2, *cosine]
    assert [r["lr"] for r in history] == pytest.approx(expected, rel=1e-9)


def _authors_rates(epochs: int) -> list[float]:
    """The SLS authors' transfer loop (their train.py) written out: the scheduler is built, each
    epoch trains at the optimizer's current rate, then `scheduler.step(ep)`."""
    from timm.scheduler import CosineLRScheduler

    optimizer = torch.optim.AdamW(nn.Linear(2, 2).parameters(), lr=1e-3, weight_decay=1e-4)
    scheduler = CosineLRScheduler(optimizer, t_initial=epochs, warmup_t=10, lr_min=1e-5,
                                  warmup_lr_init=1e-6, cycle_decay=0.1)  # fmt: skip
    rates = []
    for ep in range(epochs):
        rates.append(optimizer.param_groups[0]["lr"])
        scheduler.step(ep)
    return rates


def test_the_default_lr_step_follows_the_authors_loop_one_epoch_behind(monkeypatch):
    monkeypatch.setattr(bench.train, "_train_epoch", lambda *args: torch.zeros(1))
    monkeypatch.setattr(bench.train, "evaluate", lambda *args, **kwargs: 0.5)
    model, loader = linear_model_and_loader()
    recipe = Recipe()  # the paper preset's recipe: 100 epochs, lr_step after_epoch
    assert recipe.lr_step == "after_epoch"
    rates = [r["lr"] for r in train(model, loader, loader, recipe, CPU, 0, False).history]
    assert rates == pytest.approx(_authors_rates(100), rel=1e-12)
    assert rates[:3] == pytest.approx([1e-6, 1e-6, _paper_lr(1)], rel=1e-9)  # epoch 1 at 1e-6
    assert rates[-1] == pytest.approx(_paper_lr(98), rel=1e-9)


def test_the_constant_retrain_recipe_keeps_one_learning_rate():
    config = tiny_config(**{"retrain.recipe": "constant", "retrain.epochs": 3})
    recipe = retrain_recipe(config)
    assert (recipe.schedule, recipe.lr, recipe.warmup_epochs, recipe.epochs) == (
        "constant", 1e-5, 0, 3
    )  # fmt: skip
    assert replace(recipe, schedule="cosine", lr=config.train.lr, warmup_epochs=1, epochs=2) == (
        config.train
    )  # everything else is the transfer recipe
    model, loader = linear_model_and_loader()
    history = train(model, loader, loader, recipe, CPU, 0, progress=False).history
    assert [r["lr"] for r in history] == [1e-5] * 3
    released = retrain_recipe(tiny_config(**{"retrain.epochs": 3}))
    assert released == replace(config.train, epochs=3)


def test_the_headline_is_the_last_evaluation_and_the_best_is_kept_apart(monkeypatch):
    evaluations = iter([0.5, 0.9, 0.7])
    monkeypatch.setattr(bench.train, "evaluate", lambda *args, **kwargs: next(evaluations))
    model, loader = linear_model_and_loader()
    recipe = Recipe(epochs=3, warmup_epochs=1, eval_every=1)
    result = train(model, loader, loader, recipe, CPU, 0, progress=False)
    assert (result.final_acc, result.best_acc) == (0.7, 0.9)
    assert [r["test_acc"] for r in result.history] == [0.5, 0.9, 0.7]


def test_eval_every_zero_evaluates_the_last_epoch_only_and_has_no_best(monkeypatch):
    calls = []
    monkeypatch.setattr(bench.train, "evaluate", lambda *args, **kwargs: calls.append(1) or 0.6)
    model, loader = linear_model_and_loader()
    result = train(model, loader, loader, Recipe(epochs=3, warmup_epochs=1, eval_every=0), CPU,
                   0, progress=False)  # fmt: skip
    assert len(calls) == 1 and result.final_acc == 0.6 and result.best_acc is None
    assert ["test_acc" in r for r in result.history] == [False, False, True]


def test_a_steps_loss_stays_a_tensor_until_the_epoch_ends(monkeypatch):
    """No host synchronisation inside the epoch: nothing reads a step's loss (`.item()`,
    `float()`, ...) before the loader is exhausted."""
    events, loss_storages = [], set()

    class Criterion(nn.CrossEntropyLoss):
        def forward(self, logits, labels):
            loss = super().forward(logits, labels)
            loss_storages.add(loss.untyped_storage().data_ptr())
            return loss

    def reading(name):
        original = getattr(torch.Tensor, name)

        def read(self, *args, **kwargs):
            if self.untyped_storage().data_ptr() in loss_storages:
                events.append("read")
            return original(self, *args, **kwargs)

        return read

    for name in ("item", "__float__", "__bool__", "tolist", "numpy"):
        monkeypatch.setattr(torch.Tensor, name, reading(name))
    model, loader = linear_model_and_loader()

    def batches():
        for batch in loader:
            events.append("batch")
            yield batch
        events.append("end")

    optimizer, _ = make_optimizer(model, Recipe())
    losses = bench.train._train_epoch(model, model, batches(), optimizer, Criterion(),
                                      contextlib.nullcontext)  # fmt: skip
    assert events == ["batch"] * 3 + ["end"] and losses.shape == (3,)


def test_bfloat16_autocasts_the_training_forward_and_float32_does_not():
    seen = []
    for dtype in ("bfloat16", "float32"):
        model, loader = linear_model_and_loader()
        handle = model[1].register_forward_hook(lambda m, i, out: seen.append(out.dtype))
        train(model, loader, loader, Recipe(epochs=1, warmup_epochs=0, dtype=dtype), CPU, 0,
              progress=False)  # fmt: skip
        handle.remove()
        assert set(seen) == {torch.bfloat16 if dtype == "bfloat16" else torch.float32}
        seen.clear()


@pytest.mark.slow
def test_compile_trains_through_a_compiled_model():
    from torch._dynamo.utils import counters

    torch._dynamo.reset()
    counters.clear()
    model, loader = linear_model_and_loader()
    recipe = Recipe(epochs=2, warmup_epochs=1, lr=1e-2, compile=True)
    result = train(model, loader, loader, recipe, CPU, 0, progress=False)
    assert counters["stats"]["unique_graphs"] >= 2  # training and evaluation graphs
    eager, loader = linear_model_and_loader()
    expected = train(eager, loader, loader, replace(recipe, compile=False), CPU, 0, False)
    assert result.final_acc == expected.final_acc
    assert [r["loss"] for r in result.history] == pytest.approx(
        [r["loss"] for r in expected.history], rel=1e-4
    )


@pytest.mark.parametrize("field,value", [("dtype", "bfloat16"), ("epochs", 3), ("tf32", False)])
def test_what_changes_the_numbers_is_part_of_the_recipes_identity(field, value):
    assert replace(Recipe(), **{field: value}).identity() != Recipe().identity()


@pytest.mark.parametrize("field,value", [("compile", True), ("eval_batch_size", 1024)])
def test_speed_only_settings_are_not(field, value):
    assert replace(Recipe(), **{field: value}).identity() == Recipe().identity()


@pytest.mark.parametrize("setting", ["train.dtype=float16", "train.lr_step=midway"])
def test_an_unknown_dtype_or_lr_step_fails_before_training(setting):
    from bench.errors import UserError
    from bench.preflight import preflight

    key, value = setting.split("=")
    with pytest.raises(UserError, match=key):
        preflight(tiny_config(**{key: value}))
