"""Supervised pretraining of the demo ViT on generated fractals (`bench.pretrain.fractals`).

The architecture is the demo preset's (`bench/presets/demo.toml`), so the weights fit it; the
backbone is saved as safetensors without its classifier, with a JSON record beside it (the
config, the command, the library versions, the sha256 of the file).
"""

from __future__ import annotations

import json
import math
import platform
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import timm
import torch
from safetensors.torch import save_file
from torch import nn

from bench.config import load_config
from bench.data.loader import normalization_stats
from bench.models.backbone import HEAD_PREFIX, create_backbone, weights_sha256
from bench.pretrain.fractals import fractal_dataset

ARCHITECTURE_PRESET = "demo"


@dataclass
class PretrainConfig:
    seed: int = 0
    classes: int = 100
    per_class: int = 300
    val_per_class: int = 20  # held-out images per class: the record's val accuracy
    points: int = 1500  # chaos-game points per image
    epochs: int = 40
    batch_size: int = 128
    lr: float = 1e-3
    min_lr: float = 1e-5
    warmup_epochs: int = 2
    weight_decay: float = 0.05
    label_smoothing: float = 0.1
    threads: int = 2


@dataclass
class PretrainResult:
    losses: list[float]  # mean training loss per epoch
    train_acc: float  # of the last epoch
    val_acc: float
    seconds: float
    data_seconds: float


def demo_backbone(num_classes: int) -> nn.Module:
    """The demo preset's backbone, random-initialised, with a `num_classes` head."""
    preset = load_config(ARCHITECTURE_PRESET)
    model, image_size = preset.model, preset.data.image_size
    return create_backbone(model.backbone, num_classes, image_size, model.drop_path,
                           kwargs=model.kwargs)  # fmt: skip


def image_size() -> int:
    return load_config(ARCHITECTURE_PRESET).data.image_size


def as_tensor(images: np.ndarray, normalization: str) -> torch.Tensor:
    """uint8 (n, h, w, 3) -> normalised float (n, 3, h, w), as the demo's loader feeds them."""
    mean, std = (torch.tensor(v).view(1, 3, 1, 1) for v in normalization_stats(normalization))
    return (torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255.0 - mean) / std


def split(images: np.ndarray, labels: np.ndarray, per_class: int, val_per_class: int):
    """Per class, the first `per_class` images train and the next `val_per_class` validate."""
    within = np.arange(len(labels)) % (per_class + val_per_class)
    train = within < per_class
    return (images[train], labels[train]), (images[~train], labels[~train])


def lr_at(step: int, steps: int, warmup: int, config: PretrainConfig) -> float:
    if step < warmup:
        return config.lr * (step + 1) / warmup
    progress = (step - warmup) / max(1, steps - warmup)
    return config.min_lr + (config.lr - config.min_lr) * 0.5 * (1 + math.cos(math.pi * progress))


def pretrain(config: PretrainConfig, log=print) -> tuple[nn.Module, PretrainResult]:
    """Generate the fractals, train the demo ViT on them; the model and what it reached."""
    torch.set_num_threads(config.threads)
    start = time.perf_counter()
    images, labels = fractal_dataset(config.seed, config.classes,
                                     config.per_class + config.val_per_class, image_size(),
                                     config.points)  # fmt: skip
    (train_x, train_y), (val_x, val_y) = split(images, labels, config.per_class,
                                               config.val_per_class)  # fmt: skip
    normalization = load_config(ARCHITECTURE_PRESET).data.normalization
    train_x, val_x = as_tensor(train_x, normalization), as_tensor(val_x, normalization)
    train_y, val_y = torch.from_numpy(train_y), torch.from_numpy(val_y)
    data_seconds = time.perf_counter() - start
    log(f"{len(train_y)} training and {len(val_y)} validation fractals of {config.classes} "
        f"classes generated in {data_seconds:.0f} s")  # fmt: skip

    torch.manual_seed(config.seed)
    model = demo_backbone(config.classes)
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr,
                                  weight_decay=config.weight_decay)  # fmt: skip
    criterion = nn.CrossEntropyLoss(label_smoothing=config.label_smoothing)
    shuffle = torch.Generator().manual_seed(config.seed)
    per_epoch = math.ceil(len(train_y) / config.batch_size)
    steps, warmup = config.epochs * per_epoch, config.warmup_epochs * per_epoch
    losses, correct, step = [], 0, 0
    for epoch in range(config.epochs):
        model.train()
        order = torch.randperm(len(train_y), generator=shuffle)
        total, correct = 0.0, 0
        for batch in order.split(config.batch_size):
            for group in optimizer.param_groups:
                group["lr"] = lr_at(step, steps, warmup, config)
            logits = model(train_x[batch])
            loss = criterion(logits, train_y[batch])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            total += float(loss.detach()) * len(batch)
            correct += int((logits.argmax(-1) == train_y[batch]).sum())
            step += 1
        if not math.isfinite(total):
            raise RuntimeError(f"pretraining diverged at epoch {epoch + 1}: loss {total}")
        losses.append(total / len(train_y))
        log(f"epoch {epoch + 1}/{config.epochs}: loss {losses[-1]:.4f}, "
            f"train acc {correct / len(train_y):.3f}, {time.perf_counter() - start:.0f} s")  # fmt: skip
    val_acc = accuracy(model, val_x, val_y, config.batch_size)
    result = PretrainResult(losses, correct / len(train_y), val_acc,
                            time.perf_counter() - start, data_seconds)  # fmt: skip
    log(f"validation accuracy {val_acc:.3f}; {result.seconds:.0f} s in all")
    return model, result


@torch.no_grad()
def accuracy(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, batch: int) -> float:
    model.eval()
    hits = sum(int((model(x).argmax(-1) == y).sum())
               for x, y in zip(images.split(batch), labels.split(batch), strict=True))  # fmt: skip
    return hits / max(1, len(labels))


def backbone_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """The weights a downstream task loads: everything but the classifier head."""
    return {k: v.detach().contiguous().clone() for k, v in model.state_dict().items()
            if not k.startswith(HEAD_PREFIX)}  # fmt: skip


def save(model: nn.Module, result: PretrainResult, config: PretrainConfig, out: Path,
         command: list[str] | None = None) -> dict:  # fmt: skip
    """Write `out` (safetensors, backbone only) and `out` with .json (the record); the record."""
    out.parent.mkdir(parents=True, exist_ok=True)
    save_file(backbone_state(model), str(out))
    preset = load_config(ARCHITECTURE_PRESET)
    record = {
        "file": out.name,
        "sha256": weights_sha256(out),
        "trained_on": "procedurally generated fractals (random iterated function systems of 2-4 "
                      "affine maps, FractalDB-style); no downloaded or downstream data",
        "command": " ".join(command if command is not None else ["python", *sys.argv]),
        "config": asdict(config),
        "architecture": {"backbone": preset.model.backbone, "kwargs": preset.model.kwargs,
                         "image_size": preset.data.image_size,
                         "normalization": preset.data.normalization},
        "result": {"final_train_loss": result.losses[-1], "train_acc": result.train_acc,
                   "val_acc": result.val_acc, "seconds": round(result.seconds, 1),
                   "data_seconds": round(result.data_seconds, 1)},
        "versions": {"python": platform.python_version(), "torch": torch.__version__,
                     "timm": timm.__version__, "numpy": np.__version__},
        "machine": {"platform": platform.platform(), "processor": platform.processor(),
                    "threads": config.threads},
    }  # fmt: skip
    out.with_suffix(".json").write_text(json.dumps(record, indent=2) + "\n")
    return record
