"""The transfer: the PETL model trained on one task and seed, shared by every pruner of a run set.

Cached under `<cache>/transfer/<key>`, the key a hash of everything that produced it (task and
data, backbone weights, PETL settings, the recipe's identity, the seed). An entry is written
under a temporary name and renamed, so a killed run never leaves half of one.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch import nn

from bench.config import RunConfig
from bench.data.task_data import TaskData, data_loaders
from bench.errors import UserError
from bench.keys import stable_hash
from bench.models.build import build_petl_model
from bench.models.petl import PetlSettings
from bench.paths import cache_dir
from bench.state import load_task_tensors, save_task_state
from bench.train import TrainResult, reset_peak_gpu_memory, train

TRANSFER_FORMAT = 2  # 2: Convpass branches drop-pathed apart from attention (training changed)
CHECKPOINTS = ("last", "best_of_evals")
STATE_FILE = "state.safetensors"
RESULT_FILE = "result.json"


@dataclass
class Transfer:
    model: nn.Module  # the trained, unpruned PETL model
    result: TrainResult
    key: str
    cached: bool


def transfer_key(
    config: RunConfig, data: TaskData, settings: PetlSettings, seed: int, weights: str
) -> str:
    payload = {
        "format": TRANSFER_FORMAT,
        "task": [data.task.name, data.task.version],
        "data": [data.train.key, data.eval.key, data.normalization],
        "model": {**asdict(config.model), "checkpoint": None, "weights": weights},
        "petl": settings.to_dict(),
        "recipe": config.train.identity(),
        "seed": seed,
        "checkpoint": config.transfer.checkpoint,
    }
    return stable_hash(payload)


def transfer(config: RunConfig, data: TaskData, settings: PetlSettings, seed: int,
             device: torch.device, weights: str, progress: bool) -> Transfer:  # fmt: skip
    """The trained PETL model: from the cache if this exact transfer ran before."""
    key = transfer_key(config, data, settings, seed, weights)
    folder = cache_dir() / "transfer" / key
    model = build_petl_model(config.model, config.data, data.task.num_classes, settings, seed,
                             device)  # fmt: skip
    if (folder / RESULT_FILE).exists():
        load_task_tensors(model, folder / STATE_FILE)
        result = TrainResult(**json.loads((folder / RESULT_FILE).read_text()))
        return Transfer(model, result, key, cached=True)
    train_loader, eval_loader = data_loaders(data, config.train, device, seed)
    reset_peak_gpu_memory(device)
    keep_best = config.transfer.checkpoint == "best_of_evals"
    result = train(model, train_loader, eval_loader, config.train, device, seed, "transfer",
                   progress, keep_best=keep_best)  # fmt: skip
    store_transfer(model, result, key, folder)
    return Transfer(model, result, key, cached=False)


def check_transfer(config: RunConfig) -> None:
    """The transfer's settings, before anything is decoded or trained."""
    checkpoint = config.transfer.checkpoint
    if checkpoint not in CHECKPOINTS:
        raise UserError(
            f"transfer.checkpoint {checkpoint!r}: expected one of {', '.join(CHECKPOINTS)}"
        )
    if checkpoint == "best_of_evals" and config.train.eval_every == 0:
        raise UserError(
            "transfer.checkpoint=best_of_evals selects among periodic evaluations, but "
            "train.eval_every=0 evaluates the last epoch only: set train.eval_every (e.g. 10)"
        )


def store_transfer(model: nn.Module, result: TrainResult, key: str, folder: Path) -> None:
    """Written under a temporary name and renamed: a killed run never leaves a half entry."""
    partial = folder.with_name(f".{folder.name}.{os.getpid()}.tmp")
    shutil.rmtree(partial, ignore_errors=True)
    save_task_state(model, partial / STATE_FILE, {"transfer_key": key})
    (partial / RESULT_FILE).write_text(json.dumps(asdict(result)))
    if folder.exists() and not (folder / RESULT_FILE).exists():  # left by an older version
        shutil.rmtree(folder, ignore_errors=True)
    try:
        os.replace(partial, folder)
    except OSError:  # another process stored the same transfer first: keep theirs
        shutil.rmtree(partial, ignore_errors=True)
