"""PETL training (and retraining after pruning): AdamW on the task parameters, warm-up + cosine.

Test accuracy is evaluated every `eval_every` epochs and at the last epoch (`eval_every=0`: the
last only). The last-epoch accuracy is the headline; the best of those evaluations is kept apart,
as most papers report it (it selects on the test set).

As fast as the device allows without changing the recipe: step losses stay on the device and are
read once per epoch (a NaN or infinite loss then ends the training with `Diverged`, naming the
epoch, step and rate), fused AdamW on GPU, TF32 for float32 matmuls where `tf32`, evaluation at
`eval_batch_size`, optional `torch.compile`. What changes the numbers is a recipe setting:
`dtype` (bfloat16 autocast departs from the authors' float32) and `lr_step`.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass, field, replace

import torch
from timm.scheduler import CosineLRScheduler
from torch import nn
from tqdm import tqdm

from bench import record as R
from bench.config import Recipe, RunConfig
from bench.errors import UserError


class Diverged(RuntimeError):
    """The loss became NaN or infinite: the run stops and ends FAILED with this message."""


DTYPES = ("float32", "bfloat16")
LR_STEPS = ("after_epoch", "before_epoch")


@dataclass
class TrainResult:
    final_acc: float  # test accuracy after the last epoch (headline)
    best_acc: float | None  # best test accuracy over the periodic evaluations (selects on test);
    #                         None when only the last epoch was evaluated (eval_every=0)
    seconds: float
    history: list[dict] = field(default_factory=list)  # per epoch: epoch, loss, lr[, test_acc]
    eval_seconds: float = 0.0  # of `seconds`, the test evaluations
    peak_gpu_memory_gb: float | None = None  # GPU only: the most allocated at once since the
    #                                          caller's `reset_peak_gpu_memory`
    best_epoch: int | None = None  # the (first) epoch whose evaluation gave `best_acc`
    selected_epoch: int | None = None  # the epoch whose weights the model holds; None: the last

    @property
    def selected_acc(self) -> float:
        """The accuracy of the model as training left it: the best evaluation's where the best
        weights were kept (`keep_best`), else the last epoch's."""
        return self.best_acc if self.selected_epoch is not None else self.final_acc

    @property
    def evaluations(self) -> int:
        """Test evaluations run: the scheduled ones, or the one of a zero-epoch training."""
        return max(1, sum("test_acc" in record for record in self.history))


def check_recipe(recipe: Recipe) -> None:
    if recipe.dtype not in DTYPES:
        raise UserError(f"train.dtype {recipe.dtype!r}: expected one of {', '.join(DTYPES)}")
    if recipe.lr_step not in LR_STEPS:
        raise UserError(f"train.lr_step {recipe.lr_step!r}: expected one of {', '.join(LR_STEPS)}")
    if recipe.eval_every < 0 or recipe.eval_batch_size < 1:
        raise UserError("train.eval_every must be >= 0 and train.eval_batch_size >= 1")


def autocast(device: torch.device, dtype: str):
    """bfloat16 autocast where the recipe asks for it (on any device); else full precision."""
    if dtype == "bfloat16":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


@contextlib.contextmanager
def tf32(device: torch.device, allow: bool):
    """TF32 for float32 matmuls and convolutions on GPU while training; restored afterwards, so
    throughput measurement (`measure.dtype`) is not affected."""
    if device.type != "cuda":
        yield
        return
    before = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = allow
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = before


@torch.inference_mode()
def evaluate(
    model: nn.Module,
    loader,
    device: torch.device,
    desc: str = "eval",
    progress: bool = True,
    dtype: str = "float32",
) -> float:
    """Top-1 accuracy over the whole loader; one read from the device at the end."""
    model.eval()
    correct = torch.zeros((), dtype=torch.long, device=device)
    total = 0
    for images, labels in tqdm(loader, desc=desc, leave=False, disable=not progress):
        with autocast(device, dtype):
            logits = model(images)
        correct += (logits.argmax(dim=-1) == labels).sum()
        total += labels.numel()
    return correct.item() / max(total, 1)


def make_optimizer(model: nn.Module, recipe: Recipe):
    """AdamW on the parameters that require grad; the fused kernel on GPU (one launch a step)."""
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise RuntimeError("nothing to train: no parameter requires grad")
    fused = all(p.is_cuda for p in params)
    optimizer = torch.optim.AdamW(
        params, lr=recipe.lr, weight_decay=recipe.weight_decay, fused=fused or None
    )
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


def set_epoch_lr(scheduler: CosineLRScheduler | None, recipe: Recipe, epoch: int) -> None:
    """The rate epoch `epoch` (0-based) trains at. `after_epoch` is the SLS authors' loop:
    `scheduler.step(e)` after epoch e, so epoch e trains at the rate of e - 1 (epochs 0 and 1 at
    warmup_lr, the last at the rate of epochs - 2); `before_epoch` is timm's train.py: epoch e at
    the rate of e."""
    if scheduler is not None:
        scheduler.step(max(epoch - 1, 0) if recipe.lr_step == "after_epoch" else epoch)


def retrain_recipe(config: RunConfig) -> Recipe:
    """The recipe of every retraining after the transfer (`retrain.recipe`, `retrain.epochs`)."""
    base = config.train
    epochs = config.retrain.epochs or base.epochs
    if config.retrain.recipe == "released":
        return replace(base, epochs=epochs)
    if config.retrain.recipe == "constant":
        return replace(
            base, epochs=epochs, schedule="constant", lr=config.retrain.constant_lr, warmup_epochs=0
        )
    raise UserError(f"unknown retrain recipe {config.retrain.recipe!r}; use released or constant")


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
    keep_best: bool = False,
) -> TrainResult:
    """Train the parameters that require grad; evaluate on `eval_loader` periodically.
    `start_epoch` > 0 runs only the recipe's epochs from there on, on its schedule (a pruner
    trained the first ones, see `retrain_start_epoch`); epochs are numbered as in the recipe.
    `keep_best`: the model ends holding the weights of its best evaluation (the first of equals,
    as the SLS authors' `acc > best_acc`), and `selected_epoch` says which."""
    check_recipe(recipe)
    torch.manual_seed(seed)
    optimizer, scheduler = make_optimizer(model, recipe)
    criterion = nn.CrossEntropyLoss()
    forward = torch.compile(model) if recipe.compile else model
    clock = _Clock(device)
    history, evaluations = [], []
    best = _Best(model if keep_best else None)

    def test(epoch_desc: str) -> float:
        with clock.part("eval"):
            return evaluate(forward, eval_loader, device, epoch_desc, progress, recipe.dtype)

    epochs = tqdm(range(start_epoch, recipe.epochs), desc=desc, disable=not progress)
    with tf32(device, recipe.tf32):
        for epoch in epochs:
            set_epoch_lr(scheduler, recipe, epoch)
            lr = optimizer.param_groups[0]["lr"]
            loss = _train_epoch(forward, model, train_loader, optimizer, criterion,
                                lambda: autocast(device, recipe.dtype))  # fmt: skip
            _check_finite(loss, epoch + 1, lr, desc)
            record = {"epoch": epoch + 1, "loss": float(loss.mean()), "lr": lr}
            if _evaluates(recipe, epoch + 1):
                record["test_acc"] = test(f"{desc} eval")
                evaluations.append(record["test_acc"])
                best.offer(record["test_acc"], epoch + 1)
            history.append(record)
            epochs.set_postfix(
                loss=f"{record['loss']:.3f}", acc=f"{evaluations[-1]:.3f}" if evaluations else "-"
            )
        if not evaluations:  # zero epochs: still report the model as it is
            evaluations.append(test(f"{desc} eval"))
    best_acc = max(evaluations) if recipe.eval_every else None
    selected = best.restore() if keep_best else None
    return TrainResult(evaluations[-1], best_acc, clock.total(), history, clock.seconds["eval"],
                       peak_gpu_memory_gb(device), best.epoch, selected)  # fmt: skip


class _Best:
    """The best evaluation so far (strictly better replaces it) and, when given the model, a copy
    of its trainable parameters and buffers at that evaluation."""

    def __init__(self, model: nn.Module | None) -> None:
        self.model, self.acc, self.epoch, self.state = model, -1.0, None, None

    def offer(self, acc: float, epoch: int) -> None:
        if acc <= self.acc:
            return
        self.acc, self.epoch = acc, epoch
        if self.model is not None:
            self.state = {n: t.detach().clone() for n, t in _trained_tensors(self.model)}

    def restore(self) -> int | None:
        if self.state is not None:
            with torch.no_grad():
                for name, tensor in _trained_tensors(self.model):
                    tensor.copy_(self.state[name])
        return self.epoch


def _trained_tensors(model: nn.Module):
    yield from ((n, p) for n, p in model.named_parameters() if p.requires_grad)
    yield from model.named_buffers()


def _evaluates(recipe: Recipe, epoch: int) -> bool:
    last = epoch == recipe.epochs
    return last or (recipe.eval_every > 0 and epoch % recipe.eval_every == 0)


def reset_peak_gpu_memory(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def peak_gpu_memory_gb(device: torch.device) -> float | None:
    """The most GPU memory allocated at once since the last reset; None on CPU."""
    if device.type != "cuda":
        return None
    return torch.cuda.max_memory_allocated(device) / 1e9


class _Clock:
    """Wall time since creation and per named part (synchronised on GPU only at part edges)."""

    def __init__(self, device: torch.device) -> None:
        self.device, self.start = device, time.perf_counter()
        self.seconds: dict[str, float] = {"eval": 0.0}

    @contextlib.contextmanager
    def part(self, name: str):
        self._sync()
        start = time.perf_counter()
        try:
            yield
        finally:
            self._sync()
            self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - start

    def total(self) -> float:
        self._sync()
        return time.perf_counter() - self.start

    def _sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)


def _train_epoch(forward, model, loader, optimizer, criterion, precision) -> torch.Tensor:
    """One epoch; the step losses as a CPU tensor, read from the device once, at the end.
    `forward` is the model or its compiled form (`model` switches the mode); `precision()` the
    autocast context of the forward pass."""
    model.train()
    losses = []
    for images, labels in loader:
        with precision():
            loss = criterion(forward(images), labels)
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


def headline(result: TrainResult) -> dict[str, float]:
    """The accuracy of the model as trained (the last epoch's, or the kept best evaluation's) and,
    where periodic evaluations ran, the best of them."""
    metrics = {R.ACC: result.selected_acc}
    if result.best_acc is not None:
        metrics[R.ACC_BEST] = result.best_acc
    return metrics


def training_metrics(phase: str, result: TrainResult) -> dict[str, float]:
    """Where a training's time went: in all and in test evaluations, over how many epochs and
    evaluations."""
    values = {"seconds": result.seconds, "eval_seconds": result.eval_seconds,
              "epochs": len(result.history), "evaluations": result.evaluations}  # fmt: skip
    return {R.phase_metric(phase, name): value for name, value in values.items()}
