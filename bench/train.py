"""PETL training (and retraining after pruning): AdamW on the task parameters, warm-up + cosine.

Test accuracy is evaluated every `eval_every` epochs and at the last epoch. The last-epoch
accuracy is the headline; the best of those evaluations is kept apart, as most papers report it
(it selects on the test set). Step losses stay on the device and are read once per epoch; a loss
that is NaN or infinite ends the training with `Diverged`, naming the epoch, step and rate.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass, field

import torch
from timm.scheduler import CosineLRScheduler
from torch import nn
from tqdm import tqdm

from bench.config import Recipe


class Diverged(RuntimeError):
    """The loss became NaN or infinite: the run stops and ends FAILED with this message."""


@dataclass
class TrainResult:
    final_acc: float  # test accuracy after the last epoch (headline)
    best_acc: float  # best test accuracy over the periodic evaluations (selects on test)
    seconds: float
    history: list[dict] = field(default_factory=list)  # per epoch: epoch, loss, lr[, test_acc]


def autocast(device: torch.device, dtype: str = "bfloat16"):
    """bf16 autocast on GPU; full precision on CPU (bf16 matmuls are slow on most CPUs)."""
    if device.type == "cuda" and dtype == "bfloat16":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


@torch.inference_mode()
def evaluate(
    model: nn.Module, loader, device: torch.device, desc: str = "eval", progress: bool = True
) -> float:
    """Top-1 accuracy over the whole loader."""
    model.eval()
    correct = total = 0
    for images, labels in tqdm(loader, desc=desc, leave=False, disable=not progress):
        with autocast(device):
            logits = model(images)
        correct += (logits.argmax(dim=-1) == labels).sum().item()
        total += labels.numel()
    return correct / max(total, 1)


def make_optimizer(model: nn.Module, recipe: Recipe):
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise RuntimeError("nothing to train: no parameter requires grad")
    optimizer = torch.optim.AdamW(params, lr=recipe.lr, weight_decay=recipe.weight_decay)
    return optimizer, make_scheduler(optimizer, recipe)


def make_scheduler(optimizer: torch.optim.Optimizer, recipe: Recipe) -> CosineLRScheduler | None:
    """The recipe's per-epoch schedule (`scheduler.step(epoch)`), or None for a constant lr."""
    if recipe.schedule == "constant":
        return None
    if recipe.schedule != "cosine":
        raise ValueError(f"unknown schedule {recipe.schedule!r}; expected cosine or constant")
    return CosineLRScheduler(
        optimizer,
        t_initial=recipe.epochs,
        lr_min=recipe.min_lr,
        warmup_t=recipe.warmup_epochs,
        warmup_lr_init=recipe.warmup_lr,
    )


def retrain_start_epoch(recipe: Recipe, epochs_trained: float) -> int:
    """The epoch of `recipe` where retraining starts after a pruner trained its first
    `epochs_trained` epochs itself: the total stays the recipe's, the schedule continues."""
    if epochs_trained != int(epochs_trained) or not 0 <= epochs_trained <= recipe.epochs:
        raise ValueError(
            f"a pruner trained {epochs_trained:g} epochs: that must be a whole number within the "
            f"training budget of {recipe.epochs} epochs"
        )
    return int(epochs_trained)


def train(
    model: nn.Module,
    train_loader,
    eval_loader,
    recipe: Recipe,
    device: torch.device,
    seed: int,
    desc: str = "train",
    progress: bool = True,
    start_epoch: int = 0,
) -> TrainResult:
    """Train the parameters that require grad; evaluate on `eval_loader` periodically.
    `start_epoch` > 0 runs only the recipe's epochs from there on, on its schedule (a pruner
    trained the first ones, see `retrain_start_epoch`); epochs are numbered as in the recipe."""
    torch.manual_seed(seed)
    optimizer, scheduler = make_optimizer(model, recipe)
    criterion = nn.CrossEntropyLoss()
    history, evaluations, start = [], [], time.perf_counter()
    epochs = tqdm(range(start_epoch, recipe.epochs), desc=desc, disable=not progress)
    for epoch in epochs:
        if scheduler is not None:
            scheduler.step(epoch)
        lr = optimizer.param_groups[0]["lr"]
        loss = _train_epoch(model, train_loader, optimizer, criterion, device)
        _check_finite(loss, epoch + 1, lr, desc)
        record = {"epoch": epoch + 1, "loss": float(loss.mean()), "lr": lr}
        if (epoch + 1) % recipe.eval_every == 0 or epoch + 1 == recipe.epochs:
            record["test_acc"] = evaluate(model, eval_loader, device, f"{desc} eval", progress)
            evaluations.append(record["test_acc"])
        history.append(record)
        epochs.set_postfix(
            loss=f"{record['loss']:.3f}", acc=f"{evaluations[-1]:.3f}" if evaluations else "-"
        )
    if not evaluations:  # zero epochs: still report the model as it is
        evaluations.append(evaluate(model, eval_loader, device, f"{desc} eval", progress))
    return TrainResult(evaluations[-1], max(evaluations), time.perf_counter() - start, history)


def _train_epoch(model, loader, optimizer, criterion, device) -> torch.Tensor:
    """One epoch; the step losses as a CPU tensor, read from the device once, at the end."""
    model.train()
    losses = []
    for images, labels in loader:
        with autocast(device):
            loss = criterion(model(images), labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        losses.append(loss.detach())
    return torch.stack(losses).float().cpu() if losses else torch.zeros(1)


def _check_finite(losses: torch.Tensor, epoch: int, lr: float, desc: str) -> None:
    bad = (~torch.isfinite(losses)).nonzero()
    if len(bad):
        step = int(bad[0])
        raise Diverged(
            f"{desc} diverged: loss {float(losses[step])} at epoch {epoch}, step {step + 1} "
            f"(learning rate {lr:.3g}); lower the rate (--set train.lr=..., retrain uses the "
            "same recipe) or check the backbone weights and the data"
        )
